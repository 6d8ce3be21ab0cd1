"""Fixtures for the real servers the tests talk to.

Each fixture starts its own server on a free port on 127.0.0.1 (never the machine's Mosquitto on
1883), and stops it afterwards. ``mosquitto`` and ``tansu`` are per test module by default so that
a module's tests share one broker; a test that restarts a broker asks for ``fresh_mosquitto`` or
``fresh_tansu``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import pytest

from ecopark.services import Mosquitto, Tansu
from park.model import Park, load_park

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def park() -> Park:
    """The reference park, from the shipped config."""
    return load_park(REPO / "config" / "park.yaml")


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory) -> Iterator[Mosquitto]:
    broker = Mosquitto(workdir=tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture
def fresh_mosquitto(tmp_path) -> Iterator[Mosquitto]:
    broker = Mosquitto(workdir=tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def tansu() -> Iterator[Tansu]:
    broker = Tansu().start()
    yield broker
    broker.stop()


@pytest.fixture
def fresh_tansu() -> Iterator[Tansu]:
    broker = Tansu().start()
    yield broker
    broker.stop()


@pytest.fixture
def now_local(park: Park) -> dt.datetime:
    return dt.datetime.now(park.tz).replace(microsecond=0)
