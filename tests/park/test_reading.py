"""The reading message: what ``validate_reading`` takes, converts and refuses, and the dead letter.

Every refusal is an ``InvalidReading`` whose one-line message is the reason that goes to the
dead-letter topic; the tests assert that the reason names the facts a reader needs.
"""

from __future__ import annotations

import datetime as dt
import json

import msgspec
import pytest

from park.model import Park
from park.reading import (
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    DeadLetter,
    InvalidReading,
    Reading,
    dead_letter,
    decode_reading,
    encode_dead_letter,
    encode_reading,
    validate_reading,
)

# The example of park/reading.py's docstring (and the README).
EXAMPLE = b"""{"schema": 1, "site": "KM-AIR-KMXY", "ts": "2026-11-25T10:05:00+08:00", "seq": 4711,
 "interval": "1min",
 "values": {"PM2.5": {"v": 35.2, "unit": "ug/m3", "flag": "N"},
            "CO":    {"v": 0.8,  "unit": "mg/m3", "flag": "N"}}}"""

# A collector clock five minutes after the example's timestamp.
NOW = dt.datetime(2026, 11, 25, 2, 10, tzinfo=dt.timezone.utc)
BEIJING = dt.timezone(dt.timedelta(hours=8))

AIR = "KM-AIR-KMXY"
RIVER = "KM-RIV-LLH"
GAS = "YNDL-G1"
WASTEWATER = "YNDL-W1"


def message(site: str = AIR, values: dict | None = None, **fields) -> dict:
    msg = {"schema": 1, "site": site, "ts": "2026-11-25T10:05:00+08:00", "seq": 1, "interval": "1min",
           "values": values if values is not None else {"PM2.5": {"v": 35.2, "unit": "ug/m3"}}}
    msg.update(fields)
    return msg


def valid(park: Park, msg: dict | bytes, **kw) -> Reading:
    payload = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
    return validate_reading(payload, park, now=NOW, **kw)


def reason(park: Park, msg: dict | bytes, **kw) -> str:
    with pytest.raises(InvalidReading) as caught:
        valid(park, msg, **kw)
    text = str(caught.value)
    assert "\n" not in text
    return text


# --- accepted -----------------------------------------------------------------------------------

def test_the_readme_example_is_accepted(park):
    reading = valid(park, EXAMPLE)
    assert reading.schema == SCHEMA_VERSION
    assert reading.site == AIR
    assert reading.ts == dt.datetime(2026, 11, 25, 10, 5, tzinfo=BEIJING)
    assert reading.ts.utcoffset() == dt.timedelta(hours=8)
    assert reading.seq == 4711
    assert reading.interval == "1min"
    assert reading.backfill is False
    assert reading.values["PM2.5"].v == pytest.approx(35.2)
    assert reading.values["PM2.5"].unit == "ug/m3"
    assert reading.values["PM2.5"].flag == "N"
    assert reading.values["CO"].v == pytest.approx(0.8)
    assert reading.values["CO"].unit == "mg/m3"


def test_a_missing_interval_and_flag_default_to_one_minute_and_normal(park):
    msg = message()
    del msg["interval"]
    reading = valid(park, msg)
    assert reading.interval == "1min"
    assert reading.values["PM2.5"].flag == "N"


@pytest.mark.parametrize("interval", ["rt", "1min", "1h", "1d"])
def test_every_hj212_interval_is_accepted(park, interval):
    assert valid(park, message(interval=interval)).interval == interval


@pytest.mark.parametrize("flag", list("NFMSDCTB"))
def test_every_hj212_data_flag_is_accepted(park, flag):
    reading = valid(park, message(values={"PM2.5": {"v": 35.2, "unit": "ug/m3", "flag": flag}}))
    assert reading.values["PM2.5"].flag == flag


def test_co_in_micrograms_is_converted_to_milligrams(park):
    reading = valid(park, message(values={"CO": {"v": 800, "unit": "ug/m3"}}))
    assert reading.values["CO"].v == pytest.approx(0.8)
    assert reading.values["CO"].unit == "mg/m3"


def test_ambient_so2_in_milligrams_is_converted_to_micrograms(park):
    reading = valid(park, message(values={"SO2": {"v": 0.05, "unit": "mg/m3"}}))
    assert reading.values["SO2"].v == pytest.approx(50)
    assert reading.values["SO2"].unit == "ug/m3"


def test_stack_so2_stays_in_milligrams_with_its_reference_o2_value(park):
    reading = valid(park, message(GAS, {"SO2": {"v": 42, "unit": "mg/m3", "zs": 48}}))
    assert reading.values["SO2"].v == pytest.approx(42)
    assert reading.values["SO2"].unit == "mg/m3"
    assert reading.values["SO2"].zs == pytest.approx(48)


def test_the_reference_o2_value_is_converted_with_its_reading(park):
    reading = valid(park, message(GAS, {"SO2": {"v": 42000, "unit": "ug/m3", "zs": 48000}}))
    assert reading.values["SO2"].v == pytest.approx(42)
    assert reading.values["SO2"].zs == pytest.approx(48)


def test_wastewater_flow_in_litres_per_second_is_converted_to_cubic_metres_per_hour(park):
    reading = valid(park, message(WASTEWATER, {"water_flow": {"v": 10, "unit": "L/s"}}))
    assert reading.values["water_flow"].v == pytest.approx(36)
    assert reading.values["water_flow"].unit == "m3/h"


@pytest.mark.parametrize("unit", ["µg/m³", "μg/m3", "ug/m³", " ug/m3 "])
def test_unit_spellings_are_normalised(park, unit):
    reading = valid(park, message(values={"PM2.5": {"v": 35.2, "unit": unit}}))
    assert reading.values["PM2.5"].v == pytest.approx(35.2)


def test_hj212_codes_as_keys_become_short_names(park):
    air = valid(park, message(values={"a34004": {"v": 35.2, "unit": "ug/m3"}, "a21005": {"v": 0.8, "unit": "mg/m3"}}))
    assert set(air.values) == {"PM2.5", "CO"}
    river = valid(park, message(RIVER, {"w01001": {"v": 7.2, "unit": ""}, "w01018": {"v": 12, "unit": "mg/l"}}))
    assert set(river.values) == {"pH", "COD"}
    assert river.values["COD"].unit == "mg/L"


def test_a_negative_temperature_is_fine(park):
    reading = valid(park, message(values={"temp": {"v": -3.5, "unit": "°C"}}))
    assert reading.values["temp"].v == -3.5
    assert reading.values["temp"].unit == "degC"


def test_humidity_of_exactly_100_percent_is_fine(park):
    assert valid(park, message(values={"humidity": {"v": 100, "unit": "%"}})).values["humidity"].v == 100


def test_a_timestamp_five_minutes_ahead_is_accepted_as_clock_skew(park):
    ahead = (NOW + dt.timedelta(minutes=5)).astimezone(BEIJING).isoformat()
    assert valid(park, message(ts=ahead)).ts == NOW + dt.timedelta(minutes=5)


def test_a_utc_timestamp_is_accepted(park):
    assert valid(park, message(ts="2026-11-25T02:05:00Z")).ts == dt.datetime(2026, 11, 25, 2, 5, tzinfo=dt.timezone.utc)


def test_a_message_on_its_own_topic_is_accepted(park):
    assert valid(park, EXAMPLE, topic="ecopark/air/KM-AIR-KMXY").site == AIR


def test_a_message_of_exactly_64_kib_is_accepted(park):
    padded = EXAMPLE + b" " * (MAX_MESSAGE_BYTES - len(EXAMPLE))
    assert len(padded) == MAX_MESSAGE_BYTES
    assert valid(park, padded).seq == 4711


def test_a_backfilled_reading_says_so(park):
    assert valid(park, message(backfill=True)).backfill is True


# --- refused, with the reason -------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b'{"schema": 1, "site": ', b"not json", b"", b"\xff\xfe"])
def test_malformed_json_is_refused(park, payload):
    assert reason(park, payload).startswith("malformed JSON")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(park, literal):
    payload = json.dumps(message(values={"PM2.5": {"v": 0, "unit": "ug/m3"}})).encode().replace(b'"v": 0', b'"v": ' + literal)
    assert literal in payload
    text = reason(park, payload)
    assert "NaN or Infinity" in text


def test_a_number_too_large_for_a_float_is_refused(park):
    payload = json.dumps(message(values={"PM2.5": {"v": 0, "unit": "ug/m3"}})).encode().replace(b'"v": 0', b'"v": 1e999')
    assert "out of range" in reason(park, payload)


def test_a_null_value_is_refused(park):
    text = reason(park, message(values={"PM2.5": {"v": None, "unit": "ug/m3"}}))
    assert "PM2.5" in text and "not a number" in text


def test_a_negative_concentration_is_refused(park):
    text = reason(park, message(values={"PM2.5": {"v": -1, "unit": "ug/m3"}}))
    assert text == "PM2.5: negative value -1 ug/m3"


def test_a_negative_reference_o2_value_is_refused(park):
    text = reason(park, message(GAS, {"SO2": {"v": 42, "unit": "mg/m3", "zs": -1}}))
    assert "SO2" in text and "negative" in text


def test_humidity_above_100_percent_is_refused(park):
    text = reason(park, message(values={"humidity": {"v": 100.5, "unit": "%"}}))
    assert "humidity" in text and "100.5" in text and "above the physical bound 100" in text


def test_a_ph_above_14_is_refused(park):
    text = reason(park, message(RIVER, {"pH": {"v": 15, "unit": ""}}))
    assert "pH" in text and "15" in text and "14" in text


def test_an_unknown_site_is_refused(park):
    with pytest.raises(InvalidReading) as caught:
        valid(park, message("KM-AIR-NOPE"))
    assert str(caught.value) == "unknown site 'KM-AIR-NOPE'"
    assert caught.value.site == "KM-AIR-NOPE"


def test_an_unknown_parameter_is_refused(park):
    text = reason(park, message(values={"PM25": {"v": 35.2, "unit": "ug/m3"}}))
    assert "unknown parameter 'PM25'" in text and AIR in text


def test_a_stack_parameter_at_an_air_station_is_unknown_there(park):
    text = reason(park, message(values={"NOx": {"v": 35.2, "unit": "ug/m3"}}))
    assert "unknown parameter 'NOx'" in text and "air site" in text


def test_a_parameter_the_site_does_not_measure_is_refused(park):
    # pressure is an ambient parameter, but the reference station does not report it
    text = reason(park, message(values={"pressure": {"v": 81.2, "unit": "kPa"}}))
    assert text == f"parameter pressure is not measured at site {AIR}"


def test_a_parameter_given_twice_under_name_and_code_is_refused(park):
    text = reason(park, message(values={"PM2.5": {"v": 35.2, "unit": "ug/m3"}, "a34004": {"v": 36, "unit": "ug/m3"}}))
    assert "PM2.5" in text and "twice" in text and "a34004" in text


@pytest.mark.parametrize(("site", "name", "unit"), [
    (AIR, "PM2.5", "mg/L"),
    (AIR, "PM2.5", ""),
    (RIVER, "COD", "mg/m3"),
    (WASTEWATER, "water_flow", "L/min"),
])
def test_a_unit_that_does_not_fit_is_refused(park, site, name, unit):
    text = reason(park, message(site, {name: {"v": 1, "unit": unit}}))
    assert f"unit {unit!r} does not fit {name}" in text
    assert "accepted:" in text


def test_an_unknown_data_flag_is_refused(park):
    text = reason(park, message(values={"PM2.5": {"v": 35.2, "unit": "ug/m3", "flag": "X"}}))
    assert "PM2.5" in text and "unknown data flag 'X'" in text


def test_a_timestamp_without_an_offset_is_refused(park):
    text = reason(park, message(ts="2026-11-25T10:05:00"))
    assert text == "timestamp '2026-11-25T10:05:00' has no UTC offset"


@pytest.mark.parametrize("ts", ["2026/11/25 10:05", "25.11.2026 10:05", "yesterday", ""])
def test_a_timestamp_that_is_not_iso_8601_is_refused(park, ts):
    assert reason(park, message(ts=ts)) == f"timestamp {ts!r} is not ISO 8601"


def test_a_timestamp_a_day_in_the_future_is_refused(park):
    tomorrow = (NOW + dt.timedelta(days=1)).astimezone(BEIJING).isoformat()
    text = reason(park, message(ts=tomorrow))
    assert tomorrow in text and "in the future" in text


def test_a_schema_version_from_the_future_is_refused(park):
    text = reason(park, message(schema=SCHEMA_VERSION + 1))
    assert text == f"schema version {SCHEMA_VERSION + 1} is newer than this collector knows ({SCHEMA_VERSION})"


@pytest.mark.parametrize("schema", [0, -1])
def test_a_schema_version_below_1_is_refused(park, schema):
    assert reason(park, message(schema=schema)) == f"schema version {schema} does not exist"


def test_a_message_over_64_kib_is_refused_before_it_is_parsed(park):
    huge = EXAMPLE + b" " * (MAX_MESSAGE_BYTES - len(EXAMPLE) + 1)
    text = reason(park, huge)
    assert text == f"message is {MAX_MESSAGE_BYTES + 1} bytes, over the 65536-byte limit"


def test_a_site_publishing_on_another_sites_topic_is_refused(park):
    text = reason(park, EXAMPLE, topic="ecopark/emission/YNDL-G1")
    assert "KM-AIR-KMXY" in text
    assert "'ecopark/emission/YNDL-G1'" in text
    assert "'ecopark/air/KM-AIR-KMXY'" in text


@pytest.mark.parametrize(("where", "field"), [("top", "station"), ("value", "quality")])
def test_an_unknown_field_is_refused(park, where, field):
    msg = message()
    if where == "top":
        msg[field] = "x"
    else:
        msg["values"]["PM2.5"][field] = "x"
    text = reason(park, msg)
    assert "unknown field" in text and field in text


def test_a_missing_required_field_is_refused(park):
    msg = message()
    del msg["seq"]
    assert "seq" in reason(park, msg)


def test_a_field_of_the_wrong_type_is_refused(park):
    text = reason(park, message(seq="1"))
    assert "bad message" in text and "seq" in text


def test_a_message_that_is_not_an_object_is_refused(park):
    assert "bad message" in reason(park, b"[1, 2, 3]")


def test_a_reading_without_values_is_refused(park):
    assert reason(park, message(values={})) == "reading has no values"


def test_a_negative_sequence_number_is_refused(park):
    assert reason(park, message(seq=-1)) == "sequence number -1 is negative"


def test_an_unknown_interval_is_refused(park):
    text = reason(park, message(interval="5min"))
    assert text.startswith("unknown interval '5min'")
    assert "1min" in text and "1h" in text


def test_a_refusal_carries_the_site_when_it_is_known(park):
    with pytest.raises(InvalidReading) as caught:
        valid(park, message(seq=-1))
    assert caught.value.site == AIR
    with pytest.raises(InvalidReading) as caught:
        valid(park, b"not json")
    assert caught.value.site is None


def test_an_invalid_reading_is_a_value_error():
    assert issubclass(InvalidReading, ValueError)


# --- encoding, identity, dead letters ------------------------------------------------------------

def test_a_reading_survives_encode_and_decode(park):
    reading = valid(park, message(GAS, {"SO2": {"v": 42, "unit": "mg/m3", "zs": 48, "flag": "T"},
                                        "gas_flow": {"v": 1.5, "unit": "m3/s"}}, interval="1h", backfill=True))
    back = decode_reading(encode_reading(reading))
    assert back == reading
    assert back.ts.utcoffset() == dt.timedelta(hours=8)
    assert back.id == reading.id


def test_an_encoded_reading_is_json_in_canonical_units(park):
    encoded = json.loads(encode_reading(valid(park, message(values={"a21005": {"v": 800, "unit": "ug/m3"}}))))
    assert encoded["values"] == {"CO": {"v": pytest.approx(0.8), "unit": "mg/m3"}}  # flag N is the default
    assert encoded["ts"] == "2026-11-25T10:05:00+08:00"


def test_the_reading_id_is_stable_for_the_same_reading(park):
    first = valid(park, EXAMPLE)
    again = valid(park, EXAMPLE)
    assert first.id == again.id
    # the same instant written in UTC is the same reading
    assert valid(park, json.loads(EXAMPLE) | {"ts": "2026-11-25T02:05:00Z"}).id == first.id
    assert AIR in first.id


def test_the_reading_id_differs_for_another_sequence_number_site_or_time(park):
    base = valid(park, message(seq=1))
    assert valid(park, message(seq=2)).id != base.id
    assert valid(park, message(ts="2026-11-25T10:06:00+08:00", seq=1)).id != base.id
    assert valid(park, message(RIVER, {"pH": {"v": 7, "unit": ""}}, seq=1)).id != base.id


def test_a_dead_letter_carries_the_reason_the_source_and_the_payload(park):
    payload = json.dumps(message(seq=-1)).encode()
    with pytest.raises(InvalidReading) as caught:
        valid(park, payload)
    letter = dead_letter(str(caught.value), payload, "mqtt:ecopark/air/KM-AIR-KMXY", site=caught.value.site, now=NOW)
    assert letter.reason == "sequence number -1 is negative"
    assert letter.source == "mqtt:ecopark/air/KM-AIR-KMXY"
    assert letter.payload == payload.decode()
    assert letter.site == AIR
    assert letter.received_at == NOW


def test_a_dead_letter_escapes_undecodable_bytes_instead_of_losing_them():
    payload = b'{"site": "\xff\xfe", "\xe5\x9b": 1}'
    letter = dead_letter("malformed JSON", payload, "hj212:127.0.0.1:50122")
    assert "\\xff\\xfe" in letter.payload
    assert "\\xe5\\x9b" in letter.payload
    assert letter.payload.startswith('{"site": "')
    assert letter.payload.encode("ascii").decode("unicode_escape").encode("latin-1") == payload


def test_a_dead_letter_keeps_valid_utf8_text_as_it_is():
    payload = '{"site": "昆明学院站"}'.encode()
    assert dead_letter("unknown site", payload, "mqtt:x").payload == '{"site": "昆明学院站"}'


def test_a_dead_letter_without_a_clock_is_stamped_now():
    before = dt.datetime.now(dt.timezone.utc)
    letter = dead_letter("r", b"x", "mqtt:x")
    assert before <= letter.received_at <= dt.datetime.now(dt.timezone.utc)


def test_an_encoded_dead_letter_decodes_back(park):
    letter = dead_letter("bad", b"\x00\xff", "mqtt:ecopark/air/KM-AIR-KMXY", now=NOW)
    back = msgspec.json.decode(encode_dead_letter(letter), type=DeadLetter)
    assert back == letter
    assert "site" not in json.loads(encode_dead_letter(letter))  # omitted when unknown
