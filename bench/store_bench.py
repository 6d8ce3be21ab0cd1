"""Store write throughput: SqliteStore upserts and the InfluxDB line-protocol fast path.

Run: ``.venv/bin/python -m bench.store_bench`` (``--quick`` for 1e5 rows only). Prints rows/s of
``SqliteStore.write_readings`` and ``write_results`` into a fresh WAL file (first write: inserts
through the upsert statement) and again over the same keys (every row an update), for 1e5 and
1e6 rows, and the line-protocol build rate of ``store.influx.LineProtocol`` beside
influxdb-client's ``Point`` (STACK-NOTES: ≈ 200,000 points/s with Point, ≈ 2.2 M/s with a
plain f-string; SQLite WAL upsert ≈ 150,000 rows/s).

A reading row is one parameter of a reading (6 parameters per reading here, as an air station
sends); a result row is one hourly_mean result (4 fields, 1 tag).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from park.reading import Reading, Value
from store.influx import LineProtocol
from store.schema import Result
from store.sqlite import SqliteStore

PARAMETERS = ("PM2.5", "PM10", "SO2", "NO2", "O3", "CO")
SITES = 20
BATCH_ROWS = 10_000
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def main() -> None:
    sizes = (100_000,) if "--quick" in sys.argv else (100_000, 1_000_000)
    print(f"SqliteStore (WAL, synchronous=NORMAL), batches of {BATCH_ROWS:,} rows; wall / CPU-time rows/s")
    for rows in sizes:
        readings = _readings(rows)
        results = _results(rows)
        with tempfile.TemporaryDirectory() as tmp:
            rates = asyncio.run(_sqlite(Path(tmp) / "bench.db", "write_readings", readings, len(PARAMETERS)))
            print(f"  write_readings {rows:>9,} rows: {_pair(rates[0])} new keys, {_pair(rates[1])} same keys")
        with tempfile.TemporaryDirectory() as tmp:
            rates = asyncio.run(_sqlite(Path(tmp) / "bench.db", "write_results", results, 1))
            print(f"  write_results  {rows:>9,} rows: {_pair(rates[0])} new keys, {_pair(rates[1])} same keys")

    print("InfluxDB line protocol (median of 3; wall / CPU-time rate)")
    readings = _readings(300_000)
    results = _results(100_000)
    lp = LineProtocol()
    print(f"  LineProtocol.readings   {_rate(lambda: lp.readings(readings), 300_000)} lines/s")
    print(f"  LineProtocol.results    {_rate(lambda: lp.results(results), 100_000)} lines/s")
    print(f"  readings → body bytes   {_rate(lambda: chr(10).join(lp.readings(readings)).encode(), 300_000)} "
          "lines/s (join + UTF-8 encode included)")
    print(f"  influxdb-client Point   {_rate(lambda: _point_lines(readings[:5_000]), 30_000)} "
          "lines/s (same readings, for comparison)")


async def _sqlite(path: Path, method: str, items: list, rows_per_item: int) -> list[tuple[float, float]]:
    """(wall, CPU-time) rows/s of the first write and of the rewrite over the same keys."""
    store = SqliteStore.open(path)
    write = getattr(store, method)
    per_batch = max(1, BATCH_ROWS // rows_per_item)
    rates = []
    for _ in range(2):
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(items), per_batch):
            await write(items[i:i + per_batch])
        rows = len(items) * rows_per_item
        rates.append((rows / (time.perf_counter() - start), rows / (time.process_time() - cpu)))
    await store.close()
    return rates


def _readings(rows: int) -> list[Reading]:
    count = rows // len(PARAMETERS)
    return [
        Reading(schema=1, site=f"KM-AIR-{i % SITES:02d}", ts=T0 + dt.timedelta(minutes=i // SITES), seq=i,
                values={p: Value(v=10.0 + (i % 97) * 0.1, unit="ug/m3") for p in PARAMETERS})
        for i in range(count)
    ]


def _results(rows: int) -> list[Result]:
    return [
        Result(measurement="hourly_mean", site=f"KM-AIR-{i % SITES:02d}", ts=T0 + dt.timedelta(hours=i // (SITES * 6)),
               tags={"parameter": PARAMETERS[(i // SITES) % 6]},
               fields={"value": 35.2 + i % 13, "valid_minutes": 60, "valid": True, "zs": None})
        for i in range(rows)
    ]


def _point_lines(readings: list[Reading]) -> list[str]:
    from influxdb_client import Point

    return [
        Point("reading").tag("site", r.site).tag("parameter", name).field("value", v.v).field("flag", v.flag)
        .field("unit", v.unit).field("seq", r.seq).field("interval", r.interval).time(r.ts).to_line_protocol()
        for r in readings for name, v in r.values.items()
    ]


def _rate(fn, lines: int) -> str:
    """Wall and CPU-time rates: on a shared 2-core machine the CPU figure is the steadier one."""
    walls, cpus = [], []
    for _ in range(3):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return _pair((lines / statistics.median(walls), lines / statistics.median(cpus)))


def _pair(rates: tuple[float, float]) -> str:
    return f"{rates[0]:>10,.0f} / {rates[1]:>10,.0f}"


if __name__ == "__main__":
    main()
