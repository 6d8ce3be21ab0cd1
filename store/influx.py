"""The production store: InfluxDB 2 through influxdb-client's asyncio client (aiohttp).

``InfluxStore(url, token, org, bucket, timeout_s=10)`` implements ``store.base.Store``.

Writes are line protocol built with f-strings (``LineProtocol``; influxdb-client's ``Point`` is
≈ 10× slower, STACK-NOTES) with the same bytes ``Point.to_line_protocol()`` gives: tags and fields
sorted by key, keys and tag values escaped for ``,`` ``=`` space and ``\\n \\t \\r``, string
fields for ``"`` and ``\\``, whole floats written without ``.0``, non-finite floats left out.
Timestamps are **nanoseconds** since the epoch (``precision=ns``): the exact instant of every
``datetime`` survives (the SQLite store keeps microseconds too), so the same reading written to
either store has the same identity. Bodies go out in chunks of ``WRITE_CHUNK_LINES`` lines.

What is written where (InfluxDB identifies a point by measurement, tag set and time, so the tag
set must be exactly the identity the Store contract upserts on — anything that may change when a
row is re-sent is a field, or the rewrite would become a second series):

| measurement | tags | fields |
|---|---|---|
| ``reading`` | parameter, site | flag (str), interval (str), seq (int), unit (str), value (float), zs (float, when present) |
| a result's ``measurement`` (``store.schema.MEASUREMENTS``) | site + the result's tags | the result's fields, typed (bool, int, float, str); ``field_names`` and ``null_fields`` (JSON lists) |
| ``event`` | id, kind, site | data (JSON str), message (str), severity (str) |

- ``flag`` is a field, not a tag: a corrected reading re-sent with another flag must replace
  the old one, not sit beside it.
- InfluxDB has no null and never forgets a field on overwrite. ``field_names`` (every field of
  the result) and ``null_fields`` (those that were ``None`` or non-finite) let a rewrite with a
  different field set or a field turned ``None`` read back exactly as written; a field must keep
  one type for ever (InfluxDB refuses a batch that changes it: ``StoreRejected``).
- ``event`` uses ``id`` as a tag (one series per event: fine for a park's few thousand a year).
  Re-emitting an id at another ``ts`` leaves two points; reads keep the newest.
- Reads are Flux (``range`` → ``filter`` on ``_measurement``/``site`` → ``pivot`` of fields);
  timestamps come back as aware ``datetime``s in UTC.

Errors: no connection, timeouts, HTTP 5xx, 429 and 408 raise ``store.base.StoreUnavailable``
(``store.buffer`` retries those); other 4xx raise ``store.base.StoreRejected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
from typing import Any, AsyncIterator, Final, Iterable, Sequence

import aiohttp
import msgspec

from park.reading import Reading
from store.base import StoreRejected, StoreUnavailable
from store.schema import Event, FieldValue, Result, StoredReading

READING_MEASUREMENT: Final[str] = "reading"
EVENT_MEASUREMENT: Final[str] = "event"
WRITE_PRECISION: Final[str] = "ns"
# InfluxDB's guidance: batches of about 5,000 lines.
WRITE_CHUNK_LINES: Final[int] = 5_000
# Result bookkeeping fields (InfluxDB reserves keys starting with "_").
FIELD_NAMES: Final[str] = "field_names"
NULL_FIELDS: Final[str] = "null_fields"
# "All time" for latest/freshness/events: InfluxDB's range needs bounds; readings may be stamped
# a little in the future (park.reading.MAX_CLOCK_SKEW), so stop is far ahead, not now().
ALL_TIME_START: Final[str] = "1970-01-01T00:00:00Z"
ALL_TIME_STOP: Final[str] = "2100-01-01T00:00:00Z"
# HTTP statuses that mean "later", not "never".
RETRYABLE_STATUSES: Final[frozenset[int]] = frozenset({408, 429})


class InfluxStore:
    """``store.base.Store`` on an InfluxDB 2 bucket.

    ``url`` is the server's base URL (``http://host:8086``); ``token`` an API token with read and
    write access to ``bucket`` in ``org``; ``timeout_s`` bounds each HTTP request. The aiohttp
    session is created on first use, inside the running loop.
    """

    def __init__(self, url: str, token: str, org: str, bucket: str, *, timeout_s: float = 10) -> None:
        for name, value in (("url", url), ("token", token), ("org", org), ("bucket", bucket)):
            if not value:
                raise ValueError(f"InfluxStore needs a non-empty {name}")
        self.url = url.rstrip("/")
        self.token = token
        self.org = org
        self.bucket = bucket
        self.timeout_s = timeout_s
        self.line_protocol = LineProtocol()
        self._client: Any = None
        self._write_api: Any = None
        self._query_api: Any = None

    async def write_readings(self, readings: Sequence[Reading]) -> None:
        await self._write(self.line_protocol.readings(readings))

    async def write_results(self, results: Sequence[Result]) -> None:
        await self._write(self.line_protocol.results(results))

    async def write_events(self, events: Sequence[Event]) -> None:
        await self._write(self.line_protocol.events(events))

    async def readings(self, site: str, start: dt.datetime, end: dt.datetime,
                       parameter: str | None = None) -> list[StoredReading]:
        tables = await self._query(flux_readings(self.bucket, site, start, end, parameter))
        rows = [
            StoredReading(
                site=v["site"], ts=_utc(v["_time"]), parameter=v["parameter"], value=float(v["value"]),
                unit=v.get("unit") or "", flag=v.get("flag") or "N", zs=_optional_float(v.get("zs")),
                seq=int(v.get("seq") or 0), interval=v.get("interval") or "1min",
            )
            for table in tables for v in (record.values for record in table.records)
        ]
        rows.sort(key=lambda r: (r.ts, r.parameter))
        return rows

    async def results(self, measurement: str, start: dt.datetime, end: dt.datetime,
                      site: str | None = None) -> list[Result]:
        tables = await self._query(flux_results(self.bucket, measurement, start, end, site))
        results = [result for table in tables for result in _results_of(measurement, table)]
        results.sort(key=lambda r: (r.ts, r.site, sorted(r.tags.items())))
        return results

    async def latest_results(self, measurement: str, site: str | None = None) -> list[Result]:
        tables = await self._query(flux_latest_results(self.bucket, measurement, site))
        latest = [max(rows, key=lambda r: r.ts) for rows in (_results_of(measurement, t) for t in tables) if rows]
        latest.sort(key=lambda r: (r.site, sorted(r.tags.items())))
        return latest

    async def events(self, limit: int = 50, since: dt.datetime | None = None) -> list[Event]:
        tables = await self._query(flux_events(self.bucket, limit, since))
        seen: set[str] = set()
        events = []
        for table in tables:
            for record in table.records:
                v = record.values
                if v["id"] in seen:  # the same id re-emitted at another ts: keep the newest
                    continue
                seen.add(v["id"])
                events.append(Event(
                    id=v["id"], kind=v["kind"], site=v["site"], ts=_utc(v["_time"]),
                    severity=v.get("severity") or "info", message=v.get("message") or "",
                    data=_DATA_DECODER.decode(v["data"]) if v.get("data") else {},
                ))
        events.sort(key=lambda e: e.ts, reverse=True)
        return events

    async def freshness(self) -> dict[str, dt.datetime]:
        tables = await self._query(flux_freshness(self.bucket))
        newest: dict[str, dt.datetime] = {}
        for table in tables:
            for record in table.records:
                site, ts = record.values["site"], _utc(record.values["_time"])
                if site not in newest or ts > newest[site]:
                    newest[site] = ts
        return newest

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -- HTTP -----------------------------------------------------------------------------------

    async def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        api = self._apis()[0]
        for i in range(0, len(lines), WRITE_CHUNK_LINES):
            body = "\n".join(lines[i:i + WRITE_CHUNK_LINES]).encode()
            async with self._errors("write"):
                await api.write(bucket=self.bucket, org=self.org, record=body, write_precision=WRITE_PRECISION)

    async def _query(self, flux: str) -> list[Any]:
        api = self._apis()[1]
        async with self._errors("query"):
            text = await api.query_raw(flux, org=self.org)
        try:
            return _flux_tables(text)
        except Exception as exc:  # an error table in the answer (FluxQueryException) or a bad CSV
            raise StoreRejected(f"InfluxDB {self.url} query failed: {exc}".replace("\n", " ")) from exc

    def _apis(self) -> tuple[Any, Any]:
        if self._client is None:
            from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

            self._client = InfluxDBClientAsync(url=self.url, token=self.token, org=self.org,
                                               timeout=int(self.timeout_s * 1000))
            self._write_api = self._client.write_api()
            self._query_api = self._client.query_api()
        return self._write_api, self._query_api

    @contextlib.asynccontextmanager
    async def _errors(self, action: str) -> AsyncIterator[None]:
        from influxdb_client.client.exceptions import InfluxDBError

        try:
            yield
        except InfluxDBError as exc:
            status = getattr(exc.response, "status", None) if exc.response is not None else None
            reason = f"InfluxDB {self.url} {action} failed (HTTP {status}): {exc.message}"
            if status is None or status >= 500 or status in RETRYABLE_STATUSES:
                raise StoreUnavailable(reason) from exc
            raise StoreRejected(reason) from exc
        except asyncio.TimeoutError as exc:
            raise StoreUnavailable(f"InfluxDB {self.url} {action} timed out after {self.timeout_s:g} s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise StoreUnavailable(f"InfluxDB {self.url} unreachable ({action}): {exc}") from exc


class LineProtocol:
    """The f-string fast path from readings, results and events to line-protocol lines.

    Escaped tag values and keys are cached (sites and parameters repeat on every line).
    """

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._strings: dict[str, str] = {}
        self._names: dict[tuple[str, ...], str] = {}  # field names of a result → their JSON list

    def readings(self, readings: Iterable[Reading]) -> list[str]:
        # The hot path (every parameter of every raw reading): cache lookups and float
        # formatting are inlined; ``_tag_value``/``_string`` only run on a cache miss.
        tag_values, strings = self._keys, self._strings
        isfinite = math.isfinite
        lines: list[str] = []
        append = lines.append
        for r in readings:
            site = tag_values.get(r.site) or self._tag_value(r.site)
            interval = strings.get(r.interval) or self._string(r.interval)
            ns = epoch_ns(r.ts)
            for name, v in r.values.items():
                x = v.v
                if not isfinite(x):
                    raise ValueError(f"{r.site} {name}: value {x} cannot be stored (InfluxDB has no NaN/inf)")
                value = repr(x)
                if value[-2:] == ".0":
                    value = value[:-2]
                zs = v.zs
                if zs is None or not isfinite(zs):
                    zs_field = ""
                else:
                    zs_field = repr(zs)
                    zs_field = f",zs={zs_field[:-2] if zs_field[-2:] == '.0' else zs_field}"
                append(
                    f'reading,parameter={tag_values.get(name) or self._tag_value(name)},site={site} '
                    f'flag="{strings.get(v.flag) or self._string(v.flag)}",interval="{interval}",seq={r.seq}i,'
                    f'unit="{strings.get(v.unit) or self._string(v.unit)}",value={value}{zs_field} {ns}'
                )
        return lines

    def results(self, results: Iterable[Result]) -> list[str]:
        lines = []
        for r in results:
            tags = dict(r.tags)
            if "site" in tags:
                raise ValueError(f"{r.measurement} result of {r.site}: 'site' cannot also be a tag")
            tags["site"] = r.site
            if FIELD_NAMES in r.fields or NULL_FIELDS in r.fields:
                raise ValueError(f"{r.measurement}: field names {FIELD_NAMES}/{NULL_FIELDS} are reserved by the store")
            fields: dict[str, FieldValue] = {}
            nulls = []
            for name, value in r.fields.items():
                if value is None or (isinstance(value, float) and not math.isfinite(value)):
                    nulls.append(name)
                else:
                    fields[name] = value
            names = tuple(r.fields)
            names_json = self._names.get(names)
            if names_json is None:
                if len(self._names) > _CACHE_MAX:
                    self._names.clear()
                names_json = self._names[names] = _JSON.encode(names).decode()
            fields[FIELD_NAMES] = names_json
            fields[NULL_FIELDS] = _JSON.encode(nulls).decode() if nulls else "[]"
            lines.append(f"{self._key(r.measurement, measurement=True)}{self._tags(tags)} "
                         f"{self._fields(fields)} {epoch_ns(r.ts)}")
        return lines

    def events(self, events: Iterable[Event]) -> list[str]:
        string = self._string
        return [
            f"event{self._tags({'id': e.id, 'kind': e.kind, 'site': e.site})} "
            f'data="{_escape_string(_JSON.encode(e.data).decode())}",message="{_escape_string(e.message)}",'
            f'severity="{string(e.severity)}" {epoch_ns(e.ts)}'
            for e in events
        ]

    def _tags(self, tags: dict[str, str]) -> str:
        parts = []
        for k in sorted(tags):
            value = tags[k]
            if not value:
                raise ValueError(f"tag {k!r} is empty (line protocol cannot carry an empty tag value)")
            parts.append(f",{self._key(k)}={self._tag_value(value)}")
        return "".join(parts)

    def _fields(self, fields: dict[str, FieldValue]) -> str:
        parts = []
        for k in sorted(fields):
            value = fields[k]
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int):
                text = f"{value}i"
            elif isinstance(value, float):
                text = _float(value)
            elif isinstance(value, str):
                text = f'"{self._strings.get(value) or self._string(value)}"'
            else:
                raise ValueError(f"field {k!r}: {type(value).__name__} cannot be stored in InfluxDB")
            parts.append(f"{self._key(k)}={text}")
        return ",".join(parts)

    def _key(self, text: str, measurement: bool = False) -> str:
        if measurement:
            return text.translate(_ESCAPE_MEASUREMENT)
        escaped = self._keys.get(text)
        if escaped is None:
            if len(self._keys) > _CACHE_MAX:
                self._keys.clear()
            escaped = self._keys[text] = text.translate(_ESCAPE_KEY)
        return escaped

    def _tag_value(self, text: str) -> str:
        escaped = self._keys.get(text)
        if escaped is None:
            if len(self._keys) > _CACHE_MAX:
                self._keys.clear()
            escaped = text.translate(_ESCAPE_KEY)
            if escaped.endswith("\\"):  # as influxdb-client does: a trailing \ would escape the separator
                escaped += " "
            self._keys[text] = escaped
        return escaped

    def _string(self, text: str) -> str:
        escaped = self._strings.get(text)
        if escaped is None:
            if len(self._strings) > _CACHE_MAX:
                self._strings.clear()
            escaped = self._strings[text] = _escape_string(text)
        return escaped


def epoch_ns(ts: dt.datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware datetime (exact)."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no UTC offset (the store keeps instants)")
    return (ts - _EPOCH) // _MICROSECOND * 1000


def flux_readings(bucket: str, site: str, start: dt.datetime, end: dt.datetime, parameter: str | None = None) -> str:
    where = f"r._measurement == {_flux_string(READING_MEASUREMENT)} and r.site == {_flux_string(site)}"
    if parameter is not None:
        where += f" and r.parameter == {_flux_string(parameter)}"
    return (f"from(bucket: {_flux_string(bucket)})\n"
            f"  |> range(start: {flux_time(start)}, stop: {flux_time(end)})\n"
            f"  |> filter(fn: (r) => {where})\n"
            f"  |> {_PIVOT}")


def flux_results(bucket: str, measurement: str, start: dt.datetime, end: dt.datetime, site: str | None = None) -> str:
    return (f"from(bucket: {_flux_string(bucket)})\n"
            f"  |> range(start: {flux_time(start)}, stop: {flux_time(end)})\n"
            f"  |> filter(fn: (r) => {_measurement_and_site(measurement, site)})\n"
            f"  |> {_PIVOT}")


def flux_latest_results(bucket: str, measurement: str, site: str | None = None) -> str:
    # last() per field series is pushed down to storage; the newest pivoted row per series wins.
    return (f"from(bucket: {_flux_string(bucket)})\n"
            f"  |> range(start: {ALL_TIME_START}, stop: {ALL_TIME_STOP})\n"
            f"  |> filter(fn: (r) => {_measurement_and_site(measurement, site)})\n"
            f"  |> last()\n"
            f"  |> {_PIVOT}")


def flux_events(bucket: str, limit: int, since: dt.datetime | None = None) -> str:
    start = flux_time(since) if since is not None else ALL_TIME_START
    return (f"from(bucket: {_flux_string(bucket)})\n"
            f"  |> range(start: {start}, stop: {ALL_TIME_STOP})\n"
            f"  |> filter(fn: (r) => r._measurement == {_flux_string(EVENT_MEASUREMENT)})\n"
            f"  |> {_PIVOT}\n"
            f"  |> group()\n"
            f"  |> sort(columns: [\"_time\"], desc: true)\n"
            f"  |> limit(n: {int(limit)})")


def flux_freshness(bucket: str) -> str:
    return (f"from(bucket: {_flux_string(bucket)})\n"
            f"  |> range(start: {ALL_TIME_START}, stop: {ALL_TIME_STOP})\n"
            f"  |> filter(fn: (r) => r._measurement == {_flux_string(READING_MEASUREMENT)} and r._field == \"value\")\n"
            f"  |> last()\n"
            f"  |> keep(columns: [\"_time\", \"site\"])")


def flux_time(ts: dt.datetime) -> str:
    """An RFC 3339 UTC time literal for Flux (microseconds when present)."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no UTC offset")
    utc = ts.astimezone(_UTC)
    fraction = f".{utc.microsecond:06d}" if utc.microsecond else ""
    return f"{utc:%Y-%m-%dT%H:%M:%S}{fraction}Z"


# ---------------------------------------------------------------------------------------------

_ESCAPE_MEASUREMENT: Final = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY: Final = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING: Final = str.maketrans({'"': r"\"", "\\": r"\\"})
_CACHE_MAX: Final[int] = 100_000
_PIVOT: Final[str] = 'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
# Columns of a pivoted table that are neither tags nor fields.
_NOT_TAGS: Final[frozenset[str]] = frozenset({"result", "table", "_start", "_stop", "_time", "_measurement", "_field", "site"})
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
_UTC: Final = dt.timezone.utc
_JSON: Final = msgspec.json.Encoder()
_DATA_DECODER: Final = msgspec.json.Decoder(dict[str, FieldValue])
_NAMES_DECODER: Final = msgspec.json.Decoder(list[str])


def _float(x: float) -> str:
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def _escape_string(text: str) -> str:
    return text.translate(_ESCAPE_STRING)


def _flux_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


def _measurement_and_site(measurement: str, site: str | None) -> str:
    where = f"r._measurement == {_flux_string(measurement)}"
    if site is not None:
        where += f" and r.site == {_flux_string(site)}"
    return where


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.astimezone(_UTC)


def _optional_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _flux_tables(text: str) -> list[Any]:
    """Annotated CSV → influxdb-client ``FluxTable``s, with the client's own (sync) parser.

    The client's async parser needs ``aiocsv``, which ecopark does not depend on; the response
    is read whole by ``query_raw`` and parsed here instead.
    """
    from influxdb_client.client.flux_csv_parser import FluxCsvParser, FluxSerializationMode

    parser = FluxCsvParser(response=_ReadResponse(text.encode()), serialization_mode=FluxSerializationMode.tables)
    for _ in parser.generator():
        pass
    return list(parser.table_list())


class _ReadResponse:
    """What FluxCsvParser accepts as an already-read HTTP response."""

    closed = True

    def __init__(self, data: bytes) -> None:
        self.data = data

    def close(self) -> None:
        pass


def _results_of(measurement: str, table: Any) -> list[Result]:
    tag_columns = [c.label for c in table.columns if c.group and c.label not in _NOT_TAGS]
    field_columns = [c.label for c in table.columns if not c.group and c.label not in _NOT_TAGS]
    results = []
    for record in table.records:
        v = record.values
        names = v.get(FIELD_NAMES)
        if names is None:  # written by someone else: every non-null column is a field
            fields = {k: v[k] for k in field_columns if v.get(k) is not None}
        else:
            nulls = set(_NAMES_DECODER.decode(v.get(NULL_FIELDS) or "[]"))
            fields = {k: None if k in nulls else v.get(k) for k in _NAMES_DECODER.decode(names)}
        tags = {k: v[k] for k in tag_columns if v.get(k) is not None}
        results.append(Result(measurement=measurement, site=v["site"], ts=_utc(v["_time"]),
                              fields=fields, tags=tags))
    return results
