"""HJ 212 packets: framing, CRC, parsing, encoding and the platform's replies.

Pure protocol, no sockets and no MQTT: the TCP gateway feeds received bytes to a `Framer`, hands
each frame to `parse`, answers with `reply` and forwards the `Packet`.

Editions (``Packet.version``): HJ/T 212-2005 (``"2005"``), HJ 212-2017 (``"2017"``) and
HJ 212-2025 (``"2025"``), told apart by the version bits of ``Flag``: ``(Flag >> 2) & 0x3F``
(``reference/hj212.md`` §2 and "2025" §A). Bit 0 of ``Flag`` asks for a reply and bit 1 marks a
split packet in every edition; the letters A/D swapped meaning in 2025, the bit positions did not.

Packet: ``##`` + 4-digit data-segment length + data segment + CRC16 (4 hex) + ``\\r\\n``
(§1, Table 2). The data segment is ``QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;[PNUM=…;PNO=…;][RF=1;]CP=&&…&&``
(§2, Table 3; 2025 §B). In 2025 the CP data area may be SM4-encrypted (2025 §E): the whole 16-byte
blocks are written as ``{0xNN,…}`` followed by the plaintext tail, the CRC and (in the printed
examples) the length field are those of the *plaintext* segment.

Leniency. ``parse(strict=False)`` (the default) tolerates what field devices commonly do wrong and
records each tolerated deviation in ``Packet.deviations`` (one line each); ``strict=True`` raises on
the first one instead. Tolerated:

- spaces around ``;`` ``,`` ``=`` ``&`` and around the packet;
- a lower-case hex CRC;
- a missing CR LF terminator (only possible when the caller frames the packet itself);
- a missing ``Flag``: assumed ``Flag=4`` (HJ 212-2017, no reply requested; ``Flag=6`` when
  ``PNUM``/``PNO`` are present). A device that sends no Flag never asked for a reply, and the
  2005 and 2017 data segments read alike, so 2017 is the harmless assumption;
- a missing ``QN`` (HJ/T 212-2005 uploads often carry none): ``Packet.qn`` is ``None``;
- empty items and a trailing ``;`` or ``,`` in the header or CP, ``&`` delimiters of the CP area
  other than exactly ``&&…&&``, ``&&`` used between CP items;
- HJ/T 212-2005 pollutant codes in a 2017/2025 packet (``02-Rtd`` → ``a21026``), mapped through
  `HJ212_2005_CODE_MAP` (in a 2005 packet the mapping is the edition's normal reading and is not a
  deviation);
- a duplicated field that repeats the same value; a header field name in the wrong case; an unknown
  header field (ignored); an MN that is not 24 hex characters; a PW that is not 6 characters; a QN
  that is not 17 digits; ``PNUM``/``PNO`` without the split bit or the reverse; an ``RF`` other
  than ``1`` (read as "not back-filled", as the reference recommends); ``RF`` in a pre-2025 packet;
  a CN of another edition (2025's 9015 in a packet flagged 2017); a CP area over 950 characters;
  an empty value (read as ``None``); a data upload without ``DataTime``.

Rejected (always, with an `HJ212Error` subclass whose one-line message says what and where): a bad
frame, a length field that disagrees with the data segment (except the two lengths allowed for an
encrypted CP), a data segment over 1024 characters, a non-hex or wrong CRC, a missing ST/CN/PW/MN,
a duplicated field with different values, an unknown CN, an unknown version in Flag, a malformed
time, a non-numeric value for a numeric field, an encrypted CP without its key or with the wrong key.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
from dataclasses import dataclass, fields as dataclass_fields
from decimal import Decimal
from types import MappingProxyType
from operator import call, itemgetter
from typing import Callable, Final, Literal, Mapping, Sequence, Union
from zoneinfo import ZoneInfo

import msgspec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "COMMANDS",
    "DATA_FLAGS",
    "EXE_RTN",
    "HJ212_2005_CODE_MAP",
    "MAX_CP_LENGTH",
    "MAX_DATA_LENGTH",
    "MAX_ENCRYPTED_DATA_LENGTH",
    "MAX_ENCRYPTED_PACKET_LENGTH",
    "MAX_PACKET_LENGTH",
    "POLLUTANT_CODES",
    "QN_RTN",
    "SM4_ENCRYPTED_COMMANDS",
    "SYSTEM_CODES",
    "CRCError",
    "CommandError",
    "DecryptionError",
    "FieldError",
    "Framer",
    "FramingError",
    "HJ212Error",
    "LengthError",
    "Packet",
    "PollutantCode",
    "TimeError",
    "command_kind",
    "crc16",
    "encode",
    "parse",
    "reply",
]

Edition = Literal["2005", "2017", "2025"]
CommandKind = Literal["upload", "request", "notify", "interaction"]

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")

# ---------------------------------------------------------------------------------------------
# Sizes (reference/hj212.md §1 Table 2, §2 Table 3, 2025 §B and §E)
# ---------------------------------------------------------------------------------------------

HEADER: Final = b"##"
TERMINATOR: Final = b"\r\n"
LENGTH_DIGITS: Final = 4
CRC_DIGITS: Final = 4
# §1: the data segment is 0 ≤ n ≤ 1024 characters (bytes: Chinese text is UTF-8) in every edition.
MAX_DATA_LENGTH: Final = 1024
# §1 / §2 Table 3: the CP area, ``CP=&&`` and ``&&`` included, is at most 950 characters.
MAX_CP_LENGTH: Final = 950
# §1: 2 + 4 + 1024 + 4 + 2.
MAX_PACKET_LENGTH: Final = len(HEADER) + LENGTH_DIGITS + MAX_DATA_LENGTH + CRC_DIGITS + len(TERMINATOR)
# 2025 §E: SM4 blocks are 16 bytes; each ciphertext byte is written as ``0xNN`` plus a comma, so an
# encrypted region grows by 4 characters per byte plus the braces: at most 1024 + 4 × 1024 + 2.
SM4_BLOCK: Final = 16
MAX_ENCRYPTED_DATA_LENGTH: Final = MAX_DATA_LENGTH * 5 + 2
MAX_ENCRYPTED_PACKET_LENGTH: Final = (
    len(HEADER) + LENGTH_DIGITS + MAX_ENCRYPTED_DATA_LENGTH + CRC_DIGITS + len(TERMINATOR)
)

# ---------------------------------------------------------------------------------------------
# Flag (§2 Table 3; 2025 §A): bits V5..V0 x y, bit 0 = reply requested, bit 1 = split.
# ---------------------------------------------------------------------------------------------

FLAG_REPLY: Final = 0x01
FLAG_SPLIT: Final = 0x02
FLAG_VERSION_SHIFT: Final = 2
FLAG_VERSION_MASK: Final = 0x3F
FLAG_MAX: Final = 255
# 2025 §A, "Flag values by edition".
EDITION_BY_VERSION_BITS: Final[Mapping[int, Edition]] = MappingProxyType({0: "2005", 1: "2017", 2: "2025"})
VERSION_BITS_BY_EDITION: Final[Mapping[str, int]] = MappingProxyType(
    {edition: bits for bits, edition in EDITION_BY_VERSION_BITS.items()}
)
# Assumed when a packet carries no Flag (see the module docstring).
DEFAULT_FLAG_WHEN_MISSING: Final = VERSION_BITS_BY_EDITION["2017"] << FLAG_VERSION_SHIFT

# ---------------------------------------------------------------------------------------------
# Command codes CN
# ---------------------------------------------------------------------------------------------

# §5, Table 9 of HJ 212-2017.
_COMMANDS_2017: Final[dict[str, str]] = {
    "1000": "set timeout and retry count",
    "1011": "get / upload site time",
    "1012": "set site time",
    "1013": "site time-calibration request",
    "1061": "get / upload real-time data interval",
    "1062": "set real-time data interval",
    "1063": "get / upload minute-data interval",
    "1064": "set minute-data interval",
    "1072": "set site password",
    "2011": "real-time pollutant data",
    "2012": "stop real-time data",
    "2021": "facility running-state data",
    "2022": "stop facility running-state data",
    "2031": "daily pollutant history data",
    "2041": "daily facility running-time history",
    "2051": "minute pollutant data",
    "2061": "hourly pollutant data",
    "2081": "data-logger boot time",
    "3011": "zero / span calibration",
    "3012": "immediate sampling",
    "3013": "cleaning / back-blowing",
    "3014": "comparison sampling",
    "3015": "over-limit sample retention / its information",
    "3016": "set sampling period",
    "3017": "get sampling period",
    "3018": "get sample-output time",
    "3019": "get / upload instrument unique ID",
    "3020": "get / upload site information",
    "3021": "set site parameters",
    "9011": "request reply (QnRtn)",
    "9012": "execution result (ExeRtn)",
    "9013": "notification reply",
    "9014": "data reply",
}
# 2025 §C: the 2017 codes stay (3014–3017 kept for 2017 devices, their removal is unverified),
# plus the new ones.
_COMMANDS_2025: Final[dict[str, str]] = {
    **_COMMANDS_2017,
    "1001": "upload data-logger hardware serial numbers",
    "1002": "set the data-logger MN",
    "1014": "request / send a new SM4 key",
    "2013": "raw monitoring data",
    "2052": "noise single-measurement data",
    "2062": "automatic standard-sample check data",
    "2111": "furnace temperature 5-minute mean",
    "3022": "immediate sample-retention task",
    "3024": "start an automatic standard-sample check",
    "9015": "heartbeat",
}
# The reference holds no HJ/T 212-2005 command table; 2005 devices use the codes 2017 kept, so a
# 2005 packet is read against the 2017 table.
COMMANDS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "2005": MappingProxyType(_COMMANDS_2017),
        "2017": MappingProxyType(_COMMANDS_2017),
        "2025": MappingProxyType(_COMMANDS_2025),
    }
)
_ALL_COMMANDS: Final[frozenset[str]] = frozenset(_COMMANDS_2025)

# Direction/type column of §5 Table 9 and 2025 §C, as the platform sees an inbound packet.
_INTERACTION_COMMANDS: Final = frozenset({"9011", "9012", "9013", "9014"})
_NOTIFY_COMMANDS: Final = frozenset({"1013", "1001", "9015", "2012", "2022"})
_REQUEST_ONLY_COMMANDS: Final = frozenset(
    {"1000", "1012", "1062", "1064", "1072", "3011", "3012", "3013", "3014", "3016", "3021",
     "1002", "3022", "3024"}
)
_UPLOAD_ONLY_COMMANDS: Final = frozenset({"2081", "2111"})
# CP keys that only an upload carries (a request of a "both" code carries none or Begin/EndTime).
_UPLOAD_MARKERS: Final = ("DataTime", "SystemTime", "RtdInterval", "MinInterval", "RestartTime",
                          "CstartTime", "CTime", "Stime")

# 2025 §E (§6.4.4): site→platform data commands 2000–2999, 1014 and 3020 shall be encrypted
# over the Internet; other commands need none.
SM4_ENCRYPTED_COMMANDS: Final = frozenset(
    {code for code in _COMMANDS_2025 if code.startswith("2")} | {"1014", "3020"}
)

# ---------------------------------------------------------------------------------------------
# System codes ST (§4 Table 5; 2025 §D)
# ---------------------------------------------------------------------------------------------

_SYSTEM_CODES_2017: Final[dict[str, str]] = {
    "21": "surface water quality monitoring",
    "22": "ambient air quality monitoring",
    "23": "acoustic environment quality",
    "24": "groundwater quality",
    "25": "soil quality",
    "26": "seawater quality",
    "27": "volatile organic compounds monitoring",
    "31": "atmospheric pollution source",
    "32": "surface-water pollution source",
    "33": "groundwater pollution source",
    "34": "marine pollution source",
    "35": "soil pollution source",
    "36": "noise pollution source",
    "37": "vibration source",
    "38": "radioactive source",
    "39": "construction-site dust source",
    "41": "electromagnetic source",
    "51": "flue-gas emission process monitoring",
    "52": "wastewater emission process monitoring",
    "91": "system interaction",
}
SYSTEM_CODES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "2005": MappingProxyType(_SYSTEM_CODES_2017),  # the reference holds no 2005 table
        "2017": MappingProxyType(_SYSTEM_CODES_2017),
        "2025": MappingProxyType(
            {
                **_SYSTEM_CODES_2017,
                "44": "electricity-use monitoring",
                "45": "key production-condition monitoring",
            }
        ),
    }
)
# §4: 91–99 system interaction; replies use 91 (§5).
REPLY_SYSTEM_CODE: Final = "91"

# ---------------------------------------------------------------------------------------------
# Return codes and data flags (§6 Tables 6 and 7, §7 Table 8)
# ---------------------------------------------------------------------------------------------

EXE_RTN: Final[Mapping[int, str]] = MappingProxyType(
    {1: "success", 2: "failed, reason unknown", 3: "request condition error", 4: "communication timeout",
     5: "system busy", 6: "system fault", 100: "no data"}
)
QN_RTN: Final[Mapping[int, str]] = MappingProxyType(
    {1: "ready to execute", 2: "request rejected", 3: "PW error", 4: "MN error", 5: "ST error",
     6: "Flag error", 7: "QN error", 8: "CN error", 9: "CRC error", 100: "unknown error"}
)
DATA_FLAGS: Final[Mapping[str, str]] = MappingProxyType(
    {"N": "instrument working normally", "F": "instrument stopped", "M": "maintenance",
     "S": "manually entered set value", "D": "instrument fault", "C": "calibration",
     "T": "above the upper measuring limit", "B": "communication fault"}
)

# ---------------------------------------------------------------------------------------------
# Monitoring-factor codes (§8, Appendix B Tables B.1 and B.2)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollutantCode:
    """One row of Appendix B: default units as printed (None where the table gives none)."""

    name: str
    unit: str | None
    amount_unit: str | None = None


def _p(name: str, unit: str | None, amount_unit: str | None = None) -> PollutantCode:
    return PollutantCode(name, unit, amount_unit)


POLLUTANT_CODES: Final[Mapping[str, PollutantCode]] = MappingProxyType(
    {
        # §8.1, Table B.1 (water)
        "w00000": _p("wastewater flow", "L/s", "m³"),
        "w01001": _p("pH", None),
        "w01002": _p("colour", "degree"),
        "w01009": _p("dissolved oxygen", "mg/L"),
        "w01010": _p("water temperature", "°C"),
        "w01012": _p("suspended solids", "mg/L", "kg"),
        "w01014": _p("conductivity", "µS/cm"),
        "w01017": _p("BOD5", "mg/L", "kg"),
        "w01018": _p("COD (CODCr)", "mg/L", "kg"),
        "w01019": _p("permanganate index (CODMn)", "mg/L", "kg"),
        "w01020": _p("TOC", "mg/L", "kg"),
        "w02003": _p("fecal coliform", "count/L"),
        "w19002": _p("anionic surfactants", "mg/L", "kg"),
        "w20111": _p("total mercury", "µg/L", "g"),
        "w20115": _p("cadmium", "µg/L", "g"),
        "w20116": _p("total chromium", "mg/L", "kg"),
        "w20117": _p("hexavalent chromium", "µg/L", "g"),
        "w20119": _p("total arsenic", "µg/L", "g"),
        "w20120": _p("total lead", "µg/L", "g"),
        "w20122": _p("total copper", "mg/L", "kg"),
        "w20123": _p("total zinc", "mg/L", "kg"),
        "w21001": _p("total nitrogen", "mg/L", "kg"),
        "w21003": _p("ammonia nitrogen", "mg/L", "kg"),
        "w21011": _p("total phosphorus", "mg/L", "kg"),
        "w21016": _p("cyanide", "mg/L", "kg"),
        "w21017": _p("fluoride", "mg/L", "kg"),
        "w21019": _p("sulfide", "mg/L", "kg"),
        "w22001": _p("petroleum", "mg/L", "kg"),
        "w23002": _p("volatile phenol", "mg/L", "kg"),
        # §8.2, Table B.2 (air); ambient stations report µg/m³: configure units per station.
        "a00000": _p("flue-gas flow", "m³/s", "m³"),
        "a01001": _p("ambient temperature", "°C"),
        "a01002": _p("ambient humidity", "%"),
        "a01006": _p("ambient pressure", "kPa"),
        "a01007": _p("wind speed", "m/s"),
        "a01008": _p("wind direction", "°"),
        "a01010": _p("Ringelmann blackness", None),
        "a01011": _p("flue-gas velocity", "m/s"),
        "a01012": _p("flue-gas temperature", "°C"),
        "a01013": _p("flue-gas pressure", "kPa"),
        "a01014": _p("flue-gas humidity", "%"),
        "a01016": _p("duct cross-section area", "m²"),
        "a01017": _p("flue-gas dynamic pressure", "kPa"),
        "a19001": _p("oxygen content (O2)", "%"),
        "a05001": _p("CO2", "mg/m³", "kg"),
        "a21002": _p("NOx", "mg/m³", "kg"),
        "a21003": _p("NO", "mg/m³", "kg"),
        "a21004": _p("NO2", "mg/m³", "kg"),
        "a21005": _p("CO", "mg/m³", "kg"),
        "a21026": _p("SO2", "mg/m³", "kg"),
        "a21001": _p("NH3", None),
        "a21024": _p("HCl", "mg/m³", "kg"),
        "a20057": _p("mercury and compounds", "mg/m³", "kg"),
        "a24088": _p("non-methane hydrocarbons (NMHC)", "mg/m³", "kg"),
        "a25002": _p("benzene", "mg/m³", "kg"),
        "a25003": _p("toluene", "mg/m³", "kg"),
        "a25005": _p("xylene", "mg/m³", "kg"),
        "a34013": _p("smoke dust / particulate", "mg/m³", "kg"),
        "a34001": _p("TSP", "ng/m³"),  # as printed; stations report µg/m³
        "a34002": _p("PM10", "ng/m³"),  # as printed; stations report µg/m³
        "a34004": _p("PM2.5", "ng/m³"),  # as printed; stations report µg/m³
        "a34005": _p("PM1.0", None),
        # Not in HJ 212-2017 Table B.2: HJ 524-2009, used by public implementations (§8.2 notes).
        "a05024": _p("O3", "µg/m³"),
    }
)

# §8 "Old 2005 code" columns of Tables B.1/B.2. Air codes have two characters, water codes three,
# so the two sets never collide.
HJ212_2005_CODE_MAP: Final[Mapping[str, str]] = MappingProxyType(
    {
        # water
        "B01": "w00000", "001": "w01001", "002": "w01002", "003": "w01012", "010": "w01017",
        "011": "w01018", "015": "w01020", "550": "w02003", "520": "w19002", "020": "w20111",
        "022": "w20115", "023": "w20116", "024": "w20117", "026": "w20119", "027": "w20120",
        "029": "w20122", "030": "w20123", "065": "w21001", "060": "w21003", "101": "w21011",
        "070": "w21016", "072": "w21017", "071": "w21019", "080": "w22001", "110": "w23002",
        # air
        "B02": "a00000", "37": "a01010", "S02": "a01011", "S03": "a01012", "S08": "a01013",
        "S05": "a01014", "S07": "a01016", "S04": "a01017", "S01": "a19001", "30": "a05001",
        "03": "a21002", "04": "a21005", "02": "a21026", "10": "a21001", "08": "a21024",
        "31": "a20057", "17": "a25003", "18": "a25005", "01": "a34013",
    }
)

# ---------------------------------------------------------------------------------------------
# CP field names (§3 Table 4; 2025 §G)
# ---------------------------------------------------------------------------------------------

# Suffixes whose values are text; all others are numbers when they read as one.
_TEXT_SUFFIXES: Final = frozenset({"Flag", "EFlag", "Info", "SN", "SampleType"})
# Suffixes whose values are times (YYYYMMDDhhmmss).
_TIME_SUFFIXES: Final = frozenset({"SampleTime", "CompleteTime"})
# Suffixes known to be numbers: a non-numeric value there is an error, not text.
_NUMBER_SUFFIXES: Final = frozenset(
    {"Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax", "RawAvg", "Data",
     "DayData", "NightData", "RS", "RT", "SampleRd", "StandardValue", "ResultType"}
)
# Non-pollutant CP keys holding YYYYMMDDhhmmss times (§3; 2025 §G "time formats unchanged").
_CP_TIME_KEYS: Final = ("DataTime", "SystemTime", "BeginTime", "EndTime", "RestartTime")
# Commands whose site→platform packets are data uploads that should carry DataTime.
_DATA_UPLOAD_COMMANDS: Final = frozenset({"2011", "2021", "2031", "2041", "2051", "2061", "2013",
                                          "2052", "2062", "2111"})

# §2 Table 3: QN is YYYYMMDDhhmmsszzz; 2025 §B: MN is 24 characters 0-9/A-F; PW has 6 characters.
QN_DIGITS: Final = 17
MN_LENGTH: Final = 24
PW_LENGTH: Final = 6
TIME_DIGITS: Final = 14

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class HJ212Error(ValueError):
    """A packet (or stream bytes) that cannot be accepted; the message is one line.

    ``mn`` is the device's MN when it could be read, ``raw`` the offending bytes (for the
    dead-letter topic: nothing is dropped silently).
    """

    def __init__(self, message: str, *, mn: str | None = None, raw: bytes | None = None) -> None:
        super().__init__(message)
        self.mn = mn
        self.raw = raw


class FramingError(HJ212Error):
    """Bytes that do not form a frame: garbage between packets, a truncated or unterminated frame."""


class LengthError(HJ212Error):
    """A length field that disagrees with the data, or a packet over the size limits."""


class CRCError(HJ212Error):
    """A CRC that is not 4 hex digits or does not match the data segment."""


class FieldError(HJ212Error):
    """A missing, malformed, duplicated or contradictory field."""


class TimeError(FieldError):
    """A malformed time (QN, DataTime, SampleTime…)."""


class CommandError(HJ212Error):
    """A command code (CN) no edition defines."""


class DecryptionError(HJ212Error):
    """An SM4-encrypted CP area without a key for its MN, with the wrong key, or malformed."""


# ---------------------------------------------------------------------------------------------
# Packet
# ---------------------------------------------------------------------------------------------

Value = Union[float, str, dt.datetime, None]


@dataclass(frozen=True, slots=True)
class Packet:
    """One parsed HJ 212 packet.

    ``values`` maps pollutant (or facility/info) code → field suffix → value: numbers as ``float``,
    ``Flag``/``EFlag``/``Info``/``SN`` as ``str``, ``SampleTime`` as an aware ``datetime``, an empty
    value as ``None``. ``cp`` holds the other CP keys as raw strings (``DataTime``, ``QnRtn``…).
    ``data_time`` is ``DataTime`` as an aware datetime (local time of the ``tz`` given to `parse`,
    Asia/Shanghai by default). Treat the dicts as read-only.
    """

    qn: str | None
    st: str
    cn: str
    pw: str
    mn: str
    flag: int
    version: Edition
    needs_reply: bool
    split: bool
    pnum: int | None
    pno: int | None
    rf: bool
    data_time: dt.datetime | None
    values: dict[str, dict[str, Value]]
    cp: dict[str, str]
    deviations: tuple[str, ...]
    raw: bytes
    encrypted: bool = False


# `parse` builds its Packets without the frozen dataclass's __init__ (one object.__setattr__ call
# per field): it sets the slots directly, all in one C-level map. Packet has no __post_init__.
_PACKET_SLOT_SETTERS: Final = tuple(Packet.__dict__[field.name].__set__ for field in dataclass_fields(Packet))
assert tuple(field.name for field in dataclass_fields(Packet)) == Packet.__slots__


def _new_packet(*values: object) -> Packet:
    packet = object.__new__(Packet)
    any(map(call, _PACKET_SLOT_SETTERS, itertools.repeat(packet), values))
    return packet


# ---------------------------------------------------------------------------------------------
# CRC16 (§9, Appendix A)
# ---------------------------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """HJ 212 CRC16 of ``data`` (the data segment): register 0xFFFF, each byte XORed into the
    register's high byte (``crc = (crc >> 8) ^ byte``), 8 shifts with reflected polynomial 0xA001.

    Not CRC-16/MODBUS. ``crc16(b"123456789") == 0x2F80``.

    Because every step keeps only the register's high byte, one step is the table lookup
    ``crc = TABLE[(crc >> 8) ^ byte]`` and the state between bytes is 8 bits wide. That step is
    linear over GF(2) and a permutation of order 8, so the bytes are folded 8 at a time (big-int
    XOR, in C) and only 8 table lookups remain, whatever the length.
    """
    n = len(data)
    if n == 0:
        return 0xFFFF
    m = n - 1  # all bytes but the last drive the 8-bit state; the last one indexes the table
    if m == 0:
        return _CRC_TABLE[_CRC_INITIAL_STATE ^ data[0]]
    chunks = -(-m // 8)  # the first one may be short: int.from_bytes pads it with zeros
    folded = int.from_bytes(data[:m], "big")
    while chunks > 1:  # fold the high half of the chunks onto the low half (aligned at the end)
        low = chunks >> 1
        folded = (folded >> (low << 6)) ^ (
            folded & (_CRC_FOLD_MASKS[low] if low < len(_CRC_FOLD_MASKS) else (1 << (low << 6)) - 1))
        chunks -= low
    b0, b1, b2, b3, b4, b5, b6, b7 = folded.to_bytes(8, "big")
    p0, p1, p2, p3, p4, p5, p6, p7 = _CRC_POSITION_TABLES
    state = (_CRC_STATE_CONSTANT[m & 7] ^ p0[b0] ^ p1[b1] ^ p2[b2] ^ p3[b3] ^ p4[b4] ^ p5[b5]
             ^ p6[b6] ^ p7[b7])
    return _CRC_TABLE[state ^ data[m]]


# ---------------------------------------------------------------------------------------------
# parse
# ---------------------------------------------------------------------------------------------


def parse(
    packet: bytes | bytearray | memoryview | str,
    *,
    keys: Mapping[str, bytes] | None = None,
    strict: bool = False,
    tz: dt.tzinfo | None = SHANGHAI,
) -> Packet:
    """Parse one packet (``##`` … ``\\r\\n``) of any edition.

    ``keys`` maps MN → 16-byte SM4 key for HJ 212-2025 encrypted CP areas; the CP is decrypted
    first and the CRC checked on the plaintext segment. ``strict`` rejects every deviation that
    the lenient default tolerates (see the module docstring). Times are local times in ``tz``
    (``None`` gives naive datetimes). Raises an `HJ212Error` subclass.
    """
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    raw = bytes(packet)
    deviations: list[str] = []
    body = raw
    # Frame: the fast path is a clean ``##…\r\n``; anything else goes through the lenient path.
    if body[:2] == HEADER and body[-2:] == TERMINATOR and body[-3:-2] not in _BLANK_BYTES:
        body = body[:-2]
    else:
        body = _unwrap_frame(raw, deviations, strict)
    if len(body) < len(HEADER) + LENGTH_DIGITS + CRC_DIGITS:
        raise LengthError(f"packet too short ({len(raw)} bytes): {_snippet(raw)}", raw=raw)
    length_field = body[2:6]
    if not (length_field.isdigit()):
        raise LengthError(f"bad length field {_show(length_field)} after '##'", raw=raw)
    declared = int(length_field)
    segment = body[6:-4]
    crc_field = body[-4:]
    if _HEX4(crc_field) is None:
        raise CRCError(f"CRC {_show(crc_field)} is not 4 hex digits (MN={_mn_hint(segment)})",
                       mn=_mn_hint(segment), raw=raw)
    packet_crc = int(crc_field, 16)
    if not crc_field.isupper() and not crc_field.isdigit():
        _deviate(deviations, strict, CRCError, f"lower-case hex CRC {crc_field.decode()}")

    encrypted_at = segment.find(b"CP=&&{0x")
    if encrypted_at < 0:
        if declared != len(segment):
            raise LengthError(
                f"length mismatch: header says {length_field.decode()}, data segment has "
                f"{len(segment)} bytes (MN={_mn_hint(segment)})", mn=_mn_hint(segment), raw=raw)
        if declared > MAX_DATA_LENGTH:
            raise LengthError(f"data segment of {declared} bytes exceeds {MAX_DATA_LENGTH} "
                              f"(MN={_mn_hint(segment)})", mn=_mn_hint(segment), raw=raw)
        computed = crc16(segment)
        if computed != packet_crc:
            raise CRCError(
                f"CRC mismatch: packet says {crc_field.decode().upper()}, computed {computed:04X} "
                f"(MN={_mn_hint(segment)})", mn=_mn_hint(segment), raw=raw)
        plain = segment
    else:
        plain = _decrypt_segment(segment, encrypted_at, declared, length_field, packet_crc, keys, raw)
    try:
        text = plain.decode("ascii")
    except UnicodeDecodeError:
        try:
            text = plain.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FieldError(f"data segment is not UTF-8 at byte {exc.start} "
                             f"(MN={_mn_hint(plain)})", mn=_mn_hint(plain), raw=raw) from None
    return _parse_segment(text, raw, deviations, strict, tz, encrypted_at >= 0)


# ---------------------------------------------------------------------------------------------
# encode
# ---------------------------------------------------------------------------------------------


def encode(
    *,
    qn: str | dt.datetime | None,
    st: str,
    cn: str,
    pw: str,
    mn: str,
    flag: int | None = None,
    version: Edition = "2017",
    needs_reply: bool = False,
    cp: Mapping[str, object] | str | None = None,
    values: Mapping[str, Mapping[str, object]] | None = None,
    data_time: dt.datetime | None = None,
    pnum: int | None = None,
    pno: int | None = None,
    rf: bool = False,
    key: bytes | None = None,
    tz: dt.tzinfo | None = SHANGHAI,
) -> bytes:
    """Build one packet: ``##`` + 4-digit length + data segment + CRC (hex, upper) + ``\\r\\n``.

    ``flag`` given wins over ``version``/``needs_reply`` (the split bit follows ``pnum``/``pno``
    either way). The CP area is ``DataTime`` (from ``data_time``, written in ``tz``), then ``cp``
    (a mapping of keys to values, or the CP text itself), then ``values`` (code → suffix → value,
    one ``;`` item per code). With ``key`` (HJ 212-2025 only) the CP data area is SM4-ECB
    encrypted as 2025 §E prints it: whole 16-byte blocks as ``{0xNN,…}``, the tail in plain text,
    the length field and CRC those of the plaintext segment. Raises `LengthError` over 1024
    characters of data segment or 950 of CP area, `FieldError` for unwritable values.
    """
    if flag is None:
        bits = VERSION_BITS_BY_EDITION.get(version)
        if bits is None:
            raise FieldError(f"unknown HJ 212 version {version!r}; expected one of "
                             f"{', '.join(VERSION_BITS_BY_EDITION)}")
        flag = bits << FLAG_VERSION_SHIFT | (FLAG_REPLY if needs_reply else 0)
    elif not 0 <= flag <= FLAG_MAX:
        raise FieldError(f"Flag={flag} is outside 0–255")
    if (pnum is None) != (pno is None):
        raise FieldError("PNUM and PNO go together")
    if pnum is not None:
        if not 1 <= int(pno) <= int(pnum):  # type: ignore[arg-type]
            raise FieldError(f"PNO={pno} outside 1..PNUM={pnum}")
        flag |= FLAG_SPLIT
    edition = EDITION_BY_VERSION_BITS.get(flag >> FLAG_VERSION_SHIFT & FLAG_VERSION_MASK)
    if isinstance(qn, dt.datetime):
        qn = _format_qn(qn, tz)
    parts = []
    if qn is not None:
        parts.append(f"QN={_header_value('QN', qn)}")
    parts.append(f"ST={_header_value('ST', st)};CN={_header_value('CN', cn)};"
                 f"PW={_header_value('PW', pw)};MN={_header_value('MN', mn)};Flag={flag}")
    if pnum is not None:
        parts.append(f"PNUM={int(pnum)};PNO={int(pno)}")  # type: ignore[arg-type]
    if rf:
        parts.append("RF=1")
    header = ";".join(parts) + ";CP=&&"
    inner = _render_cp(cp, values, data_time, tz)
    if len(inner.encode("utf-8")) + len("CP=&&&&") > MAX_CP_LENGTH:
        raise LengthError(f"CP area of {len(inner.encode('utf-8')) + 7} characters exceeds "
                          f"{MAX_CP_LENGTH} (MN={mn}); split it into several packets")
    plain = (header + inner + "&&").encode("utf-8")
    if len(plain) > MAX_DATA_LENGTH:
        raise LengthError(f"data segment of {len(plain)} bytes exceeds {MAX_DATA_LENGTH} (MN={mn}); "
                          "split it into several packets")
    crc = crc16(plain)
    sent = plain
    if key is not None:
        if edition != "2025":
            raise FieldError(f"SM4 encryption is defined by HJ 212-2025 only, not for Flag={flag}")
        sent = header.encode("utf-8") + _encrypt_region(inner.encode("utf-8"), _check_key(key, mn)) + b"&&"
    return b"##%04d%s%04X\r\n" % (len(plain), sent, crc)


# ---------------------------------------------------------------------------------------------
# reply
# ---------------------------------------------------------------------------------------------


def reply(
    packet: Packet,
    *,
    qn_rtn: int = 1,
    exe_rtn: int | None = None,
    now: dt.datetime | None = None,
) -> bytes | None:
    """The platform's answer to ``packet``, or ``None`` when none is due.

    Only a packet with the reply bit (Flag bit 0) set is answered (§2, 2025 §F), and never a
    reply itself (9011–9014). Uploads get 9014 (data reply), notifications (1013, 1001, the 2025
    heartbeat 9015, a site's 1014 key request) get 9013, requests get 9011 with ``QnRtn=qn_rtn``,
    or 9012 with ``ExeRtn=exe_rtn`` when ``exe_rtn`` is given (§5 interaction flows, §6).
    ``ST=91``, the QN/PW/MN echoed, ``Flag`` = the packet's version bits with the reply and split
    bits clear (4 for 2017, 8 for 2025, 0 for 2005). A packet without QN gets one made from
    ``now`` (default: the current time in Asia/Shanghai).
    """
    if not packet.needs_reply:
        return None
    kind = command_kind(packet)
    if kind == "interaction":
        return None
    if kind == "notify":
        cn, cp = "9013", ""
    elif kind == "upload":
        cn, cp = "9014", ""
    elif exe_rtn is not None:
        if exe_rtn not in EXE_RTN:
            raise ValueError(f"ExeRtn={exe_rtn} is not in HJ 212 Table 6 ({sorted(EXE_RTN)})")
        cn, cp = "9012", f"ExeRtn={exe_rtn}"
    else:
        if qn_rtn not in QN_RTN:
            raise ValueError(f"QnRtn={qn_rtn} is not in HJ 212 Table 7 ({sorted(QN_RTN)})")
        cn, cp = "9011", f"QnRtn={qn_rtn}"
    qn = packet.qn
    if qn is None:
        qn = _format_qn(now or dt.datetime.now(SHANGHAI), SHANGHAI)
    return encode(qn=qn, st=REPLY_SYSTEM_CODE, cn=cn, pw=packet.pw, mn=packet.mn,
                  flag=packet.flag & ~(FLAG_REPLY | FLAG_SPLIT), cp=cp)


def command_kind(packet: Packet) -> CommandKind:
    """How the platform reads an inbound packet: ``"upload"``, ``"request"``, ``"notify"`` or
    ``"interaction"`` (9011–9014), from the direction/type columns of §5 Table 9 and 2025 §C.

    Codes used both ways (2011, 2061, 1011, 3020…) are uploads when the CP carries data
    (``DataTime``, pollutant values, ``SystemTime``…) and requests otherwise.
    """
    cn = packet.cn
    if cn in _INTERACTION_COMMANDS:
        return "interaction"
    if cn in _NOTIFY_COMMANDS:
        return "notify"
    if cn == "1014":  # 2025 §C: the site asks for a key (notify); the platform sends one (request)
        return "request" if "NewSK" in packet.cp else "notify"
    if cn in _REQUEST_ONLY_COMMANDS:
        return "request"
    if cn in _UPLOAD_ONLY_COMMANDS or packet.values:
        return "upload"
    cp = packet.cp
    for marker in _UPLOAD_MARKERS:
        if marker in cp:
            return "upload"
    return "request"


# ---------------------------------------------------------------------------------------------
# Framer
# ---------------------------------------------------------------------------------------------


class Framer:
    """Cuts a TCP byte stream into HJ 212 frames.

    ``feed(data)`` returns, in stream order, each complete frame (``bytes`` from ``##`` to
    ``\\r\\n`` inclusive, ready for `parse`) and an `HJ212Error` for each run of bytes it had to
    discard (``error.raw`` holds them): non-blank garbage before a ``##`` (`FramingError`), a frame
    cut short by the next ``##dddd`` (`FramingError`), more than ``max_length`` bytes without a
    ``\\r\\n`` (`LengthError`; ``max_encrypted_length`` once the frame shows an SM4 CP). Blank
    bytes (CR, LF, spaces, NUL) between frames are dropped silently. The buffer never holds more
    than the limit plus one segment.
    """

    def __init__(
        self,
        max_length: int = MAX_PACKET_LENGTH,
        max_encrypted_length: int = MAX_ENCRYPTED_PACKET_LENGTH,
    ) -> None:
        self.max_length = max_length
        self.max_encrypted_length = max_encrypted_length
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | HJ212Error]:
        """Add received bytes; return the frames and errors they complete."""
        buf = self._buffer
        buf += data
        out: list[bytes | HJ212Error] = []
        while buf:
            start = buf.find(HEADER)
            if start < 0:
                # Keep a lone trailing '#': it may be the first half of the next header.
                keep = 1 if buf[-1:] == b"#" else 0
                self._discard(out, len(buf) - keep, "with no '##' header")
                break
            while buf[start + 2:start + 3] == b"#":  # '###0087…': the header is the last two
                start += 1
            if start:
                self._discard(out, start, "before '##'")
            end = buf.find(TERMINATOR, 2)
            scan_to = end if end >= 0 else len(buf)
            encrypted = buf.find(b"CP=&&{0x", 0, scan_to) >= 0
            limit = self.max_encrypted_length if encrypted else self.max_length
            if end < 0 and len(buf) <= limit:
                break  # wait for the rest of the frame
            if end < 0 or end + 2 > limit:
                nxt = _NEXT_HEADER(buf, 2, scan_to)
                if nxt is not None:
                    cut = nxt.start()
                elif end >= 0:
                    cut = end + 2
                else:
                    cut = len(buf) - (1 if buf[-1:] == b"#" else 0)
                chunk = bytes(buf[:cut])
                del buf[:cut]
                out.append(LengthError(f"no CR LF within {limit} bytes of '##': discarded {cut} bytes "
                                       f"{_snippet(chunk)}", raw=chunk))
                continue
            nxt = _NEXT_HEADER(buf, 2, end)
            if nxt is not None and not _length_consistent(buf, end):
                cut = nxt.start()
                chunk = bytes(buf[:cut])
                del buf[:cut]
                out.append(FramingError(f"truncated packet: next '##' after {cut} bytes, before any "
                                        f"CR LF: {_snippet(chunk)}", raw=chunk))
                continue
            out.append(bytes(buf[: end + 2]))
            del buf[: end + 2]
        return out

    def flush(self) -> list[HJ212Error]:
        """At end of stream: the incomplete frame still buffered, as an error (or nothing)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        if rest.strip(_BLANK):
            return [FramingError(f"stream ended inside a packet: {len(rest)} bytes {_snippet(rest)}",
                                 raw=rest)]
        return []

    def _discard(self, out: list[bytes | HJ212Error], count: int, where: str) -> None:
        chunk = bytes(self._buffer[:count])
        del self._buffer[:count]
        if chunk.strip(_BLANK):
            out.append(FramingError(f"discarded {len(chunk)} bytes of garbage {where}: {_snippet(chunk)}",
                                    raw=chunk))


# =============================================================================================
# Helpers
# =============================================================================================

_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}").fullmatch
_NEXT_HEADER = re.compile(rb"##\d{4}").search
_MN_HINT = re.compile(rb"(?:^|;)\s*MN\s*=\s*([^;]*)").search
_CIPHERTEXT = re.compile(rb"0x[0-9A-Fa-f]{2}(?:,0x[0-9A-Fa-f]{2})*").fullmatch
_CP_START = re.compile(r"(?:^|;)\s*CP\s*=", re.IGNORECASE).search
_SPACED_SEPARATOR = re.compile(r"\s*([;,=&])\s*")
_QN = re.compile(r"\d{17}").fullmatch
_CANONICAL_HEADER = re.compile(
    r"QN=(?P<QN>\d{17});ST=(?P<ST>[0-9A-Z]{2});CN=(?P<CN>\d{4});PW=(?P<PW>[^;=&]{6});"
    r"MN=(?P<MN>[0-9A-F]{24});Flag=(?P<Flag>\d{1,3})(?:;PNUM=(?P<PNUM>\d{1,4});PNO=(?P<PNO>\d{1,4}))?"
    r"(?:;RF=(?P<RF>1))?", re.ASCII).fullmatch
_MN = re.compile(r"[0-9A-F]{24}").fullmatch
_ST = re.compile(r"[0-9A-Z]{2}").fullmatch
_LOG_TEXT = re.compile(r"//.*?//", re.DOTALL)
_LOG_TEXT_SPLIT = re.compile(r"(//.*?//)", re.DOTALL).split
_BLANK: Final = b" \t\r\n\x00"
_BLANK_BYTES: Final = frozenset(bytes([c]) for c in _BLANK)

_HEADER_NAMES: Final = {"QN": "QN", "ST": "ST", "CN": "CN", "PW": "PW", "MN": "MN", "Flag": "Flag",
                        "PNUM": "PNUM", "PNO": "PNO", "RF": "RF"}
_HEADER_NAMES_FOLDED: Final = {name.upper(): name for name in _HEADER_NAMES}
_REQUIRED_HEADERS: Final = ("ST", "CN", "PW", "MN")


def _build_crc_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        register = index
        for _ in range(8):
            register = (register >> 1) ^ 0xA001 if register & 1 else register >> 1
        table.append(register)
    return tuple(table)


_CRC_TABLE: Final = _build_crc_table()
_CRC_STEP: Final = tuple(entry >> 8 for entry in _CRC_TABLE)  # 8-bit state after one byte
_CRC_INITIAL_STATE: Final = 0xFFFF >> 8


def _crc_step_power(power: int) -> tuple[int, ...]:
    result = list(range(256))
    for _ in range(power):
        result = [_CRC_STEP[x] for x in result]
    return tuple(result)


# _CRC_POWERS[r][x]: the state step applied r times to x (the step has order 8, checked below).
_CRC_POWERS: Final = tuple(_crc_step_power(r) for r in range(8))
assert _crc_step_power(8) == _CRC_POWERS[0], "HJ 212 CRC state step is expected to have order 8"
# Byte at position s of a folded 8-byte chunk lies (8 - s) % 8 steps from the end of the prefix.
_CRC_POSITION_TABLES: Final = tuple(_CRC_POWERS[(8 - s) % 8] for s in range(8))
_CRC_STATE_CONSTANT: Final = tuple(_CRC_POWERS[r][_CRC_INITIAL_STATE] for r in range(8))
# _CRC_FOLD_MASKS[k]: the low k 8-byte chunks (enough for the largest packets; longer data computes it).
_CRC_FOLD_MASKS: Final = tuple((1 << (64 * k)) - 1 for k in range(MAX_ENCRYPTED_DATA_LENGTH // 16 + 2))


def _deviate(deviations: list[str], strict: bool, error: type[HJ212Error], message: str,
             mn: str | None = None) -> None:
    if strict:
        raise error(f"{message} (strict mode)" + (f" (MN={mn})" if mn else ""), mn=mn)
    deviations.append(message)


def _show(value: bytes) -> str:
    return repr(value.decode("latin-1"))


def _snippet(data: bytes, limit: int = 60) -> str:
    text = data[:limit].decode("latin-1")
    return repr(text + ("…" if len(data) > limit else ""))


def _mn_hint(segment: bytes) -> str:
    match = _MN_HINT(segment)
    return match.group(1).strip().decode("latin-1") if match else "?"


def _unwrap_frame(raw: bytes, deviations: list[str], strict: bool) -> bytes:
    """The packet without its CR LF, for packets that are not a clean ``##…\\r\\n``."""
    body = raw.strip(_BLANK)
    if not body.startswith(HEADER):
        raise FramingError(f"packet does not start with '##': {_snippet(raw)}", raw=raw)
    if TERMINATOR not in raw:
        _deviate(deviations, strict, FramingError, "missing CR LF terminator")
    if raw.strip(b"\r\n") != body:
        _deviate(deviations, strict, FieldError, "extra spaces around the packet")
    return body


def _decrypt_segment(segment: bytes, at: int, declared: int, length_field: bytes, packet_crc: int,
                     keys: Mapping[str, bytes] | None, raw: bytes) -> bytes:
    """2025 §E / §H.3: decrypt the ``{0xNN,…}`` blocks, append the plain tail, check length and CRC."""
    mn = _mn_hint(segment[:at])
    start = at + len(b"CP=&&{")
    close = segment.find(b"}", start)
    if close < 0:
        raise DecryptionError(f"encrypted CP area has no closing '}}' (MN={mn})", mn=mn, raw=raw)
    tokens = segment[start:close]
    if _CIPHERTEXT(tokens) is None:
        raise DecryptionError(f"encrypted CP area is not comma-separated 0xNN bytes (MN={mn})",
                              mn=mn, raw=raw)
    ciphertext = bytes.fromhex(tokens.replace(b",", b"").replace(b"0x", b"").decode("ascii"))
    if len(ciphertext) % SM4_BLOCK:
        raise DecryptionError(f"encrypted CP area holds {len(ciphertext)} bytes, not whole "
                              f"{SM4_BLOCK}-byte SM4 blocks (MN={mn})", mn=mn, raw=raw)
    key = keys.get(mn) if keys else None
    if key is None:
        raise DecryptionError(f"encrypted CP area but no SM4 key for MN={mn}", mn=mn, raw=raw)
    try:
        key = _check_key(key, mn)
    except FieldError as exc:
        raise DecryptionError(str(exc), mn=mn, raw=raw) from None
    decryptor = Cipher(algorithms.SM4(key), modes.ECB()).decryptor()
    plaintext = decryptor.update(ciphertext) + decryptor.finalize()
    plain = segment[: at + len(b"CP=&&")] + plaintext + segment[close + 1:]
    if declared not in (len(plain), len(segment)):
        raise LengthError(
            f"length mismatch: header says {length_field.decode()}, encrypted data segment has "
            f"{len(plain)} bytes decrypted and {len(segment)} as sent (MN={mn})", mn=mn, raw=raw)
    if len(plain) > MAX_DATA_LENGTH or len(segment) > MAX_ENCRYPTED_DATA_LENGTH:
        raise LengthError(f"encrypted data segment of {len(plain)} bytes decrypted / {len(segment)} "
                          f"sent exceeds {MAX_DATA_LENGTH} / {MAX_ENCRYPTED_DATA_LENGTH} (MN={mn})",
                          mn=mn, raw=raw)
    computed = crc16(plain)
    if computed != packet_crc:
        raise DecryptionError(
            f"CRC mismatch after SM4 decryption: packet says {packet_crc:04X}, computed "
            f"{computed:04X} (MN={mn}); wrong key or corrupted ciphertext", mn=mn, raw=raw)
    return plain


def _check_key(key: bytes | str, mn: str) -> bytes:
    if isinstance(key, str):
        key = key.encode("ascii")
    if len(key) != SM4_BLOCK:
        raise FieldError(f"SM4 key for MN={mn} must be {SM4_BLOCK} bytes, got {len(key)}")
    return bytes(key)


def _encrypt_region(region: bytes, key: bytes) -> bytes:
    whole = len(region) - len(region) % SM4_BLOCK
    if not whole:
        return region  # Nopadding: a region shorter than one block stays plaintext (App. A.2)
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    ciphertext = encryptor.update(region[:whole]) + encryptor.finalize()
    return b"{" + b",".join(b"0x%02X" % byte for byte in ciphertext) + b"}" + region[whole:]


def _parse_segment(text: str, raw: bytes, deviations: list[str], strict: bool,
                   tz: dt.tzinfo | None, encrypted: bool) -> Packet:
    if " " in text or "\t" in text:
        # Spaces inside §3 log text ``//…//`` are content, not padding.
        pieces = _LOG_TEXT_SPLIT(text)
        spaced = "".join(p if i % 2 else _SPACED_SEPARATOR.sub(r"\1", p) for i, p in enumerate(pieces)).strip()
        if spaced != text:
            _deviate(deviations, strict, FieldError, "extra spaces in the data segment")
            text = spaced
    cp_at = text.find(";CP=")
    if cp_at >= 0:
        header_text, cp_text = text[:cp_at], text[cp_at + 4:]
    elif text.startswith("CP="):
        header_text, cp_text = "", text[3:]
    else:
        match = _CP_START(text)
        if match is None:
            raise FieldError(f"missing field CP in data segment (MN={_mn_hint(raw)})",
                             mn=_mn_hint(raw), raw=raw)
        _deviate(deviations, strict, FieldError, f"field name {match.group().strip(';= ')!r} should be 'CP'")
        header_text, cp_text = text[: match.start()], text[match.end():]

    # --- header fields ---
    canonical_match = _CANONICAL_HEADER(header_text)
    if canonical_match is not None:  # the common, standard layout, validated in one C call
        # Every field is present except perhaps PNUM, PNO and RF, which then read None: the code
        # below only asks header.get(name) of those three.
        header = canonical_match.groupdict()
        header_text = ""
    else:
        header = {}
    for field in header_text.split(";") if header_text else ():
        name, eq, value = field.partition("=")
        canonical = _HEADER_NAMES.get(name)
        if canonical is None or not eq:
            canonical = _odd_header_field(field, name, eq, deviations, strict, raw)
            if canonical is None:
                continue
        previous = header.get(canonical)
        if previous is not None:
            if previous != value:
                raise FieldError(f"duplicate field {canonical} with different values "
                                 f"{previous!r} and {value!r} in data segment", raw=raw)
            _deviate(deviations, strict, FieldError, f"duplicate field {canonical}={value}")
        header[canonical] = value
    mn = header.get("MN")
    if canonical_match is None:
        for name in _REQUIRED_HEADERS:
            if name not in header:
                raise FieldError(f"missing field {name} in data segment"
                                 + (f" (MN={mn})" if mn else ""), mn=mn, raw=raw)
    st, cn, pw = header["ST"], header["CN"], header["PW"]
    if not mn and cn != "1001":  # 2025 §C: 1001 comes from a logger that has no MN yet
        raise FieldError("empty field MN in data segment", raw=raw)

    flag_text = header.get("Flag")
    if flag_text is None:
        flag = DEFAULT_FLAG_WHEN_MISSING
        _deviate(deviations, strict, FieldError, "missing Flag; assumed Flag=4 (HJ 212-2017, no reply)", mn)
    else:
        if not (flag_text.isdigit() and flag_text.isascii()) or int(flag_text) > FLAG_MAX:
            raise FieldError(f"bad Flag={flag_text!r}: expected 0–255 (MN={mn})", mn=mn, raw=raw)
        flag = int(flag_text)
    version = EDITION_BY_VERSION_BITS.get(flag >> FLAG_VERSION_SHIFT & FLAG_VERSION_MASK)
    if version is None:
        raise FieldError(f"unknown protocol version {flag >> FLAG_VERSION_SHIFT & FLAG_VERSION_MASK} "
                         f"in Flag={flag} (MN={mn})", mn=mn, raw=raw)

    qn = header.get("QN")
    if qn is None:
        _deviate(deviations, strict, FieldError, "missing field QN", mn)
    elif canonical_match is None and _QN(qn) is None:
        _deviate(deviations, strict, TimeError, f"QN {qn!r} is not YYYYMMDDhhmmsszzz", mn)
    if canonical_match is None and _ST(st) is None:
        raise FieldError(f"bad system code ST={st!r} (MN={mn})", mn=mn, raw=raw)
    if cn not in _ALL_COMMANDS:
        raise CommandError(f"unknown command CN={cn} (MN={mn})", mn=mn, raw=raw)
    if cn not in COMMANDS[version]:
        _deviate(deviations, strict, CommandError,
                 f"CN={cn} is not an HJ {'/T ' if version == '2005' else ''}212-{version} command", mn)
    if canonical_match is None and mn and _MN(mn) is None:
        _deviate(deviations, strict, FieldError, f"MN {mn!r} is not 24 hex characters")
    if canonical_match is None and len(pw) != PW_LENGTH:
        _deviate(deviations, strict, FieldError, f"PW of {len(pw)} characters, not {PW_LENGTH}", mn)

    pnum = pno = None
    if header.get("PNUM") is not None or header.get("PNO") is not None:
        pnum = _header_int(header, "PNUM", mn, raw)
        pno = _header_int(header, "PNO", mn, raw)
        if pnum is None or pno is None:
            raise FieldError(f"PNUM and PNO go together; got only "
                             f"{'PNUM' if pnum is not None else 'PNO'} (MN={mn})", mn=mn, raw=raw)
        if not 1 <= pno <= pnum:
            raise FieldError(f"PNO={pno} outside 1..PNUM={pnum} (MN={mn})", mn=mn, raw=raw)
        if not flag & FLAG_SPLIT:
            _deviate(deviations, strict, FieldError, f"PNUM/PNO present but Flag={flag} has the split bit clear", mn)
    elif flag & FLAG_SPLIT:
        _deviate(deviations, strict, FieldError, f"Flag={flag} has the split bit set but PNUM/PNO are missing", mn)
    split = pnum is not None or bool(flag & FLAG_SPLIT)

    rf = False
    rf_text = header.get("RF")
    if rf_text is not None:
        if rf_text == "1":
            rf = True
        else:
            _deviate(deviations, strict, FieldError, f"RF={rf_text!r} is not 1; read as real-time data", mn)
        if version != "2025":
            _deviate(deviations, strict, FieldError, f"RF field in an HJ 212-{version} packet", mn)
    if encrypted and version != "2025":
        _deviate(deviations, strict, FieldError, f"SM4-encrypted CP in an HJ 212-{version} packet", mn)

    # --- CP area ---
    if len(cp_text) + 3 > MAX_CP_LENGTH:
        _deviate(deviations, strict, LengthError, f"CP area of {len(cp_text) + 3} characters exceeds {MAX_CP_LENGTH}", mn)
    if cp_text[:2] == "&&" and cp_text[-2:] == "&&" and len(cp_text) >= 4:
        inner = cp_text[2:-2]
        if inner[:1] == "&" or inner[-1:] == "&":
            _deviate(deviations, strict, FieldError, "CP area delimited by more than '&&'", mn)
            inner = inner.strip("&")
    else:
        _deviate(deviations, strict, FieldError, "CP area not delimited by '&&…&&'", mn)
        inner = cp_text.strip("&")
    if "&&" in inner:
        _deviate(deviations, strict, FieldError, "'&&' between CP items", mn)
        inner = inner.replace("&&", ";")

    read = _read_cp_fast(inner) if inner else None
    if read is not None:
        values, cp = read
    else:
        values, cp = {}, {}
        if inner:
            _parse_cp(inner, values, cp, version, deviations, strict, tz, mn, raw)

    data_time = None
    for time_key in _CP_TIME_KEYS:
        time_text = cp.get(time_key)
        if time_text is not None:
            moment = _parse_time(time_text, tz)
            if moment is None:
                raise TimeError(f"bad {time_key} {time_text!r} in CP (MN={mn})", mn=mn, raw=raw)
            if time_key == "DataTime":
                data_time = moment
    if data_time is None and values and cn in _DATA_UPLOAD_COMMANDS:
        _deviate(deviations, strict, FieldError, f"CN={cn} data without DataTime", mn)

    return _new_packet(qn, st, cn, pw, mn or "", flag, version, bool(flag & FLAG_REPLY), split, pnum, pno,
                       rf, data_time, values, cp, tuple(deviations), raw, encrypted)


def _odd_header_field(field: str, name: str, eq: str, deviations: list[str], strict: bool,
                      raw: bytes) -> str | None:
    """The canonical name of a header field that is not plain ``Name=value`` (None: skip it)."""
    if not field:
        _deviate(deviations, strict, FieldError, "empty field (stray ';') in the data segment")
        return None
    if not eq:
        raise FieldError(f"field {field!r} has no '=' in data segment (MN={_mn_hint(raw)})",
                         mn=_mn_hint(raw), raw=raw)
    canonical = _HEADER_NAMES_FOLDED.get(name.upper())
    if canonical is None:
        _deviate(deviations, strict, FieldError, f"unknown field {name!r} ignored")
        return None
    _deviate(deviations, strict, FieldError, f"field name {name!r} should be {canonical!r}")
    return canonical


def _header_int(header: dict[str, str], name: str, mn: str | None, raw: bytes) -> int | None:
    text = header.get(name)
    if text is None:
        return None
    if not (text.isdigit() and text.isascii()):
        raise FieldError(f"bad {name}={text!r}: expected a decimal count (MN={mn})", mn=mn, raw=raw)
    return int(text)


def _parse_cp_fast(inner: str, values: dict[str, dict[str, Value]], cp: dict[str, str]) -> bool:
    """`_read_cp_fast` into the given dicts; False (and the dicts untouched) where it declines."""
    read = _read_cp_fast(inner)
    if read is None:
        return False
    values.update(read[0])
    cp.update(read[1])
    return True


def _read_cp_fast(inner: str) -> tuple[dict[str, dict[str, Value]], dict[str, str]] | None:
    """The hot path for a clean CP area: ``(values, cp)`` as `_parse_cp` would read them, or None
    at anything it does not handle; `_parse_cp` then reads the area and explains any problem.

    Handled: items of exactly one ``=`` each (``;`` and ``,`` both end an item, as in `_parse_cp`),
    no ``_`` and no ``//`` anywhere, no duplicate key, no HJ/T 212-2005 code, every ``code-Suffix``
    a number suffix or a non-empty text suffix, every number finite. The keys alone decide the
    layout (which value is a number, which is text, which code and suffix each fills); a device
    sends the same layout packet after packet, so the layout is worked out once (`_CPPlan`) and
    cached. A packet then costs a few C-level calls: a split, a check of the separators, one JSON
    decode of all its numbers at once, and the layout's compiled function that builds the dicts."""
    if "_" in inner or "//" in inner:
        return None
    flat = inner.replace(";", ",").replace("=", ",").split(",")  # key, value, key, value…
    separators = len(flat) - 1
    if not separators & 1 or separators > _MAX_SEPARATORS or (
        inner.encode("utf-8", "surrogatepass").translate(_SEMICOLON_AS_COMMA, _NOT_SEPARATOR)
        != _ALTERNATING_SEPARATORS[:separators]
    ):
        return None  # an item without '=' or with several (a value holding '=', an empty item…)
    keys = tuple(flat[0::2])
    plan = _CP_PLANS.get(keys, _NO_PLAN)
    if plan is _NO_PLAN:
        plan = _CPPlan.of(keys)
        if len(_CP_PLANS) >= _CP_PLAN_CACHE_SIZE:
            _CP_PLANS.clear()
        _CP_PLANS[keys] = plan
    if plan is None:
        return None
    texts = flat[1::2]
    numbers: Sequence[float] = ()
    number_get = plan.number_get
    if number_get is not None:
        number_texts = number_get(texts)
        joined = "[" + ",".join(number_texts) + "]"
        try:
            numbers = _decode_numbers(joined)
        except msgspec.DecodeError:  # not all JSON numbers (1., .5, +1, 1e999…): float() decides
            numbers = ()
        if len(numbers) != len(number_texts) or ("-0" in joined and _NEGATIVE_ZERO_INTEGER(joined)):
            try:
                numbers = list(map(float, number_texts))
            except ValueError:
                return None
        total = sum(numbers)
        if total - total != 0.0:  # a nan or inf among them (or an overflow): let _parse_cp judge
            return None
    text_get = plan.text_get
    if text_get is not None and "" in text_get(texts):
        return None  # an empty text value: a deviation
    return plan.build(texts, numbers)


class _CPPlan:
    """The layout of a CP area with given keys, as `_read_cp_fast` reads it.

    ``number_get(texts)`` / ``text_get(texts)``: the value texts of the number / text fields
    (tuples, or None when there are none). ``build(texts, numbers)`` returns ``(values, cp)``:
    the first time by a generic loop, from the second on by a function compiled for the layout
    (dict displays, no per-item loop). Layouts seen once, e.g. a stream of garbage, compile
    nothing.
    """

    __slots__ = ("cp_items", "codes", "number_get", "text_get", "build")

    def __init__(self, cp_items: list[tuple[str, int]],
                 codes: dict[str, list[tuple[str, bool, int]]], number_at: list[int],
                 text_at: list[int]) -> None:
        self.cp_items = cp_items  # (key, index in texts)
        self.codes = codes  # code → (suffix, is a number, index in numbers or in texts)
        self.number_get = _tuple_getter(number_at) if number_at else None
        self.text_get = _tuple_getter(text_at) if text_at else None
        self.build: Callable[[list[str], Sequence[float]], tuple[dict, dict]] = self._first

    @classmethod
    def of(cls, keys: tuple[str, ...]) -> _CPPlan | None:
        """The plan for these keys; None when `_read_cp_fast` cannot read them (a duplicate, an
        HJ/T 212-2005 code, a time or unknown suffix, an empty name…)."""
        cp_items: list[tuple[str, int]] = []
        cp_keys: set[str] = set()
        codes: dict[str, list[tuple[str, bool, int]]] = {}
        number_at: list[int] = []
        text_at: list[int] = []
        for index, key in enumerate(keys):
            code, dash, suffix = key.rpartition("-")
            if not dash:
                if not key or key in cp_keys:
                    return None
                cp_keys.add(key)
                cp_items.append((key, index))
                continue
            if not code or code in HJ212_2005_CODE_MAP:
                return None
            fields = codes.setdefault(code, [])
            if any(existing == suffix for existing, _, _ in fields):
                return None
            if suffix in _NUMBER_SUFFIXES:
                fields.append((suffix, True, len(number_at)))
                number_at.append(index)
            elif suffix in _TEXT_SUFFIXES:
                fields.append((suffix, False, index))
                text_at.append(index)
            else:
                return None
        return cls(cp_items, codes, number_at, text_at)

    def _first(self, texts: list[str], numbers: Sequence[float]) -> tuple[dict, dict]:
        self.build = self._second
        values = {code: {suffix: numbers[i] if is_number else texts[i] for suffix, is_number, i in fields}
                  for code, fields in self.codes.items()}
        return values, {key: texts[i] for key, i in self.cp_items}

    def _second(self, texts: list[str], numbers: Sequence[float]) -> tuple[dict, dict]:
        self.build = self._compile()
        return self.build(texts, numbers)

    def _compile(self) -> Callable[[list[str], Sequence[float]], tuple[dict, dict]]:
        # The source holds generated names and integers only, never text from a packet: the keys
        # reach the function as globals of its own namespace.
        names: dict[str, str] = {}

        def name(text: str) -> str:
            return names.setdefault(text, f"k{len(names)}")

        values = ", ".join(
            name(code) + ": {" + ", ".join(f"{name(suffix)}: {'n' if is_number else 't'}[{i}]"
                                           for suffix, is_number, i in fields) + "}"
            for code, fields in self.codes.items())
        cp = ", ".join(f"{name(key)}: t[{i}]" for key, i in self.cp_items)
        namespace = {variable: text for text, variable in names.items()}
        exec(f"def build(t, n):\n    return {{{values}}}, {{{cp}}}\n", namespace)
        return namespace["build"]


def _tuple_getter(indexes: list[int]) -> Callable[[Sequence], tuple]:
    """``itemgetter`` that returns a tuple for a single index too."""
    if len(indexes) == 1:
        index = indexes[0]
        return lambda items: (items[index],)
    return itemgetter(*indexes)


# The separators of a well-formed CP area, ';' read as ',': '=', ',', '=', ',' … '='.
_SEMICOLON_AS_COMMA: Final = bytes.maketrans(b";", b",")
_NOT_SEPARATOR: Final = bytes(c for c in range(256) if c not in b",;=")
_MAX_SEPARATORS: Final = 2 * MAX_ENCRYPTED_DATA_LENGTH
_ALTERNATING_SEPARATORS: Final = b"=," * (_MAX_SEPARATORS // 2 + 1)
# All of a CP area's numbers are decoded by one call; JSON numbers are a subset of what float()
# reads and are rounded the same way, except that the integer -0 decodes as 0.0, not -0.0.
_decode_numbers = msgspec.json.Decoder(list[float]).decode
_NEGATIVE_ZERO_INTEGER = re.compile(r"-0(?![.eE])").search
_CP_PLANS: dict[tuple[str, ...], _CPPlan | None] = {}
_CP_PLAN_CACHE_SIZE: Final = 512
_NO_PLAN: Final = object()


def _parse_cp(inner: str, values: dict[str, dict[str, Value]], cp: dict[str, str], version: str,
              deviations: list[str], strict: bool, tz: dt.tzinfo | None, mn: str | None,
              raw: bytes) -> None:
    if "//" in inner:  # §3 log text ``//…//`` may hold separators: protect it while splitting
        protected: list[str] = []

        def hide(match: re.Match[str]) -> str:
            protected.append(match.group())
            return f"\x00{len(protected) - 1}\x00"

        tokens = [_unhide(t, protected) for t in
                  _LOG_TEXT.sub(hide, inner).replace(";", ",").split(",")]
    else:
        tokens = inner.replace(";", ",").split(",")
    empty_noted = False
    aliased: list[str] = []
    for token in tokens:
        key, eq, value = token.partition("=")
        if not eq:
            if not token:
                if not empty_noted:
                    _deviate(deviations, strict, FieldError, "empty CP item (stray or trailing ';' or ',')", mn)
                    empty_noted = True
                continue
            raise FieldError(f"CP item {token!r} has no '=' (MN={mn})", mn=mn, raw=raw)
        code, dash, suffix = key.rpartition("-")
        if not dash:
            previous = cp.get(key)
            if previous is not None:
                if previous != value:
                    raise FieldError(f"duplicate CP field {key} with different values {previous!r} and "
                                     f"{value!r} (MN={mn})", mn=mn, raw=raw)
                _deviate(deviations, strict, FieldError, f"duplicate CP field {key}={value}", mn)
            if not key:
                raise FieldError(f"CP item {token!r} has no name (MN={mn})", mn=mn, raw=raw)
            cp[key] = value
            continue
        fields = values.get(code)
        if fields is None:
            if not code or not suffix:
                raise FieldError(f"CP field {key!r} lacks a code or a suffix (MN={mn})", mn=mn, raw=raw)
            new_code = HJ212_2005_CODE_MAP.get(code)
            if new_code is not None:
                if version != "2005":
                    _deviate(deviations, strict, FieldError,
                             f"HJ/T 212-2005 code {code} read as {new_code}", mn)
                fields = values.get(new_code)
                if fields is None:
                    fields = values[new_code] = {}
                values[code] = fields  # later fields of the old code land here too
                aliased.append(code)
            else:
                fields = values[code] = {}
        if value:
            if suffix in _TEXT_SUFFIXES:
                parsed: Value = value
            elif suffix in _TIME_SUFFIXES:
                parsed = _parse_time(value, tz)
                if parsed is None:
                    raise TimeError(f"bad {key} {value!r} in CP (MN={mn})", mn=mn, raw=raw)
            else:
                try:
                    parsed = float(value)
                    if parsed - parsed != 0.0 or "_" in value:  # nan, inf, 1_000
                        raise ValueError
                except ValueError:
                    if suffix in _NUMBER_SUFFIXES:
                        raise FieldError(f"bad number {key}={value!r} in CP (MN={mn})",
                                         mn=mn, raw=raw) from None
                    parsed = value
        else:
            parsed = None
            _deviate(deviations, strict, FieldError, f"empty value for {key}", mn)
        if suffix in fields:
            if fields[suffix] != parsed:
                raise FieldError(f"duplicate CP field {key} with different values (MN={mn})",
                                 mn=mn, raw=raw)
            _deviate(deviations, strict, FieldError, f"duplicate CP field {key}={value}", mn)
        fields[suffix] = parsed
    for old in aliased:
        del values[old]


def _unhide(token: str, protected: list[str]) -> str:
    if "\x00" not in token:
        return token
    pieces = token.split("\x00")
    return "".join(protected[int(p)] if i % 2 else p for i, p in enumerate(pieces))


def _parse_time(text: str, tz: dt.tzinfo | None) -> dt.datetime | None:
    """``YYYYMMDDhhmmss`` as a datetime in ``tz``; None when malformed.

    Many devices report the same minute, and one device the same SampleTime packet after packet:
    results are cached (datetimes are immutable, so sharing one is safe)."""
    try:
        return _parse_time_cached(text, tz)
    except TypeError:  # an unhashable tzinfo
        return _read_time(text, tz)


def _read_time(text: str, tz: dt.tzinfo | None) -> dt.datetime | None:
    if len(text) != TIME_DIGITS or not text.isdigit() or not text.isascii():
        return None
    try:
        return dt.datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
                           int(text[10:12]), int(text[12:14]), tzinfo=tz)
    except ValueError:
        return None


_parse_time_cached: Final = functools.lru_cache(maxsize=4096)(_read_time)


def _length_consistent(buf: bytearray, end: int) -> bool:
    """Whether the frame at the start of ``buf`` ending at ``end`` matches its length field."""
    field = bytes(buf[2:6])
    return field.isdigit() and 6 + int(field) + CRC_DIGITS == end


def _format_qn(moment: dt.datetime, tz: dt.tzinfo | None) -> str:
    if moment.tzinfo is not None and tz is not None:
        moment = moment.astimezone(tz)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def _format_time(moment: dt.datetime, tz: dt.tzinfo | None) -> str:
    if moment.tzinfo is not None and tz is not None:
        moment = moment.astimezone(tz)
    return moment.strftime("%Y%m%d%H%M%S")


def _header_value(name: str, value: str) -> str:
    value = str(value)
    if any(c in value for c in ";=&\r\n") or value != value.strip():
        raise FieldError(f"{name}={value!r} cannot be written: it holds a separator or spaces")
    return value


def _render_value(key: str, value: object, tz: dt.tzinfo | None) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        raise FieldError(f"{key}={value!r}: booleans have no HJ 212 form")
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if value - value != 0.0:
            raise FieldError(f"{key}={value!r} is not a finite number")
        text = repr(value)
        if "e" in text:
            text = format(Decimal(text), "f")
    elif isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, dt.datetime):
        text = _format_time(value, tz)
    else:
        raise FieldError(f"{key}={value!r}: cannot write a {type(value).__name__}")
    if any(c in text for c in ";,=&\r\n"):
        raise FieldError(f"{key}={text!r} cannot be written: it holds a separator")
    return text


def _render_key(key: str) -> str:
    if not key or any(c in key for c in ";,=&\r\n "):
        raise FieldError(f"CP key {key!r} cannot be written")
    return key


def _render_cp(cp: Mapping[str, object] | str | None, values: Mapping[str, Mapping[str, object]] | None,
               data_time: dt.datetime | None, tz: dt.tzinfo | None) -> str:
    items: list[str] = []
    if data_time is not None:
        if isinstance(cp, Mapping) and "DataTime" in cp:
            raise FieldError("DataTime given both as data_time and in cp")
        items.append("DataTime=" + _format_time(data_time, tz))
    if isinstance(cp, str):
        if "&&" in cp or "\r" in cp or "\n" in cp:
            raise FieldError(f"CP text {cp[:40]!r} holds '&&' or a line break")
        if cp:
            items.append(cp)
    elif cp:
        items.extend(f"{_render_key(k)}={_render_value(k, v, tz)}" for k, v in cp.items())
    if values:
        for code, fields in values.items():
            if not fields:
                continue
            _render_key(code)
            items.append(",".join(f"{code}-{_render_key(s)}={_render_value(code + '-' + s, v, tz)}"
                                  for s, v in fields.items()))
    return ";".join(items)
