"""The park end to end: MQTT → collector → Kafka (Tansu) → Faust worker → SQLite store.

Real Mosquitto and Tansu from the fixtures, the real collector in this process, the real Faust
worker as a child process (as ``ecopark demo`` runs it). The tests publish readings over MQTT and
wait — polling the store, never sleeping a fixed time — until the derived results appear.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import paho.mqtt.client as mqtt
import pytest

from ecopark.services import ensure_topics, free_port
from ingest.collector import Collector
from park.model import DEADLETTER_TOPIC, READING_TOPICS
from rules import aqi as aqi_rules
from store import open_store

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = float(os.environ.get("E2E_TIMEOUT_S", "90"))


@pytest.fixture
async def pipeline(park, mosquitto, fresh_tansu, tmp_path):
    """Collector (in process) and worker (child process) on real brokers; yields helpers."""
    await ensure_topics(fresh_tansu.bootstrap, {**{t: 4 for t in READING_TOPICS.values()}, DEADLETTER_TOPIC: 1, "alerts.events": 1})
    db = tmp_path / "ecopark.db"
    store_url = f"sqlite:///{db}"
    collector = Collector(park, "127.0.0.1", mosquitto.port, fresh_tansu.bootstrap, client_id=f"e2e-{free_port()}")
    task = asyncio.create_task(collector.run())
    await asyncio.wait_for(collector.ready.wait(), 30)
    worker = _Worker(fresh_tansu.bootstrap, store_url, tmp_path)
    worker.start()
    store = open_store(store_url)
    publisher = _Publisher(park, mosquitto.port)
    yield dict(park=park, store=store, worker=worker, publish=publisher, collector=collector, kafka=fresh_tansu.bootstrap)
    print(worker.log.read_text(errors="replace")[-5000:])
    publisher.close()
    worker.stop()
    await collector.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await store.close()


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

    aqi = await _wait_for_result(store, "aqi_hourly", "KM-AIR-KMXY", hour, lambda f: f.get("aqi") is not None)
    expected = aqi_rules.realtime_aqi(air, when=hour)
    assert aqi.fields["aqi"] == expected.aqi
    assert aqi.fields["primary"] == ",".join(expected.primary)
    assert aqi.fields["color"] == expected.color

    means = {r.tags["parameter"]: r for r in await store.results("hourly_mean", hour, hour + dt.timedelta(hours=1), site="KM-AIR-KMXY")}
    assert means["PM2.5"].fields["value"] == pytest.approx(70.0)
    assert means["PM2.5"].fields["valid_minutes"] == 60

    section = await _wait_for_result(store, "water_class_hourly", "KM-RIV-LLH", hour, lambda f: f.get("klass") is not None)
    assert section.fields["klass"] == 2  # NH3-N 0.4 ≤ 0.5 and TP 0.08 ≤ 0.1: class II
    assert section.fields["meets"] is True

    nox = await _wait_for_result(store, "compliance_hourly", "YNDL-G1", hour, lambda f: f.get("compliant") is not None, parameter="NOx")
    # GB 13271-2014: gas boilers are judged at 3.5 % O2: 120 × (21 − 3.5) / (21 − 9) = 175 ≤ 200
    assert nox.fields["value"] == pytest.approx(175.0)
    assert nox.fields["compliant"] is True


async def test_bad_messages_go_to_the_dead_letter_topic_and_the_good_ones_around_them_still_count(pipeline):
    park, store, publish = pipeline["park"], pipeline["store"], pipeline["publish"]
    hour = dt.datetime(2026, 11, 24, 12, 0, tzinfo=park.tz)
    values = {"SO2": 8.0, "NO2": 30.0, "PM10": 40.0, "PM2.5": 20.0, "CO": 0.5, "O3": 50.0}
    bad = [
        ("ecopark/air/KM-AIR-KMXY", b"{not json"),
        ("ecopark/air/KM-AIR-NOPE", _payload("KM-AIR-NOPE", hour, values, 1)),
        ("ecopark/air/KM-AIR-KMXY", _payload("KM-AIR-KMXY", hour, {"PM2.5": -3.0}, 2)),
        ("ecopark/water/KM-RIV-LLH", _payload("KM-AIR-KMXY", hour, values, 3)),
    ]
    for minute in range(60):
        if minute < len(bad):
            publish.raw(*bad[minute])
        publish.reading("KM-AIR-KMXY", hour + dt.timedelta(minutes=minute), values, seq=1000 + minute)
    publish.wait_all()
    means = await _wait_for_result(store, "hourly_mean", "KM-AIR-KMXY", hour, lambda f: f.get("valid_minutes") == 60, parameter="PM2.5")
    assert means.fields["value"] == pytest.approx(20.0)
    collector = pipeline["collector"]
    await _until(lambda: _async(collector.deadlettered_total >= len(bad)), "dead letters counted")


async def test_a_worker_killed_mid_hour_recomputes_the_hour_whole_after_restart(pipeline):
    park, store, publish, worker = pipeline["park"], pipeline["store"], pipeline["publish"], pipeline["worker"]
    hour = dt.datetime(2026, 11, 24, 14, 0, tzinfo=park.tz)
    values = {"SO2": 8.0, "NO2": 30.0, "PM10": 40.0, "PM2.5": 20.0, "CO": 0.5, "O3": 50.0}
    for minute in range(30):
        publish.reading("KM-AIR-KMXY", hour + dt.timedelta(minutes=minute), {**values, "PM2.5": 10.0}, seq=minute)
    publish.wait_all()
    await _wait_for_result(store, "hourly_mean", "KM-AIR-KMXY", hour, lambda f: f.get("valid_minutes") == 30, parameter="PM2.5")
    worker.kill()  # SIGKILL: no clean shutdown, no offsets committed after the last batch
    worker.start()
    for minute in range(30, 60):
        publish.reading("KM-AIR-KMXY", hour + dt.timedelta(minutes=minute), {**values, "PM2.5": 30.0}, seq=minute)
    publish.wait_all()
    mean = await _wait_for_result(store, "hourly_mean", "KM-AIR-KMXY", hour, lambda f: f.get("valid_minutes") == 60, parameter="PM2.5")
    assert mean.fields["value"] == pytest.approx(20.0)


# -- helpers -------------------------------------------------------------------------------------

class _Worker:
    running: list["_Worker"] = []

    def __init__(self, kafka: str, store_url: str, tmp: Path) -> None:
        self.cmd = [sys.executable, "-m", "ecopark.cli", "worker", "--kafka", kafka, "--store", store_url]
        self.log = tmp / "worker.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        _Worker.running[:] = [self]
        self.proc = subprocess.Popen(self.cmd + ["--web-port", str(free_port())], cwd=REPO, start_new_session=True,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=dict(os.environ, ECOPARK_BATCH_WITHIN_S="0.1"))

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        _Worker.running.clear()

    def stop(self) -> None:
        _Worker.running.clear()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class _Publisher:
    def __init__(self, park, port: int) -> None:
        self.park = park
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"e2e-pub-{free_port()}")
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def reading(self, site_id: str, ts: dt.datetime, values: dict[str, float], seq: int) -> None:
        site = self.park.site(site_id)
        self.raw(self.park.mqtt_topic(site), _payload(site_id, ts, values, seq, site))

    def raw(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        self.infos.append(info)

    def wait_all(self) -> None:
        for info in self.infos:
            info.wait_for_publish(30)
        self.infos.clear()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _payload(site_id: str, ts: dt.datetime, values: dict[str, float], seq: int, site=None) -> bytes:
    units = {p: (site.parameter(p).unit if site is not None else "ug/m3") for p in values}
    return json.dumps({
        "schema": 1, "site": site_id, "ts": ts.isoformat(), "seq": seq,
        "values": {p: {"v": v, "unit": units[p]} for p, v in values.items()},
    }).encode()


async def _wait_for_result(store, measurement: str, site: str, ts: dt.datetime, ok: Callable[[dict], bool], **tags: str):
    found: list[Any] = []

    async def check() -> bool:
        rows = await store.results(measurement, ts, ts + dt.timedelta(seconds=1), site=site)
        rows = [r for r in rows if all(r.tags.get(k) == v for k, v in tags.items()) and ok(r.fields)]
        found[:] = rows
        return bool(rows)

    await _until(check, f"{measurement} of {site} at {ts}")
    return found[0]


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        for worker in _Worker.running:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise AssertionError(f"the worker exited with {worker.proc.returncode} while waiting for {what}:\n"
                                     + worker.log.read_text(errors="replace")[-3000:])
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


async def _async(value: bool) -> bool:
    return value
