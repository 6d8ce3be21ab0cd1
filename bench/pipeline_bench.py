"""The whole pipeline: MQTT (QoS 1) → collector → Kafka (Tansu) → Faust worker → SQLite store.

    .venv/bin/python -m bench.pipeline_bench [--sites 100] [--readings N] [--rate 1000] [--hours 24]

Everything is real and runs as separate processes on this machine, as ``ecopark demo`` runs it:
our own Mosquitto and Tansu, the collector (``ingest.collector.Collector`` in a spawned process,
so it shares no GIL with the publisher; it reports its counters through shared memory), the
worker as ``python -m ecopark.cli worker`` with a SQLite store, and a publisher process (paho,
QoS 1). The park is the synthetic one of ``bench/processor_bench.py`` (40 % air stations, 30 %
river sections, 30 % enterprise outlets), written as YAML to a temp file and passed as --config.
Readings are minute readings of every site in time order, starting at a local midnight a few days
back (the collector refuses readings from the future), every flag ``N``.

1. Throughput: N readings (default sites × 60 × hours: a day of the park) published as fast as
   paho goes. The figure is N over the time from the first publish until the store holds the
   hourly means of the last minute of every site (polled read-only every 50 ms). The publisher's,
   the collector's (Kafka acknowledged the N-th) and the worker's own rates are printed beside it,
   with each process's CPU per reading.
2. Memory: the worker's VmHWM (peak RSS) after those N readings (144,000 = 24 simulated hours of
   100 sites by default), and the collector's and Tansu's.
3. Latency at a steady ``--rate`` for ``--latency-seconds``: every site's first reading of each
   simulated hour is a probe; the store is polled every 20 ms for that (site, hour)'s hourly
   mean, and the delay from the probe's MQTT publish to its first sight is recorded (the polling
   adds ≈ 10 ms on average). At 1,000 readings/s and 100 sites an hour of data takes 6 s.

Worker settings go through its environment: --batch (ECOPARK_BATCH), --within
(ECOPARK_BATCH_WITHIN_S). Goals on this 2-core machine: ≥ 10,000 readings/s end to end, p99 ≤ 1 s,
worker memory ≤ 300 MB.

Diagnostics: BENCH_PROFILE=path runs the worker under cProfile (stats written on exit);
BENCH_WORKER_WRAPPER=script.py runs the worker as ``python script.py worker …`` instead of
``python -m ecopark.cli worker …`` (a script that patches something, then calls ecopark.cli.main).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing as mp
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.processor_bench import AIR, GAS, RIVER, WASTEWATER, _draw, park_yaml
from ecopark.services import Mosquitto, Tansu, ensure_topics_sync, free_port
from park.model import DEADLETTER_TOPIC, READING_TOPICS, Park, load_park

REPO = Path(__file__).resolve().parent.parent
SEED = 20261125
GOAL_RATE = 10_000
GOAL_P99_S = 1.0
GOAL_MB = 300
PROFILES = {"station": AIR, "section": RIVER, "gas_outlet": GAS, "wastewater_outlet": WASTEWATER}
# the hourly_mean measurement of the store, as the worker writes it
POLL_S = 0.05
LATENCY_POLL_S = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--hours", type=int, default=24, help="simulated hours of the throughput run (default 24)")
    parser.add_argument("--readings", type=int, default=None, help="readings of the throughput run (default sites × 60 × hours)")
    parser.add_argument("--rate", type=float, default=1_000.0, help="readings/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="length of the latency run (0: skip)")
    parser.add_argument("--batch", type=int, default=None, help="ECOPARK_BATCH of the worker (default: the worker's)")
    parser.add_argument("--within", type=float, default=None, help="ECOPARK_BATCH_WITHIN_S of the worker (default: the worker's)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (store, logs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    n = args.readings if args.readings is not None else args.sites * 60 * args.hours
    n = -(-n // args.sites) * args.sites  # whole minutes: every site has the last minute
    Bench(args.sites, n, args.rate, args.latency_seconds, args.batch, args.within, args.keep).run()


class Bench:
    def __init__(self, sites: int, n: int, rate: float, latency_s: float, batch: int | None, within: float | None, keep: bool) -> None:
        self.n_sites, self.n, self.rate, self.latency_s = sites, n, rate, latency_s
        self.batch, self.within, self.keep = batch, within, keep
        self.tmp = Path(tempfile.mkdtemp(prefix="ecopark-pipeline-"))
        self.tmp.chmod(0o777)  # Mosquitto started as root writes its persistence as user mosquitto
        self.config = self.tmp / "park.yaml"
        self.config.write_text(park_yaml(sites))
        self.park: Park = load_park(self.config)
        self.db = self.tmp / "store.db"
        tz = self.park.tz
        # A local midnight far enough back that the warm-up, the day and the latency run are past.
        self.base = (dt.datetime.now(tz) - dt.timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)
        self.ctx = mp.get_context("spawn")
        self.mosquitto: Mosquitto | None = None
        self.tansu: Tansu | None = None
        self.collector: mp.Process | None = None
        self.worker: subprocess.Popen | None = None
        # BENCH_PROFILE=path: run the worker under cProfile, its stats written there on exit
        self.profile = os.environ.get("BENCH_PROFILE")

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> None:
        load0 = os.getloadavg()
        print(f"pipeline bench: {self.n_sites} sites, {os.cpu_count()} cores, load average at start "
              f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; temp dir {self.tmp}", flush=True)
        try:
            self._start()
            self._warm_up()
            self._throughput()
            self._memory("after the throughput run")
            if self.latency_s > 0:
                self._latency()
                self._memory("at the end")
        finally:
            self._stop()
            load1 = os.getloadavg()
            print(f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}", flush=True)
            if not self.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def _start(self) -> None:
        self.mosquitto = Mosquitto(workdir=self.tmp / "mosquitto").start()
        (self.tmp / "mosquitto").chmod(0o777)
        self.tansu = Tansu(log=self.tmp / "tansu.log").start()
        ensure_topics_sync(self.tansu.bootstrap, {**{t: 4 for t in READING_TOPICS.values()}, DEADLETTER_TOPIC: 4, "alerts.events": 1})
        # collector: [received, produced, deadlettered, kafka_failures]
        self.counters = self.ctx.Array("q", 4, lock=False)
        self.collector_ready = self.ctx.Event()
        self.collector_stop = self.ctx.Event()
        self.collector = self.ctx.Process(
            target=_collector_main, name="bench-collector",
            args=(str(self.config), self.mosquitto.port, self.tansu.bootstrap, self.counters, self.collector_ready, self.collector_stop))
        self.collector.start()
        if not self.collector_ready.wait(60):
            raise SystemExit("the collector did not get ready within 60 s")
        env = dict(os.environ)
        if self.batch is not None:
            env["ECOPARK_BATCH"] = str(self.batch)
        if self.within is not None:
            env["ECOPARK_BATCH_WITHIN_S"] = str(self.within)
        self.worker_log = self.tmp / "worker.log"
        self.worker = subprocess.Popen(
            [sys.executable, *(["-m", "cProfile", "-o", self.profile] if self.profile else []),
             *([os.environ["BENCH_WORKER_WRAPPER"]] if os.environ.get("BENCH_WORKER_WRAPPER") else ["-m", "ecopark.cli"]), "worker", "--kafka", self.tansu.bootstrap, "--store", f"sqlite:///{self.db}",
             "--config", str(self.config), "--web-port", str(free_port())],
            cwd=REPO, env=env, stdout=open(self.worker_log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        print(f"  Mosquitto :{self.mosquitto.port} (pid {self.mosquitto.proc.pid}), Tansu :{self.tansu.port} (pid {self.tansu.proc.pid}), "
              f"collector pid {self.collector.pid}, worker pid {self.worker.pid} "
              f"(batch {env.get('ECOPARK_BATCH', 'default')}, within {env.get('ECOPARK_BATCH_WITHIN_S', 'default')} s)", flush=True)

    def _warm_up(self) -> None:
        """One reading per site an hour before the day; wait until the worker stored them all."""
        t0 = time.monotonic()
        proc, shared = self._publisher(start_minute=-60, count=self.n_sites, rate=0.0)
        hour = self._epoch(-60)
        while True:
            self._check_alive()
            if self.db.exists() and len(self._sites_with_hour(hour)) >= self.n_sites:
                break
            if time.monotonic() - t0 > 120:
                raise SystemExit(f"warm-up: the worker stored nothing within 120 s (collector: received {self.counters[0]}, "
                                 f"produced {self.counters[1]}, dead-lettered {self.counters[2]}); see {self.worker_log}")
            time.sleep(0.1)
        proc.join()
        print(f"  warm-up: worker consuming after {time.monotonic() - t0:.1f} s", flush=True)

    def _throughput(self) -> None:
        n, sites = self.n, self.n_sites
        last_minute = (n - 1) // sites
        last_hour = self._epoch(last_minute - last_minute % 60)
        expect = last_minute % 60 + 1
        produced0 = self.counters[1]
        pids = self._pids()
        cpu0 = {k: _cpu_s(pid) for k, pid in pids.items()}
        proc, shared = self._publisher(start_minute=0, count=n, rate=0.0)
        start = self._wait_start(shared)
        collector_done = worker_first = None
        progress: list[tuple[float, int]] = []
        reader = self._reader()
        while True:
            self._check_alive(proc)
            now = time.time()
            if collector_done is None and self.counters[1] - produced0 >= n:
                collector_done = now
                cpu_at_collector_done = {k: _cpu_s(pid) for k, pid in pids.items()}
            stored = self._stored_readings(reader)
            if stored and worker_first is None:
                worker_first = now
            progress.append((now, stored))
            if stored >= n and _complete(reader, last_hour, expect) >= sites:
                done = time.time()
                break
            if now - start > max(600, n / 200):
                raise SystemExit(f"throughput: only {stored} of {n} readings stored after {now - start:.0f} s; see {self.worker_log}")
            time.sleep(POLL_S)
        reader.close()
        proc.join()
        cpu1 = {k: _cpu_s(pid) for k, pid in pids.items()}
        published = shared[2]
        elapsed = done - start
        print(f"\n1. throughput: {n:,} readings ({n // sites / 60:.1f} simulated h of {sites} sites), "
              f"first publish → last hour's hourly means stored: {elapsed:.2f} s")
        print(f"   end to end   {n / elapsed:10,.0f} readings/s   goal ≥ {GOAL_RATE:,}: {'meets' if n / elapsed >= GOAL_RATE else 'MISSES'}")
        print(f"   publisher    {n / (published - start):10,.0f} readings/s (QoS 1, all acknowledged by Mosquitto after {published - start:.2f} s)")
        if collector_done is not None:
            print(f"   collector    {n / (collector_done - start):10,.0f} readings/s (Kafka acknowledged the last after {collector_done - start:.2f} s; "
                  f"dead-lettered {self.counters[2]}, Kafka retries {self.counters[3]})")
        w_first = worker_first or start
        print(f"   worker       {n / (done - w_first):10,.0f} readings/s (first reading stored {w_first - start:.2f} s after the first publish)")
        if collector_done is not None:
            # The worker's pace once the collector and the publisher are finished: the worker's own.
            at = min(progress, key=lambda p: abs(p[0] - collector_done))
            left = n - at[1]
            if left > 0 and done > at[0] + 0.5:
                print(f"   worker alone {left / (done - at[0]):10,.0f} readings/s (the {left:,} readings left when the collector was done, "
                      f"in {done - at[0]:.2f} s)")
        print(f"   CPU per reading over the run (µs; 2 cores = {2e6 / (n / elapsed):,.0f} µs of CPU per reading at this rate):")
        for k in pids:
            spent = cpu1[k] - cpu0[k]
            extra = ""
            if k in ("worker", "tansu") and collector_done is not None:
                after = cpu1[k] - cpu_at_collector_done[k]
                extra = f"  ({after / max(done - collector_done, 1e-9) * 100:.0f} % of a core after the collector was done)"
            print(f"     {k:10s} {spent / n * 1e6:7.1f}  ({spent / elapsed * 100:3.0f} % of a core){extra}")
        print(f"     publisher  {shared[3] / n * 1e6:7.1f}  (its own process time, payloads made beforehand)", flush=True)

    def _latency(self) -> None:
        sites, rate = self.n_sites, self.rate
        # continue simulated time after the day, from the next whole hour
        first_minute = -(-(self.n // sites) // 60) * 60 + 60
        count = int(rate * self.latency_s) // (sites * 60) * sites * 60 or sites * 60
        pids = self._pids()
        cpu0 = {k: _cpu_s(pid) for k, pid in pids.items()}
        proc, shared = self._publisher(start_minute=first_minute, count=count, rate=rate)
        start = self._wait_start(shared)
        hours = [self._epoch(first_minute + 60 * h) for h in range(count // (sites * 60))]
        pending = set(hours)
        seen: dict[tuple[str, int], float] = {}
        reader = self._reader()
        deadline = start + count / rate + 120
        while pending and time.time() < deadline:
            self._check_alive(proc)
            now = time.time()
            rows = reader.execute(
                "SELECT DISTINCT site, ts FROM results WHERE measurement = 'hourly_mean' AND ts >= ? AND ts <= ?",
                (hours[0], hours[-1])).fetchall()
            for key in rows:
                seen.setdefault(key, now)
            for h in list(pending):
                if sum(1 for s in self.park.sites if (s, h) in seen) == sites:
                    pending.discard(h)
            time.sleep(LATENCY_POLL_S)
        reader.close()
        end = time.time()
        cpu1 = {k: _cpu_s(pid) for k, pid in pids.items()}
        proc.join()
        probes = self._probe_times
        site_ids = list(self.park.sites)
        latencies = []
        per_hour = []
        for i, h in enumerate(hours):
            of_hour = []
            for j, s in enumerate(site_ids):
                t_pub = probes[i * sites + j]
                t_seen = seen.get((s, h))
                if t_pub and t_seen:
                    of_hour.append(t_seen - t_pub)
            latencies += of_hour
            per_hour.append(statistics.median(of_hour) if of_hour else float("nan"))
        missing = len(hours) * sites - len(latencies)
        actual_rate = count / (shared[2] - start)
        latencies.sort()
        q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
        p99 = q[98]
        print(f"\n3. latency at {rate:,.0f} readings/s (published {actual_rate:,.0f}/s for {shared[2] - start:.1f} s, {count:,} readings, "
              f"{len(hours)} simulated h): {len(latencies)} probes (each site's first reading of an hour), "
              f"MQTT publish → its hourly mean seen in the store (polled every {LATENCY_POLL_S * 1e3:.0f} ms)")
        print(f"   p50 {q[49] * 1e3:6.0f} ms   p90 {q[89] * 1e3:6.0f} ms   p99 {p99 * 1e3:6.0f} ms   max {latencies[-1] * 1e3:6.0f} ms"
              f"   goal p99 ≤ {GOAL_P99_S * 1e3:.0f} ms: {'meets' if p99 <= GOAL_P99_S and not missing else 'MISSES'}"
              + (f"   ({missing} probes never seen)" if missing else ""))
        print(f"   median per simulated hour (ms): {' '.join(f'{x * 1e3:.0f}' for x in per_hour)}")
        busy = end - start
        print("   CPU during the run (% of a core): " + ", ".join(
            f"{k} {(cpu1[k] - cpu0[k]) / busy * 100:.0f}" for k in pids) + f"; publisher {shared[3] / busy * 100:.0f}", flush=True)

    def _memory(self, when: str) -> None:
        w = _status(self.worker.pid)
        c = _status(self.collector.pid)
        t = _status(self.tansu.proc.pid)
        hwm = w.get("VmHWM", 0) / 1024
        print(f"\n2. memory {when}: worker VmHWM {hwm:.0f} MB (VmRSS {w.get('VmRSS', 0) / 1024:.0f} MB)   goal ≤ {GOAL_MB} MB: "
              f"{'meets' if hwm <= GOAL_MB else 'MISSES'}")
        print(f"   collector VmHWM {c.get('VmHWM', 0) / 1024:.0f} MB (VmRSS {c.get('VmRSS', 0) / 1024:.0f} MB);"
              f" Tansu VmRSS {t.get('VmRSS', 0) / 1024:.0f} MB; store on disk {_du_mb(self.tmp, 'store.db'):.0f} MB", flush=True)

    # -- helpers ---------------------------------------------------------------------------------

    def _publisher(self, start_minute: int, count: int, rate: float):
        # shared: [ready (payloads made), first publish time, last publish acknowledged, process CPU s]
        shared = self.ctx.Array("d", 4, lock=False)
        self._probe_times = self.ctx.Array("d", max(count // 60, 1), lock=False)
        proc = self.ctx.Process(
            target=_publisher_main, name="bench-publisher",
            args=(str(self.config), self.mosquitto.port, self.base.isoformat(), start_minute, count, rate, shared, self._probe_times))
        proc.start()
        return proc, shared

    def _wait_start(self, shared) -> float:
        t0 = time.monotonic()
        while not shared[0]:
            if time.monotonic() - t0 > 300:
                raise SystemExit("the publisher did not start within 300 s")
            time.sleep(0.01)
        while not shared[1]:
            time.sleep(0.001)
        return shared[1]

    def _epoch(self, minute: int) -> int:
        return int((self.base + dt.timedelta(minutes=minute)).timestamp())

    def _reader(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5, isolation_level=None)

    def _sites_with_hour(self, hour: int) -> set[str]:
        try:
            with self._reader() as conn:
                return {r[0] for r in conn.execute("SELECT DISTINCT site FROM results WHERE measurement = 'hourly_mean' AND ts = ?", (hour,))}
        except sqlite3.OperationalError:  # tables not created yet
            return set()

    def _stored_readings(self, conn: sqlite3.Connection) -> int:
        """Readings of the run stored so far: per site, the minutes up to its newest stored reading."""
        base = self._epoch(0)
        rows = conn.execute(
            "SELECT (SELECT max(ts) FROM readings AS r WHERE r.site = s.site) FROM reading_sites AS s").fetchall()
        return sum(max((ts - base) // 60 + 1, 0) for (ts,) in rows if ts is not None)

    def _pids(self) -> dict[str, int]:
        return {"mosquitto": self.mosquitto.proc.pid, "collector": self.collector.pid,
                "tansu": self.tansu.proc.pid, "worker": self.worker.pid}

    def _check_alive(self, publisher: mp.Process | None = None) -> None:
        if self.worker.poll() is not None:
            raise SystemExit(f"the worker exited with {self.worker.returncode}:\n{self.worker_log.read_text(errors='replace')[-3000:]}")
        if not self.collector.is_alive():
            raise SystemExit(f"the collector exited with {self.collector.exitcode}")
        if publisher is not None and publisher.exitcode:
            raise SystemExit(f"the publisher exited with {publisher.exitcode}")

    def _stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()
        if self.collector is not None and self.collector.is_alive():
            self.collector_stop.set()
            self.collector.join(20)
            if self.collector.is_alive():
                self.collector.kill()
                self.collector.join()
        if self.tansu is not None:
            self.tansu.stop()
        if self.mosquitto is not None:
            self.mosquitto.stop()


def _complete(conn: sqlite3.Connection, hour: int, minutes: int) -> int:
    """Sites whose every hourly mean of ``hour`` counts ``minutes`` valid minutes."""
    rows = conn.execute(
        "SELECT site, min(json_extract(fields, '$.valid_minutes')) FROM results "
        "WHERE measurement = 'hourly_mean' AND ts = ? GROUP BY site", (hour,)).fetchall()
    return sum(1 for _, m in rows if m is not None and m >= minutes)


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0])  # kB
    except OSError:
        pass
    return out


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def _du_mb(folder: Path, prefix: str) -> float:
    return sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith(prefix)) / 2**20


# -- child processes (spawned: they import only what they need) ------------------------------------

def _collector_main(config: str, mqtt_port: int, bootstrap: str, counters, ready, stop) -> None:
    import asyncio

    from ingest.collector import Collector

    logging.basicConfig(level=logging.WARNING, format="collector %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    park = load_park(config)

    async def run() -> None:
        collector = Collector(park, "127.0.0.1", mqtt_port, bootstrap, client_id="bench-collector")
        task = asyncio.create_task(collector.run())
        await asyncio.wait_for(collector.ready.wait(), 60)
        ready.set()
        while not stop.is_set() and not task.done():
            counters[0], counters[1] = collector.received, collector.produced
            counters[2], counters[3] = collector.deadlettered_total, collector.kafka_failures
            await asyncio.sleep(0.01)
        await collector.stop()
        await task

    asyncio.run(run())


def _payloads(park: Park, base: dt.datetime, start_minute: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` minute readings from ``base + start_minute``: every site of a minute, then the next."""
    rng = random.Random(SEED + start_minute)
    sites = [(park.mqtt_topic(s), s.id, {p: (s.parameter(p).unit, *PROFILES[s.role][p]) for p in PROFILES[s.role]})
             for s in park.sites.values()]
    out = []
    minute = start_minute
    while len(out) < count:
        ts = (base + dt.timedelta(minutes=minute)).isoformat()
        for topic, site_id, params in sites:
            if len(out) == count:
                break
            values = {p: {"v": _draw(rng, p, mean, sd), "unit": unit, "flag": "N"} for p, (unit, mean, sd) in params.items()}
            out.append((topic, json.dumps({"schema": 1, "site": site_id, "ts": ts, "seq": minute + 1_000_000, "interval": "1min",
                                           "values": values}, ensure_ascii=False).encode()))
        minute += 1
    return out


def _publisher_main(config: str, port: int, base: str, start_minute: int, count: int, rate: float, shared, probe_times) -> None:
    """Publish ``count`` readings with QoS 1: flat out (rate 0) or paced at ``rate``/s.

    With a rate, the publish time of each site's first reading of each hour goes to ``probe_times``
    (index: hour of the run × sites + site).
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

    park = load_park(config)
    n_sites = len(park.sites)
    payloads = _payloads(park, dt.datetime.fromisoformat(base), start_minute, count)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{os.getpid()}")
    client.max_inflight_messages_set(1_000)
    client.max_queued_messages_set(60_000)  # below paho's 65,535 unacknowledged publishes (STACK-NOTES)
    client.connect("127.0.0.1", port)
    client.loop_start()
    publish = client.publish
    ok, full = MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
    per_hour = n_sites * 60
    cpu0 = time.process_time()
    shared[0] = 1.0
    t0 = time.perf_counter()
    shared[1] = time.time()
    info = None
    for i, (topic, payload) in enumerate(payloads):
        if rate:
            pause = t0 + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        if rate and i % per_hour < n_sites:
            probe_times[i // per_hour * n_sites + i % per_hour] = time.time()
        while True:
            info = publish(topic, payload, qos=1)
            if info.rc == ok:
                break
            if info.rc != full:
                raise SystemExit(f"publish failed: rc {info.rc}")
            time.sleep(0.001)  # paho's queue is full: let its thread hand messages to the broker
    if info is not None:
        info.wait_for_publish(timeout=300)
    shared[2] = time.time()
    shared[3] = time.process_time() - cpu0
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
