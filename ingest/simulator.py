"""The station simulator: every site of the park publishing plausible readings over MQTT.

Simulated time runs ``speed`` times faster than real time (3600: an hour a second) from
``start``; every ``interval_s`` simulated seconds each site publishes one reading (QoS 1) on
``Park.mqtt_topic(site)``, with an increasing ``seq`` per site and ``ts`` in park local time.
The simulated clock never runs ahead of the wall clock (the collector refuses readings from the
future): by default it starts a week back, catches up fast, then runs in real time.

Values follow the daily life of the reference park (Kunming, clean air; see the tables below):
ambient air with diurnal cycles, river sections inside their target classes with diurnal
photosynthesis, gas boiler stacks with a load cycle, wastewater outlets, cumulative meters with a
working-day profile. A ``Scenario`` (data) overlays events in simulated hours from the start:
pollution episode, river section sliding below its target, stack exceedance, a silent station,
a maintenance flag. ``readings_at(t)`` is pure: the same seed and ``t`` give the same bytes.

``faults`` (0…1) adds that fraction of bad messages (malformed JSON, unknown site, wrong topic,
unknown parameter, future timestamp, NaN) *beside* the valid readings, for the dead-letter counter.
"""

from __future__ import annotations

from collections.abc import Iterable

import dataclasses

import asyncio
import datetime as dt
import hashlib
import json
import logging
import math
import struct
import threading
from dataclasses import dataclass
from typing import Final, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from park.model import Park, Site
from park.reading import SCHEMA_VERSION
# ingest/ may import only park/ (DESIGN.md); the reference-O2 conversion is a standard's formula
# and lives once in rules/ — the brief for this module asked to use it. See the hand-over notes.
from rules.emission import to_reference_o2

log = logging.getLogger("ecopark.ingest.simulator")

DEFAULT_SPEED: Final[float] = 3600.0
DEFAULT_INTERVAL_S: Final[int] = 60
# Without ``start``: this far back from now, so that a demo shows days of history in minutes.
DEFAULT_HISTORY: Final[dt.timedelta] = dt.timedelta(days=7)
# paho refuses new publishes past this many unacknowledged ones (its limit is 65,535).
MAX_UNACKED_PUBLISHES: Final[int] = 50_000
MAX_INFLIGHT_PUBLISHES: Final[int] = 1_000


# -- the scenario ---------------------------------------------------------------------------------

EventEffect = Literal["level", "silent", "flag"]


@dataclass(frozen=True, slots=True)
class Event:
    """One scripted change, ``at_h`` simulated hours after the start, lasting ``duration_h``.

    ``level``: ``parameter`` rises smoothly to ``value`` (canonical unit; for a stack pollutant the
    *measured* concentration) and back. ``silent``: the site publishes nothing. ``flag``: every
    value of the site carries HJ 212 flag ``flag`` (e.g. M, maintenance). ``local_hour`` moves the
    start to the first such local hour at or after ``at_h`` (an afternoon event).
    """

    at_h: float
    duration_h: float
    site: str
    effect: EventEffect
    parameter: str | None = None
    value: float | None = None
    flag: str | None = None
    local_hour: int | None = None
    note: str = ""


Scenario = tuple[Event, ...]


def default_scenario() -> Scenario:
    """Every kind of event within the first day of simulated time (≈ 25 s at speed 3600)."""
    return (
        # HJ 633 AQI level IV (PM2.5 1 h IAQI 151–200 is 115–150 µg/m³) for six hours
        Event(2.0, 6.0, "KM-AIR-KMXY", "level", "PM2.5", 125.0, note="PM2.5 episode, AQI level III/IV"),
        Event(2.0, 6.0, "KM-AIR-KMXY", "level", "PM10", 175.0, note="PM10 with the PM2.5 episode"),
        # 1 h O3 above 200 µg/m³ (GB 3095 grade II 1 h limit) on an afternoon
        Event(0.0, 4.0, "KM-AIR-KMXY", "level", "O3", 225.0, local_hour=13, note="O3 afternoon above 200"),
        # 马料河 (target III): NH3-N 1.6 mg/L is class V (GB 3838: IV ≤ 1.5, V ≤ 2.0)
        Event(3.0, 6.0, "KM-RIV-MLH", "level", "NH3-N", 1.6, note="马料河 NH3-N to class V"),
        # 云内动力 boiler: measured NOx 180 at O2 ~7.5 % → ~230 at 3.5 % reference O2, limit 200
        Event(4.0, 2.5, "YNDL-G1", "level", "NOx", 180.0, note="YNDL-G1 NOx exceedance"),
        Event(17.0, 6.0, "KM-AIR-KMXY", "silent", note="air station silent for 6 hours"),
        Event(6.0, 2.0, "KM-RIV-LLH", "flag", flag="M", note="洛龙河 analyser maintenance"),
    )


def repeat_scenario(scenario: Scenario, every_h: float, times: int) -> Scenario:
    """``scenario`` played ``times`` times, one every ``every_h`` simulated hours (a long demo)."""
    return tuple(
        dataclasses.replace(e, at_h=e.at_h + k * every_h) for k in range(times) for e in scenario
    )


# -- the simulator --------------------------------------------------------------------------------

class Simulator:
    """Publish simulated readings for every site of ``park`` to the MQTT broker.

    Counters: ``published`` (messages handed to paho, bad ones included), ``faults_published``;
    ``sim_time`` is the last simulated time published. ``faults`` is the probability, per
    publishing round, of one extra bad message.
    """

    def __init__(
        self,
        park: Park,
        mqtt_host: str,
        mqtt_port: int,
        *,
        speed: float = DEFAULT_SPEED,
        start: dt.datetime | None = None,
        interval_s: int = DEFAULT_INTERVAL_S,
        seed: int = 0,
        scenario: Scenario | None = None,
        faults: float = 0.0,
        client_id: str = "ecopark-simulator",
        username: str | None = None,
        password: str | None = None,
        sites: Iterable[str] | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed {speed} must be positive (simulated seconds per real second)")
        if interval_s <= 0:
            raise ValueError(f"interval_s {interval_s} must be positive")
        if not 0.0 <= faults <= 1.0:
            raise ValueError(f"faults {faults} must be a fraction between 0 and 1")
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.park = park
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.speed = speed
        tz = park.tz
        if start is None:
            start = _floor(dt.datetime.now(tz) - DEFAULT_HISTORY, interval_s)
        self.start = start.astimezone(tz)
        self.interval_s = interval_s
        self.seed = seed
        self.scenario = default_scenario() if scenario is None else tuple(scenario)
        self.faults = faults
        self.client_id = client_id
        self.username = username
        self.password = password
        self.published = 0
        self.faults_published = 0
        self.sim_time = self.start  # the last simulated time published
        self._next = self.start
        # ``sites`` limits the simulation, e.g. to leave the enterprises to the HJ 212 dataloggers
        chosen = None if sites is None else set(sites)
        self._sites = [s for s in park.sites.values() if chosen is None or s.id in chosen]
        self._events = [(_event_window(e, self.start), e) for e in self.scenario]
        self._stop = asyncio.Event()
        self._interval = "1min" if interval_s == 60 else "rt"

    # -- the pure part -----------------------------------------------------------------------

    def readings_at(self, t: dt.datetime) -> list[tuple[str, bytes]]:
        """The ``(MQTT topic, payload)`` of every site at simulated time ``t`` (pure)."""
        t = t.astimezone(self.park.tz)
        # seq from the epoch: increasing per site, and the same reading keeps its id across runs
        seq = int(t.timestamp()) // self.interval_s
        ts = t.isoformat(timespec="seconds")
        out: list[tuple[str, bytes]] = []
        for site in self._sites:
            active = [e for (a, b), e in self._events if e.site == site.id and a <= t < b]
            if any(e.effect == "silent" for e in active):
                continue
            values = self.values_at(site, t, active)
            flag = next((e.flag for e in active if e.effect == "flag"), None)
            payload = {
                "schema": SCHEMA_VERSION, "site": site.id, "ts": ts, "seq": seq, "interval": self._interval,
                "values": {name: _value_json(name, v, _unit(site, name), flag, zs) for name, (v, zs) in values.items()},
            }
            out.append((self.park.mqtt_topic(site), json.dumps(payload, ensure_ascii=False).encode()))
        if self.faults:
            out.extend(self._faults_at(t, seq, ts))
        return out

    def values_at(self, site: Site, t: dt.datetime, active: list[Event] | None = None) -> dict[str, tuple[float, float | None]]:
        """Parameter → (value in its canonical unit, value at reference O2 or None) at ``t``."""
        if active is None:
            active = [e for (a, b), e in self._events if e.site == site.id and a <= t < b]
        t = t.astimezone(self.park.tz)
        model = _MODELS[site.role]
        raw = model(self, site, t)
        for (a, b), e in self._events:
            if e in active and e.effect == "level" and e.parameter in raw:
                raw[e.parameter] = _blend(raw[e.parameter], e.value, (t - a) / (b - a))
        out: dict[str, tuple[float, float | None]] = {}
        o2 = raw.get("O2")
        for name in site.parameters:
            v = raw[name]
            zs = None
            if site.role == "gas_outlet" and name in _STACK_POLLUTANTS and site.reference_o2_pct is not None and o2 is not None:
                zs = _round(to_reference_o2(v, o2, site.reference_o2_pct), name)
            out[name] = (_round(v, name), zs)
        return out

    # -- publishing ---------------------------------------------------------------------------

    async def run(self, duration_s: float | None = None) -> None:
        """Publish until ``stop()`` or for ``duration_s`` real seconds; a later ``run()`` goes on
        from the simulated time reached."""
        loop = asyncio.get_running_loop()
        self._stop.clear()
        client = self._connect()
        real_start = loop.time()
        origin = self._next
        step = dt.timedelta(seconds=self.interval_s)
        try:
            while not self._stop.is_set():
                elapsed = loop.time() - real_start
                if duration_s is not None and elapsed >= duration_s:
                    break
                fast = origin + dt.timedelta(seconds=elapsed * self.speed)
                wall = dt.datetime.now(self.park.tz)
                t = self._next
                if t > min(fast, wall):
                    # real seconds until the simulated clock reaches t (it runs fast until it
                    # meets the wall clock, then in real time)
                    wait = (t - fast).total_seconds() / self.speed if fast < wall else (t - wall).total_seconds()
                    await self._sleep(min(max(wait, 0.001), 1.0))
                    continue
                for topic, payload in self.readings_at(t):
                    await self._publish(client, topic, payload)
                self.sim_time = t
                self._next = t + step
            await self._drain(client)
        finally:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    def stop(self) -> None:
        self._stop.set()

    def _connect(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311, clean_session=False)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.max_inflight_messages_set(MAX_INFLIGHT_PUBLISHES)
        client.max_queued_messages_set(MAX_UNACKED_PUBLISHES)
        client.reconnect_delay_set(1, 15)
        lost = threading.Event()

        def on_connect(c, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                log.warning("MQTT broker %s:%d refused the simulator: %s", self.mqtt_host, self.mqtt_port, reason_code)
            elif lost.is_set():
                lost.clear()
                log.warning("MQTT broker %s:%d: simulator reconnected", self.mqtt_host, self.mqtt_port)

        def on_disconnect(c, userdata, flags, reason_code, properties):
            if not self._stop.is_set() and not lost.is_set():
                lost.set()
                log.warning("MQTT broker %s:%d: simulator lost the connection (%s); paho keeps what it could not send", self.mqtt_host, self.mqtt_port, reason_code)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.connect_async(self.mqtt_host, self.mqtt_port, keepalive=30)
        client.loop_start()
        return client

    async def _publish(self, client: mqtt.Client, topic: str, payload: bytes) -> None:
        delay = 0.005
        while True:
            info = client.publish(topic, payload, qos=1)
            # NO_CONN: paho keeps the message and sends it when the connection is back
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self.published += 1
                return
            if info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                raise RuntimeError(f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}")
            # paho's queue of unacknowledged publishes is full: wait for the broker to catch up
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _drain(self, client: mqtt.Client, timeout: float = 10.0) -> None:
        """Give paho up to ``timeout`` s to hand its queued publishes to the broker."""
        deadline = asyncio.get_running_loop().time() + timeout
        while client.want_write() or len(getattr(client, "_out_messages", ())) > 0:
            if asyncio.get_running_loop().time() > deadline:
                log.warning("simulator: %d publish(es) not acknowledged by the broker at stop", len(client._out_messages))
                return
            await asyncio.sleep(0.01)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    # -- faults -------------------------------------------------------------------------------

    def _faults_at(self, t: dt.datetime, seq: int, ts: str) -> list[tuple[str, bytes]]:
        u = _noise01(self.seed, "faults", int(t.timestamp()))
        if u >= self.faults:
            return []
        kind = FAULT_KINDS[int(_noise01(self.seed, "fault-kind", int(t.timestamp())) * len(FAULT_KINDS))]
        air = next(s for s in self._sites if s.kind == "air") if any(s.kind == "air" for s in self._sites) else self._sites[0]
        other = next((s for s in self._sites if s.id != air.id), air)
        good = {"schema": SCHEMA_VERSION, "site": air.id, "ts": ts, "seq": seq, "values": {air.parameters[0]: {"v": 1.0, "unit": _unit(air, air.parameters[0])}}}
        topic = self.park.mqtt_topic(air)
        if kind == "malformed JSON":
            payload = json.dumps(good).encode()[:-7]
        elif kind == "unknown site":
            good["site"] = "SIM-UNKNOWN"
            topic = f"{self.park.mqtt_prefix}/{air.kind}/SIM-UNKNOWN"
            payload = json.dumps(good).encode()
        elif kind == "wrong topic":
            topic = self.park.mqtt_topic(other)
            payload = json.dumps(good).encode()
        elif kind == "unknown parameter":
            good["values"] = {"PM1": {"v": 3.0, "unit": "ug/m3"}}
            payload = json.dumps(good).encode()
        elif kind == "future timestamp":
            good["ts"] = (dt.datetime.now(self.park.tz) + dt.timedelta(days=1)).isoformat(timespec="seconds")
            payload = json.dumps(good).encode()
        else:  # NaN
            payload = json.dumps(good).encode().replace(b"1.0", b"NaN")
        self.faults_published += 1
        return [(topic, payload)]


FAULT_KINDS: Final[tuple[str, ...]] = ("malformed JSON", "unknown site", "wrong topic", "unknown parameter", "future timestamp", "NaN")


# -- site models ----------------------------------------------------------------------------------
# Typical levels of the reference park (Kunming, 1,900 m, clean air; 2022 report). Each entry:
# parameter → (daily mean, relative noise). Diurnal shapes are applied in the model functions.

AMBIENT_AIR_LEVELS: Final[dict[str, tuple[float, float]]] = {
    "SO2": (9.0, 0.15),        # µg/m³
    "NO2": (24.0, 0.12),       # µg/m³, rush-hour peaks
    "PM10": (42.0, 0.10),      # µg/m³
    "PM2.5": (26.0, 0.10),     # µg/m³, typical 20–35
    "CO": (0.7, 0.10),         # mg/m³
    "O3": (75.0, 0.08),        # µg/m³ 1 h; afternoon peak ~140
    "temp": (16.0, 0.0),       # °C, ±6 diurnal
    "humidity": (65.0, 0.05),  # %
    "pressure": (81.0, 0.002), # kPa at 1,900 m
    "wind_speed": (2.2, 0.25), # m/s
    "wind_dir": (225.0, 0.0),  # deg, south-westerly prevailing
}
# GB 3838 class limits in comments; the levels sit inside the section's target class.
RIVER_LEVELS_BY_TARGET: Final[dict[int, dict[str, tuple[float, float]]]] = {
    2: {"pH": (7.6, 0.0), "DO": (7.2, 0.0), "CODMn": (3.0, 0.08), "COD": (11.0, 0.08),   # II: DO ≥ 6, CODMn ≤ 4, COD ≤ 15
        "BOD5": (2.2, 0.08), "NH3-N": (0.28, 0.10), "TP": (0.06, 0.10), "TN": (0.42, 0.08)},  # BOD5 ≤ 3, NH3-N ≤ 0.5, TP ≤ 0.1
    3: {"pH": (7.5, 0.0), "DO": (6.6, 0.0), "CODMn": (4.6, 0.08), "COD": (16.0, 0.08),   # III: DO ≥ 5, CODMn ≤ 6, COD ≤ 20
        "BOD5": (3.1, 0.08), "NH3-N": (0.68, 0.10), "TP": (0.13, 0.10), "TN": (0.85, 0.06)},  # BOD5 ≤ 4, NH3-N ≤ 1.0, TP ≤ 0.2
}
GAS_BOILER_LEVELS: Final[dict[str, tuple[float, float]]] = {
    "O2": (7.5, 0.0),               # %, 6–9 with load
    "NOx": (88.0, 0.10),            # mg/m³ measured, 60–120
    "SO2": (4.0, 0.25),             # mg/m³, < 10
    "particulates": (2.2, 0.20),    # mg/m³, < 5
    "gas_flow": (12000.0, 0.03),    # m³/h at full load
    "stack_temp": (125.0, 0.03),    # °C
}
WASTEWATER_LEVELS: Final[dict[str, tuple[float, float]]] = {
    "COD": (45.0, 0.12),        # mg/L, 30–60
    "NH3-N": (5.0, 0.20),       # mg/L, 2–8
    "TP": (0.3, 0.12),          # mg/L, 0.2–0.4
    "pH": (7.5, 0.0),           # 7–8
    "TN": (12.0, 0.10),         # mg/L
    "water_flow": (40.0, 0.05), # m³/h on a working day
}
# Meters: consumption per hour when working / off (working days 08:00–18:00).
METER_RATES: Final[dict[str, tuple[float, float]]] = {
    "water_m3": (18.0, 2.5),       # m³/h
    "energy_kwh": (950.0, 180.0),  # kWh/h
}
WORK_HOURS: Final[tuple[int, int]] = (8, 18)

_STACK_POLLUTANTS: Final[frozenset[str]] = frozenset({"SO2", "NOx", "particulates"})
_DIGITS: Final[dict[str, int]] = {"CO": 2, "NH3-N": 3, "TP": 3, "TN": 2, "pH": 2, "DO": 2, "O2": 2, "water_m3": 1, "energy_kwh": 1}


def _air(sim: Simulator, site: Site, t: dt.datetime) -> dict[str, float]:
    h = _hour(t)
    n = lambda name, s=0.0: _smooth_noise(sim.seed, site.id, name, t, s)  # noqa: E731
    rush = math.exp(-((h - 8.5) / 1.5) ** 2) + 0.8 * math.exp(-((h - 19.0) / 2.0) ** 2)
    inversion = 0.5 * (1 + math.cos(2 * math.pi * (h - 4.0) / 24))  # 1 before dawn, 0 mid-afternoon
    sun = max(0.0, math.sin(math.pi * (h - 7.0) / 12.0)) if 7 <= h <= 19 else 0.0
    o3_shape = max(0.0, math.sin(math.pi * (h - 8.0) / 14.0)) if 8 <= h <= 22 else 0.0
    lv = AMBIENT_AIR_LEVELS
    pm25 = lv["PM2.5"][0] * (0.8 + 0.45 * inversion) * (1 + n("PM2.5", lv["PM2.5"][1]))
    return {
        "SO2": lv["SO2"][0] * (0.85 + 0.3 * rush) * (1 + n("SO2", lv["SO2"][1])),
        "NO2": lv["NO2"][0] * (0.6 + 1.0 * rush) * (1 + n("NO2", lv["NO2"][1])),
        "PM2.5": pm25,
        "PM10": max(pm25 * 1.3, lv["PM10"][0] * (0.8 + 0.4 * inversion) * (1 + n("PM10", lv["PM10"][1]))),
        "CO": lv["CO"][0] * (0.75 + 0.6 * rush) * (1 + n("CO", lv["CO"][1])),
        "O3": (25.0 + 115.0 * o3_shape) * (1 + n("O3", lv["O3"][1])),
        "temp": lv["temp"][0] + 6.0 * math.sin(2 * math.pi * (h - 9.0) / 24) + 1.5 * n("temp", 1.0),
        "humidity": min(98.0, max(20.0, lv["humidity"][0] - 18.0 * math.sin(2 * math.pi * (h - 9.0) / 24) + 4 * n("humidity", 1.0))),
        "pressure": lv["pressure"][0] + 0.15 * math.cos(2 * math.pi * (h - 10.0) / 12) + 0.05 * n("pressure", 1.0),
        "wind_speed": max(0.2, lv["wind_speed"][0] * (0.6 + 0.8 * sun) * (1 + n("wind_speed", lv["wind_speed"][1]))),
        "wind_dir": (lv["wind_dir"][0] + 40.0 * n("wind_dir", 1.0)) % 360.0,
    }


def _river(sim: Simulator, site: Site, t: dt.datetime) -> dict[str, float]:
    h = _hour(t)
    photo = math.sin(2 * math.pi * (h - 9.0) / 24)  # +1 mid-afternoon: DO and pH up
    lv = RIVER_LEVELS_BY_TARGET.get(site.target_class or 3, RIVER_LEVELS_BY_TARGET[3])
    n = lambda name: _smooth_noise(sim.seed, site.id, name, t, lv[name][1])  # noqa: E731
    out = {name: mean * (1 + n(name)) for name, (mean, _) in lv.items()}
    out["pH"] = lv["pH"][0] + 0.2 * photo + 0.05 * _smooth_noise(sim.seed, site.id, "pH", t, 1.0)
    out["DO"] = lv["DO"][0] + 0.7 * photo + 0.15 * _smooth_noise(sim.seed, site.id, "DO", t, 1.0)
    return out


def _gas_outlet(sim: Simulator, site: Site, t: dt.datetime) -> dict[str, float]:
    load = _load(t)  # 0.35 at night … 1.0 on a working day
    lv = GAS_BOILER_LEVELS
    n = lambda name: _smooth_noise(sim.seed, site.id, name, t, lv[name][1])  # noqa: E731
    o2 = 9.0 - 3.0 * (load - 0.35) / 0.65 + 0.3 * _smooth_noise(sim.seed, site.id, "O2", t, 1.0)  # low O2 at high load
    return {
        "O2": min(9.5, max(5.5, o2)),
        "NOx": lv["NOx"][0] * (0.75 + 0.35 * load) * (1 + n("NOx")),
        "SO2": lv["SO2"][0] * (1 + n("SO2")),
        "particulates": lv["particulates"][0] * (1 + n("particulates")),
        "gas_flow": lv["gas_flow"][0] * load * (1 + n("gas_flow")),
        "stack_temp": lv["stack_temp"][0] * (0.85 + 0.15 * load) * (1 + n("stack_temp")),
    }


def _wastewater(sim: Simulator, site: Site, t: dt.datetime) -> dict[str, float]:
    load = _load(t)
    lv = WASTEWATER_LEVELS
    n = lambda name: _smooth_noise(sim.seed, site.id, name, t, lv[name][1])  # noqa: E731
    out = {name: mean * (1 + n(name)) for name, (mean, _) in lv.items()}
    out["pH"] = lv["pH"][0] + 0.3 * _smooth_noise(sim.seed, site.id, "pH", t, 1.0)
    out["water_flow"] = lv["water_flow"][0] * load * (1 + n("water_flow"))
    return out


def _meter(sim: Simulator, site: Site, t: dt.datetime) -> dict[str, float]:
    # Cumulative totals: a closed form of the working-day profile, so the value at t is pure and
    # never decreases. Each site starts from its own reading so meters do not look alike.
    out = {}
    for name in site.parameters:
        on, off = METER_RATES[name]
        scale = 0.6 + 0.8 * _noise01(sim.seed, site.id, name)
        base = 10_000.0 + 90_000.0 * _noise01(sim.seed, site.id, name + "/base")
        out[name] = base + scale * _profile_integral(t, on, off)
    return out


_MODELS: Final = {
    "station": _air,
    "section": _river,
    "gas_outlet": _gas_outlet,
    "wastewater_outlet": _wastewater,
    "water_meter": _meter,
    "energy_meter": _meter,
}


# -- helpers --------------------------------------------------------------------------------------

def _floor(t: dt.datetime, interval_s: int) -> dt.datetime:
    epoch = int(t.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % interval_s, t.tzinfo)


def _event_window(e: Event, start: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    a = start + dt.timedelta(hours=e.at_h)
    if e.local_hour is not None:
        anchored = a.replace(hour=e.local_hour, minute=0, second=0, microsecond=0)
        if anchored < a:
            anchored += dt.timedelta(days=1)
        a = anchored
    return a, a + dt.timedelta(hours=e.duration_h)


def _blend(base: float, peak: float, x: float) -> float:
    """Rise from ``base`` to ``peak`` over the first fifth of the event, fall over the last fifth."""
    ramp = min(1.0, x / 0.2, (1.0 - x) / 0.2)
    return base + (peak - base) * max(0.0, ramp)


def _hour(t: dt.datetime) -> float:
    return t.hour + t.minute / 60 + t.second / 3600


def _load(t: dt.datetime) -> float:
    """Production load 0.35…1: working days 08–18 full, ramps around, nights and weekends low."""
    h = _hour(t)
    if t.weekday() >= 5:
        return 0.45
    if WORK_HOURS[0] <= h < WORK_HOURS[1]:
        return 1.0
    if WORK_HOURS[0] - 2 <= h < WORK_HOURS[0]:
        return 0.35 + 0.65 * (h - (WORK_HOURS[0] - 2)) / 2
    if WORK_HOURS[1] <= h < WORK_HOURS[1] + 2:
        return 1.0 - 0.65 * (h - WORK_HOURS[1]) / 2
    return 0.35


def _profile_integral(t: dt.datetime, on: float, off: float) -> float:
    """∫ rate dt (rate per hour: ``on`` in working hours of working days, ``off`` otherwise) from
    the Monday 00:00 of 2024-01-01 (local) to ``t``."""
    origin = dt.datetime(2024, 1, 1, tzinfo=t.tzinfo)  # a Monday
    hours = (t - origin).total_seconds() / 3600
    work = WORK_HOURS[1] - WORK_HOURS[0]
    per_week = 5 * (work * on + (24 - work) * off) + 2 * 24 * off
    weeks, rest = divmod(hours, 168)
    total = weeks * per_week
    day, hour = divmod(rest, 24)
    day = int(day)
    for d in range(day):
        total += (work * on + (24 - work) * off) if d < 5 else 24 * off
    if day < 5:
        worked = min(max(hour - WORK_HOURS[0], 0.0), work)
        total += worked * on + (hour - worked) * off
    else:
        total += hour * off
    return total


def _noise01(seed: int, *key: object) -> float:
    """A deterministic uniform number in [0, 1) for ``key``."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return struct.unpack("<Q", digest)[0] / 2**64


def _smooth_noise(seed: int, site: str, name: str, t: dt.datetime, scale: float) -> float:
    """Noise of about ±``scale`` that drifts hour to hour (interpolated) with a small minute jitter."""
    if scale == 0.0:
        return 0.0
    hours = t.timestamp() / 3600
    h0 = math.floor(hours)
    f = hours - h0
    a = _noise01(seed, site, name, h0) * 2 - 1
    b = _noise01(seed, site, name, h0 + 1) * 2 - 1
    smooth = a + (b - a) * (3 * f * f - 2 * f * f * f)
    jitter = _noise01(seed, site, name, "m", int(t.timestamp() // 60)) * 2 - 1
    return scale * (0.85 * smooth + 0.15 * jitter)


def _round(v: float, name: str) -> float:
    return round(v, _DIGITS.get(name, 1))


def _unit(site: Site, name: str) -> str:
    return site.parameter(name).unit


def _value_json(name: str, v: float, unit: str, flag: str | None, zs: float | None) -> dict:
    out: dict = {"v": v, "unit": unit}
    if flag:
        out["flag"] = flag
    if zs is not None:
        out["zs"] = zs
    return out
