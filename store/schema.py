"""What the store holds, whichever adapter keeps it: raw readings, derived results, events.

Measurements (the ``measurement`` of a ``Result``) and their fields — the contract between the
stream processors that write them and the wall page, Grafana and the evaluation that read them:

| measurement | site kind | tags | fields |
|---|---|---|---|
| ``hourly_mean`` | all | parameter | value, valid_minutes, valid (bool), zs (converted, stacks) |
| ``daily_mean`` | all | parameter | value, valid_hours, valid |
| ``moving_mean`` | air | parameter, window (``8h``/``24h``) | value, valid_hours, valid |
| ``aqi_hourly`` | air | — | aqi, level, category, color, primary (comma list), iaqi_<P> …, edition |
| ``aqi_daily`` | air | — | same as aqi_hourly |
| ``water_class_hourly`` | water | — | klass, target_class, meets (bool), worst_items, exceedance_<item> … |
| ``water_class_daily`` | water | — | same |
| ``compliance_hourly`` | emission | parameter | value (compared value: converted where the permit says), limit, compliant (bool or None when the hour is invalid), exceedance_multiple, valid_minutes |
| ``compliance_daily`` | emission (wastewater) | parameter | same, daily |

``ts`` of a result is the start of its period (``rules/periods.py``: hours are labelled by their
start). A result is identified by (measurement, site, tags, ts): writing it again replaces it,
so recomputing a window after a late reading is an idempotent upsert.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import msgspec

FieldValue = float | int | str | bool | None

MEASUREMENTS: Final[tuple[str, ...]] = (
    "hourly_mean",
    "daily_mean",
    "moving_mean",
    "aqi_hourly",
    "aqi_daily",
    "water_class_hourly",
    "water_class_daily",
    "compliance_hourly",
    "compliance_daily",
)

EVENT_KINDS: Final[tuple[str, ...]] = (
    "aqi_level",        # a station's AQI reached level III (轻度污染) or worse
    "below_target",     # a river section's class is worse than its target
    "exceedance",       # an enterprise outlet exceeded its permit
    "silent",           # a site stopped reporting
    "maintenance",      # a site reports maintenance/calibration/fault flags
    "late_reading",     # a reading older than the lateness horizon: stored raw, not recomputed
    "recovered",        # a previous condition ended
)


class Result(msgspec.Struct, frozen=True, kw_only=True):
    measurement: str
    site: str
    ts: dt.datetime  # aware; start of the period
    fields: dict[str, FieldValue]
    tags: dict[str, str] = {}

    @property
    def key(self) -> tuple[str, str, str, dt.datetime]:
        return (self.measurement, self.site, _tags_key(self.tags), self.ts)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Something an inspector may need to know; ``id`` is stable so re-emitting is idempotent."""

    id: str
    kind: str
    site: str
    ts: dt.datetime  # the period or moment the event is about
    severity: str  # "info" | "warning" | "critical"
    message: str  # one line, Chinese with English beside where it helps
    data: dict[str, FieldValue] = {}


class StoredReading(msgspec.Struct, frozen=True, kw_only=True):
    """One parameter of one raw reading, as stored (canonical unit)."""

    site: str
    ts: dt.datetime
    parameter: str
    value: float
    unit: str
    flag: str
    zs: float | None = None
    seq: int = 0
    interval: str = "1min"


def tags_key(tags: dict[str, str]) -> str:
    """A canonical string for a tag set (used in primary keys)."""
    return _tags_key(tags)


def _tags_key(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={tags[k]}" for k in sorted(tags))
