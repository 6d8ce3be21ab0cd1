"""A fixture year: the reference park's 2022 air figures, rebuilt from hourly data.

`reference/kunming-etdz-2022.md`: station 昆明学院站, 2022, 354 valid days; 217 excellent, 130 good,
7 lightly polluted (O3 the exceeding pollutant on all 7); good-day ratio 98.02 % = 347 / 354,
judged by HJ 633-2012 / GB 3095-2012 / HJ 663-2013.

The real hourly data are not part of the material, so the year is synthetic: each day gets 24
hourly means per pollutant, shaped so its daily AQI falls in the intended level, and those hours go
through `rules.validity` (`daily_mean`, `o3_daily_max_8h`) exactly as the stream processors' would.
The 11 invalid days lose hours: PM2.5 with 19 valid hours (< 20), or O3 with hours 00–05 missing
(13 valid 8-hour windows, below the limit). Seeded, so the year is the same on every run.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from rules.annual import DayRecord
from rules.validity import daily_mean, o3_daily_max_8h

YEAR = 2022
EXPECTED = {
    "valid_days": 354,
    "excellent": 217,
    "good": 130,
    "lightly_polluted": 7,
    "good_day_ratio_pct": 98.02,
}

# One invalid day in each of 11 months keeps every month's annual-mean minimum (≥ 27, Feb ≥ 25).
INVALID_PM25_DAYS = tuple(dt.date(YEAR, m, 15) for m in (1, 2, 3, 5, 6, 7, 8, 9, 10))
INVALID_O3_DAYS = (dt.date(YEAR, 11, 15), dt.date(YEAR, 12, 15))
# Spring ozone episodes (Kunming's O3 season).
LIGHTLY_POLLUTED_DAYS = (
    dt.date(YEAR, 4, 20), dt.date(YEAR, 4, 21), dt.date(YEAR, 4, 22), dt.date(YEAR, 4, 23),
    dt.date(YEAR, 5, 5), dt.date(YEAR, 5, 6), dt.date(YEAR, 5, 7),
)


def kunming_2022_days() -> list[DayRecord]:
    """365 `DayRecord`s of 2022 reproducing the park's published air figures."""
    rng = np.random.default_rng(YEAR)
    dates = [dt.date(YEAR, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    invalid = set(INVALID_PM25_DAYS) | set(INVALID_O3_DAYS)
    light = set(LIGHTLY_POLLUTED_DAYS)
    rest = [d for d in dates if d not in invalid and d not in light]
    good = {rest[i] for i in rng.choice(len(rest), size=EXPECTED["good"], replace=False)}
    return [_day(d, _kind(d, invalid, light, good), rng) for d in dates]


def _kind(d: dt.date, invalid: set, light: set, good: set) -> str:
    if d in INVALID_PM25_DAYS:
        return "invalid_pm25"
    if d in INVALID_O3_DAYS:
        return "invalid_o3"
    if d in light:
        return "light"
    if d in good:
        return "good_pm25" if d.toordinal() % 2 else "good_o3"
    return "excellent"


def _day(d: dt.date, kind: str, rng: np.random.Generator) -> DayRecord:
    # Level I ranges (IAQI ≤ 50 in HJ 633-2012): PM2.5 ≤ 35, PM10 ≤ 50, SO2 ≤ 50, NO2 ≤ 40,
    # CO ≤ 2 mg/m³, O3 8 h ≤ 100, O3 1 h ≤ 160.
    pm25 = rng.uniform(10, 33)
    pm10 = rng.uniform(20, 48)
    so2 = rng.uniform(5, 15)
    no2 = rng.uniform(10, 35)
    co = rng.uniform(0.4, 1.2)
    o3_base = rng.uniform(50, 94)
    if kind == "good_pm25":
        pm25 = rng.uniform(37, 70)  # IAQI 54–94
    elif kind == "good_o3":
        o3_base = rng.uniform(105, 150)  # MDA8 ≈ 108–154 → IAQI 55–96
    elif kind == "light":
        o3_base = rng.uniform(165, 200)  # MDA8 ≈ 169–205 → IAQI 109–141; 1 h max ≤ 240 → ≤ 120

    o3_hours: list[float | None] = [o3_base] * 24
    o3_hours[14] = 1.2 * o3_base  # the afternoon peak: the daily max 1-hour mean
    pm25_hours: list[float | None] = _around(pm25, rng)
    if kind == "invalid_pm25":
        for h in (2, 3, 4, 5, 6):
            pm25_hours[h] = None  # analyser down 5 h → 19 valid hours
    if kind == "invalid_o3":
        for h in range(6):
            o3_hours[h] = None  # 13 valid 8-hour windows, maximum below 160

    mda8 = o3_daily_max_8h(o3_hours, edition="2012")
    o3_1h = max(v for v in o3_hours if v is not None)
    return DayRecord(
        date=d,
        so2_ugm3=daily_mean(_around(so2, rng)).value,
        no2_ugm3=daily_mean(_around(no2, rng)).value,
        pm10_ugm3=daily_mean(_around(pm10, rng)).value,
        pm25_ugm3=daily_mean(pm25_hours).value,
        co_mgm3=daily_mean(_around(co, rng)).value,
        o3_8h_ugm3=mda8.value,
        o3_1h_ugm3=o3_1h,
    )


def _around(mean: float, rng: np.random.Generator) -> list[float | None]:
    """24 hourly means whose mean is ``mean``: a ±20 % diurnal swing that sums to zero."""
    swing = 0.2 * mean * np.sin(np.arange(24) * 2 * np.pi / 24 + rng.uniform(0, 2 * np.pi))
    return [float(v) for v in mean + swing]
