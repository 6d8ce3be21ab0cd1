"""ParkProcessor throughput and memory: a synthetic park, a day of minute readings, a real SQLite store.

Run: ``.venv/bin/python -m bench.processor_bench`` (``--sites``, ``--hours``, ``--batch`` to vary).
The park is generated as YAML and loaded with ``parse_park``: 40 % air stations, 30 % river
sections and 30 % enterprise outlets (gas and wastewater in turns), all sending one reading a
minute. Readings are made batch by batch in time order (as a Faust agent takes them from the
topics), so the generator holds one batch at a time and the peak RSS is the worker's own. Batch
latency is the time of ``ParkProcessor.process`` alone, store writes included. The goal for the
worker's memory is ≤ 300 MB after 24 simulated hours of 100 sites.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Iterator

from park.model import Park, parse_park
from park.reading import Reading, Value
from store.sqlite import SqliteStore
from streams.processor import ParkProcessor

SITES = 100
HOURS = 24
BATCH = 2000
GOAL_RSS_MB = 300
START = dt.datetime(2026, 11, 25, tzinfo=dt.timezone(dt.timedelta(hours=8)))
SEED = 20261125

# Typical values and spreads (canonical units) of what each kind of site sends.
AIR = {"SO2": (10, 3), "NO2": (35, 10), "PM10": (70, 25), "PM2.5": (40, 18), "CO": (0.8, 0.2), "O3": (90, 35),
       "temp": (14, 4), "humidity": (60, 10), "wind_speed": (2, 1), "wind_dir": (180, 90)}
RIVER = {"pH": (7.4, 0.2), "DO": (6.5, 0.8), "CODMn": (4, 1), "COD": (17, 4), "BOD5": (3.2, 0.6),
         "NH3-N": (0.7, 0.3), "TP": (0.15, 0.05), "TN": (1.2, 0.3)}
GAS = {"SO2": (12, 4), "NOx": (150, 35), "particulates": (6, 2), "O2": (8, 1.5), "gas_flow": (12000, 1500),
       "stack_temp": (120, 10)}
WASTEWATER = {"COD": (60, 20), "NH3-N": (6, 2), "TP": (0.3, 0.1), "pH": (7.3, 0.5), "water_flow": (25, 8)}
UPPER = {"humidity": 100.0, "wind_dir": 360.0, "pH": 14.0, "O2": 20.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=SITES)
    parser.add_argument("--hours", type=int, default=HOURS)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args()
    asyncio.run(_run(args.sites, args.hours, args.batch))


def synthetic_park(n_sites: int) -> Park:
    """A park of ``n_sites`` sites (see ``park_yaml``)."""
    return parse_park(park_yaml(n_sites), source="<bench>")


def park_yaml(n_sites: int) -> str:
    """The config of a park of ``n_sites`` sites: 40 % air stations, 30 % river sections, the rest outlets."""
    n_air = n_sites * 4 // 10
    n_river = n_sites * 3 // 10
    n_outlets = n_sites - n_air - n_river
    lines = ["park: {id: bench, name: 基准园区, timezone: Asia/Shanghai, lateness_horizon_h: 48}", "air_stations:"]
    lines += [f"  - {{id: AIR-{i:03d}, name: 站{i}, parameters: [{', '.join(AIR)}]}}" for i in range(n_air)]
    lines.append("river_sections:")
    lines += [f"  - {{id: RIV-{i:03d}, name: 河{i}, waterbody: river, target_class: {2 + i % 2}, "
              f"parameters: [{', '.join(RIVER)}]}}" for i in range(n_river)]
    lines.append("enterprises:")
    for i in range(0, n_outlets, 2):
        lines += [f"  - id: ENT-{i:03d}", f"    name: 企业{i}", "    outlets:",
                  f"      - {{id: ENT-{i:03d}-G1, name: 锅炉排气筒, role: gas_outlet, reference_o2_pct: 3.5, "
                  f"permit: {{particulates: 20, SO2: 50, NOx: 200}}, parameters: [{', '.join(GAS)}]}}"]
        if i + 1 < n_outlets:
            lines.append(f"      - {{id: ENT-{i:03d}-W1, name: 废水总排口, role: wastewater_outlet, "
                         f"permit: {{COD: 100, NH3-N: 15, TP: 0.5, pH: [6, 9]}}, parameters: [{', '.join(WASTEWATER)}]}}")
    return "\n".join(lines) + "\n"


def batches(park: Park, hours: int, size: int, rng: random.Random) -> Iterator[list[Reading]]:
    """Minute readings of every site, in time order, ``size`` at a time (the last may be shorter)."""
    profiles = {
        s.id: {"station": AIR, "section": RIVER, "gas_outlet": GAS, "wastewater_outlet": WASTEWATER}[s.role]
        for s in park.sites.values()
    }
    units = {s.id: {p: s.parameter(p).unit for p in profiles[s.id]} for s in park.sites.values()}
    batch: list[Reading] = []
    for minute in range(hours * 60):
        ts = START + dt.timedelta(minutes=minute)
        for site_id, profile in profiles.items():
            # one minute in sixty under maintenance, as a station's daily zero/span check would be
            flag = "M" if rng.random() < 1 / 60 else "N"
            values = {p: Value(v=_draw(rng, p, mean, sd), unit=units[site_id][p], flag=flag) for p, (mean, sd) in profile.items()}
            batch.append(Reading(schema=1, site=site_id, ts=ts, seq=minute, values=values))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


async def _run(n_sites: int, hours: int, size: int) -> None:
    park = synthetic_park(n_sites)
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="ecopark-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        store = SqliteStore.open(db)
        processor = ParkProcessor(park, store)
        latencies: list[float] = []
        readings = results = events = 0
        wall = time.perf_counter()
        for batch in batches(park, hours, size, rng):
            start = time.perf_counter()
            out = await processor.process(batch)
            latencies.append(time.perf_counter() - start)
            readings += len(batch)
            results += len(out.results)
            events += len(out.events)
        wall = time.perf_counter() - wall
        await store.close()
        db_mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20

    busy = sum(latencies)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    print(f"ParkProcessor + SqliteStore: {len(park.sites)} sites, {hours} simulated h of minute readings, "
          f"batches of {size} ({len(latencies)} batches)")
    print(f"  readings/s       {readings / busy:10,.0f}  ({readings:,} readings in {busy:.1f} s of process(); "
          f"{readings / wall:,.0f}/s with generation, {wall:.1f} s)")
    print(f"  batch latency    p50 {statistics.median(latencies) * 1e3:6.1f} ms   p99 {p99 * 1e3:6.1f} ms   "
          f"max {latencies[-1] * 1e3:6.1f} ms")
    print(f"  written          {results:,} results, {events:,} events; store {db_mb:.0f} MB on disk")
    print(f"  peak RSS         {peak_mb:6.0f} MB (now {_rss_mb():.0f} MB)  goal ≤ {GOAL_RSS_MB} MB: "
          f"{'meets' if peak_mb <= GOAL_RSS_MB else 'MISSES'}")
    print(f"  counters         {dict(processor.counters)}")


def _draw(rng: random.Random, name: str, mean: float, sd: float) -> float:
    return round(min(max(rng.gauss(mean, sd), 0.0), UPPER.get(name, float("inf"))), 3)


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


if __name__ == "__main__":
    main()
