"""The station simulator's generated stream: valid, realistic, scripted, deterministic (no broker)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ingest.simulator import FAULT_KINDS, Event, Simulator, default_scenario, repeat_scenario
from park.model import Park
from park.reading import InvalidReading, validate_reading
from rules.emission import to_reference_o2
from rules.water import item_class

START = dt.datetime(2026, 3, 2, 0, 0)  # a Monday, local midnight


@pytest.fixture(scope="module")
def day(park: Park) -> dict[str, list[tuple[dt.datetime, dict]]]:
    """One simulated day at one reading a minute, with the default scenario: site → [(t, message)]."""
    sim = Simulator(park, "127.0.0.1", 1, start=START.replace(tzinfo=park.tz), seed=7)
    out: dict[str, list[tuple[dt.datetime, dict]]] = {}
    for minute in range(24 * 60):
        t = sim.start + dt.timedelta(minutes=minute)
        for topic, payload in sim.readings_at(t):
            msg = json.loads(payload)
            assert topic == park.mqtt_topic(park.site(msg["site"]))
            out.setdefault(msg["site"], []).append((t, msg))
    return out


def series(day, site: str, parameter: str, key: str = "v") -> list[tuple[dt.datetime, float]]:
    return [(t, m["values"][parameter][key]) for t, m in day[site]]


def hourly_means(points: list[tuple[dt.datetime, float]]) -> dict[dt.datetime, float]:
    hours: dict[dt.datetime, list[float]] = {}
    for t, v in points:
        hours.setdefault(t.replace(minute=0), []).append(v)
    return {h: sum(vs) / len(vs) for h, vs in hours.items()}


def test_every_site_of_the_park_publishes_readings_the_collector_accepts(park):
    sim = Simulator(park, "127.0.0.1", 1, start=START.replace(tzinfo=park.tz), seed=1, scenario=())
    seen = set()
    for hour in range(0, 48, 5):
        t = sim.start + dt.timedelta(hours=hour, minutes=17)
        for topic, payload in sim.readings_at(t):
            reading = validate_reading(payload, park, topic=topic, now=t)
            assert set(reading.values) == set(park.site(reading.site).parameters)
            seen.add(reading.site)
    assert seen == set(park.sites)


def test_seq_increases_per_site_and_ts_is_local_time_with_offset(day):
    for site, msgs in day.items():
        seqs = [m["seq"] for _, m in msgs]
        assert seqs == sorted(set(seqs)), site
        assert all(m["ts"].endswith("+08:00") for _, m in msgs)


def test_quiet_air_is_kunming_clean_with_an_afternoon_ozone_peak(park):
    sim = Simulator(park, "127.0.0.1", 1, start=START.replace(tzinfo=park.tz), seed=3, scenario=())
    site = park.site("KM-AIR-KMXY")
    day = [sim.values_at(site, sim.start + dt.timedelta(minutes=m)) for m in range(0, 24 * 60, 10)]
    pm25 = [v["PM2.5"][0] for v in day]
    assert 18 <= sum(pm25) / len(pm25) <= 35
    o3 = [v["O3"][0] for v in day]
    assert 8 * 6 <= o3.index(max(o3)) <= 18 * 6  # daytime peak
    assert max(o3) <= 160


def test_the_scenario_has_a_pm25_episode_at_aqi_level_iii_or_iv(day):
    means = hourly_means(series(day, "KM-AIR-KMXY", "PM2.5"))
    # HJ 633-2012: PM2.5 1 h (24 h breakpoints) 75–115 → level III, 115–150 → level IV
    assert sum(1 for v in means.values() if v > 115) >= 3
    assert max(means.values()) < 150


def test_the_scenario_has_an_afternoon_with_ozone_above_200(day):
    means = hourly_means(series(day, "KM-AIR-KMXY", "O3"))
    above = [h for h, v in means.items() if v > 200]
    assert above and all(12 <= h.hour <= 17 for h in above)


def test_the_scenario_slides_maliao_river_below_its_target_class(park, day):
    target = park.site("KM-RIV-MLH").target_class
    classes = [item_class("NH3-N", v) for v in hourly_means(series(day, "KM-RIV-MLH", "NH3-N")).values()]
    assert max(classes) == 5 > target
    # the other sections stay within their targets all day
    for site in ("KM-RIV-LLH", "KM-RIV-XBXH"):
        for item in ("NH3-N", "TP", "CODMn", "DO"):
            worst = max(item_class(item, v) for v in hourly_means(series(day, site, item)).values())
            assert worst <= park.site(site).target_class, (site, item)


def test_the_scenario_has_a_stack_exceedance_at_reference_oxygen_for_two_to_three_hours(park, day):
    site = park.site("YNDL-G1")
    limit = site.permit["NOx"].upper
    zs = hourly_means(series(day, "YNDL-G1", "NOx", "zs"))
    over = [h for h, v in zs.items() if v > limit]
    assert 2 <= len(over) <= 3
    # zs is the measured value converted to the outlet's reference O2
    t, msg = day["YNDL-G1"][600]
    v = msg["values"]
    assert v["NOx"]["zs"] == pytest.approx(to_reference_o2(v["NOx"]["v"], v["O2"]["v"], site.reference_o2_pct), abs=0.06)


def test_quiet_stacks_and_outlets_stay_within_realistic_ranges(park):
    sim = Simulator(park, "127.0.0.1", 1, start=START.replace(tzinfo=park.tz), seed=5, scenario=())
    for m in range(0, 7 * 24 * 60, 37):
        t = sim.start + dt.timedelta(minutes=m)
        for site in park.sites.values():
            v = {k: x for k, (x, _) in sim.values_at(site, t).items()}
            if site.role == "gas_outlet":
                assert 5.5 <= v["O2"] <= 9.5 and 40 <= v["NOx"] <= 140 and v["SO2"] < 10 and v["particulates"] < 5
            elif site.role == "wastewater_outlet":
                assert 25 <= v["COD"] <= 65 and 1.5 <= v["NH3-N"] <= 8.5 and 0.15 <= v["TP"] <= 0.45 and 7 <= v["pH"] <= 8


def test_meters_only_count_up_and_faster_on_working_days(park):
    sim = Simulator(park, "127.0.0.1", 1, start=START.replace(tzinfo=park.tz), seed=2, scenario=())
    site = park.site("YNDL-ME")
    totals = [sim.values_at(site, sim.start + dt.timedelta(hours=h))["energy_kwh"][0] for h in range(0, 8 * 24)]
    assert all(b >= a for a, b in zip(totals, totals[1:]))
    monday_noon = totals[12] - totals[11]
    saturday_noon = totals[5 * 24 + 12] - totals[5 * 24 + 11]
    assert monday_noon > 3 * saturday_noon


def test_the_scenario_has_a_silent_station_for_six_hours(day):
    times = [t for t, _ in day["KM-AIR-KMXY"]]
    gaps = [(b - a) for a, b in zip(times, times[1:]) if b - a > dt.timedelta(minutes=1)]
    assert gaps == [dt.timedelta(hours=6, minutes=1)]


def test_the_scenario_flags_a_section_for_maintenance_for_two_hours(day):
    flagged = [t for t, m in day["KM-RIV-LLH"] if all(v.get("flag") == "M" for v in m["values"].values())]
    assert len(flagged) == 120
    assert not any("flag" in v for t, m in day["KM-RIV-XBXH"] for v in m["values"].values())


def test_every_event_of_the_default_scenario_happens_within_the_first_day():
    for event in default_scenario():
        assert event.at_h + event.duration_h + (24 if event.local_hour is not None else 0) <= 48


def test_the_same_seed_gives_the_same_stream_and_another_seed_another(park):
    start = START.replace(tzinfo=park.tz)
    times = [start + dt.timedelta(minutes=m) for m in range(0, 600, 13)]
    a = [Simulator(park, "h", 1, start=start, seed=11).readings_at(t) for t in times]
    b = [Simulator(park, "h", 1, start=start, seed=11).readings_at(t) for t in reversed(times)][::-1]
    c = [Simulator(park, "h", 1, start=start, seed=12).readings_at(t) for t in times]
    assert a == b
    assert a != c


def test_faults_add_bad_messages_beside_the_valid_readings(park):
    start = START.replace(tzinfo=park.tz)
    sim = Simulator(park, "h", 1, start=start, seed=4, faults=0.5, scenario=())
    reasons = []
    valid = 0
    for m in range(200):
        t = start + dt.timedelta(minutes=m)
        for topic, payload in sim.readings_at(t):
            try:
                validate_reading(payload, park, topic=topic, now=t)
                valid += 1
            except InvalidReading as exc:
                reasons.append(str(exc))
    assert valid == 200 * len(park.sites)
    assert 60 <= len(reasons) <= 140
    assert len({r.split(":")[0].split(" ")[0] for r in reasons}) >= 4
    assert len(FAULT_KINDS) == 6


def test_a_custom_event_overrides_the_modelled_value(park):
    start = START.replace(tzinfo=park.tz)
    scenario = (Event(1.0, 1.0, "YNBY-W1", "level", "COD", 150.0),)
    sim = Simulator(park, "h", 1, start=start, scenario=scenario)
    peak = sim.values_at(park.site("YNBY-W1"), start + dt.timedelta(hours=1, minutes=30))["COD"][0]
    assert peak == 150.0


@pytest.mark.parametrize("bad", [{"speed": 0}, {"interval_s": 0}, {"faults": 2.0}, {"start": dt.datetime(2026, 1, 1)}])
def test_bad_settings_are_refused_with_one_line(park, bad):
    with pytest.raises(ValueError) as err:
        Simulator(park, "h", 1, **bad)
    assert "\n" not in str(err.value)


async def test_run_publishes_every_round_over_mqtt_and_stops_at_the_wall_clock(park, mosquitto):
    import asyncio
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[bytes] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-sim-sub")
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{park.mqtt_prefix}/+/+", qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    try:
        assert await asyncio.to_thread(subscribed.wait, 10)
        start = dt.datetime.now(park.tz).replace(second=0, microsecond=0) - dt.timedelta(minutes=30)
        sim = Simulator(park, "127.0.0.1", mosquitto.port, start=start, client_id="test-sim")
        await asyncio.wait_for(sim.run(duration_s=1.5), 30)
        # 30 simulated minutes behind the wall clock: at least 30 rounds, never one from the future
        assert sim.published >= 30 * len(park.sites)
        assert sim.sim_time <= dt.datetime.now(park.tz)
        deadline = asyncio.get_running_loop().time() + 10
        while len(got) < sim.published and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert len(got) == sim.published
        for payload in got[:: max(1, len(got) // 50)]:
            validate_reading(payload, park)
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_a_repeated_scenario_plays_every_event_again_every_period():
    once = default_scenario()
    twice = repeat_scenario(once, every_h=72, times=2)
    assert len(twice) == 2 * len(once)
    assert [e.at_h - 72 for e in twice[len(once):]] == [e.at_h for e in once]
