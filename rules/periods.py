"""Time conventions, stated once for all of ecopark.

**An hourly mean is labelled by the START of its hour.** HJ 212 (2017 and 2025) stamps period data
with the start of the period (`DataTime` of a 2061 packet at 10:00 covers 10:00–11:00), and the
enterprise monitors are the larger part of the data, so ecopark keeps to it everywhere: the hour
labelled 10:00 holds the minutes 10:00:00 ≤ t < 11:00:00.

Consequences, kept in this module so no other code re-derives them:
- A natural day D (park local time) holds the hours labelled D 00:00 … D 23:00.
- An 8-hour moving mean labelled ``t`` averages the hours labelled t-7 … t (GB 3095 §3 labels it by
  the last hour of the window); in start labels that is the window [t-7h, t+1h).
- The O3 daily maximum 8-hour mean takes the 17 windows *ending* 08:00 … 24:00 of the day
  (HJ 663-2013), i.e. in start labels the windows whose last hour is labelled 07:00 … 23:00, none
  reaching into the next day.

Days are the park's local natural days; the time zone comes from the park config.
"""

from __future__ import annotations

import datetime as dt
from typing import Final
from zoneinfo import ZoneInfo

HOUR_LABEL: Final[str] = "start"

# HJ 663-2013: MDA8 windows end at 08:00 … 24:00 → their last hours (start-labelled) are 7 … 23.
O3_8H_WINDOW_LAST_HOURS: Final[range] = range(7, 24)
O3_8H_WINDOW_HOURS: Final[int] = 8


def hour_start(ts: dt.datetime) -> dt.datetime:
    """The label of the hour holding ``ts``: ``ts`` truncated to its hour (time zone kept)."""
    _require_aware(ts)
    return ts.replace(minute=0, second=0, microsecond=0)


def local_day(ts: dt.datetime, tz: str | ZoneInfo) -> dt.date:
    """The park-local natural day that holds ``ts``."""
    _require_aware(ts)
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return ts.astimezone(zone).date()


def day_hours(day: dt.date, tz: str | ZoneInfo) -> list[dt.datetime]:
    """The start labels of the hours of a local natural day (24, or 23/25 where DST exists)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.timezone.utc)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(dt.timezone.utc)
    hours = []
    t = start
    while t < end:
        hours.append(t.astimezone(zone))
        t += dt.timedelta(hours=1)
    return hours


def _require_aware(ts: dt.datetime) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no time zone; ecopark only takes aware times")
