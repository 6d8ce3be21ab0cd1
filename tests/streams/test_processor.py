"""ParkProcessor, specified on the reference park with a real SqliteStore in a temporary folder.

Readings are built here in code: ``minute_readings`` makes one reading per minute of an hour for a
site, ``hourly_reading`` one HJ 212 hourly (``1h``) reading. Every expected figure comes either
from plain arithmetic on those inputs or from the ``rules/`` function the processor must agree
with; the results are read back from the store, since the store is what the wall page, the alerts
and the evaluation see.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Callable, Iterable, Mapping

import pytest

from park.model import Park
from park.reading import Reading, Value
from rules import aqi as aqi_rules
from rules import emission as emission_rules
from rules import validity
from rules import water as water_rules
from store.schema import MEASUREMENTS, Result
from store.sqlite import SqliteStore
from store.base import StoreUnavailable
from streams.processor import ParkProcessor, process_with_retry

AIR = "KM-AIR-KMXY"
LUOLONG = "KM-RIV-LLH"  # 洛龙河, target class II
MALIAO = "KM-RIV-MLH"  # 马料河, target class III
STACK = "YNDL-G1"  # gas boiler: NOx 200, SO2 50, particulates 20 mg/m³ at 3.5 % O2
OUTFALL = "YNDL-W1"  # wastewater: COD 100, NH3-N 15, TP 0.5 mg/L daily; pH 6–9
WATER_METER = "YNDL-MW"

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
# Everything the store can hold: the schema's measurements and the meters' hourly consumption.
ALL_MEASUREMENTS = (*MEASUREMENTS, "meter_hourly")
BEGINNING = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
END = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)

# Hourly air concentrations (µg/m³, CO mg/m³): all sub-indices below 50 under both editions…
CLEAN_AIR = {"SO2": 8.0, "NO2": 25.0, "PM10": 45.0, "PM2.5": 22.0, "CO": 0.6, "O3": 70.0}
# …and level III under HJ 633-2026 (PM2.5 1 h 90 on the daily breakpoints 60–115 → IAQI 128).
POLLUTED_AIR = {"SO2": 12.0, "NO2": 60.0, "PM10": 140.0, "PM2.5": 90.0, "CO": 1.1, "O3": 120.0}
# 洛龙河 / 马料河 hourly values (mg/L, pH dimensionless): every item class II or better.
CLASS_II_WATER = {"pH": 7.4, "DO": 6.5, "CODMn": 3.5, "COD": 14.0, "BOD5": 2.5, "NH3-N": 0.4, "TP": 0.08, "TN": 0.9}
# The stack as measured: NOx 150 mg/m³ at 9 % O2 is 150 × 17.5 / 12 = 218.75 at 3.5 %: above 200.
STACK_GAS = {"SO2": 10.0, "NOx": 150.0, "particulates": 5.0, "O2": 9.0, "gas_flow": 12000.0, "stack_temp": 120.0}

Values = Mapping[str, float | Callable[[int], float]]


def local(park: Park, *args: int) -> dt.datetime:
    """A park-local time: ``local(park, 2026, 11, 25, 10)``."""
    return dt.datetime(*args, tzinfo=park.tz)


def minute_readings(
    park: Park,
    site_id: str,
    hour: dt.datetime,
    values: Values,
    *,
    minutes: Iterable[int] = range(60),
    flags: Mapping[int, str] | None = None,
    zs: Values | None = None,
) -> list[Reading]:
    """One ``1min`` reading per minute of ``hour``: ``values`` maps a parameter to a value or to a
    function of the minute; ``flags`` maps a minute to the HJ 212 flag of all its values (default
    N); ``zs`` the stack values converted to the reference O2, likewise."""
    site = park.sites[site_id]
    out = []
    for m in minutes:
        flag = (flags or {}).get(m, "N")
        reading_values = {}
        for name, v in values.items():
            z = (zs or {}).get(name)
            reading_values[name] = Value(
                v=float(v(m) if callable(v) else v), unit=site.parameter(name).unit, flag=flag,
                zs=None if z is None else float(z(m) if callable(z) else z))
        out.append(Reading(schema=1, site=site_id, ts=hour + m * MINUTE, seq=m, values=reading_values))
    return out


def hourly_reading(park: Park, site_id: str, hour: dt.datetime, values: Mapping[str, float], *,
                   flag: str = "N", zs: Mapping[str, float] | None = None) -> Reading:
    """One HJ 212 hourly-data (``1h``) reading, stamped with the start of its hour."""
    site = park.sites[site_id]
    return Reading(schema=1, site=site_id, ts=hour, seq=0, interval="1h", values={
        name: Value(v=float(v), unit=site.parameter(name).unit, flag=flag, zs=(zs or {}).get(name))
        for name, v in values.items()
    })


def mean_of(f: Callable[[int], float], minutes: Iterable[int]) -> float:
    ms = list(minutes)
    return math.fsum(f(m) for m in ms) / len(ms)


async def result(store: SqliteStore, measurement: str, site: str, ts: dt.datetime, **tags: str) -> dict:
    """The fields of the one stored result of (measurement, site, tags, ts)."""
    found = [r for r in await store.results(measurement, ts, ts + dt.timedelta(seconds=1), site=site)
             if r.tags == tags and r.ts == ts]
    assert len(found) == 1, f"{len(found)} {measurement} results for {site} {tags} at {ts}"
    return found[0].fields


async def results_of(store: SqliteStore, measurement: str, site: str | None = None) -> list[Result]:
    return await store.results(measurement, BEGINNING, END, site=site)


async def store_contents(store: SqliteStore) -> tuple[dict, list]:
    """Every stored result (by measurement) and every stored event."""
    results = {m: await results_of(store, m) for m in ALL_MEASUREMENTS}
    return results, await store.events(limit=100_000)


async def events_of(store: SqliteStore, kind: str, site: str | None = None) -> list:
    return [e for e in await store.events(limit=100_000) if e.kind == kind and (site is None or e.site == site)]


def aqi_summary(fields: Mapping) -> dict:
    """The fields of an AQI result that a report shows, including every sub-index."""
    keys = ("aqi", "level", "category", "color", "primary", "edition")
    return {k: fields.get(k) for k in keys} | {k: v for k, v in fields.items() if k.startswith("iaqi_")}


def expected_aqi(report: aqi_rules.AqiResult) -> dict:
    return {
        "aqi": report.aqi, "level": report.level, "category": report.category, "color": report.color,
        "primary": ",".join(report.primary or ()), "edition": report.edition,
    } | {f"iaqi_{k}": v for k, v in report.iaqi.items()}


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore.open(tmp_path / "ecopark.db")
    yield s
    await s.close()


@pytest.fixture
def processor(park, store) -> ParkProcessor:
    return ParkProcessor(park, store)


# --- hourly means --------------------------------------------------------------------------------


async def test_sixty_valid_minutes_give_the_arithmetic_mean_of_the_hour(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    values = {
        "PM2.5": lambda m: 20.0 + 0.5 * m,
        "PM10": lambda m: 40.0 + (m % 7),
        "SO2": 9.0,
        "NO2": lambda m: 30.0 + (m % 3) * 0.1,
        "CO": lambda m: 0.5 + 0.01 * m,
        "O3": lambda m: 60.0 + m,
    }
    await processor.process(minute_readings(park, AIR, hour, values))
    for name, v in values.items():
        fields = await result(store, "hourly_mean", AIR, hour, parameter=name)
        expected = mean_of(v, range(60)) if callable(v) else v
        assert fields["value"] == pytest.approx(expected, rel=1e-12), name
        assert fields["valid_minutes"] == 60
        assert fields["valid"] is True


async def test_a_minute_belongs_to_the_hour_labelled_by_the_start_before_it(park, store, processor):
    ten = local(park, 2026, 11, 25, 10)
    batch = minute_readings(park, AIR, ten, {"PM2.5": 20.0}) + minute_readings(
        park, AIR, ten + HOUR, {"PM2.5": 40.0}, minutes=range(45))
    await processor.process(batch)
    assert await result(store, "hourly_mean", AIR, ten, parameter="PM2.5") == {"value": 20.0, "valid_minutes": 60, "valid": True}
    assert await result(store, "hourly_mean", AIR, ten + HOUR, parameter="PM2.5") == {"value": 40.0, "valid_minutes": 45, "valid": True}


async def test_45_valid_minutes_and_15_maintenance_minutes_make_a_valid_hour_of_the_valid_ones(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    maintenance = {m: "M" for m in range(45, 60)}
    # the M minutes carry a wild value (a calibration gas): it must not enter the mean
    pm25 = lambda m: 999.0 if m >= 45 else 30.0 + m  # noqa: E731
    await processor.process(minute_readings(park, AIR, hour, {"PM2.5": pm25}, flags=maintenance))
    fields = await result(store, "hourly_mean", AIR, hour, parameter="PM2.5")
    assert fields == {"value": pytest.approx(mean_of(pm25, range(45))), "valid_minutes": 45, "valid": True}


async def test_44_valid_minutes_make_an_invalid_hour_that_gives_no_sub_index(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    # PM2.5 would be IAQI > 200 if the 44 minutes were taken; the other pollutants are valid and clean
    pm25 = minute_readings(park, AIR, hour, {"PM2.5": 180.0}, flags={m: "M" for m in range(44, 60)})
    others = minute_readings(park, AIR, hour, {k: v for k, v in CLEAN_AIR.items() if k != "PM2.5"})
    await processor.process(pm25 + others)

    assert await result(store, "hourly_mean", AIR, hour, parameter="PM2.5") == {"value": None, "valid_minutes": 44, "valid": False}
    aqi = await result(store, "aqi_hourly", AIR, hour)
    assert "iaqi_PM2.5" not in aqi
    assert "PM2.5" in aqi["missing"].split(",")
    conc = {k: v for k, v in CLEAN_AIR.items() if k != "PM2.5"} | {"PM2.5": None}
    assert aqi_summary(aqi) == expected_aqi(aqi_rules.realtime_aqi(conc, when=hour))
    assert aqi["aqi"] is None  # HJ 633-2026 5.3: an indicator missing and AQI ≤ 100 → NA
    assert await events_of(store, "aqi_level") == []


async def test_an_hourly_1h_reading_is_the_hourly_mean_itself(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    await processor.process([hourly_reading(park, AIR, hour, POLLUTED_AIR)])
    for name, v in POLLUTED_AIR.items():
        assert await result(store, "hourly_mean", AIR, hour, parameter=name) == {"value": v, "valid_minutes": 60, "valid": True}
    aqi = await result(store, "aqi_hourly", AIR, hour)
    assert aqi_summary(aqi) == expected_aqi(aqi_rules.realtime_aqi(POLLUTED_AIR, when=hour))


async def test_an_hourly_1h_reading_flagged_maintenance_is_an_invalid_hour(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    await processor.process([hourly_reading(park, AIR, hour, {"PM2.5": 90.0}, flag="M")])
    fields = await result(store, "hourly_mean", AIR, hour, parameter="PM2.5")
    assert fields["value"] is None and fields["valid"] is False and fields["valid_minutes"] == 0


# --- real-time AQI -------------------------------------------------------------------------------


async def test_hourly_aqi_of_a_2026_hour_is_hj633_2026_realtime_aqi_of_its_means(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    await processor.process(minute_readings(park, AIR, hour, POLLUTED_AIR))
    aqi = await result(store, "aqi_hourly", AIR, hour)
    expected = aqi_rules.realtime_aqi(POLLUTED_AIR, when=hour)
    assert expected.edition == "2026" and expected.level == 3
    assert aqi_summary(aqi) == expected_aqi(expected)
    assert (aqi["category"], aqi["color"], aqi["primary"]) == ("轻度污染", "#FF7E00", "PM2.5")


@pytest.mark.parametrize("pm_realtime", ["24h_moving", "1h_on_24h_bp"])
async def test_hourly_aqi_of_a_2025_hour_is_hj633_2012_realtime_aqi_of_its_means(park, store, pm_realtime):
    processor = ParkProcessor(park, store, pm_realtime=pm_realtime)
    hour = local(park, 2025, 11, 25, 10)
    await processor.process(minute_readings(park, AIR, hour, POLLUTED_AIR))
    aqi = await result(store, "aqi_hourly", AIR, hour)
    # one hour of data: no valid 8 h or 24 h moving mean yet
    conc = POLLUTED_AIR | {"O3_8h": None, "PM10_24h": None, "PM2.5_24h": None}
    expected = aqi_rules.realtime_aqi(conc, when=hour, pm_realtime=pm_realtime)
    assert expected.edition == "2012"
    assert aqi_summary(aqi) == expected_aqi(expected)


async def test_an_hour_at_aqi_level_3_raises_one_aqi_level_event(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    readings = minute_readings(park, AIR, hour, POLLUTED_AIR)
    outs = [await processor.process(readings[i:i + 20]) for i in range(0, 60, 20)]
    events = await events_of(store, "aqi_level")
    assert len(events) == 1
    (event,) = events
    assert event.site == AIR and event.ts == hour
    assert event.data["level"] == 3 and event.data["primary"] == "PM2.5"
    assert {e.id for o in outs for e in o.events if e.kind == "aqi_level"} == {event.id}


async def test_a_clean_hour_raises_no_aqi_level_event(park, store, processor):
    out = await processor.process(minute_readings(park, AIR, local(park, 2026, 11, 25, 10), CLEAN_AIR))
    assert [e for e in out.events if e.kind == "aqi_level"] == []
    assert await events_of(store, "aqi_level") == []


# --- at-least-once delivery ----------------------------------------------------------------------


async def test_processing_the_same_batch_twice_changes_nothing(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    batch = (minute_readings(park, AIR, hour, POLLUTED_AIR, flags={m: "M" for m in range(5)})
             + [hourly_reading(park, LUOLONG, hour, CLASS_II_WATER | {"NH3-N": 0.8})]
             + minute_readings(park, STACK, hour, STACK_GAS))
    first = await processor.process(batch)
    before = await store_contents(store)
    assert {e.kind for e in first.events} == {"aqi_level", "maintenance", "below_target", "exceedance"}

    again = await processor.process(batch)
    assert await store_contents(store) == before
    assert sorted(e.id for e in again.events) == sorted(e.id for e in first.events)
    assert sorted(r.key for r in again.results) == sorted(r.key for r in first.results)


async def test_a_batch_replayed_on_a_restarted_processor_changes_nothing(park, store):
    hour = local(park, 2026, 11, 25, 10)
    batch = minute_readings(park, AIR, hour, POLLUTED_AIR)
    await ParkProcessor(park, store).process(batch)
    before = await store_contents(store)
    await ParkProcessor(park, store).process(batch)
    assert await store_contents(store) == before


# --- late readings -------------------------------------------------------------------------------


async def test_a_reading_two_hours_late_recomputes_its_hour_the_hours_after_it_and_its_day(park, store, processor):
    # 2025: HJ 633-2012, whose real-time AQI takes the O3 8 h and PM 24 h moving means.
    day = local(park, 2025, 11, 25)
    o3 = lambda h: 300.0 if h == 21 else 150.0  # noqa: E731
    pm25 = lambda h: 30.0 + h  # noqa: E731
    pm10 = lambda h: 60.0 + h  # noqa: E731
    def hour_values(h: int) -> dict[str, float]:
        return {"SO2": 10.0, "NO2": 30.0, "CO": 0.8, "PM10": pm10(h), "PM2.5": pm25(h), "O3": o3(h)}
    for h in range(24):
        # 21:44 … 21:59 have not arrived: hour 21 has 44 minutes, not yet a valid hour
        await processor.process(minute_readings(park, AIR, day + h * HOUR, hour_values(h),
                                                minutes=range(44) if h == 21 else range(60)))
    h21, h22, h23 = (day + h * HOUR for h in (21, 22, 23))
    assert (await result(store, "hourly_mean", AIR, h21, parameter="O3"))["valid"] is False
    aqi_before = await result(store, "aqi_hourly", AIR, h23)
    daily_before = await result(store, "daily_mean", AIR, day, parameter="PM2.5")
    assert daily_before["valid_hours"] == 23

    late = minute_readings(park, AIR, h21, hour_values(21), minutes=[59])  # newest is 23:59: 2 h late
    out = await processor.process(late)
    assert out.late == 0

    assert await result(store, "hourly_mean", AIR, h21, parameter="O3") == {"value": 300.0, "valid_minutes": 45, "valid": True}
    pm25_hours = [pm25(h) for h in range(24)]
    assert (await result(store, "moving_mean", AIR, h22, parameter="PM2.5", window="24h"))["value"] == pytest.approx(
        math.fsum(pm25_hours[:23]) / 23)
    o3_8h = math.fsum(o3(h) for h in range(16, 24)) / 8  # 168.75: now with hour 21
    assert (await result(store, "moving_mean", AIR, h23, parameter="O3", window="8h")) == {
        "value": pytest.approx(o3_8h), "valid_hours": 8, "valid": True}
    conc = hour_values(23) | {"O3_8h": o3_8h, "PM10_24h": math.fsum(pm10(h) for h in range(24)) / 24,
                              "PM2.5_24h": math.fsum(pm25_hours) / 24}
    aqi_after = await result(store, "aqi_hourly", AIR, h23)
    assert aqi_summary(aqi_after) == expected_aqi(aqi_rules.realtime_aqi(conc, when=h23))
    assert aqi_after["aqi"] > aqi_before["aqi"]
    assert await result(store, "daily_mean", AIR, day, parameter="PM2.5") == {
        "value": pytest.approx(math.fsum(pm25_hours) / 24), "valid_hours": 24, "valid": True}


async def test_a_late_reading_whose_minutes_left_the_cache_is_recomputed_from_the_stored_minutes(park, store, processor):
    start = local(park, 2026, 11, 25, 10)
    await processor.process(minute_readings(park, AIR, start, {"PM2.5": lambda m: 20.0 + m}, minutes=range(44)))
    for h in range(1, 7):
        await processor.process(minute_readings(park, AIR, start + h * HOUR, {"PM2.5": 30.0}))
    # six hours later, minute 10:59 arrives: the hour holds 45 valid minutes, not one
    await processor.process(minute_readings(park, AIR, start, {"PM2.5": lambda m: 20.0 + m}, minutes=[59]))
    expected = mean_of(lambda m: 20.0 + m, [*range(44), 59])
    assert await result(store, "hourly_mean", AIR, start, parameter="PM2.5") == {
        "value": pytest.approx(expected), "valid_minutes": 45, "valid": True}


async def test_a_reading_older_than_the_lateness_horizon_is_stored_raw_and_reported_not_recomputed(park, store, processor):
    assert park.lateness_horizon_h == 48
    old = local(park, 2026, 11, 23, 10)
    await processor.process(minute_readings(park, AIR, old, CLEAN_AIR, minutes=range(59)))
    await processor.process(minute_readings(park, AIR, old + 50 * HOUR, CLEAN_AIR))
    results_before, _ = await store_contents(store)

    straggler = minute_readings(park, AIR, old, POLLUTED_AIR, minutes=[59])  # 50 h behind 12:59
    out = await processor.process(straggler)

    assert out.late == 1 and out.results == []
    (event,) = [e for e in out.events if e.kind == "late_reading"]
    assert event.site == AIR and event.ts == straggler[0].ts
    assert [e.id for e in await events_of(store, "late_reading")] == [event.id]
    stored = await store.readings(AIR, old + 59 * MINUTE, old + HOUR)
    assert {(r.parameter, r.value) for r in stored} == set(POLLUTED_AIR.items())
    results_after, _ = await store_contents(store)
    assert results_after == results_before


async def test_a_straggler_replayed_on_a_restarted_processor_is_still_too_late(park, store):
    # Kafka replays the batch a crashed worker had not committed: the new worker must judge the
    # straggler as the old one did, not reopen a two-day-old hour (DESIGN: idempotent).
    old = local(park, 2026, 11, 23, 10)
    first = ParkProcessor(park, store)
    await first.process(minute_readings(park, AIR, old, CLEAN_AIR, minutes=range(59)))
    await first.process(minute_readings(park, AIR, old + 50 * HOUR, CLEAN_AIR))
    straggler = minute_readings(park, AIR, old, POLLUTED_AIR, minutes=[59])
    await first.process(straggler)
    before = await store_contents(store)

    out = await ParkProcessor(park, store).process(straggler)
    assert out.late == 1 and out.results == []
    assert await store_contents(store) == before


# --- restart -------------------------------------------------------------------------------------


async def test_a_new_processor_after_a_restart_completes_the_hour_from_the_stored_minutes(park, store, tmp_path):
    hour = local(park, 2026, 11, 25, 10)
    values = {"PM2.5": lambda m: 20.0 if m < 30 else 60.0, "O3": lambda m: 50.0 + m, "NO2": 35.0}
    readings = minute_readings(park, AIR, hour, values)

    await ParkProcessor(park, store).process(readings[:30])  # worker A killed at half past
    await ParkProcessor(park, store).process(readings[30:])  # worker B takes over

    reference_store = SqliteStore.open(tmp_path / "reference.db")
    try:
        await ParkProcessor(park, reference_store).process(readings)
        for name in values:
            expected = await result(reference_store, "hourly_mean", AIR, hour, parameter=name)
            assert expected["valid_minutes"] == 60
            assert await result(store, "hourly_mean", AIR, hour, parameter=name) == expected
        assert await result(store, "aqi_hourly", AIR, hour) == await result(reference_store, "aqi_hourly", AIR, hour)
    finally:
        await reference_store.close()


# --- daily means and daily AQI -------------------------------------------------------------------


def _day_of_air(h: int) -> dict[str, float]:
    return {"SO2": 5.0 + h, "NO2": 20.0 + h, "PM10": 50.0 + 2 * h, "PM2.5": 25.0 + h, "CO": 0.5 + 0.05 * h, "O3": 40.0 + 8 * h}


async def test_24_valid_hours_give_daily_means_o3_max_8h_and_the_daily_aqi(park, store, processor):
    day = local(park, 2026, 11, 25)
    await processor.process([hourly_reading(park, AIR, day + h * HOUR, _day_of_air(h)) for h in range(24)])

    conc: dict[str, float | None] = {}
    for name in ("SO2", "NO2", "PM10", "PM2.5", "CO"):
        hourly = [_day_of_air(h)[name] for h in range(24)]
        fields = await result(store, "daily_mean", AIR, day, parameter=name)
        assert fields == {"value": pytest.approx(math.fsum(hourly) / 24), "valid_hours": 24, "valid": True}, name
        conc[name] = fields["value"]
    o3 = [_day_of_air(h)["O3"] for h in range(24)]
    mda8 = validity.o3_daily_max_8h(o3, when=day.date())
    o3_fields = await result(store, "daily_mean", AIR, day, parameter="O3")
    assert o3_fields["statistic"] == "max_8h" and o3_fields["valid"] is True
    assert o3_fields["value"] == pytest.approx(mda8.value)
    conc |= {"O3_8h": mda8.value, "O3_1h": max(o3)}

    aqi = await result(store, "aqi_daily", AIR, day)
    expected = aqi_rules.daily_aqi(conc, when=day.date())
    assert expected.edition == "2026"
    assert aqi_summary(aqi) == expected_aqi(expected)


@pytest.mark.parametrize(("valid_hours", "valid"), [(19, False), (20, True)])
async def test_a_day_needs_20_valid_hours_for_a_daily_mean(park, store, processor, valid_hours, valid):
    day = local(park, 2026, 11, 25)
    await processor.process([
        hourly_reading(park, AIR, day + h * HOUR, _day_of_air(h), flag="N" if h < valid_hours else "M")
        for h in range(24)])
    fields = await result(store, "daily_mean", AIR, day, parameter="PM2.5")
    assert fields["valid_hours"] == valid_hours and fields["valid"] is valid
    if valid:
        assert fields["value"] == pytest.approx(math.fsum(_day_of_air(h)["PM2.5"] for h in range(valid_hours)) / valid_hours)
    else:
        assert fields["value"] is None


# --- water ---------------------------------------------------------------------------------------


async def test_a_section_hour_is_classed_by_gb3838_and_judged_against_its_target(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    out = await processor.process([hourly_reading(park, MALIAO, hour, CLASS_II_WATER)])
    fields = await result(store, "water_class_hourly", MALIAO, hour)
    assert fields["klass"] == water_rules.section_class(CLASS_II_WATER, "river").klass == 2
    assert fields["target_class"] == park.sites[MALIAO].target_class == 3
    assert fields["meets"] is True
    assert [e for e in out.events if e.kind == "below_target"] == []


async def test_luolong_river_at_class_iii_is_below_its_class_ii_target(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    values = CLASS_II_WATER | {"NH3-N": 0.8}  # 0.5 < 0.8 ≤ 1.0 mg/L: class III
    await processor.process([hourly_reading(park, LUOLONG, hour, values)])
    fields = await result(store, "water_class_hourly", LUOLONG, hour)
    assert (fields["klass"], fields["target_class"], fields["meets"]) == (3, 2, False)
    assert fields["worst_items"] == "NH3-N"
    (event,) = await events_of(store, "below_target", LUOLONG)
    assert event.ts == hour and event.data["klass"] == 3 and event.data["target_class"] == 2


async def test_a_section_day_is_classed_on_its_daily_means(park, store, processor):
    day = local(park, 2026, 11, 25)
    nh3n = lambda h: 0.3 + 0.03 * h  # noqa: E731  # 0.30 … 0.99 mg/L, daily mean 0.645: class III
    await processor.process([hourly_reading(park, LUOLONG, day + h * HOUR, CLASS_II_WATER | {"NH3-N": nh3n(h)})
                             for h in range(24)])
    daily_means = CLASS_II_WATER | {"NH3-N": math.fsum(nh3n(h) for h in range(24)) / 24}
    fields = await result(store, "water_class_daily", LUOLONG, day)
    assert fields["klass"] == water_rules.section_class(daily_means, "river").klass == 3
    assert fields["meets"] is False
    assert (await result(store, "daily_mean", LUOLONG, day, parameter="NH3-N"))["value"] == pytest.approx(daily_means["NH3-N"])


# --- stack gas -----------------------------------------------------------------------------------


async def test_stack_compliance_judges_the_reported_zs_value_when_there_is_one(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    zs = {"NOx": 180.0, "SO2": 12.0, "particulates": 6.0}
    out = await processor.process(minute_readings(park, STACK, hour, STACK_GAS, zs=zs))
    fields = await result(store, "compliance_hourly", STACK, hour, parameter="NOx")
    assert (fields["value"], fields["measured"], fields["limit"]) == (180.0, 150.0, 200.0)
    assert fields["compliant"] is True and fields["exceedance_multiple"] == 0.0
    assert [e for e in out.events if e.kind == "exceedance"] == []


async def test_stack_compliance_converts_to_3_5_percent_o2_and_reports_an_exceedance(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    await processor.process(minute_readings(park, STACK, hour, STACK_GAS))
    converted = emission_rules.to_reference_o2(150.0, 9.0, 3.5)
    assert converted == pytest.approx(218.75)
    fields = await result(store, "compliance_hourly", STACK, hour, parameter="NOx")
    assert fields["value"] == pytest.approx(converted)
    assert fields["limit"] == 200.0 and fields["compliant"] is False
    assert fields["exceedance_multiple"] == pytest.approx((converted - 200.0) / 200.0)
    so2 = await result(store, "compliance_hourly", STACK, hour, parameter="SO2")
    assert so2["value"] == pytest.approx(emission_rules.to_reference_o2(10.0, 9.0, 3.5)) and so2["compliant"] is True
    (event,) = await events_of(store, "exceedance", STACK)
    assert event.ts == hour and event.data["parameter"] == "NOx" and event.data["period"] == "1h"
    assert event.data["exceedance_multiple"] == pytest.approx(0.09375)


async def test_a_stack_hour_with_fewer_than_45_valid_minutes_is_not_judged(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    dirty = STACK_GAS | {"NOx": 400.0}
    await processor.process(minute_readings(park, STACK, hour, dirty, flags={m: "D" for m in range(44, 60)}))
    assert await results_of(store, "compliance_hourly", STACK) == []  # not judged while the hour runs
    await processor.process(minute_readings(park, STACK, hour + HOUR, STACK_GAS, minutes=[0]))  # the hour is over
    fields = await result(store, "compliance_hourly", STACK, hour, parameter="NOx")
    assert fields["compliant"] is None and fields["valid_minutes"] == 44
    assert await events_of(store, "exceedance") == []


async def test_stack_mass_emission_is_the_measured_concentration_times_the_gas_flow(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    await processor.process(minute_readings(park, STACK, hour, STACK_GAS))
    fields = await result(store, "compliance_hourly", STACK, hour, parameter="NOx")
    assert fields["mass_kg_h"] == pytest.approx(emission_rules.mass_emission_kg_h(150.0, 12000.0)) == 1.8


# --- wastewater ----------------------------------------------------------------------------------


async def test_wastewater_daily_compliance_is_judged_on_the_flow_weighted_mean(park, store, processor):
    day = local(park, 2026, 11, 25)
    # COD 60 mg/L at 30 m³/h and 150 mg/L at 10 m³/h, hour after hour: the arithmetic mean (105)
    # exceeds 100, the flow-weighted one (82.5) does not
    cod = [60.0 if h % 2 == 0 else 150.0 for h in range(24)]
    flow = [30.0 if h % 2 == 0 else 10.0 for h in range(24)]
    await processor.process([
        hourly_reading(park, OUTFALL, day + h * HOUR, {"COD": cod[h], "NH3-N": 5.0, "TP": 0.2, "pH": 7.2, "water_flow": flow[h]})
        for h in range(24)])
    fields = await result(store, "compliance_daily", OUTFALL, day, parameter="COD")
    assert fields["value"] == pytest.approx(emission_rules.flow_weighted_mean(cod, flow)) == 82.5
    assert (fields["limit"], fields["compliant"], fields["valid_hours"]) == (100.0, True, 24)
    assert await events_of(store, "exceedance", OUTFALL) == []


async def test_wastewater_hours_without_discharge_weigh_nothing_in_the_daily_mean(park, store, processor):
    day = local(park, 2026, 11, 25)
    # a day shift discharging COD 80 mg/L at 20 m³/h; at night no flow, and the probe reads the
    # standing water (150 mg/L): Σ C·D / Σ D is 80, the arithmetic mean (115) would be an exceedance
    cod = [80.0 if 8 <= h < 20 else 150.0 for h in range(24)]
    flow = [20.0 if 8 <= h < 20 else 0.0 for h in range(24)]
    await processor.process([
        hourly_reading(park, OUTFALL, day + h * HOUR, {"COD": cod[h], "NH3-N": 5.0, "TP": 0.2, "pH": 7.2, "water_flow": flow[h]})
        for h in range(24)])
    fields = await result(store, "compliance_daily", OUTFALL, day, parameter="COD")
    assert fields["value"] == pytest.approx(emission_rules.flow_weighted_mean(cod, flow)) == 80.0
    assert fields["compliant"] is True
    assert await events_of(store, "exceedance", OUTFALL) == []


async def test_wastewater_ph_outside_6_to_9_is_an_hourly_exceedance(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    base = {"COD": 50.0, "NH3-N": 5.0, "TP": 0.2, "water_flow": 20.0}
    await processor.process(minute_readings(park, OUTFALL, hour, base | {"pH": 7.0}))
    await processor.process(minute_readings(park, OUTFALL, hour + HOUR, base | {"pH": 9.5}))
    assert (await result(store, "compliance_hourly", OUTFALL, hour, parameter="pH"))["compliant"] is True
    fields = await result(store, "compliance_hourly", OUTFALL, hour + HOUR, parameter="pH")
    assert fields["value"] == 9.5 and fields["compliant"] is False
    (event,) = await events_of(store, "exceedance", OUTFALL)
    assert event.ts == hour + HOUR and event.data["parameter"] == "pH"


# --- meters --------------------------------------------------------------------------------------


async def test_a_meters_hourly_consumption_is_its_last_minus_its_first_total(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    await processor.process(minute_readings(park, WATER_METER, hour, {"water_m3": lambda m: 1000.0 + 2.5 * m}))
    fields = await result(store, "meter_hourly", WATER_METER, hour, parameter="water_m3")
    assert fields["consumption"] == pytest.approx(2.5 * 59) and fields["valid"] is True


# --- maintenance and silence ---------------------------------------------------------------------


async def test_maintenance_flags_raise_one_maintenance_event_per_site_hour(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    flags = {m: "M" for m in (*range(10, 15), *range(40, 45))}
    first_hour = minute_readings(park, AIR, hour, CLEAN_AIR, flags=flags)
    await processor.process(first_hour[:30])  # maintenance minutes in both batches
    await processor.process(first_hour[30:])
    await processor.process(minute_readings(park, AIR, hour + HOUR, CLEAN_AIR, flags={0: "M"}))
    events = sorted(await events_of(store, "maintenance", AIR), key=lambda e: e.ts)
    assert [e.ts for e in events] == [hour, hour + HOUR]
    assert all(e.data["flags"] == "M" for e in events)


async def test_a_site_lagging_the_park_by_more_than_silence_after_is_reported_silent_once(park, store):
    # silence_grace_s=0: judge in reading time alone (the wall-clock grace is for fast simulations)
    processor = ParkProcessor(park, store, silence_after=dt.timedelta(hours=2), silence_grace_s=0)
    ten = local(park, 2026, 11, 25, 10)
    await processor.process([hourly_reading(park, LUOLONG, ten, CLASS_II_WATER)])
    await processor.process([hourly_reading(park, MALIAO, ten + 2 * HOUR, CLASS_II_WATER)])
    await processor.process([hourly_reading(park, AIR, ten + h * HOUR, CLEAN_AIR) for h in range(4)])

    silent = await processor.check_silence()  # park at 13:00: 洛龙河 3 h behind, 马料河 1 h
    assert [(e.kind, e.site, e.ts) for e in silent] == [("silent", LUOLONG, ten)]
    assert await processor.check_silence() == []
    assert len(await events_of(store, "silent")) == 1

    out = await processor.process([hourly_reading(park, LUOLONG, ten + 3 * HOUR, CLASS_II_WATER)])
    assert [(e.kind, e.site) for e in out.events if e.kind == "recovered"] == [("recovered", LUOLONG)]
    assert len(await events_of(store, "recovered", LUOLONG)) == 1
    assert await processor.check_silence() == []


class _StoreDownFor:
    """The real store behind a switch: the first ``failures`` calls raise StoreUnavailable."""

    def __init__(self, inner, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args, **kwargs):
            if self.failures > 0:
                self.failures -= 1
                raise StoreUnavailable("store down (test)")
            return await attr(*args, **kwargs)

        return call


async def test_a_store_outage_holds_the_batch_and_loses_nothing_when_the_store_returns(park, store):
    flaky = _StoreDownFor(store, failures=5)
    processor = ParkProcessor(park, flaky)
    hour = local(park, 2026, 11, 25, 10)
    batch = minute_readings(park, AIR, hour, CLEAN_AIR)
    out = await process_with_retry(processor, batch, initial_s=0.01, max_s=0.05)
    assert processor.counters["store_retries"] == 5
    fields = await result(store, "hourly_mean", AIR, hour, parameter="PM2.5")
    assert fields["valid_minutes"] == 60
    assert any(r.measurement == "aqi_hourly" for r in out.results)


async def test_a_running_hour_without_valid_data_shows_no_judgement_until_it_is_valid(park, store, processor):
    hour = local(park, 2026, 11, 25, 10)
    await processor.process(minute_readings(park, AIR, hour, CLEAN_AIR, minutes=range(10)))
    assert await results_of(store, "aqi_hourly", AIR) == []  # 10 minutes: no NA tile mid-hour
    await processor.process(minute_readings(park, AIR, hour, CLEAN_AIR, minutes=range(10, 45)))
    assert (await result(store, "aqi_hourly", AIR, hour))["aqi"] is not None


async def test_a_silent_site_on_a_fast_clock_must_also_be_quiet_on_the_wall_clock(park, store):
    processor = ParkProcessor(park, store, silence_after=dt.timedelta(hours=2), silence_grace_s=3600)
    ten = local(park, 2026, 11, 25, 10)
    await processor.process([hourly_reading(park, LUOLONG, ten, CLASS_II_WATER)])
    await processor.process([hourly_reading(park, AIR, ten + h * HOUR, CLEAN_AIR) for h in range(4)])
    assert await processor.check_silence() == []  # 3 h behind in reading time, heard a moment ago


async def test_a_site_silent_before_a_restart_is_still_reported_by_the_new_processor(park, store):
    ten = local(park, 2026, 11, 25, 10)
    before = ParkProcessor(park, store, silence_after=dt.timedelta(hours=2), silence_grace_s=0)
    await before.process([hourly_reading(park, LUOLONG, ten, CLASS_II_WATER)])
    await before.process([hourly_reading(park, AIR, ten + h * HOUR, CLEAN_AIR) for h in range(2)])
    after = ParkProcessor(park, store, silence_after=dt.timedelta(hours=2), silence_grace_s=0)  # the restart
    await after.process([hourly_reading(park, AIR, ten + h * HOUR, CLEAN_AIR) for h in range(2, 4)])
    silent = await after.check_silence()  # 洛龙河 last reported 10:00, the park is at 13:00
    assert [(e.kind, e.site, e.ts) for e in silent] == [("silent", LUOLONG, ten)]
