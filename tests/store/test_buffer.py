"""BufferedStore: a store that is down for a while loses nothing and keeps the order; a buffer
that overflows drops the oldest, and says so."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from park.reading import Reading, Value
from store.base import Store, StoreRejected, StoreUnavailable
from store.buffer import BufferedStore
from store.schema import Event, Result
from store.sqlite import SqliteStore

T0 = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.timezone.utc)
AIR = "KM-AIR-KMXY"


class FlakyStore:
    """A store that records what it was given, and can be down until a moment or refuse a batch."""

    def __init__(self) -> None:
        self.written: list[tuple[str, object]] = []  # (kind, item), in the order received
        self.calls = 0
        self.failed_calls = 0
        self.down_until = 0.0
        self.refuse_seq: set[int] = set()
        self.closed = False

    def go_down(self, seconds: float) -> None:
        self.down_until = asyncio.get_running_loop().time() + seconds

    async def write_readings(self, readings):
        self._take("readings", readings)

    async def write_results(self, results):
        self._take("results", results)

    async def write_events(self, events):
        self._take("events", events)

    async def readings(self, site, start, end, parameter=None):
        return [("readings", site)]

    async def results(self, measurement, start, end, site=None):
        return []

    async def latest_results(self, measurement, site=None):
        return [("latest", measurement)]

    async def events(self, limit=50, since=None):
        return []

    async def freshness(self):
        return {AIR: T0}

    async def close(self):
        self.closed = True

    def _take(self, kind, items):
        self.calls += 1
        if asyncio.get_running_loop().time() < self.down_until:
            self.failed_calls += 1
            raise StoreUnavailable("fake store is down")
        if any(getattr(i, "seq", None) in self.refuse_seq for i in items):
            raise StoreRejected("fake store refuses this batch")
        self.written.extend((kind, i) for i in items)


def reading(seq: int) -> Reading:
    return Reading(schema=1, site=AIR, ts=T0 + dt.timedelta(minutes=seq), seq=seq,
                   values={"PM2.5": Value(v=float(seq), unit="ug/m3")})


def result(n: int) -> Result:
    return Result(measurement="hourly_mean", site=AIR, ts=T0 + dt.timedelta(hours=n),
                  tags={"parameter": "PM2.5"}, fields={"value": float(n)})


def event(n: int) -> Event:
    return Event(id=f"e{n}", kind="silent", site=AIR, ts=T0, severity="warning", message=f"无数据 {n}")


async def until(condition, timeout_s: float = 5.0) -> None:
    """Poll a condition in tiny steps (the fake store has no event to wait on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_it_is_a_store():
    assert isinstance(BufferedStore(FlakyStore()), Store)


async def test_writes_pass_straight_through_while_the_store_is_up():
    inner = FlakyStore()
    store = BufferedStore(inner)
    await store.write_readings([reading(1), reading(2)])
    await store.write_events([event(1)])
    assert inner.written == [("readings", reading(1)), ("readings", reading(2)), ("events", event(1))]
    assert (store.pending, store.dropped) == (0, 0)
    await store.close()
    assert inner.closed


async def test_a_store_down_for_a_while_loses_nothing_and_keeps_the_order(caplog):
    caplog.set_level(logging.INFO, logger="store.buffer")
    inner = FlakyStore()
    store = BufferedStore(inner, retry_initial_s=0.05, retry_max_s=0.2)
    loop = asyncio.get_running_loop()
    inner.go_down(1.5)  # "a minute", shortened
    expected = []
    slowest_write_s = 0.0
    n = 0
    while loop.time() < inner.down_until + 0.3:  # keep writing through the outage and after it
        kind, items = (("readings", [reading(n), reading(n + 1)]) if n % 3 == 0
                       else ("results", [result(n)]) if n % 3 == 1 else ("events", [event(n)]))
        started = loop.time()
        await getattr(store, f"write_{kind}")(items)
        slowest_write_s = max(slowest_write_s, loop.time() - started)
        expected.extend((kind, i) for i in items)
        n += 2
        await asyncio.sleep(0.01)
    assert await store.flush(timeout=5)
    assert inner.written == expected
    assert (store.pending, store.dropped, store.rejected) == (0, 0, 0)
    assert slowest_write_s < 0.1, "a write during the outage returns at once"
    # exponential backoff capped at 0.2 s: ≈ 0.05 + 0.1 + 0.2 × 7 over 1.5 s, not a retry per write
    assert 4 <= inner.failed_calls <= 12
    assert "store unavailable, buffering writes" in caplog.text
    assert "store available again" in caplog.text
    await store.close()


async def test_retried_batches_are_sent_together():
    inner = FlakyStore()
    store = BufferedStore(inner, retry_initial_s=0.05, retry_max_s=0.05)
    inner.go_down(0.2)
    for seq in range(100):
        await store.write_readings([reading(seq)])
    await store.write_events([event(1)])
    assert store.pending == 101
    calls_before = inner.calls
    assert await store.flush(timeout=5)
    assert [i.seq for k, i in inner.written if k == "readings"] == list(range(100))
    assert inner.calls - calls_before - inner.failed_calls <= 3  # 100 one-reading batches in one call


async def test_over_capacity_the_oldest_are_dropped_counted_and_logged(caplog):
    inner = FlakyStore()
    store = BufferedStore(inner, max_items=50, retry_initial_s=0.05, retry_max_s=0.1)
    inner.go_down(0.3)
    for seq in range(0, 80, 4):
        await store.write_readings([reading(s) for s in range(seq, seq + 4)])
    assert store.pending == 50
    assert store.dropped == 30
    # the first drop is logged at once, later ones at most every 10 s; the totals at recovery
    assert "store buffer full (50 items): dropped the 2 oldest (2 dropped in total)" in caplog.text
    assert await store.flush(timeout=5)
    assert [i.seq for _, i in inner.written] == list(range(30, 80))
    assert (store.pending, store.dropped) == (0, 30)
    assert "buffer flushed (30 dropped, 0 rejected in total)" in caplog.text
    await store.close()


async def test_a_single_batch_bigger_than_the_buffer_keeps_its_newest_items():
    inner = FlakyStore()
    store = BufferedStore(inner, max_items=10, retry_initial_s=0.05)
    inner.go_down(0.1)
    await store.write_readings([reading(s) for s in range(25)])
    assert (store.pending, store.dropped) == (10, 15)
    assert await store.flush(timeout=5)
    assert [i.seq for _, i in inner.written] == list(range(15, 25))


async def test_a_buffered_batch_the_store_refuses_is_counted_and_the_rest_goes_on(caplog):
    inner = FlakyStore()
    inner.refuse_seq = {5}
    store = BufferedStore(inner, retry_initial_s=0.05)
    inner.go_down(0.1)
    await store.write_readings([reading(1)])
    await store.write_events([event(2)])
    await store.write_readings([reading(5)])
    await store.write_results([result(7)])
    assert await store.flush(timeout=5)
    assert inner.written == [("readings", reading(1)), ("events", event(2)), ("results", result(7))]
    assert store.rejected == 1
    assert "store refused 1 buffered readings" in caplog.text


async def test_a_refused_direct_write_raises_to_the_caller():
    inner = FlakyStore()
    inner.refuse_seq = {5}
    store = BufferedStore(inner)
    with pytest.raises(StoreRejected):
        await store.write_readings([reading(5)])
    assert store.pending == 0


async def test_reads_pass_through():
    store = BufferedStore(FlakyStore())
    assert await store.readings(AIR, T0, T0) == [("readings", AIR)]
    assert await store.latest_results("aqi_hourly") == [("latest", "aqi_hourly")]
    assert await store.freshness() == {AIR: T0}


async def test_flush_times_out_while_the_store_stays_down_and_close_counts_the_loss(caplog):
    inner = FlakyStore()
    store = BufferedStore(inner, retry_initial_s=0.05)
    inner.go_down(60)
    await store.write_readings([reading(1), reading(2)])
    assert not await store.flush(timeout=0.1)
    await store.close(timeout_s=0.1)
    assert store.dropped == 2
    assert "closed with 2 items unwritten" in caplog.text
    assert inner.closed


async def test_buffered_sqlite_store_round_trip(tmp_path):
    store = BufferedStore(SqliteStore.open(tmp_path / "e.db"))
    await store.write_readings([reading(s) for s in range(3)])
    assert len(await store.readings(AIR, T0, T0 + dt.timedelta(hours=1))) == 3
    await store.close()
