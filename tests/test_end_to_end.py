"""The park end to end: MQTT → collector → Kafka (Tansu) → Faust worker → SQLite store.

Real Mosquitto and Tansu from the fixtures, the real collector in this process, the real Faust
worker as a child process (as ``ecopark demo`` runs it). The tests publish readings over MQTT and
wait — polling the store, never sleeping a fixed time — until the derived results appear.
"""

from __future__ import annotations

import datetime as dt

import pytest

from rules import aqi as aqi_rules
from tests.pipeline import is_true, payload, running_pipeline, until, wait_for_result



@pytest.fixture
async def pipeline(park, mosquitto, fresh_tansu, tmp_path):
    """Collector (in process) and worker (child process) on real brokers; yields helpers."""
    async with running_pipeline(park, mosquitto.port, fresh_tansu, tmp_path, "e2e") as parts:
        yield parts


async def test_readings_published_over_mqtt_become_hourly_means_aqi_class_and_compliance(pipeline):
    park, store, publish = pipeline["park"], pipeline["store"], pipeline["publish"]
    hour = dt.datetime(2026, 11, 24, 10, 0, tzinfo=park.tz)
    air = {"SO2": 8.0, "NO2": 30.0, "PM10": 90.0, "PM2.5": 70.0, "CO": 0.8, "O3": 60.0}
    river = {"pH": 7.6, "DO": 7.0, "CODMn": 3.5, "COD": 14.0, "BOD5": 2.5, "NH3-N": 0.4, "TP": 0.08, "TN": 1.2}
    stack = {"SO2": 5.0, "NOx": 120.0, "particulates": 3.0, "O2": 9.0, "gas_flow": 20000.0, "stack_temp": 120.0}
    for minute in range(60):
        ts = hour + dt.timedelta(minutes=minute)
        publish.reading("KM-AIR-KMXY", ts, air, seq=minute)
        publish.reading("KM-RIV-LLH", ts, river, seq=minute)
        publish.reading("YNDL-G1", ts, stack, seq=minute)
    publish.wait_all()

    aqi = await wait_for_result(store, "aqi_hourly", "KM-AIR-KMXY", hour, lambda f: f.get("aqi") is not None)
    expected = aqi_rules.realtime_aqi(air, when=hour)
    assert aqi.fields["aqi"] == expected.aqi
    assert aqi.fields["primary"] == ",".join(expected.primary)
    assert aqi.fields["color"] == expected.color

    means = {r.tags["parameter"]: r for r in await store.results("hourly_mean", hour, hour + dt.timedelta(hours=1), site="KM-AIR-KMXY")}
    assert means["PM2.5"].fields["value"] == pytest.approx(70.0)
    assert means["PM2.5"].fields["valid_minutes"] == 60

    section = await wait_for_result(store, "water_class_hourly", "KM-RIV-LLH", hour, lambda f: f.get("klass") is not None)
    assert section.fields["klass"] == 2  # NH3-N 0.4 ≤ 0.5 and TP 0.08 ≤ 0.1: class II
    assert section.fields["meets"] is True

    nox = await wait_for_result(store, "compliance_hourly", "YNDL-G1", hour, lambda f: f.get("compliant") is not None, parameter="NOx")
    # GB 13271-2014: gas boilers are judged at 3.5 % O2: 120 × (21 − 3.5) / (21 − 9) = 175 ≤ 200
    assert nox.fields["value"] == pytest.approx(175.0)
    assert nox.fields["compliant"] is True


async def test_bad_messages_go_to_the_dead_letter_topic_and_the_good_ones_around_them_still_count(pipeline):
    park, store, publish = pipeline["park"], pipeline["store"], pipeline["publish"]
    hour = dt.datetime(2026, 11, 24, 12, 0, tzinfo=park.tz)
    values = {"SO2": 8.0, "NO2": 30.0, "PM10": 40.0, "PM2.5": 20.0, "CO": 0.5, "O3": 50.0}
    bad = [
        ("ecopark/air/KM-AIR-KMXY", b"{not json"),
        ("ecopark/air/KM-AIR-NOPE", payload("KM-AIR-NOPE", hour, values, 1)),
        ("ecopark/air/KM-AIR-KMXY", payload("KM-AIR-KMXY", hour, {"PM2.5": -3.0}, 2)),
        ("ecopark/water/KM-RIV-LLH", payload("KM-AIR-KMXY", hour, values, 3)),
    ]
    for minute in range(60):
        if minute < len(bad):
            publish.raw(*bad[minute])
        publish.reading("KM-AIR-KMXY", hour + dt.timedelta(minutes=minute), values, seq=1000 + minute)
    publish.wait_all()
    means = await wait_for_result(store, "hourly_mean", "KM-AIR-KMXY", hour, lambda f: f.get("valid_minutes") == 60, parameter="PM2.5")
    assert means.fields["value"] == pytest.approx(20.0)
    collector = pipeline["collector"]
    await until(lambda: is_true(collector.deadlettered_total >= len(bad)), "dead letters counted")


async def test_a_worker_killed_mid_hour_recomputes_the_hour_whole_after_restart(pipeline):
    park, store, publish, worker = pipeline["park"], pipeline["store"], pipeline["publish"], pipeline["worker"]
    hour = dt.datetime(2026, 11, 24, 14, 0, tzinfo=park.tz)
    values = {"SO2": 8.0, "NO2": 30.0, "PM10": 40.0, "PM2.5": 20.0, "CO": 0.5, "O3": 50.0}
    for minute in range(30):
        publish.reading("KM-AIR-KMXY", hour + dt.timedelta(minutes=minute), {**values, "PM2.5": 10.0}, seq=minute)
    publish.wait_all()
    await wait_for_result(store, "hourly_mean", "KM-AIR-KMXY", hour, lambda f: f.get("valid_minutes") == 30, parameter="PM2.5")
    worker.kill()  # SIGKILL: no clean shutdown, no offsets committed after the last batch
    worker.start()
    for minute in range(30, 60):
        publish.reading("KM-AIR-KMXY", hour + dt.timedelta(minutes=minute), {**values, "PM2.5": 30.0}, seq=minute)
    publish.wait_all()
    mean = await wait_for_result(store, "hourly_mean", "KM-AIR-KMXY", hour, lambda f: f.get("valid_minutes") == 60, parameter="PM2.5")
    assert mean.fields["value"] == pytest.approx(20.0)

