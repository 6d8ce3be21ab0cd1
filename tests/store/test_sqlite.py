"""SqliteStore: idempotent upserts, the queries the wall page and the evaluation make, and a
loop that keeps running while the database works."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from zoneinfo import ZoneInfo

import pytest

from park.reading import Reading, Value
from store import open_store
from store.base import Store, StoreUnavailable
from store.schema import Event, Result, StoredReading
from store.sqlite import SqliteStore

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)
AIR = "KM-AIR-KMXY"
STACK = "KM-GAS-YNDL-01"


def reading(site: str = AIR, minute: int = 0, seq: int = 0, pm25: float = 35.2, flag: str = "N") -> Reading:
    return Reading(schema=1, site=site, ts=T0 + dt.timedelta(minutes=minute), seq=seq, values={
        "PM2.5": Value(v=pm25, unit="ug/m3", flag=flag),
        "CO": Value(v=0.8, unit="mg/m3"),
    })


def hourly(site: str, hour: int, parameter: str, value: float | None, **extra) -> Result:
    return Result(measurement="hourly_mean", site=site, ts=T0 + dt.timedelta(hours=hour),
                  tags={"parameter": parameter},
                  fields={"value": value, "valid_minutes": 60, "valid": value is not None, **extra})


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore.open(tmp_path / "ecopark.db")
    yield s
    await s.close()


async def test_it_is_a_store(store):
    assert isinstance(store, Store)


async def test_writing_the_same_reading_twice_changes_nothing(store, tmp_path):
    await store.write_readings([reading()])
    first = await store.readings(AIR, T0, T0 + dt.timedelta(hours=1))
    await store.write_readings([reading()])
    await store.write_readings([reading(), reading()])
    assert await store.readings(AIR, T0, T0 + dt.timedelta(hours=1)) == first
    assert len(first) == 2
    with sqlite3.connect(tmp_path / "ecopark.db") as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (2,)


async def test_a_resent_reading_replaces_the_old_values(store):
    await store.write_readings([reading(pm25=35.2, flag="N")])
    await store.write_readings([reading(pm25=36.0, flag="M", seq=7)])
    rows = await store.readings(AIR, T0, T0 + dt.timedelta(minutes=1), parameter="PM2.5")
    assert rows == [StoredReading(site=AIR, ts=T0, parameter="PM2.5", value=36.0, unit="ug/m3",
                                  flag="M", zs=None, seq=7, interval="1min")]


async def test_readings_come_back_as_stored_oldest_first_in_utc(store):
    stack = Reading(schema=1, site=STACK, ts=T0, seq=3, interval="1h", values={
        "SO2": Value(v=20.5, unit="mg/m3", flag="N", zs=24.1)})
    await store.write_readings([reading(minute=2), reading(minute=0), reading(minute=1), stack])
    rows = await store.readings(AIR, T0, T0 + dt.timedelta(minutes=2))
    assert [(r.ts, r.parameter) for r in rows] == [
        (T0, "CO"), (T0, "PM2.5"), (T0 + dt.timedelta(minutes=1), "CO"), (T0 + dt.timedelta(minutes=1), "PM2.5")]
    assert rows[0].ts.tzinfo == dt.timezone.utc and rows[0].ts == T0
    assert await store.readings(STACK, T0, T0 + dt.timedelta(hours=1)) == [
        StoredReading(site=STACK, ts=T0, parameter="SO2", value=20.5, unit="mg/m3", flag="N", zs=24.1,
                      seq=3, interval="1h")]


async def test_range_is_start_inclusive_end_exclusive(store):
    await store.write_readings([reading(minute=m) for m in range(10)])
    rows = await store.readings(AIR, T0 + dt.timedelta(minutes=3), T0 + dt.timedelta(minutes=5), parameter="CO")
    assert [r.ts for r in rows] == [T0 + dt.timedelta(minutes=3), T0 + dt.timedelta(minutes=4)]


async def test_sub_second_timestamps_keep_their_microseconds(store):
    ts = dt.datetime(2026, 11, 25, 2, 0, 0, 123456, tzinfo=dt.timezone.utc)
    await store.write_readings([Reading(schema=1, site=AIR, ts=ts, seq=1, interval="rt",
                                        values={"O3": Value(v=80.0, unit="ug/m3")})])
    rows = await store.readings(AIR, ts, ts + dt.timedelta(microseconds=1))
    assert [r.ts for r in rows] == [ts]


async def test_writing_the_same_result_twice_changes_nothing(store):
    results = [hourly(AIR, 0, "PM2.5", 35.0), hourly(AIR, 0, "CO", 0.8)]
    await store.write_results(results)
    await store.write_results(results)
    got = await store.results("hourly_mean", T0, T0 + dt.timedelta(hours=1))
    assert sorted(got, key=lambda r: r.tags["parameter"]) == sorted(results, key=lambda r: r.tags["parameter"])


async def test_a_recomputed_result_replaces_the_old_one_with_its_field_types(store):
    await store.write_results([hourly(AIR, 0, "PM2.5", 35.0, exceedance_x=1.5)])
    recomputed = hourly(AIR, 0, "PM2.5", None)
    await store.write_results([recomputed])
    (got,) = await store.results("hourly_mean", T0, T0 + dt.timedelta(hours=1), site=AIR)
    assert got == recomputed
    assert got.fields == {"value": None, "valid_minutes": 60, "valid": False}
    assert type(got.fields["valid_minutes"]) is int and got.fields["valid"] is False


async def test_results_filter_by_measurement_site_and_range(store):
    await store.write_results([hourly(site, h, "PM2.5", 30.0 + h) for site in (AIR, "KM-AIR-B") for h in range(5)])
    await store.write_results([Result(measurement="aqi_hourly", site=AIR, ts=T0, fields={"aqi": 50})])
    got = await store.results("hourly_mean", T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=3), site=AIR)
    assert [(r.site, r.ts, r.fields["value"]) for r in got] == [
        (AIR, T0 + dt.timedelta(hours=1), 31.0), (AIR, T0 + dt.timedelta(hours=2), 32.0)]
    every_site = await store.results("hourly_mean", T0, T0 + dt.timedelta(hours=1))
    assert {r.site for r in every_site} == {AIR, "KM-AIR-B"}
    (aqi,) = await store.results("aqi_hourly", T0, T0 + dt.timedelta(hours=1))
    assert aqi.tags == {} and aqi.fields == {"aqi": 50}


async def test_latest_results_gives_the_newest_per_site_and_tags(store):
    older_last = [hourly(AIR, h, "PM2.5", 30.0 + h) for h in (3, 0, 2, 1)]  # written out of order
    await store.write_results(older_last)
    await store.write_results([hourly(AIR, h, "CO", 1.0 + h) for h in range(2)])
    await store.write_results([hourly("KM-AIR-B", 7, "PM2.5", 12.0)])
    moving = [Result(measurement="moving_mean", site=AIR, ts=T0 + dt.timedelta(hours=h),
                     tags={"parameter": "O3", "window": w}, fields={"value": float(h)})
              for h in range(3) for w in ("8h", "24h")]
    await store.write_results(moving)

    latest = await store.latest_results("hourly_mean")
    assert [(r.site, r.tags["parameter"], r.ts, r.fields["value"]) for r in latest] == [
        ("KM-AIR-B", "PM2.5", T0 + dt.timedelta(hours=7), 12.0),
        (AIR, "CO", T0 + dt.timedelta(hours=1), 2.0),
        (AIR, "PM2.5", T0 + dt.timedelta(hours=3), 33.0),
    ]
    assert [r.tags["parameter"] for r in await store.latest_results("hourly_mean", site=AIR)] == ["CO", "PM2.5"]
    assert await store.latest_results("hourly_mean", site="nowhere") == []
    latest_moving = await store.latest_results("moving_mean", site=AIR)
    assert {(r.tags["window"], r.ts) for r in latest_moving} == {
        ("8h", T0 + dt.timedelta(hours=2)), ("24h", T0 + dt.timedelta(hours=2))}


async def test_latest_results_uses_the_primary_key_not_a_scan(store, tmp_path):
    with sqlite3.connect(tmp_path / "ecopark.db") as conn:
        from store.sqlite import _SELECT_LATEST

        plan = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + _SELECT_LATEST, ("hourly_mean",)))
    assert "SCAN r" not in plan and "SCAN m" not in plan, plan


async def test_events_come_newest_first_and_upsert_by_id(store):
    events = [Event(id=f"exceedance/{STACK}/SO2/{h}", kind="exceedance", site=STACK,
                    ts=T0 + dt.timedelta(hours=h), severity="warning",
                    message=f"二氧化硫超标 SO2 exceedance {h}", data={"value": 120.0 + h, "limit": 100.0})
              for h in range(5)]
    await store.write_events(events)
    escalated = Event(id=events[1].id, kind="exceedance", site=STACK, ts=events[1].ts, severity="critical",
                      message="二氧化硫超标 (升级)", data={"value": 121.0, "limit": 100.0, "multiple": None})
    await store.write_events([escalated])
    got = await store.events()
    assert [e.ts for e in got] == [T0 + dt.timedelta(hours=h) for h in (4, 3, 2, 1, 0)]
    assert got[3] == escalated
    assert [e.id for e in await store.events(limit=2)] == [events[4].id, events[3].id]
    assert [e.id for e in await store.events(since=T0 + dt.timedelta(hours=3))] == [events[4].id, events[3].id]


async def test_freshness_is_the_newest_raw_reading_per_site(store):
    await store.write_readings([reading(minute=m) for m in (5, 1, 9, 3)])
    await store.write_readings([reading(site=STACK, minute=2)])
    assert await store.freshness() == {AIR: T0 + dt.timedelta(minutes=9), STACK: T0 + dt.timedelta(minutes=2)}


async def test_a_batch_of_many_rows_is_written_whole(store):
    readings = [reading(site=f"S{i % 7}", minute=i, seq=i, pm25=float(i)) for i in range(50_000)]
    await store.write_readings(readings)
    rows = await store.readings("S3", T0, T0 + dt.timedelta(days=100), parameter="PM2.5")
    assert len(rows) == len(range(3, 50_000, 7))
    assert [r.value for r in rows[:3]] == [3.0, 10.0, 17.0]
    results = [hourly(f"S{i % 7}", i, "PM2.5", float(i)) for i in range(30_000)]
    await store.write_results(results)
    assert len(await store.results("hourly_mean", T0, T0 + dt.timedelta(days=10_000))) == 30_000


async def test_reads_and_the_event_loop_keep_going_during_a_large_write(store):
    await store.write_readings([reading(minute=0)])
    big = [reading(site="BULK", minute=i, seq=i) for i in range(100_000)]
    writing = asyncio.create_task(store.write_readings(big))
    ticks = 0
    reads = []
    while not writing.done():
        reads.append(await store.readings(AIR, T0, T0 + dt.timedelta(minutes=1)))
        ticks += 1
        await asyncio.sleep(0)
    await writing
    assert ticks >= 2, "reads were served between the chunks of the write"
    assert all(len(r) == 2 for r in reads)
    assert len(await store.readings("BULK", T0, T0 + dt.timedelta(days=100), parameter="CO")) == 100_000


async def test_a_second_store_on_the_same_file_sees_the_writes(store, tmp_path):
    await store.write_readings([reading()])
    other = SqliteStore(tmp_path / "ecopark.db")
    try:
        assert len(await other.readings(AIR, T0, T0 + dt.timedelta(minutes=1))) == 2
    finally:
        await other.close()


async def test_an_unopenable_path_is_unavailable_with_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailable, match=r"cannot open SQLite store .*file/x.db") as info:
        SqliteStore.open(tmp_path / "file" / "x.db")
    assert "\n" not in str(info.value)


async def test_naive_timestamps_are_refused(store):
    with pytest.raises(ValueError, match="no UTC offset"):
        await store.readings(AIR, dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))


async def test_open_store_url_forms(tmp_path):
    assert str(tmp_path).startswith("/")
    for url, path in ((f"sqlite://{tmp_path}/a.db", f"{tmp_path}/a.db"),
                      (f"sqlite:///{tmp_path}/a.db", f"{tmp_path}/a.db"),
                      (f"{tmp_path}/b.db", f"{tmp_path}/b.db"),
                      ("sqlite::memory:", ":memory:")):
        s = open_store(url)
        assert isinstance(s, SqliteStore) and s.path == path
        await s.write_readings([reading()])
        assert len(await s.readings(AIR, T0, T0 + dt.timedelta(minutes=1))) == 2
        await s.close()
    with pytest.raises(ValueError, match=r"^store URL 'mysql://x/y': unknown scheme 'mysql'"):
        open_store("mysql://x/y")
