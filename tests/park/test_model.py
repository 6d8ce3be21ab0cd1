"""The park config: the shipped reference park loads, and every mistake is one line naming where.

A config error reads ``file:line: key.path: problem`` (park/model.py). The small YAML documents
below are written out in full so that the line numbers asserted are the ones a reader counts.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from park.model import DEFAULT_CONFIG, ConfigError, Park, load_park, parse_park

REPO = Path(__file__).resolve().parent.parent.parent

# --- the shipped config: the Kunming ETDZ reference park ---------------------------------------

AIR_POLLUTANTS = ("SO2", "NO2", "PM10", "PM2.5", "CO", "O3")
RIVER_ITEMS = ("pH", "DO", "CODMn", "COD", "BOD5", "NH3-N", "TP", "TN")
GAS_OUTLET_PARAMETERS = ("SO2", "NOx", "particulates", "O2", "gas_flow")
WASTEWATER_PARAMETERS = ("COD", "NH3-N", "TP", "pH", "water_flow")


@pytest.fixture(scope="module")
def shipped() -> Park:
    return load_park()


def test_the_default_config_is_the_shipped_reference_park():
    assert DEFAULT_CONFIG == REPO / "config" / "park.yaml"
    park = load_park()
    assert park.id == "kmetdz"
    assert park.name == "昆明经济技术开发区"
    assert park.timezone == "Asia/Shanghai"
    assert park.area_km2 == pytest.approx(147.72)
    assert park.source == str(DEFAULT_CONFIG)


def test_the_reference_park_has_one_air_station_measuring_the_six_gb3095_pollutants(shipped):
    stations = shipped.sites_of("air")
    assert len(stations) == 1
    (station,) = stations
    assert station.name == "昆明学院站"
    assert station.role == "station"
    assert set(AIR_POLLUTANTS) <= set(station.parameters)


@pytest.mark.parametrize(
    ("name", "target_class"), [("洛龙河", 2), ("马料河", 3), ("新宝象河", 3)],
)
def test_the_reference_park_has_three_river_sections_with_their_target_classes(shipped, name, target_class):
    sections = {s.name: s for s in shipped.sites_of("water")}
    assert len(sections) == 3
    section = sections[name]
    assert section.role == "section"
    assert section.waterbody == "river"
    assert section.target_class == target_class
    assert set(RIVER_ITEMS) <= set(section.parameters)


def test_the_reference_park_has_at_least_five_enterprises_each_with_a_gas_and_a_wastewater_outlet(shipped):
    enterprises = {s.enterprise for s in shipped.sites_of("emission")}
    assert len(enterprises) >= 5
    for ent in enterprises:
        roles = [s.role for s in shipped.sites_of("emission") if s.enterprise == ent]
        assert "gas_outlet" in roles, ent
        assert "wastewater_outlet" in roles, ent


def test_every_gas_outlet_measures_stack_gas_at_3_5_percent_reference_o2_with_permit_limits(shipped):
    gas = [s for s in shipped.sites_of("emission") if s.role == "gas_outlet"]
    assert len(gas) >= 5
    for outlet in gas:
        assert set(GAS_OUTLET_PARAMETERS) <= set(outlet.parameters), outlet.id
        assert outlet.reference_o2_pct == 3.5
        # GB 13271-2014 gas-fired boilers: particulates 20, SO2 50 mg/m³; NOx 200 (Table 2) or 150 (Table 3)
        assert outlet.permit["particulates"].upper == 20
        assert outlet.permit["SO2"].upper == 50
        assert outlet.permit["NOx"].upper in (150, 200)
        assert all(limit.averaging == "1h" for limit in outlet.permit.values())
        assert outlet.mn


def test_every_wastewater_outlet_has_daily_permit_limits_and_a_ph_range(shipped):
    water = [s for s in shipped.sites_of("emission") if s.role == "wastewater_outlet"]
    assert len(water) >= 5
    for outlet in water:
        assert set(WASTEWATER_PARAMETERS) <= set(outlet.parameters), outlet.id
        assert outlet.reference_o2_pct is None
        # GB 8978-1996 Table 4 grade 1
        assert outlet.permit["COD"].upper == 100
        assert outlet.permit["NH3-N"].upper == 15
        assert outlet.permit["TP"].upper == 0.5
        ph = outlet.permit["pH"]
        assert (ph.lower, ph.upper) == (6, 9)
        assert all(limit.averaging == "24h" for limit in outlet.permit.values())
        assert outlet.mn


def test_every_outlet_mn_is_unique_and_finds_its_site(shipped):
    outlets = [s for s in shipped.sites.values() if s.mn]
    assert len({s.mn for s in outlets}) == len(outlets)
    for s in outlets:
        assert shipped.site_by_mn(s.mn) is s
    assert shipped.site_by_mn("00000000000000") is None


def test_the_reference_park_has_water_and_energy_meters(shipped):
    roles = {s.role for s in shipped.sites_of("emission")}
    assert {"water_meter", "energy_meter"} <= roles
    meter = shipped.site("YNDL-ME")
    assert meter.parameters == ("energy_kwh",)
    assert meter.enterprise == "YNDL"


def test_the_hj212_2025_outlet_carries_its_sm4_key(shipped):
    outlet = shipped.site("YNBY-G1")
    assert outlet.hj212_version == "2025"
    assert outlet.sm4_key == bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert shipped.site("YNDL-G1").hj212_version == "2017"


def test_inspectors_cover_sites_and_escalate_to_the_chief(shipped):
    assert shipped.inspectors["insp-air"].escalate_to == "chief"
    assert "KM-AIR-KMXY" in shipped.inspectors["insp-air"].sites
    assert shipped.inspectors["chief"].sites == ()  # every site


def test_each_site_publishes_on_its_own_mqtt_topic(shipped):
    station = shipped.site("KM-AIR-KMXY")
    assert shipped.mqtt_topic(station) == "ecopark/air/KM-AIR-KMXY"


def test_asking_for_an_unknown_site_is_a_one_line_error(shipped):
    with pytest.raises(ValueError, match="unknown site 'NOPE'"):
        shipped.site("NOPE")


# --- config mistakes: one line, file:line: key: problem -----------------------------------------

BASE = textwrap.dedent("""\
    park:
      id: p
      name: 园区
      timezone: Asia/Shanghai
    air_stations:
      - id: A1
        name: 站
        parameters: [SO2, PM2.5]
    river_sections:
      - id: R1
        name: 河
        target_class: 3
        parameters: [pH, DO]
    enterprises:
      - id: E
        name: 企业
        outlets:
          - id: E-G1
            name: 排气筒
            role: gas_outlet
            mn: "0001"
            sm4_key: "0123456789abcdeffedcba9876543210"
            reference_o2_pct: 3.5
            permit: {SO2: 50, NOx: 200}
            parameters: [SO2, NOx, O2, gas_flow]
          - id: E-W1
            name: 排口
            role: wastewater_outlet
            mn: "0002"
            permit: {COD: 100, pH: [6, 9]}
            parameters: [COD, NH3-N, pH, water_flow]
    inspectors:
      - id: i1
        name: 甲
        sites: [A1, R1]
        escalate_to: boss
      - id: boss
        name: 乙
    """)


def variant(old: str, new: str) -> str:
    """BASE with one exact piece replaced (the piece must be there, once)."""
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_park(text, source="x.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


def test_the_small_base_config_is_valid():
    park = parse_park(BASE, source="x.yaml")
    assert set(park.sites) == {"A1", "R1", "E-G1", "E-W1"}
    assert park.source == "x.yaml"
    assert park.site("E-W1").permit["pH"].lower == 6
    assert park.inspectors["i1"].escalate_to == "boss"


def test_a_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_a_typo_in_a_key_names_the_line_and_suggests_the_right_key():
    message = config_error(variant("    target_class: 3", "    target_clas: 3"))
    assert message == "x.yaml:12: river_sections[0].target_clas: unknown key (did you mean 'target_class'?)"


def test_a_typo_in_a_top_level_key_suggests_the_right_key():
    message = config_error(variant("river_sections:", "river_section:"))
    assert message == "x.yaml:9: river_section: unknown key (did you mean 'river_sections'?)"


def test_a_key_nothing_resembles_lists_the_allowed_keys():
    message = config_error(variant("  timezone: Asia/Shanghai", "  timezone: Asia/Shanghai\n  zzz: 1"))
    assert message.startswith("x.yaml:5: park.zzz: unknown key (allowed: ")
    assert "timezone" in message


def test_a_key_given_twice_names_the_second_one():
    message = config_error(variant("    name: 河", "    name: 河\n    name: 河2"))
    assert message == "x.yaml:12: river_sections[0].name: key given twice"


def test_a_top_level_key_given_twice_names_it():
    message = config_error(BASE + "park: {}\n")
    assert message == "x.yaml:39: park: key given twice"


def test_a_missing_required_key_names_the_mapping_it_is_missing_from():
    message = config_error(variant("    target_class: 3\n", ""))
    assert message == "x.yaml:10: river_sections[0]: missing key 'target_class'"


def test_a_missing_park_section_is_named_at_the_top():
    message = config_error("air_stations: []\n")
    assert message == "x.yaml:1: (top): missing key 'park'"


def test_a_config_that_is_not_a_mapping_says_so_at_the_top():
    assert config_error("- just\n- a list\n") == "x.yaml:1: (top): expected a mapping"


def test_an_unknown_parameter_at_a_site_is_named_with_its_list_index():
    message = config_error(variant("parameters: [SO2, PM2.5]", "parameters: [SO2, PM25]"))
    assert message == "x.yaml:8: air_stations[0].parameters[1]: unknown parameter 'PM25' for air sites"


def test_a_stack_parameter_is_unknown_at_an_air_station():
    message = config_error(variant("parameters: [SO2, PM2.5]", "parameters: [SO2, NOx]"))
    assert message.startswith("x.yaml:8: air_stations[0].parameters[1]: unknown parameter 'NOx'")


def test_a_site_without_parameters_is_refused():
    message = config_error(variant("parameters: [pH, DO]", "parameters: []"))
    assert message == "x.yaml:13: river_sections[0].parameters: a site needs at least one parameter"


def test_a_permit_on_an_unknown_parameter_names_the_permit_key():
    message = config_error(variant("permit: {COD: 100, pH: [6, 9]}", "permit: {CODD: 100, pH: [6, 9]}"))
    assert message == "x.yaml:30: enterprises[0].outlets[1].permit.CODD: unknown parameter 'CODD' for emission sites"


def test_a_permit_on_a_parameter_the_outlet_does_not_measure_is_refused():
    message = config_error(variant("permit: {COD: 100, pH: [6, 9]}", "permit: {COD: 100, TP: 0.5, pH: [6, 9]}"))
    assert message == (
        "x.yaml:30: enterprises[0].outlets[1].permit.TP: TP has a limit but is not among the outlet's parameters"
    )


def test_a_permit_given_twice_for_one_parameter_is_refused():
    # w01018 is COD's HJ 212 code: the same limit given twice, the second would silently win
    message = config_error(variant("permit: {COD: 100, pH: [6, 9]}", "permit: {COD: 100, w01018: 50}"))
    assert message == "x.yaml:30: enterprises[0].outlets[1].permit.w01018: COD has a limit twice"


@pytest.mark.parametrize("bad_range", ["[9, 6]", "[6, 6]", "[6]", "[6, 7, 9]"])
def test_a_ph_range_that_is_not_low_then_high_is_refused(bad_range):
    message = config_error(variant("pH: [6, 9]", f"pH: {bad_range}"))
    assert message == "x.yaml:30: enterprises[0].outlets[1].permit.pH: a range is [low, high] with low < high"


def test_a_ph_range_beyond_the_ph_scale_is_refused():
    message = config_error(variant("pH: [6, 9]", "pH: [6, 90]"))
    assert message == "x.yaml:30: enterprises[0].outlets[1].permit.pH: 90 is outside 0…14"


def test_a_ph_range_bound_that_is_not_a_number_is_refused():
    message = config_error(variant("pH: [6, 9]", "pH: [six, 9]"))
    assert message == "x.yaml:30: enterprises[0].outlets[1].permit.pH: expected a number, got 'six'"


def test_a_limit_that_is_not_a_number_is_refused():
    message = config_error(variant("permit: {SO2: 50, NOx: 200}", "permit: {SO2: 50mg, NOx: 200}"))
    assert message == "x.yaml:24: enterprises[0].outlets[0].permit.SO2: expected a number, got '50mg'"


def test_a_quoted_limit_is_text_not_a_number():
    message = config_error(variant("permit: {SO2: 50, NOx: 200}", 'permit: {SO2: "50", NOx: 200}'))
    assert message == "x.yaml:24: enterprises[0].outlets[0].permit.SO2: expected a number, got '50'"


def test_a_negative_limit_is_refused():
    message = config_error(variant("permit: {SO2: 50, NOx: 200}", "permit: {SO2: -50, NOx: 200}"))
    assert message == "x.yaml:24: enterprises[0].outlets[0].permit.SO2: -50 is below 0"


def test_a_permit_that_is_not_a_mapping_is_refused():
    message = config_error(variant("permit: {SO2: 50, NOx: 200}", "permit: [SO2, 50]"))
    assert message.startswith("x.yaml:24: enterprises[0].outlets[0].permit: expected a mapping")


def test_a_reference_o2_on_a_wastewater_outlet_is_refused():
    message = config_error(variant("    permit: {COD: 100, pH: [6, 9]}", "    reference_o2_pct: 3.5\n        permit: {COD: 100, pH: [6, 9]}"))
    assert message == "x.yaml:30: enterprises[0].outlets[1].reference_o2_pct: only a gas outlet has a reference O2"


def test_an_outlet_role_that_does_not_exist_is_refused():
    message = config_error(variant("role: wastewater_outlet", "role: sewer"))
    assert message == (
        "x.yaml:28: enterprises[0].outlets[1].role: expected one of gas_outlet, wastewater_outlet, got 'sewer'"
    )


@pytest.mark.parametrize(("target", "problem"), [
    ("0", "0 is outside 1…5"),
    ("6", "6 is outside 1…5"),
    ("2.5", "a class is a whole number 1–5"),
    ("III", "expected a number, got 'III'"),
])
def test_a_target_class_must_be_a_gb3838_class_1_to_5(target, problem):
    message = config_error(variant("target_class: 3", f"target_class: {target}"))
    assert message == f"x.yaml:12: river_sections[0].target_class: {problem}"


def test_an_unknown_time_zone_is_refused():
    message = config_error(variant("timezone: Asia/Shanghai", "timezone: Asia/Kunmingg"))
    assert message == "x.yaml:4: park.timezone: unknown time zone 'Asia/Kunmingg'"


def test_a_time_zone_path_is_not_a_time_zone():
    message = config_error(variant("timezone: Asia/Shanghai", "timezone: ../../etc/passwd"))
    assert message == "x.yaml:4: park.timezone: unknown time zone '../../etc/passwd'"


def test_a_site_id_used_twice_is_refused_at_the_second_site():
    message = config_error(variant("  - id: R1", "  - id: A1"))
    assert message == "x.yaml:10: river_sections[0]: site id 'A1' is used twice"


def test_an_mn_used_twice_is_refused_naming_the_first_user():
    message = config_error(variant('mn: "0002"', 'mn: "0001"'))
    assert message == "x.yaml:26: enterprises[0].outlets[1]: MN 0001 is already used by site E-G1"


def test_an_mn_that_is_not_letters_and_digits_is_refused():
    message = config_error(variant('mn: "0002"', 'mn: "00-02"'))
    assert message == "x.yaml:29: enterprises[0].outlets[1].mn: MN '00-02' is not 1–24 letters or digits"


@pytest.mark.parametrize("key", [
    "0123456789abcdef",  # 8 bytes
    "0123456789abcdeffedcba987654321000",  # 17 bytes
    "0123456789abcdeffedcba987654321z",  # not hex
])
def test_an_sm4_key_must_be_128_bits_of_hex(key):
    message = config_error(variant("0123456789abcdeffedcba9876543210", key))
    assert message == "x.yaml:22: enterprises[0].outlets[0].sm4_key: an SM4 key is 32 hex digits (128 bits)"


def test_an_hj212_version_that_does_not_exist_is_refused():
    message = config_error(variant('    mn: "0001"', '    mn: "0001"\n        hj212_version: "2005"'))
    assert message == "x.yaml:22: enterprises[0].outlets[0].hj212_version: expected 2017 or 2025, got '2005'"


def test_an_inspector_for_an_unknown_site_is_refused():
    message = config_error(variant("sites: [A1, R1]", "sites: [A1, R2]"))
    assert message == "x.yaml:35: inspectors[0].sites[1]: unknown site 'R2'"


def test_an_inspector_escalating_to_an_unknown_inspector_is_refused_on_that_line():
    message = config_error(variant("escalate_to: boss", "escalate_to: bos"))
    assert message == "x.yaml:36: inspectors[0].escalate_to: unknown inspector 'bos'"


def test_an_inspector_id_used_twice_is_refused():
    message = config_error(variant("  - id: boss", "  - id: i1"))
    assert message == "x.yaml:37: inspectors[1]: inspector id 'i1' is used twice"


def test_a_bad_id_is_refused():
    message = config_error(variant("  - id: A1", "  - id: A 1"))
    assert message == "x.yaml:6: air_stations[0].id: 'A 1' is not a valid id (letters, digits, _ . -)"


def test_a_list_where_a_value_belongs_is_refused():
    message = config_error(variant("    name: 站", "    name: [站]"))
    assert message == "x.yaml:7: air_stations[0].name: expected a single value"


def test_a_value_with_an_unknown_yaml_tag_is_a_config_error():
    message = config_error(variant("    name: 站", "    name: !station 站"))
    assert message == "x.yaml:7: air_stations[0].name: cannot read a value tagged '!station'"


def test_invalid_yaml_names_the_line_of_the_problem():
    message = config_error(variant("    parameters: [SO2, PM2.5]", "    parameters: [SO2, PM2.5"))
    assert message.startswith("x.yaml:9: not valid YAML: ")


def test_invalid_yaml_indentation_names_its_line():
    message = config_error("park:\n  id: p\n    name: x\n")
    assert message.startswith("x.yaml:3: not valid YAML: ")


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n"])
def test_an_empty_config_is_refused(text):
    assert config_error(text) == "x.yaml:1: the config is empty"


def test_an_unreadable_path_names_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_park(missing)
    assert str(caught.value) == f"{missing}: cannot read config: No such file or directory"


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read config: Is a directory"):
        load_park(tmp_path)


def test_a_file_that_is_not_utf8_names_the_file(tmp_path):
    bad = tmp_path / "gbk.yaml"
    bad.write_bytes("park:\n  name: 园区\n".encode("gbk"))
    with pytest.raises(ConfigError) as caught:
        load_park(bad)
    message = str(caught.value)
    assert message.startswith(f"{bad}: cannot read config: not UTF-8")
    assert "\n" not in message


def test_an_error_in_a_file_names_that_file(tmp_path):
    bad = tmp_path / "park.yaml"
    bad.write_text(variant("timezone: Asia/Shanghai", "timezone: Mars/Olympus"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_park(bad)
    assert str(caught.value) == f"{bad}:4: park.timezone: unknown time zone 'Mars/Olympus'"


# --- ecopark check -----------------------------------------------------------------------------

def run_check(config: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecopark.cli", "check", "--config", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )


def test_ecopark_check_accepts_the_shipped_config():
    result = run_check(DEFAULT_CONFIG)
    assert result.returncode == 0, result.stderr
    assert "KM-AIR-KMXY" in result.stdout
    assert result.stdout.rstrip().endswith("OK")


def test_ecopark_check_reports_a_bad_config_in_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(variant("    target_class: 3", "    target_clas: 3"), encoding="utf-8")
    result = run_check(bad)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [f"ecopark: {bad}:12: river_sections[0].target_clas: unknown key (did you mean 'target_class'?)"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [None, b"", b"park: [\n", "park:\n  name: 园区\n".encode("gbk")],
                         ids=["missing", "empty", "invalid-yaml", "not-utf8"])
def test_ecopark_check_never_shows_a_traceback(tmp_path, content):
    bad = tmp_path / "bad.yaml"
    if content is not None:
        bad.write_bytes(content)
    result = run_check(bad)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"ecopark: {bad}")
    assert "Traceback" not in result.stderr
