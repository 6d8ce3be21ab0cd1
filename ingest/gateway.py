"""The HJ 212 TCP gateway: dataloggers (HJ 212-2017 and -2025) in, reading messages out on MQTT.

One asyncio TCP server; every connection has its own ``hj212.Framer`` and is served by its own
task, so a connection that sends garbage, never ends a frame or trickles bytes (slow-loris) only
ever costs itself. The protocol itself (framing, CRC, SM4, replies) is ``ingest/hj212.py``; this
module decides what a packet means for the park.

Per packet
----------
1. ``hj212.parse(..., keys=<SM4 key per MN>)``. A packet that does not parse (bad CRC, bad frame)
   is counted by error kind and dropped without a reply: its header cannot be trusted, and
   HJ 212-2017 §6.1 says the receiver stops processing on a CRC error. The datalogger re-sends
   when its 9014 does not come.
2. Authentication: the MN must be a configured site and the PW must match, else the packet is
   *refused*: nothing is published or replied, one log line names the peer (rate-limited per
   peer address and reason). A connection that has only been refused (``max_refusals``) is closed;
   a peer address with ``peer_failure_limit`` refusals within ``PEER_FAILURE_WINDOW_S`` has its
   new connections closed for ``peer_block_s``.
3. Data uploads 2011 / 2051 / 2061 / 2031 (both editions) become **one reading message** (see
   ``park/reading.py``) per packet, validated with ``validate_reading`` (so the gateway never
   publishes what the collector would dead-letter), published with QoS 1 on
   ``park.mqtt_topic(site)``. The 9014 data reply is sent **only after the broker's PUBACK**.
4. Other packets get the reply the standard prescribes (``hj212.reply``): 9013 for notifications
   and the 2025 heartbeat 9015, 9011/9012 for requests, 9014 for other uploads that ask for it
   (running state 2021, boot time 2081, ... are acknowledged and counted in ``ignored``; they are
   not readings).

When a reading cannot be published
----------------------------------
HJ 212's data reply 9014 carries no return code (``CP=&&&&``; the ``QnRtn``/``ExeRtn`` tables
belong to requests, not uploads), so the only negative answer a datalogger understands is *no
9014*: it then retries and, failing that, back-fills (``RF=1``) later.

- **MQTT unavailable** (not connected, backlog full, no PUBACK within ``publish_timeout_s``):
  transient. The packet goes to the dead-letter file (reason + raw packet) and **no 9014** is
  sent, so the datalogger re-sends and the reading arrives once the broker is back. A packet
  that is both dead-lettered and later published is harmless: its reading has a stable id.
- **Invalid reading** (validate_reading refuses it: value out of physical bounds, unknown flag,
  clock far ahead, no DataTime, no value of a parameter the site measures): permanent; a re-send
  carries the same bytes and fails the same way, and an un-acknowledged packet would be re-sent
  and back-filled forever, blocking the device's history queue. The packet goes to the
  dead-letter file with the reason **and is acknowledged with 9014** (it was received and kept).
  If the dead-letter file cannot be written, no 9014 is sent.

Readings
--------
``site`` = the outlet whose MN matches; ``ts`` = DataTime in the park's zone with its offset;
``seq`` = the QN read as milliseconds since 1970 (calendar arithmetic, no zone: stable, the same
packet re-sent gives the same seq, below 2**53 so JSON readers keep it exact); ``interval`` from
the CN (``HJ212_DATA_COMMANDS``); ``v`` = ``-Rtd`` (real-time) or ``-Avg`` (period data);
``zs`` = ``-ZsRtd``/``-ZsAvg``; ``unit`` = the HJ 212 default unit of the code stated explicitly
(``HJ212_2017_DEFAULT_UNITS``, e.g. a00000 in m3/s), so ``validate_reading`` converts;
``flag`` = ``-Flag`` (N when absent); ``backfill`` = ``RF=1``. Codes that are not parameters of
the site (a01011 flue-gas velocity, ...) are left out and counted as a deviation of the device.
"""

from __future__ import annotations

import asyncio
import calendar
import collections
import datetime as dt
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ingest import hj212
from park.model import Park, Site
from park.reading import (
    SCHEMA_VERSION,
    InvalidReading,
    Reading,
    Value,
    dead_letter,
    encode_dead_letter,
    encode_reading,
    validate_reading,
)

log = logging.getLogger("ecopark.ingest.gateway")

# HJ 212 data commands (reference/hj212.md §5; unchanged in 2025, §C) → reading interval and the
# CP field that carries the measured value (``-Rtd`` real-time, ``-Avg`` period mean), with the
# matching converted (折算) field.
HJ212_DATA_COMMANDS: Final[dict[str, tuple[str, str, str]]] = {
    "2011": ("rt", "Rtd", "ZsRtd"),    # real-time data
    "2051": ("1min", "Avg", "ZsAvg"),  # minute data
    "2061": ("1h", "Avg", "ZsAvg"),    # hourly data
    "2031": ("1d", "Avg", "ZsAvg"),    # daily data
}

# HJ 212-2017 Appendix B default concentration units (Tables B.1 water, B.2 air;
# reference/hj212.md §8), stated explicitly in the reading so validate_reading converts to the
# canonical unit (a00000 m³/s → m³/h, w00000 L/s → m³/h). Codes not listed: the canonical unit.
HJ212_2017_DEFAULT_UNITS: Final[dict[str, str]] = {
    "a00000": "m3/s",   # flue-gas flow
    "a19001": "%",      # O2
    "a21026": "mg/m3",  # SO2
    "a21002": "mg/m3",  # NOx
    "a34013": "mg/m3",  # particulates
    "a01012": "degC",   # flue-gas temperature
    "w00000": "L/s",    # wastewater flow
    "w01001": "",       # pH
    "w01018": "mg/L",   # COD
    "w21003": "mg/L",   # NH3-N
    "w21011": "mg/L",   # TP
    "w21001": "mg/L",   # TN
}

# Bytes a connection may send without completing a frame before it is cut off: twice the
# 8 KiB receive buffer reference/hj212.md §B recommends for an SM4-encrypted maximal frame.
MAX_UNFRAMED_BYTES: Final[int] = 16 * 1024
# Framing/parse errors in a row (no good packet between) after which a connection is closed.
MAX_CONSECUTIVE_ERRORS: Final[int] = 20
# Refusals counted per peer address over this window for throttling (s).
PEER_FAILURE_WINDOW_S: Final[float] = 60.0
# One log line per (peer address, reason) per this many seconds; the rest are counted.
LOG_INTERVAL_S: Final[float] = 60.0
READ_CHUNK: Final[int] = 8192
# HJ 212-2017 Table 7 request reply codes used by the gateway.
QN_RTN_READY: Final[int] = 1
QN_RTN_REJECTED: Final[int] = 2
# Deviation kinds counted per device; further kinds are counted as "other".
MAX_DEVIATION_KINDS: Final[int] = 64
# paho: QoS 1 publishes in flight at once (default 20 would queue a burst inside paho), and the
# bound of its queue (it cannot hold more than 65,535 unacknowledged; STACK-NOTES.md).
MQTT_MAX_INFLIGHT: Final[int] = 1000
MQTT_MAX_QUEUED: Final[int] = 60_000
MQTT_KEEPALIVE_S: Final[int] = 30
MQTT_RECONNECT_MIN_S: Final[float] = 0.2
MQTT_RECONNECT_MAX_S: Final[float] = 5.0
# TCP connect to the broker (runs in a worker thread in asyncio mode).
MQTT_CONNECT_TIMEOUT_S: Final[float] = 3.0


class MqttUnavailable(RuntimeError):
    """The broker cannot take a publication now (not connected, backlog full, no PUBACK)."""


@dataclass
class GatewayCounters:
    """What the gateway has seen since start; read at any time (event-loop thread)."""

    connections: int = 0            # connections accepted
    open_connections: int = 0
    packets: int = 0                # frames taken from the framers
    published: int = 0              # readings the broker acknowledged (PUBACK)
    replies: Counter = field(default_factory=Counter)      # replies sent, by CN ("9014", ...)
    refused: int = 0                # packets refused (unknown MN, wrong PW)
    refused_by_reason: Counter = field(default_factory=Counter)
    invalid: int = 0                # readings validate_reading refused (dead-lettered, acked)
    mqtt_failures: int = 0          # readings not published (dead-lettered, not acked)
    deadlettered: int = 0           # lines written to the dead-letter file
    ignored: Counter = field(default_factory=Counter)      # authenticated packets that are no reading, by CN
    deviations: dict[str, Counter] = field(default_factory=dict)  # MN → deviation kind → count
    errors: Counter = field(default_factory=Counter)       # by kind (HJ212Error subclass, timeouts...)

    def snapshot(self) -> dict[str, Any]:
        return {
            "connections": self.connections, "open_connections": self.open_connections,
            "packets": self.packets, "published": self.published, "replies": dict(self.replies),
            "refused": self.refused, "refused_by_reason": dict(self.refused_by_reason),
            "invalid": self.invalid, "mqtt_failures": self.mqtt_failures,
            "deadlettered": self.deadlettered, "ignored": dict(self.ignored),
            "deviations": {mn: dict(c) for mn, c in self.deviations.items()},
            "errors": dict(self.errors),
        }


class Gateway:
    """HJ 212 TCP server → MQTT reading messages for one park.

    ``port=0`` picks a free port; ``.port`` holds the real one after ``start()``. Timeouts are in
    seconds: ``idle_timeout_s`` closes a connection that sent nothing for that long;
    ``frame_timeout_s`` closes one that started a frame and did not finish it in that time
    (slow-loris); ``publish_timeout_s`` is how long a reading waits for the broker's PUBACK
    (below the 5–10 s a datalogger waits for its 9014, HJ 212-2017 Table 1).
    ``latencies_s`` keeps the last 100,000 packet-received → PUBACK delays (s).

    ``mqtt_io``: ``"thread"`` (default) runs paho's network loop in its own thread
    (``loop_start``; callbacks reach the event loop with ``call_soon_threadsafe``);
    ``"asyncio"`` drives paho's socket from the event loop (paho's external-loop API, reconnects
    with back-off in a task). Both pass the same tests; on the 2-core bench machine the thread
    measured better (bench/gateway_bench.py ``--mqtt-io``).
    """

    def __init__(
        self,
        park: Park,
        mqtt_host: str,
        mqtt_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout_s: float = 300.0,
        deadletter_path: Path | None = None,
        tz: ZoneInfo | None = None,
        frame_timeout_s: float = 60.0,
        publish_timeout_s: float = 4.0,
        write_timeout_s: float = 10.0,
        max_connections: int = 10_000,
        max_refusals: int = 3,
        peer_failure_limit: int = 50,
        peer_block_s: float = 60.0,
        mqtt_client_id: str | None = None,
        mqtt_username: str | None = None,
        mqtt_password: str | None = None,
        mqtt_connect_timeout_s: float = 5.0,
        mqtt_io: str = "thread",
    ) -> None:
        if mqtt_io not in ("asyncio", "thread"):
            raise ValueError(f"mqtt_io {mqtt_io!r}: expected 'asyncio' or 'thread'")
        self.park = park
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.host = host
        self.port = port
        self.idle_timeout_s = idle_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.publish_timeout_s = publish_timeout_s
        self.write_timeout_s = write_timeout_s
        self.deadletter_path = Path(deadletter_path) if deadletter_path is not None else None
        self.tz = tz or park.tz
        self.max_connections = max_connections
        self.max_refusals = max_refusals
        self.peer_failure_limit = peer_failure_limit
        self.peer_block_s = peer_block_s
        self.mqtt_client_id = mqtt_client_id or f"ecopark-gateway-{uuid.uuid4().hex[:12]}"
        self.mqtt_username = mqtt_username
        self.mqtt_password = mqtt_password
        self.mqtt_connect_timeout_s = mqtt_connect_timeout_s
        self.mqtt_io = mqtt_io

        self.counters = GatewayCounters()
        self.latencies_s: collections.deque[float] = collections.deque(maxlen=100_000)
        self._sites: dict[str, Site] = {s.mn: s for s in park.sites.values() if s.mn}
        self._keys: dict[str, bytes] = {s.mn: s.sm4_key for s in park.sites.values() if s.mn and s.sm4_key}
        self._topics: dict[str, str] = {s.id: park.mqtt_topic(s) for s in park.sites.values()}

        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._client: mqtt.Client | None = None
        self._loop_thread: int | None = None
        self._mqtt_tasks: set[asyncio.Task] = set()
        self._mqtt_fds: set[int] = set()
        self._reconnecting = False
        self._mqtt_connected = False
        self._mqtt_connected_event: asyncio.Event | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._handlers: set[asyncio.Task] = set()
        self._stopped: asyncio.Event | None = None
        self._deadletter_fd: int | None = None
        self._logged_deviations: set[tuple[str, str]] = set()
        self._log_gate: dict[tuple[str, str], list[float]] = {}  # key → [last logged, suppressed]
        self._peer_failures: dict[str, collections.deque[float]] = {}
        self._peer_blocked_until: dict[str, float] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the broker (waits up to ``mqtt_connect_timeout_s``; serves anyway) and listen."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._mqtt_connected_event = asyncio.Event()
        if self.deadletter_path is not None:
            self.deadletter_path.parent.mkdir(parents=True, exist_ok=True)
            self._deadletter_fd = os.open(self.deadletter_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.mqtt_client_id, clean_session=True)
        if self.mqtt_username is not None:
            client.username_pw_set(self.mqtt_username, self.mqtt_password)
        client.max_inflight_messages_set(MQTT_MAX_INFLIGHT)
        client.max_queued_messages_set(MQTT_MAX_QUEUED)
        client.reconnect_delay_set(MQTT_RECONNECT_MIN_S, MQTT_RECONNECT_MAX_S)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        self._loop_thread = threading.get_ident()
        client.connect_timeout = MQTT_CONNECT_TIMEOUT_S
        client.connect_async(self.mqtt_host, self.mqtt_port, keepalive=MQTT_KEEPALIVE_S)
        if self.mqtt_io == "thread":
            client.loop_start()
        else:
            client.on_socket_open = self._on_socket_open
            client.on_socket_close = self._on_socket_close
            client.on_socket_register_write = self._on_socket_register_write
            client.on_socket_unregister_write = self._on_socket_unregister_write
            self._spawn(self._mqtt_reconnect())
            self._spawn(self._mqtt_misc())
        try:
            await asyncio.wait_for(self._mqtt_connected_event.wait(), self.mqtt_connect_timeout_s)
        except TimeoutError:
            log.warning("gateway: MQTT broker %s:%s not reachable yet; packets are dead-lettered and not acknowledged until it is",
                        self.mqtt_host, self.mqtt_port)
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("gateway: HJ 212 listening on %s:%d, publishing to mqtt://%s:%d", self.host, self.port, self.mqtt_host, self.mqtt_port)

    async def serve_forever(self) -> None:
        """Run until ``stop()``."""
        if self._server is None:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop listening, close every connection, disconnect from the broker."""
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except TimeoutError:
                pass
            self._server = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(MqttUnavailable("gateway stopping"))
        self._pending.clear()
        if self._client is not None:
            self._mqtt_connected = False  # the disconnect below is ours: no warning
            client, self._client = self._client, None
            for task in list(self._mqtt_tasks):
                task.cancel()
            await asyncio.gather(*self._mqtt_tasks, return_exceptions=True)
            client.disconnect()
            if self.mqtt_io == "thread":
                await asyncio.to_thread(client.loop_stop)
            else:
                client.loop_write()  # the DISCONNECT packet, best effort
                for fd in list(self._mqtt_fds):
                    self._unwatch(fd)
        if self._deadletter_fd is not None:
            os.close(self._deadletter_fd)
            self._deadletter_fd = None
        if self._stopped is not None:
            self._stopped.set()

    @property
    def mqtt_connected(self) -> bool:
        return self._mqtt_connected

    async def wait_mqtt_connected(self, timeout: float = 10.0) -> None:
        """Wait until the broker connection is up (raises TimeoutError)."""
        assert self._mqtt_connected_event is not None, "start() first"
        await asyncio.wait_for(self._mqtt_connected_event.wait(), timeout)

    # -- connections -----------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername") or ("?", 0)
        ip = str(peername[0])
        conn = _Connection(peer=f"{ip}:{peername[1]}", ip=ip, writer=writer)
        self.counters.connections += 1
        if self.counters.open_connections >= self.max_connections or self._peer_blocked(ip):
            self.counters.errors["connection_rejected"] += 1
            self._log_limited(ip, "rejected", "gateway: closing connection from %s: %s", conn.peer,
                              "too many connections" if self.counters.open_connections >= self.max_connections else "peer throttled after repeated refusals")
            writer.close()
            return
        self._handlers.add(task)
        self.counters.open_connections += 1
        framer = hj212.Framer()
        unframed = 0               # bytes since the last complete frame
        partial_since: float | None = None  # when the current unfinished frame began
        try:
            while True:
                now = time.monotonic()
                timeout = self.idle_timeout_s
                if partial_since is not None:
                    timeout = min(timeout, partial_since + self.frame_timeout_s - now)
                try:
                    async with asyncio.timeout(max(timeout, 0.0)):
                        data = await reader.read(READ_CHUNK)
                except TimeoutError:
                    kind = "frame_timeout" if partial_since is not None and time.monotonic() >= partial_since + self.frame_timeout_s else "idle_timeout"
                    self.counters.errors[kind] += 1
                    log.debug("gateway: closing %s: %s", conn.peer, kind)
                    return
                if not data:
                    return
                unframed += len(data)
                for item in framer.feed(data):
                    if isinstance(item, hj212.HJ212Error):
                        self._count_error(conn, item)
                    else:
                        unframed = 0
                        await self._on_frame(conn, item)
                if framer.pending == 0:
                    partial_since = None
                elif partial_since is None:
                    partial_since = time.monotonic()
                if unframed > MAX_UNFRAMED_BYTES:
                    self.counters.errors["unframed_overflow"] += 1
                    self._log_limited(ip, "unframed", "gateway: closing %s: %d bytes without a complete HJ 212 frame", conn.peer, unframed)
                    return
                if conn.consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                    self.counters.errors["too_many_errors"] += 1
                    self._log_limited(ip, "errors", "gateway: closing %s: %d bad packets in a row", conn.peer, conn.consecutive_errors)
                    return
                if conn.refusals >= self.max_refusals and conn.accepted == 0:
                    self._log_limited(ip, "refused-close", "gateway: closing %s after %d refused packets", conn.peer, conn.refusals)
                    return
        except (ConnectionError, _WriteTimeout) as exc:
            self.counters.errors[type(exc).__name__] += 1
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug must cost one connection, never the server
            self.counters.errors["internal"] += 1
            log.exception("gateway: internal error on connection %s", conn.peer)
        finally:
            writer.close()
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except (Exception, asyncio.CancelledError):
                pass
            self.counters.open_connections -= 1
            self._handlers.discard(task)

    def _count_error(self, conn: _Connection, exc: Exception) -> None:
        kind = type(exc).__name__
        self.counters.errors[kind] += 1
        conn.consecutive_errors += 1
        self._log_limited(conn.ip, kind, "gateway: bad packet from %s: %s", conn.peer, exc)

    # -- packets ---------------------------------------------------------------------------

    async def _on_frame(self, conn: _Connection, frame: bytes) -> None:
        received = time.monotonic()
        self.counters.packets += 1
        try:
            packet = hj212.parse(frame, keys=self._keys, tz=self.tz)
        except hj212.HJ212Error as exc:
            self._count_error(conn, exc)
            return
        site = self._sites.get(packet.mn)
        if site is None:
            self._refuse(conn, packet, "unknown MN")
            return
        if packet.pw != site.pw:
            self._refuse(conn, packet, "wrong PW")
            return
        conn.accepted += 1
        conn.consecutive_errors = 0
        for deviation in packet.deviations:
            self._deviation(packet.mn, deviation)
        cn = str(packet.cn)
        command = HJ212_DATA_COMMANDS.get(cn)
        if command is None:
            if cn.startswith("2"):
                self.counters.ignored[cn] += 1
            await self._reply(conn, packet)
            return
        if site.sm4_key and not packet.encrypted:
            self._deviation(packet.mn, "gateway: data not SM4-encrypted although the site has a key")
        try:
            payload = self._reading(site, packet, command)
            validate_reading(payload, self.park, topic=self._topics[site.id])
        except InvalidReading as exc:
            self.counters.invalid += 1
            self._log_limited(conn.ip, f"invalid:{site.id}", "gateway: %s (MN %s) from %s: reading refused: %s",
                              site.id, packet.mn, conn.peer, exc)
            if self._dead_letter(f"invalid reading: {exc}", packet.raw, conn, site):
                await self._reply(conn, packet)  # permanent: acknowledge what was kept (module doc)
            return
        try:
            await self._publish(self._topics[site.id], payload)
        except MqttUnavailable as exc:
            self.counters.mqtt_failures += 1
            self.counters.errors["mqtt_unavailable"] += 1
            self._log_limited("mqtt", "unavailable", "gateway: reading of %s not published (%s); not acknowledged, the datalogger re-sends",
                              site.id, exc)
            self._dead_letter(f"mqtt unavailable: {exc}", packet.raw, conn, site)
            return  # transient: no 9014 (module doc)
        self.counters.published += 1
        self.latencies_s.append(time.monotonic() - received)
        await self._reply(conn, packet)

    def _reading(self, site: Site, packet: Any, command: tuple[str, str, str]) -> bytes:
        interval, field_v, field_zs = command
        if packet.data_time is None:
            raise InvalidReading("packet has no DataTime", site.id)
        values: dict[str, Value] = {}
        for code, fields in (packet.values or {}).items():
            try:
                param = site.parameter(code)
            except ValueError:
                param = None
            if param is None or param.name not in site.parameters:
                self._deviation(packet.mn, f"gateway: code {code} is not a parameter of the site; left out")
                continue
            v = fields.get(field_v)
            if v is None:
                if fields.keys() - {"Flag", "EFlag", "SampleTime"}:
                    # e.g. only -Cou for a flow: no value of this interval's kind
                    self._deviation(packet.mn, f"gateway: code {code} has no -{field_v}; left out")
                continue
            zs = fields.get(field_zs)
            unit = HJ212_2017_DEFAULT_UNITS.get(code, param.unit)
            values[param.name] = Value(v=_number(v, code, field_v, site), unit=unit, flag=str(fields.get("Flag", "N")),
                                 zs=_number(zs, code, field_zs, site) if zs is not None else None)
        if not values:
            raise InvalidReading(f"packet CN={packet.cn} has no -{field_v} value of a parameter site {site.id} measures", site.id)
        reading = Reading(
            schema=SCHEMA_VERSION, site=site.id, ts=packet.data_time.astimezone(self.tz), seq=qn_seq(packet.qn),
            values=values, interval=interval, backfill=bool(packet.rf),  # type: ignore[arg-type]
        )
        return encode_reading(reading)

    def _refuse(self, conn: _Connection, packet: Any, reason: str) -> None:
        self.counters.refused += 1
        self.counters.refused_by_reason[reason] += 1
        conn.refusals += 1
        now = time.monotonic()
        failures = self._peer_failures.get(conn.ip)
        if failures is None:
            if len(self._peer_failures) > 10_000:  # bound the table against address sweeps
                self._prune_peers(now)
            failures = self._peer_failures[conn.ip] = collections.deque(maxlen=max(self.peer_failure_limit, 1))
        failures.append(now)
        if len(failures) >= self.peer_failure_limit and now - failures[0] <= PEER_FAILURE_WINDOW_S:
            if self._peer_blocked_until.get(conn.ip, 0.0) < now:
                log.warning("gateway: peer %s throttled for %.0f s after %d refused packets", conn.ip, self.peer_block_s, len(failures))
            self._peer_blocked_until[conn.ip] = now + self.peer_block_s
        self._log_limited(conn.ip, reason, "gateway: refused packet from %s: MN %s CN %s: %s",
                          conn.peer, str(packet.mn)[:32], str(packet.cn)[:8], reason)

    def _peer_blocked(self, ip: str) -> bool:
        until = self._peer_blocked_until.get(ip)
        if until is None:
            return False
        if until < time.monotonic():
            del self._peer_blocked_until[ip]
            return False
        return True

    def _prune_peers(self, now: float) -> None:
        for ip in [ip for ip, d in self._peer_failures.items() if not d or now - d[-1] > PEER_FAILURE_WINDOW_S]:
            del self._peer_failures[ip]

    def _deviation(self, mn: str, message: str) -> None:
        # Counted by kind: the message without its quoted values and numbers, so a device that
        # deviates differently in every packet (a bad QN each time) cannot grow the table.
        kind = _DEVIATION_DETAIL.sub("…", message)
        per_mn = self.counters.deviations.get(mn)
        if per_mn is None:
            per_mn = self.counters.deviations[mn] = Counter()
        if kind not in per_mn and len(per_mn) >= MAX_DEVIATION_KINDS:
            kind = "other"
        per_mn[kind] += 1
        if (mn, kind) not in self._logged_deviations:
            self._logged_deviations.add((mn, kind))
            log.warning("gateway: MN %s deviates from HJ 212: %s (logged once per kind, counted)", mn, message)

    async def _reply(self, conn: _Connection, packet: Any) -> None:
        # A request from a site (a command only the centre should send, §5) is answered 9011
        # "request rejected": the centre executes nothing for a site, so no 9012 follows.
        qn_rtn = QN_RTN_REJECTED if hj212.command_kind(packet) == "request" else QN_RTN_READY
        data = hj212.reply(packet, qn_rtn=qn_rtn, now=dt.datetime.now(self.tz))
        if data is None:
            return
        await self._write(conn, data)
        if str(packet.cn) == "1013":
            # Time-calibration request (notify, answered 9013 above): the centre then sets the
            # site's clock with a 1012 request (§5); the site answers 9011 and 9012.
            now = dt.datetime.now(self.tz)
            await self._write(conn, hj212.encode(
                qn=now, st=packet.st, cn="1012", pw=packet.pw, mn=packet.mn, version=packet.version,
                needs_reply=True, cp={"SystemTime": now}, tz=self.tz))

    async def _write(self, conn: _Connection, data: bytes) -> None:
        conn.writer.write(data)
        if conn.writer.transport.get_write_buffer_size() > 0:  # only a peer that does not read waits here
            try:
                async with asyncio.timeout(self.write_timeout_s):
                    await conn.writer.drain()
            except TimeoutError:
                raise _WriteTimeout(f"{conn.peer} does not read its replies") from None
        self.counters.replies[_reply_cn(data)] += 1

    def _dead_letter(self, reason: str, raw: bytes, conn: _Connection, site: Site | None) -> bool:
        """Append the packet to the dead-letter file; False if it could not be kept."""
        if self._deadletter_fd is None:
            return True  # no file configured: logged and counted only
        line = encode_dead_letter(dead_letter(reason, raw, f"hj212:{conn.peer}", site.id if site else None)) + b"\n"
        try:
            os.write(self._deadletter_fd, line)  # O_APPEND: one write per line keeps lines whole
        except OSError as exc:
            self.counters.errors["deadletter_write"] += 1
            self._log_limited("deadletter", "write", "gateway: cannot write dead-letter file %s: %s", self.deadletter_path, exc)
            return False
        self.counters.deadlettered += 1
        return True

    def _log_limited(self, peer: str, reason: str, msg: str, *args: Any) -> None:
        key = (peer, reason)
        now = time.monotonic()
        gate = self._log_gate.get(key)
        if gate is not None and now - gate[0] < LOG_INTERVAL_S:
            gate[1] += 1
            return
        if len(self._log_gate) > 10_000:
            self._log_gate = {k: g for k, g in self._log_gate.items() if now - g[0] < LOG_INTERVAL_S}
        suppressed = int(gate[1]) if gate else 0
        self._log_gate[key] = [now, 0]
        if suppressed:
            msg += f" ({suppressed} more like this in the last {LOG_INTERVAL_S:.0f} s)"
        log.warning(msg, *args)

    # -- MQTT ------------------------------------------------------------------------------

    async def _publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 and return once the broker's PUBACK arrived (raises MqttUnavailable)."""
        client = self._client
        if client is None or not self._mqtt_connected:
            raise MqttUnavailable("not connected to the broker")
        if len(self._pending) >= MQTT_MAX_QUEUED:
            raise MqttUnavailable(f"{len(self._pending)} publications wait for PUBACK")
        info = client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttUnavailable(mqtt.error_string(info.rc))
        # The PUBACK is read by a later loop iteration (asyncio mode) or reaches this loop
        # through call_soon_threadsafe (thread mode), i.e. after this synchronous registration:
        # no race with a fast broker.
        fut = self._loop.create_future()  # type: ignore[union-attr]
        self._pending[info.mid] = fut
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await fut
        except TimeoutError:
            raise MqttUnavailable(f"no PUBACK within {self.publish_timeout_s:g} s") from None
        finally:
            if self._pending.get(info.mid) is fut:
                del self._pending[info.mid]

    # paho callbacks: in the event loop's thread (asyncio mode) or paho's thread (thread mode)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("gateway: MQTT broker refused the connection: %s", reason_code)
            return
        self._in_loop(self._set_mqtt_connected, True, "")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            self._in_loop(self._set_mqtt_connected, False, str(reason_code))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._in_loop(self._puback, mid)

    def _in_loop(self, fn: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)  # type: ignore[union-attr]

    # asyncio mode: paho's socket driven by this event loop (paho's "external loop" API), so
    # publishing and reading PUBACKs never compete for the GIL with a second thread.

    def _on_socket_open(self, client, userdata, sock) -> None:
        self._in_loop(self._watch, sock.fileno())

    def _on_socket_close(self, client, userdata, sock) -> None:
        # paho closes the socket right after this call: unregister now (its fd may be reused).
        fd = sock.fileno()
        if threading.get_ident() == self._loop_thread:
            self._unwatch(fd)

    def _on_socket_register_write(self, client, userdata, sock) -> None:
        fd = sock.fileno()
        self._in_loop(lambda: fd in self._mqtt_fds and self._loop.add_writer(fd, self._mqtt_write))  # type: ignore[union-attr]

    def _on_socket_unregister_write(self, client, userdata, sock) -> None:
        fd = sock.fileno()
        self._in_loop(lambda: fd in self._mqtt_fds and self._loop.remove_writer(fd))  # type: ignore[union-attr]

    def _watch(self, fd: int) -> None:
        self._mqtt_fds.add(fd)
        self._loop.add_reader(fd, self._mqtt_read)  # type: ignore[union-attr]
        if self._client is not None and self._client.want_write():
            self._loop.add_writer(fd, self._mqtt_write)  # type: ignore[union-attr]

    def _unwatch(self, fd: int) -> None:
        if fd in self._mqtt_fds:
            self._mqtt_fds.discard(fd)
            self._loop.remove_reader(fd)  # type: ignore[union-attr]
            self._loop.remove_writer(fd)  # type: ignore[union-attr]

    def _mqtt_read(self) -> None:
        client = self._client
        if client is not None and client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS and not self._mqtt_connected:
            self._spawn(self._mqtt_reconnect())

    def _mqtt_write(self) -> None:
        client = self._client
        if client is not None and client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS and not self._mqtt_connected:
            self._spawn(self._mqtt_reconnect())

    async def _mqtt_misc(self) -> None:
        """Keepalive pings and their timeout (paho's loop_misc), once a second."""
        while True:
            await asyncio.sleep(1.0)
            client = self._client
            if client is not None and client.socket() is not None:
                client.loop_misc()

    async def _mqtt_reconnect(self) -> None:
        """Connect (again) with back-off until the broker answers; one such task at a time."""
        if self._reconnecting:
            return
        self._reconnecting = True
        delay = MQTT_RECONNECT_MIN_S
        try:
            while self._client is not None and not self._mqtt_connected:
                client = self._client
                if client.socket() is None:
                    try:
                        # blocking TCP connect (bounded by MQTT_CONNECT_TIMEOUT_S) off the loop
                        await asyncio.to_thread(client.reconnect)
                    except (OSError, ValueError) as exc:
                        self._log_limited("mqtt", "connect", "gateway: cannot connect to MQTT broker %s:%s: %s",
                                          self.mqtt_host, self.mqtt_port, exc)
                # wait for the CONNACK (read by _mqtt_read) or the next attempt
                try:
                    assert self._mqtt_connected_event is not None
                    await asyncio.wait_for(self._mqtt_connected_event.wait(), delay)
                except TimeoutError:
                    if client.socket() is not None and not self._mqtt_connected:
                        client.disconnect()  # no CONNACK: drop the half-open session and retry
                        self._drop_mqtt_socket(client)
                delay = min(delay * 2, MQTT_RECONNECT_MAX_S)
        finally:
            self._reconnecting = False

    def _drop_mqtt_socket(self, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None:
            self._unwatch(sock.fileno())
            client._sock_close()  # paho has no public "abandon this socket" call

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._mqtt_tasks.add(task)
        task.add_done_callback(self._mqtt_tasks.discard)

    def _puback(self, mid: int) -> None:
        fut = self._pending.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _set_mqtt_connected(self, up: bool, reason: str) -> None:
        assert self._mqtt_connected_event is not None
        if up:
            if not self._mqtt_connected:
                log.info("gateway: connected to MQTT broker %s:%s", self.mqtt_host, self.mqtt_port)
            self._mqtt_connected = True
            self._mqtt_connected_event.set()
            return
        if self._mqtt_connected:
            log.warning("gateway: lost the MQTT broker (%s); readings are dead-lettered and not acknowledged until it is back", reason)
        self._mqtt_connected = False
        self._mqtt_connected_event.clear()
        if self.mqtt_io == "asyncio" and self._client is not None:
            self._spawn(self._mqtt_reconnect())
        # Publications in flight will not be acknowledged on this connection: answer them now
        # (no 9014) rather than at their timeout. paho re-sends them after a reconnect; the
        # duplicates carry the same reading id.
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(MqttUnavailable("broker connection lost"))


def qn_seq(qn: str) -> int:
    """The reading ``seq`` of a packet: its QN (``YYYYMMDDhhmmsszzz``) as milliseconds since
    1970-01-01 by calendar arithmetic (no zone), so a re-sent packet keeps its seq and the value
    stays below 2**53. A QN that is no such timestamp gets a stable 52-bit hash."""
    text = str(qn)
    if len(text) == 17 and text.isdigit():
        try:
            t = dt.datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:14]))
            return calendar.timegm(t.timetuple()) * 1000 + int(text[14:17])
        except ValueError:
            pass
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "backslashreplace"), digest_size=8).digest(), "big") >> 12


# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Connection:
    peer: str
    ip: str
    writer: asyncio.StreamWriter
    accepted: int = 0
    refusals: int = 0
    consecutive_errors: int = 0


class _WriteTimeout(Exception):
    pass


_DEVIATION_DETAIL: Final = re.compile(r"'[^']*'|\"[^\"]*\"|\b\d+(?:\.\d+)?\b")


def _number(x: Any, code: str, name: str, site: Site) -> float:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    try:
        return float(x)
    except (TypeError, ValueError):
        raise InvalidReading(f"{code}-{name}={x!r} is not a number", site.id) from None


def _reply_cn(data: bytes) -> str:
    i = data.find(b"CN=")
    return data[i + 3:i + 7].decode("ascii", "replace") if i >= 0 else "?"


__all__ = ["Gateway", "GatewayCounters", "MqttUnavailable", "HJ212_DATA_COMMANDS", "HJ212_2017_DEFAULT_UNITS", "qn_seq"]
