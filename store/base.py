"""The one interface the rest of ecopark uses to keep and read readings, results and events.

Two adapters implement it: ``store.sqlite.SqliteStore`` (embedded default) and
``store.influx.InfluxStore`` (InfluxDB 2, production). All methods are coroutines so that a
network store never blocks the Faust event loop; writes are batches and idempotent upserts.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, Sequence, runtime_checkable

from park.reading import Reading
from store.schema import Event, Result, StoredReading


class StoreUnavailable(ConnectionError):
    """The store cannot be reached right now; the caller retries (see ``store.buffer``)."""


class StoreRejected(ValueError):
    """The store refused a request (bad data, wrong credentials, missing bucket): retrying the
    same request will not help, so ``store.buffer`` does not retry it."""


@runtime_checkable
class Store(Protocol):
    async def write_readings(self, readings: Sequence[Reading]) -> None:
        """Keep raw readings (every parameter); a duplicate (site, ts, parameter) replaces the old row."""

    async def write_results(self, results: Sequence[Result]) -> None:
        """Upsert derived results by (measurement, site, tags, ts)."""

    async def write_events(self, events: Sequence[Event]) -> None:
        """Upsert events by id."""

    async def readings(self, site: str, start: dt.datetime, end: dt.datetime, parameter: str | None = None) -> list[StoredReading]:
        """Raw readings of a site with start ≤ ts < end, oldest first."""

    async def results(self, measurement: str, start: dt.datetime, end: dt.datetime, site: str | None = None) -> list[Result]:
        """Results of one measurement with start ≤ ts < end, oldest first."""

    async def latest_results(self, measurement: str, site: str | None = None) -> list[Result]:
        """The newest result per (site, tags) of a measurement."""

    async def events(self, limit: int = 50, since: dt.datetime | None = None) -> list[Event]:
        """The newest events first."""

    async def freshness(self) -> dict[str, dt.datetime]:
        """Per site: the timestamp of its newest raw reading."""

    async def close(self) -> None: ...
