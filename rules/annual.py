"""Annual ambient-air statistics of one station (or area) per HJ 663-2013, GB 3095 and HJ 633.

Source: `reference/air-validity.md` §2 (validity), §4 (annual items), §5 (percentile), §6 (good-day
ratio, exceedance multiple, composite index), §7 (rounding), §8 (2026 revision).

Input is a year of **daily values**, already validated by `rules.validity` (a daily value that
missed its minimum is ``None``/NaN): the 24-hour means of SO2, NO2, CO, PM10, PM2.5, the O3 daily
maximum 8-hour mean (MDA8) and, for the HJ 633-2012 daily AQI, the O3 daily maximum 1-hour mean.

What is computed:
- **Valid days** (the denominator of the good-day ratio): days with a valid daily AQI. Policy: a
  day is valid when every indicator of its edition's daily AQI (`rules.aqi.daily_aqi`; 7 in
  HJ 633-2012, 6 in HJ 633-2026) holds a valid daily value, i.e. the daily report has no
  ``missing`` indicator. Days that HJ 633-2026 §5.3 publishes with an indicator missing (AQI
  > 100) are **not** counted: their level is only a lower bound. Each day's AQI is judged by the
  edition in force on its date unless ``edition`` is given.
- Days per AQI level (1–6), good days (AQI ≤ 100) and the good-day ratio (优良天数比例, % to
  2 decimals, GB/T 8170), exceedance days (AQI > 100) and their ratio, heavy-pollution days
  (AQI > 200), primary-pollutant day counts (a tie counts for each pollutant).
- Per pollutant (HJ 663-2013 annual items): annual mean of SO2, NO2, PM10, PM2.5 with its GB 3095
  Table 4 validity (324 days, 27 a month, 25 in February); the HJ 663 percentile of the daily
  values (SO2 and NO2 P98, PM10, PM2.5 and CO P95, O3 MDA8 P90); days over the daily limit;
  exceedance multiples (C − S) / S where C > S; compliance with GB 3095 grade 2.
  Every valid daily value of a pollutant enters its statistics, also on days whose AQI is invalid
  because another pollutant is missing (air-validity.md §2).
- Overall compliance (all six pollutants comply) and the composite index (综合指数,
  环办监测〔2018〕19号) Σ C_i / S_i with its denominators.

Limits: GB 3095 grade 2 of the edition (`rules.validity.gb3095_limits`) in force on the year's
last day, or of ``edition`` when given; for GB 3095-2026 the transition limits until 2030, the final
ones from 2031. The composite-index denominators follow the same limits (2012: 35, 70, 60, 40, 4,
160); the ranking rule's denominators under the 2026 limits were not verified.

Rounding: means and percentiles are computed from unrounded daily values and rounded once, when
reported, by GB/T 8170 to `ANNUAL_REPORT_DIGITS` (integers µg/m³, CO 1 decimal: MEE practice,
digits not verified in either HJ 663 edition; pass ``digits`` to change them). Compliance and
multiples are judged on the reported values. Days over a daily limit compare the daily value
rounded as for the AQI (`rules.aqi.GBT8170_DIGITS`), so they agree with IAQI > 100.

**Not covered for HJ 663-2026** (its text was not available): the three-year moving-average
assessment, the exclusion of exceptional events, and its refined rounding digits (unverified; the
2013 digits are used). HJ 663-2026 is treated as HJ 663-2013 with the GB 3095-2026 limits. The
percentile formula and the O3 MDA8 validity rule are recalled from HJ 663-2013, not re-read.

Two paths give the same figures: `annual_air_statistics` for one station (records or columns;
records go day by day through `rules.aqi.daily_aqi`), and `annual_air_statistics_many` for many
stations at once, vectorised with numpy (`rules.aqi.iaqi_array`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Final

import numpy as np

from rules.aqi import (
    GBT8170_DIGITS,
    HJ633_2012_LEVELS,
    HJ633_2026_LEVELS,
    POLLUTANTS,
    PRIMARY_POLLUTANT_ABOVE_AQI,
    daily_aqi,
    iaqi_array,
)
from rules.editions import Edition, edition_for
from rules.rounding import round_gbt8170, round_gbt8170_array
from rules.validity import AnnualValidity, annual_mean_valid, annual_validity_from_month_counts, gb3095_limits

# --- Tables -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnnualItem:
    """What HJ 663 judges of one pollutant in a year: its daily series (a `DayRecord` field),
    the averaging period of that series in GB 3095, whether an annual mean is judged, and the
    percentile of the daily values that is judged."""

    daily_field: str
    daily_period: str
    has_annual_mean: bool
    percentile: int


# HJ 663-2013 annual assessment items (air-validity.md §4), same list in HJ 663-2026 Table 1.
HJ663_2013_ANNUAL_ITEMS: Final[Mapping[str, AnnualItem]] = {
    "SO2": AnnualItem("so2_ugm3", "24h", True, 98),
    "NO2": AnnualItem("no2_ugm3", "24h", True, 98),
    "PM10": AnnualItem("pm10_ugm3", "24h", True, 95),
    "PM2.5": AnnualItem("pm25_ugm3", "24h", True, 95),
    "CO": AnnualItem("co_mgm3", "24h", False, 95),
    "O3": AnnualItem("o3_8h_ugm3", "8h", False, 90),
}

# Composite index (环办监测〔2018〕19号, air-validity.md §6): which statistic of each pollutant is
# divided by its GB 3095 grade-2 limit of the same averaging time.
COMPOSITE_INDEX_TERMS: Final[Mapping[str, str]] = {
    "PM2.5": "annual_mean",
    "PM10": "annual_mean",
    "SO2": "annual_mean",
    "NO2": "annual_mean",
    "CO": "percentile",
    "O3": "percentile",
}

# Reported decimals of annual means and percentiles (air-validity.md §7: MEE practice, integers
# µg/m³, CO mg/m³ to 1 decimal; HJ 663-2013 and -2026 digits not verified).
ANNUAL_REPORT_DIGITS: Final[Mapping[str, int]] = {
    "SO2": 0, "NO2": 0, "PM10": 0, "PM2.5": 0, "CO": 1, "O3": 0,
}
RATIO_DIGITS: Final[int] = 2  # good-day and exceedance-day ratios, %, GB/T 8170
MULTIPLE_DIGITS: Final[int] = 2  # exceedance multiples and composite index

# air-validity.md §6 / HJ 633 level table: good days are levels I–II, AQI ≤ 100; exceedance days
# AQI > 100; heavy-pollution days AQI > 200 (levels V–VI).
GOOD_DAY_MAX_AQI: Final[int] = HJ633_2012_LEVELS[1].aqi_hi  # type: ignore[assignment]
HEAVY_POLLUTION_ABOVE_AQI: Final[int] = HJ633_2012_LEVELS[3].aqi_hi  # type: ignore[assignment]
AQI_LEVELS: Final[tuple[int, ...]] = tuple(row.level for row in HJ633_2012_LEVELS)

# DayRecord field → `rules.aqi.daily_aqi` key. O3_1h enters only the HJ 633-2012 daily AQI.
DAILY_AQI_KEYS: Final[Mapping[str, str]] = {
    "so2_ugm3": "SO2",
    "no2_ugm3": "NO2",
    "pm10_ugm3": "PM10",
    "pm25_ugm3": "PM2.5",
    "co_mgm3": "CO",
    "o3_8h_ugm3": "O3_8h",
    "o3_1h_ugm3": "O3_1h",
}
# The daily AQI indicators of each edition (HJ 633-2012 daily report: 7; HJ 633-2026: 6, no O3 1 h).
DAILY_AQI_FIELDS: Final[Mapping[Edition, tuple[str, ...]]] = {
    "2012": tuple(DAILY_AQI_KEYS),
    "2026": tuple(f for f in DAILY_AQI_KEYS if f != "o3_1h_ugm3"),
}

# --- Records and results ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayRecord:
    """One station-day of validated daily values; ``None`` = no valid daily value.

    24-hour means of SO2, NO2, PM10, PM2.5 (µg/m³) and CO (mg/m³); the O3 daily max 8-hour mean and
    the O3 daily max 1-hour mean (µg/m³; the latter only enters the HJ 633-2012 daily AQI).
    """

    date: dt.date
    so2_ugm3: float | None = None
    no2_ugm3: float | None = None
    pm10_ugm3: float | None = None
    pm25_ugm3: float | None = None
    co_mgm3: float | None = None
    o3_8h_ugm3: float | None = None
    o3_1h_ugm3: float | None = None


DAY_VALUE_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(DayRecord) if f.name != "date")


@dataclass(frozen=True, slots=True)
class PollutantAnnual:
    """One pollutant's annual figures (µg/m³, CO mg/m³), as reported (rounded, see module doc).

    ``annual_mean`` and its ``annual_mean_validity`` are ``None`` for CO and O3 (no annual mean
    is judged). ``percentile`` is the HJ 663 percentile ``percentile_p`` of the daily values.
    Multiples are ``None`` unless the figure exceeds its limit. ``complies`` is ``None`` when a
    judged statistic is missing or its annual mean is invalid (GB 3095 Table 4).
    """

    pollutant: str
    valid_days: int
    annual_mean: float | None
    annual_mean_validity: AnnualValidity | None
    percentile_p: int
    percentile: float | None
    annual_limit: float | None
    daily_limit: float
    exceedance_days: int
    annual_mean_multiple: float | None
    percentile_multiple: float | None
    complies: bool | None


@dataclass(frozen=True, slots=True)
class AnnualAirStatistics:
    """A station's (or area's) annual air statistics. Ratios in %, 2 decimals (GB/T 8170).

    ``days_per_level`` maps AQI level 1–6 to days; ``primary_pollutant_days`` maps a pollutant to
    the valid days it was (one of) the primary pollutant(s). Ratios are ``None`` with no valid day.
    ``composite_index`` is ``None`` unless all six terms exist; ``composite_terms`` holds the single
    indices C_i / S_i (2 decimals), ``composite_denominators`` the S_i.
    """

    year: int
    edition: Edition
    valid_days: int
    days_per_level: dict[int, int]
    good_days: int
    good_day_ratio_pct: float | None
    exceedance_days: int
    exceedance_day_ratio_pct: float | None
    heavy_pollution_days: int
    primary_pollutant_days: dict[str, int]
    pollutants: dict[str, PollutantAnnual]
    composite_index: float | None
    composite_terms: dict[str, float]
    composite_denominators: dict[str, float]
    complies: bool | None


# --- Percentile ---------------------------------------------------------------------------------


def percentile_hj663(values: Iterable[float | None] | np.ndarray, p: float) -> float:
    """The p-th percentile of the valid values by HJ 663-2013 (air-validity.md §5).

    Sort ascending X(1) ≤ … ≤ X(n); k = 1 + (n − 1)·p/100, s = ⌊k⌋;
    m_p = X(s) + (X(s+1) − X(s))·(k − s), or X(n) when s = n. This is numpy's ``linear``
    (Hyndman–Fan type 7). ``None``/NaN values are not part of the sample. Raises ``ValueError`` for
    p outside 0–100 or no valid value.
    """
    _require_percentile(p)
    xs = sorted(float(v) for v in values if v is not None and not math.isnan(v))
    n = len(xs)
    if n == 0:
        raise ValueError(f"P{p} of no valid value is undefined")
    k = 1 + (n - 1) * p / 100
    s = int(k)
    if s >= n:
        return xs[n - 1]
    return xs[s - 1] + (xs[s] - xs[s - 1]) * (k - s)


def percentile_hj663_many(values: np.ndarray, p: float) -> np.ndarray:
    """`percentile_hj663` of each row of a 2-D array (stations × days); NaN = not in the sample.

    Returns one float per row, NaN for a row without valid values. Same arithmetic as the scalar
    function, so the results are equal, not just close.
    """
    _require_percentile(p)
    x = np.sort(np.asarray(values, dtype=np.float64), axis=-1)  # NaN sorts last
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array (stations × days), got shape {x.shape}")
    n = np.count_nonzero(~np.isnan(x), axis=-1)
    k = 1 + (n - 1) * p / 100
    s = np.floor(k).astype(np.intp)
    lo_index = np.clip(s - 1, 0, None)
    hi_index = np.clip(np.minimum(s, n - 1), 0, None)
    lo = np.take_along_axis(x, lo_index[:, None], axis=-1)[:, 0]
    hi = np.take_along_axis(x, hi_index[:, None], axis=-1)[:, 0]
    out = np.where(s >= n, lo, lo + (hi - lo) * (k - s))
    out[n == 0] = np.nan
    return out


# --- Annual statistics --------------------------------------------------------------------------


def annual_air_statistics(
    days: Sequence[DayRecord] | Mapping[str, Sequence],
    edition: str | int | None = None,
    year: int | None = None,
    *,
    digits: Mapping[str, int] | None = None,
) -> AnnualAirStatistics:
    """The annual air statistics of one station from a year of daily values.

    ``days``: `DayRecord`s (any order, one per date), or columns: a mapping with ``"date"`` and
    any of `DAY_VALUE_FIELDS` (NaN or ``None`` = no valid value); columns go through the
    vectorised path. Absent days are simply not valid. ``edition`` forces one edition for every
    day and for the limits; otherwise each day's AQI follows its date and the limits the year's
    last day. ``year`` defaults to the year of the dates. ``digits`` overrides
    `ANNUAL_REPORT_DIGITS`. Raises ``ValueError`` for dates of several years, a date given twice,
    or a negative concentration.
    """
    if isinstance(days, Mapping):
        if "date" not in days:
            raise ValueError("daily columns need a 'date' column labelling the days")
        dates = list(days["date"])
        columns = {f: np.asarray([np.nan if v is None else v for v in days[f]], dtype=np.float64)[None, :]
                   for f in DAY_VALUE_FIELDS if f in days}
        return annual_air_statistics_many(columns, dates, edition, year, digits=digits)[0]
    records = sorted(days, key=lambda r: r.date)
    the_year = _year_of([r.date for r in records], year)
    if len({r.date for r in records}) != len(records):
        raise ValueError("a date is given twice: one record per day")
    limits = gb3095_limits(edition, dt.date(the_year, 12, 31))
    levels = dict.fromkeys(AQI_LEVELS, 0)
    primary = dict.fromkeys(POLLUTANTS, 0)
    for record in records:
        report = daily_aqi(
            {key: getattr(record, f) for f, key in DAILY_AQI_KEYS.items()}, edition, record.date
        )
        if report.aqi is None or report.missing:
            continue
        levels[report.level] += 1  # type: ignore[index]
        for pollutant in report.primary or ():
            primary[pollutant] += 1
    report_digits = _report_digits(digits)
    raw: dict[str, _RawPollutant] = {}
    for pollutant, item in HJ663_2013_ANNUAL_ITEMS.items():
        reported = report_digits[pollutant]
        pairs = [(r.date, getattr(r, item.daily_field)) for r in records]
        pairs = [(day, float(v)) for day, v in pairs if v is not None and not math.isnan(v)]
        values = [v for _, v in pairs]
        daily_digits = GBT8170_DIGITS[pollutant]
        daily_limit = limits[(pollutant, item.daily_period)]
        raw[pollutant] = _RawPollutant(
            valid_days=len(values),
            mean=round_gbt8170(math.fsum(values) / len(values), reported) if values and item.has_annual_mean else None,
            validity=annual_mean_valid([day for day, _ in pairs], the_year) if item.has_annual_mean else None,
            percentile=round_gbt8170(percentile_hj663(values, item.percentile), reported) if values else None,
            exceedance_days=sum(round_gbt8170(v, daily_digits) > daily_limit for v in values),
        )
    return _assemble(the_year, edition, limits, levels, primary, raw)


def annual_air_statistics_many(
    columns: Mapping[str, np.ndarray],
    dates: Sequence[dt.date],
    edition: str | int | None = None,
    year: int | None = None,
    *,
    digits: Mapping[str, int] | None = None,
) -> list[AnnualAirStatistics]:
    """The annual air statistics of many stations at once (the vectorised path).

    ``columns`` maps `DAY_VALUE_FIELDS` names to float arrays of shape (stations, days) — a 1-D
    array is one station — with NaN for no valid value; an absent field is all NaN. ``dates``
    labels the day columns (distinct, one year). Other arguments as in `annual_air_statistics`,
    whose figures these equal station for station.
    """
    the_year = _year_of(dates, year)
    if len(set(dates)) != len(dates):
        raise ValueError("a date is given twice: one column per day")
    n_days = len(dates)
    arrays: dict[str, np.ndarray] = {}
    for name, array in columns.items():
        if name not in DAY_VALUE_FIELDS:
            raise ValueError(f"unknown daily column {name!r}: expected some of {', '.join(DAY_VALUE_FIELDS)}")
        a = np.asarray(array, dtype=np.float64)
        a = a[None, :] if a.ndim == 1 else a
        if a.ndim != 2 or a.shape[1] != n_days:
            raise ValueError(f"column {name} has shape {np.shape(array)}, expected (stations, {n_days})")
        arrays[name] = a
    n_stations = next(iter(arrays.values())).shape[0] if arrays else 1
    for name in DAY_VALUE_FIELDS:
        arrays.setdefault(name, np.full((n_stations, n_days), np.nan))
        if arrays[name].shape[0] != n_stations:
            raise ValueError(f"column {name} has {arrays[name].shape[0]} stations, expected {n_stations}")

    limits = gb3095_limits(edition, dt.date(the_year, 12, 31))
    level_counts, primary_counts = _daily_aqi_many(arrays, dates, edition)
    report_digits = _report_digits(digits)

    month = np.array([d.month for d in dates])
    month_onehot = (month[:, None] == np.arange(1, 13)[None, :]).astype(np.int64)
    per_pollutant: dict[str, dict[str, np.ndarray]] = {}
    for pollutant, item in HJ663_2013_ANNUAL_ITEMS.items():
        values = arrays[item.daily_field]
        valid = ~np.isnan(values)
        n = valid.sum(axis=1)
        rounded = round_gbt8170_array(values, GBT8170_DIGITS[pollutant])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(valid, values, 0.0).sum(axis=1) / n
        reported = report_digits[pollutant]
        per_pollutant[pollutant] = {
            "n": n,
            "mean": round_gbt8170_array(mean, reported),
            "per_month": valid.astype(np.int64) @ month_onehot,
            "percentile": round_gbt8170_array(percentile_hj663_many(values, item.percentile), reported),
            "exceed": (rounded > limits[(pollutant, item.daily_period)]).sum(axis=1),
        }

    results = []
    for i in range(n_stations):
        raw: dict[str, _RawPollutant] = {}
        for pollutant, item in HJ663_2013_ANNUAL_ITEMS.items():
            cols = per_pollutant[pollutant]
            n_valid = int(cols["n"][i])
            raw[pollutant] = _RawPollutant(
                valid_days=n_valid,
                mean=float(cols["mean"][i]) if n_valid and item.has_annual_mean else None,
                validity=annual_validity_from_month_counts(the_year, cols["per_month"][i]) if item.has_annual_mean else None,
                percentile=float(cols["percentile"][i]) if n_valid else None,
                exceedance_days=int(cols["exceed"][i]),
            )
        levels = {level: int(level_counts[i, level - 1]) for level in AQI_LEVELS}
        primary = {p: int(primary_counts[p][i]) for p in POLLUTANTS}
        results.append(_assemble(the_year, edition, limits, levels, primary, raw))
    return results


def exceedance_multiple(concentration: float, limit: float) -> float | None:
    """超标倍数 (C − S) / S, unrounded; ``None`` when C does not exceed S (air-validity.md §6)."""
    return (concentration - limit) / limit if concentration > limit else None


# --- Helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RawPollutant:
    """One pollutant's figures as computed by a path; mean and percentile already reported."""

    valid_days: int
    mean: float | None
    validity: AnnualValidity | None
    percentile: float | None
    exceedance_days: int


def _require_percentile(p: float) -> None:
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p!r} is outside 0–100")


def _year_of(dates: Iterable[dt.date], year: int | None) -> int:
    years = {d.year for d in dates} | ({year} if year is not None else set())
    if len(years) != 1:
        raise ValueError(
            f"daily values span years {sorted(years)}: give one calendar year" if years
            else "no daily values and no year: cannot tell which year to assess"
        )
    return years.pop()


def _daily_aqi_many(
    arrays: Mapping[str, np.ndarray], dates: Sequence[dt.date], edition: str | int | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Days per AQI level (stations × 6) and primary-pollutant days (per pollutant, stations).

    The daily AQI is the one `rules.aqi.daily_aqi` gives (same IAQIs via `iaqi_array`); a day
    counts only when all of its edition's indicators hold a value (see the module doc).
    """
    n_stations = next(iter(arrays.values())).shape[0]
    level_counts = np.zeros((n_stations, len(AQI_LEVELS)), dtype=np.int64)
    primary = {p: np.zeros(n_stations, dtype=np.int64) for p in POLLUTANTS}
    day_editions = np.array([edition_for(edition, d) for d in dates])
    for ed in np.unique(day_editions):
        cols = day_editions == ed
        subs: dict[str, np.ndarray] = {}
        complete = np.ones((n_stations, int(cols.sum())), dtype=bool)
        for f in DAILY_AQI_FIELDS[ed]:  # type: ignore[index]
            values = arrays[f][:, cols]
            complete &= ~np.isnan(values)
            pollutant, period = _pollutant_period(DAILY_AQI_KEYS[f])
            subs[f] = iaqi_array(pollutant, period, values, ed)
        # HJ 633-2012: an O3 8 h above 800 gives no IAQI (NaN) and falls back to the O3 1 h IAQI,
        # itself an indicator of the same report, so the NaN-ignoring maximum is the daily AQI.
        aqi = np.fmax.reduce(list(subs.values()))
        table = HJ633_2012_LEVELS if ed == "2012" else HJ633_2026_LEVELS
        upper = np.array([row.aqi_hi for row in table[:-1]], dtype=np.float64)
        level_index = np.searchsorted(upper, np.where(complete, aqi, 0.0), side="left")
        for j in range(len(AQI_LEVELS)):
            level_counts[:, j] += ((level_index == j) & complete).sum(axis=1)
        has_primary = complete & (aqi > PRIMARY_POLLUTANT_ABOVE_AQI)
        is_primary = {p: np.zeros(aqi.shape, dtype=bool) for p in POLLUTANTS}
        for f, sub in subs.items():
            is_primary[_pollutant_period(DAILY_AQI_KEYS[f])[0]] |= sub == aqi
        for p in POLLUTANTS:
            primary[p] += (is_primary[p] & has_primary).sum(axis=1)
    return level_counts, primary


def _pollutant_period(key: str) -> tuple[str, str]:
    """`rules.aqi.daily_aqi` key → (pollutant, breakpoint column): ``O3_8h`` → (O3, 8h)."""
    pollutant, _, period = key.partition("_")
    return pollutant, period or "24h"


def _assemble(
    year: int,
    edition: str | int | None,
    limits: Mapping[tuple[str, str], float],
    levels: dict[int, int],
    primary: dict[str, int],
    raw: Mapping[str, _RawPollutant],
) -> AnnualAirStatistics:
    """Judge and package the figures both paths computed (means and percentiles as reported)."""
    valid_days = sum(levels.values())
    good = sum(n for level, n in levels.items() if level <= _GOOD_LEVEL_MAX)
    heavy = sum(n for level, n in levels.items() if level > _HEAVY_LEVEL_ABOVE)
    exceed = valid_days - good

    pollutants: dict[str, PollutantAnnual] = {}
    for pollutant, item in HJ663_2013_ANNUAL_ITEMS.items():
        r = raw[pollutant]
        daily_limit = limits[(pollutant, item.daily_period)]
        annual_limit = limits[(pollutant, "annual")] if item.has_annual_mean else None
        mean, pct = r.mean, r.percentile
        judged = [(pct, daily_limit)] + ([(mean, annual_limit)] if item.has_annual_mean else [])
        complies: bool | None
        if any(value is None for value, _ in judged) or (r.validity is not None and not r.validity.valid):
            complies = None
        else:
            complies = all(value <= limit for value, limit in judged)  # type: ignore[operator]
        pollutants[pollutant] = PollutantAnnual(
            pollutant=pollutant,
            valid_days=r.valid_days,
            annual_mean=mean,
            annual_mean_validity=r.validity,
            percentile_p=item.percentile,
            percentile=pct,
            annual_limit=annual_limit,
            daily_limit=daily_limit,
            exceedance_days=r.exceedance_days,
            annual_mean_multiple=_rounded_multiple(mean, annual_limit),
            percentile_multiple=_rounded_multiple(pct, daily_limit),
            complies=complies,
        )

    verdicts = [p.complies for p in pollutants.values()]
    overall = False if False in verdicts else (None if None in verdicts else True)

    denominators: dict[str, float] = {}
    terms: dict[str, float] = {}
    unrounded_sum = 0.0
    for pollutant, statistic in COMPOSITE_INDEX_TERMS.items():
        figure = pollutants[pollutant]
        value = figure.annual_mean if statistic == "annual_mean" else figure.percentile
        denominators[pollutant] = figure.annual_limit if statistic == "annual_mean" else figure.daily_limit  # type: ignore[assignment]
        if value is not None:
            single = value / denominators[pollutant]
            terms[pollutant] = round_gbt8170(single, MULTIPLE_DIGITS)
            unrounded_sum += single
    composite = round_gbt8170(unrounded_sum, MULTIPLE_DIGITS) if len(terms) == len(COMPOSITE_INDEX_TERMS) else None

    return AnnualAirStatistics(
        year=year,
        edition=edition_for(edition, dt.date(year, 12, 31)),
        valid_days=valid_days,
        days_per_level=levels,
        good_days=good,
        good_day_ratio_pct=_ratio_pct(good, valid_days),
        exceedance_days=exceed,
        exceedance_day_ratio_pct=_ratio_pct(exceed, valid_days),
        heavy_pollution_days=heavy,
        primary_pollutant_days=primary,
        pollutants=pollutants,
        composite_index=composite,
        composite_terms=terms,
        composite_denominators=denominators,
        complies=overall,
    )


def _report_digits(digits: Mapping[str, int] | None) -> dict[str, int]:
    return {**ANNUAL_REPORT_DIGITS, **(digits or {})}


def _level_of(aqi: int) -> int:
    """The level whose upper AQI bound is ``aqi`` (same in both editions above level I)."""
    return next(row.level for row in HJ633_2012_LEVELS if row.aqi_hi == aqi)


_GOOD_LEVEL_MAX: Final[int] = _level_of(GOOD_DAY_MAX_AQI)
_HEAVY_LEVEL_ABOVE: Final[int] = _level_of(HEAVY_POLLUTION_ABOVE_AQI)


def _ratio_pct(days: int, valid_days: int) -> float | None:
    return round_gbt8170(days / valid_days * 100, RATIO_DIGITS) if valid_days else None


def _rounded_multiple(value: float | None, limit: float | None) -> float | None:
    if value is None or limit is None:
        return None
    multiple = exceedance_multiple(value, limit)
    return round_gbt8170(multiple, MULTIPLE_DIGITS) if multiple is not None else None
