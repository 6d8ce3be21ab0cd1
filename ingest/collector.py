"""The MQTT collector: readings from the broker into Kafka, acknowledged only once Kafka has them.

One ``Collector`` subscribes (QoS 1, persistent session, fixed client id) to ``{prefix}/+/+``,
validates every message with ``park.reading.validate_reading`` and produces it to Kafka
(``acks="all"``): valid readings to ``READING_TOPICS[site.kind]`` keyed by site id — the readings
of one site taken in one batch go as one record, a JSON array (``park.reading.encode_readings``),
because the Faust worker's cost is per record — and a bad message to ``DEADLETTER_TOPIC`` with the
reason. The MQTT PUBACK of a message is sent only after the
produce of that message (to either topic) was acknowledged, so a message is never lost: if Kafka
is away nothing is acknowledged, the broker keeps the messages of the session, and they arrive
when Kafka is back (or are redelivered by the broker after a collector restart).

Duplicates are **forwarded, not removed**: a reading that arrives twice (a sender's retry, a
broker redelivery after a lost PUBACK) is produced twice with the same key and the same stable id
(``Reading.id``: site, timestamp, seq). The stream stage is idempotent on that id (DESIGN.md,
"At-least-once, idempotent"); deduplicating here would need a state that a restart loses anyway.

Threads: paho runs its network loop in its own thread (``loop_start``). ``on_message`` only
appends ``(topic, payload, mid, qos)`` to a deque and wakes the asyncio loop when it sleeps; the
asyncio side drains the deque in batches, sends each batch with ``send()`` per record and awaits
the futures, then acknowledges the batch. The number of unacknowledged messages the broker hands
us is bounded by the MQTT receive maximum (``RECEIVE_MAXIMUM``), so the deque is bounded too.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from park.model import DEADLETTER_TOPIC, READING_TOPICS, Park
from park.reading import InvalidReading, Reading, dead_letter, encode_dead_letter, encode_readings, validate_reading

log = logging.getLogger("ecopark.ingest.collector")

# MQTT v5 session: kept by the broker this long after the collector disconnects (s). A day covers
# a collector that is down over a night; the production Mosquitto keeps persistent clients as long.
SESSION_EXPIRY_S: Final[int] = 24 * 3600
# Unacknowledged QoS 1 messages the broker may hand us at once (MQTT v5 Receive Maximum, the
# protocol's maximum is 65,535). This bounds what the collector holds while Kafka is away.
RECEIVE_MAXIMUM: Final[int] = 10_000
# Messages taken from the queue per Kafka batch.
BATCH_MAX: Final[int] = 5_000
# Readings of one site in one Kafka record at most (a record stays far below Kafka's 1 MB default).
RECORD_MAX_READINGS: Final[int] = 200
# Reconnect back-off of paho's loop, and of the Kafka retries (s).
RECONNECT_MIN_S: Final[float] = 0.5
RECONNECT_MAX_S: Final[float] = 15.0
KAFKA_RETRY_MIN_S: Final[float] = 0.5
KAFKA_RETRY_MAX_S: Final[float] = 10.0
# How long one produce may wait for Kafka before it counts as failed and is retried (ms).
KAFKA_REQUEST_TIMEOUT_MS: Final[int] = 8_000
# Partitions of the topics the collector creates when they do not exist (keyed by site id).
DEFAULT_PARTITIONS: Final[int] = 4
MQTT_KEEPALIVE_S: Final[int] = 30


class Collector:
    """MQTT → Kafka for one park.

    ``now`` (a callable returning an aware datetime) is the clock validation judges "in the
    future" by; ``None`` is the system clock.

    Counters, read at any time: ``received`` (MQTT messages taken), ``produced`` (valid readings
    Kafka acknowledged), ``deadlettered`` (a ``Counter`` of bad messages Kafka acknowledged, by
    reason category, see ``reason_category``), ``acked`` (PUBACKs queued to the broker),
    ``kafka_failures`` (batches that had to be retried), ``mqtt_connects`` and ``sessions_lost``
    (reconnects on which the broker no longer had our session).
    ``started`` is set when ``run()`` began; ``ready`` when Kafka is reachable, the topics exist
    and the MQTT subscription was granted.
    """

    def __init__(
        self,
        park: Park,
        mqtt_host: str,
        mqtt_port: int,
        kafka_bootstrap: str,
        *,
        client_id: str = "ecopark-collector",
        username: str | None = None,
        password: str | None = None,
        now: Callable[[], dt.datetime] | None = None,
        partitions: int = DEFAULT_PARTITIONS,
    ) -> None:
        self.park = park
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.kafka_bootstrap = kafka_bootstrap
        self.client_id = client_id
        self.username = username
        self.password = password
        self.now = now
        self.partitions = partitions
        self.subscription = f"{park.mqtt_prefix}/+/+"

        self.started = asyncio.Event()
        self.ready = asyncio.Event()
        self.received = 0
        self.produced = 0
        self.deadlettered: Counter[str] = Counter()
        self.acked = 0
        self.kafka_failures = 0
        self.mqtt_connects = 0
        self.sessions_lost = 0
        self._kafka_suspect_always = False
        self._kafka_suspect = False  # a Kafka connection broke since the topics were last seen
        self._last_offset: dict = {}  # TopicPartition → the last offset Kafka acknowledged

        self._queue: collections.deque[tuple[str, bytes, int, int]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._wakeup_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._producer = None
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._mqtt_connected = False
        self._mqtt_lost_logged = False
        # site id → (Kafka topic, key), and MQTT topic → known site id, built once for the hot path
        self._route = {s.id: (READING_TOPICS[s.kind], s.id.encode()) for s in park.sites.values()}
        self._topic_site = {park.mqtt_topic(s): s.id for s in park.sites.values()}

    @property
    def deadlettered_total(self) -> int:
        return sum(self.deadlettered.values())

    async def run(self) -> None:
        """Collect until ``stop()``. Waits (with back-off) for Kafka, then subscribes."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._stop_requested.clear()
        self._stopped.clear()
        self.started.set()
        try:
            if not await self._start_kafka():
                return
            self._start_mqtt()
            await self._pump()
        finally:
            await self._shutdown()
            self._stopped.set()

    async def stop(self) -> None:
        """Stop collecting: unacknowledged messages stay with the broker for the next run."""
        self._stopping = True
        self._stop_requested.set()
        self._wakeup.set()
        if self.started.is_set():
            await self._stopped.wait()

    # -- Kafka ---------------------------------------------------------------------------------

    async def _start_kafka(self) -> bool:
        from aiokafka import AIOKafkaProducer

        delay = KAFKA_RETRY_MIN_S
        logged = False
        while not self._stopping:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka_bootstrap,
                client_id=self.client_id,
                acks="all",
                linger_ms=0,
                max_batch_size=512 * 1024,
                request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
                retry_backoff_ms=200,
                # compression stays off: only gzip is available here and it costs ~30 % (STACK-NOTES)
            )
            try:
                await self._ensure_topics()
                self._watch_connections(producer)
                await producer.start()
                self._producer = producer
                # Verify the topics once more after the first batch: Kafka may have restarted
                # empty between ``_ensure_topics`` and it without the client noticing an error.
                self._kafka_suspect = True
                if logged:
                    log.warning("Kafka at %s is reachable again", self.kafka_bootstrap)
                return True
            except Exception as exc:  # noqa: BLE001 - any failure to reach Kafka is retried
                await _close_quietly(producer)
                if not logged:
                    log.warning("Kafka at %s is not reachable (%s); retrying with back-off", self.kafka_bootstrap, _describe(exc))
                    logged = True
                await self._sleep(delay)
                delay = min(delay * 2, KAFKA_RETRY_MAX_S)
        return False

    async def _ensure_topics(self) -> None:
        from ecopark.services import ensure_topics  # the shared helper the demo and tests use

        topics = {t: self.partitions for t in READING_TOPICS.values()}
        topics[DEADLETTER_TOPIC] = self.partitions
        await ensure_topics(self.kafka_bootstrap, topics, timeout=KAFKA_REQUEST_TIMEOUT_MS / 1000)

    def _watch_connections(self, producer) -> None:
        """Note every time the Kafka client finds its metadata stale (see ``_deliver``).

        aiokafka forces a metadata update whenever a connection breaks or cannot be opened, and
        on errors that mean the cluster changed; it has no public hook for those events, so its
        client's ``force_metadata_update`` is wrapped. Without that method (another aiokafka),
        every batch is checked instead: correct, but a metadata request per batch.
        """
        client = producer.client
        original = getattr(client, "force_metadata_update", None)
        if original is None:
            self._kafka_suspect_always = True
            return

        def force_metadata_update():
            self._kafka_suspect = True
            return original()

        client.force_metadata_update = force_metadata_update

    async def _missing_topics(self) -> set[str] | None:
        """Our topics the broker does not list; ``None`` when it cannot be asked."""
        from aiokafka.admin import AIOKafkaAdminClient

        wanted = set(READING_TOPICS.values()) | {DEADLETTER_TOPIC}
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka_bootstrap, request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS)
        try:
            await admin.start()
            return wanted - set(await admin.list_topics())
        except Exception:  # noqa: BLE001 - unreachable again: the batch is resent
            return None
        finally:
            await admin.close()

    async def _deliver(self, records: list[tuple[str, bytes | None, bytes, str | int]]) -> None:
        """Produce ``(topic, key, value, what)`` until Kafka acknowledged every one; ``what`` is the
        number of readings in a readings record, or the category of a dead letter."""
        pending = records
        delay = KAFKA_RETRY_MIN_S
        outage_logged = False
        while pending:
            send = self._producer.send
            futures = []
            failed: list[tuple[str, bytes | None, bytes, str | int]] = []
            error: BaseException | None = None
            for rec in pending:
                if error is not None:
                    # send() itself failed (no metadata, buffer full): Kafka is away, stop trying
                    failed.append(rec)
                    futures.append(None)
                    continue
                try:
                    futures.append(await send(rec[0], rec[2], key=rec[1]))
                except Exception as exc:  # noqa: BLE001 - retried below
                    error = exc
                    failed.append(rec)
                    futures.append(None)
            results = await asyncio.gather(*(f for f in futures if f is not None), return_exceptions=True)
            it = iter(results)
            last_offset = self._last_offset
            lost_log: str | None = None
            acknowledged: list[str | int] = []
            for rec, fut in zip(pending, futures):
                if fut is None:
                    continue
                result = next(it)
                if isinstance(result, BaseException):
                    error = result
                    failed.append(rec)
                    continue
                # Offsets of a partition only grow. One that does not means the broker lost its log
                # (Tansu's memory storage after a restart acknowledges writes to topics it no
                # longer has): what it acknowledged since cannot be trusted, so it is resent.
                tp = result.topic_partition
                if result.offset <= last_offset.get(tp, -1):
                    lost_log = lost_log or f"{tp.topic}-{tp.partition} offset {result.offset} after {last_offset[tp]}"
                last_offset[tp] = result.offset
                acknowledged.append(rec[3])
            if lost_log is None and not failed and (self._kafka_suspect or self._kafka_suspect_always):
                # A connection to Kafka broke since the topics were last seen: the batch may have
                # ridden out a broker restart inside the client's retries. Check the broker still
                # has our topics before acknowledging (a real Kafka keeps them; Tansu forgets them
                # and acknowledges writes to them into nowhere).
                missing = await self._missing_topics()
                if missing is None:
                    lost_log = "cannot list topics after a broken connection"
                elif missing:
                    lost_log = f"topic(s) {', '.join(sorted(missing))} missing after a broken connection"
                else:
                    self._kafka_suspect = False
            if lost_log is not None:
                last_offset.clear()
                failed = list(pending)
                error = RuntimeError(f"Kafka lost its log ({lost_log}); re-creating topics and producing again")
            else:
                for category in acknowledged:
                    if isinstance(category, int):  # a record of that many readings
                        self.produced += category
                    else:
                        self.deadlettered[category] += 1
            if not failed:
                if outage_logged:
                    log.warning("Kafka at %s acknowledges again; delivery resumed", self.kafka_bootstrap)
                return
            self.kafka_failures += 1
            if not outage_logged:
                log.warning(
                    "Kafka at %s did not acknowledge %d message(s) (%s); holding their MQTT acks and retrying",
                    self.kafka_bootstrap, len(failed), _describe(error),
                )
                outage_logged = True
            if self._stopping:
                raise _Stopping
            await self._sleep(delay)
            delay = min(delay * 2, KAFKA_RETRY_MAX_S)
            # A Kafka that came back empty (Tansu keeps topics in memory) needs its topics again.
            try:
                await self._ensure_topics()
            except Exception:  # noqa: BLE001 - still away: the next round retries
                pass
            pending = failed

    # -- MQTT ----------------------------------------------------------------------------------

    def _start_mqtt(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.reconnect_delay_set(min_delay=int(max(1, RECONNECT_MIN_S)), max_delay=int(RECONNECT_MAX_S))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client = client
        try:
            # clean_start=False on every connect: the broker keeps our subscription and unacked
            # messages across collector restarts and reconnects.
            client.connect_async(self.mqtt_host, self.mqtt_port, keepalive=MQTT_KEEPALIVE_S, clean_start=False, properties=props)
        except (OSError, ValueError) as exc:
            log.warning("MQTT broker %s:%d: %s; retrying", self.mqtt_host, self.mqtt_port, _describe(exc))
        rc = client.loop_start()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"cannot start the MQTT network thread: {mqtt.error_string(rc)}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # paho thread
        if reason_code.is_failure:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.mqtt_host, self.mqtt_port, reason_code)
            return
        self._mqtt_connected = True
        self.mqtt_connects += 1
        if self.mqtt_connects > 1 and not flags.session_present:
            # The broker forgot our session (no persistence, expired): what was published for us
            # while we were away is gone. Nothing the collector can do but say so.
            self.sessions_lost += 1
            log.warning("MQTT broker %s:%d: reconnected without our session; messages published while we were away are lost", self.mqtt_host, self.mqtt_port)
        elif self._mqtt_lost_logged:
            log.warning("MQTT broker %s:%d: reconnected, session kept", self.mqtt_host, self.mqtt_port)
        self._mqtt_lost_logged = False
        # Subscribe on every connect: harmless when the session kept it, needed when it did not.
        rc, _ = client.subscribe(self.subscription, qos=1)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("MQTT subscribe to %s failed: %s", self.subscription, mqtt.error_string(rc))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # paho thread
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.warning("MQTT broker refused the subscription to %s: %s", self.subscription, bad[0])
            return
        if reason_codes and reason_codes[0].value < 1:
            log.warning("MQTT broker granted only QoS 0 for %s: messages may be lost", self.subscription)
        self._loop.call_soon_threadsafe(self.ready.set)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # paho thread
        self._mqtt_connected = False
        if self._stopping or self._mqtt_lost_logged:
            return
        self._mqtt_lost_logged = True
        log.warning("MQTT broker %s:%d: connection lost (%s); reconnecting with back-off", self.mqtt_host, self.mqtt_port, reason_code)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:  # paho thread: keep lean
        self._queue.append((message.topic, message.payload, message.mid, message.qos))
        self.received += 1  # only this thread writes it
        if not self._wakeup_pending:
            self._wakeup_pending = True
            self._loop.call_soon_threadsafe(self._wakeup.set)

    # -- the pump ------------------------------------------------------------------------------

    async def _pump(self) -> None:
        queue = self._queue
        route = self._route
        park = self.park
        now_fn = self.now
        while not self._stopping:
            await self._wakeup.wait()
            self._wakeup.clear()
            # Clear before draining: a message appended after the drain schedules a new wakeup.
            self._wakeup_pending = False
            while queue and not self._stopping:
                batch = [queue.popleft() for _ in range(min(len(queue), BATCH_MAX))]
                now = now_fn() if now_fn is not None else None
                records = []
                by_site: dict[str, list[Reading]] = {}
                for topic, payload, _mid, _qos in batch:
                    try:
                        reading = validate_reading(payload, park, topic=topic, now=now)
                    except InvalidReading as exc:
                        records.append(self._dead_letter(str(exc), exc.site, payload, topic))
                        continue
                    by_site.setdefault(reading.site, []).append(reading)
                # One Kafka record per site per batch (in arrival order within the site): the
                # stream worker pays Faust's per-event cost once per record, not once per reading.
                for site_id, readings in by_site.items():
                    kafka_topic, key = route[site_id]
                    for i in range(0, len(readings), RECORD_MAX_READINGS):
                        chunk = readings[i:i + RECORD_MAX_READINGS]
                        records.append((kafka_topic, key, encode_readings(chunk), len(chunk)))
                try:
                    await self._deliver(records)
                except _Stopping:
                    return
                self._ack(batch)

    def _dead_letter(self, reason: str, site: str | None, payload: bytes, topic: str) -> tuple[str, bytes | None, bytes, str]:
        known = site if site in self._route else self._topic_site.get(topic)
        letter = dead_letter(reason, payload, source=f"mqtt:{topic}", site=site or known)
        return (DEADLETTER_TOPIC, known.encode() if known else None, encode_dead_letter(letter), reason_category(reason))

    def _ack(self, batch: list[tuple[str, bytes, int, int]]) -> None:
        client = self._client
        ack = client.ack
        failures = 0
        # paho wakes its network thread with one socket write per queued packet; for a batch of
        # PUBACKs one wake-up is enough (measured: the per-ack wake-ups cost more CPU than
        # validating the reading). Without that attribute (another paho) every ack wakes it.
        wake = getattr(client, "_sockpairW", None)
        if wake is not None:
            client._sockpairW = None
        try:
            for _topic, _payload, mid, qos in batch:
                if qos == 0:
                    continue
                if ack(mid, qos) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    failures += 1
        finally:
            if wake is not None:
                client._sockpairW = wake
                try:
                    wake.send(b"0")
                except (BlockingIOError, OSError):
                    pass  # its buffer is full of wake-ups already, or the client is closing
        self.acked += len(batch) - failures
        if failures:
            # The broker redelivers what it did not see acknowledged: a duplicate, never a loss.
            log.warning("MQTT: %d acknowledgement(s) could not be queued; the broker will redeliver them", failures)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on ``stop()``."""
        try:
            await asyncio.wait_for(self._stop_requested.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def _shutdown(self) -> None:
        if self._client is not None:
            client = self._client
            self._client = None
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await _close_quietly(producer)
        self.ready.clear()


# Reason categories for the dead-letter counter: the reason text holds values (site ids, numbers),
# the category does not. First match wins; anything else counts as "invalid".
REASON_CATEGORIES: Final[tuple[tuple[str, str], ...]] = (
    ("over the", "too large"),
    ("malformed JSON", "malformed JSON"),
    ("bad message", "bad structure"),
    ("schema version", "schema version"),
    ("unknown site", "unknown site"),
    ("published on topic", "wrong topic"),
    ("unknown parameter", "unknown parameter"),
    ("is not measured at", "parameter not measured"),
    ("does not fit", "unit"),
    ("is in the future", "future timestamp"),
    ("timestamp", "bad timestamp"),
    ("is not a number", "not a number"),
    ("negative", "negative value"),
    ("physical bound", "out of range"),
    ("data flag", "unknown flag"),
    ("interval", "unknown interval"),
    ("sequence number", "bad sequence"),
    ("no values", "no values"),
)


def reason_category(reason: str) -> str:
    """The short category of a dead-letter reason (what ``Collector.deadlettered`` counts by)."""
    for needle, category in REASON_CATEGORIES:
        if needle in reason:
            return category
    return "invalid"


class _Stopping(Exception):
    """Raised inside a delivery retry loop when the collector is asked to stop."""


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return text if text.startswith(name) else (f"{name}: {text}" if text else name)


async def _close_quietly(producer) -> None:
    try:
        await producer.stop()
    except Exception:  # noqa: BLE001 - closing a producer that never connected
        pass
