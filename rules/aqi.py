"""Air quality index (AQI) by HJ 633-2012 and HJ 633-2026 (`reference/air-aqi.md`).

Every sub-index (IAQI) is computed the same way in both editions:

1. **Round the concentration by GB/T 8170** (half to even on the decimal digits): µg/m³ to
   integers, CO (mg/m³) to one decimal. HJ 633-2026 4.2.2 mandates it; HJ 633-2012 says nothing,
   and ecopark applies the same rounding to 2012 data too (HJ 663 / GB/T 8170 evaluation practice,
   air-aqi.md §2), so one reading never gets two IAQIs for a rounding reason.
2. **Interpolate exactly** between the two bracketing breakpoints (air-aqi.md §1) with
   ``fractions.Fraction``: 100 exactly stays 100, never 100.00000000001 (floats get CO 2.2 mg/m³
   wrong: 55.000000000000007 → 56 instead of 55). Rounded concentrations are whole reporting
   steps, so each column's IAQIs are computed exactly once per step, 0 … top (at most 3,841
   values), into a lookup table that ``iaqi`` and ``iaqi_array`` both read: the two agree by
   construction and the vectorised path needs no interpolation at all.
3. **Round up** to an integer (HJ 633-2012 6.2, HJ 633-2026 4.2.6).

Decisions the standard leaves to us (each one stated where it is implemented):

- **Above the top breakpoint (IAQI 500)** neither edition defines a value (air-aqi.md §5):
  ``iaqi`` returns the top IAQI (500) and the report lists the indicator in
  ``AqiResult.beyond_index`` so a display can say "> 500".
- **HJ 633-2012, SO2 1 h > 800 µg/m³ and O3 8 h > 800 µg/m³**: ``iaqi`` returns ``None`` (no IAQI
  from that value). The reports apply the standard's fallbacks: SO2 takes the IAQI of ``SO2_24h``,
  O3 8 h takes the O3 1 h IAQI. HJ 633-2026 fixes them at 200 and 300 instead.
- **PM10 / PM2.5 1 h in HJ 633-2012** have no breakpoints: ``iaqi(..., "1h", edition="2012")`` is
  ``None``. The 2012 real-time report takes PM from the 24 h moving means (``pm_realtime=
  "24h_moving"``) or interpolates the 1 h values on the 24 h breakpoints (``"1h_on_24h_bp"``,
  which is the 2026 rule). HJ 633-2026 interpolates 1 h PM on the daily breakpoints (Table 3).
- An all-zero reading gives AQI 0, classed as level I even though HJ 633-2026 4.1.1 states the
  range as 1–500.

Units everywhere: µg/m³, except CO in mg/m³. HJ 212 codes only name the pollutant; converting a
reading to these units is ingest's job (``park.parameters``).
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cache
from types import MappingProxyType
from typing import Final, Literal

import numpy as np

from park.parameters import parameter
from rules.editions import Edition, edition_for
from rules.rounding import round_gbt8170, round_gbt8170_array

Pollutant = Literal["SO2", "NO2", "PM10", "PM2.5", "CO", "O3"]
Period = Literal["1h", "8h", "24h"]
Breakpoints = tuple[tuple[float, int], ...]  # (concentration, IAQI), rising

POLLUTANTS: Final[tuple[Pollutant, ...]] = ("SO2", "NO2", "PM10", "PM2.5", "CO", "O3")
PERIODS: Final[tuple[Period, ...]] = ("1h", "8h", "24h")
PM_REALTIME_METHODS: Final[tuple[str, ...]] = ("24h_moving", "1h_on_24h_bp")

# --- Tables -------------------------------------------------------------------------------------

# HJ 633-2012 Table 1 (air-aqi.md §3). Units µg/m³, CO mg/m³. 1 h SO2/NO2/CO columns serve the
# real-time report only (note 1). SO2 1 h stops at 800 (note 2), O3 8 h at 800 (note 3).
# There are no 1 h PM breakpoints in 2012.
HJ633_2012_BREAKPOINTS: Final[Mapping[tuple[str, str], Breakpoints]] = MappingProxyType({
    ("SO2", "24h"): ((0, 0), (50, 50), (150, 100), (475, 150), (800, 200), (1600, 300), (2100, 400), (2620, 500)),
    ("SO2", "1h"): ((0, 0), (150, 50), (500, 100), (650, 150), (800, 200)),
    ("NO2", "24h"): ((0, 0), (40, 50), (80, 100), (180, 150), (280, 200), (565, 300), (750, 400), (940, 500)),
    ("NO2", "1h"): ((0, 0), (100, 50), (200, 100), (700, 150), (1200, 200), (2340, 300), (3090, 400), (3840, 500)),
    ("PM10", "24h"): ((0, 0), (50, 50), (150, 100), (250, 150), (350, 200), (420, 300), (500, 400), (600, 500)),
    ("CO", "24h"): ((0, 0), (2, 50), (4, 100), (14, 150), (24, 200), (36, 300), (48, 400), (60, 500)),
    ("CO", "1h"): ((0, 0), (5, 50), (10, 100), (35, 150), (60, 200), (90, 300), (120, 400), (150, 500)),
    ("O3", "1h"): ((0, 0), (160, 50), (200, 100), (300, 150), (400, 200), (800, 300), (1000, 400), (1200, 500)),
    ("O3", "8h"): ((0, 0), (100, 50), (160, 100), (215, 150), (265, 200), (800, 300)),
    ("PM2.5", "24h"): ((0, 0), (35, 50), (75, 100), (115, 150), (150, 200), (250, 300), (350, 400), (500, 500)),
})

# HJ 633-2026 Table 3 (air-aqi.md §4): the 2012 table with PM10 150→120 and PM2.5 75→60 at IAQI 100.
_PM10_2026_DAILY: Final[Breakpoints] = (
    (0, 0), (50, 50), (120, 100), (250, 150), (350, 200), (420, 300), (500, 400), (600, 500))
_PM25_2026_DAILY: Final[Breakpoints] = (
    (0, 0), (35, 50), (60, 100), (115, 150), (150, 200), (250, 300), (350, 400), (500, 500))
HJ633_2026_BREAKPOINTS: Final[Mapping[tuple[str, str], Breakpoints]] = MappingProxyType({
    **{key: bps for key, bps in HJ633_2012_BREAKPOINTS.items() if key[0] not in ("PM10", "PM2.5")},
    ("PM10", "24h"): _PM10_2026_DAILY,
    ("PM2.5", "24h"): _PM25_2026_DAILY,
    # Table 3 note: real-time PM 1 h values take BP_Hi/BP_Lo from the daily columns.
    ("PM10", "1h"): _PM10_2026_DAILY,
    ("PM2.5", "1h"): _PM25_2026_DAILY,
})

# What a concentration above a column's last breakpoint gets. ``None``: no IAQI from it.
# HJ 633-2012 Table 1 notes 2 and 3: SO2 1 h > 800 and O3 8 h > 800 give no IAQI (the reports fall
# back to SO2 24 h and O3 1 h). HJ 633-2026 Table 3 notes b and c: fixed IAQIs 200 and 300.
# Every other column: capped at its last IAQI (500) and flagged "beyond index" (our choice, §5).
HJ633_2012_ABOVE_TOP: Final[Mapping[tuple[str, str], int | None]] = MappingProxyType({
    ("SO2", "1h"): None,
    ("O3", "8h"): None,
})
HJ633_2026_ABOVE_TOP: Final[Mapping[tuple[str, str], int | None]] = MappingProxyType({
    ("SO2", "1h"): 200,
    ("O3", "8h"): 300,
})

# GB/T 8170 decimals for concentrations, HJ 633-2026 4.2.2 (applied to 2012 data as well):
# µg/m³ to integers, CO mg/m³ to one decimal.
GBT8170_DIGITS: Final[Mapping[str, int]] = MappingProxyType({
    "SO2": 0, "NO2": 0, "PM10": 0, "PM2.5": 0, "CO": 1, "O3": 0,
})


@dataclass(frozen=True, slots=True)
class AqiLevel:
    """One row of the AQI level table: AQI range (``aqi_hi`` None = open), names and colour."""

    level: int
    aqi_lo: int
    aqi_hi: int | None
    category: str
    category_en: str  # customary MEE/CNEMC translation, not in the standard
    color: str


# HJ 633-2012 Table 2 and Appendix A; HJ 633-2026 states level I as 1–50 (4.1.1, range 1–500),
# colours identical in both Appendix A (air-aqi.md §5).
HJ633_2012_LEVELS: Final[tuple[AqiLevel, ...]] = (
    AqiLevel(1, 0, 50, "优", "Excellent", "#00E400"),
    AqiLevel(2, 51, 100, "良", "Good", "#FFFF00"),
    AqiLevel(3, 101, 150, "轻度污染", "Lightly polluted", "#FF7E00"),
    AqiLevel(4, 151, 200, "中度污染", "Moderately polluted", "#FF0000"),
    AqiLevel(5, 201, 300, "重度污染", "Heavily polluted", "#99004C"),
    AqiLevel(6, 301, None, "严重污染", "Severely polluted", "#7E0023"),
)
HJ633_2026_LEVELS: Final[tuple[AqiLevel, ...]] = (
    AqiLevel(1, 1, 50, "优", "Excellent", "#00E400"),
    *HJ633_2012_LEVELS[1:],
)

# Primary pollutant (首要污染物), both editions: only when AQI > 50 (the top of level I).
PRIMARY_POLLUTANT_ABOVE_AQI: Final[int] = HJ633_2012_LEVELS[0].aqi_hi  # type: ignore[assignment]
# Exceedance pollutant (超标污染物), HJ 633-2012 only: IAQI > 100 (GB 3095 grade-2 limit).
HJ633_2012_EXCEEDANCE_ABOVE_IAQI: Final[int] = 100
# HJ 633-2026 5.3: with an indicator missing, an AQI above 100 is still published; otherwise NA.
HJ633_2026_MISSING_PUBLISH_ABOVE_AQI: Final[int] = 100


# Indicators of each report: (mapping key, pollutant, breakpoint column). A bare pollutant key is
# the report's own averaging (1 h real-time, 24 h daily); other averagings carry a suffix.
@dataclass(frozen=True, slots=True)
class _Indicator:
    key: str
    pollutant: Pollutant
    period: Period


# HJ 633-2012 real-time report (air-aqi.md §7): SO2, NO2, CO, O3 1 h; O3 8 h moving; PM per
# ``pm_realtime``. All computed sub-indices enter the maximum (the 2012 text lists all 9 inputs).
_REALTIME_2012_COMMON: Final[tuple[_Indicator, ...]] = (
    _Indicator("SO2", "SO2", "1h"),
    _Indicator("NO2", "NO2", "1h"),
    _Indicator("CO", "CO", "1h"),
    _Indicator("O3", "O3", "1h"),
    _Indicator("O3_8h", "O3", "8h"),
)
_REALTIME_INDICATORS: Final[Mapping[tuple[Edition, str], tuple[_Indicator, ...]]] = MappingProxyType({
    ("2012", "24h_moving"): _REALTIME_2012_COMMON + (
        _Indicator("PM10_24h", "PM10", "24h"),
        _Indicator("PM2.5_24h", "PM2.5", "24h"),
    ),
    ("2012", "1h_on_24h_bp"): _REALTIME_2012_COMMON + (
        _Indicator("PM10", "PM10", "24h"),
        _Indicator("PM2.5", "PM2.5", "24h"),
    ),
    # HJ 633-2026 real-time report: the six 1 h values (PM on daily breakpoints via the table).
    ("2026", "any"): (
        _Indicator("SO2", "SO2", "1h"),
        _Indicator("NO2", "NO2", "1h"),
        _Indicator("PM10", "PM10", "1h"),
        _Indicator("PM2.5", "PM2.5", "1h"),
        _Indicator("CO", "CO", "1h"),
        _Indicator("O3", "O3", "1h"),
    ),
})
_DAILY_INDICATORS: Final[Mapping[Edition, tuple[_Indicator, ...]]] = MappingProxyType({
    # HJ 633-2012 daily report: 7 indicators, O3 daily max 1 h and daily max 8 h.
    "2012": (
        _Indicator("SO2", "SO2", "24h"),
        _Indicator("NO2", "NO2", "24h"),
        _Indicator("PM10", "PM10", "24h"),
        _Indicator("PM2.5", "PM2.5", "24h"),
        _Indicator("CO", "CO", "24h"),
        _Indicator("O3_1h", "O3", "1h"),
        _Indicator("O3_8h", "O3", "8h"),
    ),
    # HJ 633-2026 daily report: 6 indicators, O3 daily max 8 h only.
    "2026": (
        _Indicator("SO2", "SO2", "24h"),
        _Indicator("NO2", "NO2", "24h"),
        _Indicator("PM10", "PM10", "24h"),
        _Indicator("PM2.5", "PM2.5", "24h"),
        _Indicator("CO", "CO", "24h"),
        _Indicator("O3_8h", "O3", "8h"),
    ),
})
# HJ 633-2012 Table 1 notes 2 and 3: where a column gives no IAQI above its top, the sub-index is
# the one of another averaging of the same pollutant: SO2 1 h → SO2 24 h, O3 8 h → O3 1 h.
_HJ633_2012_FALLBACK_PERIOD: Final[Mapping[tuple[str, str], Period]] = MappingProxyType({
    ("SO2", "1h"): "24h",
    ("O3", "8h"): "1h",
})

# --- Public API ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AqiResult:
    """An AQI report (real-time or daily) for one station and period.

    ``aqi``, ``level``, ``category``, ``category_en``, ``color`` and ``primary`` are ``None`` when
    the report is NA (HJ 633-2026 5.3, or nothing measured). ``iaqi`` maps the indicator key (as in
    the input mapping, canonical spelling, e.g. ``"PM2.5"``, ``"O3_8h"``) to its sub-index.
    ``primary`` and ``exceeding`` hold pollutant names in the order of ``POLLUTANTS``.
    ``missing`` lists the report's indicators that had no value; ``beyond_index`` those whose
    concentration lay above the top breakpoint (their IAQI, and maybe the AQI, is capped at 500).
    """

    aqi: int | None
    level: int | None
    category: str | None
    category_en: str | None
    color: str | None
    primary: tuple[str, ...] | None
    iaqi: dict[str, int] = field(hash=False)
    exceeding: tuple[str, ...]
    edition: Edition
    missing: tuple[str, ...] = ()
    beyond_index: tuple[str, ...] = ()


def iaqi(
    pollutant: str,
    concentration: float,
    period: str,
    edition: str | int | None = None,
    when: dt.date | dt.datetime | None = None,
) -> int | None:
    """The individual air quality index of one concentration (µg/m³; CO mg/m³).

    ``pollutant`` is a name (``PM2.5``) or HJ 212 code (``a34004``); ``period`` is ``1h``, ``8h``
    (O3) or ``24h``. The edition is ``edition`` if given, else the one in force on ``when``.
    Returns ``None`` where the edition defines no IAQI: 2012 SO2 1 h or O3 8 h above 800, and
    2012 PM 1 h. Above the top breakpoint of any other column: the top IAQI (500).
    """
    ed = edition_for(edition, when)
    name = _pollutant(pollutant)
    per = _period(name, period)
    return _iaqi_of_steps(ed, name, per, _reporting_steps(name, concentration))[0]


def iaqi_array(pollutant: str, period: str, values: np.ndarray, edition: str | int) -> np.ndarray:
    """Vectorised :func:`iaqi`: float64 array of IAQIs, NaN where ``iaqi`` gives ``None``.

    NaN in ``values`` means "no value" and gives NaN; a negative or infinite value raises
    ``ValueError``. Concentrations are rounded to reporting steps and each step's IAQI is read from
    the same exact lookup table as ``iaqi``, so results equal ``iaqi`` element for element, with
    one known exception for CO: ``rules.rounding.round_gbt8170_array`` takes a float within about
    1e-12 of an x.x5 tie as the tie (0.8500000000000001 → 0.8, where ``iaqi`` says 0.9). CO as
    monitors report it (a few decimals) is unaffected; µg/m³ pollutants are exact for all floats.
    """
    ed = edition_for(edition)
    name = _pollutant(pollutant)
    per = _period(name, period)
    x = np.asarray(values, dtype=np.float64)
    if (x < 0).any():
        raise ValueError(f"{name} concentrations must not be negative (minimum {np.nanmin(x)!r})")
    if np.isinf(x).any():
        raise ValueError(f"{name} concentrations must be finite (found an infinite value)")
    lookup = _lookup_table(ed, name, per)
    if lookup is None:
        return np.full(x.shape, np.nan)
    digits = GBT8170_DIGITS[name]
    # Integer multiple of the reporting step (1 µg/m³, 0.1 mg/m³). For integers np.rint *is*
    # GB/T 8170: a float whose shortest decimal is x.5 is exactly x.5, and any other float lies on
    # the same side of the half as its decimal; 0.1 steps need the decimal-aware helper.
    flat = x.reshape(-1)  # a 0-d input would make the in-place steps below scalars
    steps = np.rint(flat) if digits == 0 else np.rint(round_gbt8170_array(flat, digits) * 10.0**digits)
    above_top, no_value = len(lookup) - 2, len(lookup) - 1
    np.minimum(steps, above_top, out=steps)
    np.nan_to_num(steps, copy=False, nan=no_value)
    return lookup.take(steps.astype(np.intp)).reshape(x.shape)


def realtime_aqi(
    concentrations: Mapping[str, float | None],
    edition: str | int | None = None,
    when: dt.date | dt.datetime | None = None,
    pm_realtime: str = "24h_moving",
) -> AqiResult:
    """The real-time (hourly) AQI report.

    Keys: ``SO2 NO2 PM10 PM2.5 CO O3`` (1 h means; ``O3_1h`` is the same as ``O3``), ``O3_8h``
    (8 h moving mean, 2012 only), ``PM10_24h`` / ``PM2.5_24h`` (24 h moving means, 2012 with
    ``pm_realtime="24h_moving"``), ``SO2_24h`` (2012 fallback when SO2 1 h > 800). HJ 212 codes
    work in place of names. A key the edition's report does not use is ignored; a value of
    ``None`` is missing. ``pm_realtime`` picks the 2012 PM method (ignored for 2026):
    ``"24h_moving"`` (literal 2012 text) or ``"1h_on_24h_bp"`` (1 h values, 24 h breakpoints).
    """
    ed = edition_for(edition, when)
    if pm_realtime not in PM_REALTIME_METHODS:
        raise ValueError(
            f"unknown pm_realtime {pm_realtime!r}: expected one of {', '.join(PM_REALTIME_METHODS)}"
        )
    values = _canonical_inputs(concentrations, native="1h")
    indicators = _REALTIME_INDICATORS[(ed, pm_realtime if ed == "2012" else "any")]
    return _report(ed, indicators, values, native="1h")


def daily_aqi(
    concentrations: Mapping[str, float | None],
    edition: str | int | None = None,
    when: dt.date | dt.datetime | None = None,
) -> AqiResult:
    """The daily AQI report of one natural day.

    Keys: ``SO2 NO2 PM10 PM2.5 CO`` (24 h means), ``O3_8h`` (daily max 8 h moving mean) and, for
    2012, ``O3_1h`` (daily max 1 h mean). A bare ``O3`` is refused as ambiguous. HJ 212 codes work
    in place of names; keys the edition does not use are ignored; ``None`` is missing.
    """
    ed = edition_for(edition, when)
    values = _canonical_inputs(concentrations, native="24h")
    return _report(ed, _DAILY_INDICATORS[ed], values, native="24h")


def aqi_level(aqi: int, edition: str | int) -> tuple[int, str, str, str]:
    """``(level, category, category_en, color)`` of an AQI under ``edition``.

    Level VI is open-ended. AQI 0 (possible only for an all-zero reading) is level I in both
    editions although HJ 633-2026 states the range as 1–500.
    """
    ed = edition_for(edition)
    if isinstance(aqi, bool) or not isinstance(aqi, numbers.Integral) or aqi < 0:
        raise ValueError(f"AQI must be a non-negative integer, got {aqi!r}")
    for row in _LEVELS[ed]:
        if row.aqi_hi is None or aqi <= row.aqi_hi:
            return row.level, row.category, row.category_en, row.color
    raise AssertionError("the level table ends with an open row")  # pragma: no cover


# --- Helpers ------------------------------------------------------------------------------------

_BREAKPOINTS: Final[Mapping[Edition, Mapping[tuple[str, str], Breakpoints]]] = MappingProxyType({
    "2012": HJ633_2012_BREAKPOINTS,
    "2026": HJ633_2026_BREAKPOINTS,
})
_ABOVE_TOP: Final[Mapping[Edition, Mapping[tuple[str, str], int | None]]] = MappingProxyType({
    "2012": HJ633_2012_ABOVE_TOP,
    "2026": HJ633_2026_ABOVE_TOP,
})
_LEVELS: Final[Mapping[Edition, tuple[AqiLevel, ...]]] = MappingProxyType({
    "2012": HJ633_2012_LEVELS,
    "2026": HJ633_2026_LEVELS,
})
# (pollutant, period) pairs some edition defines; any other pair is a caller's error.
_COLUMNS: Final[frozenset[tuple[str, str]]] = frozenset(HJ633_2012_BREAKPOINTS) | frozenset(HJ633_2026_BREAKPOINTS)
# Floats this large are integers: GB/T 8170 rounding leaves them alone (and Decimal's default
# 28-digit context could not quantize the largest ones).
_FLOAT_INTEGRAL_FROM: Final[float] = 2.0**53


def _pollutant(pollutant: str) -> Pollutant:
    if isinstance(pollutant, str):
        key = pollutant.strip()
        for candidate in (key, key.upper(), key.lower()):
            if candidate in POLLUTANTS:
                return candidate  # type: ignore[return-value]
            try:
                name = parameter(candidate, "air").name
            except ValueError:
                continue
            if name in POLLUTANTS:
                return name  # type: ignore[return-value]
    raise ValueError(
        f"unknown pollutant {pollutant!r}: expected one of {', '.join(POLLUTANTS)} or its HJ 212 code"
    )


def _period(pollutant: Pollutant, period: str) -> Period:
    key = period.strip().lower() if isinstance(period, str) else period
    if key not in PERIODS:
        raise ValueError(f"unknown averaging period {period!r}: expected one of {', '.join(PERIODS)}")
    if (pollutant, key) not in _COLUMNS:
        raise ValueError(f"HJ 633 has no {key} IAQI for {pollutant} in any edition")
    return key  # type: ignore[return-value]


def _reporting_steps(pollutant: Pollutant, concentration: float) -> int:
    """The concentration rounded by GB/T 8170, as a count of reporting steps (1 µg/m³, 0.1 mg/m³)."""
    if isinstance(concentration, bool) or not isinstance(concentration, (numbers.Real, Decimal)):
        raise ValueError(f"{pollutant} concentration must be a number, got {concentration!r}")
    value = float(concentration)
    if math.isnan(value):
        raise ValueError(f"{pollutant} concentration is NaN (pass None for a missing value)")
    if math.isinf(value):
        raise ValueError(f"{pollutant} concentration must be finite, got {value!r}")
    if value < 0:
        raise ValueError(f"{pollutant} concentration must not be negative, got {value!r}")
    digits = GBT8170_DIGITS[pollutant]
    if value >= _FLOAT_INTEGRAL_FROM:
        return int(value) * 10**digits
    # The rounded value is the float nearest k / 10**digits; scaling it back lands within an ulp
    # of the integer k, which round() recovers exactly.
    return round(round_gbt8170(value, digits) * 10**digits)


def _iaqi_of_steps(ed: Edition, pollutant: Pollutant, period: Period, steps: int) -> tuple[int | None, bool]:
    """(IAQI or None, beyond index) of a rounded concentration, read from the exact lookup table."""
    lookup = _lookup_table(ed, pollutant, period)
    if lookup is None:  # 2012 PM 1 h: no breakpoints in that edition
        return None, False
    above_top = len(lookup) - 2
    sub = lookup[min(steps, above_top)]
    if math.isnan(sub):
        return None, False
    beyond = steps >= above_top and (pollutant, period) not in _ABOVE_TOP[ed]
    return int(sub), beyond


def _exact_iaqi(table: Breakpoints, above_top: Mapping[tuple[str, str], int | None],
                column: tuple[str, str], value: Fraction) -> int | None:
    """The IAQI of an exact rounded concentration: interpolation, or the rule above the top."""
    top_concentration, top_iaqi = table[-1]
    if value > top_concentration:
        # The standard's fixed value or "none" where it has one; else capped (beyond index).
        return above_top.get(column, top_iaqi)
    return _interpolate(table, value)


def _interpolate(table: Breakpoints, value: Fraction) -> int:
    """Ceiling of the linear interpolation of ``value`` (≤ the top breakpoint), exactly."""
    concentrations = [c for c, _ in table]
    hi = bisect_left(concentrations, value)
    bp_hi, iaqi_hi = table[hi]
    if value == bp_hi:
        return iaqi_hi
    bp_lo, iaqi_lo = table[hi - 1]
    exact = Fraction(iaqi_hi - iaqi_lo) / (Fraction(bp_hi) - bp_lo) * (value - bp_lo) + iaqi_lo
    return math.ceil(exact)


@cache
def _lookup_table(ed: Edition, pollutant: Pollutant, period: Period) -> np.ndarray | None:
    """IAQI of every reporting step 0 … top, then the above-top value, then NaN (read-only)."""
    table = _BREAKPOINTS[ed].get((pollutant, period))
    if table is None:
        return None
    scale = 10 ** GBT8170_DIGITS[pollutant]
    top_step = int(table[-1][0] * scale)
    lookup = np.empty(top_step + 3, dtype=np.float64)
    for step in range(top_step + 2):
        sub = _exact_iaqi(table, _ABOVE_TOP[ed], (pollutant, period), Fraction(step, scale))
        lookup[step] = np.nan if sub is None else sub
    lookup[-1] = np.nan
    lookup.flags.writeable = False
    return lookup


def _canonical_inputs(concentrations: Mapping[str, float | None], native: Period) -> dict[str, float | None]:
    """Input keys in canonical spelling (``PM2.5``, ``O3_8h``; ``native`` period unsuffixed)."""
    if not isinstance(concentrations, Mapping):
        raise ValueError(f"concentrations must be a mapping of pollutant to value, got {type(concentrations).__name__}")
    out: dict[str, float | None] = {}
    for raw_key, value in concentrations.items():
        if not isinstance(raw_key, str):
            raise ValueError(f"concentration key {raw_key!r} is not a string")
        base, sep, suffix = raw_key.strip().rpartition("_")
        if not sep or suffix.lower() not in PERIODS:
            base, suffix = raw_key, ""
        name = _pollutant(base)
        if not suffix:
            if name == "O3" and native == "24h":
                raise ValueError("key 'O3' is ambiguous in a daily report: use 'O3_8h' or 'O3_1h'")
            period = native
        else:
            period = _period(name, suffix)
        key = _key(name, period, native)
        if key in out:
            raise ValueError(f"concentration {key} given twice (as {raw_key!r} and another spelling)")
        out[key] = value
    return out


def _report(
    ed: Edition, indicators: tuple[_Indicator, ...], values: Mapping[str, float | None], native: Period
) -> AqiResult:
    sub_indices: dict[str, int] = {}
    missing: list[str] = []
    beyond: list[str] = []
    for ind in indicators:
        result = _indicator_iaqi(ed, ind, values, native)
        if result is None:
            missing.append(ind.key)
            continue
        sub, is_beyond = result
        sub_indices[ind.key] = sub
        if is_beyond:
            beyond.append(ind.key)

    pollutant_of = {ind.key: ind.pollutant for ind in indicators}
    exceeding: tuple[str, ...] = ()
    if ed == "2012":
        exceeding = _in_order(pollutant_of[k] for k, v in sub_indices.items() if v > HJ633_2012_EXCEEDANCE_ABOVE_IAQI)

    aqi = max(sub_indices.values()) if sub_indices else None
    if ed == "2026" and missing and aqi is not None and aqi <= HJ633_2026_MISSING_PUBLISH_ABOVE_AQI:
        aqi = None  # 5.3: concentrations and sub-indices only; AQI, level, category, primary NA
    if aqi is None:
        return AqiResult(None, None, None, None, None, None, sub_indices, exceeding, ed,
                         tuple(missing), tuple(beyond))
    level, category, category_en, color = aqi_level(aqi, ed)
    primary: tuple[str, ...] = ()
    if aqi > PRIMARY_POLLUTANT_ABOVE_AQI:
        primary = _in_order(pollutant_of[k] for k, v in sub_indices.items() if v == aqi)
    return AqiResult(aqi, level, category, category_en, color, primary, sub_indices, exceeding, ed,
                     tuple(missing), tuple(beyond))


def _indicator_iaqi(
    ed: Edition, ind: _Indicator, values: Mapping[str, float | None], native: Period
) -> tuple[int, bool] | None:
    """(IAQI, beyond index) of one indicator, with the 2012 fallbacks; None when it has no value."""
    raw = values.get(ind.key)
    if raw is None:
        return None
    sub, beyond = _iaqi_of_steps(ed, ind.pollutant, ind.period, _reporting_steps(ind.pollutant, raw))
    if sub is not None:
        return sub, beyond
    period = _HJ633_2012_FALLBACK_PERIOD.get((ind.pollutant, ind.period)) if ed == "2012" else None
    if period is None:
        return None
    fallback = _Indicator(_key(ind.pollutant, period, native), ind.pollutant, period)
    return _indicator_iaqi(ed, fallback, values, native)


def _key(pollutant: Pollutant, period: Period, native: Period) -> str:
    """Canonical mapping key: the bare name for the report's own averaging, else a suffix."""
    return pollutant if period == native else f"{pollutant}_{period}"


def _in_order(pollutants) -> tuple[str, ...]:
    found = set(pollutants)
    return tuple(p for p in POLLUTANTS if p in found)
