"""An embedded MQTT broker (amqtt) for machines without Mosquitto: ``python -m ecopark.embedded_broker PORT``.

amqtt carries ≈ 6,500 QoS 1 messages/s here (STACK-NOTES.md), plenty for the demo's park; the
tests and production use Mosquitto.
"""

from __future__ import annotations

import asyncio
import logging
import sys


async def serve(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "sys_interval": 0,
        "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
        "topic-check": {"enabled": False},
    }
    broker = Broker(config)
    await broker.start()
    try:
        await asyncio.Event().wait()
    finally:
        await broker.shutdown()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 1883
    try:
        asyncio.run(serve(port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
