"""A simulator of the park's HJ 212 dataloggers: every configured enterprise outlet on its own TCP
connection to the gateway, in its own edition (2025 with SM4 where the outlet has a key).

Each simulated datalogger uploads one packet per period of ``interval`` (``2011`` real-time every
30 s, ``2051`` minute data, ``2061`` hourly, ``2031`` daily; periods in *simulated* time, which runs
``speed`` times faster than the wall clock), asks for a reply (Flag bit 0), waits
``ack_timeout_s`` for the 9014 and re-sends the same bytes up to ``retries`` times. A packet that
is never acknowledged goes to the device's back-fill queue and is re-sent later (``RF=1`` for
2025 devices, the same QN so the reading keeps its id), new data first, as HJ 212-2025 §8.1.2
asks. Simulated time starts in the past and never overtakes the wall clock (a device has no data
from the future): with ``duration_s`` it ends at "now", otherwise it starts a day back and runs
at wall-clock pace once it has caught up.

Values are plausible for the park's outlets: gas-fired boilers (SO2, NOx, particulates, O2, flue
gas flow in m³/s as HJ 212 defaults, stack temperature, plus flue-gas velocity and humidity, which
the park does not track) and wastewater outlets (COD, NH3-N, TP, pH, flow in L/s with its
period volume), as bounded random walks seeded by ``seed``.

Faults (``faults``):

- ``bad_crc``: now and then a copy of the packet with a corrupted CRC precedes it in the same TCP
  segment (a line glitch, then the retransmission): the gateway must drop it and still take the
  good one on the same connection;
- ``split_packets``: packets written in 2–4 TCP segments with short pauses between them;
- ``garbage``: random bytes between packets on the devices' connections;
- ``wrong_password``: an extra connection impersonating a configured MN with a wrong PW;
- ``no_newline``: an extra connection that starts a packet and never ends it (it must be cut off).

``stats`` counts what was sent, acknowledged, retried and injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

from ingest import hj212
from park.model import Park, Site

log = logging.getLogger("ecopark.ingest.datalogger_sim")

FAULTS: Final[frozenset[str]] = frozenset({"bad_crc", "split_packets", "wrong_password", "no_newline", "garbage"})

# Upload period (simulated seconds) of each data command (HJ 212-2017 §3/§5: RtdInterval ≥ 30 s;
# the reading schema's "1min" for 2051) and the CP fields each value carries.
SIM_PERIODS_S: Final[dict[str, int]] = {"2011": 30, "2051": 60, "2061": 3600, "2031": 86400}
_PERIOD_FIELDS: Final[dict[str, str]] = {"2011": "Rtd", "2051": "Avg", "2061": "Avg", "2031": "Avg"}
# HJ 212 system codes (§4): stack gas 31, wastewater 32.
_ST_BY_ROLE: Final[dict[str, str]] = {"gas_outlet": "31", "wastewater_outlet": "32"}

# Probability per packet of each fault on the devices' own connections.
FAULT_RATES: Final[dict[str, float]] = {"bad_crc": 0.1, "split_packets": 0.3, "garbage": 0.1}
# Rogue connections act once every this many periods (kept low: the gateway throttles a peer
# address after repeated refusals, and every simulated device shares this machine's address).
ROGUE_EVERY_PERIODS: Final[int] = 5
BACKLOG_MAX: Final[int] = 10_000
# Simulated history when no duration is given: one day.
DEFAULT_LOOKBACK: Final[dt.timedelta] = dt.timedelta(days=1)

# Signal model per HJ 212 code: (low, high, step as a fraction of the range, decimals). Gas-fired
# boiler stack at standard state, dry (mg/m³, O2 %, flow m³/s, °C, velocity m/s, humidity %);
# wastewater outlet (mg/L, pH, flow L/s).
GAS_OUTLET_SIGNALS: Final[dict[str, tuple[float, float, float, int]]] = {
    "a21026": (2.0, 18.0, 0.05, 1),     # SO2
    "a21002": (40.0, 140.0, 0.05, 1),   # NOx
    "a34013": (1.0, 8.0, 0.05, 2),      # particulates
    "a19001": (3.0, 7.0, 0.03, 2),      # O2
    "a00000": (2.0, 8.0, 0.03, 3),      # flue-gas flow, m³/s (HJ 212 default unit)
    "a01012": (80.0, 140.0, 0.02, 1),   # flue-gas temperature
    "a01011": (6.0, 14.0, 0.03, 2),     # flue-gas velocity (not a park parameter)
    "a01014": (5.0, 15.0, 0.03, 2),     # flue-gas humidity (not a park parameter)
}
WASTEWATER_SIGNALS: Final[dict[str, tuple[float, float, float, int]]] = {
    "w01018": (20.0, 70.0, 0.04, 1),    # COD
    "w21003": (0.5, 5.0, 0.04, 2),      # NH3-N
    "w21011": (0.1, 0.45, 0.04, 3),     # TP
    "w01001": (6.8, 8.2, 0.03, 2),      # pH
    "w00000": (3.0, 15.0, 0.04, 2),     # flow, L/s (HJ 212 default unit)
}
# Converted (折算) concentrations: C_zs = C × (21 − O2_ref) / (21 − O2) (reference/hj212.md §11).
_ZS_CODES: Final = frozenset({"a21026", "a21002", "a34013"})
O2_AIR_PCT: Final[float] = 21.0


@dataclass
class SimulatorStats:
    sent: int = 0                 # distinct packets put on the wire (first transmission)
    acked: int = 0                # packets the gateway acknowledged with 9014
    retries: int = 0              # re-transmissions after an ack timeout
    ack_timeouts: int = 0
    backfilled: int = 0           # packets acknowledged from the back-fill queue
    backlog: int = 0              # packets waiting in back-fill queues now
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    faults: Counter = field(default_factory=Counter)   # fault kind → times injected
    refused_sent: int = 0         # wrong-password packets sent
    cut_off: int = 0              # no-newline connections the gateway closed

    def snapshot(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}


class DataloggerSimulator:
    """Simulated dataloggers of every enterprise outlet with an MN (see the module doc).

    ``await run(duration_s)`` plays until ``duration_s`` wall-clock seconds passed (``None``:
    until ``stop()``) and returns ``stats``. ``stop()`` may be called from the event loop at any
    time; ``run`` then closes every connection and returns.
    """

    def __init__(
        self,
        park: Park,
        gateway_host: str,
        gateway_port: int,
        *,
        speed: float = 60.0,
        interval: str = "2051",
        faults: set[str] | frozenset[str] = frozenset(),
        seed: int = 0,
        ack_timeout_s: float = 5.0,
        retries: int = 3,
        sites: list[str] | None = None,
    ) -> None:
        if interval not in SIM_PERIODS_S:
            raise ValueError(f"interval {interval!r} is not an HJ 212 data command ({', '.join(SIM_PERIODS_S)})")
        unknown = set(faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown fault {sorted(unknown)[0]!r} (known: {', '.join(sorted(FAULTS))})")
        if speed <= 0:
            raise ValueError(f"speed {speed} must be positive")
        self.park = park
        self.gateway_host = gateway_host
        self.gateway_port = gateway_port
        self.speed = speed
        self.interval = interval
        self.faults = frozenset(faults)
        self.seed = seed
        self.ack_timeout_s = ack_timeout_s
        self.retries = retries
        self.outlets: list[Site] = [
            s for s in park.sites.values()
            if s.mn and s.pw and s.role in _ST_BY_ROLE and (sites is None or s.id in sites)
        ]
        if not self.outlets:
            raise ValueError("the park has no enterprise outlet with an MN and PW to simulate")
        self.stats = SimulatorStats()
        self._stop = asyncio.Event()
        self._period_real_s = SIM_PERIODS_S[interval] / speed

    def stop(self) -> None:
        self._stop.set()

    async def run(self, duration_s: float | None = None) -> SimulatorStats:
        self._stop = asyncio.Event() if self._stop.is_set() else self._stop
        period = dt.timedelta(seconds=SIM_PERIODS_S[self.interval])
        now = dt.datetime.now(self.park.tz)
        lookback = dt.timedelta(seconds=duration_s * self.speed) if duration_s is not None else DEFAULT_LOOKBACK
        start = _floor(now - lookback - period, period)
        tasks = [asyncio.create_task(self._device(site, i, start), name=f"datalogger-{site.id}")
                 for i, site in enumerate(self.outlets)]
        if "wrong_password" in self.faults:
            tasks.append(asyncio.create_task(self._rogue_wrong_password(), name="datalogger-wrong-pw"))
        if "no_newline" in self.faults:
            tasks.append(asyncio.create_task(self._rogue_no_newline(), name="datalogger-no-newline"))
        try:
            if duration_s is None:
                await self._stop.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), duration_s)
        finally:
            self._stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self.stats

    # -- one datalogger -----------------------------------------------------------------------

    async def _device(self, site: Site, index: int, start: dt.datetime) -> None:
        rng = random.Random(self.seed * 100_003 + index)
        signals = _Signals(site, rng)
        link = _Link(self, site)
        backlog: deque[_Upload] = deque(maxlen=BACKLOG_MAX)
        period = dt.timedelta(seconds=SIM_PERIODS_S[self.interval])
        t0 = time.monotonic() + rng.uniform(0, self._period_real_s)  # devices are not in phase
        k = 0
        try:
            while not self._stop.is_set():
                data_time = start + k * period
                # due when its period has ended in simulated time, and never before it has in real time
                due_in = max(t0 + k * self._period_real_s - time.monotonic(),
                             (data_time + period - dt.datetime.now(self.park.tz)).total_seconds())
                if due_in > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), due_in)
                    if self._stop.is_set():
                        return
                k += 1
                upload = _Upload(site, self.interval, data_time, signals.sample(self.interval), link.next_qn())
                self.stats.sent += 1
                if not await link.deliver(upload, rng):
                    backlog.append(upload)
                    self.stats.backlog += 1
                    continue
                # New data went through: back-fill while the next packet is not yet due.
                while backlog and not self._stop.is_set() and time.monotonic() < t0 + k * self._period_real_s:
                    old = backlog[0]
                    old.rf = True
                    if not await link.deliver(old, rng):
                        break
                    backlog.popleft()
                    self.stats.backlog -= 1
                    self.stats.backfilled += 1
        finally:
            self.stats.backlog -= len(backlog)
            await link.close()

    # -- rogue connections ---------------------------------------------------------------------

    async def _rogue_wrong_password(self) -> None:
        rng = random.Random(self.seed * 7 + 1)
        victim = self.outlets[0]
        wrong = "000000" if victim.pw != "000000" else "999999"
        while not self._stop.is_set():
            await self._sleep(self._period_real_s * ROGUE_EVERY_PERIODS)
            try:
                _, writer = await asyncio.open_connection(self.gateway_host, self.gateway_port)
            except OSError:
                continue
            try:
                upload = _Upload(victim, self.interval, _floor(dt.datetime.now(self.park.tz), dt.timedelta(minutes=1)) - dt.timedelta(minutes=1),
                                 _Signals(victim, rng).sample(self.interval), _qn(dt.datetime.now(self.park.tz)))
                writer.write(upload.encode(pw=wrong))
                await writer.drain()
                self.stats.refused_sent += 1
                self.stats.faults["wrong_password"] += 1
            except OSError:
                pass
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _rogue_no_newline(self) -> None:
        rng = random.Random(self.seed * 7 + 2)
        while not self._stop.is_set():
            await self._sleep(self._period_real_s * ROGUE_EVERY_PERIODS)
            try:
                reader, writer = await asyncio.open_connection(self.gateway_host, self.gateway_port)
            except OSError:
                continue
            self.stats.faults["no_newline"] += 1
            try:
                writer.write(b"##0999QN=20240101000000000;ST=31;CN=2051;PW=123456;MN=88888880000001;Flag=5;CP=&&")
                # Stream text without CR LF until the gateway closes the connection (bounded).
                for _ in range(256):
                    if reader.at_eof():
                        break
                    writer.write(bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789=,;") for _ in range(512)))
                    await asyncio.wait_for(writer.drain(), 5)
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(reader.read(1024), 0.01) == b"":
                            break
                if reader.at_eof():
                    self.stats.cut_off += 1
            except (OSError, TimeoutError):
                self.stats.cut_off += 1  # reset by the gateway
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


# ---------------------------------------------------------------------------------------------

class _Upload:
    """One data packet of a device; encodes the same bytes (same QN) on every transmission."""

    __slots__ = ("site", "cn", "data_time", "values", "qn", "rf", "_bytes")

    def __init__(self, site: Site, cn: str, data_time: dt.datetime, values: dict[str, dict[str, object]], qn: str) -> None:
        self.site, self.cn, self.data_time, self.values, self.qn = site, cn, data_time, values, qn
        self.rf = False
        self._bytes: dict[bool, bytes] = {}

    def encode(self, pw: str | None = None) -> bytes:
        cached = self._bytes.get(self.rf) if pw is None else None
        if cached is not None:
            return cached
        site = self.site
        data = hj212.encode(
            qn=self.qn, st=_ST_BY_ROLE[site.role], cn=self.cn, pw=pw or site.pw or "", mn=site.mn or "",
            version=site.hj212_version, needs_reply=True, values=self.values, data_time=self.data_time,
            rf=self.rf and site.hj212_version == "2025",  # RF exists from HJ 212-2025 on
            key=site.sm4_key if site.hj212_version == "2025" else None,
        )
        if pw is None:
            self._bytes[self.rf] = data
        return data


class _Link:
    """A device's TCP connection: sends uploads, matches 9014 replies to them by QN."""

    def __init__(self, sim: DataloggerSimulator, site: Site) -> None:
        self.sim = sim
        self.site = site
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task | None = None
        self.waiting: dict[str, asyncio.Future] = {}
        self._last_qn_ms = 0

    def next_qn(self) -> str:
        now = dt.datetime.now(self.sim.park.tz)
        ms = int(now.timestamp() * 1000)
        if ms <= self._last_qn_ms:  # QNs of one device are unique
            ms = self._last_qn_ms + 1
        self._last_qn_ms = ms
        return _qn(dt.datetime.fromtimestamp(ms / 1000, self.sim.park.tz))

    async def deliver(self, upload: _Upload, rng: random.Random) -> bool:
        """Send ``upload`` until a 9014 comes (1 + retries attempts); True when acknowledged."""
        sim = self.sim
        for attempt in range(1 + sim.retries):
            if sim._stop.is_set():
                return False
            if self.writer is None and not await self._connect():
                await sim._sleep(min(sim.ack_timeout_s, 1.0))
                continue
            if attempt:
                sim.stats.retries += 1
            fut = asyncio.get_running_loop().create_future()
            self.waiting[upload.qn] = fut
            try:
                await self._send(upload.encode(), rng)
                await asyncio.wait_for(asyncio.shield(fut), sim.ack_timeout_s)
            except TimeoutError:
                sim.stats.ack_timeouts += 1
                continue
            except (OSError, ConnectionError):
                await self._drop()
                continue
            finally:
                self.waiting.pop(upload.qn, None)
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                sim.stats.acked += 1
                return True
            await self._drop()
        # Dataloggers reconnect after a run of failed attempts.
        await self._drop()
        return False

    async def _send(self, data: bytes, rng: random.Random) -> None:
        sim, w = self.sim, self.writer
        assert w is not None
        prefix = b""
        if "garbage" in sim.faults and rng.random() < FAULT_RATES["garbage"]:
            prefix += bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
            sim.stats.faults["garbage"] += 1
        if "bad_crc" in sim.faults and rng.random() < FAULT_RATES["bad_crc"]:
            crc = data[-6:-2]
            bad = b"%04X" % (int(crc, 16) ^ (1 << rng.randrange(16)))
            prefix += data[:-6] + bad + b"\r\n"
            sim.stats.faults["bad_crc"] += 1
        payload = prefix + data
        if "split_packets" in sim.faults and rng.random() < FAULT_RATES["split_packets"]:
            sim.stats.faults["split_packets"] += 1
            cuts = sorted(rng.sample(range(1, len(payload)), k=min(rng.randint(1, 3), len(payload) - 1)))
            last = 0
            for cut in [*cuts, len(payload)]:
                w.write(payload[last:cut])
                await w.drain()
                last = cut
                if cut != len(payload):
                    await asyncio.sleep(rng.uniform(0.001, 0.02))
        else:
            w.write(payload)
            await w.drain()

    async def _connect(self) -> bool:
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.sim.gateway_host, self.sim.gateway_port), 5)
        except (OSError, TimeoutError):
            self.sim.stats.connect_failures += 1
            self.reader = self.writer = None
            return False
        self.sim.stats.connects += 1
        self.reader_task = asyncio.create_task(self._read_replies(self.reader))
        return True

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        framer = hj212.Framer()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                for frame in framer.feed(data):
                    if isinstance(frame, hj212.HJ212Error):
                        continue
                    try:
                        packet = hj212.parse(frame, tz=self.sim.park.tz)
                    except hj212.HJ212Error:
                        continue
                    if packet.cn == "9014" and packet.qn is not None:
                        fut = self.waiting.get(packet.qn)
                        if fut is not None and not fut.done():
                            fut.set_result(packet)
        except (OSError, ConnectionError):
            pass
        finally:
            self.sim.stats.disconnects += 1
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionResetError("gateway closed the connection"))
                    fut.exception()  # retrieved here: a sender that stopped waiting must not log it

    async def _drop(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        task, self.reader_task = self.reader_task, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def close(self) -> None:
        await self._drop()


class _Signals:
    """Bounded random walks of one outlet's HJ 212 codes."""

    def __init__(self, site: Site, rng: random.Random) -> None:
        self.site = site
        self.rng = rng
        self.table = GAS_OUTLET_SIGNALS if site.role == "gas_outlet" else WASTEWATER_SIGNALS
        self.level = {code: rng.uniform(lo, hi) for code, (lo, hi, _, _) in self.table.items()}

    def sample(self, cn: str) -> dict[str, dict[str, object]]:
        rng = self.rng
        out: dict[str, dict[str, object]] = {}
        for code, (lo, hi, step, digits) in self.table.items():
            span = hi - lo
            x = min(hi, max(lo, self.level[code] + rng.gauss(0, step * span)))
            self.level[code] = x
            if cn == "2011":
                fields: dict[str, object] = {"Rtd": round(x, digits)}
            else:
                spread = rng.uniform(0, step * span)
                fields = {"Min": round(max(lo * 0.9, x - spread), digits), "Avg": round(x, digits),
                          "Max": round(x + spread, digits)}
                if code == "w00000":  # period volume in m³ (Appendix D: L/s × s × 10⁻³)
                    fields["Cou"] = round(x * SIM_PERIODS_S[cn] / 1000, 3)
            if code in _ZS_CODES and self.site.reference_o2_pct is not None:
                o2 = self.level["a19001"]
                factor = (O2_AIR_PCT - self.site.reference_o2_pct) / (O2_AIR_PCT - o2)
                fields["ZsRtd" if cn == "2011" else "ZsAvg"] = round(x * factor, digits)
            fields["Flag"] = "N" if rng.random() > 0.01 else rng.choice("MC")
            out[code] = fields
        return out


def _qn(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def _floor(moment: dt.datetime, period: dt.timedelta) -> dt.datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    steps = (moment - day) // period
    return day + steps * period
