"""The ``ecopark`` command.

    ecopark demo        the whole park on this machine: brokers, collector, worker, simulator, wall
    ecopark worker      the Faust stream processors
    ecopark collect     the MQTT → Kafka collector
    ecopark gateway     the HJ 212 TCP gateway (→ MQTT)
    ecopark simulate    the park simulator (MQTT), or --hj212 the dataloggers (TCP)
    ecopark wall        the wall page alone, on an existing store
    ecopark check       validate a park config

Every server can be an existing one (flags or ECOPARK_* variables); errors are one line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from park.model import DEFAULT_CONFIG, ConfigError, load_park

log = logging.getLogger("ecopark")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # aiokafka logs an ERROR per retry while Kafka is away; ecopark logs one line per outage itself.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"ecopark: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"ecopark {args.command}: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecopark", description="Environmental monitoring and event streams for an eco-industrial park.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, mqtt: bool = False, kafka: bool = False, store: bool = False) -> None:
        sp.add_argument("--config", default=os.environ.get("ECOPARK_CONFIG", str(DEFAULT_CONFIG)), help="park config (default: the reference park)")
        if mqtt:
            sp.add_argument("--mqtt", default=os.environ.get("ECOPARK_MQTT"), help="MQTT broker host:port (ECOPARK_MQTT)")
            sp.add_argument("--mqtt-user", default=os.environ.get("ECOPARK_MQTT_USER"), help="MQTT user name (ECOPARK_MQTT_USER; the password comes from ECOPARK_MQTT_PASSWORD)")
        if kafka:
            sp.add_argument("--kafka", default=os.environ.get("ECOPARK_KAFKA"), help="Kafka bootstrap host:port (ECOPARK_KAFKA)")
        if store:
            sp.add_argument("--store", default=os.environ.get("ECOPARK_STORE"), help="store URL: sqlite:///path or influxdb://… (ECOPARK_STORE)")

    d = sub.add_parser("demo", help="run the whole simulated park through the real pipeline, with the wall page")
    common(d, mqtt=True, kafka=True, store=True)
    d.add_argument("--port", type=int, default=int(os.environ.get("ECOPARK_WALL_PORT", "8080")), help="wall page port (default 8080)")
    d.add_argument("--speed", type=float, default=3600.0, help="simulated seconds per real second (default 3600: an hour a second)")
    d.add_argument("--duration", type=float, default=None, help="stop after this many real seconds (default: until Ctrl-C)")
    d.add_argument("--hj212", action="store_true", help="bring the enterprises in over HJ 212 TCP through the gateway")
    d.set_defaults(func=_demo)

    w = sub.add_parser("worker", help="run the Faust stream processors")
    common(w, kafka=True, store=True)
    w.add_argument("--web-port", type=int, default=None, help="port of Faust's internal web server (bound to 127.0.0.1)")
    w.set_defaults(func=_worker)

    c = sub.add_parser("collect", help="run the MQTT → Kafka collector")
    common(c, mqtt=True, kafka=True)
    c.set_defaults(func=_collect)

    g = sub.add_parser("gateway", help="run the HJ 212 TCP gateway (dataloggers → MQTT)")
    common(g, mqtt=True)
    g.add_argument("--listen", default=os.environ.get("ECOPARK_GATEWAY", "127.0.0.1:9212"), help="host:port to listen on (default 127.0.0.1:9212)")
    g.add_argument("--deadletter", default="var/hj212-deadletter.jsonl", help="file for packets the pipeline cannot take")
    g.set_defaults(func=_gateway)

    s = sub.add_parser("simulate", help="simulate the park's stations over MQTT, or its dataloggers over HJ 212 (--hj212)")
    common(s, mqtt=True)
    s.add_argument("--speed", type=float, default=3600.0, help="simulated seconds per real second")
    s.add_argument("--duration", type=float, default=None, help="stop after this many real seconds")
    s.add_argument("--hj212", action="store_true", help="play the enterprises' dataloggers over TCP to a gateway")
    s.add_argument("--gateway", default=os.environ.get("ECOPARK_GATEWAY", "127.0.0.1:9212"), help="gateway host:port for --hj212")
    s.add_argument("--faults", default="", help="comma list of faults to inject (simulator-specific)")
    s.set_defaults(func=_simulate)

    wall = sub.add_parser("wall", help="serve the wall page from an existing store")
    common(wall, store=True)
    wall.add_argument("--port", type=int, default=8080)
    wall.set_defaults(func=_wall)

    chk = sub.add_parser("check", help="validate a park config and list its sites")
    common(chk)
    chk.set_defaults(func=_check)
    return p


# -- commands ---------------------------------------------------------------------------------------

def _check(args: argparse.Namespace) -> int:
    park = load_park(args.config)
    print(f"{park.source}: park {park.id} ({park.name}), time zone {park.timezone}")
    for site in park.sites.values():
        extra = f" MN={site.mn}" if site.mn else ""
        print(f"  {site.kind:8s} {site.id:14s} {site.name} {site.name_en}{extra}")
    print(f"{len(park.sites)} sites, {len(park.inspectors)} inspectors: OK")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    load_park(args.config)  # fail fast, one line, before Faust starts
    run_worker(_need(args.kafka, "--kafka"), args.store or "sqlite:var/ecopark.db", args.config, web_port=args.web_port)
    return 0


def _collect(args: argparse.Namespace) -> int:
    from ingest.collector import Collector

    park = load_park(args.config)
    host, port = _hostport(_need(args.mqtt, "--mqtt"), 1883)
    collector = Collector(park, host, port, _need(args.kafka, "--kafka"), username=args.mqtt_user, password=_mqtt_password(args))
    return _run_until_interrupt(collector.run(), collector.stop)


def _gateway(args: argparse.Namespace) -> int:
    from ingest.gateway import Gateway

    park = load_park(args.config)
    mqtt_host, mqtt_port = _hostport(_need(args.mqtt, "--mqtt"), 1883)
    host, port = _hostport(args.listen, 9212)
    Path(args.deadletter).parent.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(park, mqtt_host, mqtt_port, host=host, port=port, deadletter_path=Path(args.deadletter),
                      mqtt_username=args.mqtt_user, mqtt_password=_mqtt_password(args))

    async def serve() -> None:
        await gateway.start()
        print(f"ecopark gateway: HJ 212 on {host}:{gateway.port} → MQTT {mqtt_host}:{mqtt_port}", flush=True)
        await gateway.serve_forever()

    return _run_until_interrupt(serve(), gateway.stop)


def _simulate(args: argparse.Namespace) -> int:
    park = load_park(args.config)
    faults = {f for f in args.faults.split(",") if f}
    if args.hj212:
        from ingest.datalogger_sim import DataloggerSimulator

        host, port = _hostport(args.gateway, 9212)
        sim = DataloggerSimulator(park, host, port, speed=args.speed, faults=faults)
    else:
        from ingest.simulator import Simulator

        host, port = _hostport(_need(args.mqtt, "--mqtt"), 1883)
        sim = Simulator(park, host, port, speed=args.speed, username=args.mqtt_user, password=_mqtt_password(args))
    return _run_until_interrupt(sim.run(args.duration), sim.stop)


def _wall(args: argparse.Namespace) -> int:
    from dashboards.wall import WallPage
    from store import open_store

    park = load_park(args.config)

    async def serve() -> None:
        store = open_store(args.store or "sqlite:var/ecopark.db")
        wall = WallPage(park, store, port=args.port)
        await wall.start()
        print(f"ecopark wall: {wall.url}", flush=True)
        await asyncio.Event().wait()

    return _run_until_interrupt(serve(), None)


def _demo(args: argparse.Namespace) -> int:
    from ecopark.demo import Demo

    demo = Demo(
        load_park(args.config), config_path=args.config, mqtt=args.mqtt, kafka=args.kafka, store_url=args.store,
        wall_port=args.port, speed=args.speed, hj212=args.hj212,
    )
    return demo.run(args.duration)


# -- helpers ----------------------------------------------------------------------------------------

def _mqtt_password(args: argparse.Namespace) -> str | None:
    """The MQTT password, from the environment only: a password on the command line shows in ps."""
    return os.environ.get("ECOPARK_MQTT_PASSWORD") if args.mqtt_user else None


def _need(value: str | None, flag: str) -> str:
    if not value:
        raise ValueError(f"{flag} is required (or set ECOPARK_{flag.strip('-').upper()})")
    return value


def _hostport(text: str, default_port: int) -> tuple[str, int]:
    text = text.removeprefix("mqtt://").removeprefix("tcp://")
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    if not port.isdigit():
        raise ValueError(f"{text!r} is not host:port")
    return host, int(port)


def _run_until_interrupt(main_coro, stop) -> int:
    async def runner() -> None:
        task = asyncio.ensure_future(main_coro)
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            if stop is not None:
                result = stop()
                if asyncio.iscoroutine(result):
                    await result

    try:
        asyncio.run(runner())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
