"""Annual air statistics of 1,000 stations × 365 days: the vectorised path vs the record path.

Run: ``.venv/bin/python -m bench.annual_bench [--stations 1000] [--baseline-stations 20]``.

The baseline is `rules.annual.annual_air_statistics` on `DayRecord`s, the pure-Python path (each
day through `rules.aqi.daily_aqi`, exact Fraction arithmetic). It is timed on a subset of stations
and reported per station, since all 1,000 would take minutes; both paths are checked to give
equal figures on that subset. Data: seeded lognormal daily values, 3 % invalid days, year 2022
(HJ 633-2012 / GB 3095-2012).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import statistics
import time

import numpy as np

from rules.annual import DayRecord, annual_air_statistics, annual_air_statistics_many

YEAR = 2022


def synthetic_stations(n: int, year: int = YEAR, seed: int = 0) -> tuple[dict[str, np.ndarray], list[dt.date]]:
    """Daily values (stations × days), NaN for an invalid day, and the day labels."""
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
    for values in columns.values():
        values[rng.random(shape) < 0.03] = np.nan
    return columns, dates


def records_of(columns: dict[str, np.ndarray], dates: list[dt.date], station: int) -> list[DayRecord]:
    """One station's days as `DayRecord`s (the baseline's input)."""
    return [
        DayRecord(d, **{f: (None if math.isnan(v := float(columns[f][station, j])) else v) for f in columns})
        for j, d in enumerate(dates)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--baseline-stations", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    columns, dates = synthetic_stations(args.stations)
    annual_air_statistics_many({k: v[:2] for k, v in columns.items()}, dates)  # warm the IAQI tables

    fast_times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fast = annual_air_statistics_many(columns, dates)
        fast_times.append(time.perf_counter() - t0)
    fast_s = statistics.median(fast_times)

    subset = min(args.baseline_stations, args.stations)
    records = [records_of(columns, dates, i) for i in range(subset)]
    base_times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        base = [annual_air_statistics(r) for r in records]
        base_times.append(time.perf_counter() - t0)
    base_per_station = statistics.median(base_times) / subset
    if base != fast[:subset]:
        raise SystemExit("the vectorised and record paths disagree: the benchmark is void")

    station_days = args.stations * len(dates)
    print(f"annual air statistics, {args.stations} stations × {len(dates)} days ({station_days:,} station-days), "
          f"median of {args.repeat}")
    print(f"  vectorised (annual_air_statistics_many): {fast_s * 1000:8.1f} ms   "
          f"{args.stations / fast_s:10,.0f} stations/s")
    print(f"  record path, pure Python (baseline, {subset} stations): {base_per_station * 1000:8.1f} ms/station   "
          f"{1 / base_per_station:10,.1f} stations/s   → {args.stations * base_per_station:6.1f} s for {args.stations}")
    print(f"  speed-up: {base_per_station * args.stations / fast_s:,.0f}×; figures equal on the {subset} checked stations")


if __name__ == "__main__":
    main()
