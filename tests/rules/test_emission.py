"""Emission compliance, read from reference/emissions.md and the HJ 212-2017 examples (hj212.md)."""

from __future__ import annotations

import pytest

import rules.validity
from rules.emission import (
    MIN_VALID_MINUTES_PER_HOUR,
    REFERENCE_O2_PCT,
    Compliance,
    OxygenNearAmbientError,
    daily_compliance,
    flow_weighted_mean,
    hourly_compliance,
    mass_emission,
    mass_emission_kg_h,
    nox_as_no2,
    ph_compliance,
    ppm_to_mgm3,
    reference_o2_pct,
    to_reference_o2,
    tonnes,
    wastewater_load_kg,
)

# --- reference O2 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("standard", "source", "o2_pct"),
    [
        ("GB 13271-2014", "coal", 9),
        ("GB 13271-2014", "oil", 3.5),
        ("GB 13271-2014", "gas", 3.5),
        ("GB 13223-2011", "coal", 6),
        ("GB 13223-2011", "oil", 3),
        ("GB 13223-2011", "gas", 3),
        ("GB 13223-2011", "gas_turbine", 15),
    ],
)
def test_reference_o2_contents_of_emissions_section_2(standard, source, o2_pct):
    assert REFERENCE_O2_PCT[(standard, source)] == o2_pct
    assert reference_o2_pct(standard, source) == o2_pct


def test_unknown_standard_or_source_has_no_reference_o2():
    with pytest.raises(ValueError, match="no reference O2"):
        reference_o2_pct("GB 13271-2014", "biomass")


def test_o2_conversion_worked_example_from_the_hj212_flue_gas_packet():
    # hj212.md §9: a21026-Avg=12.3 at a19001 5.2 % → a21026-ZsAvg=13.6 (gas boiler, 3.5 %).
    converted = to_reference_o2(12.3, 5.2, reference_o2_pct("GB 13271-2014", "gas"))
    assert converted == pytest.approx(12.3 * 17.5 / 15.8)
    assert round(converted, 1) == 13.6


def test_o2_conversion_coal_boiler():
    # 200 mg/m³ at 12 % O2, coal boiler at 9 %: 200 × (21 − 9) / (21 − 12) = 266.67.
    assert to_reference_o2(200, 12, 9) == pytest.approx(266.6667, abs=1e-4)


def test_o2_conversion_is_identity_at_the_reference_and_lowers_richer_gas():
    assert to_reference_o2(50, 3.5, 3.5) == 50
    assert to_reference_o2(100, 0, 6) == pytest.approx(100 * 15 / 21)


def test_o2_at_the_guard_still_converts_above_it_is_refused():
    assert to_reference_o2(10, 19, 9) == pytest.approx(10 * 12 / 2)
    for o2 in (19.01, 20.9, 21, 25):
        with pytest.raises(OxygenNearAmbientError, match="nearly air"):
            to_reference_o2(10, o2, 9)


def test_near_ambient_oxygen_is_a_value_error():
    assert issubclass(OxygenNearAmbientError, ValueError)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 5, 9), "negative"),
        ((10, -1, 9), "negative"),
        ((10, 5, 21), "not below air"),
        ((float("nan"), 5, 9), "finite"),
        (("10", 5, 9), "not a number"),
    ],
)
def test_o2_conversion_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        to_reference_o2(*args)


# --- hourly compliance (flue gas) ---------------------------------------------------------------


def test_the_valid_minute_threshold_comes_from_rules_validity():
    assert MIN_VALID_MINUTES_PER_HOUR == 45
    assert MIN_VALID_MINUTES_PER_HOUR is rules.validity.MIN_VALID_MINUTES_PER_HOUR


def test_an_hourly_mean_at_the_limit_complies():
    result = hourly_compliance(50, 50, 60)
    assert result == Compliance(True, 0.0, 50.0, 50.0)


def test_an_hourly_mean_above_the_limit_is_an_exceedance_with_its_multiple():
    result = hourly_compliance(60, 50, 45)
    assert result.compliant is False
    assert result.exceedance_multiple == 0.2  # (60 − 50) / 50
    assert hourly_compliance(50.01, 50, 60).compliant is False
    assert hourly_compliance(49.99, 50, 60) == Compliance(True, 0.0, 49.99, 50.0)


def test_an_hour_with_44_valid_minutes_is_not_judged_45_is():
    assert hourly_compliance(80, 50, 44).compliant is None
    assert hourly_compliance(80, 50, 44).exceedance_multiple == 0.0
    assert not hourly_compliance(80, 50, 44).judged
    assert hourly_compliance(80, 50, 45).compliant is False
    assert hourly_compliance(80, 50, 45).exceedance_multiple == 0.6


def test_hourly_compliance_can_convert_to_the_reference_o2_first():
    # 45 mg/m³ measured at 5.2 % O2 is 45 × 17.5 / 15.8 = 49.84 at 3.5 %: complies with 50.
    assert hourly_compliance(45, 50, 60, o2_measured_pct=5.2, o2_reference_pct=3.5).compliant is True
    # 46 measured is 50.95 at 3.5 %: exceeds, though the measured value alone would not.
    result = hourly_compliance(46, 50, 60, o2_measured_pct=5.2, o2_reference_pct=3.5)
    assert result.compliant is False
    assert result.value == pytest.approx(46 * 17.5 / 15.8)
    with pytest.raises(OxygenNearAmbientError):
        hourly_compliance(5, 50, 60, o2_measured_pct=20.5, o2_reference_pct=3.5)
    with pytest.raises(ValueError, match="both"):
        hourly_compliance(46, 50, 60, o2_measured_pct=5.2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((50, 50, 61), "outside 0..60"),
        ((50, 50, -1), "outside 0..60"),
        ((50, 50, 45.5), "whole number"),
        ((-1, 50, 60), "negative"),
        ((50, 0, 60), "zero"),
        ((float("inf"), 50, 60), "finite"),
    ],
)
def test_hourly_compliance_bad_input(args, message):
    with pytest.raises(ValueError, match=message) as info:
        hourly_compliance(*args)
    assert "\n" not in str(info.value)


# --- wastewater ----------------------------------------------------------------------------------


def test_flow_weighted_daily_mean():
    # Σ(C × D) / Σ D = (10 × 1 + 30 × 3) / 4 = 25 mg/L
    assert flow_weighted_mean([10, 30], [1, 3]) == 25
    assert flow_weighted_mean([10, 30], [0, 3]) == 30


def test_flow_weighted_mean_bad_input():
    with pytest.raises(ValueError, match="2 concentrations but 1 volumes"):
        flow_weighted_mean([10, 30], [1])
    with pytest.raises(ValueError, match="zero"):
        flow_weighted_mean([10], [0])
    with pytest.raises(ValueError, match="negative"):
        flow_weighted_mean([10], [-1])


def test_a_wastewater_day_with_19_valid_hours_is_not_judged_20_is():
    # GB 18918-2002 class 1A COD 50 mg/L, daily mean.
    assert daily_compliance(55, 50, 19).compliant is None
    result = daily_compliance(55, 50, 20)
    assert result.compliant is False
    assert result.exceedance_multiple == 0.1
    assert daily_compliance(50, 50, 24).compliant is True
    with pytest.raises(ValueError, match="outside 0..24"):
        daily_compliance(50, 50, 25)


@pytest.mark.parametrize(("ph", "compliant"), [(5.99, False), (6, True), (7.5, True), (9, True), (9.01, False)])
def test_wastewater_ph_is_judged_per_value_as_a_range(ph, compliant):
    result = ph_compliance(ph)
    assert result.compliant is compliant
    assert result.limit == (6.0, 9.0)
    assert result.exceedance_multiple == 0.0


# --- mass emission --------------------------------------------------------------------------------


def test_flue_gas_mass_emission_uses_the_unconverted_concentration():
    # hj212.md §9 packet: a21026-Avg 12.3 mg/m³, a00000-Avg 10 m³/s (36 000 m³ in the hour),
    # a21026-Cou 0.44 kg — from 12.3, not from the O2-converted 13.6.
    assert mass_emission_kg_h(12.3, 36000) == pytest.approx(0.4428)
    assert round(mass_emission_kg_h(12.3, 36000), 2) == 0.44


@pytest.mark.parametrize(
    ("flow", "flow_unit"),
    [(36000, "m3/h"), (36000, "m³/h"), (10, "m3/s"), (10000, "L/s"), (10000, "l/s")],
)
def test_mass_emission_converts_flow_units(flow, flow_unit):
    assert mass_emission(12.3, "mg/m3", flow, flow_unit) == pytest.approx(0.4428)


def test_one_litre_per_second_is_3_6_cubic_metres_per_hour():
    assert mass_emission(100, "mg/m3", 1, "L/s") == pytest.approx(mass_emission_kg_h(100, 3.6))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((12.3, "mg/L", 10, "m3/s"), "unit mismatch"),
        ((12.3, "ug/m3", 10, "m3/s"), "concentration unit"),
        ((12.3, "mg/m3", 10, "m3/d"), "flow unit"),
        ((12.3, "mg/m3", -10, "m3/s"), "negative"),
    ],
)
def test_mass_emission_unit_checks(args, message):
    with pytest.raises(ValueError, match=message) as info:
        mass_emission(*args)
    assert "\n" not in str(info.value)


def test_wastewater_load_and_tonnes():
    # mg/L × m³ = g: 50 mg/L × 1000 m³ = 50 kg
    assert wastewater_load_kg(50, 1000) == 50
    assert tonnes(1500) == 1.5
    with pytest.raises(ValueError, match="negative"):
        wastewater_load_kg(-1, 10)


# --- gas conversions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gas", "molar_mass"), [("SO2", 64.06), ("NO2", 46.01), ("NO", 30.01), ("CO", 28.01)]
)
def test_ppm_to_mgm3_is_m_over_22_4(gas, molar_mass):
    assert ppm_to_mgm3(100, gas) == pytest.approx(100 * molar_mass / 22.4)


def test_ppm_to_mgm3_unknown_gas():
    with pytest.raises(ValueError, match="no molar mass"):
        ppm_to_mgm3(1, "H2S")


def test_nox_as_no2():
    # 30 mg/m³ NO × 46/30 + 10 mg/m³ NO2 = 56 mg/m³
    assert nox_as_no2(30, 10) == pytest.approx(56)
    with pytest.raises(ValueError, match="negative"):
        nox_as_no2(-1, 10)
