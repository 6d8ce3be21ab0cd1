"""``ecopark worker``: run the Faust worker of ``streams.app`` until SIGINT/SIGTERM."""

from __future__ import annotations

import os


def run_worker(kafka: str, store_url: str, config: str, web_port: int | None = None, loglevel: str = "warning") -> None:
    """Configure ``streams.app`` through its environment and run one Faust worker (blocks)."""
    os.environ["ECOPARK_KAFKA"] = kafka
    os.environ["ECOPARK_STORE"] = store_url
    os.environ["ECOPARK_CONFIG"] = config
    if web_port is not None:
        os.environ["ECOPARK_WORKER_WEB_PORT"] = str(web_port)
    import faust

    from streams.app import app  # reads the environment at import

    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
