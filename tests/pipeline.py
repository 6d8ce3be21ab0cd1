"""Shared helpers for the pipeline tests: the worker as a child process, a QoS 1 publisher,
reading payloads, and waiting on the store (polling, never a fixed sleep)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable

import contextlib
from typing import AsyncIterator

import paho.mqtt.client as mqtt

from ecopark.services import ensure_topics, free_port
from ingest.collector import Collector
from park.model import DEADLETTER_TOPIC, READING_TOPICS
from store import open_store

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = float(os.environ.get("E2E_TIMEOUT_S", "90"))
EVENTS_TOPIC = "alerts.events"


@contextlib.asynccontextmanager
async def running_pipeline(park, mqtt_port: int, tansu, tmp_path: Path, name: str) -> AsyncIterator[dict]:
    """Collector (in this process) and worker (child process) on real brokers, with a SQLite store;
    yields the parts a test talks to. Prints the worker's log tail when it ends."""
    await ensure_topics(tansu.bootstrap, {**{t: 4 for t in READING_TOPICS.values()}, DEADLETTER_TOPIC: 1, EVENTS_TOPIC: 1})
    db = tmp_path / "ecopark.db"
    store_url = f"sqlite:///{db}"
    store = open_store(store_url)  # creates the file and its tables before the worker starts
    collector = Collector(park, "127.0.0.1", mqtt_port, tansu.bootstrap, client_id=f"{name}-{free_port()}")
    task = asyncio.create_task(collector.run())
    await asyncio.wait_for(collector.ready.wait(), 30)
    worker = Worker(tansu.bootstrap, store_url, tmp_path)
    worker.start()
    publisher = Publisher(park, mqtt_port)
    try:
        yield dict(park=park, store=store, db=db, worker=worker, publish=publisher, collector=collector, kafka=tansu.bootstrap)
    finally:
        print(worker.log.read_text(errors="replace")[-5000:])
        publisher.close()
        worker.stop()
        await collector.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


class Worker:
    """``ecopark worker`` as a child process in its own process group."""

    running: list["Worker"] = []

    def __init__(self, kafka: str, store_url: str, tmp: Path) -> None:
        self.cmd = [sys.executable, "-m", "ecopark.cli", "worker", "--kafka", kafka, "--store", store_url]
        self.log = tmp / "worker.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        Worker.running[:] = [self]
        self.proc = subprocess.Popen(self.cmd + ["--web-port", str(free_port())], cwd=REPO, start_new_session=True,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=dict(os.environ, ECOPARK_BATCH_WITHIN_S="0.1"))

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        Worker.running.clear()

    def stop(self) -> None:
        Worker.running.clear()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Publisher:
    """A QoS 1 sender with a persistent session that reconnects by itself (paho's network loop)."""

    def __init__(self, park, port: int) -> None:
        self.park = park
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{free_port()}", clean_session=False)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.connects = 0
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise AssertionError(f"the test publisher could not connect to 127.0.0.1:{port}")
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self.connects += 1
            self._connected.set()

    def reading(self, site_id: str, ts: dt.datetime, values: dict[str, float], seq: int) -> None:
        site = self.park.site(site_id)
        self.raw(self.park.mqtt_topic(site), payload(site_id, ts, values, seq, site))

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


def payload(site_id: str, ts: dt.datetime, values: dict[str, float], seq: int, site=None) -> bytes:
    units = {p: (site.parameter(p).unit if site is not None else "ug/m3") for p in values}
    return json.dumps({
        "schema": 1, "site": site_id, "ts": ts.isoformat(), "seq": seq,
        "values": {p: {"v": v, "unit": units[p]} for p, v in values.items()},
    }).encode()


async def wait_for_result(store, measurement: str, site: str, ts: dt.datetime, ok: Callable[[dict], bool], **tags: str):
    found: list[Any] = []

    async def check() -> bool:
        rows = await store.results(measurement, ts, ts + dt.timedelta(seconds=1), site=site)
        rows = [r for r in rows if all(r.tags.get(k) == v for k, v in tags.items()) and ok(r.fields)]
        found[:] = rows
        return bool(rows)

    await until(check, f"{measurement} of {site} at {ts}")
    return found[0]


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        for worker in Worker.running:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise AssertionError(f"the worker exited with {worker.proc.returncode} while waiting for {what}:\n"
                                     + worker.log.read_text(errors="replace")[-3000:])
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


async def is_true(value: bool) -> bool:
    return value
