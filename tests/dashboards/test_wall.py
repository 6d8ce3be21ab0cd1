"""The wall page, end to end: a real ``SqliteStore``, the aiohttp server on a free port, and headless
Chromium reading the page the way the big screen does.

The server runs on its own event loop in a background thread, so the blocking WebDriver calls of
the test never stall it. Waits are on conditions (``WebDriverWait``), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Coroutine, TypeVar

import pytest

from dashboards.wall import HJ633_APPENDIX_A_LEVELS, WallPage
from park.model import Park
from park.reading import Reading, Value
from store.schema import Event, Result
from store.sqlite import SqliteStore

T = TypeVar("T")

SCREENSHOT = Path("/tmp/ecopark-wall.png")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
XSS_MESSAGE = '<script>window.__xss = 1</script><b id="xss-bold">bold</b> 报文 message'

# What the seed writes, so the assertions read from the same table.
AQI_SEED = {"aqi": 72, "level": 2, "category": "良", "color": "#FFFF00", "primary": "PM2.5"}
WATER_SEED = {  # site: (klass, meets, worst)
    "KM-RIV-LLH": (3, False, "TP"),
    "KM-RIV-MLH": (3, True, ""),
    "KM-RIV-XBXH": (4, False, "NH3-N"),
}
EXCEEDED = ("YNDL-G1", "NOx", 230.0)  # the one outlet parameter above its permit
STALE_SITE = "YXXC-ME"  # an hourly meter silent for 5 hours


class ServerThread:
    """An event loop in a thread, holding the store and the wall page."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="wall-test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def hour(park: Park) -> dt.datetime:
    """The start of the last complete hour, park time."""
    return dt.datetime.now(park.tz).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def server(park: Park, hour: dt.datetime, tmp_path_factory) -> Iterator[tuple[ServerThread, SqliteStore, WallPage]]:
    loop = ServerThread()
    path = tmp_path_factory.mktemp("wall") / "store.sqlite"

    async def up() -> tuple[SqliteStore, WallPage]:
        store = SqliteStore(path)
        await seed(store, park, hour)
        page = WallPage(park, store, port=0, refresh_s=0.2, stats=lambda: {"dead-letter 死信": 3, "readings 读数": 1200})
        await page.start()
        return store, page

    store, page = loop.run(up())
    yield loop, store, page

    async def down() -> None:
        await page.stop()
        await store.close()

    loop.run(down())
    loop.close()


@pytest.fixture(scope="module")
def browser(server):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(f"Chromium and ChromeDriver are needed at {CHROMIUM} and {CHROMEDRIVER} (make system-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1920,1080", "--lang=zh-CN"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # the wall's screen: a 1920 × 1080 viewport, whatever the headless window's chrome takes
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
    _, _, page = server
    driver.get(page.url)
    wait(driver).until(lambda d: d.execute_script("return window.ecoparkWall && window.ecoparkWall.updates > 0"))
    yield driver
    driver.quit()


# -- the page ---------------------------------------------------------------------------------


def test_every_air_station_shows_its_aqi_in_the_level_colour_with_the_primary_pollutant(browser, park):
    from selenium.webdriver.common.by import By

    for station in park.sites_of("air"):
        tile = browser.find_element(By.CSS_SELECTOR, f'.air-tile[data-site="{station.id}"]')
        value = tile.find_element(By.CSS_SELECTOR, ".aqi-value")
        assert value.text == str(AQI_SEED["aqi"])
        assert value.value_of_css_property("color") == "rgba(255, 255, 0, 1)"  # HJ 633 App. A level II
        assert "PM2.5" in tile.find_element(By.CSS_SELECTOR, ".primary-value").text
        assert "细颗粒物" in tile.find_element(By.CSS_SELECTOR, ".primary-value").text
        category = tile.find_element(By.CSS_SELECTOR, ".aqi-cat").text
        assert "良" in category and "Good" in category
        assert station.name in tile.text


def test_every_section_shows_its_class_against_its_target(browser, park):
    from selenium.webdriver.common.by import By

    for section in park.sites_of("water"):
        klass, meets, _ = WATER_SEED[section.id]
        row = browser.find_element(By.CSS_SELECTOR, f'.water-row[data-site="{section.id}"]')
        assert row.find_element(By.CSS_SELECTOR, ".klass").text == {3: "Ⅲ类", 4: "Ⅳ类"}[klass]
        assert row.find_element(By.CSS_SELECTOR, ".target-value").text == {2: "Ⅱ类", 3: "Ⅲ类"}[section.target_class]
        badge = row.find_element(By.CSS_SELECTOR, ".meets")
        assert row.get_attribute("data-meets") == str(meets).lower()
        if meets:
            assert "达标" in badge.text and "Meets" in badge.text
            assert badge.value_of_css_property("background-color") == "rgba(22, 163, 74, 1)"
        else:
            assert "未达标" in badge.text and "Below target" in badge.text
            assert badge.value_of_css_property("background-color") == "rgba(220, 38, 38, 1)"


def test_every_outlet_shows_a_compliance_tile_per_permitted_parameter(browser, park):
    from selenium.webdriver.common.by import By

    outlets = [s for s in park.sites_of("emission") if s.permit]
    assert outlets
    for outlet in outlets:
        for name in outlet.permit:
            tile = browser.find_element(By.CSS_SELECTOR, f'.tile[data-site="{outlet.id}"][data-parameter="{name}"]')
            expected = "bad" if (outlet.id, name) == EXCEEDED[:2] else "ok"
            assert tile.get_attribute("data-state") == expected, (outlet.id, name)
    bad = browser.find_element(By.CSS_SELECTOR, f'.tile[data-site="{EXCEEDED[0]}"][data-parameter="{EXCEEDED[1]}"]')
    assert "230" in bad.text and "200" in bad.text and "超标" in bad.text
    ph = browser.find_element(By.CSS_SELECTOR, '.tile[data-site="YNDL-W1"][data-parameter="pH"]')
    assert "6–9" in ph.find_element(By.CSS_SELECTOR, ".limit-value").text


def test_latest_events_come_first(browser):
    from selenium.webdriver.common.by import By

    items = browser.find_elements(By.CSS_SELECTOR, "#event-list li.event")
    assert [i.get_attribute("data-id") for i in items[:3]] == ["ev-xss", "ev-nox", "ev-llh"]
    assert "超标排放" in items[1].text


def test_an_event_message_with_markup_is_shown_as_text(browser):
    from selenium.webdriver.common.by import By

    msg = browser.find_element(By.CSS_SELECTOR, '#event-list li[data-id="ev-xss"] .ev-msg')
    assert msg.text == XSS_MESSAGE
    assert browser.execute_script("return window.__xss") is None
    assert browser.find_elements(By.ID, "xss-bold") == []


def test_freshness_row_shows_every_site_and_flags_the_silent_one(browser, park):
    from selenium.webdriver.common.by import By

    # one read of the whole row: the row is redrawn as ages tick over
    chips = browser.execute_script(
        "return Array.from(document.querySelectorAll('#fresh-list .fresh'))"
        ".map(c => [c.dataset.freshSite, c.dataset.stale, c.textContent])")
    stale = {site: flag for site, flag, _ in chips}
    text = {site: t for site, _, t in chips}
    assert set(stale) == set(park.sites)
    assert stale[STALE_SITE] == "true" and "5.0 h" in text[STALE_SITE]
    assert stale["KM-AIR-KMXY"] == "false" and "< 1 min" in text["KM-AIR-KMXY"]
    counters = browser.find_element(By.ID, "counters").text
    assert "dead-letter" in counters and "3" in counters


def test_labels_are_chinese_with_english_beside(browser):
    from selenium.webdriver.common.by import By

    text = browser.find_element(By.TAG_NAME, "body").text
    for zh, en in [
        ("昆明经济技术开发区", "Kunming Economic and Technological Development Zone"),
        ("环境空气质量", "Air quality"),
        ("首要污染物", "Primary pollutant"),
        ("河流断面水质", "River sections"),
        ("目标", "Target"),
        ("重点企业排放达标", "emission compliance"),
        ("最新事件", "Latest events"),
        ("数据时效", "Data freshness"),
        ("年度指标", "Annual indicators — from the year-end evaluation"),
    ]:
        assert zh in text and en in text, (zh, en)
    # no annual figures without an evaluation: a dash, never an invented value
    assert browser.find_element(By.CSS_SELECTOR, "#annual-body .none").text == "—"


def test_a_new_result_appears_without_reloading_the_page(browser, server, hour):
    from selenium.webdriver.common.by import By

    loop, store, _ = server
    browser.execute_script("window.__sameDocument = true")
    load_id = browser.execute_script("return window.ecoparkWall.loadId")
    assert wait(browser).until(lambda d: d.execute_script("return window.ecoparkWall.transport")) == "live"
    new = Result(
        measurement="aqi_hourly", site="KM-AIR-KMXY", ts=hour + dt.timedelta(hours=1),
        fields={"aqi": 163, "level": 4, "category": "中度污染", "color": "#FF0000", "primary": "O3,PM2.5", "edition": "2012"},
    )
    loop.run(store.write_results([new]))

    selector = '.air-tile[data-site="KM-AIR-KMXY"] .aqi-value'
    wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, selector).text == "163")
    assert browser.execute_script("return window.__sameDocument") is True
    assert browser.execute_script("return window.ecoparkWall.loadId") == load_id
    assert browser.find_element(By.CSS_SELECTOR, selector).value_of_css_property("color") == "rgba(255, 0, 0, 1)"
    tile = browser.find_element(By.CSS_SELECTOR, '.air-tile[data-site="KM-AIR-KMXY"]')
    assert "中度污染" in tile.text and "Moderately polluted" in tile.text
    assert "O3" in tile.find_element(By.CSS_SELECTOR, ".primary-value").text

    browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000


def test_the_page_falls_back_to_polling_without_server_sent_events(browser, server, hour):
    from selenium.webdriver.common.by import By

    loop, store, page = server
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.EventSource;"})
    try:
        browser.get(page.url)
        wait(browser).until(lambda d: d.execute_script("return window.ecoparkWall.updates > 0"))
        assert browser.execute_script("return window.ecoparkWall.transport") == "polling"
        assert "轮询" in browser.find_element(By.ID, "conn").text
        browser.execute_script("window.__sameDocument = true")
        daily = Result(measurement="aqi_daily", site="KM-AIR-KMXY", ts=hour.replace(hour=0),
                       fields={"aqi": 88, "level": 2, "category": "良", "color": "#FFFF00", "primary": "PM10", "edition": "2012"})
        loop.run(store.write_results([daily]))
        wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, '.air-tile[data-site="KM-AIR-KMXY"] .daily-value').text == "88")
        assert browser.execute_script("return window.__sameDocument") is True
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
        browser.get(page.url)
        wait(browser).until(lambda d: d.execute_script("return window.ecoparkWall.transport") == "live")


# -- the JSON ---------------------------------------------------------------------------------


def test_api_wall_snapshot_shape(server, park):
    _, _, page = server
    snap = get_json(page.url + "api/wall")
    assert set(snap) >= {"park", "reference_time", "air", "water", "outlets", "events", "freshness", "annual", "counters", "version", "store_ok"}
    assert snap["park"]["name"] == "昆明经济技术开发区"
    assert [a["site"] for a in snap["air"]] == [s.id for s in park.sites_of("air")]
    hourly = snap["air"][0]["hourly"]
    assert set(hourly) >= {"ts", "aqi", "level", "category", "category_en", "color", "primary"}
    assert isinstance(hourly["primary"], list)
    assert snap["air"][0]["daily"]["aqi"] in (64, 88)  # 88 once the polling test wrote a newer day
    water = {w["site"]: w for w in snap["water"]}
    assert set(water) == {s.id for s in park.sites_of("water")}
    llh = water["KM-RIV-LLH"]["hourly"]
    assert (llh["klass"], llh["target"], llh["meets"]) == ("Ⅲ", "Ⅱ", False)
    assert water["KM-RIV-XBXH"]["hourly"]["klass"] == "Ⅳ"
    outlets = {o["site"]: o for o in snap["outlets"]}
    assert set(outlets) == {s.id for s in park.sites_of("emission") if s.role in ("gas_outlet", "wastewater_outlet")}
    nox = next(p for p in outlets["YNDL-G1"]["parameters"] if p["parameter"] == "NOx")
    assert nox["hourly"] == {"ts": nox["hourly"]["ts"], "value": 230.0, "limit": 200.0, "compliant": False, "multiple": 0.15, "valid_minutes": 60, "running": False}
    cod = next(p for p in outlets["YNDL-W1"]["parameters"] if p["parameter"] == "COD")
    assert cod["judged"] == "daily" and cod["daily"]["compliant"] is True
    assert snap["events"][0]["id"] == "ev-xss" and snap["events"][0]["message"] == XSS_MESSAGE
    fresh = {f["site"]: f for f in snap["freshness"]}
    assert fresh[STALE_SITE]["stale"] is True and fresh[STALE_SITE]["expected_min"] == 60.0
    assert fresh["KM-AIR-KMXY"]["stale"] is False
    assert snap["annual"] is None
    assert snap["counters"] == {"dead-letter 死信": 3, "readings 读数": 1200}


def test_healthz_and_event_stream(server):
    _, _, page = server
    assert get_json(page.url + "healthz")["status"] == "ok"
    with urllib.request.urlopen(page.url + "api/stream", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        lines = []
        while not (lines and lines[-1] == "" and any(line.startswith("data: ") for line in lines)):
            lines.append(resp.readline().decode().rstrip("\n"))
    data = next(line for line in lines if line.startswith("data: "))
    assert "event: snapshot" in lines
    assert json.loads(data[len("data: "):])["park"]["id"] == "kmetdz"


# -- freshness against a simulated clock ------------------------------------------------------


async def test_relative_freshness_measures_ages_from_the_newest_reading_in_the_park(park, tmp_path):
    store = SqliteStore(tmp_path / "sim.sqlite")
    future = dt.datetime(2031, 3, 1, 8, 0, tzinfo=park.tz)  # a demo clock years ahead of now
    await store.write_readings([
        reading("KM-AIR-KMXY", future, "PM2.5", 30.0, "ug/m3"),
        reading("KM-RIV-LLH", future - dt.timedelta(minutes=10), "DO", 7.0, "mg/L"),
    ])
    try:
        relative = await WallPage(park, store, relative_freshness=True).snapshot()
        absolute = await WallPage(park, store, relative_freshness=False).snapshot()
        tuned = await WallPage(park, store, relative_freshness=True, expected_interval_min={"section": 10}).snapshot()
    finally:
        await store.close()
    rel = {f["site"]: f for f in relative["freshness"]}
    assert rel["KM-AIR-KMXY"]["age_min"] == 0 and rel["KM-AIR-KMXY"]["stale"] is False
    assert rel["KM-RIV-LLH"]["age_min"] == 10 and rel["KM-RIV-LLH"]["stale"] is True  # > 2 × 1 min
    assert rel["YNDL-G1"]["age_min"] is None and rel["YNDL-G1"]["stale"] is True  # never reported
    assert dt.datetime.fromisoformat(relative["reference_time"]) == future
    assert {f["site"]: f for f in absolute["freshness"]}["KM-AIR-KMXY"]["age_min"] == 0  # future → clamped
    assert {f["site"]: f for f in tuned["freshness"]}["KM-RIV-LLH"]["stale"] is False  # 10 min ≤ 2 × 10


def test_aqi_level_table_is_hj633_appendix_a_as_in_rules():
    from rules.aqi import HJ633_2012_LEVELS

    assert {lv.level: (lv.category, lv.category_en, lv.color) for lv in HJ633_2012_LEVELS} == dict(HJ633_APPENDIX_A_LEVELS)


def test_water_tables_match_rules():
    from dashboards.wall import GB3838_CLASS_NAMES, HJ2011_22_STATUS
    from rules.water import ASSESSMENT_2011_STATUS, CLASS_NAMES

    assert dict(GB3838_CLASS_NAMES) == CLASS_NAMES
    assert {k: (v[0], v[2]) for k, v in HJ2011_22_STATUS.items()} == dict(ASSESSMENT_2011_STATUS)


# -- helpers ----------------------------------------------------------------------------------


def wait(driver, timeout: float = 15):
    """Wait on a condition; a section redrawn under the check is simply checked again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def reading(site: str, ts: dt.datetime, name: str, v: float, unit: str) -> Reading:
    return Reading(schema=1, site=site, ts=ts, seq=0, values={name: Value(v=v, unit=unit)})


async def seed(store: SqliteStore, park: Park, hour: dt.datetime) -> None:
    """A plausible last hour for the reference park: results, events and raw readings."""
    results: list[Result] = [
        Result(measurement="aqi_hourly", site="KM-AIR-KMXY", ts=hour,
               fields={**AQI_SEED, "iaqi_PM2.5": 72, "iaqi_O3": 40, "edition": "2012"}),
        Result(measurement="aqi_daily", site="KM-AIR-KMXY", ts=hour.replace(hour=0) - dt.timedelta(days=1),
               fields={"aqi": 64, "level": 2, "category": "良", "color": "#FFFF00", "primary": "PM10", "edition": "2012"}),
    ]
    for section in park.sites_of("water"):
        klass, meets, worst = WATER_SEED[section.id]
        results.append(Result(measurement="water_class_hourly", site=section.id, ts=hour,
                              fields={"klass": klass, "target_class": section.target_class, "meets": meets, "worst_items": worst}))
    for outlet in park.sites_of("emission"):
        for name, permit in outlet.permit.items():
            if permit.lower is not None:  # pH: a range
                value, limit, multiple = 7.2, f"{permit.lower:g}-{permit.upper:g}", 0.0
            elif (outlet.id, name) == EXCEEDED[:2]:
                value, limit, multiple = EXCEEDED[2], permit.upper, round((EXCEEDED[2] - permit.upper) / permit.upper, 2)
            else:
                value, limit, multiple = round(permit.upper * 0.4, 2), permit.upper, 0.0
            fields = {"value": value, "limit": limit, "compliant": multiple == 0.0, "exceedance_multiple": multiple}
            measurement = "compliance_hourly" if permit.averaging == "1h" else "compliance_daily"
            ts = hour if permit.averaging == "1h" else hour.replace(hour=0) - dt.timedelta(days=1)
            fields["valid_minutes" if permit.averaging == "1h" else "valid_hours"] = 60 if permit.averaging == "1h" else 24
            results.append(Result(measurement=measurement, site=outlet.id, ts=ts, tags={"parameter": name}, fields=fields))
    await store.write_results(results)

    await store.write_events([
        Event(id="ev-llh", kind="below_target", site="KM-RIV-LLH", ts=hour - dt.timedelta(minutes=30), severity="warning",
              message="洛龙河 Ⅲ类，低于目标 Ⅱ类 · Luolong River class III, below target II (TP)"),
        Event(id="ev-nox", kind="exceedance", site="YNDL-G1", ts=hour, severity="critical",
              message="云内动力 燃气锅炉 NOx 230 mg/m³ > 200 (超标 0.15 倍) · NOx above permit"),
        Event(id="ev-xss", kind="maintenance", site="HRSH-W1", ts=hour + dt.timedelta(minutes=20), severity="info",
              message=XSS_MESSAGE),
    ])

    now = dt.datetime.now(park.tz).replace(microsecond=0)
    readings = []
    for site in park.sites.values():
        ts = now - (dt.timedelta(hours=5) if site.id == STALE_SITE else dt.timedelta(seconds=20))
        p = site.parameter(site.parameters[0])
        readings.append(reading(site.id, ts, p.name, 1.0, p.unit))
    await store.write_readings(readings)
