"""Collector benchmark: MQTT (QoS 1) → collector → Kafka, on our own Mosquitto and Tansu.

    .venv/bin/python -m bench.collector_bench --readings 100000

1. Throughput: a publisher process sends N valid readings with paho QoS 1 as fast as it can; the
   figure is N over the time from its first publish to Kafka acknowledging the N-th reading.
2. Latency at a steady rate (default 1,000 readings/s for 10 s): the publisher stamps each
   reading's ``seq`` with its publish time (µs); a consumer of the reading topics measures
   publish → record fetched from Kafka (an upper bound of publish → acknowledged by Kafka).

Everything shares the machine's cores, as STACK-NOTES.md's figures do.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ecopark.services import Mosquitto, Tansu
from ingest.collector import Collector
from park.model import READING_TOPICS, Park, load_park


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000, help="readings for the throughput run")
    parser.add_argument("--rate", type=float, default=1_000.0, help="readings/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="length of the latency run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the collector logs its own one line
    asyncio.run(_bench(args.readings, args.rate, args.latency_seconds))


async def _bench(n: int, rate: float, latency_s: float) -> None:
    park = load_park()
    workdir = Path(tempfile.mkdtemp(prefix="ecopark-bench-"))
    workdir.chmod(0o777)  # Mosquitto started as root writes its persistence as user mosquitto
    mosquitto = Mosquitto(workdir=workdir).start()
    tansu = Tansu().start()
    collector = Collector(park, "127.0.0.1", mosquitto.port, tansu.bootstrap, client_id="bench-collector")
    task = asyncio.create_task(collector.run())
    try:
        await asyncio.wait_for(collector.ready.wait(), 60)
        print(f"cores: {os.cpu_count()}; Mosquitto :{mosquitto.port}, Tansu :{tansu.port}, collector in this process")

        # 1. throughput
        ctx = mp.get_context("spawn")
        started = ctx.Value("d", 0.0)
        published = ctx.Value("d", 0.0)
        proc = ctx.Process(target=_publish_flat_out, args=(mosquitto.port, n, started, published))
        cpu0 = time.process_time()
        proc.start()
        deadline = time.monotonic() + max(120.0, n / 2_000)
        while collector.produced < n:
            if time.monotonic() > deadline or (not proc.is_alive() and proc.exitcode):
                raise SystemExit(f"only {collector.produced} of {n} readings reached Kafka (publisher exit {proc.exitcode})")
            await asyncio.sleep(0.005)
        done = time.time()
        cpu_us = (time.process_time() - cpu0) / n * 1e6
        await asyncio.to_thread(proc.join)
        elapsed = done - started.value
        print(f"throughput: {n} readings in {elapsed:.2f} s = {n / elapsed:,.0f} readings/s through the collector into Kafka"
              f" (dead-lettered {collector.deadlettered_total}, Kafka retries {collector.kafka_failures});"
              f" the publisher alone: {n / (published.value - started.value):,.0f} readings/s")
        print(f"collector CPU: {cpu_us:.0f} µs per reading (paho thread + asyncio loop), i.e. ≈ {1e6 / cpu_us:,.0f} readings/s on a free core;"
              f" load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

        # 2. latency at a steady rate
        latencies = await _latency(park, mosquitto.port, tansu.bootstrap, rate, latency_s, ctx)
        latencies.sort()
        q = statistics.quantiles(latencies, n=100)
        print(f"latency at {rate:,.0f} readings/s for {latency_s:.0f} s ({len(latencies)} readings): "
              f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {latencies[-1]:.1f} ms (publish → fetched from Kafka)")
    finally:
        await collector.stop()
        await task
        tansu.stop()
        mosquitto.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _latency(park: Park, mqtt_port: int, bootstrap: str, rate: float, seconds: float, ctx) -> list[float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    await consumer.start()
    tps = [TopicPartition(t, p) for t in READING_TOPICS.values() for p in sorted(consumer.partitions_for_topic(t) or ())]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    expected = int(rate * seconds)
    started = ctx.Value("d", 0.0)
    proc = ctx.Process(target=_publish_steady, args=(mqtt_port, rate, expected, started))
    proc.start()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds + 60
    try:
        while len(latencies) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            now_us = time.time_ns() // 1000
            for records in batch.values():
                for r in records:
                    seq = json.loads(r.value)["seq"]
                    if seq > _PUBLISH_TIME_SEQ_MIN:  # a publish time (µs), not a throughput-run index
                        latencies.append((now_us - seq) / 1000)
    finally:
        await consumer.stop()
        await asyncio.to_thread(proc.join)
    if len(latencies) < expected:
        raise SystemExit(f"latency run: only {len(latencies)} of {expected} readings reached Kafka")
    return latencies


# seqs of the throughput run count from 0; those of the latency run are µs since the epoch
_PUBLISH_TIME_SEQ_MIN = 10**15


# -- publisher processes (spawned: they import only what they need) ---------------------------------

def _payloads(park: Park, n: int, seq_base: int) -> list[tuple[str, bytes]]:
    from ingest.simulator import Simulator

    ts = dt.datetime.now(park.tz).replace(second=0, microsecond=0) - dt.timedelta(minutes=5)
    templates = [(topic, json.loads(p)) for topic, p in Simulator(park, "-", 0, start=ts, scenario=()).readings_at(ts)]
    out = []
    for i in range(n):
        topic, msg = templates[i % len(templates)]
        msg["seq"] = seq_base + i
        out.append((topic, json.dumps(msg).encode()))
    return out


def _client(port: int, client_id: str):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(1_000)
    client.max_queued_messages_set(60_000)  # below paho's 65,535 unacknowledged publishes
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish(client, topic: str, payload: bytes) -> object:
    from paho.mqtt.enums import MQTTErrorCode

    while True:
        info = client.publish(topic, payload, qos=1)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            return info
        if info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise SystemExit(f"publish failed: rc {info.rc}")
        time.sleep(0.001)  # paho's queue is full: let its thread hand messages to the broker


def _publish_flat_out(port: int, n: int, started, published) -> None:
    park = load_park()
    payloads = _payloads(park, n, seq_base=0)
    client = _client(port, "bench-publisher")
    started.value = time.time()
    last = None
    for topic, payload in payloads:
        last = _publish(client, topic, payload)
    last.wait_for_publish(timeout=120)
    published.value = time.time()
    client.disconnect()
    client.loop_stop()


def _publish_steady(port: int, rate: float, n: int, started) -> None:
    park = load_park()
    payloads = _payloads(park, n, seq_base=0)
    client = _client(port, "bench-steady-publisher")
    t0 = time.perf_counter()
    started.value = time.time()
    for i, (topic, payload) in enumerate(payloads):
        target = t0 + i / rate
        pause = target - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        # the publish time, in µs, is the reading's seq (seq only has to grow per site)
        seq = time.time_ns() // 1000
        _publish(client, topic, payload.replace(b'"seq": ' + str(i).encode() + b",", b'"seq": ' + str(seq).encode() + b",", 1))
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
