"""Data validity as GB 3095 Table 4, HJ 663-2013 and HJ 212-2017 Table 8 state it."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from rules.validity import (
    ABOVE_RANGE_FLAGS,
    GB3095_LIMITS,
    INVALID_FLAGS,
    MIN_VALID_8H_PER_DAY_O3,
    MIN_VALID_DAYS_FEBRUARY,
    MIN_VALID_DAYS_PER_MONTH,
    MIN_VALID_DAYS_PER_YEAR,
    MIN_VALID_HOURS_PER_8H,
    MIN_VALID_HOURS_PER_DAY,
    MIN_VALID_MINUTES_PER_HOUR,
    VALID_FLAGS,
    annual_mean_valid,
    daily_mean,
    flag_counts_as_valid,
    gb3095_limits,
    hour_is_valid,
    hourly_mean,
    moving_8h_mean,
    o3_daily_max_8h,
)


# --- GB 3095 Table 4 and HJ 663 minimums, as numbers --------------------------------------------


def test_minimums_are_those_of_gb3095_table4_and_hj663():
    assert MIN_VALID_MINUTES_PER_HOUR == 45
    assert MIN_VALID_HOURS_PER_DAY == 20
    assert MIN_VALID_HOURS_PER_8H == 6
    assert MIN_VALID_8H_PER_DAY_O3 == 14
    assert MIN_VALID_DAYS_PER_YEAR == 324
    assert MIN_VALID_DAYS_PER_MONTH == 27
    assert MIN_VALID_DAYS_FEBRUARY == 25


# --- HJ 212-2017 Table 8 flags ------------------------------------------------------------------


def test_flag_n_is_valid_and_f_m_s_d_c_b_are_not():
    assert VALID_FLAGS == {"N"}
    assert INVALID_FLAGS == {"F", "M", "S", "D", "C", "B"}
    assert flag_counts_as_valid("N")
    for flag in "FMSDCB":
        assert not flag_counts_as_valid(flag)


def test_flag_t_above_range_counts_as_valid_and_is_kept():
    assert ABOVE_RANGE_FLAGS == {"T"}
    assert flag_counts_as_valid("T")
    minutes = [(100.0, "N")] * 44 + [(500.0, "T")]
    mean = hourly_mean(minutes)
    assert mean.valid and mean.valid_minutes == 45
    assert mean.above_range
    assert mean.value == pytest.approx((44 * 100 + 500) / 45)


@pytest.mark.parametrize("flag", ["X", "n", "", "NN"])
def test_unknown_flag_is_refused(flag):
    with pytest.raises(ValueError, match="flag"):
        flag_counts_as_valid(flag)
    with pytest.raises(ValueError, match="flag"):
        hourly_mean([(1.0, flag)] * 50)


# --- 1-hour mean: ≥ 45 minutes ------------------------------------------------------------------


def test_hour_with_45_valid_minutes_is_valid_and_44_is_not():
    assert hour_is_valid(45)
    assert not hour_is_valid(44)
    assert hour_is_valid(60) and not hour_is_valid(0)


@pytest.mark.parametrize("minutes", [-1, 61])
def test_impossible_minute_count_is_refused(minutes):
    with pytest.raises(ValueError, match="minutes"):
        hour_is_valid(minutes)


def test_hourly_mean_of_45_normal_minutes_is_valid():
    minutes = [(float(i), "N") for i in range(45)] + [(999.0, "C")] * 15
    mean = hourly_mean(minutes)
    assert mean.valid and mean.valid_minutes == 45
    assert mean.value == pytest.approx(22.0)  # mean of 0..44; the calibration minutes stay out
    assert not mean.above_range


def test_hourly_mean_of_44_normal_minutes_is_invalid_and_has_no_value():
    minutes = [(10.0, "N")] * 44 + [(10.0, "M")] * 16
    mean = hourly_mean(minutes)
    assert not mean.valid and mean.valid_minutes == 44 and mean.value is None


def test_hourly_mean_skips_missing_values_even_when_flagged_normal():
    minutes = [(10.0, "N")] * 44 + [(None, "N"), (math.nan, "N")]
    assert hourly_mean(minutes).valid_minutes == 44


def test_hourly_mean_takes_parallel_arrays():
    values = np.full(60, 30.0)
    flags = np.array(["N"] * 45 + ["D"] * 15)
    mean = hourly_mean(values, flags)
    assert mean.valid and mean.valid_minutes == 45 and mean.value == 30.0
    bare = hourly_mean(np.r_[np.full(44, 30.0), np.full(16, np.nan)])
    assert not bare.valid and bare.valid_minutes == 44


def test_hourly_mean_of_5_minute_data_counts_minutes_not_values():
    # HJ 212 minute data every 5 min: 9 valid values = 45 minutes.
    assert hourly_mean([(1.0, "N")] * 9 + [(1.0, "F")] * 3, minutes_per_value=5).valid
    assert not hourly_mean([(1.0, "N")] * 8 + [(1.0, "F")] * 4, minutes_per_value=5).valid


def test_hourly_mean_refuses_more_than_an_hour_and_mismatched_inputs():
    with pytest.raises(ValueError, match="hour"):
        hourly_mean([(1.0, "N")] * 61)
    with pytest.raises(ValueError, match="flags"):
        hourly_mean([1.0, 2.0], ["N"])
    with pytest.raises(ValueError, match="pair"):
        hourly_mean([1.0, 2.0])


# --- 24-hour mean: ≥ 20 hours -------------------------------------------------------------------


def test_day_with_20_valid_hours_is_valid_and_19_is_not():
    twenty = [10.0] * 20 + [None] * 4
    nineteen = [10.0] * 19 + [None] * 5
    assert daily_mean(twenty) == daily_mean(twenty)
    assert daily_mean(twenty).valid and daily_mean(twenty).valid_hours == 20
    assert daily_mean(twenty).value == 10.0
    day = daily_mean(nineteen)
    assert not day.valid and day.valid_hours == 19 and day.value is None


def test_daily_mean_is_the_unrounded_mean_of_the_valid_hours():
    hours = [float(h) for h in range(24)]
    hours[3] = math.nan
    day = daily_mean(hours)
    assert day.valid_hours == 23
    assert day.value == pytest.approx((sum(range(24)) - 3) / 23)


def test_daily_mean_refuses_more_than_a_day():
    with pytest.raises(ValueError, match="day"):
        daily_mean([1.0] * 26)


# --- 8-hour moving mean: ≥ 6 hours ---------------------------------------------------------------


def test_8h_mean_with_6_valid_hours_is_valid_and_5_is_not():
    assert moving_8h_mean([100.0] * 6 + [None] * 2) == 100.0
    assert moving_8h_mean([100.0] * 5 + [None] * 3) is None


def test_8h_mean_needs_exactly_8_hours():
    with pytest.raises(ValueError, match="8"):
        moving_8h_mean([1.0] * 7)


# --- O3 daily max 8-hour mean (HJ 663-2013) ------------------------------------------------------


def _o3_day(missing: list[int], level: float = 100.0) -> list[float | None]:
    hours: list[float | None] = [level] * 24
    for h in missing:
        hours[h] = None
    return hours


def test_o3_mda8_takes_the_17_windows_inside_the_day():
    hours = [float(h) for h in range(24)]
    mda8 = o3_daily_max_8h(hours)
    assert mda8.valid and mda8.valid_windows == 17
    assert mda8.value == pytest.approx(sum(range(16, 24)) / 8)  # window 16:00–24:00
    assert mda8.last_hour == 23
    assert not mda8.by_exceedance


def test_o3_mda8_with_14_valid_windows_is_valid_and_13_is_not():
    # Hours 0–4 missing: windows ending at hours 7, 8, 9 hold < 6 valid hours → 14 valid.
    fourteen = o3_daily_max_8h(_o3_day([0, 1, 2, 3, 4]))
    assert fourteen.valid_windows == 14 and fourteen.valid and fourteen.value == 100.0
    # Hours 0–5 missing: windows ending at 7 … 10 are short → 13 valid.
    thirteen = o3_daily_max_8h(_o3_day([0, 1, 2, 3, 4, 5]))
    assert thirteen.valid_windows == 13
    assert not thirteen.valid and thirteen.value is None


def test_o3_mda8_with_13_windows_is_still_valid_when_it_exceeds_the_limit():
    limit = GB3095_LIMITS["2012"][("O3", "8h")]
    assert limit == 160
    over = o3_daily_max_8h(_o3_day([0, 1, 2, 3, 4, 5], level=161.0), edition="2012")
    assert over.valid_windows == 13 and over.valid and over.by_exceedance
    assert over.value == 161.0
    at_limit = o3_daily_max_8h(_o3_day([0, 1, 2, 3, 4, 5], level=160.0), edition="2012")
    assert not at_limit.valid  # "exceeds": equal to the limit is not above it


def test_o3_mda8_exceed_exception_uses_the_2026_limit_too():
    day = _o3_day([0, 1, 2, 3, 4, 5], level=161.0)
    assert o3_daily_max_8h(day, when=dt.date(2026, 6, 1)).by_exceedance


def test_o3_mda8_of_an_empty_day_is_invalid():
    mda8 = o3_daily_max_8h([None] * 24)
    assert not mda8.valid and mda8.valid_windows == 0 and mda8.value is None


def test_o3_mda8_needs_the_24_hours_of_the_day():
    with pytest.raises(ValueError, match="24"):
        o3_daily_max_8h([100.0] * 23)


# --- GB 3095 grade-2 limits, both editions -------------------------------------------------------


def test_gb3095_2012_grade2_limits_table1():
    limits = gb3095_limits("2012")
    assert limits[("PM2.5", "24h")] == 75 and limits[("PM2.5", "annual")] == 35
    assert limits[("PM10", "24h")] == 150 and limits[("PM10", "annual")] == 70
    assert limits[("SO2", "annual")] == 60 and limits[("NO2", "annual")] == 40
    assert limits[("CO", "24h")] == 4 and limits[("O3", "8h")] == 160


def test_gb3095_2026_transition_until_2030_and_final_from_2031():
    transition = gb3095_limits(when=dt.date(2030, 12, 31))
    assert transition[("PM2.5", "24h")] == 60 and transition[("PM2.5", "annual")] == 30
    assert transition[("PM10", "24h")] == 120 and transition[("PM10", "annual")] == 60
    final = gb3095_limits(when=dt.date(2031, 1, 1))
    assert final[("PM2.5", "annual")] == 25 and final[("PM10", "annual")] == 50
    assert final[("SO2", "24h")] == 50 and final[("NO2", "annual")] == 30
    assert gb3095_limits("2026-final") is final
    assert gb3095_limits(when=dt.date(2026, 2, 28))[("PM2.5", "24h")] == 75


# --- Annual-mean validity ------------------------------------------------------------------------


def _year_minus(year: int, drop: dict[int, int]) -> list[dt.date]:
    """Every day of ``year`` except the first ``drop[m]`` days of month m."""
    days = []
    d = dt.date(year, 1, 1)
    while d.year == year:
        if d.day > drop.get(d.month, 0):
            days.append(d)
        d += dt.timedelta(days=1)
    return days


def test_annual_mean_with_324_days_is_valid_and_323_is_not():
    # 365 − 41 = 324, every month at or near its minimum: 31-day months keep 27, 30-day months
    # keep 27, February keeps 27.
    drop = {m: 4 for m in (1, 3, 5, 7, 8, 10, 12)} | {m: 3 for m in (4, 6, 9, 11)} | {2: 1}
    days = _year_minus(2022, drop)
    assert len(days) == 324
    verdict = annual_mean_valid(days)
    assert verdict.valid and verdict.valid_days == 324 and verdict.short_months == ()
    fewer = annual_mean_valid([d for d in days if d != dt.date(2022, 2, 10)])  # Feb keeps 26
    assert fewer.valid_days == 323 and not fewer.valid and fewer.short_months == ()


def test_annual_mean_with_26_days_in_a_month_is_invalid_and_27_is_valid():
    april_27 = annual_mean_valid(_year_minus(2022, {4: 3}))
    assert april_27.valid and april_27.days_per_month[3] == 27
    april_26 = annual_mean_valid(_year_minus(2022, {4: 4}))
    assert april_26.valid_days == 361 and not april_26.valid
    assert april_26.short_months == (4,)


def test_annual_mean_needs_25_days_in_february_also_in_a_leap_year():
    assert annual_mean_valid(_year_minus(2022, {2: 3})).valid  # 25 of 28
    short = annual_mean_valid(_year_minus(2022, {2: 4}))  # 24 of 28
    assert not short.valid and short.short_months == (2,)
    leap = annual_mean_valid(_year_minus(2024, {2: 4}))  # 25 of 29, 29 February counted
    assert leap.valid and leap.days_per_month[1] == 25 and leap.valid_days == 362
    assert not annual_mean_valid(_year_minus(2024, {2: 5})).valid


def test_annual_mean_counts_a_date_once_and_judges_one_year():
    days = _year_minus(2022, {})
    assert annual_mean_valid(days + days).valid_days == 365
    with pytest.raises(ValueError, match="years"):
        annual_mean_valid(days + [dt.date(2023, 1, 1)])
    empty = annual_mean_valid([], year=2022)
    assert not empty.valid and empty.short_months == tuple(range(1, 13))
