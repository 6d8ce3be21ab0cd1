"""HJ 212 protocol: packets and CRCs from reference/hj212.md, both editions, SM4, replies, leniency,
bad input, the stream framer and a fuzz run."""

from __future__ import annotations

import datetime as dt
import random
import time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import hj212
from ingest.hj212 import (
    COMMANDS,
    DATA_FLAGS,
    EXE_RTN,
    HJ212_2005_CODE_MAP,
    MAX_DATA_LENGTH,
    MAX_PACKET_LENGTH,
    POLLUTANT_CODES,
    QN_RTN,
    SYSTEM_CODES,
    CommandError,
    CRCError,
    DecryptionError,
    FieldError,
    Framer,
    FramingError,
    HJ212Error,
    LengthError,
    Packet,
    TimeError,
    command_kind,
    crc16,
    encode,
    parse,
    reply,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
TEST_KEY = b"0" * 16  # 2025 §E: the standard's examples use sixteen 0x30 bytes
MN = "010000A8900016F000169DC0"


def frame(text: str) -> bytes:
    """A packet as printed in the reference (without CR LF), as sent on the wire."""
    return text.encode() + b"\r\n"


def with_crc(segment: str) -> bytes:
    """A packet around ``segment`` with the right length and CRC."""
    data = segment.encode()
    return b"##%04d%s%04X\r\n" % (len(data), data, crc16(data))


def bitwise_crc(data: bytes) -> int:
    """Appendix A's C reference, bit by bit."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ byte
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


# ---------------------------------------------------------------------------------------------
# Packets printed in reference/hj212.md (§9 vectors, §9 constructed examples, 2025 §B and §F)
# ---------------------------------------------------------------------------------------------

STANDARD_EXAMPLE = ("##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
                    "Flag=5;CP=&&RtdInterval=30&&1C80")
DATA_REPLY_2017 = ("##0087QN=20160801085857223;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;"
                   "Flag=4;CP=&&&&3240")
REQUEST_REPLY_2017 = ("##0094QN=20160801085857223;ST=91;CN=9011;PW=123456;MN=010000A8900016F000169DC0;"
                      "Flag=4;CP=&&QnRtn=1&&1B00")
EXECUTION_RESULT_2017 = ("##0095QN=20160801085857223;ST=91;CN=9012;PW=123456;MN=010000A8900016F000169DC0;"
                         "Flag=4;CP=&&ExeRtn=1&&6240")
FIELD_PACKET = ("##0289QN=20191012133710130;ST=22;CN=2011;PW=123456;MN=Y80110010000010;Flag=4;"
                "CP=&&DataTime=20191012133710;a214-Rtd=0.00,a214-Flag=N;a215-Rtd=0.00,a215-Flag=N;"
                "a216-Rtd=0.036,a216-Flag=N;a217-Rtd=0.033,a217-Flag=N;a211-Rtd=25.40,a211-Flag=N;"
                "a212-Rtd=49.20,a212-Flag=N;a213-Rtd=101.94,a213-Flag=N&&5780")
AMBIENT_HOURLY = ("##0278QN=20220101010000000;ST=22;CN=2061;PW=123456;MN=010000A8900016F000169DC0;"
                  "Flag=4;CP=&&DataTime=20220101000000;a34004-Avg=35,a34004-Flag=N;a34002-Avg=52,"
                  "a34002-Flag=N;a21026-Avg=8,a21026-Flag=N;a21004-Avg=31,a21004-Flag=N;a21005-Avg=0.8,"
                  "a21005-Flag=N;a05024-Avg=64,a05024-Flag=N&&B401")
FLUE_GAS_HOURLY = ("##0252QN=20220101010000000;ST=31;CN=2061;PW=123456;MN=010000A8900016F000169DC0;"
                   "Flag=4;CP=&&DataTime=20220101000000;a00000-Cou=36000.0,a00000-Avg=10.0,"
                   "a00000-Flag=N;a19001-Avg=5.2,a19001-Flag=N;a21026-Avg=12.3,a21026-ZsAvg=13.6,"
                   "a21026-Cou=0.44,a21026-Flag=N&&8201")
CRC_EXAMPLE_2025 = ("##0087QN=20240601085857223;ST=32;CN=1011;PW=123456;MN=010000A8900016F000169DC0;"
                    "Flag=9;CP=&&&&2200")
HEARTBEAT_2025 = ("##0087QN=20240601085857223;ST=32;CN=9015;PW=123456;MN=010000A8900016F000169DC0;"
                  "Flag=9;CP=&&&&F001")
NOTIFY_REPLY_2025 = ("##0087QN=20240601085857223;ST=91;CN=9013;PW=123456;MN=010000A8900016F000169DC0;"
                     "Flag=8;CP=&&&&3900")
DATA_REPLY_2025 = ("##0087QN=20240520210700000;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;"
                   "Flag=8;CP=&&&&EF41")
REQUEST_REPLY_2025 = ("##0094QN=20240601085857223;ST=91;CN=9011;PW=123456;MN=010000A8900016F000169DC0;"
                      "Flag=8;CP=&&QnRtn=1&&21C0")
EXECUTION_RESULT_2025 = ("##0095QN=20240601085857223;ST=91;CN=9012;PW=123456;MN=010000A8900016F000169DC0;"
                         "Flag=8;CP=&&ExeRtn=1&&71C0")
BACKFILL_2025 = ("##0144QN=20240601085857223;ST=31;CN=2011;PW=123456;MN=010000A8900016F000169DC0;"
                 "Flag=9;RF=1;CP=&&DataTime=20240601085800;a34013-Rtd=7.5,a34013-Flag=N&&5780")
# 2025 §E, A.2-2 and A.2-4 in plain text, with the plaintext CRC.
SM4_EXAMPLE_2 = ("##0295QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;"
                 "Flag=9;CP=&&DataTime=20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,"
                 "a01011-Flag=N;a01012-Min=9.3,a01012-Avg=9.3,a01012-Max=9.3,a01012-Flag=N;"
                 "a01014-Min=3.20,a01014-Avg=3.211,a01014-Max=3.212,a01014-Flag=N&&2200")
SM4_EXAMPLE_4 = ("##0234QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;"
                 "Flag=9;CP=&&DataTime=20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,"
                 "a01011-Flag=N;a01014-Min=3.20,a01014-Avg=3.20,a01014-Max=3.20,a01014-Flag=N&&B541")
SM4_EXAMPLE_4_CIPHERTEXT = (
    "E43E159ACFAB242CB53155FB8B9281A1A242577ABFAED881BE88B72D69FC55ED1A80119FAAC8B3CD33D285CC76F57F2C"
    "A7F88B9573C6647E0F07E24609BD6B63EB20C5B9784F28E71D2F4994FF61D9E13B391A1D2A454B65388D5D9435DBF021"
    "528C7BF9755EF16518710C0CAC0ADEF9C5156CD0A5A17674AC0ED2ABC40023E9EF70128554B82438E91ADCE98A0D03A4")

REFERENCE_PACKETS = {
    "1C80": STANDARD_EXAMPLE, "3240": DATA_REPLY_2017, "1B00": REQUEST_REPLY_2017,
    "6240": EXECUTION_RESULT_2017, "5780 field": FIELD_PACKET, "B401": AMBIENT_HOURLY,
    "8201": FLUE_GAS_HOURLY, "2200": CRC_EXAMPLE_2025, "F001": HEARTBEAT_2025, "3900": NOTIFY_REPLY_2025,
    "EF41": DATA_REPLY_2025, "21C0": REQUEST_REPLY_2025, "71C0": EXECUTION_RESULT_2025,
    "5780 RF": BACKFILL_2025, "2200 A.2-2": SM4_EXAMPLE_2, "B541 A.2-4": SM4_EXAMPLE_4,
}


def segment_of(printed: str) -> bytes:
    return printed[6:-4].encode()


# ---------------------------------------------------------------------------------------------
# CRC
# ---------------------------------------------------------------------------------------------


def test_crc_of_the_standards_example_is_1C80_not_the_misprinted_1C08():
    assert crc16(segment_of(STANDARD_EXAMPLE)) == 0x1C80


def test_crc_check_value_is_2F80_and_differs_from_modbus():
    assert crc16(b"123456789") == 0x2F80
    assert crc16(b"123456789") != 0x4B37  # CRC-16/MODBUS check value


@pytest.mark.parametrize("name", REFERENCE_PACKETS)
def test_every_reference_packet_has_its_printed_length_and_crc(name):
    printed = REFERENCE_PACKETS[name]
    segment = segment_of(printed)
    assert int(printed[2:6]) == len(segment)
    assert f"{crc16(segment):04X}" == printed[-4:]


def test_crc_of_empty_and_single_byte_data():
    assert crc16(b"") == 0xFFFF == bitwise_crc(b"")
    assert crc16(b"A") == bitwise_crc(b"A")


@given(st.binary(max_size=6000))
def test_crc_equals_the_bitwise_algorithm_of_appendix_a(data):
    assert crc16(data) == bitwise_crc(data)


# ---------------------------------------------------------------------------------------------
# Parsing the reference packets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in REFERENCE_PACKETS if "A.2" not in n])
def test_every_reference_packet_parses_strictly_or_with_named_deviations(name):
    packet = parse(frame(REFERENCE_PACKETS[name]))
    if name == "5780 field":
        assert packet.deviations == ("MN 'Y80110010000010' is not 24 hex characters",)
    else:
        assert packet.deviations == ()
        assert parse(frame(REFERENCE_PACKETS[name]), strict=True) == packet


def test_standard_example_fields():
    packet = parse(frame(STANDARD_EXAMPLE))
    assert (packet.qn, packet.st, packet.cn, packet.pw, packet.mn) == (
        "20160801085857223", "32", "1062", "100000", MN)
    assert packet.flag == 5 and packet.version == "2017"
    assert packet.needs_reply and not packet.split and not packet.rf
    assert packet.pnum is None and packet.pno is None
    assert packet.cp == {"RtdInterval": "30"} and packet.values == {}
    assert packet.data_time is None
    assert packet.raw == frame(STANDARD_EXAMPLE)
    assert not packet.encrypted


def test_flue_gas_hourly_values_are_floats_and_flags_strings():
    packet = parse(frame(FLUE_GAS_HOURLY))
    assert packet.values["a21026"]["ZsAvg"] == 13.6
    assert packet.values["a21026"]["Flag"] == "N"
    assert packet.values["a00000"] == {"Cou": 36000.0, "Avg": 10.0, "Flag": "N"}
    assert packet.values["a19001"] == {"Avg": 5.2, "Flag": "N"}
    assert packet.cp == {"DataTime": "20220101000000"}
    assert packet.data_time == dt.datetime(2022, 1, 1, 0, 0, tzinfo=SHANGHAI)
    assert packet.data_time.utcoffset() == dt.timedelta(hours=8)


def test_ambient_hourly_has_six_pollutants_including_o3():
    packet = parse(frame(AMBIENT_HOURLY))
    assert set(packet.values) == {"a34004", "a34002", "a21026", "a21004", "a21005", "a05024"}
    assert packet.values["a05024"]["Avg"] == 64.0
    assert packet.st == "22" and packet.cn == "2061"


def test_field_device_packet_with_vendor_codes_and_short_mn():
    packet = parse(frame(FIELD_PACKET))
    assert packet.mn == "Y80110010000010"
    assert packet.values["a216"] == {"Rtd": 0.036, "Flag": "N"}
    assert packet.values["a213"]["Rtd"] == 101.94
    assert len(packet.values) == 7
    assert packet.data_time == dt.datetime(2019, 10, 12, 13, 37, 10, tzinfo=SHANGHAI)
    with pytest.raises(FieldError, match="MN 'Y80110010000010' is not 24 hex"):
        parse(frame(FIELD_PACKET), strict=True)


def test_realistic_wastewater_outlet_packet_with_every_field_suffix():
    # §10 Appendix C real-time layout plus the suffixes of §3 Table 4 and 2025 §G.
    cp = ("DataTime=20250314101000;w00000-Rtd=17.5,w00000-Cou=10.5,w00000-Flag=N;"
          "w01001-Rtd=7.1,w01001-Flag=N;"
          "w01018-SampleTime=20250314090000,w01018-Rtd=40.1,w01018-Min=38.2,w01018-Avg=40.1,"
          "w01018-Max=41.7,w01018-Cou=0.42,w01018-Flag=N,w01018-EFlag=A01;"
          "w21003-Rtd=1.25,w21003-Flag=T;w21011-Rtd=0.21,w21011-Flag=M;"
          "a21026-ZsRtd=1.0,a21026-ZsMin=0.5,a21026-ZsAvg=0.75,a21026-ZsMax=1.1,a21026-RawAvg=7.1,"
          "a21026-Widget=abc,a21026-Count=3;SB1-RS=1,SB1-RT=23.5")
    packet = parse(with_crc(f"QN=20250314101000123;ST=32;CN=2011;PW=123456;MN={MN};Flag=5;CP=&&{cp}&&"))
    assert packet.deviations == ()
    cod = packet.values["w01018"]
    assert cod["SampleTime"] == dt.datetime(2025, 3, 14, 9, 0, tzinfo=SHANGHAI)
    assert (cod["Rtd"], cod["Min"], cod["Avg"], cod["Max"], cod["Cou"]) == (40.1, 38.2, 40.1, 41.7, 0.42)
    assert cod["Flag"] == "N" and cod["EFlag"] == "A01"
    assert packet.values["w21003"]["Flag"] == "T"
    so2 = packet.values["a21026"]
    assert (so2["ZsRtd"], so2["ZsMin"], so2["ZsAvg"], so2["ZsMax"], so2["RawAvg"]) == (1.0, 0.5, 0.75, 1.1, 7.1)
    assert so2["Widget"] == "abc" and so2["Count"] == 3.0  # unknown suffixes are accepted
    assert packet.values["SB1"] == {"RS": 1.0, "RT": 23.5}
    assert command_kind(packet) == "upload"


def test_tz_parameter_controls_the_zone_of_times():
    packet = parse(frame(FLUE_GAS_HOURLY), tz=None)
    assert packet.data_time == dt.datetime(2022, 1, 1)
    utc = parse(frame(FLUE_GAS_HOURLY), tz=dt.timezone.utc)
    assert utc.data_time.tzinfo is dt.timezone.utc


def test_request_and_reply_cp_keys_are_kept_raw():
    packet = parse(frame(REQUEST_REPLY_2017))
    assert packet.cp == {"QnRtn": "1"} and packet.st == "91"
    request = parse(with_crc(f"QN=20160801085857223;ST=32;CN=2061;PW=123456;MN={MN};Flag=5;"
                             "CP=&&BeginTime=20160801080000;EndTime=20160801080000&&"))
    assert request.cp == {"BeginTime": "20160801080000", "EndTime": "20160801080000"}
    assert command_kind(request) == "request"


def test_site_information_layout_with_log_text_holding_separators():
    cp = "DataTime=20160801085857;PolId=w01018;i11001-Info=//boot: ok, 3 tries; done//"
    packet = parse(with_crc(f"QN=20160801085857223;ST=32;CN=3020;PW=123456;MN={MN};Flag=4;CP=&&{cp}&&"))
    assert packet.cp["PolId"] == "w01018"
    assert packet.values["i11001"]["Info"] == "//boot: ok, 3 tries; done//"


def test_split_packets_carry_pnum_and_pno_in_any_order():
    packet = parse(with_crc(f"QN=20160801085857534;ST=32;CN=2061;PW=123456;MN={MN};Flag=7;PNO=2;PNUM=2;"
                            "CP=&&DataTime=20160801080000;w01018-Avg=40.1&&"))
    assert packet.split and packet.needs_reply
    assert (packet.pnum, packet.pno) == (2, 2)
    assert packet.deviations == ()


# ---------------------------------------------------------------------------------------------
# Editions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "version", "needs_reply", "split"),
    [(0, "2005", False, False), (1, "2005", True, False), (4, "2017", False, False), (5, "2017", True, False),
     (6, "2017", False, True), (7, "2017", True, True), (8, "2025", False, False), (9, "2025", True, False),
     (10, "2025", False, True), (11, "2025", True, True)],
)
def test_flag_bits_by_edition(flag, version, needs_reply, split):
    numbering = "PNUM=3;PNO=1;" if split else ""
    packet = parse(with_crc(f"QN=20240601085857223;ST=31;CN=2011;PW=123456;MN={MN};Flag={flag};{numbering}"
                            "CP=&&DataTime=20240601085800;a34013-Rtd=7.5,a34013-Flag=N&&"), strict=True)
    assert (packet.version, packet.needs_reply, packet.split) == (version, needs_reply, split)


def test_2025_backfill_flag_rf():
    packet = parse(frame(BACKFILL_2025), strict=True)
    assert packet.rf and packet.version == "2025"
    assert packet.values["a34013"] == {"Rtd": 7.5, "Flag": "N"}


def test_2025_heartbeat_and_vendor_heartbeat_flagged_2017():
    assert parse(frame(HEARTBEAT_2025)).cn == "9015"
    vendor = parse(with_crc(f"QN=20240601085857223;ST=21;CN=9015;PW=123456;MN={MN};Flag=5;CP=&&&&"))
    assert vendor.deviations == ("CN=9015 is not an HJ 212-2017 command",)


def test_2005_packet_with_old_codes_maps_them_without_deviation():
    packet = parse(with_crc(f"QN=20040516020111000;ST=32;CN=2011;PW=123456;MN={MN};Flag=0;"
                            "CP=&&DataTime=20040516020111;B01-Rtd=12.5,B01-Flag=N;011-Rtd=40.2,011-Flag=N;"
                            "060-Rtd=1.2;101-Rtd=0.3&&"), strict=True)
    assert packet.version == "2005"
    assert packet.values == {"w00000": {"Rtd": 12.5, "Flag": "N"}, "w01018": {"Rtd": 40.2, "Flag": "N"},
                             "w21003": {"Rtd": 1.2}, "w21011": {"Rtd": 0.3}}


def test_tables_cover_both_editions():
    assert COMMANDS["2017"]["2011"] == COMMANDS["2025"]["2011"] == "real-time pollutant data"
    assert "9015" in COMMANDS["2025"] and "9015" not in COMMANDS["2017"]
    assert {"1001", "1002", "1014", "2013", "2052", "2062", "2111", "3022", "3024"} <= set(COMMANDS["2025"])
    assert {"3014", "3015", "3016", "3017"} <= set(COMMANDS["2025"])  # kept for 2017 devices (2025 §C)
    assert SYSTEM_CODES["2025"]["44"] and "44" not in SYSTEM_CODES["2017"]
    assert SYSTEM_CODES["2017"]["91"] == "system interaction"
    assert set(DATA_FLAGS) == set("NFMSDCTB")
    assert QN_RTN[9] == "CRC error" and EXE_RTN[100] == "no data"
    assert POLLUTANT_CODES["a21026"].unit == "mg/m³" and POLLUTANT_CODES["a21026"].amount_unit == "kg"
    assert POLLUTANT_CODES["w00000"].unit == "L/s" and POLLUTANT_CODES["a00000"].unit == "m³/s"
    assert POLLUTANT_CODES["a19001"].unit == "%"


@pytest.mark.parametrize(
    ("old", "new"),
    [("01", "a34013"), ("02", "a21026"), ("03", "a21002"), ("S01", "a19001"), ("B02", "a00000"),
     ("011", "w01018"), ("060", "w21003"), ("101", "w21011"), ("B01", "w00000"), ("065", "w21001"),
     ("S03", "a01012")],
)
def test_2005_code_map_from_appendix_b(old, new):
    assert HJ212_2005_CODE_MAP[old] == new
    assert new in POLLUTANT_CODES


# ---------------------------------------------------------------------------------------------
# SM4 (2025 §E)
# ---------------------------------------------------------------------------------------------


def cp_text(printed: str) -> str:
    return printed.split("CP=&&", 1)[1].rsplit("&&", 1)[0]


def encode_like(printed: str, **overrides) -> bytes:
    packet = parse(frame(printed))
    args = dict(qn=packet.qn, st=packet.st, cn=packet.cn, pw=packet.pw, mn=packet.mn, flag=packet.flag,
                cp=cp_text(printed))
    args.update(overrides)
    return encode(**args)


def test_sm4_encoding_reproduces_the_standards_ciphertext_a2_4():
    sent = encode_like(SM4_EXAMPLE_4, key=TEST_KEY)
    region = sent.split(b"CP=&&", 1)[1]
    tokens = region[1:region.index(b"}")].decode().split(",")
    assert "".join(t[2:] for t in tokens) == SM4_EXAMPLE_4_CIPHERTEXT
    assert all(len(t) == 4 and t.startswith("0x") for t in tokens)
    assert region[region.index(b"}") + 1:] == b"g=N&&B541\r\n"  # 3 plain characters stay plain
    assert sent[:6] == b"##0234"  # the length field of the printed example: the plaintext length
    assert len(sent) - 12 == 811  # characters actually sent


def test_sm4_encoding_of_a2_2_whole_blocks():
    sent = encode_like(SM4_EXAMPLE_2, key=TEST_KEY)
    assert sent.startswith(b"##0295") and sent.endswith(b"}&&2200\r\n")
    assert b"{0xE4,0x3E,0x15,0x9A,0xCF,0xAB,0x24,0x2C,0xB5,0x31,0x55,0xFB,0x8B,0x92,0x81,0xA1," in sent
    assert sent.endswith(b"0x03,0x50,0xA4,0x8D,0xBF,0x8B,0x41}&&2200\r\n")
    assert len(sent) - 12 == 1128


@pytest.mark.parametrize("printed", [SM4_EXAMPLE_2, SM4_EXAMPLE_4])
def test_sm4_packet_parses_with_the_key_like_its_plaintext(printed):
    sent = encode_like(printed, key=TEST_KEY)
    packet = parse(sent, keys={MN: TEST_KEY}, strict=True)
    plain = parse(frame(printed))
    assert packet.encrypted and not plain.encrypted
    assert packet.values == plain.values and packet.cp == plain.cp
    assert packet.raw == sent
    assert packet.values["a01011"] == {"Min": 1.35, "Avg": 1.35, "Max": 1.35, "Flag": "N"}


def test_sm4_length_field_may_be_the_transmitted_length():
    sent = encode_like(SM4_EXAMPLE_4, key=TEST_KEY)
    transmitted = b"##0811" + sent[6:]
    assert parse(transmitted, keys={MN: TEST_KEY}).values == parse(frame(SM4_EXAMPLE_4)).values
    with pytest.raises(LengthError, match="length mismatch: header says 0500"):
        parse(b"##0500" + sent[6:], keys={MN: TEST_KEY})


def test_sm4_wrong_key_is_a_clear_error():
    sent = encode_like(SM4_EXAMPLE_2, key=TEST_KEY)
    with pytest.raises(DecryptionError, match=f"CRC mismatch after SM4 decryption.*MN={MN}.*wrong key"):
        parse(sent, keys={MN: b"1" * 16})


def test_sm4_without_a_key_for_the_mn():
    sent = encode_like(SM4_EXAMPLE_2, key=TEST_KEY)
    with pytest.raises(DecryptionError, match=f"no SM4 key for MN={MN}"):
        parse(sent)
    with pytest.raises(DecryptionError, match=f"no SM4 key for MN={MN}"):
        parse(sent, keys={"OTHER": TEST_KEY})
    with pytest.raises(DecryptionError, match="must be 16 bytes"):
        parse(sent, keys={MN: b"short"})


def test_sm4_malformed_ciphertext():
    sent = encode_like(SM4_EXAMPLE_2, key=TEST_KEY)
    with pytest.raises(DecryptionError, match="not whole 16-byte"):
        parse(sent.replace(b"0xE4,", b"", 1), keys={MN: TEST_KEY})
    with pytest.raises(DecryptionError, match="0xNN"):
        parse(sent.replace(b"0xE4,", b"0xZ4,", 1), keys={MN: TEST_KEY})
    with pytest.raises(DecryptionError, match="closing"):
        parse(sent.replace(b"}", b""), keys={MN: TEST_KEY})


def test_sm4_short_region_stays_plaintext():
    sent = encode(qn="20240601085857223", st="32", cn="2011", pw="123456", mn=MN, version="2025",
                  cp="a=1", key=TEST_KEY)
    assert b"{" not in sent
    assert parse(sent).cp == {"a": "1"}


def test_sm4_key_only_for_2025():
    with pytest.raises(FieldError, match="HJ 212-2025 only"):
        encode(qn="20240601085857223", st="32", cn="2011", pw="123456", mn=MN, version="2017",
               cp="DataTime=20240601085800;a34013-Rtd=7.5", key=TEST_KEY)


def test_sm4_maximal_packet_fits_the_encrypted_limits():
    values = {f"a{n:05d}": {"Rtd": 1234.5678} for n in range(40)}
    sent = encode(qn="20240601085857223", st="31", cn="2011", pw="123456", mn=MN, version="2025",
                  values=values, data_time=dt.datetime(2024, 6, 1, 8, 58, tzinfo=SHANGHAI), key=TEST_KEY)
    assert len(sent) > MAX_PACKET_LENGTH
    assert Framer().feed(sent) == [sent]
    assert parse(sent, keys={MN: TEST_KEY}).values["a00039"]["Rtd"] == 1234.5678


# ---------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------


def upload_2017(flag: int = 5, **extra: str) -> Packet:
    return parse(with_crc(f"QN=20160801085857223;ST=32;CN=2011;PW=123456;MN={MN};Flag={flag};"
                          "CP=&&DataTime=20160801085857;w01018-Rtd=2.2,w01018-Flag=N&&"))


def request_2017(qn: str = "20160801085857223", flag: int = 5) -> Packet:
    return parse(with_crc(f"QN={qn};ST=32;CN=2061;PW=123456;MN={MN};Flag={flag};"
                          "CP=&&BeginTime=20160801080000;EndTime=20160801080000&&"))


def test_reply_9014_to_an_upload_asking_for_one_is_the_reference_packet():
    assert reply(upload_2017()) == frame(DATA_REPLY_2017)


def test_reply_9011_and_9012_to_a_request_are_the_reference_packets():
    assert reply(request_2017()) == frame(REQUEST_REPLY_2017)
    assert reply(request_2017(), exe_rtn=1) == frame(EXECUTION_RESULT_2017)
    assert b"QnRtn=3" in reply(request_2017(), qn_rtn=3)
    with pytest.raises(ValueError, match="QnRtn=42"):
        reply(request_2017(), qn_rtn=42)
    with pytest.raises(ValueError, match="ExeRtn=42"):
        reply(request_2017(), exe_rtn=42)


def test_reply_to_the_standards_1062_example_is_a_9011():
    answer = parse(reply(parse(frame(STANDARD_EXAMPLE))))
    assert (answer.cn, answer.st, answer.flag, answer.qn, answer.pw) == (
        "9011", "91", 4, "20160801085857223", "100000")
    assert answer.cp == {"QnRtn": "1"}


def test_reply_9013_to_the_2025_heartbeat_is_the_reference_packet():
    assert reply(parse(frame(HEARTBEAT_2025))) == frame(NOTIFY_REPLY_2025)


def test_reply_9014_to_the_encrypted_2025_upload_is_the_reference_packet():
    assert reply(parse(encode_like(SM4_EXAMPLE_2, key=TEST_KEY), keys={MN: TEST_KEY})) == frame(DATA_REPLY_2025)
    assert reply(parse(frame(SM4_EXAMPLE_2))) == frame(DATA_REPLY_2025)


def test_reply_9011_and_9012_in_2025_are_the_reference_packets():
    request = request_2017(qn="20240601085857223", flag=9)
    assert reply(request) == frame(REQUEST_REPLY_2025)
    assert reply(request, exe_rtn=1) == frame(EXECUTION_RESULT_2025)


@pytest.mark.parametrize(
    ("cn", "cp", "expected"),
    [("1013", "", "9013"), ("1001", "i23005-Info=ABC", "9013"), ("1014", "SKCreateTime=20240601085857223", "9013"),
     ("1014", "SKCreateTime=20240601085857223;NewSK=ABCDEFGHIJKLMNOP", "9011"), ("2081", "RestartTime=20240601080000", "9014"),
     ("1011", "SystemTime=20240601085857", "9014"), ("1011", "", "9011"), ("3012", "PolId=w01018", "9011"),
     ("2111", "DataTime=20240601085500;a01901-Avg=850", "9014")],
)
def test_reply_code_follows_the_command_type(cn, cp, expected):
    packet = parse(with_crc(f"QN=20240601085857223;ST=32;CN={cn};PW=123456;MN={MN};Flag=9;CP=&&{cp}&&"))
    answer = parse(reply(packet))
    assert answer.cn == expected and answer.st == "91" and answer.flag == 8
    assert answer.qn == packet.qn and answer.mn == packet.mn and answer.pw == packet.pw


def test_no_reply_without_the_reply_bit_or_to_a_reply():
    assert reply(upload_2017(flag=4)) is None
    assert reply(parse(with_crc(segment_of(HEARTBEAT_2025).decode().replace("Flag=9", "Flag=8")))) is None
    for printed in (DATA_REPLY_2017, REQUEST_REPLY_2017, EXECUTION_RESULT_2017, NOTIFY_REPLY_2025):
        assert reply(parse(frame(printed))) is None
    for cn in ("9011", "9012", "9013", "9014"):
        asking = parse(with_crc(f"QN=20240601085857223;ST=91;CN={cn};PW=123456;MN={MN};Flag=9;CP=&&&&"))
        assert reply(asking) is None


def test_reply_to_a_split_packet_clears_the_split_bit():
    packet = parse(with_crc(f"QN=20160801085857534;ST=32;CN=2061;PW=123456;MN={MN};Flag=11;PNUM=2;PNO=1;"
                            "CP=&&DataTime=20160801080000;w01018-Avg=40.1&&"))
    answer = parse(reply(packet))
    assert answer.flag == 8 and answer.cn == "9014" and answer.pnum is None


def test_reply_to_a_2005_packet_keeps_version_zero_and_makes_a_qn_when_missing():
    packet = parse(with_crc(f"ST=32;CN=2011;PW=123456;MN={MN};Flag=1;CP=&&DataTime=20040516020111;011-Rtd=40.2&&"))
    assert packet.qn is None
    now = dt.datetime(2024, 6, 1, 8, 58, 57, 223000, tzinfo=SHANGHAI)
    answer = parse(reply(packet, now=now))
    assert answer.flag == 0 and answer.version == "2005" and answer.qn == "20240601085857223"


# ---------------------------------------------------------------------------------------------
# Encoding and round trips
# ---------------------------------------------------------------------------------------------


def test_encode_builds_the_standards_example():
    assert encode(qn="20160801085857223", st="32", cn="1062", pw="100000", mn=MN, needs_reply=True,
                  cp={"RtdInterval": 30}) == frame(STANDARD_EXAMPLE)


def test_encode_builds_the_flue_gas_example_from_values():
    built = encode(qn="20220101010000000", st="31", cn="2061", pw="123456", mn=MN,
                   data_time=dt.datetime(2022, 1, 1, tzinfo=SHANGHAI),
                   values={"a00000": {"Cou": 36000.0, "Avg": 10.0, "Flag": "N"},
                           "a19001": {"Avg": 5.2, "Flag": "N"},
                           "a21026": {"Avg": 12.3, "ZsAvg": 13.6, "Cou": 0.44, "Flag": "N"}})
    assert built == frame(FLUE_GAS_HOURLY)


def test_encode_writes_2025_backfill_and_split_headers():
    built = encode(qn=dt.datetime(2024, 6, 1, 8, 58, 57, 223000, tzinfo=SHANGHAI), st="31", cn="2011",
                   pw="123456", mn=MN, version="2025", needs_reply=True, rf=True,
                   data_time=dt.datetime(2024, 6, 1, 0, 58, tzinfo=dt.timezone.utc),
                   values={"a34013": {"Rtd": 7.5, "Flag": "N"}})
    assert built == frame(BACKFILL_2025)
    split = parse(encode(qn="20240601085857223", st="31", cn="2061", pw="123456", mn=MN, version="2025",
                         pnum=3, pno=2, cp=""))
    assert (split.flag, split.pnum, split.pno, split.split) == (10, 3, 2, True)


def test_encode_enforces_the_length_limits():
    big = {f"w{n:05d}": {"Avg": 123456.789} for n in range(60)}
    with pytest.raises(LengthError, match="CP area of .* exceeds 950"):
        encode(qn="20240601085857223", st="32", cn="2061", pw="123456", mn=MN, values=big)
    with pytest.raises(LengthError, match="exceeds 1024"):
        encode(qn="20240601085857223", st="32", cn="2061", pw="1" * 100, mn=MN, cp="x=" + "1" * 900)
    with pytest.raises(LengthError):
        encode(qn="20240601085857223", st="32", cn="2061", pw="123456", mn=MN, version="2025", values=big,
               key=TEST_KEY)


def test_encode_rejects_unwritable_values():
    base = dict(qn="20240601085857223", st="32", cn="2011", pw="123456", mn=MN)
    with pytest.raises(FieldError):
        encode(**base, values={"a21026": {"Rtd": float("nan")}})
    with pytest.raises(FieldError):
        encode(**base, values={"a21026": {"Flag": "N;X"}})
    with pytest.raises(FieldError):
        encode(**{**base, "mn": "A;B"})
    with pytest.raises(FieldError):
        encode(**base, pnum=2)
    with pytest.raises(FieldError):
        encode(**base, pnum=2, pno=3)
    with pytest.raises(FieldError):
        encode(**base, version="2099")  # type: ignore[arg-type]


_codes = st.one_of(st.sampled_from(sorted(POLLUTANT_CODES)),
                   st.from_regex(r"[a-z][0-9]{5}", fullmatch=True), st.from_regex(r"SB[0-9]{1,2}", fullmatch=True))
_numbers = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
_fields = st.dictionaries(
    st.sampled_from(["Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax", "RawAvg", "RS"]),
    _numbers, min_size=1, max_size=5)
_flags = st.sampled_from(sorted(DATA_FLAGS) + ["Sr", "St"])
_times = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)).map(
    lambda t: t.replace(microsecond=0))


@st.composite
def packets(draw):
    version = draw(st.sampled_from(["2005", "2017", "2025"]))
    values = {}
    for code in draw(st.lists(_codes, min_size=0, max_size=5, unique=True)):
        fields = dict(draw(_fields))
        if draw(st.booleans()):
            fields["Flag"] = draw(_flags)
        if draw(st.booleans()):
            fields["SampleTime"] = draw(_times).replace(tzinfo=SHANGHAI)
        values[code] = fields
    split = draw(st.booleans())
    pnum = draw(st.integers(1, 99)) if split else None
    return dict(
        qn=draw(st.from_regex(r"20[0-9]{15}", fullmatch=True)),
        st=draw(st.sampled_from(sorted(SYSTEM_CODES["2017"]))),
        cn=draw(st.sampled_from(["2011", "2051", "2061", "2031"])),
        pw=draw(st.from_regex(r"[0-9A-Za-z]{6}", fullmatch=True)),
        mn=draw(st.from_regex(r"[0-9A-F]{24}", fullmatch=True)),
        version=version,
        needs_reply=draw(st.booleans()),
        values=values,
        data_time=draw(_times).replace(tzinfo=SHANGHAI),
        pnum=pnum,
        pno=draw(st.integers(1, pnum)) if split else None,
        rf=version == "2025" and draw(st.booleans()),
        key=draw(st.sampled_from([None, TEST_KEY, b"k" * 16])) if version == "2025" else None,
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(packets())
def test_encode_then_parse_round_trips(args):
    try:
        sent = encode(**args)
    except LengthError:
        return
    packet = parse(sent, keys={args["mn"]: args["key"]} if args["key"] else None, strict=True)
    assert packet.deviations == ()
    assert (packet.qn, packet.st, packet.cn, packet.pw, packet.mn) == (
        args["qn"], args["st"], args["cn"], args["pw"], args["mn"])
    assert packet.version == args["version"] and packet.needs_reply == args["needs_reply"]
    assert (packet.pnum, packet.pno, packet.split) == (args["pnum"], args["pno"], args["pnum"] is not None)
    assert packet.rf == args["rf"]
    assert packet.data_time == args["data_time"]
    assert packet.values == args["values"]
    assert packet.encrypted == (args["key"] is not None and b"{0x" in sent)
    assert encode(**args) == sent  # deterministic


@given(st.text(alphabet="ab01-=;,.&N", max_size=60))
def test_fast_and_careful_cp_readers_agree(inner):
    fast_values, fast_cp = {}, {}
    if not hj212._parse_cp_fast(inner, fast_values, fast_cp):
        return
    slow_values, slow_cp = {}, {}
    hj212._parse_cp(inner, slow_values, slow_cp, "2017", [], True, SHANGHAI, MN, b"")
    assert (fast_values, fast_cp) == (slow_values, slow_cp)


_cp_keys = st.sampled_from(["DataTime", "QnRtn", "a21026-Rtd", "a21026-Avg", "a21026-ZsAvg", "a21026-Flag",
                            "w01018-Rtd", "w01018-Flag", "w01018-Info", "w01018-SampleTime", "a-b-Avg", "02-Rtd",
                            "a34013-Unknown", "-Rtd", "a21026-", "", "Data-Time"])
_cp_texts = st.one_of(
    st.sampled_from(["1", "0", "-0", "-0.0", "-0e0", "12.5", "-3.25", "1.", ".5", "+1", "01", "1e5", "1E-3",
                     "1e999", "-1e999", "nan", "inf", "1_0", "", "N", "D", " 1", "1 ", "true", "null", "[1]",
                     "\"1\"", "1=2", "20250314100100", "9007199254740993", "0.1"]),
    st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True))


@st.composite
def _cp_areas(draw):
    items = draw(st.lists(st.tuples(_cp_keys, _cp_texts), min_size=1, max_size=8))
    separators = draw(st.lists(st.sampled_from([";", ","]), min_size=len(items), max_size=len(items)))
    return "".join(f"{sep if i else ''}{key}={text}" for i, ((key, text), sep) in enumerate(zip(items, separators)))


@settings(max_examples=400)
@given(_cp_areas())
def test_fast_cp_reader_agrees_with_the_careful_one_on_field_like_areas(inner):
    hj212._CP_PLANS.clear()
    slow_values, slow_cp = {}, {}
    try:
        hj212._parse_cp(inner, slow_values, slow_cp, "2017", [], True, SHANGHAI, MN, b"")
    except hj212.HJ212Error:
        slow = None
    else:
        slow = (slow_values, slow_cp)
    for _ in range(3):  # first sight of a layout, second (compiles it), compiled
        fast_values, fast_cp = {}, {}
        if not hj212._parse_cp_fast(inner, fast_values, fast_cp):
            assert (fast_values, fast_cp) == ({}, {})
            continue
        assert slow is not None
        assert repr((fast_values, fast_cp)) == repr(slow)  # repr: -0.0 is not 0.0, key order counts


def test_fast_cp_reader_reads_clean_areas_and_compiles_their_layout():
    hj212._CP_PLANS.clear()
    inner = "DataTime=20250314100100;a21026-Min=-0,a21026-Avg=-0.5,a21026-Flag=N;a01012-Rtd=1.,a01012-Info=x"
    expected = ({"a21026": {"Min": -0.0, "Avg": -0.5, "Flag": "N"}, "a01012": {"Rtd": 1.0, "Info": "x"}},
                {"DataTime": "20250314100100"})
    for _ in range(3):
        values, cp = hj212._read_cp_fast(inner)
        assert repr((values, cp)) == repr(expected)
    assert hj212._read_cp_fast(inner.replace("Info=x", "Info=")) is None
    assert hj212._read_cp_fast(inner.replace("Avg=-0.5", "Avg=nan")) is None


# ---------------------------------------------------------------------------------------------
# Tolerated deviations (lenient) and strict mode
# ---------------------------------------------------------------------------------------------

GOOD = f"QN=20160801085857223;ST=32;CN=2011;PW=123456;MN={MN};Flag=4;CP=&&DataTime=20160801085857;w01018-Rtd=2.2,w01018-Flag=N&&"
GOOD_VALUES = {"w01018": {"Rtd": 2.2, "Flag": "N"}}

DEVIATIONS = {
    "spaces": (with_crc(GOOD.replace(";ST", "; ST").replace("=2.2", " = 2.2")), "extra spaces in the data segment"),
    "spaces around packet": (b"  " + with_crc(GOOD)[:-2] + b"  \r\n", "extra spaces around the packet"),
    "lower-case crc": (with_crc(GOOD)[:-6] + with_crc(GOOD)[-6:-2].lower() + b"\r\n", "lower-case hex CRC"),
    "missing flag": (with_crc(GOOD.replace("Flag=4;", "")), "missing Flag; assumed Flag=4"),
    "missing terminator": (with_crc(GOOD)[:-2], "missing CR LF terminator"),
    "trailing ; in CP": (with_crc(GOOD.replace("=N&&", "=N;&&")), "empty CP item"),
    "trailing ; in header": (with_crc(GOOD.replace(";CP=", ";;CP=")), "empty field (stray ';')"),
    "single & close": (with_crc(GOOD.replace("=N&&", "=N&")), "CP area not delimited by '&&…&&'"),
    "no & at all": (with_crc(GOOD.replace("CP=&&", "CP=").replace("=N&&", "=N")), "CP area not delimited"),
    "&&&& close": (with_crc(GOOD.replace("=N&&", "=N&&&&")), "CP area delimited by more than '&&'"),
    "&& between items": (with_crc(GOOD.replace(";w01018", "&&w01018")), "'&&' between CP items"),
    "2005 codes in 2017": (with_crc(GOOD.replace("w01018", "011")), "HJ/T 212-2005 code 011 read as w01018"),
    "missing qn": (with_crc(GOOD.replace("QN=20160801085857223;", "")), "missing field QN"),
    "bad qn": (with_crc(GOOD.replace("QN=20160801085857223", "QN=2016")), "QN '2016' is not YYYYMMDDhhmmsszzz"),
    "header name case": (with_crc(GOOD.replace(";Flag=", ";FLAG=")), "field name 'FLAG' should be 'Flag'"),
    "unknown header": (with_crc(GOOD.replace("Flag=4;", "Flag=4;ADDR=7;")), "unknown field 'ADDR' ignored"),
    "same duplicate": (with_crc(GOOD.replace("Flag=4;", "Flag=4;ST=32;")), "duplicate field ST=32"),
    "same duplicate in CP": (with_crc(GOOD.replace("=N&&", "=N,w01018-Rtd=2.2&&")), "duplicate CP field w01018-Rtd=2.2"),
    "pw length": (with_crc(GOOD.replace("PW=123456", "PW=1234")), "PW of 4 characters"),
    "numbering without split bit": (with_crc(GOOD.replace("Flag=4;", "Flag=4;PNUM=2;PNO=1;")), "split bit clear"),
    "split bit without numbering": (with_crc(GOOD.replace("Flag=4;", "Flag=6;")), "PNUM/PNO are missing"),
    "rf 0": (with_crc(GOOD.replace("Flag=4;", "Flag=8;RF=0;")), "RF='0' is not 1"),
    "rf in 2017": (with_crc(GOOD.replace("Flag=4;", "Flag=4;RF=1;")), "RF field in an HJ 212-2017 packet"),
    "empty value": (with_crc(GOOD.replace("=2.2", "=")), "empty value for w01018-Rtd"),
    "no DataTime": (with_crc(GOOD.replace("DataTime=20160801085857;", "")), "CN=2011 data without DataTime"),
}


@pytest.mark.parametrize("name", DEVIATIONS)
def test_lenient_parse_records_each_tolerated_deviation(name):
    raw, expected = DEVIATIONS[name]
    packet = parse(raw)
    assert any(expected in d for d in packet.deviations), packet.deviations
    assert packet.mn == MN and packet.cn == "2011"


@pytest.mark.parametrize("name", DEVIATIONS)
def test_strict_parse_rejects_each_deviation(name):
    raw, expected = DEVIATIONS[name]
    with pytest.raises(HJ212Error, match="strict mode"):
        parse(raw, strict=True)


def test_lenient_values_survive_the_deviations():
    for name in ("spaces", "lower-case crc", "missing flag", "trailing ; in CP", "single & close", "no & at all",
                 "&&&& close", "2005 codes in 2017", "header name case", "same duplicate in CP"):
        assert parse(DEVIATIONS[name][0]).values == GOOD_VALUES, name


def test_missing_flag_is_read_as_2017_without_reply():
    packet = parse(DEVIATIONS["missing flag"][0])
    assert (packet.flag, packet.version, packet.needs_reply, packet.split) == (4, "2017", False, False)
    assert reply(packet) is None


def test_typical_2005_upload_without_qn_and_flag():
    packet = parse(with_crc("ST=32;CN=2011;PW=123456;MN=88888880000001;"
                            "CP=&&DataTime=20040516020111;B01-Rtd=12.5;011-Rtd=40.2,011-Flag=N;060-Rtd=1.5&&"))
    assert packet.values == {"w00000": {"Rtd": 12.5}, "w01018": {"Rtd": 40.2, "Flag": "N"}, "w21003": {"Rtd": 1.5}}
    assert packet.qn is None and packet.version == "2017"
    assert len(packet.deviations) == 6  # missing QN, missing Flag, MN, three old codes


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_crc_mismatch_names_both_crcs_and_the_mn():
    with pytest.raises(CRCError, match=f"^CRC mismatch: packet says 1C81, computed 1C80 \\(MN={MN}\\)$"):
        parse(frame(STANDARD_EXAMPLE[:-4] + "1C81"))


def test_non_hex_crc_is_rejected_even_leniently():
    with pytest.raises(CRCError, match="'1CG0' is not 4 hex digits"):
        parse(frame(STANDARD_EXAMPLE[:-4] + "1CG0"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [(frame(STANDARD_EXAMPLE.replace("##0101", "##0102")), "length mismatch: header says 0102, data segment has 101"),
     (frame(STANDARD_EXAMPLE.replace("##0101", "##01a1")), "bad length field '01a1'"),
     (b"##01\r\n", "packet too short"),
     (with_crc("QN=1;" + "x=" * 600 + ";CP=&&&&").replace(b"##", b"##", 1), "exceeds 1024")],
)
def test_length_errors(raw, message):
    with pytest.raises(LengthError, match=message):
        parse(raw)


@pytest.mark.parametrize("name", ["ST", "CN", "PW", "MN"])
def test_missing_required_field(name):
    segment = ";".join(f for f in GOOD.split(";") if not f.startswith(f"{name}="))
    with pytest.raises(FieldError, match=f"missing field {name} in data segment"):
        parse(with_crc(segment))


def test_missing_cp():
    with pytest.raises(FieldError, match="missing field CP in data segment"):
        parse(with_crc(f"QN=20160801085857223;ST=32;CN=2011;PW=123456;MN={MN};Flag=4"))


def test_bad_data_time_is_named_with_its_value():
    with pytest.raises(TimeError, match=f"^bad DataTime '2023130100' in CP \\(MN={MN}\\)$"):
        parse(with_crc(GOOD.replace("DataTime=20160801085857", "DataTime=2023130100")))
    with pytest.raises(TimeError, match="bad DataTime '20231301000000'"):
        parse(with_crc(GOOD.replace("DataTime=20160801085857", "DataTime=20231301000000")))
    with pytest.raises(TimeError, match="bad w01018-SampleTime"):
        parse(with_crc(GOOD.replace("=N&&", "=N,w01018-SampleTime=2016080107&&")))
    with pytest.raises(TimeError, match="bad BeginTime"):
        parse(with_crc(GOOD.replace("DataTime=20160801085857", "BeginTime=x")))


def test_unknown_command():
    with pytest.raises(CommandError, match=f"^unknown command CN=9999 \\(MN={MN}\\)$"):
        parse(with_crc(GOOD.replace("CN=2011", "CN=9999")))


@pytest.mark.parametrize(
    ("segment", "message"),
    [(GOOD.replace("Flag=4;", "Flag=4;ST=31;"), "duplicate field ST with different values '32' and '31'"),
     (GOOD.replace("=N&&", "=N,w01018-Rtd=2.3&&"), "duplicate CP field w01018-Rtd with different values"),
     (GOOD.replace(";w01018", ";DataTime=20160801085858;w01018"), "duplicate CP field DataTime"),
     (GOOD.replace("Flag=4", "Flag=x"), "bad Flag='x'"),
     (GOOD.replace("Flag=4", "Flag=300"), "bad Flag='300'"),
     (GOOD.replace("Flag=4", "Flag=16"), "unknown protocol version 4 in Flag=16"),
     (GOOD.replace("=2.2", "=2.2x"), "bad number w01018-Rtd='2.2x'"),
     (GOOD.replace("=2.2", "=nan"), "bad number w01018-Rtd='nan'"),
     (GOOD.replace("=2.2", "=1_0"), "bad number w01018-Rtd='1_0'"),
     (GOOD.replace("Flag=4;", "Flag=6;PNUM=2;PNO=3;"), "PNO=3 outside 1..PNUM=2"),
     (GOOD.replace("Flag=4;", "Flag=6;PNUM=2;"), "PNUM and PNO go together"),
     (GOOD.replace("Flag=4;", "Flag=6;PNUM=x;PNO=1;"), "bad PNUM='x'"),
     (GOOD.replace("MN=" + MN, "MN="), "empty field MN"),
     (GOOD.replace("ST=32", "ST=3"), "bad system code ST='3'"),
     (GOOD.replace("Flag=4;", "Flag=4;junk;"), "field 'junk' has no '='"),
     (GOOD.replace("w01018-Flag=N", "w01018-Flag"), "CP item 'w01018-Flag' has no '='"),
     (GOOD.replace("w01018-Flag", "-Flag"), "lacks a code or a suffix")],
)
def test_ambiguous_or_malformed_fields_are_rejected(segment, message):
    with pytest.raises(FieldError, match=message.replace("(", "\\(").replace(")", "\\)").replace(".", "\\.")):
        parse(with_crc(segment))


def test_bad_frames():
    with pytest.raises(FramingError, match="does not start with '##'"):
        parse(b"QN=1;CP=&&&&1234\r\n")
    with pytest.raises(FieldError, match="not UTF-8"):
        parse(b"##%04d%s%04X\r\n" % (len(b"QN=\xff;CP=&&&&"), b"QN=\xff;CP=&&&&", crc16(b"QN=\xff;CP=&&&&")))


def test_utf8_text_length_counts_bytes():
    segment = GOOD.replace("=N&&", "=N;i11001-Info=//设备启动//&&")
    packet = parse(with_crc(segment))
    assert packet.values["i11001"]["Info"] == "//设备启动//"


def test_errors_carry_mn_and_raw_bytes_and_are_value_errors():
    raw = frame(STANDARD_EXAMPLE[:-4] + "1C81")
    with pytest.raises(ValueError) as caught:
        parse(raw)
    assert isinstance(caught.value, CRCError) and caught.value.mn == MN and caught.value.raw == raw
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Framer
# ---------------------------------------------------------------------------------------------

PACKETS = [frame(p) for p in (STANDARD_EXAMPLE, FLUE_GAS_HOURLY, HEARTBEAT_2025, BACKFILL_2025)]


def test_framer_reassembles_packets_split_byte_by_byte():
    framer = Framer()
    stream = b"".join(PACKETS)
    out = []
    for i in range(len(stream)):
        out += framer.feed(stream[i:i + 1])
    assert out == PACKETS and framer.pending == 0


def test_framer_cuts_several_packets_from_one_segment():
    assert Framer().feed(b"".join(PACKETS)) == PACKETS


def test_framer_resyncs_after_garbage_and_reports_it():
    framer = Framer()
    out = framer.feed(b"GARBAGE" + PACKETS[0] + b"\r\n\x00 " + b"xx#" + PACKETS[1] + b"noise#")
    assert [o for o in out if isinstance(o, bytes)] == PACKETS[:2]
    errors = [o for o in out if isinstance(o, HJ212Error)]
    assert len(errors) == 3 and all(isinstance(e, FramingError) for e in errors)
    assert errors[0].raw == b"GARBAGE" and "garbage" in str(errors[0])
    assert errors[1].raw == b"\r\n\x00 xx#"  # '###': the header is the last two
    assert errors[2].raw == b"noise"
    # the trailing '#' of "noise#" may start the next header
    assert framer.feed(PACKETS[2][1:]) == [PACKETS[2]]


def test_framer_drops_blank_bytes_between_packets_silently():
    assert Framer().feed(PACKETS[0] + b"\r\n \x00\r\n" + PACKETS[1]) == PACKETS[:2]


def test_framer_keeps_a_trailing_hash_for_the_next_segment():
    framer = Framer()
    assert framer.feed(b"junk#") == [FramingErrorMatcher("junk")]
    assert framer.feed(PACKETS[0][1:]) == [PACKETS[0]]


class FramingErrorMatcher:
    def __init__(self, raw: str) -> None:
        self.raw = raw.encode()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FramingError) and other.raw == self.raw


def test_framer_handles_triple_hash():
    assert Framer().feed(b"#" + PACKETS[0]) == [FramingErrorMatcher("#"), PACKETS[0]]


def test_framer_bounds_a_device_that_never_sends_crlf():
    framer = Framer()
    unterminated = [p[:-2] for p in PACKETS[:2]] * 20
    out = []
    for chunk in unterminated:
        out += framer.feed(chunk)
        assert framer.pending <= MAX_PACKET_LENGTH + len(chunk)
    assert out and all(isinstance(o, LengthError) for o in out)
    assert "no CR LF within 1036 bytes" in str(out[0])
    assert out[0].raw == unterminated[0]
    # once the device behaves, frames come through again
    out = framer.feed(b"\r\n" + PACKETS[0])
    assert out[-1] == PACKETS[0]


def test_framer_bounds_endless_junk_after_a_header():
    framer = Framer()
    for _ in range(100):
        framer.feed(b"##" + b"x" * 500)
        assert framer.pending <= MAX_PACKET_LENGTH + 502
    framer.feed(b"x" * 5000)
    assert framer.pending <= MAX_PACKET_LENGTH


def test_framer_rejects_a_terminated_frame_over_the_limit():
    out = Framer().feed(b"##9999" + b"y" * 3000 + b"\r\n" + PACKETS[0])
    assert isinstance(out[0], LengthError) and out[1:] == [PACKETS[0]]


def test_framer_reports_a_truncated_packet_and_keeps_the_next():
    out = Framer().feed(PACKETS[1][:80] + PACKETS[0])
    assert isinstance(out[0], FramingError) and "truncated" in str(out[0])
    assert out[0].raw == PACKETS[1][:80] and out[1] == PACKETS[0]


def test_framer_allows_the_larger_limit_for_sm4_frames():
    sent = encode_like(SM4_EXAMPLE_2, key=TEST_KEY)
    assert len(sent) > MAX_PACKET_LENGTH
    framer = Framer()
    out = []
    for i in range(0, len(sent), 100):
        out += framer.feed(sent[i:i + 100])
    assert out == [sent]


def test_framer_flush_reports_an_incomplete_frame():
    framer = Framer()
    assert framer.feed(PACKETS[0][:50]) == []
    errors = framer.flush()
    assert len(errors) == 1 and errors[0].raw == PACKETS[0][:50]
    assert framer.flush() == [] and framer.pending == 0


# ---------------------------------------------------------------------------------------------
# Fuzz: nothing but HJ212Error escapes, nothing hangs
# ---------------------------------------------------------------------------------------------


def _mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(i, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[i:i] = bytes(rng.choice(b"#;,=&-{}0xN\r\n ") for _ in range(rng.randint(1, 3)))
        elif op == 2:
            del data[i:i + rng.randint(1, 10)]
        elif op == 3:
            j = rng.randrange(len(data) + 1)
            data[i:i] = data[j:j + rng.randint(1, 20)]
        else:
            data[i:i] = rng.choice([b"##", b"\r\n", b"CP=&&{0x", b";", b"&&", b"=", b"Flag=9;"])
    return bytes(data)


def test_fuzz_framer_and_parse_raise_only_hj212_errors():
    rng = random.Random(212)
    sm4 = encode_like(SM4_EXAMPLE_2, key=TEST_KEY)
    seeds = PACKETS + [frame(p) for p in REFERENCE_PACKETS.values()] + [sm4]
    keys = {MN: TEST_KEY}
    framer = Framer()
    started = time.monotonic()
    parsed = errors = 0
    for n in range(4000):
        if n % 4 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        elif n % 4 == 1:
            data = rng.choice(seeds)
        else:
            data = _mutate(rng, rng.choice(seeds))
        for item in framer.feed(data) + [*framer.feed(b"\r\n")]:
            if isinstance(item, HJ212Error):
                errors += 1
                continue
            for candidate in (item, data):
                try:
                    parse(candidate, keys=keys)
                    parsed += 1
                except HJ212Error:
                    errors += 1
                try:
                    parse(candidate, keys=keys, strict=True)
                except HJ212Error:
                    pass
        assert framer.pending <= hj212.MAX_ENCRYPTED_PACKET_LENGTH + len(data) + 2
    assert time.monotonic() - started < 60
    assert parsed > 100 and errors > 1000


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_fuzz_parse_of_arbitrary_bytes(data):
    for candidate in (data, b"##%04d" % max(len(data) - 4, 0) + data + b"\r\n"):
        try:
            parse(candidate, keys={MN: TEST_KEY})
        except HJ212Error:
            pass


def test_data_segment_limit_constant():
    assert MAX_DATA_LENGTH == 1024 and MAX_PACKET_LENGTH == 1036
