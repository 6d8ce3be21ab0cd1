"""IAQI throughput: ``iaqi_array`` over 10 million values against a pure-Python ``iaqi`` loop.

Run: ``.venv/bin/python -m bench.aqi_bench``. The loop runs over fewer values and its rate is
extrapolated; both paths give identical IAQIs (checked here on the loop's sample). The goal for
``iaqi_array`` is ≥ 20 million values/s on one core.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from rules.aqi import iaqi, iaqi_array

VALUES = 10_000_000
LOOP_VALUES = 100_000
REPEATS = 3
GOAL_VALUES_PER_S = 20_000_000

# (pollutant, period, edition, concentration range): a µg/m³ column and CO, whose 0.1 mg/m³
# rounding takes the slower decimal-aware path.
CASES = (
    ("PM2.5", "24h", "2026", 600.0),
    ("NO2", "1h", "2012", 4000.0),
    ("CO", "1h", "2026", 160.0),
)


def main() -> None:
    rng = np.random.default_rng(20260301)
    print(f"iaqi_array over {VALUES:,} values (median of {REPEATS}); "
          f"pure-Python iaqi loop over {LOOP_VALUES:,}, extrapolated")
    for pollutant, period, edition, top in CASES:
        values = rng.uniform(0.0, top, VALUES)
        array_s = statistics.median(_timed(lambda: iaqi_array(pollutant, period, values, edition))
                                    for _ in range(REPEATS))
        sample = values[:LOOP_VALUES].tolist()
        start = time.perf_counter()
        looped = [iaqi(pollutant, v, period, edition=edition) for v in sample]
        loop_s = time.perf_counter() - start
        vectorised = iaqi_array(pollutant, period, values[:LOOP_VALUES], edition)
        expected = np.array([np.nan if v is None else v for v in looped], dtype=float)
        agree = np.array_equal(vectorised, expected, equal_nan=True)
        array_rate, loop_rate = VALUES / array_s, LOOP_VALUES / loop_s
        verdict = "meets" if array_rate >= GOAL_VALUES_PER_S else "MISSES"
        print(f"{pollutant:>5} {period:>3} {edition}: iaqi_array {array_rate / 1e6:7.1f} M values/s "
              f"({array_s * 1e3:6.1f} ms) | loop {loop_rate / 1e3:6.1f} k values/s "
              f"(10 M ≈ {VALUES / loop_rate:5.0f} s) | ×{array_rate / loop_rate:,.0f} | "
              f"agree: {agree} | {verdict} the 20 M/s goal")


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
