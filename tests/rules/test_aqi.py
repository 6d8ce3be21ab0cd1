"""HJ 633 AQI, specified from the standard's own tables (`reference/air-aqi.md`).

The breakpoint tables below are written out as the standard prints them and deliberately not
imported from ``rules.aqi``: the module is checked against the standard, not against itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.aqi import aqi_level, daily_aqi, iaqi, iaqi_array, realtime_aqi

# --- The standard's tables, literally -----------------------------------------------------------

IAQI_ROW = (0, 50, 100, 150, 200, 300, 400, 500)

# HJ 633-2012 Table 1 (air-aqi.md §3). None = "—" (no breakpoint). µg/m³, CO mg/m³.
TABLE_2012 = {
    ("SO2", "24h"): (0, 50, 150, 475, 800, 1600, 2100, 2620),
    ("SO2", "1h"): (0, 150, 500, 650, 800, None, None, None),
    ("NO2", "24h"): (0, 40, 80, 180, 280, 565, 750, 940),
    ("NO2", "1h"): (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    ("PM10", "24h"): (0, 50, 150, 250, 350, 420, 500, 600),
    ("CO", "24h"): (0, 2, 4, 14, 24, 36, 48, 60),
    ("CO", "1h"): (0, 5, 10, 35, 60, 90, 120, 150),
    ("O3", "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
    ("O3", "8h"): (0, 100, 160, 215, 265, 800, None, None),
    ("PM2.5", "24h"): (0, 35, 75, 115, 150, 250, 350, 500),
}

# HJ 633-2026 Table 3 (air-aqi.md §4): PM10 100 → 120, PM2.5 100 → 60; PM 1 h on the daily columns.
TABLE_2026 = {
    ("SO2", "24h"): (0, 50, 150, 475, 800, 1600, 2100, 2620),
    ("SO2", "1h"): (0, 150, 500, 650, 800, None, None, None),
    ("NO2", "24h"): (0, 40, 80, 180, 280, 565, 750, 940),
    ("NO2", "1h"): (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    ("CO", "24h"): (0, 2, 4, 14, 24, 36, 48, 60),
    ("CO", "1h"): (0, 5, 10, 35, 60, 90, 120, 150),
    ("O3", "8h"): (0, 100, 160, 215, 265, 800, None, None),
    ("O3", "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
    ("PM10", "24h"): (0, 50, 120, 250, 350, 420, 500, 600),
    ("PM2.5", "24h"): (0, 35, 60, 115, 150, 250, 350, 500),
    ("PM10", "1h"): (0, 50, 120, 250, 350, 420, 500, 600),
    ("PM2.5", "1h"): (0, 35, 60, 115, 150, 250, 350, 500),
}

TABLES = {"2012": TABLE_2012, "2026": TABLE_2026}

# Above the last breakpoint: 2012 notes 2/3 (no IAQI), 2026 notes b/c (fixed IAQI); elsewhere no
# value is defined and ecopark caps at 500 (air-aqi.md §5, an implementation choice).
ABOVE_TOP = {
    "2012": {("SO2", "1h"): None, ("O3", "8h"): None},
    "2026": {("SO2", "1h"): 200, ("O3", "8h"): 300},
}
CAP = 500

# GB/T 8170 reporting step: 1 µg/m³, CO 0.1 mg/m³ (HJ 633-2026 4.2.2).
STEP = {"SO2": Fraction(1), "NO2": Fraction(1), "PM10": Fraction(1), "PM2.5": Fraction(1),
        "CO": Fraction(1, 10), "O3": Fraction(1)}


def expected_iaqi(edition: str, pollutant: str, period: str, c: Fraction) -> int | None:
    """The test's own oracle: exact interpolation on the literal table, then ceiling."""
    column = TABLES[edition].get((pollutant, period))
    if column is None:
        return None
    points = [(Fraction(bp), i) for bp, i in zip(column, IAQI_ROW) if bp is not None]
    if c > points[-1][0]:
        return ABOVE_TOP[edition].get((pollutant, period), CAP)
    for (lo, ilo), (hi, ihi) in zip(points, points[1:]):
        if lo <= c <= hi:
            return math.ceil(Fraction(ihi - ilo) / (hi - lo) * (c - lo) + ilo)
    raise AssertionError("unreachable")


def _breakpoint_cases():
    for edition, table in TABLES.items():
        for (pollutant, period), column in table.items():
            for bp, value in zip(column, IAQI_ROW):
                if bp is not None:
                    yield pytest.param(edition, pollutant, period, Fraction(bp), value,
                                       id=f"{edition}-{pollutant}-{period}-{bp}")


BREAKPOINTS = list(_breakpoint_cases())
BREAKPOINTS_ABOVE_ZERO = [case for case in BREAKPOINTS if case.values[3] > 0]


# --- Every breakpoint: at, just below, just above -----------------------------------------------


@pytest.mark.parametrize(("edition", "pollutant", "period", "bp", "value"), BREAKPOINTS)
def test_iaqi_at_a_breakpoint_is_the_tabled_value(edition, pollutant, period, bp, value):
    assert iaqi(pollutant, float(bp), period, edition=edition) == value


@pytest.mark.parametrize(("edition", "pollutant", "period", "bp", "value"), BREAKPOINTS)
def test_iaqi_a_hair_off_a_breakpoint_rounds_onto_it(edition, pollutant, period, bp, value):
    hair = STEP[pollutant] * Fraction(2, 5)
    assert iaqi(pollutant, float(bp + hair), period, edition=edition) == value
    if bp > 0:
        assert iaqi(pollutant, float(bp - hair), period, edition=edition) == value


@pytest.mark.parametrize(("edition", "pollutant", "period", "bp", "value"), BREAKPOINTS_ABOVE_ZERO)
def test_iaqi_one_step_below_a_breakpoint(edition, pollutant, period, bp, value):
    below = bp - STEP[pollutant]
    got = iaqi(pollutant, float(below), period, edition=edition)
    assert got == expected_iaqi(edition, pollutant, period, below)
    assert got <= value


@pytest.mark.parametrize(("edition", "pollutant", "period", "bp", "value"), BREAKPOINTS)
def test_iaqi_one_step_above_a_breakpoint(edition, pollutant, period, bp, value):
    above = bp + STEP[pollutant]
    got = iaqi(pollutant, float(above), period, edition=edition)
    assert got == expected_iaqi(edition, pollutant, period, above)
    column = [c for c in TABLES[edition][(pollutant, period)] if c is not None]
    if bp < column[-1]:
        assert got > value


# --- Worked examples, air-aqi.md §8 -------------------------------------------------------------

WORKED_EXAMPLES = [
    # pollutant, period, C, IAQI 2012, IAQI 2026
    ("PM2.5", "24h", 35, 50, 50),
    ("PM2.5", "24h", 36, 52, 52),
    ("PM2.5", "24h", 60, 82, 100),
    ("PM2.5", "24h", 75, 100, 114),
    ("PM2.5", "24h", 80, 107, 119),
    ("PM2.5", "24h", 115, 150, 150),
    ("PM10", "24h", 120, 85, 100),
    ("PM10", "24h", 150, 100, 112),
    ("PM10", "24h", 200, 125, 131),
    ("SO2", "24h", 100, 75, 75),
    ("SO2", "1h", 600, 134, 134),
    ("NO2", "1h", 150, 75, 75),
    ("CO", "24h", 3.9, 98, 98),
    ("CO", "1h", 4.2, 42, 42),
    ("O3", "8h", 120, 67, 67),
    ("O3", "8h", 300, 207, 207),
    ("O3", "1h", 250, 125, 125),
    ("SO2", "1h", 900, None, 200),  # 2012: use the SO2-24h IAQI (see the report tests)
    ("O3", "8h", 900, None, 300),  # 2012: use the O3-1h IAQI
]


@pytest.mark.parametrize(("pollutant", "period", "c", "iaqi_2012", "iaqi_2026"), WORKED_EXAMPLES)
def test_worked_examples(pollutant, period, c, iaqi_2012, iaqi_2026):
    assert iaqi(pollutant, c, period, edition="2012") == iaqi_2012
    assert iaqi(pollutant, c, period, edition="2026") == iaqi_2026


@pytest.mark.parametrize(("pollutant", "period", "c", "iaqi_2012", "iaqi_2026"), WORKED_EXAMPLES)
def test_worked_examples_vectorised(pollutant, period, c, iaqi_2012, iaqi_2026):
    for edition, want in (("2012", iaqi_2012), ("2026", iaqi_2026)):
        got = iaqi_array(pollutant, period, np.array([c]), edition)[0]
        assert (math.isnan(got) and want is None) or got == want


# --- Above 800, above 500 -----------------------------------------------------------------------


def test_2012_so2_1h_above_800_has_no_iaqi_and_the_report_uses_the_24h_iaqi():
    assert iaqi("SO2", 800, "1h", edition="2012") == 200
    assert iaqi("SO2", 801, "1h", edition="2012") is None
    result = realtime_aqi({"SO2": 900, "SO2_24h": 100, "NO2": 10}, edition="2012")
    assert result.iaqi["SO2"] == 75  # SO2 24h 100 µg/m³ → 75
    assert result.aqi == 75
    assert result.primary == ("SO2",)


def test_2012_so2_1h_above_800_without_a_24h_value_is_missing():
    result = realtime_aqi({"SO2": 900, "NO2": 150}, edition="2012")
    assert "SO2" not in result.iaqi
    assert result.missing[0] == "SO2"
    assert result.aqi == 75  # 2012: AQI from what is present


def test_2012_o3_8h_above_800_uses_the_o3_1h_iaqi_daily_and_realtime():
    daily = daily_aqi({"O3_8h": 900, "O3_1h": 250}, edition="2012")
    assert daily.iaqi == {"O3_1h": 125, "O3_8h": 125}
    assert daily.primary == ("O3",)  # one pollutant, however many of its indicators tie
    realtime = realtime_aqi({"O3": 250, "O3_8h": 900}, edition="2012")
    assert realtime.iaqi == {"O3": 125, "O3_8h": 125}


def test_2026_so2_1h_above_800_is_200_and_o3_8h_above_800_is_300():
    assert iaqi("SO2", 1_000_000, "1h", edition="2026") == 200
    assert iaqi("O3", 801, "8h", edition="2026") == 300
    daily = daily_aqi({"SO2": 5, "NO2": 5, "PM10": 5, "PM2.5": 5, "CO": 0.2, "O3_8h": 900}, edition="2026")
    assert (daily.aqi, daily.level, daily.category, daily.primary) == (300, 5, "重度污染", ("O3",))


def test_above_the_top_breakpoint_iaqi_is_capped_at_500_and_flagged_beyond_index():
    assert iaqi("PM2.5", 501, "24h", edition="2026") == 500
    assert iaqi("PM2.5", 5000, "24h", edition="2012") == 500
    assert iaqi("NO2", 1e300, "1h", edition="2012") == 500
    result = daily_aqi({"PM2.5": 650, "PM10": 600}, edition="2012")
    assert result.aqi == 500
    assert result.beyond_index == ("PM2.5",)  # PM10 600 is on the top breakpoint, not beyond
    assert result.primary == ("PM10", "PM2.5")


# --- Exactness and GB/T 8170 rounding -----------------------------------------------------------


@pytest.mark.parametrize(("c", "want"), [(34.5, 49), (35.5, 52), (34.51, 50), (35.4999, 50)])
def test_concentrations_round_half_to_even_before_interpolating(c, want):
    # 34.5 → 34 → 48.57 → 49; 35.5 → 36 → 51.25 → 52; 34.51 → 35 → 50; 35.4999 → 35 → 50
    assert iaqi("PM2.5", c, "24h", edition="2012") == want


def test_co_rounds_to_one_decimal_half_to_even():
    assert iaqi("CO", 0.25, "24h", edition="2012") == iaqi("CO", 0.2, "24h", edition="2012") == 5
    assert iaqi("CO", 0.35, "24h", edition="2012") == iaqi("CO", 0.4, "24h", edition="2012") == 10
    assert iaqi("CO", 3.85, "24h", edition="2012") == iaqi("CO", 3.8, "24h", edition="2012") == 95
    assert iaqi("CO", 3.95, "24h", edition="2012") == iaqi("CO", 4.0, "24h", edition="2012") == 100


def test_rounding_applies_to_2012_as_well_as_2026():
    for edition in ("2012", "2026"):
        assert iaqi("SO2", 100.5, "24h", edition=edition) == iaqi("SO2", 100, "24h", edition=edition)


def test_interpolation_is_exact_where_floats_overshoot_an_integer():
    # CO 2.2 mg/m³: 50 + 25 × 0.2 = 55 exactly; float arithmetic gives 55.000000000000007 → 56.
    assert iaqi("CO", 2.2, "24h", edition="2012") == 55
    assert iaqi("CO", 65.4, "1h", edition="2026") == 218
    assert iaqi_array("CO", "24h", np.array([2.2]), "2012")[0] == 55
    # A hair above a breakpoint rounds onto it: never 101.
    assert iaqi("PM2.5", 60.0000001, "24h", edition="2026") == 100
    assert iaqi("SO2", 163, "24h", edition="2012") == 102  # 100 + 50 × 13/325


def test_every_reporting_step_of_every_column_matches_the_exact_oracle():
    for edition, table in TABLES.items():
        for (pollutant, period), column in table.items():
            step = STEP[pollutant]
            top = max(c for c in column if c is not None)
            steps = [k * step for k in range(int(top / step) + 3)]
            got = iaqi_array(pollutant, period, np.array([float(c) for c in steps]), edition)
            want = [expected_iaqi(edition, pollutant, period, c) for c in steps]
            want = np.array([np.nan if w is None else w for w in want], dtype=float)
            np.testing.assert_array_equal(got, want, err_msg=f"{edition} {pollutant} {period}")


# --- PM 1 h --------------------------------------------------------------------------------------


def test_2012_has_no_pm_1h_iaqi_and_2026_uses_the_daily_breakpoints():
    assert iaqi("PM2.5", 80, "1h", edition="2012") is None
    assert np.isnan(iaqi_array("PM10", "1h", np.array([1.0, 2.0]), "2012")).all()
    assert iaqi("PM2.5", 80, "1h", edition="2026") == iaqi("PM2.5", 80, "24h", edition="2026") == 119


def test_2012_realtime_pm_methods():
    readings = {"PM2.5": 80, "PM2.5_24h": 36, "PM10": 10, "PM10_24h": 10}
    moving = realtime_aqi(readings, edition="2012", pm_realtime="24h_moving")
    assert moving.iaqi == {"PM10_24h": 10, "PM2.5_24h": 52}
    hourly = realtime_aqi(readings, edition="2012", pm_realtime="1h_on_24h_bp")
    assert hourly.iaqi == {"PM10": 10, "PM2.5": 107}  # 80 on the 2012 24h breakpoints
    assert hourly.primary == ("PM2.5",) and hourly.exceeding == ("PM2.5",)


def test_2026_realtime_takes_pm_1h_on_daily_breakpoints_whatever_pm_realtime_says():
    readings = {"SO2": 5, "NO2": 5, "PM10": 10, "PM2.5": 80, "PM2.5_24h": 36, "CO": 0.3, "O3": 20, "O3_8h": 900}
    for method in ("24h_moving", "1h_on_24h_bp"):
        result = realtime_aqi(readings, edition="2026", pm_realtime=method)
        assert result.aqi == 119
        assert set(result.iaqi) == {"SO2", "NO2", "PM10", "PM2.5", "CO", "O3"}  # O3_8h not used


# --- Reports: primary, exceedance, missing, levels ----------------------------------------------

FULL_2026_DAY = {"SO2": 5, "NO2": 5, "PM10": 120, "PM2.5": 60, "CO": 0.2, "O3_8h": 20}


def test_tied_maxima_are_all_primary_pollutants():
    result = daily_aqi(FULL_2026_DAY, edition="2026")
    assert result.aqi == 100
    assert result.primary == ("PM10", "PM2.5")
    assert result.exceeding == ()  # 2026 dropped the exceedance pollutant


def test_no_primary_pollutant_at_or_below_50():
    at_50 = daily_aqi({**FULL_2026_DAY, "PM10": 50, "PM2.5": 35}, edition="2026")
    assert (at_50.aqi, at_50.primary, at_50.category) == (50, (), "优")
    at_51 = daily_aqi({**FULL_2026_DAY, "PM10": 50, "PM2.5": 36}, edition="2026")
    assert (at_51.aqi, at_51.primary, at_51.level) == (52, ("PM2.5",), 2)


def test_2012_exceeding_pollutants_have_iaqi_above_100():
    result = daily_aqi({"PM10": 150, "PM2.5": 80, "SO2": 1000, "O3_8h": 10, "O3_1h": 10}, edition="2012")
    assert result.iaqi["PM10"] == 100
    assert result.exceeding == ("SO2", "PM2.5")  # PM10 at exactly 100 does not exceed
    assert result.primary == ("SO2",)


def test_2026_missing_pollutant_with_aqi_at_most_100_is_na():
    day = dict(FULL_2026_DAY)
    del day["O3_8h"]
    result = daily_aqi(day, edition="2026")
    assert (result.aqi, result.level, result.category, result.primary) == (None, None, None, None)
    assert result.iaqi["PM2.5"] == 100  # sub-indices are still published
    assert result.missing == ("O3_8h",)


def test_2026_missing_pollutant_with_aqi_above_100_is_published():
    result = daily_aqi({**FULL_2026_DAY, "O3_8h": None, "PM2.5": 61}, edition="2026")
    assert (result.aqi, result.level, result.primary) == (101, 3, ("PM2.5",))  # 100 + 50/55
    assert result.missing == ("O3_8h",)


def test_2012_computes_aqi_from_what_is_present():
    result = daily_aqi({"PM2.5": 36}, edition="2012")
    assert (result.aqi, result.primary) == (52, ("PM2.5",))
    assert result.missing == ("SO2", "NO2", "PM10", "CO", "O3_1h", "O3_8h")


def test_nothing_measured_is_na():
    result = realtime_aqi({}, edition="2012")
    assert (result.aqi, result.level, result.primary, result.iaqi) == (None, None, None, {})


def test_hj212_codes_work_as_keys_and_pollutant_names():
    result = realtime_aqi({"a34004": 80, "a21005": 4.2, "a05024_8h": 120}, edition="2026")
    assert result.iaqi == {"PM2.5": 119, "CO": 42}
    assert iaqi("a21026", 100, "24h", edition="2012") == 75


LEVELS = [
    # AQI, level, category, English, colour — HJ 633 Table 2 / Appendix A (air-aqi.md §5)
    (0, 1, "优", "Excellent", "#00E400"),
    (1, 1, "优", "Excellent", "#00E400"),
    (50, 1, "优", "Excellent", "#00E400"),
    (51, 2, "良", "Good", "#FFFF00"),
    (100, 2, "良", "Good", "#FFFF00"),
    (101, 3, "轻度污染", "Lightly polluted", "#FF7E00"),
    (150, 3, "轻度污染", "Lightly polluted", "#FF7E00"),
    (151, 4, "中度污染", "Moderately polluted", "#FF0000"),
    (200, 4, "中度污染", "Moderately polluted", "#FF0000"),
    (201, 5, "重度污染", "Heavily polluted", "#99004C"),
    (300, 5, "重度污染", "Heavily polluted", "#99004C"),
    (301, 6, "严重污染", "Severely polluted", "#7E0023"),
    (500, 6, "严重污染", "Severely polluted", "#7E0023"),
]


@pytest.mark.parametrize("edition", ["2012", "2026"])
@pytest.mark.parametrize(("aqi", "level", "category", "category_en", "color"), LEVELS)
def test_aqi_levels(edition, aqi, level, category, category_en, color):
    assert aqi_level(aqi, edition) == (level, category, category_en, color)


def test_result_carries_level_category_and_colour():
    result = daily_aqi({**FULL_2026_DAY, "PM2.5": 151}, edition="2026")
    assert (result.aqi, result.level, result.category, result.category_en, result.color) == (
        201, 5, "重度污染", "Heavily polluted", "#99004C")  # 200 + 100 × 1/100
    assert result.edition == "2026"


def test_result_is_frozen_and_hashable():
    result = daily_aqi(FULL_2026_DAY, edition="2026")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.aqi = 1  # type: ignore[misc]
    hash(result)


# --- Edition by date ----------------------------------------------------------------------------


def test_edition_is_chosen_by_the_date_of_the_data():
    assert iaqi("PM2.5", 75, "24h", when=dt.date(2026, 2, 28)) == 100
    assert iaqi("PM2.5", 75, "24h", when=dt.date(2026, 3, 1)) == 114
    last_hour = dt.datetime(2026, 2, 28, 23, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert realtime_aqi({"PM2.5": 75}, when=last_hour, pm_realtime="1h_on_24h_bp").edition == "2012"
    assert daily_aqi({"PM2.5": 75}, when=dt.date(2026, 3, 1)).edition == "2026"


def test_explicit_edition_wins_over_date():
    assert iaqi("PM2.5", 75, "24h", edition="HJ 633-2012", when=dt.date(2026, 6, 1)) == 100


# --- Properties ---------------------------------------------------------------------------------

COLUMNS = sorted({(ed, p, per) for ed, t in TABLES.items() for p, per in t} | {("2012", "PM10", "1h")})
UGM3_COLUMNS = [c for c in COLUMNS if c[1] != "CO"]
CO_COLUMNS = [c for c in COLUMNS if c[1] == "CO"]
concentration = st.floats(min_value=0, max_value=5000, allow_nan=False)
co_concentration = st.decimals(min_value=0, max_value=200, places=6).map(float)


@settings(max_examples=300)
@given(column=st.sampled_from(COLUMNS), a=concentration, b=concentration)
def test_iaqi_never_decreases_as_concentration_rises(column, a, b):
    edition, pollutant, period = column
    lo, hi = sorted((a, b))
    i_lo, i_hi = (iaqi(pollutant, c, period, edition=edition) for c in (lo, hi))
    if i_lo is not None and i_hi is not None:
        assert i_lo <= i_hi


@settings(max_examples=200)
@given(column=st.sampled_from(UGM3_COLUMNS),
       values=st.lists(st.floats(min_value=0, max_value=1e20, allow_nan=False) | st.just(math.nan),
                       min_size=1, max_size=50))
def test_iaqi_array_agrees_with_iaqi(column, values):
    _assert_array_agrees(column, values)


@settings(max_examples=200)
@given(column=st.sampled_from(CO_COLUMNS), values=st.lists(co_concentration, min_size=1, max_size=50))
def test_iaqi_array_agrees_with_iaqi_for_co(column, values):
    _assert_array_agrees(column, values)


def test_iaqi_array_agrees_with_iaqi_for_co_one_ulp_off_a_tie():
    # 0.8500000000000001 reads as more than the tie 0.85, so it rounds up to 0.9 on both paths
    _assert_array_agrees(("2012", "CO", "24h"), [0.8500000000000001])


def _assert_array_agrees(column, values):
    edition, pollutant, period = column
    got = iaqi_array(pollutant, period, np.array(values), edition)
    for value, g in zip(values, got):
        want = None if math.isnan(value) else iaqi(pollutant, value, period, edition=edition)
        assert (want is None and math.isnan(g)) or g == want, (value, g, want)


def test_iaqi_array_keeps_shape_and_leaves_its_input_alone():
    values = np.array([[35.5, np.nan], [75.0, 0.0]])
    copy = values.copy()
    got = iaqi_array("PM2.5", "24h", values, "2012")
    np.testing.assert_array_equal(got, [[52, np.nan], [100, 0]])
    np.testing.assert_array_equal(values, copy)
    assert not np.signbit(got[1, 1])
    assert iaqi_array("PM2.5", "24h", np.float64(80.0), "2012").shape == ()
    assert iaqi_array("PM2.5", "24h", [80, 36], "2012").tolist() == [107, 52]


# --- Bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "names"), [
    (lambda: iaqi("PM1", 10, "24h", edition="2012"), "PM1"),
    (lambda: iaqi("PM2.5", -1, "24h", edition="2012"), "negative"),
    (lambda: iaqi("PM2.5", math.nan, "24h", edition="2012"), "NaN"),
    (lambda: iaqi("PM2.5", math.inf, "24h", edition="2012"), "finite"),
    (lambda: iaqi("PM2.5", "35", "24h", edition="2012"), "number"),
    (lambda: iaqi("PM2.5", 35, "2h", edition="2012"), "2h"),
    (lambda: iaqi("O3", 35, "24h", edition="2012"), "O3"),
    (lambda: iaqi("NO2", 35, "8h", edition="2026"), "NO2"),
    (lambda: iaqi("PM2.5", 35, "24h", edition="2020"), "2020"),
    (lambda: iaqi_array("PM2.5", "24h", np.array([1.0, -2.0]), "2012"), "negative"),
    (lambda: iaqi_array("PM2.5", "24h", np.array([np.inf]), "2012"), "finite"),
    (lambda: iaqi_array("PM2.5", "24h", np.array([1.0]), "2099"), "2099"),
    (lambda: realtime_aqi({"PM1": 3}, edition="2012"), "PM1"),
    (lambda: realtime_aqi({"PM2.5": 3}, edition="2012", pm_realtime="hourly"), "pm_realtime"),
    (lambda: realtime_aqi({"O3": 3, "O3_1h": 4}, edition="2026"), "twice"),
    (lambda: realtime_aqi({"PM2.5": math.nan}, edition="2026"), "NaN"),
    (lambda: daily_aqi({"O3": 3}, edition="2026"), "O3_8h"),
    (lambda: daily_aqi({"NO2_8h": 3}, edition="2026"), "NO2"),
    (lambda: aqi_level(-1, "2026"), "-1"),
    (lambda: aqi_level(50, "1996"), "1996"),
])
def test_bad_input_raises_one_clear_line(call, names):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert names in message
    assert "\n" not in message


def test_decimal_concentrations_are_accepted():
    assert iaqi("CO", Decimal("3.9"), "24h", edition="2012") == 98
