"""HJ 663 annual statistics: the percentile formula, the park's 2022 figures, both editions."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from fixture_year import EXPECTED, LIGHTLY_POLLUTED_DAYS, kunming_2022_days
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.annual import (
    DAY_VALUE_FIELDS,
    DayRecord,
    annual_air_statistics,
    annual_air_statistics_many,
    exceedance_multiple,
    percentile_hj663,
    percentile_hj663_many,
)
from rules.aqi import daily_aqi

# --- HJ 663-2013 percentile (air-validity.md §5) -------------------------------------------------


def test_percentile_example_n365_p95_takes_k_346_8():
    # X(i) = 10·i: k = 1 + 364 × 0.95 = 346.8 → X(346) + 0.8 × (X(347) − X(346)) = 3460 + 8.
    values = [10.0 * i for i in range(365, 0, -1)]  # any order: the formula sorts
    assert percentile_hj663(values, 95) == pytest.approx(3468.0, abs=1e-9)


def test_percentile_at_the_ends_and_of_one_value():
    values = [3.0, 1.0, 2.0]
    assert percentile_hj663(values, 0) == 1.0
    assert percentile_hj663(values, 100) == 3.0  # s = n → X(n)
    assert percentile_hj663([7.0], 98) == 7.0


def test_percentile_leaves_missing_days_out_of_the_sample():
    assert percentile_hj663([1.0, None, 2.0, math.nan, 3.0], 50) == 2.0


@pytest.mark.parametrize("p", [-1, 100.5])
def test_percentile_outside_0_100_is_refused(p):
    with pytest.raises(ValueError, match="percentile"):
        percentile_hj663([1.0, 2.0], p)


def test_percentile_of_nothing_is_refused():
    with pytest.raises(ValueError, match="no valid value"):
        percentile_hj663([None, math.nan], 95)


_finite = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_finite, min_size=1, max_size=400), p=st.sampled_from([90, 95, 98, 50, 0, 100]) | st.floats(0, 100))
def test_percentile_equals_numpy_linear(values, p):
    ours = percentile_hj663(values, p)
    theirs = float(np.percentile(values, p, method="linear"))
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.lists(_finite | st.just(math.nan), min_size=5, max_size=5), min_size=1, max_size=8),
       p=st.sampled_from([90, 95, 98]))
def test_vectorised_percentile_equals_the_formula_row_by_row(rows, p):
    got = percentile_hj663_many(np.array(rows), p)
    for row, value in zip(rows, got):
        if all(math.isnan(v) for v in row):
            assert math.isnan(value)
        else:
            assert value == percentile_hj663(row, p)


# --- The reference park, 2022 (kunming-etdz-2022.md) ----------------------------------------------


@pytest.fixture(scope="module")
def year_2022() -> list[DayRecord]:
    return kunming_2022_days()


def test_park_2022_reproduces_the_published_air_figures(year_2022):
    stats = annual_air_statistics(year_2022, edition="2012")
    assert stats.year == 2022 and stats.edition == "2012"
    assert stats.valid_days == EXPECTED["valid_days"] == 354
    assert stats.days_per_level == {1: 217, 2: 130, 3: 7, 4: 0, 5: 0, 6: 0}
    assert stats.good_days == 347
    assert stats.good_day_ratio_pct == EXPECTED["good_day_ratio_pct"] == 98.02
    assert stats.exceedance_days == 7 and stats.exceedance_day_ratio_pct == 1.98
    assert stats.heavy_pollution_days == 0
    assert stats.complies is True  # "Grade-2 standard met"


def test_park_2022_is_judged_by_the_2012_edition_by_date(year_2022):
    assert annual_air_statistics(year_2022) == annual_air_statistics(year_2022, edition="2012")


def test_park_2022_lightly_polluted_days_all_have_o3_as_primary(year_2022):
    by_date = {r.date: r for r in year_2022}
    for day in LIGHTLY_POLLUTED_DAYS:
        r = by_date[day]
        report = daily_aqi({"SO2": r.so2_ugm3, "NO2": r.no2_ugm3, "PM10": r.pm10_ugm3,
                            "PM2.5": r.pm25_ugm3, "CO": r.co_mgm3, "O3_8h": r.o3_8h_ugm3,
                            "O3_1h": r.o3_1h_ugm3}, edition="2012")
        assert report.level == 3 and report.primary == ("O3",)
    stats = annual_air_statistics(year_2022, edition="2012")
    assert stats.pollutants["O3"].exceedance_days == 7  # MDA8 > 160 on exactly those days


def test_park_2022_invalid_days_are_those_under_20_hours_or_13_o3_windows(year_2022):
    missing_pm25 = [r.date for r in year_2022 if r.pm25_ugm3 is None]
    missing_o3 = [r.date for r in year_2022 if r.o3_8h_ugm3 is None]
    assert len(missing_pm25) + len(missing_o3) == 365 - EXPECTED["valid_days"] == 11
    stats = annual_air_statistics(year_2022, edition="2012")
    # Each pollutant keeps every valid day, also when another pollutant made the AQI invalid.
    assert stats.pollutants["PM2.5"].valid_days == 365 - len(missing_pm25)
    assert stats.pollutants["SO2"].valid_days == 365
    assert stats.pollutants["PM2.5"].annual_mean_validity.valid


def test_park_2022_composite_index_uses_the_2012_denominators(year_2022):
    stats = annual_air_statistics(year_2022, edition="2012")
    assert stats.composite_denominators == {"PM2.5": 35, "PM10": 70, "SO2": 60, "NO2": 40, "CO": 4, "O3": 160}
    p = stats.pollutants
    expected = (p["PM2.5"].annual_mean / 35 + p["PM10"].annual_mean / 70 + p["SO2"].annual_mean / 60
                + p["NO2"].annual_mean / 40 + p["CO"].percentile / 4 + p["O3"].percentile / 160)
    assert stats.composite_index == pytest.approx(expected, abs=0.005)
    assert set(stats.composite_terms) == set(stats.composite_denominators)


def test_vectorised_path_gives_the_same_figures_for_the_park(year_2022):
    columns = {f: [getattr(r, f) for r in year_2022] for f in DAY_VALUE_FIELDS}
    columns["date"] = [r.date for r in year_2022]
    assert annual_air_statistics(columns, edition="2012") == annual_air_statistics(year_2022, edition="2012")


# --- Compliance, multiples, validity --------------------------------------------------------------


def _year(year: int, **values: float | None) -> list[DayRecord]:
    base = dict(so2_ugm3=10.0, no2_ugm3=20.0, pm10_ugm3=40.0, pm25_ugm3=20.0, co_mgm3=0.8,
                o3_8h_ugm3=90.0, o3_1h_ugm3=110.0)
    base.update(values)
    start = dt.date(year, 1, 1)
    days = (dt.date(year + 1, 1, 1) - start).days
    return [DayRecord(start + dt.timedelta(days=i), **base) for i in range(days)]


def test_pm25_over_its_limits_fails_with_exceedance_multiples():
    stats = annual_air_statistics(_year(2022, pm25_ugm3=80.0), edition="2012")
    pm25 = stats.pollutants["PM2.5"]
    assert pm25.annual_mean == 80 and pm25.percentile == 80
    assert pm25.annual_mean_multiple == 1.29  # (80 − 35) / 35 = 1.2857…
    assert pm25.percentile_multiple == 0.07  # (80 − 75) / 75 = 0.0667
    assert pm25.exceedance_days == 365 and pm25.complies is False
    assert stats.complies is False
    assert stats.days_per_level[3] == 365 and stats.good_day_ratio_pct == 0.0
    assert stats.primary_pollutant_days["PM2.5"] == 365


def test_exceedance_multiple_only_above_the_limit():
    assert exceedance_multiple(105, 75) == pytest.approx(0.4)
    assert exceedance_multiple(75, 75) is None


def test_compliance_is_undetermined_when_an_annual_mean_is_invalid():
    days = _year(2022)
    days = [d if d.date.month != 4 or d.date.day > 4 else
            DayRecord(d.date, **{f: getattr(d, f) for f in DAY_VALUE_FIELDS if f != "no2_ugm3"})
            for d in days]  # April keeps 26 NO2 days
    stats = annual_air_statistics(days, edition="2012")
    no2 = stats.pollutants["NO2"]
    assert not no2.annual_mean_validity.valid and no2.annual_mean_validity.short_months == (4,)
    assert no2.complies is None and stats.complies is None
    assert stats.valid_days == 361


def test_a_day_without_the_o3_1h_max_is_invalid_in_2012_but_not_in_2026():
    stats_2012 = annual_air_statistics(_year(2022, o3_1h_ugm3=None), edition="2012")
    assert stats_2012.valid_days == 0 and stats_2012.good_day_ratio_pct is None
    assert annual_air_statistics(_year(2027, o3_1h_ugm3=None)).valid_days == 365


def test_2026_edition_judges_pm_by_its_transition_limits():
    stats = annual_air_statistics(_year(2027, pm25_ugm3=65.0, pm10_ugm3=55.0))
    assert stats.edition == "2026"
    pm25 = stats.pollutants["PM2.5"]
    assert (pm25.annual_limit, pm25.daily_limit) == (30, 60)
    assert pm25.complies is False and pm25.exceedance_days == 365
    assert stats.days_per_level[3] == 365  # PM2.5 65 → IAQI 115 under HJ 633-2026
    assert stats.composite_denominators["PM2.5"] == 30 and stats.composite_denominators["PM10"] == 60
    assert stats.pollutants["PM10"].complies is True  # 55 ≤ 60


def test_2031_is_judged_by_the_final_2026_limits():
    stats = annual_air_statistics(_year(2031, pm25_ugm3=27.0))
    assert stats.pollutants["PM2.5"].annual_limit == 25 and stats.pollutants["PM2.5"].complies is False


def test_a_year_with_days_of_two_years_or_a_date_twice_is_refused():
    days = _year(2022)
    with pytest.raises(ValueError, match="years"):
        annual_air_statistics(days + [DayRecord(dt.date(2023, 1, 1))])
    with pytest.raises(ValueError, match="twice"):
        annual_air_statistics(days + days[:1])


# --- The vectorised path equals the record path -------------------------------------------------


def _random_stations(n: int, year: int, seed: int) -> tuple[dict[str, np.ndarray], list[dt.date]]:
    rng = np.random.default_rng(seed)
    start = dt.date(year, 1, 1)
    dates = [start + dt.timedelta(days=i) for i in range((dt.date(year + 1, 1, 1) - start).days)]
    shape = (n, len(dates))
    columns = {
        "so2_ugm3": rng.lognormal(2.5, 0.8, shape),
        "no2_ugm3": rng.lognormal(3.2, 0.5, shape),
        "pm10_ugm3": rng.lognormal(4.0, 0.6, shape),
        "pm25_ugm3": rng.lognormal(3.5, 0.7, shape),
        "co_mgm3": rng.lognormal(0.0, 0.5, shape),
        "o3_8h_ugm3": rng.lognormal(4.6, 0.5, shape),
        "o3_1h_ugm3": rng.lognormal(4.9, 0.5, shape),
    }
    columns["o3_8h_ugm3"][0, :3] = 850.0  # HJ 633-2012: no O3 8 h IAQI, falls back to O3 1 h
    columns["pm25_ugm3"][0, 3] = 620.0  # beyond the index
    for name, values in columns.items():
        values[rng.random(shape) < 0.03] = np.nan  # invalid daily values
    return columns, dates


def _records(columns: dict[str, np.ndarray], dates: list[dt.date], station: int) -> list[DayRecord]:
    return [DayRecord(d, **{f: (None if math.isnan(v := float(columns[f][station, j])) else v)
                            for f in columns})
            for j, d in enumerate(dates)]


@pytest.mark.parametrize("year, edition", [(2022, None), (2026, None), (2028, None), (2031, "2026")])
def test_vectorised_statistics_equal_the_record_path(year, edition):
    columns, dates = _random_stations(6, year, seed=year)
    many = annual_air_statistics_many(columns, dates, edition)
    for i, stats in enumerate(many):
        assert stats == annual_air_statistics(_records(columns, dates, i), edition)


def test_vectorised_path_refuses_misshapen_columns():
    columns, dates = _random_stations(2, 2022, seed=1)
    with pytest.raises(ValueError, match="shape"):
        annual_air_statistics_many(columns, dates[:-1])
    with pytest.raises(ValueError, match="unknown daily column"):
        annual_air_statistics_many({"pm2.5": columns["pm25_ugm3"]}, dates)


def test_report_digits_are_configurable_and_both_paths_follow_them():
    # HJ 663 rounding digits are unverified (air-validity.md §7): integers by default, as configured.
    columns, dates = _random_stations(2, 2022, seed=7)
    digits = {"PM2.5": 1, "CO": 2}
    many = annual_air_statistics_many(columns, dates, digits=digits)
    assert many[0] == annual_air_statistics(_records(columns, dates, 0), digits=digits)
    default = annual_air_statistics_many(columns, dates)[0].pollutants["PM2.5"].annual_mean
    assert default == round(default) and many[0].pollutants["PM2.5"].annual_mean == pytest.approx(default, abs=0.5)


def test_columns_need_their_dates():
    with pytest.raises(ValueError, match="date"):
        annual_air_statistics({"pm25_ugm3": [10.0]})
