"""A Store that rides out outages of the store behind it: bounded buffering, ordered retries.

``BufferedStore(inner)`` forwards every write to ``inner``. When ``inner`` raises
``StoreUnavailable`` the batch goes into an in-memory FIFO and a background task retries it
with exponential backoff (``retry_initial_s`` doubling up to ``retry_max_s``); while anything is
buffered, new writes queue behind it, so the inner store sees every batch in the order it was
written (readings, results and events share the one queue: an event never overtakes the
result it is about). Consecutive buffered batches of one kind are sent together, up to
``RETRY_BATCH_ITEMS`` items per call. Reads pass straight through (and do not see what is still
buffered).

What survives and what does not:
- **A store outage of a minute (or an hour)**: everything, as long as no more than ``max_items``
  readings + results + events pile up. Past that the *oldest* items are dropped, counted in
  ``dropped`` and logged (a warning at the first drop of an outage and at most every
  ``DROP_LOG_INTERVAL_S`` after, with the totals) — never silently.
- **A batch the store refuses** (``StoreRejected`` or any error other than ``StoreUnavailable``):
  raised to the caller when the write goes straight through; when it was buffered there is no
  caller left, so it is logged with the reason and counted in ``rejected``, and the queue moves on.
- **A process crash or kill**: the buffer is memory only, so it is lost. That is by design: the
  stream processors recompute from what is durable — Kafka (readings are acknowledged to their
  senders only after Kafka has them) and the readings already stored. ``close()`` flushes for up
  to ``timeout_s`` and counts anything left in ``dropped``, with an error log.

One item is one ``Reading`` (all its parameters), one ``Result`` or one ``Event``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from typing import Any, Final, Sequence

from park.reading import Reading
from store.base import Store, StoreUnavailable
from store.schema import Event, Result, StoredReading

RETRY_BATCH_ITEMS: Final[int] = 10_000
DROP_LOG_INTERVAL_S: Final[float] = 10.0

log = logging.getLogger(__name__)


class BufferedStore:
    """``store.base.Store`` wrapping ``inner``; see the module docstring for the guarantees.

    ``pending``: items buffered or being retried. ``dropped``: items given up because the buffer
    was full (or left at ``close()``). ``rejected``: buffered items the store refused.
    """

    def __init__(self, inner: Store, *, max_items: int = 100_000,
                 retry_initial_s: float = 0.5, retry_max_s: float = 30) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, not {max_items}")
        if not 0 < retry_initial_s <= retry_max_s:
            raise ValueError(f"need 0 < retry_initial_s ({retry_initial_s}) ≤ retry_max_s ({retry_max_s})")
        self.inner = inner
        self.max_items = max_items
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.dropped = 0
        self.rejected = 0
        self._queue: collections.deque[_Batch] = collections.deque()
        self._queued = 0  # items in _queue
        self._in_flight = 0  # items taken out of _queue by the retry task, not yet written
        self._lock = asyncio.Lock()
        self._drained = asyncio.Event()
        self._drained.set()
        self._retry_task: asyncio.Task[None] | None = None
        self._outage_started: float | None = None
        self._last_drop_log = -DROP_LOG_INTERVAL_S
        self._closed = False

    @property
    def pending(self) -> int:
        """Items not yet written to the inner store."""
        return self._queued + self._in_flight

    async def write_readings(self, readings: Sequence[Reading]) -> None:
        await self._write("readings", readings)

    async def write_results(self, results: Sequence[Result]) -> None:
        await self._write("results", results)

    async def write_events(self, events: Sequence[Event]) -> None:
        await self._write("events", events)

    async def readings(self, site: str, start: dt.datetime, end: dt.datetime,
                       parameter: str | None = None) -> list[StoredReading]:
        return await self.inner.readings(site, start, end, parameter)

    async def results(self, measurement: str, start: dt.datetime, end: dt.datetime,
                      site: str | None = None) -> list[Result]:
        return await self.inner.results(measurement, start, end, site)

    async def latest_results(self, measurement: str, site: str | None = None) -> list[Result]:
        return await self.inner.latest_results(measurement, site)

    async def events(self, limit: int = 50, since: dt.datetime | None = None) -> list[Event]:
        return await self.inner.events(limit, since)

    async def freshness(self) -> dict[str, dt.datetime]:
        return await self.inner.freshness()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything buffered is written; ``False`` if ``timeout`` (s) passed first."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = 5.0) -> None:
        """Flush for up to ``timeout_s``, stop retrying, close the inner store."""
        if self._closed:
            return
        self._closed = True
        if not await self.flush(timeout_s):
            lost = self.pending
            self.dropped += lost
            log.error("store buffer closed with %d items unwritten after %.1f s: they are lost "
                      "(dropped %d in total); the stream processors recompute them", lost, timeout_s, self.dropped)
        if self._retry_task is not None:
            self._retry_task.cancel()
            try:
                await self._retry_task
            except asyncio.CancelledError:
                pass
        self._queue.clear()
        self._queued = self._in_flight = 0
        await self.inner.close()

    # ---------------------------------------------------------------------------------------

    async def _write(self, kind: str, items: Sequence[Any]) -> None:
        if not items:
            return
        if self._closed:
            raise RuntimeError("BufferedStore is closed")
        if self.pending:  # an outage is going on: queue behind what is waiting, keep the order
            self._enqueue(kind, list(items))
            return
        async with self._lock:
            if self.pending:  # an earlier writer failed while we waited for the lock
                self._enqueue(kind, list(items))
                return
            try:
                await _send(self.inner, kind, items)
            except StoreUnavailable as exc:
                self._outage_started = time.monotonic()
                log.warning("store unavailable, buffering writes and retrying: %s", exc)
                self._enqueue(kind, list(items))

    def _enqueue(self, kind: str, items: list[Any]) -> None:
        overflow = self.pending + len(items) - self.max_items
        if overflow > 0:
            self._drop_oldest(overflow, kind, items)
            items = items[max(0, len(items) - (self.max_items - self.pending)):]
        if items:
            self._queue.append(_Batch(kind, items))
            self._queued += len(items)
            self._drained.clear()
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.get_running_loop().create_task(self._retry(), name="store-buffer-retry")

    def _drop_oldest(self, count: int, kind: str, incoming: list[Any]) -> None:
        """Drop ``count`` of the oldest queued items (in-flight ones are already on their way);
        what cannot be dropped from the queue is cut from the head of ``incoming`` by the caller."""
        to_drop = count
        while to_drop and self._queue:
            head = self._queue[0]
            if len(head.items) <= to_drop:
                self._queue.popleft()
                to_drop -= len(head.items)
                self._queued -= len(head.items)
            else:
                del head.items[:to_drop]
                self._queued -= to_drop
                to_drop = 0
        self.dropped += count
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            self._last_drop_log = now
            log.warning("store buffer full (%d items): dropped the %d oldest (%d dropped in total) "
                        "while the store is unavailable", self.max_items, count, self.dropped)

    async def _retry(self) -> None:
        delay = self.retry_initial_s
        while self._queue:
            await asyncio.sleep(delay)
            while self._queue:
                batch = self._take()
                try:
                    async with self._lock:
                        await _send(self.inner, batch.kind, batch.items)
                except StoreUnavailable as exc:
                    self._put_back(batch)
                    delay = min(delay * 2, self.retry_max_s)
                    log.info("store still unavailable (%d items pending, next try in %.1f s): %s",
                             self.pending, delay, exc)
                    break
                except Exception as exc:  # noqa: BLE001 — no caller to raise to: count and say so
                    self._in_flight = 0
                    self.rejected += len(batch.items)
                    log.error("store refused %d buffered %s (%d rejected in total): %s",
                              len(batch.items), batch.kind, self.rejected, exc)
                else:
                    self._in_flight = 0
                    delay = self.retry_initial_s
        if self._outage_started is not None:
            log.warning("store available again after %.1f s; buffer flushed (%d dropped, %d rejected in total)",
                        time.monotonic() - self._outage_started, self.dropped, self.rejected)
            self._outage_started = None
        self._drained.set()

    def _take(self) -> "_Batch":
        """Take consecutive batches of one kind off the head, up to ``RETRY_BATCH_ITEMS`` items."""
        first = self._queue.popleft()
        items = list(first.items)
        while self._queue and self._queue[0].kind == first.kind and len(items) + len(self._queue[0].items) <= RETRY_BATCH_ITEMS:
            items.extend(self._queue.popleft().items)
        self._queued -= len(items)
        self._in_flight = len(items)
        return _Batch(first.kind, items)

    def _put_back(self, batch: "_Batch") -> None:
        self._queue.appendleft(batch)
        self._queued += len(batch.items)
        self._in_flight = 0


class _Batch:
    __slots__ = ("kind", "items")

    def __init__(self, kind: str, items: list[Any]) -> None:
        self.kind = kind
        self.items = items


async def _send(store: Store, kind: str, items: Sequence[Any]) -> None:
    if kind == "readings":
        await store.write_readings(items)
    elif kind == "results":
        await store.write_results(items)
    else:
        await store.write_events(items)
