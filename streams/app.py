"""The Faust app: one agent takes the readings topics in batches and hands them to ParkProcessor.

Settings come from the environment (``ecopark worker`` and ``ecopark demo`` set them):

| variable | meaning | default |
|---|---|---|
| ``ECOPARK_KAFKA`` | Kafka bootstrap ``host:port`` | ``127.0.0.1:9092`` |
| ``ECOPARK_STORE`` | store URL (``sqlite:///path`` or ``influxdb://…``) | ``sqlite:var/ecopark.db`` |
| ``ECOPARK_CONFIG`` | park config | ``config/park.yaml`` |
| ``ECOPARK_WORKER_WEB_PORT`` | port of Faust's own web server, bound to 127.0.0.1 | ``6066`` |
| ``ECOPARK_PM_REALTIME`` | HJ 633-2012 real-time PM method | ``24h_moving`` |
| ``ECOPARK_BATCH`` / ``ECOPARK_BATCH_WITHIN_S`` | batch size / max wait | ``2000`` / ``0.1`` |
| ``ECOPARK_PARTITIONS`` | partitions of the readings topics | ``4`` |
| ``ECOPARK_FETCH_MAX_WAIT_MS`` | longest a Kafka fetch may wait for data | ``100`` |

Why batches: Faust costs ≈ 70 µs per event and a windowed-table update ≈ 200 µs (STACK-NOTES.md),
so the agent keeps no Faust table and derives once per batch per touched hour. State lives in the
processor's cache, backed by the store (see ``streams/processor.py`` for why not Faust tables on
Tansu). Ordering per site is kept: readings are keyed by site and the agent runs one stream.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faust
import msgspec

from park.model import DEADLETTER_TOPIC, READING_TOPICS, load_park
from park.reading import dead_letter, decode_readings, encode_dead_letter
from store import open_store
from streams.processor import ParkProcessor, process_with_retry

EVENTS_TOPIC = "alerts.events"

log = logging.getLogger("ecopark.streams")

KAFKA = os.environ.get("ECOPARK_KAFKA", "127.0.0.1:9092")
STORE_URL = os.environ.get("ECOPARK_STORE", "sqlite:var/ecopark.db")
CONFIG = os.environ.get("ECOPARK_CONFIG", str(Path(__file__).resolve().parent.parent / "config" / "park.yaml"))
BATCH = int(os.environ.get("ECOPARK_BATCH", "2000"))
BATCH_WITHIN_S = float(os.environ.get("ECOPARK_BATCH_WITHIN_S", "0.1"))
PARTITIONS = int(os.environ.get("ECOPARK_PARTITIONS", "4"))
FETCH_MAX_WAIT_MS = int(os.environ.get("ECOPARK_FETCH_MAX_WAIT_MS", "100"))


app = faust.App(
    "ecopark-streams",
    broker=f"kafka://{KAFKA}",
    value_serializer="raw",
    store="memory://",
    topic_partitions=PARTITIONS,
    # Tansu delays a group join by half the session timeout (STACK-NOTES.md): 6 s → ~4 s.
    broker_session_timeout=6,
    broker_heartbeat_interval=2,
    # Faust 0.15 binds its web server even when disabled: keep it on loopback, on a chosen port.
    web_enabled=False,
    web_host="127.0.0.1",
    web_port=int(os.environ.get("ECOPARK_WORKER_WEB_PORT", "6066")),
    producer_compression_type=None,
    consumer_auto_offset_reset="earliest",
)

readings_topic = app.topic(*READING_TOPICS.values(), value_type=bytes, value_serializer="raw", partitions=PARTITIONS)
deadletter_topic = app.topic(DEADLETTER_TOPIC, value_type=bytes, value_serializer="raw")
events_topic = app.topic(EVENTS_TOPIC, value_type=bytes, value_serializer="raw")

_processor: ParkProcessor | None = None
_events_encoder = msgspec.json.Encoder()


@app.agent(readings_topic, concurrency=1)
async def derive(stream):
    """Batches of readings → ParkProcessor; undecodable records → dead-letter topic."""
    await _ensure_processor()
    async for batch in stream.take(BATCH, within=BATCH_WITHIN_S):
        readings = []
        for data in batch:
            try:
                readings.extend(decode_readings(data))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                letter = dead_letter(f"undecodable record on a readings topic: {exc}", data, source="kafka:readings")
                await deadletter_topic.send(value=encode_dead_letter(letter))
        out = await process_with_retry(await _ensure_processor(), readings, log=log)
        for event in out.events:
            await events_topic.send(key=event.site.encode(), value=_events_encoder.encode(event))


@app.timer(interval=2.0)
async def silence_watch() -> None:
    if _processor is None:
        return
    for event in await _processor.check_silence():
        await events_topic.send(key=event.site.encode(), value=_events_encoder.encode(event))


async def _ensure_processor() -> ParkProcessor:
    """Open the store and build the processor on first use inside the worker's event loop."""
    global _processor
    if _processor is None:
        # Faust 0.15.3 sets the root logger to DEBUG whatever the level asked (STACK-NOTES.md).
        logging.getLogger().setLevel(logging.WARNING)
        for name in ("faust", "mode", "aiokafka", "kafka"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("ecopark").setLevel(logging.INFO)
        park = load_park(CONFIG)
        store = open_store(STORE_URL)
        _processor = ParkProcessor(park, store, pm_realtime=os.environ.get("ECOPARK_PM_REALTIME", "24h_moving"))
        log.info("streams: park %s, %d sites, store %s, kafka %s", park.id, len(park.sites), STORE_URL, KAFKA)
    return _processor


def _fetch_wait_patch(max_wait_ms: int) -> None:
    """Faust 0.15 hard-codes the consumer's fetch_max_wait_ms at 1,500 ms. Kafka answers a fetch
    as soon as data arrives, so that is harmless there; Tansu holds every fetch for the full wait
    (measured: p50 0.39 s / p99 0.75 s at 1,500 ms, 0.03 s / 0.06 s at 100 ms), which alone broke
    the 1 s latency goal. The wait becomes a setting; a short one costs an idle poll per wait."""
    from faust.transport.drivers import aiokafka as driver

    create = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "_ecopark_patched", False):
        return

    def _create_worker_consumer(self, transport):
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # read when the consumer starts its fetcher
        return consumer

    _create_worker_consumer._ecopark_patched = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


_fetch_wait_patch(FETCH_MAX_WAIT_MS)  # before any worker creates its consumer
