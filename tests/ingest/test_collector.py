"""The MQTT collector against a real Mosquitto and a real Tansu (Kafka).

Every test waits on what arrives in Kafka (``consume_until``) with a deadline; none sleeps a fixed
time. Messages of a test carry sequence numbers of their own, so tests sharing the module's brokers
never see each other's readings.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
from types import SimpleNamespace
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ecopark.services import Mosquitto, Tansu
from ingest.collector import Collector
from park.model import DEADLETTER_TOPIC, READING_TOPICS, Park
from park.reading import MAX_MESSAGE_BYTES, SCHEMA_VERSION, decode_reading

AIR = "KM-AIR-KMXY"
RIVER = "KM-RIV-LLH"
STACK = "YNDL-G1"
DEADLINE_S = 30.0

_seq = itertools.count(int(time.time()) * 1000)
_client_ids = itertools.count(1)


# -- helpers --------------------------------------------------------------------------------------

async def consume_until(
    bootstrap: str,
    topic: str,
    predicate: Callable[[list], bool],
    timeout: float = DEADLINE_S,
) -> list:
    """Read ``topic`` from the beginning until ``predicate(records so far)`` holds; return them.

    Fails the test when the deadline passes first. Waits for the topic to exist (a Kafka that was
    restarted empty gets its topics back from the collector).
    """
    deadline = time.monotonic() + timeout
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    records: list = []
    try:
        partitions: set[int] | None = None
        while partitions is None:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"topic {topic} did not appear within {timeout:.0f} s")
                await consumer._client.force_metadata_update()  # no public way to refresh
                if consumer.partitions_for_topic(topic) is None:
                    await asyncio.sleep(0.2)  # polling the metadata, not waiting for an outcome
                partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not predicate(records):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{topic}: condition not met within {timeout:.0f} s; {len(records)} record(s) seen")
            batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


def readings_with(records: list, seqs: set[int]) -> list:
    """The readings whose seq is one of ``seqs``, one (key, value) record each: a Kafka record of
    the readings topics holds one reading or an array of one site's readings."""
    out = []
    for r in records:
        data = json.loads(r.value)
        for item in data if isinstance(data, list) else [data]:
            if item.get("seq") in seqs:
                out.append(SimpleNamespace(key=r.key, value=json.dumps(item).encode()))
    return out


def has_seqs(seqs: set[int], count: int | None = None) -> Callable[[list], bool]:
    def check(records: list) -> bool:
        found = readings_with(records, seqs)
        if count is not None:
            return len(found) >= count
        return {json.loads(r.value)["seq"] for r in found} >= seqs
    return check


def message(site: str, seq: int, values: dict, *, ts: dt.datetime | None = None, schema: int = SCHEMA_VERSION, tz=None) -> bytes:
    ts = ts or dt.datetime.now(tz) - dt.timedelta(minutes=1)
    return json.dumps({"schema": schema, "site": site, "ts": ts.isoformat(timespec="seconds"), "seq": seq, "values": values}).encode()


class Publisher:
    """A paho QoS 1 publisher that checks every return code and waits for the PUBACK."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{next(_client_ids)}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), f"no PUBACK for {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def publisher(port: int) -> Iterator[Publisher]:
    p = Publisher(port)
    try:
        yield p
    finally:
        p.close()


@contextlib.asynccontextmanager
async def running(collector: Collector) -> AsyncIterator[Collector]:
    task = asyncio.create_task(collector.run())
    try:
        await asyncio.wait_for(collector.ready.wait(), DEADLINE_S)
        yield collector
    finally:
        await collector.stop()
        await asyncio.wait_for(task, DEADLINE_S)


def make_collector(park: Park, mosquitto: Mosquitto, tansu: Tansu, client_id: str | None = None) -> Collector:
    return Collector(park, "127.0.0.1", mosquitto.port, tansu.bootstrap, client_id=client_id or f"test-collector-{next(_client_ids)}")


# -- valid readings -------------------------------------------------------------------------------

async def test_valid_readings_arrive_on_their_kinds_topic_keyed_by_site(park, mosquitto, tansu):
    seqs = {kind: next(_seq) for kind in ("air", "water", "emission")}
    sent = {
        "air": (AIR, {"PM2.5": {"v": 28.0, "unit": "ug/m3"}, "O3": {"v": 96.0, "unit": "ug/m3"}}),
        "water": (RIVER, {"NH3-N": {"v": 0.31, "unit": "mg/L"}, "pH": {"v": 7.6, "unit": ""}}),
        "emission": (STACK, {"NOx": {"v": 88.0, "unit": "mg/m3", "zs": 114.1}, "O2": {"v": 7.5, "unit": "%"}}),
    }
    async with running(make_collector(park, mosquitto, tansu)) as collector:
        with publisher(mosquitto.port) as pub:
            for kind, (site, values) in sent.items():
                pub.publish(park.mqtt_topic(park.site(site)), message(site, seqs[kind], values, tz=park.tz))
        for kind, (site, values) in sent.items():
            records = await consume_until(tansu.bootstrap, READING_TOPICS[kind], has_seqs({seqs[kind]}))
            (record,) = readings_with(records, {seqs[kind]})
            assert record.key == site.encode()
            reading = decode_reading(record.value)
            assert reading.site == site
            assert {name: v.v for name, v in reading.values.items()} == {name: v["v"] for name, v in values.items()}
        assert collector.produced >= 3


async def test_a_convertible_unit_is_converted_to_the_canonical_unit(park, mosquitto, tansu):
    seq = next(_seq)
    async with running(make_collector(park, mosquitto, tansu)):
        with publisher(mosquitto.port) as pub:
            pub.publish(park.mqtt_topic(park.site(AIR)), message(AIR, seq, {"CO": {"v": 800.0, "unit": "µg/m³"}}, tz=park.tz))
        records = await consume_until(tansu.bootstrap, READING_TOPICS["air"], has_seqs({seq}))
    (record,) = readings_with(records, {seq})
    co = decode_reading(record.value).values["CO"]
    assert (co.v, co.unit) == (pytest.approx(0.8), "mg/m3")


async def test_a_duplicate_is_forwarded_with_the_same_stable_id(park, mosquitto, tansu):
    # The collector does not deduplicate: the stream stage is idempotent on Reading.id.
    seq = next(_seq)
    payload = message(RIVER, seq, {"DO": {"v": 7.1, "unit": "mg/L"}}, tz=park.tz)
    async with running(make_collector(park, mosquitto, tansu)):
        with publisher(mosquitto.port) as pub:
            pub.publish(park.mqtt_topic(park.site(RIVER)), payload)
            pub.publish(park.mqtt_topic(park.site(RIVER)), payload)
        records = await consume_until(tansu.bootstrap, READING_TOPICS["water"], has_seqs({seq}, count=2))
    first, second = (decode_reading(r.value) for r in readings_with(records, {seq}))
    assert first.id == second.id


# -- bad input ------------------------------------------------------------------------------------

def _bad_cases(tz) -> dict[str, tuple[str, Callable[[int], bytes], str]]:
    """case → (MQTT topic, payload builder from a seq, expected words of the reason)."""
    air_topic = f"ecopark/air/{AIR}"
    ok = {"PM2.5": {"v": 30.0, "unit": "ug/m3"}}
    return {
        "malformed JSON": (air_topic, lambda s: b'{"schema": 1, "site": "KM-AIR-KMXY", "seq": ' + str(s).encode(), "malformed JSON"),
        "unknown site": ("ecopark/air/KM-AIR-NOWHERE", lambda s: message("KM-AIR-NOWHERE", s, ok, tz=tz), "unknown site 'KM-AIR-NOWHERE'"),
        "unknown parameter": (air_topic, lambda s: message(AIR, s, {"PM1": {"v": 12.0, "unit": "ug/m3"}}, tz=tz), "unknown parameter 'PM1'"),
        "unit that does not fit": (air_topic, lambda s: message(AIR, s, {"PM2.5": {"v": 30.0, "unit": "mg/L"}}, tz=tz), "unit 'mg/L' does not fit PM2.5"),
        "NaN": (air_topic, lambda s: message(AIR, s, ok, tz=tz).replace(b"30.0", b"NaN"), "NaN or Infinity is not a number"),
        "negative concentration": (air_topic, lambda s: message(AIR, s, {"PM2.5": {"v": -4.0, "unit": "ug/m3"}}, tz=tz), "PM2.5: negative value"),
        "timestamp a day ahead": (air_topic, lambda s: message(AIR, s, ok, ts=dt.datetime.now(tz) + dt.timedelta(days=1), tz=tz), "is in the future"),
        "schema from the future": (air_topic, lambda s: message(AIR, s, ok, schema=SCHEMA_VERSION + 1, tz=tz), f"schema version {SCHEMA_VERSION + 1} is newer"),
        "over 64 KiB": (air_topic, lambda s: message(AIR, s, ok, tz=tz)[:-1] + b', "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}', "over the 65536-byte limit"),
        "another site's topic": (air_topic, lambda s: message(RIVER, s, {"DO": {"v": 7.0, "unit": "mg/L"}}, tz=tz), f"site {RIVER} published on topic"),
    }


BAD_CASES = list(_bad_cases(None))


@pytest.mark.parametrize("case", BAD_CASES)
async def test_bad_input_goes_to_the_deadletter_topic_and_its_neighbours_arrive(park, mosquitto, tansu, case):
    topic, build, expected = _bad_cases(park.tz)[case]
    before, bad, after = next(_seq), next(_seq), next(_seq)
    ok = {"PM2.5": {"v": 30.0, "unit": "ug/m3"}}
    bad_payload = build(bad)
    async with running(make_collector(park, mosquitto, tansu)) as collector:
        with publisher(mosquitto.port) as pub:
            pub.publish(f"ecopark/air/{AIR}", message(AIR, before, ok, tz=park.tz))
            pub.publish(topic, bad_payload)
            pub.publish(f"ecopark/air/{AIR}", message(AIR, after, ok, tz=park.tz))
        await consume_until(tansu.bootstrap, READING_TOPICS["air"], has_seqs({before, after}))
        mine = (bad_payload[:MAX_MESSAGE_BYTES].decode(errors="backslashreplace"))

        def letter_arrived(records: list) -> bool:
            return any(json.loads(r.value)["payload"] == mine for r in records)

        records = await consume_until(tansu.bootstrap, DEADLETTER_TOPIC, letter_arrived)
        assert collector.deadlettered_total == 1
    (record,) = [r for r in records if json.loads(r.value)["payload"] == mine]
    letter = json.loads(record.value)
    assert expected in letter["reason"]
    assert "\n" not in letter["reason"]
    assert letter["source"] == f"mqtt:{topic}"
    # keyed by the site when the site is one of the park's, by nothing otherwise
    assert record.key == (None if case == "unknown site" else (RIVER if case == "another site's topic" else AIR).encode())


# -- nothing is lost ------------------------------------------------------------------------------

async def test_with_kafka_down_messages_wait_unacknowledged_and_all_arrive_when_it_returns(park, mosquitto, fresh_tansu):
    seqs = {next(_seq) for _ in range(20)}
    async with running(make_collector(park, mosquitto, fresh_tansu)) as collector:
        fresh_tansu.stop()
        with publisher(mosquitto.port) as pub:
            for seq in sorted(seqs):
                pub.publish(f"ecopark/air/{AIR}", message(AIR, seq, {"SO2": {"v": 9.0, "unit": "ug/m3"}}, tz=park.tz))
        # taken from the broker, but neither produced nor acknowledged while Kafka is away
        await _until(lambda: collector.received >= len(seqs))
        assert collector.produced == 0 and collector.acked == 0
        fresh_tansu.start()  # same port, empty (memory storage)
        records = await consume_until(fresh_tansu.bootstrap, READING_TOPICS["air"], has_seqs(seqs))
    assert {json.loads(r.value)["seq"] for r in readings_with(records, seqs)} == seqs


async def test_messages_not_yet_in_kafka_are_redelivered_to_the_next_collector(park, mosquitto, fresh_tansu):
    # Ack-after-produce proper: the first collector dies while Kafka is away; the broker still
    # holds every message of the session because none was acknowledged.
    seqs = {next(_seq) for _ in range(20)}
    client_id = f"test-collector-{next(_client_ids)}"
    async with running(make_collector(park, mosquitto, fresh_tansu, client_id)) as first:
        fresh_tansu.stop()
        with publisher(mosquitto.port) as pub:
            for seq in sorted(seqs):
                pub.publish(f"ecopark/water/{RIVER}", message(RIVER, seq, {"TP": {"v": 0.05, "unit": "mg/L"}}, tz=park.tz))
        await _until(lambda: first.received >= len(seqs))
    assert first.acked == 0
    fresh_tansu.start()
    async with running(make_collector(park, mosquitto, fresh_tansu, client_id)) as second:
        records = await consume_until(fresh_tansu.bootstrap, READING_TOPICS["water"], has_seqs(seqs))
        assert second.received >= len(seqs)
    assert {json.loads(r.value)["seq"] for r in readings_with(records, seqs)} == seqs


@pytest.fixture
def persistent_mosquitto() -> Iterator[Mosquitto]:
    """Like ``fresh_mosquitto``, but its persistence really works when the tests run as root.

    Mosquitto started as root drops to the ``mosquitto`` user, which cannot write into pytest's
    0700 tmp directories: persistence then fails ("Error: Permission denied" in mosquitto.log)
    and a restart loses every session. A world-writable directory of its own avoids that.
    """
    workdir = Path(tempfile.mkdtemp(prefix="ecopark-mosquitto-"))
    workdir.chmod(0o777)
    broker = Mosquitto(workdir=workdir).start()
    yield broker
    broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


async def test_after_a_broker_restart_the_collector_reconnects_and_continues(park, persistent_mosquitto, tansu):
    fresh_mosquitto = persistent_mosquitto
    first, during, later = next(_seq), next(_seq), next(_seq)
    values = {"COD": {"v": 42.0, "unit": "mg/L"}}
    site = "YNDL-W1"
    topic = park.mqtt_topic(park.site(site))
    async with running(make_collector(park, fresh_mosquitto, tansu)) as collector:
        with publisher(fresh_mosquitto.port) as pub:
            pub.publish(topic, message(site, first, values, tz=park.tz))
        await consume_until(tansu.bootstrap, READING_TOPICS["emission"], has_seqs({first}))
        fresh_mosquitto.restart()  # same port; the persistent session survives (persistence on)
        # published before the collector is back: the broker queues it for the session
        with publisher(fresh_mosquitto.port) as pub:
            pub.publish(topic, message(site, during, values, tz=park.tz))
        await consume_until(tansu.bootstrap, READING_TOPICS["emission"], has_seqs({during}))
        with publisher(fresh_mosquitto.port) as pub:
            pub.publish(topic, message(site, later, values, tz=park.tz))
        await consume_until(tansu.bootstrap, READING_TOPICS["emission"], has_seqs({later}))
        assert collector.produced >= 3
        assert collector.mqtt_connects >= 2 and collector.sessions_lost == 0


async def _until(condition: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    """Poll an in-process counter until ``condition()`` holds (fails the test at the deadline)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout:.0f} s")
        await asyncio.sleep(0.02)


async def test_readings_of_one_site_arriving_together_share_one_kafka_record(park, mosquitto, tansu):
    # Fewer, larger records: the stream worker pays Faust's per-event cost once per record.
    seqs = {next(_seq) for _ in range(20)}
    collector = make_collector(park, mosquitto, tansu)
    async with running(collector):
        with publisher(mosquitto.port) as pub:
            for seq in sorted(seqs):
                pub.publish(park.mqtt_topic(park.site(AIR)), message(AIR, seq, {"PM2.5": {"v": 30.0, "unit": "ug/m3"}}, tz=park.tz))
        records = await consume_until(tansu.bootstrap, READING_TOPICS["air"], has_seqs(seqs))
    mine = [r for r in records if readings_with([r], seqs)]
    assert len(mine) < len(seqs)
    assert all(r.key == AIR.encode() for r in mine)
    assert [json.loads(x.value)["seq"] for x in readings_with(mine, seqs)] == sorted(seqs)  # order kept
