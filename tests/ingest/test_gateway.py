"""The HJ 212 gateway against real sockets and a real Mosquitto.

Every test talks to a running ``Gateway`` over TCP like a datalogger does and checks what reaches
the broker with a paho subscriber that subscribed (SUBACK received) before anything was sent.
Nothing waits a fixed time: replies, publications and closed connections are awaited with
timeouts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import random
import tracemalloc
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import hj212
from ingest.datalogger_sim import DataloggerSimulator
from ingest.gateway import Gateway, qn_seq
from park.model import Park, Site
from park.reading import Reading, validate_reading

TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------------------------
# helpers

class MqttSink:
    """A paho subscriber on ``ecopark/#``; messages land in an asyncio queue."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.client: mqtt.Client | None = None

    async def start(self) -> "MqttSink":
        loop = asyncio.get_running_loop()
        subscribed = asyncio.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.on_message = lambda c, u, m: loop.call_soon_threadsafe(self.queue.put_nowait, (m.topic, m.payload))
        client.on_connect = lambda c, u, f, rc, p: c.subscribe("ecopark/#", qos=1)
        client.on_subscribe = lambda c, u, mid, rcs, p: loop.call_soon_threadsafe(subscribed.set)
        client.connect_async("127.0.0.1", self.port)
        client.loop_start()
        self.client = client
        await asyncio.wait_for(subscribed.wait(), TIMEOUT_S)
        return self

    async def get(self, timeout: float = TIMEOUT_S) -> tuple[str, dict[str, Any]]:
        topic, payload = await asyncio.wait_for(self.queue.get(), timeout)
        return topic, json.loads(payload)

    async def get_matching(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT_S) -> tuple[str, dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while True:
                topic, message = await self.get(timeout)
                if predicate(message):
                    return topic, message

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


class Device:
    """A datalogger's TCP connection: send bytes, read the gateway's replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = hj212.Framer()
        self.frames: list[bytes] = []

    @classmethod
    async def connect(cls, port: int) -> "Device":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = TIMEOUT_S) -> hj212.Packet:
        async with asyncio.timeout(timeout):
            while not self.frames:
                data = await self.reader.read(4096)
                assert data, "the gateway closed the connection instead of replying"
                self.frames += [f for f in self.framer.feed(data) if isinstance(f, bytes)]
        return hj212.parse(self.frames.pop(0))

    async def closed_by_peer(self, timeout: float = TIMEOUT_S) -> bool:
        """True once the gateway closed the connection (EOF or reset)."""
        async with asyncio.timeout(timeout):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionError:
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def last_minute(park: Park, minutes_ago: int = 1) -> dt.datetime:
    return dt.datetime.now(park.tz).replace(second=0, microsecond=0) - dt.timedelta(minutes=minutes_ago)


_qn_counter = 0


def fresh_qn(park: Park) -> str:
    """A unique QN (YYYYMMDDhhmmsszzz) per call."""
    global _qn_counter
    _qn_counter += 1
    moment = dt.datetime.now(park.tz) + dt.timedelta(milliseconds=_qn_counter)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


GAS_VALUES = {
    "a21026": {"Min": 11.0, "Avg": 12.3, "Max": 13.1, "ZsAvg": 13.6, "Flag": "N"},
    "a21002": {"Avg": 85.0, "ZsAvg": 94.1, "Flag": "N"},
    "a34013": {"Avg": 3.2, "ZsAvg": 3.5, "Flag": "N"},
    "a19001": {"Avg": 5.2, "Flag": "N"},
    "a00000": {"Avg": 10.0, "Cou": 600.0, "Flag": "N"},
    "a01011": {"Avg": 9.1, "Flag": "N"},  # flue-gas velocity: not a park parameter
}
WATER_VALUES = {
    "w01018": {"Avg": 40.1, "Flag": "N"},
    "w21003": {"Avg": 2.5, "Flag": "N"},
    "w01001": {"Avg": 7.5, "Flag": "N"},
    "w00000": {"Avg": 17.5, "Cou": 1.05, "Flag": "N"},
}


def packet(park: Park, site: Site, *, cn: str = "2051", values: dict | None = None, data_time: dt.datetime | None = None,
           pw: str | None = None, mn: str | None = None, qn: str | None = None, rf: bool = False,
           needs_reply: bool = True, encrypt: bool = True) -> bytes:
    if values is None:
        values = GAS_VALUES if site.role == "gas_outlet" else WATER_VALUES
        if cn == "2011":
            values = {code: {("Rtd" if k == "Avg" else "ZsRtd" if k == "ZsAvg" else k): v for k, v in f.items() if k not in ("Min", "Max", "Cou")}
                      for code, f in values.items()}
    return hj212.encode(
        qn=qn or fresh_qn(park), st="31" if site.role == "gas_outlet" else "32", cn=cn, pw=pw or site.pw, mn=mn or site.mn,
        version=site.hj212_version, needs_reply=needs_reply, values=values,
        data_time=data_time or last_minute(park), rf=rf, key=site.sm4_key if encrypt else None,
    )


def notification(site: Site, cn: str, *, version: str | None = None, cp: dict | None = None, qn: str = "20240601085857223") -> bytes:
    return hj212.encode(qn=qn, st="31", cn=cn, pw=site.pw, mn=site.mn, version=version or site.hj212_version, needs_reply=True, cp=cp)


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture
def deadletter(tmp_path: Path) -> Path:
    return tmp_path / "hj212-deadletter.jsonl"


@pytest.fixture
async def gateway(park: Park, mosquitto, deadletter: Path) -> AsyncIterator[Gateway]:
    gw = Gateway(park, "127.0.0.1", mosquitto.port, idle_timeout_s=30, deadletter_path=deadletter, frame_timeout_s=1.0)
    await gw.start()
    assert gw.mqtt_connected
    yield gw
    await gw.stop()


@pytest.fixture
async def sink(mosquitto) -> AsyncIterator[MqttSink]:
    s = await MqttSink(mosquitto.port).start()
    yield s
    s.stop()


@pytest.fixture
async def device(gateway: Gateway) -> AsyncIterator[Device]:
    d = await Device.connect(gateway.port)
    yield d
    await d.close()


# ---------------------------------------------------------------------------------------------
# data packets → readings

async def test_an_acknowledged_packet_is_on_mqtt_with_paho_driven_by_the_event_loop(park: Park, mosquitto, sink: MqttSink):
    gw = Gateway(park, "127.0.0.1", mosquitto.port, mqtt_io="asyncio")
    await gw.start()
    device = await Device.connect(gw.port)
    try:
        site = park.site("YNBY-W1")
        qn = fresh_qn(park)
        await device.send(packet(park, site, qn=qn))
        assert (await device.reply()).qn == qn
        _, message = await sink.get()
        assert message["seq"] == qn_seq(qn)
    finally:
        await device.close()
        await gw.stop()


async def test_an_acknowledged_packet_is_on_mqtt(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNDL-G1")
    qn = fresh_qn(park)
    data_time = last_minute(park)
    await device.send(packet(park, site, qn=qn, data_time=data_time))
    ack = await device.reply()
    assert (ack.cn, ack.st, ack.qn, ack.flag, ack.mn) == ("9014", "91", qn, 4, site.mn)
    topic, message = await sink.get()
    assert topic == park.mqtt_topic(site) == "ecopark/emission/YNDL-G1"
    assert message["site"] == "YNDL-G1" and message.get("interval", "1min") == "1min" and message["seq"] == qn_seq(qn)
    assert dt.datetime.fromisoformat(message["ts"]) == data_time and message["ts"].endswith("+08:00")
    # values keyed by short name, measured value = Avg, zs = ZsAvg, HJ 212 default units stated
    assert message["values"]["SO2"] == {"v": 12.3, "unit": "mg/m3", "zs": 13.6}
    assert message["values"]["gas_flow"] == {"v": 10.0, "unit": "m3/s"}
    assert "a01011" not in message["values"] and len(message["values"]) == 5
    reading = validate_reading(json.dumps(message).encode(), park, topic=topic)
    assert reading.values["gas_flow"].v == pytest.approx(36_000.0)  # m³/s → m³/h
    assert gateway.counters.published == 1 and gateway.counters.replies["9014"] == 1
    assert gateway.latencies_s and gateway.latencies_s[0] < 1.0
    kinds = gateway.counters.deviations[site.mn]
    assert any("a01011" in k for k in kinds) or any("not a parameter" in k for k in kinds)


async def test_wastewater_flow_in_litres_per_second_is_converted(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNDL-W1")
    await device.send(packet(park, site))
    assert (await device.reply()).cn == "9014"
    topic, message = await sink.get()
    assert message["values"]["water_flow"] == {"v": 17.5, "unit": "L/s"}
    assert message["values"]["pH"] == {"v": 7.5, "unit": ""}
    reading = validate_reading(json.dumps(message).encode(), park, topic=topic)
    assert reading.values["water_flow"].v == pytest.approx(63.0)  # 17.5 L/s = 63 m³/h


@pytest.mark.parametrize(("cn", "interval"), [("2011", "rt"), ("2051", "1min"), ("2061", "1h"), ("2031", "1d")])
async def test_each_data_command_becomes_one_reading_of_its_interval(park: Park, gateway: Gateway, sink: MqttSink, device: Device, cn: str, interval: str):
    site = park.site("HRSH-G1")
    data_time = {"2061": last_minute(park).replace(minute=0) - dt.timedelta(hours=1),
                 "2031": last_minute(park).replace(hour=0, minute=0) - dt.timedelta(days=1)}.get(cn, last_minute(park))
    await device.send(packet(park, site, cn=cn, data_time=data_time))
    assert (await device.reply()).cn == "9014"
    _, message = await sink.get()
    assert message.get("interval", "1min") == interval and dt.datetime.fromisoformat(message["ts"]) == data_time
    assert message["values"]["SO2"]["v"] == 12.3 and message["values"]["SO2"]["zs"] == 13.6  # Rtd/ZsRtd or Avg/ZsAvg
    assert sink.queue.empty()


async def test_2025_sm4_encrypted_packet_is_decrypted_and_acknowledged_with_2025_bits(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNBY-G1")
    assert site.hj212_version == "2025" and site.sm4_key
    data = packet(park, site)
    assert b"CP=&&{0x" in data and b";Flag=9;" in data
    await device.send(data)
    ack = await device.reply()
    assert ack.cn == "9014" and ack.flag == 8 and ack.version == "2025"
    _, message = await sink.get()
    assert message["site"] == "YNBY-G1" and message["values"]["SO2"]["v"] == 12.3
    assert not any("not SM4-encrypted" in k for k in gateway.counters.deviations.get(site.mn, {}))


async def test_2025_plaintext_packet_of_a_site_with_a_key_is_taken_and_counted(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNBY-G1")
    await device.send(packet(park, site, encrypt=False))
    assert (await device.reply()).flag == 8
    await sink.get()
    assert any("not SM4-encrypted" in k for k in gateway.counters.deviations[site.mn])


async def test_2025_device_without_key_sends_plaintext(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNBY-W1")
    assert site.hj212_version == "2025"
    await device.send(packet(park, site))
    ack = await device.reply()
    assert ack.cn == "9014" and ack.flag == 8
    _, message = await sink.get()
    assert message["site"] == "YNBY-W1"


async def test_packet_without_reply_bit_is_published_without_reply(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNDL-G1")
    quiet_qn = fresh_qn(park)
    await device.send(packet(park, site, qn=quiet_qn, needs_reply=False))
    _, message = await sink.get()
    assert message["seq"] == qn_seq(quiet_qn)
    await device.send(notification(site, "9015", version="2025"))
    assert (await device.reply()).cn == "9013"  # the first reply on the connection: none for the upload


async def test_resent_packet_keeps_its_seq(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("XLNN-W1")
    data = packet(park, site)
    for _ in range(2):
        await device.send(data)
        assert (await device.reply()).cn == "9014"
    (_, first), (_, second) = await sink.get(), await sink.get()
    assert first == second


async def test_rf_backfilled_packet_is_a_backfill_reading(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNBY-G1")
    two_days_ago = last_minute(park) - dt.timedelta(days=2)
    data = packet(park, site, rf=True, data_time=two_days_ago)
    assert b";RF=1;" in data
    await device.send(data)
    assert (await device.reply()).cn == "9014"
    _, message = await sink.get()
    assert message["backfill"] is True and dt.datetime.fromisoformat(message["ts"]) == two_days_ago
    reading: Reading = validate_reading(json.dumps(message).encode(), park)
    assert reading.backfill


# ---------------------------------------------------------------------------------------------
# replies

async def test_heartbeat_9015_gets_9013_with_2025_bits(park: Park, gateway: Gateway, device: Device):
    site = park.site("YNBY-G1")
    await device.send(notification(site, "9015"))
    ack = await device.reply()
    assert (ack.cn, ack.st, ack.flag, ack.qn, ack.cp) == ("9013", "91", 8, "20240601085857223", {})


async def test_time_calibration_request_gets_9013_then_a_1012_set_time(park: Park, gateway: Gateway, device: Device):
    site = park.site("YNDL-W1")
    await device.send(notification(site, "1013"))
    ack = await device.reply()
    assert (ack.cn, ack.flag) == ("9013", 4)
    set_time = await device.reply()
    assert set_time.cn == "1012" and set_time.needs_reply and set_time.mn == site.mn
    system_time = hj212._parse_time(set_time.cp["SystemTime"], park.tz)
    assert abs((system_time - dt.datetime.now(park.tz)).total_seconds()) < 5


async def test_request_from_a_site_gets_9011_request_rejected(park: Park, gateway: Gateway, device: Device):
    site = park.site("YNDL-G1")
    await device.send(notification(site, "3020", version="2017"))  # "get site information": a centre's request
    ack = await device.reply()
    assert (ack.cn, ack.flag, ack.cp) == ("9011", 4, {"QnRtn": "2"})


async def test_other_upload_is_acknowledged_but_not_a_reading(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNDL-G1")
    await device.send(hj212.encode(qn=fresh_qn(park), st="31", cn="2081", pw=site.pw, mn=site.mn, needs_reply=True,
                                   cp={"RestartTime": last_minute(park)}))
    assert (await device.reply()).cn == "9014"
    assert gateway.counters.ignored["2081"] == 1 and gateway.counters.published == 0


async def test_replies_of_the_site_are_not_answered(park: Park, gateway: Gateway, device: Device):
    site = park.site("YNDL-G1")
    await device.send(hj212.encode(qn="20240601085857223", st="91", cn="9012", pw=site.pw, mn=site.mn, flag=5, cp={"ExeRtn": 1}))
    await device.send(notification(site, "9015", version="2025"))
    assert (await device.reply()).cn == "9013"


# ---------------------------------------------------------------------------------------------
# framing

async def test_packet_split_across_many_segments(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNBY-G1")
    data = packet(park, site)
    for i in range(0, len(data), 7):
        await device.send(data[i:i + 7])
    assert (await device.reply()).cn == "9014"
    _, message = await sink.get()
    assert message["site"] == "YNBY-G1"


async def test_several_packets_in_one_segment(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    sites = [park.site(s) for s in ("YNDL-G1", "YNBY-G1", "YNDL-W1")]
    qns = [fresh_qn(park) for _ in sites]
    await device.send(b"".join(packet(park, s, qn=q) for s, q in zip(sites, qns)))
    assert [(await device.reply()).qn for _ in sites] == qns  # replies in order
    got = {(await sink.get())[1]["site"] for _ in sites}
    assert got == {"YNDL-G1", "YNBY-G1", "YNDL-W1"}


async def test_bad_crc_is_dropped_and_the_connection_goes_on(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNDL-G1")
    good = packet(park, site)
    bad = packet(park, site, qn=fresh_qn(park))
    bad = bad[:-6] + (b"0000" if bad[-6:-2] != b"0000" else b"FFFF") + b"\r\n"
    await device.send(bad)
    await device.send(good)
    ack = await device.reply()
    assert ack.qn == hj212.parse(good).qn
    _, message = await sink.get()
    assert message["seq"] == qn_seq(ack.qn)
    assert gateway.counters.errors["CRCError"] == 1 and gateway.counters.published == 1


async def test_bad_crc_of_an_encrypted_packet_is_dropped(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNBY-G1")
    bad = packet(park, site)
    bad = bad[:-6] + b"%04X" % (int(bad[-6:-2], 16) ^ 1) + b"\r\n"
    good = packet(park, site)
    await device.send(bad + good)
    assert (await device.reply()).qn == hj212.parse(good, keys={site.mn: site.sm4_key}).qn
    await sink.get()
    assert gateway.counters.errors["DecryptionError"] == 1 and gateway.counters.published == 1


async def test_garbage_between_packets_is_skipped(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("XLNN-G1")
    await device.send(b"\x00\xffHELLO garbage ##12" + packet(park, site) + b"more junk\r\n")
    assert (await device.reply()).cn == "9014"
    await sink.get()
    assert sum(gateway.counters.errors.values()) >= 1


async def test_device_that_never_sends_a_newline_is_cut_off_while_others_keep_working(park: Park, gateway: Gateway, sink: MqttSink):
    rogue = await Device.connect(gateway.port)
    good = await Device.connect(gateway.port)
    try:
        await rogue.send(b"##0999QN=20240101000000000;ST=31;CN=2051;PW=123456;MN=88888880000001;Flag=5;CP=&&")
        chunk = b"a21026-Avg=1.0," * 100
        closed = asyncio.create_task(rogue.closed_by_peer())
        for _ in range(1000):  # far more than any frame; the gateway closes long before
            if closed.done():
                break
            try:
                await rogue.send(chunk)
            except ConnectionError:
                break
            await asyncio.sleep(0)
        assert await closed
        await good.send(packet(park, park.site("YNDL-G1")))
        assert (await good.reply()).cn == "9014"
    finally:
        await rogue.close()
        await good.close()
    await sink.get()
    assert gateway.counters.errors["unframed_overflow"] + gateway.counters.errors["LengthError"] >= 1


async def test_slow_loris_is_cut_off_at_the_frame_timeout(park: Park, gateway: Gateway, sink: MqttSink):
    slow = await Device.connect(gateway.port)
    good = await Device.connect(gateway.port)
    try:
        data = packet(park, park.site("YNDL-W1"))
        closed = asyncio.create_task(slow.closed_by_peer(TIMEOUT_S))
        for byte in data[:-2]:  # one byte per 50 ms: a frame would take ~10 s, the limit is 1 s
            if closed.done():
                break
            try:
                await slow.send(bytes([byte]))
            except ConnectionError:
                break
            await asyncio.sleep(0.05)
        assert await closed
        assert gateway.counters.errors["frame_timeout"] == 1
        await good.send(packet(park, park.site("YNDL-G1")))
        assert (await good.reply()).cn == "9014"
    finally:
        await slow.close()
        await good.close()


async def test_idle_connection_is_closed(park: Park, mosquitto):
    gw = Gateway(park, "127.0.0.1", mosquitto.port, idle_timeout_s=0.3)
    await gw.start()
    try:
        silent = await Device.connect(gw.port)
        assert await silent.closed_by_peer(5)
        assert gw.counters.errors["idle_timeout"] == 1 and gw.counters.open_connections == 0
        await silent.close()
    finally:
        await gw.stop()


# ---------------------------------------------------------------------------------------------
# authentication

async def test_unknown_mn_is_refused(park: Park, gateway: Gateway, sink: MqttSink, device: Device, caplog):
    site = park.site("YNDL-G1")
    await device.send(packet(park, site, mn="99999990000001"))
    good_qn = fresh_qn(park)
    await device.send(packet(park, site, qn=good_qn))
    assert (await device.reply()).qn == good_qn  # no reply for the refused one
    _, message = await sink.get()
    assert message["seq"] == qn_seq(good_qn)  # the refused one was never published
    assert gateway.counters.refused == 1 and gateway.counters.refused_by_reason["unknown MN"] == 1
    assert any("refused packet from 127.0.0.1:" in r.getMessage() and "unknown MN" in r.getMessage() for r in caplog.records)


async def test_wrong_password_is_refused(park: Park, gateway: Gateway, sink: MqttSink, device: Device):
    site = park.site("YNBY-G1")
    await device.send(packet(park, site, pw="000000"))
    good_qn = fresh_qn(park)
    await device.send(packet(park, site, qn=good_qn))
    assert (await device.reply()).qn == good_qn
    _, message = await sink.get()
    assert message["seq"] == qn_seq(good_qn)
    assert gateway.counters.refused_by_reason["wrong PW"] == 1


async def test_connection_with_only_refused_packets_is_closed(park: Park, gateway: Gateway, device: Device):
    site = park.site("YNDL-G1")
    await device.send(b"".join(packet(park, site, pw="000000") for _ in range(gateway.max_refusals)))
    assert await device.closed_by_peer()
    assert gateway.counters.refused == gateway.max_refusals


async def test_refusal_log_is_rate_limited(park: Park, gateway: Gateway, caplog):
    site = park.site("YNDL-G1")
    for _ in range(3):
        d = await Device.connect(gateway.port)
        await d.send(b"".join(packet(park, site, pw="000000") for _ in range(gateway.max_refusals)))
        assert await d.closed_by_peer()
        await d.close()
    lines = [r for r in caplog.records if "refused packet from" in r.getMessage()]
    assert gateway.counters.refused == 3 * gateway.max_refusals and len(lines) == 1


async def test_peer_with_repeated_refusals_is_throttled(park: Park, mosquitto):
    gw = Gateway(park, "127.0.0.1", mosquitto.port, max_refusals=2, peer_failure_limit=4, peer_block_s=60)
    await gw.start()
    try:
        site = park.site("YNDL-G1")
        for _ in range(2):
            d = await Device.connect(gw.port)
            await d.send(packet(park, site, pw="000000") + packet(park, site, pw="000000"))
            assert await d.closed_by_peer()
            await d.close()
        blocked = await Device.connect(gw.port)
        assert await blocked.closed_by_peer()  # closed at once, before any packet
        await blocked.close()
        assert gw.counters.errors["connection_rejected"] == 1
    finally:
        await gw.stop()


# ---------------------------------------------------------------------------------------------
# what cannot be published

async def test_invalid_reading_is_dead_lettered_and_acknowledged(park: Park, gateway: Gateway, sink: MqttSink, device: Device, deadletter: Path):
    site = park.site("YNDL-G1")
    bad = packet(park, site, values={"a19001": {"Avg": 35.0, "Flag": "N"}})  # O2 above 21 %: impossible
    await device.send(bad)
    assert (await device.reply()).cn == "9014"  # permanent: kept in the dead-letter file, acknowledged
    lines = deadletter.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert "invalid reading" in entry["reason"] and "O2" in entry["reason"]
    assert entry["payload"].encode() == bad and entry["site"] == "YNDL-G1" and entry["source"].startswith("hj212:127.0.0.1:")
    assert gateway.counters.invalid == 1 and gateway.counters.published == 0
    await device.send(packet(park, site))  # and the connection goes on
    assert (await device.reply()).cn == "9014"
    assert (await sink.get())[1]["site"] == "YNDL-G1"


@pytest.mark.parametrize("mqtt_io", ["thread", "asyncio"])
async def test_mqtt_down_means_no_ack_and_a_dead_letter_then_resend_after_restart(park: Park, fresh_mosquitto, deadletter: Path, mqtt_io: str):
    gw = Gateway(park, "127.0.0.1", fresh_mosquitto.port, deadletter_path=deadletter, publish_timeout_s=2.0, mqtt_io=mqtt_io)
    await gw.start()
    device = await Device.connect(gw.port)
    try:
        assert gw.mqtt_connected
        fresh_mosquitto.stop()
        site = park.site("YNBY-G1")
        data = packet(park, site)
        await device.send(data)
        await wait_until(lambda: gw.counters.mqtt_failures == 1)
        # No 9014: the next reply on this connection is the heartbeat's 9013.
        await device.send(notification(site, "9015"))
        assert (await device.reply()).cn == "9013"
        entry = json.loads(deadletter.read_text().splitlines()[0])
        assert entry["reason"].startswith("mqtt unavailable") and entry["payload"].encode() == data

        fresh_mosquitto.start()  # same port
        await gw.wait_mqtt_connected(TIMEOUT_S)
        sink = await MqttSink(fresh_mosquitto.port).start()
        try:
            await device.send(data)  # the datalogger re-sends
            ack = await device.reply()
            assert ack.cn == "9014" and ack.qn == hj212.parse(data, keys={site.mn: site.sm4_key}).qn
            _, message = await sink.get_matching(lambda m: m["seq"] == qn_seq(ack.qn))
            assert message["site"] == "YNBY-G1"
        finally:
            sink.stop()
    finally:
        await device.close()
        await gw.stop()


@pytest.mark.parametrize("mqtt_io", ["thread", "asyncio"])
async def test_gateway_starts_without_broker_and_publishes_once_it_appears(park: Park, fresh_mosquitto, deadletter: Path, mqtt_io: str):
    fresh_mosquitto.stop()
    gw = Gateway(park, "127.0.0.1", fresh_mosquitto.port, deadletter_path=deadletter, mqtt_connect_timeout_s=0.2, mqtt_io=mqtt_io)
    await gw.start()
    device = await Device.connect(gw.port)
    try:
        site = park.site("YNDL-W1")
        data = packet(park, site)
        await device.send(data)
        await wait_until(lambda: gw.counters.mqtt_failures == 1)
        fresh_mosquitto.start()
        await gw.wait_mqtt_connected(TIMEOUT_S)
        await device.send(data)
        assert (await device.reply()).cn == "9014"
    finally:
        await device.close()
        await gw.stop()


# ---------------------------------------------------------------------------------------------
# robustness

async def test_fuzz_random_bytes_do_not_crash_hang_or_leak(park: Park, gateway: Gateway, sink: MqttSink):
    rng = random.Random(212)
    site = park.site("YNDL-G1")
    template = packet(park, site)

    def junk() -> bytes:
        kind = rng.randrange(4)
        if kind == 0:
            return bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096)))
        if kind == 1:  # a real packet with random bytes flipped
            data = bytearray(template)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            return bytes(data)
        if kind == 2:  # headers and terminators in random places
            parts = [b"##", b"\r\n", b"##0100", b"CP=&&", b"&&", b"{0x", b"QN=", b";", bytes([rng.randrange(256)])]
            return b"".join(rng.choice(parts) for _ in range(rng.randint(1, 600)))
        return template[: rng.randrange(len(template))]  # truncated

    async def one_round(n: int) -> None:
        async def client() -> None:
            try:
                d = await Device.connect(gateway.port)
            except OSError:
                return
            try:
                for _ in range(rng.randint(1, 3)):
                    await d.send(junk())
            except ConnectionError:
                pass
            finally:
                await d.close()

        await asyncio.gather(*(client() for _ in range(n)))
        await wait_until(lambda: gateway.counters.open_connections == 0)

    async with asyncio.timeout(90):
        tracemalloc.start()
        try:
            for _ in range(2):  # warm-up: caches, logging, lazily built tables, the log gate
                await one_round(100)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(4):
                await one_round(100)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert after - before < 256 * 1024, f"memory grew by {after - before} bytes over 400 fuzz connections"
    assert gateway.counters.connections >= 600 and gateway.counters.open_connections == 0
    assert gateway.counters.errors.get("internal", 0) == 0
    d = await Device.connect(gateway.port)  # still serving
    try:
        await d.send(packet(park, site))
        assert (await d.reply()).cn == "9014"
    finally:
        await d.close()


# ---------------------------------------------------------------------------------------------
# the datalogger simulator end to end

async def test_simulator_with_faults_publishes_good_packets_and_counts_bad_ones(park: Park, mosquitto, tmp_path: Path):
    gw = Gateway(park, "127.0.0.1", mosquitto.port, deadletter_path=tmp_path / "dl.jsonl", frame_timeout_s=2.0)
    await gw.start()
    sink = await MqttSink(mosquitto.port).start()
    try:
        faults = {"bad_crc", "split_packets", "wrong_password", "no_newline", "garbage"}
        sim = DataloggerSimulator(park, "127.0.0.1", gw.port, speed=120.0, interval="2051", faults=faults, seed=7, ack_timeout_s=3.0)
        stats = await sim.run(duration_s=6.0)
        outlets = {s.id for s in park.sites.values() if s.mn}
        assert len(sim.outlets) == len(outlets) == 10
        assert stats.acked >= 3 * len(outlets) and stats.acked == gw.counters.replies["9014"]
        # every acknowledged packet is on the broker (plus possibly re-sent duplicates)
        seen: set[tuple[str, int]] = set()
        async with asyncio.timeout(TIMEOUT_S):
            while len(seen) < stats.acked:
                topic, payload = await sink.queue.get()
                message = json.loads(payload)
                validate_reading(payload, park, topic=topic)
                seen.add((message["site"], message["seq"]))
        assert {site for site, _ in seen} == outlets
        assert gw.counters.published >= stats.acked
        assert stats.faults["bad_crc"] >= 1 and gw.counters.errors["CRCError"] + gw.counters.errors["DecryptionError"] >= stats.faults["bad_crc"]
        assert stats.faults["split_packets"] >= 1 and stats.faults["garbage"] >= 1
        assert stats.refused_sent >= 1 and gw.counters.refused_by_reason["wrong PW"] == stats.refused_sent
        assert stats.faults["no_newline"] >= 1 and stats.cut_off >= 1
        assert gw.counters.invalid == 0 and gw.counters.mqtt_failures == 0
        assert gw.counters.errors.get("internal", 0) == 0
    finally:
        sink.stop()
        await gw.stop()
