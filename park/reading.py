"""The reading message: one JSON object per site per timestamp, and its validation.

Example (README has it too)::

    {"schema": 1, "site": "KM-AIR-KMXY", "ts": "2026-11-25T10:05:00+08:00", "seq": 4711,
     "interval": "1min",
     "values": {"PM2.5": {"v": 35.2, "unit": "ug/m3", "flag": "N"},
                "CO":    {"v": 0.8,  "unit": "mg/m3", "flag": "N"}}}

- ``schema``: message schema version; a collector refuses versions newer than it knows.
- ``ts``: ISO 8601 with a UTC offset; for period data (``interval`` ``1h``/``1d``) the *start* of
  the period, as HJ 212 stamps it.
- ``seq``: the sender's sequence number; with ``site`` and ``ts`` it makes the reading's stable id.
- ``interval``: ``rt`` (instantaneous, HJ 212 2011), ``1min`` (2051), ``1h`` (2061), ``1d`` (2031).
- ``values``: parameter short name or HJ 212 code → value ``v``, ``unit``, HJ 212 data ``flag``
  (N F M S D C T B; default N) and, for stack gases, ``zs``: the value converted to the permit's
  reference O2 (HJ 212 ``-ZsRtd``/``-ZsAvg``), same unit.

``validate_reading`` turns the bytes of an MQTT message into a ``Reading`` in canonical units, or
raises ``InvalidReading`` whose message is the one-line reason that goes to the dead-letter topic.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Final, Literal, Sequence

import msgspec

from park.model import Park, Site

SCHEMA_VERSION: Final[int] = 1
MAX_MESSAGE_BYTES: Final[int] = 64 * 1024
# A clock may run a little ahead; a reading stamped further ahead than this is refused.
MAX_CLOCK_SKEW: Final[dt.timedelta] = dt.timedelta(minutes=10)
# HJ 212-2017 Table 8 data flags (reference/hj212.md §7).
DATA_FLAGS: Final[frozenset[str]] = frozenset("NFMSDCTB")
INTERVALS: Final[frozenset[str]] = frozenset({"rt", "1min", "1h", "1d"})

Interval = Literal["rt", "1min", "1h", "1d"]


class Value(msgspec.Struct, frozen=True, omit_defaults=True):
    v: float
    unit: str
    flag: str = "N"
    zs: float | None = None


class Reading(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    schema: int
    site: str
    ts: dt.datetime
    seq: int
    values: dict[str, Value]
    interval: Interval = "1min"
    backfill: bool = False

    @property
    def id(self) -> str:
        """Stable id: the same reading sent twice has the same id."""
        return f"{self.site}/{self.ts.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}/{self.seq}"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the dead-letter topic holds: the reason, where it came from, and the original bytes."""

    reason: str
    source: str  # e.g. "mqtt:ecopark/air/KM-AIR-KMXY" or "hj212:127.0.0.1:50122"
    received_at: dt.datetime
    payload: str  # the message as text (undecodable bytes escaped)
    site: str | None = None


class InvalidReading(ValueError):
    """A message that cannot be taken; ``str()`` is the one-line reason."""

    def __init__(self, reason: str, site: str | None = None) -> None:
        super().__init__(reason)
        self.site = site


def encode_reading(reading: Reading) -> bytes:
    return _ENCODER.encode(reading)


def decode_reading(data: bytes) -> Reading:
    """Decode a reading that was validated before (from Kafka); no park checks."""
    return _READING_DECODER.decode(data)


def encode_readings(readings: Sequence[Reading]) -> bytes:
    """Several validated readings of one site as one Kafka record: a JSON array of readings."""
    return _ENCODER.encode(list(readings))


def decode_readings(data: bytes) -> list[Reading]:
    """A Kafka record of the readings topics: one reading (an object) or several (an array)."""
    if data[:1] == b"[":
        return _READINGS_DECODER.decode(data)
    return [_READING_DECODER.decode(data)]


def validate_reading(
    payload: bytes,
    park: Park,
    *,
    topic: str | None = None,
    now: dt.datetime | None = None,
) -> Reading:
    """Check a raw message against the schema and the park; return it in canonical units.

    Every value is converted to its parameter's canonical unit (``park/parameters.py``) and keyed
    by its short name. Raises ``InvalidReading`` with the reason.
    """
    if len(payload) > MAX_MESSAGE_BYTES:
        raise InvalidReading(f"message is {len(payload)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        raw = _RAW_DECODER.decode(payload)
    except msgspec.ValidationError as exc:
        raise InvalidReading(f"bad message: {exc}") from None
    except msgspec.DecodeError as exc:
        if b"NaN" in payload or b"Infinity" in payload:
            raise InvalidReading("malformed JSON: NaN or Infinity is not a number in JSON") from None
        raise InvalidReading(f"malformed JSON: {exc}") from None

    site_id = raw.site
    if raw.schema > SCHEMA_VERSION:
        raise InvalidReading(f"schema version {raw.schema} is newer than this collector knows ({SCHEMA_VERSION})", site_id)
    if raw.schema < 1:
        raise InvalidReading(f"schema version {raw.schema} does not exist", site_id)
    site = park.sites.get(site_id)
    if site is None:
        raise InvalidReading(f"unknown site {site_id!r}", site_id)
    if topic is not None:
        expected = park.mqtt_topic(site)
        if topic != expected:
            raise InvalidReading(f"site {site_id} published on topic {topic!r}, its topic is {expected!r}", site_id)
    if raw.interval not in INTERVALS:
        raise InvalidReading(f"unknown interval {raw.interval!r} (expected one of {', '.join(sorted(INTERVALS))})", site_id)
    ts = _timestamp(raw.ts, site_id)
    now = now or dt.datetime.now(dt.timezone.utc)
    if ts - now > MAX_CLOCK_SKEW:
        raise InvalidReading(f"timestamp {raw.ts} is in the future (now {now.astimezone(ts.tzinfo).isoformat(timespec='seconds')})", site_id)
    if raw.seq < 0:
        raise InvalidReading(f"sequence number {raw.seq} is negative", site_id)
    if not raw.values:
        raise InvalidReading("reading has no values", site_id)
    values = {name: _value(site, name, v) for name, v in raw.values.items()}
    canonical = {}
    for name, value in values.items():
        if value[0] in canonical:
            raise InvalidReading(f"{value[0]} is given twice (once as {name!r})", site_id)
        canonical[value[0]] = value[1]
    return Reading(
        schema=SCHEMA_VERSION, site=site_id, ts=ts, seq=raw.seq, values=canonical,
        interval=raw.interval, backfill=raw.backfill,  # type: ignore[arg-type]
    )


def dead_letter(reason: str, payload: bytes, source: str, site: str | None = None, now: dt.datetime | None = None) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        source=source,
        received_at=now or dt.datetime.now(dt.timezone.utc),
        payload=payload[:MAX_MESSAGE_BYTES].decode("utf-8", errors="backslashreplace"),
        site=site,
    )


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return _ENCODER.encode(letter)


# ---------------------------------------------------------------------------------------------

class _RawValue(msgspec.Struct, forbid_unknown_fields=True):
    v: float | None
    unit: str = ""
    flag: str = "N"
    zs: float | None = None


class _RawReading(msgspec.Struct, forbid_unknown_fields=True):
    schema: int
    site: str
    ts: str
    seq: int
    values: dict[str, _RawValue]
    interval: str = "1min"
    backfill: bool = False


_ENCODER: Final = msgspec.json.Encoder()
_RAW_DECODER: Final = msgspec.json.Decoder(_RawReading)
_READING_DECODER: Final = msgspec.json.Decoder(Reading)
_READINGS_DECODER: Final = msgspec.json.Decoder(list[Reading])


def _timestamp(text: str, site_id: str) -> dt.datetime:
    try:
        ts = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidReading(f"timestamp {text!r} is not ISO 8601", site_id) from None
    if ts.tzinfo is None:
        raise InvalidReading(f"timestamp {text!r} has no UTC offset", site_id)
    return ts


def _value(site: Site, name: str, raw: _RawValue) -> tuple[str, Value]:
    try:
        param = site.parameter(name)
    except ValueError:
        raise InvalidReading(f"unknown parameter {name!r} for {site.kind} site {site.id}", site.id) from None
    if param.name not in site.parameters:
        raise InvalidReading(f"parameter {param.name} is not measured at site {site.id}", site.id)
    if raw.flag not in DATA_FLAGS:
        raise InvalidReading(f"{param.name}: unknown data flag {raw.flag!r} (HJ 212 flags: {' '.join(sorted(DATA_FLAGS))})", site.id)
    if raw.v is None or math.isnan(raw.v) or math.isinf(raw.v):
        raise InvalidReading(f"{param.name}: value {raw.v} is not a number", site.id)
    try:
        v = param.to_canonical(raw.v, raw.unit)
        zs = param.to_canonical(raw.zs, raw.unit) if raw.zs is not None else None
    except ValueError as exc:
        raise InvalidReading(f"{param.name}: {exc}", site.id) from None
    for label, x in (("value", v), ("converted value", zs)):
        if x is None:
            continue
        if math.isnan(x) or math.isinf(x):
            raise InvalidReading(f"{param.name}: {label} {x} is not a number", site.id)
        if x < 0 and not param.may_be_negative:
            raise InvalidReading(f"{param.name}: negative {label} {x:g} {param.unit}", site.id)
        if param.upper_bound is not None and x > param.upper_bound:
            raise InvalidReading(f"{param.name}: {label} {x:g} {param.unit} is above the physical bound {param.upper_bound:g}", site.id)
    return param.name, Value(v=v, unit=param.unit, flag=raw.flag, zs=zs)
