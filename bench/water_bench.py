"""Throughput of the GB 3838 section class over a year of hourly data.

Run: ``.venv/bin/python -m bench.water_bench [--sections 1000] [--hours 8760] [--subset 20000]``

Data: synthetic hourly values of an automatic river station's "9 + X" set (pH, DO, CODMn, NH3-N,
TP assessed; TN and water temperature present, as reference indicators) with 3 % gaps (NaN),
spread so that every class from I to 劣Ⅴ occurs. Compared:

- vectorised: ``section_class_array`` over (sections × hours) arrays, all at once;
- pure-Python loops over a random subset of section-hours: ``section_class`` per section-hour
  (the full result: exceedance, main pollutants…), and a bare ``max(item_class(...))`` loop
  (the class only, what the vectorised path computes).

The subset's classes from both paths are compared; any mismatch fails the run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rules.water import item_class, section_class, section_class_array

ASSESSED = ("pH", "DO", "CODMn", "NH3-N", "TP")
GAP_FRACTION = 0.03


def synthetic_year(sections: int, hours: int, seed: int = 2024) -> dict[str, np.ndarray]:
    """Hourly river data, shape (sections, hours); NaN marks a missing hour."""
    rng = np.random.default_rng(seed)
    shape = (sections, hours)
    data = {
        "pH": rng.normal(7.5, 0.8, shape).clip(0, 14),
        "DO": rng.gamma(6.0, 1.1, shape),
        "CODMn": rng.lognormal(np.log(5.0), 0.5, shape),
        "NH3-N": rng.lognormal(np.log(0.6), 0.7, shape),
        "TP": rng.lognormal(np.log(0.15), 0.6, shape),
        "TN": rng.lognormal(np.log(1.5), 0.5, shape),
        "temperature": rng.normal(18.0, 5.0, shape),
    }
    for values in data.values():
        values[rng.random(shape) < GAP_FRACTION] = np.nan
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=8760)
    parser.add_argument("--subset", type=int, default=20000, help="section-hours for the pure-Python loops")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = synthetic_year(args.sections, args.hours)
    rows = args.sections * args.hours

    classes, vector_s = _median_time(lambda: section_class_array(data, "river"), args.repeats)

    rng = np.random.default_rng(1)
    flat = {k: v.reshape(-1) for k, v in data.items()}
    picks = rng.choice(rows, size=min(args.subset, rows), replace=False)
    subset_rows = [{k: float(v[i]) for k, v in flat.items() if not np.isnan(v[i])} for i in picks]

    def section_loop() -> list[int]:
        return [section_class(row, "river").klass if any(k in row for k in ASSESSED) else 0 for row in subset_rows]

    def bare_loop() -> list[int]:
        return [max((item_class(k, v, "river") for k, v in row.items() if k in ASSESSED), default=0) for row in subset_rows]

    full, section_loop_s = _median_time(section_loop, args.repeats)
    bare, bare_loop_s = _median_time(bare_loop, args.repeats)

    expected = classes.reshape(-1)[picks].tolist()
    if full != expected or bare != expected:
        raise SystemExit("MISMATCH: vectorised and pure-Python classes differ on the subset")

    vector_rate = rows / vector_s
    section_rate = len(picks) / section_loop_s
    bare_rate = len(picks) / bare_loop_s
    counts = np.bincount(classes.reshape(-1), minlength=7)
    print(f"water_bench: {args.sections} sections × {args.hours} h = {rows:,} section-hours, river, "
          f"items {'/'.join(ASSESSED)} (+TN, temperature as reference), {GAP_FRACTION:.0%} gaps")
    print(f"  vectorised section_class_array : {vector_s * 1e3:9.1f} ms  {vector_rate:14,.0f} section-hours/s "
          f"(median of {args.repeats})")
    print(f"  pure-Python section_class loop : {section_loop_s * 1e3:9.1f} ms  {section_rate:14,.0f} section-hours/s "
          f"({len(picks):,}-row subset, median) → full year ≈ {rows / section_rate:,.0f} s")
    print(f"  pure-Python max(item_class)    : {bare_loop_s * 1e3:9.1f} ms  {bare_rate:14,.0f} section-hours/s "
          f"({len(picks):,}-row subset, median) → full year ≈ {rows / bare_rate:,.0f} s")
    print(f"  speed-up vs section_class loop : {vector_rate / section_rate:,.0f}×; "
          f"vs bare loop: {vector_rate / bare_rate:,.0f}×; subset classes agree")
    print("  class distribution (0 = no data, 1…6 = Ⅰ…劣Ⅴ): " + ", ".join(f"{k}: {n:,}" for k, n in enumerate(counts)))


def _median_time(run, repeats: int):
    """(last result, median wall time in s) of ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


if __name__ == "__main__":
    main()
