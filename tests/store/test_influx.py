"""InfluxStore against a local fake InfluxDB 2 that records every request exactly.

No InfluxDB server can run on these machines, so the adapter is held to the wire: the exact
write requests (path, org/bucket/precision, token, line-protocol bytes), the exact Flux text,
and its reading of InfluxDB 2's annotated-CSV answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from influxdb_client import Point

from park.reading import Reading, Value
from store import open_store
from store.base import Store, StoreRejected, StoreUnavailable
from store.influx import InfluxStore, LineProtocol
from store.schema import Event, Result, StoredReading

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)  # 2026-11-25T02:00:00Z
T0_NS = 1795572000_000000000
AIR = "KM-AIR-KMXY"
STACK = "KM-GAS-YNDL-01"
TOKEN = "secret-token"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def flux(self) -> str:
        return json.loads(self.body)["query"]


@dataclass
class FakeInflux:
    """Answers like InfluxDB 2: 204 to writes, annotated CSV to queries; or what a test queues."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    answers: list[tuple[int, str, str]] = field(default_factory=list)  # (status, content type, body)
    hold: asyncio.Event | None = None

    def answer_csv(self, text: str) -> None:
        self.answers.append((200, "text/csv", text))

    def answer_error(self, status: int, message: str) -> None:
        code = {400: "invalid", 401: "unauthorized", 404: "not found", 503: "unavailable"}.get(status, "internal error")
        self.answers.append((status, "application/json", json.dumps({"code": code, "message": message})))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Recorded(request.method, request.path, dict(request.query),
                                      dict(request.headers), body))
        if self.hold is not None:
            await self.hold.wait()
        if self.answers:
            status, content_type, text = self.answers.pop(0)
            return web.Response(status=status, body=text.encode(), content_type=content_type, charset="utf-8")
        if request.path == "/api/v2/write":
            return web.Response(status=204)
        return web.Response(status=200, body=b"\r\n", content_type="text/csv", charset="utf-8")


@pytest.fixture
async def fake():
    fake = FakeInflux()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def store(fake):
    s = InfluxStore(fake.url, TOKEN, "kmetdz", "ecopark", timeout_s=2)
    yield s
    await s.close()


def annotated_csv(*tables: tuple[list[tuple[str, str, bool]], list[list[str]]]) -> str:
    """InfluxDB 2's annotated CSV: one annotation block per schema, tables numbered, CRLF."""
    lines: list[str] = []
    previous = None
    for index, (columns, rows) in enumerate(tables):
        if columns != previous:
            if previous is not None:
                lines.append("")
            lines.append(",".join(["#datatype", "string", "long"] + [t for _, t, _ in columns]))
            lines.append(",".join(["#group", "false", "false"] + ["true" if g else "false" for _, _, g in columns]))
            lines.append(",".join(["#default", "_result", ""] + [""] * len(columns)))
            lines.append(",".join(["", "result", "table"] + [n for n, _, _ in columns]))
            previous = columns
        lines.extend(",".join(["", "", str(index)] + row) for row in rows)
    return "\r\n".join(lines) + "\r\n\r\n"


RANGE = [("_start", "dateTime:RFC3339", True), ("_stop", "dateTime:RFC3339", True)]


def reading(site: str = AIR, minute: int = 0) -> Reading:
    return Reading(schema=1, site=site, ts=T0 + dt.timedelta(minutes=minute), seq=4711, values={
        "PM2.5": Value(v=35.2, unit="ug/m3"),
        "CO": Value(v=0.8, unit="mg/m3", flag="M"),
    })


# -- writes ------------------------------------------------------------------------------------

async def test_it_is_a_store(store):
    assert isinstance(store, Store)


async def test_readings_are_written_as_exact_line_protocol_with_the_token(fake, store):
    stack = Reading(schema=1, site=STACK, ts=T0 + dt.timedelta(hours=1), seq=9, interval="1h",
                    values={"SO2": Value(v=20.0, unit="mg/m3", zs=24.125)})
    await store.write_readings([reading(), stack])
    (request,) = fake.requests
    assert (request.method, request.path) == ("POST", "/api/v2/write")
    assert request.query == {"org": "kmetdz", "bucket": "ecopark", "precision": "ns"}
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert request.headers["Content-Type"].startswith("text/plain")
    assert request.body == (
        b'reading,parameter=PM2.5,site=KM-AIR-KMXY flag="N",interval="1min",seq=4711i,unit="ug/m3",value=35.2 '
        b"1795572000000000000\n"
        b'reading,parameter=CO,site=KM-AIR-KMXY flag="M",interval="1min",seq=4711i,unit="mg/m3",value=0.8 '
        b"1795572000000000000\n"
        b'reading,parameter=SO2,site=KM-GAS-YNDL-01 flag="N",interval="1h",seq=9i,unit="mg/m3",value=20,zs=24.125 '
        b"1795575600000000000"
    )


async def test_results_carry_typed_fields_and_the_field_set(fake, store):
    result = Result(measurement="compliance_hourly", site=STACK, ts=T0, tags={"parameter": "SO2"},
                    fields={"value": 120.5, "limit": 100.0, "compliant": False, "exceedance_multiple": 0.205,
                            "valid_minutes": 60, "note": None})
    await store.write_results([result])
    assert fake.requests[0].body == (
        b'compliance_hourly,parameter=SO2,site=KM-GAS-YNDL-01 compliant=false,exceedance_multiple=0.205,'
        b'field_names="[\\"value\\",\\"limit\\",\\"compliant\\",\\"exceedance_multiple\\",\\"valid_minutes\\",\\"note\\"]",'
        b'limit=100,null_fields="[\\"note\\"]",valid_minutes=60i,value=120.5 1795572000000000000'
    )


async def test_spaces_commas_and_equals_in_tags_are_escaped(fake, store):
    odd = Result(measurement="moving mean,x", site="KM AIR,1=2", ts=T0,
                 tags={"parameter": "PM2.5", "window": "8 h,=x"}, fields={"value": 1.5, "label": 'a "b" \\ c'})
    await store.write_results([odd])
    assert fake.requests[0].body == (
        rb'moving\ mean\,x,parameter=PM2.5,site=KM\ AIR\,1\=2,window=8\ h\,\=x '
        rb'field_names="[\"value\",\"label\"]",label="a \"b\" \\ c",null_fields="[]",value=1.5 1795572000000000000'
    )


async def test_chinese_event_messages_go_out_as_utf8(fake, store):
    event = Event(id="exceedance/KM-GAS-YNDL-01/SO2/2026112510", kind="exceedance", site=STACK, ts=T0,
                  severity="critical", message='二氧化硫超标 1.2 倍 (SO2 "exceeds" 100 mg/m³)',
                  data={"value": 120.5, "limit": 100.0, "note": "限值"})
    await store.write_events([event])
    expected = (
        'event,id=exceedance/KM-GAS-YNDL-01/SO2/2026112510,kind=exceedance,site=KM-GAS-YNDL-01 '
        'data="{\\"value\\":120.5,\\"limit\\":100.0,\\"note\\":\\"限值\\"}",'
        'message="二氧化硫超标 1.2 倍 (SO2 \\"exceeds\\" 100 mg/m³)",severity="critical" 1795572000000000000'
    )
    assert fake.requests[0].body == expected.encode("utf-8")


async def test_the_fast_path_gives_the_bytes_influxdb_client_point_gives():
    lp = LineProtocol()
    nasty = "KM AIR,=\\"
    r = Reading(schema=1, site=nasty, ts=T0, seq=1, values={"PM 2,5": Value(v=35.0, unit='u"g\\', zs=1e-05)})
    point = (Point("reading").tag("site", nasty).tag("parameter", "PM 2,5").field("value", 35.0)
             .field("zs", 1e-05).field("flag", "N").field("unit", 'u"g\\').field("seq", 1)
             .field("interval", "1min").time(T0))
    assert lp.readings([r]) == [point.to_line_protocol()]
    res = Result(measurement="aqi hourly", site=nasty, ts=T0 + dt.timedelta(microseconds=7),
                 fields={"aqi": 151, "category": "中度污染", "primary": "PM2.5,O3", "valid": True, "x=y z": -0.5})
    p = Point("aqi hourly").tag("site", nasty).time(T0 + dt.timedelta(microseconds=7))
    for k, v in {**res.fields, "field_names": json.dumps(list(res.fields), ensure_ascii=False, separators=(",", ":")),
                 "null_fields": "[]"}.items():
        p.field(k, v)
    assert lp.results([res]) == [p.to_line_protocol()]


async def test_big_batches_go_out_in_chunks_of_5000_lines(fake, store):
    await store.write_readings([reading(minute=m) for m in range(6_000)])  # 12,000 lines
    assert [r.body.count(b"\n") + 1 for r in fake.requests] == [5_000, 5_000, 2_000]
    assert fake.requests[-1].body.endswith(f"{T0_NS + 5_999 * 60 * 10**9}".encode())


async def test_nothing_to_write_sends_nothing(fake, store):
    await store.write_readings([])
    await store.write_events([])
    assert fake.requests == []


# -- errors ------------------------------------------------------------------------------------

async def test_503_is_store_unavailable(fake, store):
    fake.answer_error(503, "service unavailable")
    with pytest.raises(StoreUnavailable, match=r"HTTP 503.*service unavailable"):
        await store.write_readings([reading()])
    fake.answer_error(503, "service unavailable")
    with pytest.raises(StoreUnavailable):
        await store.freshness()


async def test_429_is_store_unavailable(fake, store):
    fake.answer_error(429, "too many requests")
    with pytest.raises(StoreUnavailable):
        await store.write_events([Event(id="a", kind="silent", site=AIR, ts=T0, severity="warning", message="m")])


async def test_a_refused_batch_is_store_rejected_not_retried(fake, store):
    fake.answer_error(400, 'partial write: field type conflict: input field "value" on measurement "reading" is type integer')
    with pytest.raises(StoreRejected, match=r"HTTP 400.*field type conflict") as info:
        await store.write_readings([reading()])
    assert not isinstance(info.value, StoreUnavailable)
    fake.answer_error(401, "unauthorized access")
    with pytest.raises(StoreRejected, match="HTTP 401"):
        await store.events()


async def test_no_server_is_store_unavailable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    store = InfluxStore(f"http://127.0.0.1:{port}", TOKEN, "kmetdz", "ecopark", timeout_s=2)
    try:
        with pytest.raises(StoreUnavailable, match=f"InfluxDB http://127.0.0.1:{port} unreachable"):
            await store.write_readings([reading()])
    finally:
        await store.close()


async def test_a_slow_server_is_store_unavailable(fake):
    fake.hold = asyncio.Event()
    store = InfluxStore(fake.url, TOKEN, "kmetdz", "ecopark", timeout_s=0.3)
    try:
        with pytest.raises(StoreUnavailable, match="timed out after 0.3 s"):
            await store.write_readings([reading()])
    finally:
        fake.hold.set()
        await store.close()


# -- reads -------------------------------------------------------------------------------------

READING_COLUMNS = RANGE + [
    ("_time", "dateTime:RFC3339", False), ("_measurement", "string", True), ("parameter", "string", True),
    ("site", "string", True), ("flag", "string", False), ("interval", "string", False), ("seq", "long", False),
    ("unit", "string", False), ("value", "double", False), ("zs", "double", False),
]


async def test_readings_query_and_answer(fake, store):
    start, stop = "2026-11-25T02:00:00Z", "2026-11-25T03:00:00Z"
    fake.answer_csv(annotated_csv(
        (READING_COLUMNS, [
            [start, stop, "2026-11-25T02:00:00Z", "reading", "CO", AIR, "M", "1min", "4711", "mg/m3", "0.8", ""],
            [start, stop, "2026-11-25T02:01:00Z", "reading", "CO", AIR, "N", "1min", "4712", "mg/m3", "0.9", ""],
        ]),
        (READING_COLUMNS, [
            [start, stop, "2026-11-25T02:00:00Z", "reading", "PM2.5", AIR, "N", "1min", "4711", "ug/m3", "35.2", "36"],
        ]),
    ))
    rows = await store.readings(AIR, T0, T0 + dt.timedelta(hours=1))
    (request,) = fake.requests
    assert (request.method, request.path, request.query) == ("POST", "/api/v2/query", {"org": "kmetdz"})
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert request.flux == (
        'from(bucket: "ecopark")\n'
        "  |> range(start: 2026-11-25T02:00:00Z, stop: 2026-11-25T03:00:00Z)\n"
        '  |> filter(fn: (r) => r._measurement == "reading" and r.site == "KM-AIR-KMXY")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    assert json.loads(request.body)["dialect"]["annotations"] == ["datatype", "group", "default"]
    utc = dt.timezone.utc
    assert rows == [
        StoredReading(site=AIR, ts=dt.datetime(2026, 11, 25, 2, 0, tzinfo=utc), parameter="CO", value=0.8,
                      unit="mg/m3", flag="M", zs=None, seq=4711, interval="1min"),
        StoredReading(site=AIR, ts=dt.datetime(2026, 11, 25, 2, 0, tzinfo=utc), parameter="PM2.5", value=35.2,
                      unit="ug/m3", flag="N", zs=36.0, seq=4711, interval="1min"),
        StoredReading(site=AIR, ts=dt.datetime(2026, 11, 25, 2, 1, tzinfo=utc), parameter="CO", value=0.9,
                      unit="mg/m3", flag="N", zs=None, seq=4712, interval="1min"),
    ]
    assert rows[0].ts.tzinfo is utc


async def test_flux_strings_are_escaped(fake, store):
    await store.readings('A"B\\C${x}', T0, T0 + dt.timedelta(seconds=1, microseconds=5), parameter="PM2.5")
    assert fake.requests[0].flux == (
        'from(bucket: "ecopark")\n'
        "  |> range(start: 2026-11-25T02:00:00Z, stop: 2026-11-25T02:00:01.000005Z)\n"
        '  |> filter(fn: (r) => r._measurement == "reading" and r.site == "A\\"B\\\\C\\${x}" and r.parameter == "PM2.5")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )


HOURLY_COLUMNS = RANGE + [
    ("_time", "dateTime:RFC3339", False), ("_measurement", "string", True), ("parameter", "string", True),
    ("site", "string", True), ("field_names", "string", False), ("null_fields", "string", False),
    ("valid", "boolean", False), ("valid_minutes", "long", False), ("value", "double", False),
]


async def test_results_query_rebuilds_tags_fields_and_nulls(fake, store):
    start, stop = "2026-11-25T02:00:00Z", "2026-11-25T04:00:00Z"
    names = '"[""value"",""valid_minutes"",""valid""]"'  # CSV-quoted JSON
    fake.answer_csv(annotated_csv(
        (HOURLY_COLUMNS, [
            [start, stop, "2026-11-25T02:00:00Z", "hourly_mean", "PM2.5", AIR, names, '"[]"', "true", "60", "35"],
            # recomputed as invalid: the stale value is still in InfluxDB, null_fields masks it
            [start, stop, "2026-11-25T03:00:00Z", "hourly_mean", "PM2.5", AIR, names, '"[""value""]"', "false", "12", "41.5"],
        ]),
    ))
    got = await store.results("hourly_mean", T0, T0 + dt.timedelta(hours=2), site=AIR)
    assert fake.requests[0].flux == (
        'from(bucket: "ecopark")\n'
        "  |> range(start: 2026-11-25T02:00:00Z, stop: 2026-11-25T04:00:00Z)\n"
        '  |> filter(fn: (r) => r._measurement == "hourly_mean" and r.site == "KM-AIR-KMXY")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    assert got == [
        Result(measurement="hourly_mean", site=AIR, ts=T0, tags={"parameter": "PM2.5"},
               fields={"value": 35.0, "valid_minutes": 60, "valid": True}),
        Result(measurement="hourly_mean", site=AIR, ts=T0 + dt.timedelta(hours=1), tags={"parameter": "PM2.5"},
               fields={"value": None, "valid_minutes": 12, "valid": False}),
    ]
    assert type(got[0].fields["valid_minutes"]) is int


async def test_latest_results_query_takes_the_newest_row_per_series(fake, store):
    far = ["1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z"]
    names = '"[""value"",""valid_minutes"",""valid""]"'
    fake.answer_csv(annotated_csv(
        (HOURLY_COLUMNS, [  # last() per field: a field left out of the newest point has an older row
            far + ["2026-11-25T01:00:00Z", "hourly_mean", "CO", AIR, "", "", "", "", "0.7"],
            far + ["2026-11-25T03:00:00Z", "hourly_mean", "CO", AIR, names, '"[""value""]"', "false", "10", ""],
        ]),
        (HOURLY_COLUMNS, [
            far + ["2026-11-25T03:00:00Z", "hourly_mean", "PM2.5", AIR, names, '"[]"', "true", "60", "35.5"],
        ]),
    ))
    got = await store.latest_results("hourly_mean")
    assert fake.requests[0].flux == (
        'from(bucket: "ecopark")\n'
        "  |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z)\n"
        '  |> filter(fn: (r) => r._measurement == "hourly_mean")\n'
        "  |> last()\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    t3 = dt.datetime(2026, 11, 25, 3, tzinfo=dt.timezone.utc)
    assert got == [
        Result(measurement="hourly_mean", site=AIR, ts=t3, tags={"parameter": "CO"},
               fields={"value": None, "valid_minutes": 10, "valid": False}),
        Result(measurement="hourly_mean", site=AIR, ts=t3, tags={"parameter": "PM2.5"},
               fields={"value": 35.5, "valid_minutes": 60, "valid": True}),
    ]


EVENT_COLUMNS = [
    ("_start", "dateTime:RFC3339", False), ("_stop", "dateTime:RFC3339", False), ("_time", "dateTime:RFC3339", False),
    ("_measurement", "string", False), ("id", "string", False), ("kind", "string", False), ("site", "string", False),
    ("data", "string", False), ("message", "string", False), ("severity", "string", False),
]


async def test_events_query_newest_first(fake, store):
    far = ["2026-11-25T00:00:00Z", "2100-01-01T00:00:00Z"]
    fake.answer_csv(annotated_csv((EVENT_COLUMNS, [
        far + ["2026-11-25T03:00:00Z", "event", "silent/KM-AIR-KMXY/1", "silent", AIR, '"{}"',
               "空气站无数据 station silent", "warning"],
        far + ["2026-11-25T02:00:00Z", "event", "exceedance/x", "exceedance", STACK,
               '"{""value"":120.5,""ok"":false}"', '"二氧化硫超标, ""SO2"""', "critical"],
    ])))
    got = await store.events(limit=20, since=dt.datetime(2026, 11, 25, 8, tzinfo=SHANGHAI))
    assert fake.requests[0].flux == (
        'from(bucket: "ecopark")\n'
        "  |> range(start: 2026-11-25T00:00:00Z, stop: 2100-01-01T00:00:00Z)\n"
        '  |> filter(fn: (r) => r._measurement == "event")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        "  |> group()\n"
        '  |> sort(columns: ["_time"], desc: true)\n'
        "  |> limit(n: 20)"
    )
    utc = dt.timezone.utc
    assert got == [
        Event(id="silent/KM-AIR-KMXY/1", kind="silent", site=AIR, ts=dt.datetime(2026, 11, 25, 3, tzinfo=utc),
              severity="warning", message="空气站无数据 station silent", data={}),
        Event(id="exceedance/x", kind="exceedance", site=STACK, ts=dt.datetime(2026, 11, 25, 2, tzinfo=utc),
              severity="critical", message='二氧化硫超标, "SO2"', data={"value": 120.5, "ok": False}),
    ]


async def test_freshness_query_gives_the_newest_reading_per_site(fake, store):
    columns = [("_time", "dateTime:RFC3339", False), ("site", "string", True)]
    fake.answer_csv(annotated_csv(
        (columns, [["2026-11-25T02:09:00Z", AIR]]),
        (columns, [["2026-11-25T02:10:00.5Z", AIR]]),
        (columns, [["2026-11-25T01:00:00Z", STACK]]),
    ))
    got = await store.freshness()
    assert fake.requests[0].flux == (
        'from(bucket: "ecopark")\n'
        "  |> range(start: 1970-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z)\n"
        '  |> filter(fn: (r) => r._measurement == "reading" and r._field == "value")\n'
        "  |> last()\n"
        '  |> keep(columns: ["_time", "site"])'
    )
    utc = dt.timezone.utc
    assert got == {AIR: dt.datetime(2026, 11, 25, 2, 10, 0, 500000, tzinfo=utc),
                   STACK: dt.datetime(2026, 11, 25, 1, tzinfo=utc)}


async def test_an_empty_answer_is_no_rows(fake, store):
    assert await store.results("aqi_hourly", T0, T0 + dt.timedelta(hours=1)) == []
    assert await store.freshness() == {}


# -- the factory -------------------------------------------------------------------------------

async def test_open_store_influx_url_forms(fake):
    host = fake.url.removeprefix("http://")
    s = open_store(f"influxdb://{host}?org=kmetdz&bucket=ecopark&token={TOKEN}&timeout_s=3")
    assert isinstance(s, InfluxStore)
    assert (s.url, s.org, s.bucket, s.token, s.timeout_s) == (fake.url, "kmetdz", "ecopark", TOKEN, 3.0)
    await s.write_events([Event(id="a", kind="silent", site=AIR, ts=T0, severity="info", message="m")])
    assert fake.requests[0].query == {"org": "kmetdz", "bucket": "ecopark", "precision": "ns"}
    await s.close()

    env = {"INFLUX_TOKEN": "t2", "INFLUX_ORG": "o2", "INFLUX_BUCKET": "b2"}
    s = open_store("https://influx.example:8086/", env=env)
    assert (s.url, s.token, s.org, s.bucket) == ("https://influx.example:8086", "t2", "o2", "b2")
    s = open_store("influxdbs://influx.example:8086?bucket=b3", env=env)
    assert (s.url, s.bucket) == ("https://influx.example:8086", "b3")
    with pytest.raises(ValueError, match=r"no InfluxDB token \(put token= in the URL or set INFLUX_TOKEN\)$"):
        open_store("http://influx.example:8086?org=o&bucket=b", env={})
