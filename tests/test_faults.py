"""Faults end to end: real Mosquitto, real Tansu, the real collector and a real Faust worker.

The pipeline is wired as in ``test_end_to_end.py``: the collector runs in this process, the worker
is a child process (``ecopark worker``), the SQLite store is polled. Each test breaks one part
while readings flow and says in its docstring what survives the fault (DESIGN.md: "Nothing is
lost", "At-least-once, idempotent") and where the guarantee ends.

Tests wait on conditions (polling the store or an in-process counter) with a deadline; the only
fixed waits are the durations of the faults themselves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from ecopark.services import Mosquitto
from tests.pipeline import EVENTS_TOPIC, TIMEOUT_S, Publisher, is_true, running_pipeline, until, wait_for_result


AIR_SITE = "KM-AIR-KMXY"
AIR = {"SO2": 8.0, "NO2": 30.0, "PM10": 40.0, "PM2.5": 20.0, "CO": 0.5, "O3": 50.0}


class _EventLost(AssertionError):
    """The one failure an xfail below expects (any other failure of that test is a real one)."""


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture
def persistent_mosquitto() -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own whose persistence really works when the tests run as root.

    Started as root, Mosquitto drops to the ``mosquitto`` user, which cannot write into pytest's
    0700 tmp directories (``fresh_mosquitto``): persistence then fails and a restart loses every
    session. A world-writable directory of its own avoids that (as in tests/ingest).
    """
    workdir = Path(tempfile.mkdtemp(prefix="ecopark-faults-mosquitto-"))
    workdir.chmod(0o777)
    broker = Mosquitto(workdir=workdir).start()
    yield broker
    broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def pipeline(park, persistent_mosquitto, fresh_tansu, tmp_path):
    """Collector (in process) and worker (child process) on brokers of this test alone."""
    async with running_pipeline(park, persistent_mosquitto.port, fresh_tansu, tmp_path, "faults") as parts:
        yield {**parts, "mosquitto": persistent_mosquitto, "tansu": fresh_tansu}


@pytest.fixture
def hour(now_local) -> dt.datetime:
    """An hour three days back: in the past for the collector's "future" check, whatever today is."""
    return (now_local - dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)


# -- 1. MQTT broker restart -----------------------------------------------------------------------

async def test_an_mqtt_broker_restart_mid_hour_loses_no_reading(pipeline, hour):
    """Mosquitto restarts (same port, persistence on) right after the first half of an hour.

    Survives: every reading. The first half was acknowledged to the publisher by the broker; what
    the collector had not yet taken (or taken but not yet acknowledged after producing) is kept in
    the collector's persistent session and written to disk when the broker stops, and is
    delivered again after the restart. The collector reconnects by itself with its session
    present; the publisher (clean_session False) reconnects by itself and sends the second half.
    The hour ends with all 60 valid minutes.
    Limit: a broker without persistence (or whose persistence file cannot be written) forgets the
    session; the collector then counts ``sessions_lost`` and says so in its log.
    """
    store, publish, collector = pipeline["store"], pipeline["publish"], pipeline["collector"]
    for minute in range(30):
        publish.reading(AIR_SITE, hour + dt.timedelta(minutes=minute), {**AIR, "PM2.5": 10.0}, seq=minute)
    publish.wait_all()
    connects = publish.connects
    pipeline["mosquitto"].restart()  # at once: the collector may still be taking (or acknowledging) the first half
    await until(lambda: is_true(publish.connects > connects), "the publisher reconnected to the restarted broker")
    for minute in range(30, 60):
        publish.reading(AIR_SITE, hour + dt.timedelta(minutes=minute), {**AIR, "PM2.5": 30.0}, seq=minute)
    publish.wait_all()

    pm = await wait_for_result(store, "hourly_mean", AIR_SITE, hour, lambda f: f.get("valid_minutes") == 60, parameter="PM2.5")
    assert pm.fields["value"] == pytest.approx(20.0)
    means = {r.tags["parameter"]: r.fields for r in await store.results("hourly_mean", hour, hour + dt.timedelta(seconds=1), site=AIR_SITE)}
    assert {p: f["valid_minutes"] for p, f in means.items()} == {p: 60 for p in AIR}
    assert collector.mqtt_connects >= 2, "the collector never saw the broker go away"
    assert collector.sessions_lost == 0


# -- 2. Kafka (Tansu) restart ---------------------------------------------------------------------

async def test_a_kafka_restart_under_a_running_collector_and_worker_loses_no_reading(pipeline, hour):
    """Tansu goes down while readings arrive, and comes back empty (memory storage: no topics, no
    consumer group, no log, no committed offsets) on the same port.

    Survives: every reading, and the worker process itself. While Kafka is away the collector
    takes the readings from MQTT but acknowledges none of them (the broker keeps them in the
    session). When Kafka is back the collector notices it lost its log (offsets went backwards,
    topics missing), re-creates its topics and produces the held readings again. The running
    worker's consumer finds its group forgotten, re-joins, finds no committed offsets and reads
    the new log from the start (its old positions lie beyond the new log's end); the hour ends
    with all 60 valid minutes, computed from the first part (already in the store) and the rest.
    The AQI event the completed hour raises is stored.
    Limit (Tansu only, production Kafka keeps its log): nobody re-creates ``alerts.events``, and
    Tansu acknowledges writes to a topic it no longer has, so events the worker sends there after
    the restart vanish from that topic (they stay in the store's events table); see
    ``test_after_a_kafka_restart_alert_events_reach_the_events_topic``.
    """
    store, publish, collector, worker, tansu = (pipeline[k] for k in ("store", "publish", "collector", "worker", "tansu"))
    for minute in range(45):
        publish.reading(AIR_SITE, hour + dt.timedelta(minutes=minute), {**AIR, "PM2.5": 10.0}, seq=minute)
    publish.wait_all()
    await wait_for_result(store, "hourly_mean", AIR_SITE, hour, lambda f: f.get("valid_minutes") == 45, parameter="PM2.5")
    received, acked, produced = collector.received, collector.acked, collector.produced

    tansu.stop()
    # fewer readings than before: in the new, empty log they sit below the worker's old positions.
    # O3 900 µg/m³ in a quarter of the hour: hourly O3 262 µg/m³, AQI level III → an aqi_level event
    for minute in range(45, 60):
        publish.reading(AIR_SITE, hour + dt.timedelta(minutes=minute), {**AIR, "PM2.5": 50.0, "O3": 900.0}, seq=minute)
    publish.wait_all()
    await until(lambda: is_true(collector.received >= received + 15), "the collector took the readings from MQTT")
    assert collector.acked == acked and collector.produced == produced  # held: Kafka does not have them
    tansu.start()  # same port, empty

    await until(lambda: is_true(collector.produced >= produced + 15), "the collector produced the held readings to the new Kafka")
    pm = await wait_for_result(store, "hourly_mean", AIR_SITE, hour, lambda f: f.get("valid_minutes") == 60, parameter="PM2.5")
    assert pm.fields["value"] == pytest.approx(20.0)
    await wait_for_result(store, "aqi_hourly", AIR_SITE, hour, lambda f: f.get("level") == 3)
    assert [e.kind for e in await store.events(limit=100)] == ["aqi_level"]
    assert collector.acked >= acked + 15
    assert worker.proc is not None and worker.proc.poll() is None  # the same worker, never restarted


@pytest.mark.xfail(strict=False, raises=_EventLost, reason="Tansu only, and timing-dependent: after a restart nobody re-creates alerts.events and Tansu "
                   "acknowledges writes to a topic it no longer has; real Kafka keeps the topic")
async def test_after_a_kafka_restart_alert_events_reach_the_events_topic(pipeline, hour):
    """Known limit, kept as a test that fails until it is fixed (strict xfail).

    After a Tansu restart the worker's alert events are stored but never reach ``alerts.events``:
    the worker's producer still has the topic's metadata, Tansu acknowledges the write (offset 0)
    to a topic it does not have, and the event is gone from Kafka. A fix: the worker re-declares
    its output topics when a delivery offset goes backwards, as the collector does for its own.
    """
    store, publish, tansu = pipeline["store"], pipeline["publish"], pipeline["tansu"]
    for minute in range(60):
        publish.reading(AIR_SITE, hour + dt.timedelta(minutes=minute), {**AIR, "O3": 250.0}, seq=minute)
    publish.wait_all()
    await wait_for_result(store, "aqi_hourly", AIR_SITE, hour, lambda f: f.get("level") == 3)
    await _consume(tansu.bootstrap, EVENTS_TOPIC, lambda rs: len(rs) >= 1)  # before the restart: it does
    tansu.restart()
    later = hour + dt.timedelta(hours=1)
    for minute in range(60):
        publish.reading(AIR_SITE, later + dt.timedelta(minutes=minute), {**AIR, "O3": 250.0}, seq=100 + minute)
    publish.wait_all()
    await wait_for_result(store, "aqi_hourly", AIR_SITE, later, lambda f: f.get("level") == 3)
    event_id = f"aqi_level/{AIR_SITE}/{later.astimezone(dt.timezone.utc):%Y%m%dT%H%MZ}"
    assert event_id in {e.id for e in await store.events(limit=100)}
    try:
        await _consume(tansu.bootstrap, EVENTS_TOPIC, lambda rs: any(json.loads(r.value)["id"] == event_id for r in rs), timeout=10)
    except AssertionError as exc:
        raise _EventLost(f"{event_id} is stored but not on {EVENTS_TOPIC}") from exc


# -- 3. Store unavailable -------------------------------------------------------------------------

LOCK_S = 10.0


async def test_a_store_locked_for_a_while_holds_the_stream_and_loses_nothing(pipeline, hour):
    """Another process holds an exclusive lock on the SQLite store for ~10 s while readings arrive.

    Survives: every reading. The worker's writes wait SQLite's busy timeout (5 s), then fail as
    ``StoreUnavailable``; ``process_with_retry`` keeps the batch and retries it with back-off,
    holding the stream (Kafka keeps the readings, no offset is committed past the batch). When the
    lock goes, the held batch is written and the hour ends with all 60 valid minutes.
    Limit: while the store is away nothing new is derived (the wall shows the last results).
    """
    store, publish, collector, worker = (pipeline[k] for k in ("store", "publish", "collector", "worker"))
    for minute in range(30):
        publish.reading(AIR_SITE, hour + dt.timedelta(minutes=minute), {**AIR, "PM2.5": 10.0}, seq=minute)
    publish.wait_all()
    await wait_for_result(store, "hourly_mean", AIR_SITE, hour, lambda f: f.get("valid_minutes") == 30, parameter="PM2.5")

    blocker = sqlite3.connect(pipeline["db"], isolation_level=None, timeout=30)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        produced = collector.produced
        for minute in range(30, 60):
            publish.reading(AIR_SITE, hour + dt.timedelta(minutes=minute), {**AIR, "PM2.5": 30.0}, seq=minute)
        publish.wait_all()
        await until(lambda: is_true(collector.produced >= produced + 30), "the second half is in Kafka")
        await asyncio.sleep(max(0.0, LOCK_S - (time.monotonic() - locked_at)))  # the outage itself
        # nothing could be written meanwhile: the hour still has its first half only
        pm = await store.results("hourly_mean", hour, hour + dt.timedelta(seconds=1), site=AIR_SITE)
        assert {r.tags["parameter"]: r.fields["valid_minutes"] for r in pm}["PM2.5"] == 30
        assert "store unavailable" in worker.log.read_text(errors="replace"), "the worker never met the lock"
    finally:
        blocker.rollback()
        blocker.close()

    pm = await wait_for_result(store, "hourly_mean", AIR_SITE, hour, lambda f: f.get("valid_minutes") == 60, parameter="PM2.5")
    assert pm.fields["value"] == pytest.approx(20.0)
    rows = await store.readings(AIR_SITE, hour, hour + dt.timedelta(hours=1), parameter="PM2.5")
    assert len(rows) == 60


# -- 4. Duplicate burst ---------------------------------------------------------------------------

async def test_a_duplicate_burst_changes_nothing(pipeline, hour):
    """The same 60 readings published twice (a sender replaying its buffer).

    Survives: the results, unchanged. The collector forwards both copies (it does not deduplicate,
    ``produced`` counts 120); the worker files each reading into its minute by its stable id, so
    the second copy overwrites itself: every stored result, raw reading and event is byte-for-byte
    what the first copy left, and no event is stored twice (events are keyed by a stable id).
    Limit: an event of a recomputed hour is sent again on ``alerts.events`` with the same id; the
    alert stage deduplicates by that id.
    """
    park, store, publish, collector = pipeline["park"], pipeline["store"], pipeline["publish"], pipeline["collector"]
    # O3 250 µg/m³ (1 h) is IAQI 125: AQI level III, so the hour raises an event
    values = [{**AIR, "PM2.5": 10.0 + minute, "O3": 250.0} for minute in range(60)]
    for minute in range(60):
        publish.reading(AIR_SITE, hour + dt.timedelta(minutes=minute), values[minute], seq=minute)
    publish.wait_all()
    await wait_for_result(store, "hourly_mean", AIR_SITE, hour, lambda f: f.get("valid_minutes") == 60, parameter="PM2.5")
    await wait_for_result(store, "aqi_hourly", AIR_SITE, hour, lambda f: f.get("level") == 3)
    # a marker after each burst, same site (same partition, so processed in order), a later day:
    # when its result is stored, everything published before it has been processed
    await _marker(store, publish, hour + dt.timedelta(hours=26))
    cutoff = _day_start(park, hour + dt.timedelta(hours=26))
    before = _snapshot(pipeline["db"], cutoff)
    assert any(e[1] == "aqi_level" for e in before["events"]), "the hour should have raised an AQI event"

    for minute in range(60):
        publish.reading(AIR_SITE, hour + dt.timedelta(minutes=minute), values[minute], seq=minute)
    publish.wait_all()
    await _marker(store, publish, hour + dt.timedelta(hours=27))
    after = _snapshot(pipeline["db"], cutoff)

    assert collector.produced == 60 + 1 + 60 + 1  # duplicates forwarded, not dropped upstream
    assert after == before
    pm = await wait_for_result(store, "hourly_mean", AIR_SITE, hour, lambda f: True, parameter="PM2.5")
    assert pm.fields["valid_minutes"] == 60
    assert pm.fields["value"] == pytest.approx(sum(v["PM2.5"] for v in values) / 60)


# -- 5. A late reading ----------------------------------------------------------------------------

async def test_a_reading_three_hours_late_updates_its_hour(pipeline, hour):
    """Readings of two hours arrive without their minute 30; those minutes come 3 h and 4 h late.

    Survives: the late readings, in their hours. Each is filed into its own hour (not the newest
    one) and the hour is recomputed: 60 valid minutes and the mean including the late value. The
    3-hours-late minute finds its hour still in the worker's minute cache; the 4-hours-late one
    finds it evicted (the cache keeps 3 hours) and the hour is reloaded from the stored readings.
    No ``late_reading`` event: both are well inside the park's lateness horizon (48 h).
    Limit: beyond the horizon a reading is stored raw and reported, not recomputed.
    """
    store, publish = pipeline["store"], pipeline["publish"]
    first, second = hour - dt.timedelta(hours=1), hour
    seq = 0
    for start in (first, second):
        for minute in range(60):
            if minute != 30:
                seq += 1
                publish.reading(AIR_SITE, start + dt.timedelta(minutes=minute), AIR, seq=seq)
    newest = second + dt.timedelta(hours=3, minutes=30)
    publish.reading(AIR_SITE, newest, AIR, seq=seq + 1)
    publish.wait_all()
    await wait_for_result(store, "hourly_mean", AIR_SITE, second, lambda f: f.get("valid_minutes") == 59, parameter="PM2.5")
    await wait_for_result(store, "hourly_mean", AIR_SITE, newest.replace(minute=0), lambda f: f.get("valid_minutes") == 1, parameter="PM2.5")

    publish.reading(AIR_SITE, second + dt.timedelta(minutes=30), {**AIR, "PM2.5": 80.0}, seq=seq + 2)  # 3 h late
    publish.reading(AIR_SITE, first + dt.timedelta(minutes=30), {**AIR, "PM2.5": 140.0}, seq=seq + 3)  # 4 h late
    publish.wait_all()
    for start, late_value in ((second, 80.0), (first, 140.0)):
        pm = await wait_for_result(store, "hourly_mean", AIR_SITE, start, lambda f: f.get("valid_minutes") == 60, parameter="PM2.5")
        assert pm.fields["value"] == pytest.approx((59 * AIR["PM2.5"] + late_value) / 60)
    assert not [e for e in await store.events(limit=1000) if e.kind == "late_reading"]


# -- helpers --------------------------------------------------------------------------------------

async def _consume(bootstrap: str, topic: str, done: Callable[[list], bool], timeout: float = TIMEOUT_S) -> list:
    """Read ``topic`` from its beginning until ``done(records so far)``; fail at the deadline."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                group_id=None)
    await consumer.start()
    records: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(records):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s reading {topic}: {len(records)} record(s)")
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def _marker(store, publish: "Publisher", ts: dt.datetime) -> None:
    publish.reading(AIR_SITE, ts, AIR, seq=int(ts.timestamp()))
    publish.wait_all()
    await wait_for_result(store, "hourly_mean", AIR_SITE, ts.replace(minute=0, second=0), lambda f: f.get("valid_minutes") == 1, parameter="PM2.5")


def _day_start(park, ts: dt.datetime) -> dt.datetime:
    local = ts.astimezone(park.tz)
    return dt.datetime.combine(local.date(), dt.time(0), tzinfo=park.tz)


def _snapshot(db: Path, before: dt.datetime) -> dict[str, list[tuple]]:
    """Every stored row stamped before ``before``: results, raw readings, events."""
    cut = before.timestamp()
    conn = sqlite3.connect(db)
    try:
        return {
            "results": conn.execute("SELECT * FROM results WHERE ts < ? ORDER BY measurement, site, tags_key, ts", (cut,)).fetchall(),
            "readings": conn.execute("SELECT * FROM readings WHERE ts < ? ORDER BY site, ts, parameter", (cut,)).fetchall(),
            "events": conn.execute("SELECT id, kind, site, ts, severity, message, data FROM events WHERE ts < ? ORDER BY id", (cut,)).fetchall(),
        }
    finally:
        conn.close()
