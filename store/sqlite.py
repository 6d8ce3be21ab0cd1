"""The embedded store: one SQLite file in WAL mode, driven from one worker thread.

``SqliteStore(path)`` implements ``store.base.Store``. Every SQLite call runs on a dedicated
single-thread executor that owns the only connection, so the asyncio loop never blocks on disk
and the connection is never shared between threads. Calls run in the order they were awaited.

Tables (all upserts on the primary key, so writing the same row twice changes nothing):

| table | primary key | holds |
|---|---|---|
| ``readings`` | (site, ts, parameter) | one row per parameter of a raw reading |
| ``results`` | (measurement, site, tags_key, ts) | tags as JSON, fields as a msgspec-JSON blob |
| ``events`` | id | kind, site, ts, severity, message, data as JSON |
| ``result_series`` | (measurement, site, tags_key) | every series seen: drives ``latest_results`` |
| ``reading_sites`` | site | every site seen: drives ``freshness`` |

Timestamps are stored as UTC epoch seconds (an integer when the time is a whole second, a float
otherwise — microseconds survive) and come back as aware ``datetime``s **in UTC**; convert with
``.astimezone(park.tz)`` for display. The offset a writer used is not kept: the instant is.

``latest_results`` and ``freshness`` are one index seek per series/site (``max(ts)`` on the
primary key) instead of a scan, so they stay fast after a year of data.

Large batches are written in chunks of ``WRITE_CHUNK_ROWS`` rows, one transaction each, so a
read awaited during a big write waits for one chunk, not the whole batch; a crash mid-batch
leaves a prefix written, which the caller's retry upserts again harmlessly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Final, Iterator, Sequence, TypeVar

import msgspec

from park.reading import Reading
from store.base import StoreUnavailable
from store.schema import Event, FieldValue, Result, StoredReading, tags_key

WRITE_CHUNK_ROWS: Final[int] = 20_000
# How long a writer waits for another process's lock before the call counts as "unavailable".
BUSY_TIMEOUT_MS: Final[int] = 5_000
# Page cache of the one connection: upserts into a year of data touch pages all over the
# primary-key b-trees; the default 2 MiB thrashes past ~1e5 rows.
CACHE_KIB: Final[int] = 64 * 1024

T = TypeVar("T")


class SqliteStore:
    """``store.base.Store`` on a SQLite file. ``path`` may be ``":memory:"`` (tests only).

    The constructor does not block: the file is opened on the worker thread, and an error there
    (unwritable directory, not a database) is raised by the first call. ``SqliteStore.open``
    opens eagerly and raises it at once.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._open_error: BaseException | None = None
        self._closed = False
        self._opened: Future[None] = self._executor.submit(self._open)

    @classmethod
    def open(cls, path: str | Path) -> "SqliteStore":
        """Open (creating the file and tables) and wait for it; raises ``StoreUnavailable``."""
        store = cls(path)
        store._opened.result()
        if store._open_error is not None:
            store._executor.shutdown(wait=False)
            raise store._open_error
        return store

    async def write_readings(self, readings: Sequence[Reading]) -> None:
        rows = [
            (r.site, ts, name, v.v, v.unit, v.flag, v.zs, r.seq, r.interval)
            for r in readings
            for ts in (_epoch(r.ts),)
            for name, v in r.values.items()
        ]
        sites = {r.site for r in readings}
        for chunk in _chunks(rows):
            await self._run(self._write_reading_rows, chunk, sites)
            sites = set()

    async def write_results(self, results: Sequence[Result]) -> None:
        rows = [
            (r.measurement, r.site, tags_key(r.tags), _epoch(r.ts),
             _encode(r.tags) if r.tags else "{}", _encode(r.fields))
            for r in results
        ]
        series = {row[:3] for row in rows}
        for chunk in _chunks(rows):
            await self._run(self._write_result_rows, chunk, series)
            series = set()

    async def write_events(self, events: Sequence[Event]) -> None:
        rows = [
            (e.id, e.kind, e.site, _epoch(e.ts), e.severity, e.message, _encode(e.data))
            for e in events
        ]
        for chunk in _chunks(rows):
            await self._run(self._execute_many, _UPSERT_EVENT, chunk)

    async def readings(self, site: str, start: dt.datetime, end: dt.datetime,
                       parameter: str | None = None) -> list[StoredReading]:
        if parameter is None:
            sql, args = _SELECT_READINGS, (site, _epoch(start), _epoch(end))
        else:
            sql, args = _SELECT_READINGS_OF_PARAMETER, (site, _epoch(start), _epoch(end), parameter)
        rows = await self._run(self._fetch, sql, args)
        return [
            StoredReading(site=site_, ts=_datetime(ts), parameter=p, value=value, unit=unit,
                          flag=flag, zs=zs, seq=seq, interval=interval)
            for site_, ts, p, value, unit, flag, zs, seq, interval in rows
        ]

    async def results(self, measurement: str, start: dt.datetime, end: dt.datetime,
                      site: str | None = None) -> list[Result]:
        if site is None:
            sql, args = _SELECT_RESULTS, (measurement, _epoch(start), _epoch(end))
        else:
            sql, args = _SELECT_RESULTS_OF_SITE, (measurement, site, _epoch(start), _epoch(end))
        return _results(measurement, await self._run(self._fetch, sql, args))

    async def latest_results(self, measurement: str, site: str | None = None) -> list[Result]:
        if site is None:
            sql, args = _SELECT_LATEST, (measurement,)
        else:
            sql, args = _SELECT_LATEST_OF_SITE, (measurement, site)
        return _results(measurement, await self._run(self._fetch, sql, args))

    async def events(self, limit: int = 50, since: dt.datetime | None = None) -> list[Event]:
        if since is None:
            sql, args = _SELECT_EVENTS, (limit,)
        else:
            sql, args = _SELECT_EVENTS_SINCE, (_epoch(since), limit)
        rows = await self._run(self._fetch, sql, args)
        return [
            Event(id=id_, kind=kind, site=site, ts=_datetime(ts), severity=severity,
                  message=message, data=_DATA_DECODER.decode(data))
            for id_, kind, site, ts, severity, message, data in rows
        ]

    async def freshness(self) -> dict[str, dt.datetime]:
        rows = await self._run(self._fetch, _SELECT_FRESHNESS, ())
        return {site: _datetime(ts) for site, ts in rows if ts is not None}

    async def close(self) -> None:
        """Close the connection (after calls already awaited); idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close)
        finally:
            self._executor.shutdown(wait=False)

    # -- worker-thread side ---------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError(f"SqliteStore {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._open_error is not None:
            raise self._open_error
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            translated = _translate(exc, self.path)
            if translated is exc:
                raise
            raise translated from exc

    def _open(self) -> None:
        try:
            if self.path != ":memory:" and not self.path.startswith("file:"):
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.executescript(_SCHEMA)
            self._conn = conn
        except (sqlite3.Error, OSError) as exc:
            self._open_error = StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}")

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA optimize")
            finally:
                self._conn.close()
                self._conn = None

    def _execute_many(self, sql: str, rows: list[tuple]) -> None:
        conn = self._connection()
        with _transaction(conn):
            conn.executemany(sql, rows)

    def _write_reading_rows(self, rows: list[tuple], sites: set[str]) -> None:
        conn = self._connection()
        with _transaction(conn):
            if sites:
                conn.executemany(_INSERT_SITE, [(s,) for s in sites])
            conn.executemany(_UPSERT_READING, rows)

    def _write_result_rows(self, rows: list[tuple], series: set[tuple[str, str, str]]) -> None:
        conn = self._connection()
        with _transaction(conn):
            if series:
                conn.executemany(_INSERT_SERIES, series)
            conn.executemany(_UPSERT_RESULT, rows)

    def _fetch(self, sql: str, args: tuple) -> list[tuple]:
        return self._connection().execute(sql, args).fetchall()

    def _connection(self) -> sqlite3.Connection:
        assert threading.current_thread().name.startswith("sqlite-store")
        if self._conn is None:
            raise RuntimeError(f"SqliteStore {self.path} is closed")
        return self._conn


# ---------------------------------------------------------------------------------------------

_SCHEMA: Final[str] = """
CREATE TABLE IF NOT EXISTS readings (
    site TEXT NOT NULL, ts INTEGER NOT NULL, parameter TEXT NOT NULL,
    value REAL NOT NULL, unit TEXT NOT NULL, flag TEXT NOT NULL, zs REAL,
    seq INTEGER NOT NULL, interval TEXT NOT NULL,
    PRIMARY KEY (site, ts, parameter)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reading_sites (site TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    measurement TEXT NOT NULL, site TEXT NOT NULL, tags_key TEXT NOT NULL, ts INTEGER NOT NULL,
    tags TEXT NOT NULL, fields BLOB NOT NULL,
    PRIMARY KEY (measurement, site, tags_key, ts)
) WITHOUT ROWID;
-- range queries over all sites of a measurement (the PK serves the per-site ones)
CREATE INDEX IF NOT EXISTS results_by_time ON results (measurement, ts);
CREATE TABLE IF NOT EXISTS result_series (
    measurement TEXT NOT NULL, site TEXT NOT NULL, tags_key TEXT NOT NULL,
    PRIMARY KEY (measurement, site, tags_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, site TEXT NOT NULL, ts INTEGER NOT NULL,
    severity TEXT NOT NULL, message TEXT NOT NULL, data TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_time ON events (ts);
"""

_UPSERT_READING: Final = """
INSERT INTO readings (site, ts, parameter, value, unit, flag, zs, seq, interval)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, ts, parameter) DO UPDATE SET
    value = excluded.value, unit = excluded.unit, flag = excluded.flag, zs = excluded.zs,
    seq = excluded.seq, interval = excluded.interval
"""
_INSERT_SITE: Final = "INSERT OR IGNORE INTO reading_sites (site) VALUES (?)"
_UPSERT_RESULT: Final = """
INSERT INTO results (measurement, site, tags_key, ts, tags, fields) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (measurement, site, tags_key, ts) DO UPDATE SET
    tags = excluded.tags, fields = excluded.fields
"""
_INSERT_SERIES: Final = "INSERT OR IGNORE INTO result_series (measurement, site, tags_key) VALUES (?, ?, ?)"
_UPSERT_EVENT: Final = """
INSERT INTO events (id, kind, site, ts, severity, message, data) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    kind = excluded.kind, site = excluded.site, ts = excluded.ts, severity = excluded.severity,
    message = excluded.message, data = excluded.data
"""

_READING_COLUMNS: Final = "site, ts, parameter, value, unit, flag, zs, seq, interval"
_SELECT_READINGS: Final = (
    f"SELECT {_READING_COLUMNS} FROM readings WHERE site = ? AND ts >= ? AND ts < ? ORDER BY ts, parameter")
_SELECT_READINGS_OF_PARAMETER: Final = (
    f"SELECT {_READING_COLUMNS} FROM readings WHERE site = ? AND ts >= ? AND ts < ? AND parameter = ? "
    "ORDER BY ts")

_SELECT_RESULTS: Final = (
    "SELECT site, ts, tags, fields FROM results WHERE measurement = ? AND ts >= ? AND ts < ? "
    "ORDER BY ts, site, tags_key")
_SELECT_RESULTS_OF_SITE: Final = (
    "SELECT site, ts, tags, fields FROM results WHERE measurement = ? AND site = ? AND ts >= ? AND ts < ? "
    "ORDER BY ts, tags_key")
# One primary-key seek per series for its newest ts.
_LATEST: Final = """
SELECT r.site, r.ts, r.tags, r.fields
FROM result_series AS s JOIN results AS r
  ON r.measurement = s.measurement AND r.site = s.site AND r.tags_key = s.tags_key
 AND r.ts = (SELECT max(ts) FROM results AS m
             WHERE m.measurement = s.measurement AND m.site = s.site AND m.tags_key = s.tags_key)
WHERE s.measurement = ? {site}
ORDER BY r.site, r.tags_key
"""
_SELECT_LATEST: Final = _LATEST.format(site="")
_SELECT_LATEST_OF_SITE: Final = _LATEST.format(site="AND s.site = ?")

_EVENT_COLUMNS: Final = "id, kind, site, ts, severity, message, data"
_SELECT_EVENTS: Final = f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY ts DESC, id LIMIT ?"
_SELECT_EVENTS_SINCE: Final = (
    f"SELECT {_EVENT_COLUMNS} FROM events WHERE ts >= ? ORDER BY ts DESC, id LIMIT ?")

_SELECT_FRESHNESS: Final = (
    "SELECT s.site, (SELECT max(ts) FROM readings AS r WHERE r.site = s.site) FROM reading_sites AS s")

# SQLite primary result codes that mean "try again later", not "your call is wrong".
_RETRYABLE_CODES: Final[frozenset[int]] = frozenset({
    5,   # SQLITE_BUSY
    6,   # SQLITE_LOCKED
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
})

_ENCODER: Final = msgspec.json.Encoder()
_FIELDS_DECODER: Final = msgspec.json.Decoder(dict[str, FieldValue])
_DATA_DECODER: Final = _FIELDS_DECODER
_TAGS_DECODER: Final = msgspec.json.Decoder(dict[str, str])
_UTC: Final = dt.timezone.utc


def _encode(obj: Any) -> str:
    return _ENCODER.encode(obj).decode()


def _epoch(ts: dt.datetime) -> int | float:
    """UTC epoch seconds; an int for whole seconds (compact in SQLite), else a float."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no UTC offset (the store keeps instants)")
    seconds = ts.timestamp()
    return int(seconds) if ts.microsecond == 0 else seconds


def _datetime(seconds: int | float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, _UTC)


def _results(measurement: str, rows: list[tuple]) -> list[Result]:
    return [
        Result(measurement=measurement, site=site, ts=_datetime(ts),
               fields=_FIELDS_DECODER.decode(fields),
               tags=_TAGS_DECODER.decode(tags) if tags != "{}" else {})
        for site, ts, tags, fields in rows
    ]


def _chunks(rows: list[tuple]) -> Iterator[list[tuple]]:
    if not rows:
        return
    for i in range(0, len(rows), WRITE_CHUNK_ROWS):
        yield rows[i:i + WRITE_CHUNK_ROWS]


class _transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def _translate(exc: sqlite3.Error, path: str) -> Exception:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _RETRYABLE_CODES:
        return StoreUnavailable(f"SQLite store {path}: {exc}")
    return exc
