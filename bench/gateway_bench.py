"""HJ 212 gateway under load: N concurrent dataloggers, one minute packet each per second.

    .venv/bin/python -m bench.gateway_bench --connections 1000 --seconds 20

This process starts Mosquitto (``ecopark.services``) and the ``Gateway`` on a park of N synthetic
gas outlets; a second process (this module with ``--client``) opens the N TCP connections and
plays the dataloggers (asyncio, one task per connection): every second each sends a 2051 packet
asking for a reply and waits for its 9014. The gateway and the clients run in separate processes
so they do not share one core's event loop (the machine has 2 cores, Mosquitto takes its share).

Printed:
- sustained packets/s: readings published (PUBACK received) per second over the measured window;
- gateway latency p50/p99/max: packet taken from the framer → broker's PUBACK (measured in the
  gateway, ``Gateway.latencies_s``), and client latency send → 9014 received;
- memory per connection: the gateway process's RSS with N connections open minus before, / N;
- gateway CPU over the window.
Goals: 1,000 connections, p99 ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import gc
import json
import os
import logging
import resource
import sys
import time
from typing import Final

from zoneinfo import ZoneInfo

TZ: Final = ZoneInfo("Asia/Shanghai")
WARMUP_S: Final[float] = 3.0
PW: Final[str] = "123456"
# 2025 bench devices share one test key (16 bytes).
SM4_KEY: Final[bytes] = bytes.fromhex("0123456789abcdeffedcba9876543210")


def bench_mn(i: int) -> str:
    """MN of synthetic datalogger ``i``: 24 hex characters, as HJ 212 defines it."""
    return f"{0xBE0C00000000000000000000 + i:024X}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window (after a warm-up)")
    ap.add_argument("--rate", type=float, default=1.0, help="packets per second per connection")
    ap.add_argument("--edition", choices=("2017", "2025"), default="2017", help="2025: SM4-encrypted CP")
    ap.add_argument("--mqtt-io", choices=("thread", "asyncio"), default="thread",
                    help="how the gateway drives paho: paho's loop thread (default) or the event loop")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    _raise_fd_limit(args.connections + 512)
    if args.client:
        asyncio.run(_client(args))
    else:
        asyncio.run(_server(args))


# ---------------------------------------------------------------------------------------------
# gateway side

async def _server(args: argparse.Namespace) -> None:
    import psutil

    from ecopark.services import Mosquitto
    from ingest.gateway import Gateway
    from park.model import load_park

    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    park = _bench_park(load_park(), args.connections, args.edition)
    broker = Mosquitto(persistence=False).start()
    gw = Gateway(park, "127.0.0.1", broker.port, idle_timeout_s=60, mqtt_io=args.mqtt_io)
    me = psutil.Process()
    load0 = os.getloadavg()
    try:
        await gw.start()
        gc.freeze()  # the park and the loaded modules never die: keep them out of full collections
        rss_before = me.memory_info().rss
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.gateway_bench", "--client", "--port", str(gw.port),
            "--connections", str(args.connections), "--seconds", str(args.seconds), "--rate", str(args.rate),
            "--edition", args.edition, stdout=asyncio.subprocess.PIPE,
        )
        assert client.stdout is not None
        line = (await client.stdout.readline()).decode()
        if not line.startswith("connected"):
            raise SystemExit(f"client failed: {line!r}")
        await asyncio.sleep(WARMUP_S)
        rss_open = me.memory_info().rss
        open_now = gw.counters.open_connections
        gw.latencies_s.clear()
        others = {"clients": psutil.Process(client.pid), "mosquitto": psutil.Process(broker.proc.pid)}
        published0, cpu0, t0 = gw.counters.published, me.cpu_times(), time.monotonic()
        other0 = {k: p.cpu_times() for k, p in others.items()}
        await asyncio.sleep(args.seconds)
        published1, cpu1, t1 = gw.counters.published, me.cpu_times(), time.monotonic()
        other1 = {k: p.cpu_times() for k, p in others.items()}
        gateway_lat = sorted(gw.latencies_s)
        result = json.loads((await client.stdout.readline()).decode() or "{}")
        await client.wait()
    finally:
        await gw.stop()
        broker.stop()

    elapsed = t1 - t0
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed
    print(f"gateway bench: {args.connections} connections × {args.rate:g} packet/s (2051, HJ 212-{args.edition}), "
          f"{args.seconds:g} s measured after {WARMUP_S:g} s warm-up; paho I/O: {args.mqtt_io}")
    print(f"  machine load average       {load0[0]:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores, shared)")
    print(f"  connections open           {open_now}")
    print(f"  sustained                  {(published1 - published0) / elapsed:,.0f} packets/s published (PUBACK)")
    if gateway_lat:
        print(f"  gateway recv→PUBACK        p50 {_ms(gateway_lat, 0.50)}  p99 {_ms(gateway_lat, 0.99)}  max {gateway_lat[-1] * 1000:.1f} ms")
    if result.get("latencies"):
        cl = result["latencies"]
        print(f"  client send→9014           p50 {cl['0.50'] * 1000:.1f} ms  p99 {cl['0.99'] * 1000:.1f} ms  max {cl['max'] * 1000:.1f} ms")
    print(f"  client sent/acked/timeouts {result.get('sent')}/{result.get('acked')}/{result.get('timeouts')}"
          f"  (connect failures {result.get('connect_failures')})")
    print(f"  memory per connection      {(rss_open - rss_before) / max(open_now, 1) / 1024:.1f} KiB (gateway RSS delta / N)")
    print(f"  CPU (% of one core)        gateway {cpu * 100:.0f} %, " + ", ".join(
        f"{k} {(other1[k].user + other1[k].system - other0[k].user - other0[k].system) / elapsed * 100:.0f} %" for k in others)
        + f" ({os.cpu_count()} cores)")
    print(f"  errors                     {dict(gw.counters.errors) or 'none'}; mqtt failures {gw.counters.mqtt_failures}")


def _bench_park(base, n: int, edition: str):
    """The reference park plus ``n`` synthetic gas outlets (YNDL-G1's parameters) with bench MNs."""
    template = base.site("YNDL-G1")
    sites = dict(base.sites)
    for i in range(n):
        sid = f"BENCH-G{i:05d}"
        sites[sid] = dataclasses.replace(template, id=sid, mn=bench_mn(i), pw=PW, hj212_version=edition,
                                         sm4_key=SM4_KEY if edition == "2025" else None)
    return dataclasses.replace(base, sites=sites)


def _ms(values: list[float], q: float) -> str:
    return f"{values[min(len(values) - 1, int(q * len(values)))] * 1000:.1f} ms"


# ---------------------------------------------------------------------------------------------
# datalogger side (a separate process)

async def _client(args: argparse.Namespace) -> None:
    from ingest import hj212

    n, port = args.connections, args.port
    period = 1.0 / args.rate
    stats = {"sent": 0, "acked": 0, "timeouts": 0, "connect_failures": 0}
    latencies: list[float] = []
    values = {"a21026": {"Min": 11.0, "Avg": 12.3, "Max": 13.1, "ZsAvg": 13.6, "Flag": "N"},
              "a21002": {"Min": 80.0, "Avg": 85.0, "Max": 90.0, "ZsAvg": 94.1, "Flag": "N"},
              "a34013": {"Avg": 3.2, "ZsAvg": 3.5, "Flag": "N"}, "a19001": {"Avg": 5.2, "Flag": "N"},
              "a00000": {"Avg": 4.2, "Cou": 252.0, "Flag": "N"}, "a01012": {"Avg": 110.0, "Flag": "N"}}
    key = SM4_KEY if args.edition == "2025" else None

    async def open_one(i: int):
        for _ in range(5):
            try:
                return await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                stats["connect_failures"] += 1
                await asyncio.sleep(0.1)
        raise SystemExit(f"cannot connect datalogger {i}")

    conns = []
    for start in range(0, n, 200):  # connect in batches: a burst of 1,000 SYNs is not the test
        conns += await asyncio.gather(*(open_one(i) for i in range(start, min(n, start + 200))))
    print(f"connected {len(conns)}", flush=True)
    t_start = time.monotonic()
    t_measure = t_start + WARMUP_S
    t_end = t_measure + args.seconds + 1.0

    async def datalogger(i: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = hj212.Framer()
        mn = bench_mn(i)
        k = 0
        phase = (i / n) * period  # spread the sends over the second
        while True:
            due = t_start + phase + k * period
            if due > t_end:
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            k += 1
            now = dt.datetime.now(TZ)
            qn = now.strftime("%Y%m%d%H%M%S") + f"{(now.microsecond // 1000 + i) % 1000:03d}"
            data = hj212.encode(qn=qn, st="31", cn="2051", pw=PW, mn=mn, version=args.edition, needs_reply=True,
                                values=values, data_time=now.replace(second=0, microsecond=0) - dt.timedelta(minutes=1), key=key)
            sent = time.monotonic()
            writer.write(data)
            stats["sent"] += 1
            try:
                async with asyncio.timeout(5.0):
                    acked = False
                    while not acked:
                        chunk = await reader.read(4096)
                        if not chunk:
                            return
                        acked = any(isinstance(f, bytes) and b"CN=9014" in f for f in framer.feed(chunk))
            except TimeoutError:
                stats["timeouts"] += 1
                continue
            stats["acked"] += 1
            if sent >= t_measure:
                latencies.append(time.monotonic() - sent)

    await asyncio.gather(*(datalogger(i, r, w) for i, (r, w) in enumerate(conns)), return_exceptions=True)
    for _, w in conns:
        w.close()
    latencies.sort()
    summary = {q: latencies[min(len(latencies) - 1, int(float(q) * len(latencies)))] for q in ("0.50", "0.99")} if latencies else {}
    if latencies:
        summary["max"] = latencies[-1]
    print(json.dumps({**stats, "latencies": summary}), flush=True)


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            print(f"warning: only {target} file descriptors allowed (need {needed})", file=sys.stderr)


if __name__ == "__main__":
    main()
