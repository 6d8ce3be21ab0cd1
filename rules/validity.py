"""Data validity for ambient air: HJ 212 flags, GB 3095 Table 4 minimums, HJ 663 averaging.

Source tables: `reference/air-validity.md` (§1 limits, §2 validity minimums, §3 averaging, §8 the
2026 revision) and `reference/hj212.md` §7 (data flags).

What a statistic needs to be valid (GB 3095-2012 Table 4, unchanged in GB 3095-2026 Table 4):
- a 1-hour mean: ≥ 45 valid minutes in the hour;
- a 24-hour mean: ≥ 20 valid hourly means in the natural day;
- an 8-hour moving mean: ≥ 6 valid hourly means in its 8 hours;
- the O3 daily maximum 8-hour mean (HJ 663-2013): ≥ 14 valid 8-hour means among the day's 17
  windows, or fewer when the maximum still exceeds the grade-2 limit;
- an annual mean: ≥ 324 daily means in the year and ≥ 27 in each month (≥ 25 in February).

A statistic that misses its minimum is invalid: its ``value`` is ``None`` here, so it cannot leak
into a higher statistic by accident. Missing data is never imputed (air-validity.md §2).

**Rounding.** Every mean here is computed from unrounded inputs and returned unrounded. Rounding
happens once, where a figure is judged or reported: `rules.aqi` rounds concentrations before the
IAQI step (HJ 633), `rules.annual` rounds the annual statistics it reports (GB/T 8170, digits
configurable). Rounding an hourly mean before averaging it into a day would bias the day.

**Time labels** follow `rules.periods`: an hourly mean is labelled by the start of its hour, a day
holds the hours labelled 00:00 … 23:00, and the O3 8-hour windows of a day are those whose last
hour is labelled 07:00 … 23:00.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from rules.editions import edition_for
from rules.periods import O3_8H_WINDOW_HOURS, O3_8H_WINDOW_LAST_HOURS

# --- HJ 212-2017 Table 8: instrument data flags (reference/hj212.md §7) -------------------------

HJ212_2017_FLAGS: Final[Mapping[str, str]] = {
    "N": "instrument working normally",
    "F": "instrument stopped",
    "M": "maintenance",
    "S": "manually entered set value",
    "D": "instrument fault",
    "C": "calibration",
    "T": "above the instrument's upper measuring limit",
    "B": "communication fault between instrument and data logger",
}

# A normal measurement.
VALID_FLAGS: Final[frozenset[str]] = frozenset({"N"})

# Stopped, maintenance, a set value (not a measurement), fault, calibration, communication fault:
# GB 3095 Table 4 counts only minutes of real measurement, and air-validity.md §2 excludes
# calibration, maintenance and fault explicitly.
INVALID_FLAGS: Final[frozenset[str]] = frozenset({"F", "M", "S", "D", "C", "B"})

# T: the instrument measured, but the value is above its range. hj212.md §7 says keep it as
# "≥ range" and flag it, never drop it: it may be a real exceedance, and dropping it would bias the
# mean low exactly when the air is worst. So a T minute COUNTS as valid, its reported value (the
# range ceiling) enters the mean, and `HourlyMean.above_range` carries the flag onward: the mean is
# then a lower bound.
ABOVE_RANGE_FLAGS: Final[frozenset[str]] = frozenset({"T"})

# --- GB 3095 Table 4 (2012 and 2026 alike) and HJ 663-2013: minimum valid data ------------------

MIN_VALID_MINUTES_PER_HOUR: Final[int] = 45  # GB 3095 Table 4: 1-hour mean, ≥ 45 min of sampling
MIN_VALID_HOURS_PER_DAY: Final[int] = 20  # GB 3095 Table 4: 24-hour mean, ≥ 20 hourly means
MIN_VALID_HOURS_PER_8H: Final[int] = 6  # GB 3095 Table 4: O3 8-hour mean, ≥ 6 hourly means
# HJ 663-2013 (O3 daily max 8 h): ≥ 14 valid 8-hour means among the 17 windows of the day.
# Recalled, not re-read in the HJ 663 text (air-validity.md §3); the 2026 edition is assumed equal.
MIN_VALID_8H_PER_DAY_O3: Final[int] = 14
MIN_VALID_DAYS_PER_YEAR: Final[int] = 324  # GB 3095 Table 4: annual mean, ≥ 324 daily means
MIN_VALID_DAYS_PER_MONTH: Final[int] = 27  # GB 3095 Table 4: and ≥ 27 daily means in each month
MIN_VALID_DAYS_FEBRUARY: Final[int] = 25  # GB 3095 Table 4: ≥ 25 in February (leap year or not)

MINUTES_PER_HOUR: Final[int] = 60
HOURS_PER_DAY: Final[int] = 24  # a natural day of the park (Asia/Shanghai keeps no DST)
MAX_HOURS_PER_DAY: Final[int] = 25  # a local day with a DST fall-back, where a zone has one

# --- GB 3095 grade-2 limits (industrial parks are class-2 zones, air-validity.md §1) ---------------
# Keys: (pollutant, averaging period). Units: µg/m³, CO mg/m³. Periods: "1h", "8h" (O3 daily max
# 8-hour mean), "24h", "annual", "quarterly" (Pb).

GB3095_2012_GRADE2: Final[Mapping[tuple[str, str], float]] = {
    # GB 3095-2012 Table 1 (basic items)
    ("SO2", "annual"): 60, ("SO2", "24h"): 150, ("SO2", "1h"): 500,
    ("NO2", "annual"): 40, ("NO2", "24h"): 80, ("NO2", "1h"): 200,
    ("CO", "24h"): 4, ("CO", "1h"): 10,
    ("O3", "8h"): 160, ("O3", "1h"): 200,
    ("PM10", "annual"): 70, ("PM10", "24h"): 150,
    ("PM2.5", "annual"): 35, ("PM2.5", "24h"): 75,
    # GB 3095-2012 Table 2 (other items)
    ("TSP", "annual"): 200, ("TSP", "24h"): 300,
    ("NOx", "annual"): 50, ("NOx", "24h"): 100, ("NOx", "1h"): 250,
    ("Pb", "annual"): 0.5, ("Pb", "quarterly"): 1,
    ("BaP", "annual"): 0.001, ("BaP", "24h"): 0.0025,
}

# GB 3095-2026 Table 1, transition grade 2: 2026-03-01 … 2030-12-31 (air-validity.md §8).
# Table 2 items other than NOx are not in the reference; they are left out rather than guessed.
GB3095_2026_GRADE2_TRANSITION: Final[Mapping[tuple[str, str], float]] = {
    ("SO2", "annual"): 60, ("SO2", "24h"): 150, ("SO2", "1h"): 500,
    ("NO2", "annual"): 40, ("NO2", "24h"): 80, ("NO2", "1h"): 200,
    ("CO", "24h"): 4, ("CO", "1h"): 10,
    ("O3", "8h"): 160, ("O3", "1h"): 200,
    ("PM10", "annual"): 60, ("PM10", "24h"): 120,
    ("PM2.5", "annual"): 30, ("PM2.5", "24h"): 60,
    ("NOx", "annual"): 50, ("NOx", "24h"): 100, ("NOx", "1h"): 250,
}

# GB 3095-2026 Table 1, final grade 2: from 2031-01-01 (air-validity.md §8).
GB3095_2026_GRADE2_FINAL: Final[Mapping[tuple[str, str], float]] = {
    ("SO2", "annual"): 20, ("SO2", "24h"): 50, ("SO2", "1h"): 150,
    ("NO2", "annual"): 30, ("NO2", "24h"): 50, ("NO2", "1h"): 200,
    ("CO", "24h"): 4, ("CO", "1h"): 10,
    ("O3", "8h"): 160, ("O3", "1h"): 200,
    ("PM10", "annual"): 50, ("PM10", "24h"): 100,
    ("PM2.5", "annual"): 25, ("PM2.5", "24h"): 50,
    ("NOx", "annual"): 40, ("NOx", "24h"): 70, ("NOx", "1h"): 250,
}

# GB 3095-2026 Table 1: the final limits apply from this date.
GB3095_2026_FINAL_FROM: Final[dt.date] = dt.date(2031, 1, 1)

# Grade-2 limits by edition key. "2012" and "2026" are the keys of `rules.editions`; "2026" holds
# the transition phase, "2026-final" the limits from 2031. `gb3095_limits` picks one by date.
GB3095_LIMITS: Final[Mapping[str, Mapping[tuple[str, str], float]]] = {
    "2012": GB3095_2012_GRADE2,
    "2026": GB3095_2026_GRADE2_TRANSITION,
    "2026-final": GB3095_2026_GRADE2_FINAL,
}


def gb3095_limits(
    edition: str | int | None = None, when: dt.date | dt.datetime | None = None
) -> Mapping[tuple[str, str], float]:
    """The GB 3095 grade-2 limits that judge data of ``when`` (µg/m³, CO mg/m³).

    ``edition`` as in `rules.editions.edition_for`, or ``"2026-final"``. Under GB 3095-2026 the
    phase follows ``when`` (today when not given): transition limits until 2030-12-31, final ones
    from 2031-01-01.
    """
    if edition is not None and str(edition).strip().lower() == "2026-final":
        return GB3095_LIMITS["2026-final"]
    key = edition_for(edition, when)
    if key == "2026":
        day = when if when is not None else dt.date.today()
        day = day.date() if isinstance(day, dt.datetime) else day
        if day >= GB3095_2026_FINAL_FROM:
            return GB3095_LIMITS["2026-final"]
    return GB3095_LIMITS[key]


# --- Flags ----------------------------------------------------------------------------------------


def flag_counts_as_valid(flag: str) -> bool:
    """Whether a value with this HJ 212-2017 data flag counts as valid measurement.

    N and T count (T: kept as a lower bound, see `ABOVE_RANGE_FLAGS`); F, M, S, D, C, B do not.
    Raises ``ValueError`` for a flag HJ 212-2017 Table 8 does not define.
    """
    if flag in VALID_FLAGS or flag in ABOVE_RANGE_FLAGS:
        return True
    if flag in INVALID_FLAGS:
        return False
    raise ValueError(f"unknown HJ 212 data flag {flag!r}: expected one of {''.join(HJ212_2017_FLAGS)}")


# --- Hourly means ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourlyMean:
    """A 1-hour mean (same unit as the minute values), unrounded.

    ``value`` is ``None`` unless ``valid``. ``valid_minutes`` counts minutes of valid measurement.
    ``above_range`` is true when a T-flagged value entered the mean: the mean is then a lower bound.
    """

    value: float | None
    valid_minutes: int
    valid: bool
    above_range: bool = False


def hour_is_valid(valid_minutes: int) -> bool:
    """GB 3095 Table 4: a 1-hour mean needs ≥ 45 minutes of valid measurement in the hour."""
    if valid_minutes < 0 or valid_minutes > MINUTES_PER_HOUR:
        raise ValueError(f"valid minutes {valid_minutes} is outside 0..{MINUTES_PER_HOUR}")
    return valid_minutes >= MIN_VALID_MINUTES_PER_HOUR


def hourly_mean(
    minute_values: Iterable[tuple[float | None, str]] | Sequence[float | None] | np.ndarray,
    flags: Sequence[str] | np.ndarray | None = None,
    *,
    minutes_per_value: int = 1,
) -> HourlyMean:
    """The 1-hour mean of one hour's minute data (GB 3095 §3: arithmetic mean within the hour).

    Two input shapes:
    - ``hourly_mean([(value, flag), ...])``: pairs, as HJ 212 ``-Rtd``/``-Avg`` with ``-Flag``;
    - ``hourly_mean(values, flags)``: two parallel sequences or arrays. With ``flags=None`` and a
      numeric ``numpy`` array, every entry is taken as flagged N.

    A value counts when its flag counts (`flag_counts_as_valid`) and it is a number (``None`` and
    NaN are missing). ``minutes_per_value`` is the span each value stands for (HJ 212 minute data
    may come every 1–30 minutes, `MinInterval`); valid minutes = valid values × that span.
    Raises ``ValueError`` on an unknown flag, mismatched lengths, or more than 60 minutes of data.
    """
    if minutes_per_value < 1 or MINUTES_PER_HOUR % minutes_per_value:
        raise ValueError(f"minutes per value {minutes_per_value} does not divide the hour")
    values, flag_seq = _split_minute_data(minute_values, flags)
    if len(values) * minutes_per_value > MINUTES_PER_HOUR:
        raise ValueError(
            f"{len(values)} values of {minutes_per_value} min exceed one hour of data"
        )
    total = 0.0
    count = 0
    above_range = False
    for value, flag in zip(values, flag_seq):
        if not flag_counts_as_valid(flag) or _missing(value):
            continue
        total += float(value)  # type: ignore[arg-type]
        count += 1
        above_range = above_range or flag in ABOVE_RANGE_FLAGS
    valid_minutes = count * minutes_per_value
    if not hour_is_valid(valid_minutes):
        return HourlyMean(None, valid_minutes, False, above_range)
    return HourlyMean(total / count, valid_minutes, True, above_range)


# --- Daily and 8-hour means -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DailyMean:
    """A 24-hour mean over a natural day's hourly means, unrounded; ``None`` unless ``valid``."""

    value: float | None
    valid_hours: int
    valid: bool


def daily_mean(hourly: Sequence[float | None]) -> DailyMean:
    """The 24-hour mean of a natural day (GB 3095 §3), valid with ≥ 20 valid hours (Table 4).

    ``hourly`` holds the day's hourly means in label order 00:00 … 23:00 (`rules.periods`); a
    missing or invalid hour is ``None`` or NaN, and missing hours may simply be left out. SO2, NO2,
    CO, PM10, PM2.5, NOx. Raises ``ValueError`` for more than 25 hours.
    """
    if len(hourly) > MAX_HOURS_PER_DAY:
        raise ValueError(f"{len(hourly)} hourly values do not fit in one day")
    present = [float(v) for v in hourly if not _missing(v)]  # type: ignore[arg-type]
    if len(present) < MIN_VALID_HOURS_PER_DAY:
        return DailyMean(None, len(present), False)
    return DailyMean(math.fsum(present) / len(present), len(present), True)


def moving_8h_mean(hourly_window: Sequence[float | None]) -> float | None:
    """The 8-hour mean of 8 consecutive hourly means (oldest first), or ``None`` with < 6 valid.

    GB 3095 §3 labels it by its last hour; GB 3095 Table 4 needs ≥ 6 valid hours. Raises
    ``ValueError`` unless exactly 8 hours are given (``None``/NaN for the missing ones).
    """
    if len(hourly_window) != O3_8H_WINDOW_HOURS:
        raise ValueError(f"an 8-hour window needs 8 hourly values, got {len(hourly_window)}")
    present = [float(v) for v in hourly_window if not _missing(v)]  # type: ignore[arg-type]
    if len(present) < MIN_VALID_HOURS_PER_8H:
        return None
    return math.fsum(present) / len(present)


@dataclass(frozen=True, slots=True)
class O3Max8h:
    """The O3 daily maximum 8-hour mean (MDA8) of a natural day, µg/m³, unrounded.

    ``value`` is ``None`` unless ``valid``. ``valid_windows`` counts valid 8-hour means among the
    17; ``by_exceedance`` is true when the day is valid only because its maximum exceeds the limit
    (HJ 663-2013). ``last_hour`` is the start label (7 … 23) of the last hour of the maximal window.
    """

    value: float | None
    valid_windows: int
    valid: bool
    by_exceedance: bool = False
    last_hour: int | None = None


def o3_daily_max_8h(
    hourly_24: Sequence[float | None],
    edition: str | int | None = None,
    when: dt.date | dt.datetime | None = None,
) -> O3Max8h:
    """The O3 daily max 8-hour mean of one natural day per HJ 663-2013.

    ``hourly_24``: the day's 24 hourly O3 means, labelled 00:00 … 23:00 (``None``/NaN = missing).
    The 17 windows end at 08:00 … 24:00, i.e. their last hours are labelled 07 … 23
    (`rules.periods.O3_8H_WINDOW_LAST_HOURS`); none reaches into the next day. The day is valid
    with ≥ 14 valid 8-hour means, or with fewer when the maximum exceeds the GB 3095 grade-2 O3 8 h
    limit of the edition (`gb3095_limits`; 160 µg/m³ in both). ``edition``/``when`` pick the limit.
    Raises ``ValueError`` unless 24 hourly values are given.
    """
    if len(hourly_24) != HOURS_PER_DAY:
        raise ValueError(f"the O3 daily max 8-hour mean needs the day's 24 hourly values, got {len(hourly_24)}")
    best: float | None = None
    best_last_hour: int | None = None
    valid_windows = 0
    for last in O3_8H_WINDOW_LAST_HOURS:
        mean = moving_8h_mean(hourly_24[last - O3_8H_WINDOW_HOURS + 1 : last + 1])
        if mean is None:
            continue
        valid_windows += 1
        if best is None or mean > best:
            best, best_last_hour = mean, last
    if valid_windows >= MIN_VALID_8H_PER_DAY_O3:
        return O3Max8h(best, valid_windows, True, False, best_last_hour)
    limit = gb3095_limits(edition, when)[("O3", "8h")]
    if best is not None and best > limit:
        return O3Max8h(best, valid_windows, True, True, best_last_hour)
    return O3Max8h(None, valid_windows, False)


# --- Annual-mean validity -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnnualValidity:
    """Whether a year's daily means suffice for an annual mean (GB 3095 Table 4).

    ``days_per_month[m - 1]`` counts the distinct valid days of month ``m``; ``short_months``
    lists the months under their minimum (27, February 25).
    """

    year: int
    valid_days: int
    days_per_month: tuple[int, ...]
    short_months: tuple[int, ...]
    valid: bool


def annual_mean_valid(daily_dates: Iterable[dt.date], year: int | None = None) -> AnnualValidity:
    """Judge the days holding a valid daily mean against GB 3095 Table 4's annual minimums.

    ≥ 324 days in the year and ≥ 27 in every month, ≥ 25 in February (in leap years too: the
    minimum does not grow with 29 February). A date given twice counts once. ``year`` is needed
    only when ``daily_dates`` may be empty; a date of another year raises ``ValueError``.
    """
    dates = {d.date() if isinstance(d, dt.datetime) else d for d in daily_dates}
    years = {d.year for d in dates} | ({year} if year is not None else set())
    if len(years) > 1:
        raise ValueError(f"daily dates span several years {sorted(years)}: judge one year at a time")
    if not years:
        raise ValueError("no daily dates and no year: cannot judge an annual mean")
    (the_year,) = years
    per_month = [0] * 12
    for d in dates:
        per_month[d.month - 1] += 1
    return annual_validity_from_month_counts(the_year, per_month)


def annual_validity_from_month_counts(year: int, days_per_month: Sequence[int]) -> AnnualValidity:
    """`annual_mean_valid` from the count of valid daily means in each month (January first)."""
    if len(days_per_month) != 12:
        raise ValueError(f"expected 12 monthly day counts, got {len(days_per_month)}")
    counts = tuple(int(c) for c in days_per_month)
    short = tuple(m for m in range(1, 13) if counts[m - 1] < _min_days_in_month(m))
    total = sum(counts)
    valid = total >= MIN_VALID_DAYS_PER_YEAR and not short
    return AnnualValidity(year, total, counts, short, valid)


# --- helpers --------------------------------------------------------------------------------------


def _min_days_in_month(month: int) -> int:
    return MIN_VALID_DAYS_FEBRUARY if month == 2 else MIN_VALID_DAYS_PER_MONTH


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"value {value!r} is not a number") from None


def _split_minute_data(
    minute_values: Iterable[tuple[float | None, str]] | Sequence[float | None] | np.ndarray,
    flags: Sequence[str] | np.ndarray | None,
) -> tuple[Sequence[float | None], Sequence[str]]:
    if flags is not None:
        values = list(minute_values)  # type: ignore[arg-type]
        flag_list = [str(f) for f in flags]
        if len(values) != len(flag_list):
            raise ValueError(f"{len(values)} minute values but {len(flag_list)} flags")
        return values, flag_list
    if isinstance(minute_values, np.ndarray) and minute_values.dtype.kind in "fiu":
        if minute_values.ndim != 1:
            raise ValueError(f"minute values must be one-dimensional, got shape {minute_values.shape}")
        return minute_values.tolist(), ["N"] * len(minute_values)
    values, flag_list = [], []
    for item in minute_values:
        try:
            value, flag = item  # type: ignore[misc]
        except (TypeError, ValueError):
            raise ValueError(f"minute datum {item!r} is not a (value, flag) pair") from None
        values.append(value)
        flag_list.append(str(flag))
    return values, flag_list
