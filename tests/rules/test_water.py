"""GB 3838-2002 and the 环办〔2011〕22号 method, read from reference/water-gb3838.md.

The limits below are copied from the reference's Table 1 by hand, not imported from rules.water:
the tests are the second transcription of the standard.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.water import (
    ASSESSMENT_2011_ITEMS,
    GB3838_2002_TABLE1,
    SectionClass,
    item_class,
    item_class_array,
    section_class,
    section_class_array,
)

# GB 3838-2002 Table 1, "≤" items, classes I, II, III, IV, V (mg/L; fecal coliform count/L).
UPPER_LIMITS = {
    "CODMn": (2, 4, 6, 10, 15),
    "COD": (15, 15, 20, 30, 40),
    "BOD5": (3, 3, 4, 6, 10),
    "NH3-N": (0.15, 0.5, 1.0, 1.5, 2.0),
    "Cu": (0.01, 1.0, 1.0, 1.0, 1.0),
    "Zn": (0.05, 1.0, 1.0, 2.0, 2.0),
    "F": (1.0, 1.0, 1.0, 1.5, 1.5),
    "Se": (0.01, 0.01, 0.01, 0.02, 0.02),
    "As": (0.05, 0.05, 0.05, 0.1, 0.1),
    "Hg": (0.00005, 0.00005, 0.0001, 0.001, 0.001),
    "Cd": (0.001, 0.005, 0.005, 0.005, 0.01),
    "Cr6": (0.01, 0.05, 0.05, 0.05, 0.1),
    "Pb": (0.01, 0.01, 0.05, 0.05, 0.1),
    "CN": (0.005, 0.05, 0.2, 0.2, 0.2),
    "phenol": (0.002, 0.002, 0.005, 0.01, 0.1),
    "petroleum": (0.05, 0.05, 0.05, 0.5, 1.0),
    "LAS": (0.2, 0.2, 0.2, 0.3, 0.3),
    "sulfide": (0.05, 0.1, 0.2, 0.5, 1.0),
    "fecal_coliform": (200, 2000, 10000, 20000, 40000),
}
# Item 8, total phosphorus: rivers, and lakes and reservoirs.
TP_RIVER = (0.02, 0.1, 0.2, 0.3, 0.4)
TP_LAKE = (0.01, 0.025, 0.05, 0.1, 0.2)
# Item 9, total nitrogen (lakes and reservoirs).
TN_LAKE = (0.2, 0.5, 1.0, 1.5, 2.0)
# Item 3, dissolved oxygen, "≥".
DO_LIMITS = (7.5, 6, 5, 3, 2)

# (item, waterbody, limits) for every "≤" row.
UPPER_ROWS = (
    [(item, "river", limits) for item, limits in UPPER_LIMITS.items()]
    + [("TP", "river", TP_RIVER), ("TP", "lake", TP_LAKE), ("TP", "reservoir", TP_LAKE)]
    + [("TN", "lake", TN_LAKE), ("TN", "reservoir", TN_LAKE)]
)


def _expected_at(limits, value):
    """§2: the best class whose limit is ≥ the value (equal limits → better class), else 劣Ⅴ."""
    for klass, limit in enumerate(limits, start=1):
        if value <= limit:
            return klass
    return 6


def _upper_cases():
    for item, waterbody, limits in UPPER_ROWS:
        for klass, limit in enumerate(limits, start=1):
            first_class_with_this_limit = limits.index(limit) + 1
            next_worse = next((k for k, lim in enumerate(limits, start=1) if lim > limit), 6)
            just_below = (math.nextafter(limit, 0), limit * 0.999)
            just_above = (math.nextafter(limit, math.inf), limit * 1.001)
            ident = f"{item}-{waterbody}-{klass}"
            yield pytest.param(item, waterbody, limit, first_class_with_this_limit, id=f"{ident}-at")
            for i, v in enumerate(just_below):
                yield pytest.param(item, waterbody, v, first_class_with_this_limit, id=f"{ident}-below{i}")
            for i, v in enumerate(just_above):
                yield pytest.param(item, waterbody, v, next_worse, id=f"{ident}-above{i}")


@pytest.mark.parametrize(("item", "waterbody", "value", "expected"), list(_upper_cases()))
def test_upper_bound_item_at_just_below_and_just_above_every_class_limit(item, waterbody, value, expected):
    assert item_class(item, value, waterbody) == expected


def test_the_expected_classes_of_the_boundary_cases_read_as_section_2():
    # Spot checks written out, so the helper above is itself checked against the standard's words.
    assert _expected_at((15, 15, 20, 30, 40), 15) == 1
    assert _expected_at((15, 15, 20, 30, 40), 15.01) == 3
    assert _expected_at((15, 15, 20, 30, 40), 40.01) == 6


@pytest.mark.parametrize(
    ("item", "value", "expected"),
    [
        ("COD", 15, 1),  # I and II share 15 → the better class, I
        ("COD", 15.1, 3),
        ("BOD5", 3, 1),
        ("Cu", 1.0, 2),  # II … V share 1.0 → II
        ("Cu", 1.01, 6),
        ("F", 1.0, 1),
        ("F", 1.5, 4),
        ("Se", 0.01, 1),
        ("Se", 0.02, 4),
        ("CN", 0.2, 3),
        ("CN", 0.21, 6),
        ("petroleum", 0.05, 1),
        ("LAS", 0.3, 4),
        ("Hg", 0.00005, 1),
        ("Hg", 0.001, 4),
        ("Cd", 0.005, 2),
        ("Pb", 0.05, 3),
        ("Zn", 2.0, 4),
    ],
)
def test_equal_limits_give_the_better_class(item, value, expected):
    assert item_class(item, value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, 2),  # river class II limit
        (0.05, 2),
        (0.2, 3),
        (0.4, 5),
        (0.41, 6),
    ],
)
def test_tp_river_limits(value, expected):
    assert item_class("TP", value, "river") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.01, 1),
        (0.02, 2),
        (0.05, 3),
        (0.1, 4),  # the same 0.1 is class II in a river
        (0.2, 5),  # and class III in a river
        (0.21, 6),
    ],
)
@pytest.mark.parametrize("waterbody", ["lake", "reservoir"])
def test_tp_lake_and_reservoir_limits_are_stricter_than_river(waterbody, value, expected):
    assert item_class("TP", value, waterbody) == expected


def _do_cases():
    for klass, limit in enumerate(DO_LIMITS, start=1):
        ident = f"DO-{klass}"
        yield pytest.param(limit, klass, id=f"{ident}-at")
        yield pytest.param(math.nextafter(limit, math.inf), klass, id=f"{ident}-above-ulp")
        yield pytest.param(limit * 1.001, klass if klass > 1 else 1, id=f"{ident}-above")
        yield pytest.param(math.nextafter(limit, 0), klass + 1, id=f"{ident}-below-ulp")
        yield pytest.param(limit * 0.999, klass + 1, id=f"{ident}-below")


@pytest.mark.parametrize(("value", "expected"), list(_do_cases()))
def test_dissolved_oxygen_is_a_lower_bound(value, expected):
    assert item_class("DO", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7.5, 1), (9.0, 1), (7.49, 2), (6, 2), (5.99, 3), (5, 3), (4.99, 4), (3, 4), (2.99, 5), (2, 5), (1.99, 6), (0, 6)],
)
def test_dissolved_oxygen_bounds_written_out(value, expected):
    assert item_class("DO", value, "lake") == expected


@pytest.mark.parametrize(("value", "expected"), [(5.99, 6), (6, 1), (7.0, 1), (9, 1), (9.01, 6), (0, 6), (14, 6)])
def test_ph_inside_6_to_9_is_class_i_outside_is_worse_than_v(value, expected):
    assert item_class("pH", value) == expected


@pytest.mark.parametrize("waterbody", ["river", "lake", "reservoir"])
def test_ph_range_is_the_same_for_every_waterbody(waterbody):
    assert item_class("pH", 6, waterbody) == 1
    assert item_class("pH", 9.01, waterbody) == 6


def test_water_temperature_has_no_class():
    with pytest.raises(ValueError, match="water temperature has no GB 3838 class"):
        item_class("temperature", 20.0)
    with pytest.raises(ValueError, match="no GB 3838 class"):
        item_class("w01010", 20.0)


def test_total_nitrogen_is_not_classed_for_a_river():
    with pytest.raises(ValueError, match="lakes and reservoirs"):
        item_class("TN", 1.0, "river")
    assert item_class("TN", 1.0, "lake") == 3


@pytest.mark.parametrize(
    ("code", "value", "expected"),
    [
        ("w01001", 7.0, 1),  # pH
        ("w01009", 4.0, 4),  # DO
        ("w01019", 6.0, 3),  # CODMn
        ("w01018", 15.0, 1),  # COD
        ("w01017", 4.0, 3),  # BOD5
        ("w21003", 1.8, 5),  # NH3-N
        ("w21011", 0.2, 3),  # TP (river)
        ("w20122", 1.0, 2),  # Cu
        ("w20138", 1.0, 2),  # Cu, plain-element code
        ("w20123", 2.0, 4),  # Zn
        ("w21017", 1.5, 4),  # F
        ("w20128", 0.02, 4),  # Se
        ("w20119", 0.1, 4),  # As
        ("w20111", 0.0001, 3),  # Hg
        ("w20115", 0.01, 5),  # Cd
        ("w20117", 0.1, 5),  # Cr(VI)
        ("w20120", 0.1, 5),  # Pb
        ("w21016", 0.005, 1),  # CN
        ("w23002", 0.1, 5),  # volatile phenol
        ("w22001", 0.5, 4),  # petroleum
        ("w19002", 0.3, 4),  # LAS
        ("w21019", 1.0, 5),  # sulfide
        ("w02003", 40000, 5),  # fecal coliform
    ],
)
def test_items_can_be_named_by_hj212_code(code, value, expected):
    assert item_class(code, value) == expected


def test_tn_by_hj212_code_in_a_lake():
    assert item_class("w21001", 2.0, "lake") == 5


@pytest.mark.parametrize(
    ("item", "value_ugL", "expected"),
    [
        ("Hg", 0.05, 1),
        ("Hg", 0.1, 3),  # 0.0001 mg/L
        ("Hg", 0.11, 4),
        ("Hg", 1, 4),
        ("Hg", 1.01, 6),
        ("Cd", 1, 1),
        ("Cd", 5, 2),
        ("Cd", 10, 5),
        ("Pb", 10, 1),
        ("Pb", 50, 3),
        ("Pb", 100, 5),
        ("As", 50, 1),
        ("As", 100, 4),
        ("Cr6", 50, 2),
        ("Se", 10, 1),
        ("Se", 20, 4),
        ("w20111", 0.1, 3),  # HJ 212 sends Hg in µg/L
        ("w20120", 50.1, 5),
    ],
)
def test_microgram_values_are_converted_before_comparing(item, value_ugL, expected):
    assert item_class(item, value_ugL, unit="ug/L") == expected
    assert item_class(item, value_ugL, unit="µg/L") == expected


def test_fecal_coliform_is_a_count_per_litre():
    assert item_class("fecal_coliform", 10000, unit="count/L") == 3
    with pytest.raises(ValueError, match="count/L"):
        item_class("fecal_coliform", 10000, unit="ug/L")


@pytest.mark.parametrize(
    ("item", "value", "kwargs", "message"),
    [
        ("turbidity", 1.0, {}, "unknown GB 3838 item"),
        ("w99999", 1.0, {}, "unknown GB 3838 item"),
        ("COD", -1.0, {}, "negative"),
        ("pH", -0.1, {}, "negative"),
        ("COD", float("nan"), {}, "NaN"),
        ("COD", float("inf"), {}, "infinite"),
        ("COD", "15", {}, "not a number"),
        ("COD", 15, {"waterbody": "sea"}, "unknown waterbody"),
        ("COD", 15, {"unit": "g/L"}, "unit"),
        ("pH", 7, {"unit": "ug/L"}, "unit"),
    ],
)
def test_bad_input_raises_one_clear_line(item, value, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        item_class(item, value, **kwargs)
    assert "\n" not in str(info.value)


def test_table1_has_its_24_items_and_the_2011_method_assesses_21():
    assert len(GB3838_2002_TABLE1) == 24
    assert len(ASSESSMENT_2011_ITEMS) == 21
    assert {"temperature", "TN", "fecal_coliform"}.isdisjoint(ASSESSMENT_2011_ITEMS)


# --- section class -------------------------------------------------------------------------------


def test_section_class_is_the_worst_assessed_item():
    result = section_class({"pH": 7.2, "DO": 6.5, "CODMn": 5, "NH3-N": 0.4, "TP": 0.15})
    assert isinstance(result, SectionClass)
    assert result.klass == 3
    assert result.worst_items == ("CODMn", "TP")
    assert result.item_classes == {"pH": 1, "DO": 2, "CODMn": 3, "NH3-N": 2, "TP": 3}
    assert result.exceedance == {}
    assert result.main_pollutants == ()
    assert result.quality_status == "良好"


def test_exceedance_multiple_is_against_class_iii_nh3n_example():
    result = section_class({"NH3-N": 1.8})
    assert result.klass == 5
    assert result.exceedance == {"NH3-N": 0.8}  # (1.8 − 1.0) / 1.0


def test_exceedance_multiple_uses_the_lake_tp_limit_for_a_lake():
    assert section_class({"TP": 0.1}, "lake").exceedance == {"TP": 1.0}  # (0.1 − 0.05) / 0.05
    assert section_class({"TP": 0.5}, "river").exceedance == {"TP": 1.5}  # (0.5 − 0.2) / 0.2
    assert section_class({"TP": 0.1}, "river").exceedance == {}  # class II in a river


def test_no_exceedance_multiple_for_ph_or_do_even_when_worse_than_v():
    result = section_class({"pH": 9.5, "DO": 1.0, "COD": 25})
    assert result.klass == 6
    assert result.worst_items == ("pH", "DO")
    assert result.exceedance == {"COD": 0.25}


def test_exceedance_only_for_items_worse_than_class_iii():
    result = section_class({"COD": 20, "BOD5": 4.5})
    assert result.item_classes == {"COD": 3, "BOD5": 4}
    assert result.exceedance == {"BOD5": 0.125}


def test_river_ignores_tn_fecal_coliform_and_temperature_but_reports_them():
    result = section_class({"NH3-N": 0.4, "TN": 5.0, "fecal_coliform": 50000, "w01010": 18.0})
    assert result.klass == 2
    assert result.item_classes == {"NH3-N": 2}
    assert result.reference_items == {"TN": None, "fecal_coliform": 6, "temperature": None}


def test_lake_reports_tn_as_a_reference_with_its_class():
    result = section_class({"TP": 0.03, "TN": 1.2}, "lake")
    assert result.klass == 3
    assert result.reference_items == {"TN": 4}


def test_explicit_items_can_bring_tn_into_a_lake_class():
    result = section_class({"TP": 0.03, "TN": 1.2}, "lake", items=["TP", "TN"])
    assert result.klass == 4
    assert result.worst_items == ("TN",)
    assert result.reference_items == {}


def test_explicit_items_must_have_values_and_be_classable():
    with pytest.raises(ValueError, match="no value"):
        section_class({"TP": 0.03}, "lake", items=["TP", "TN"])
    with pytest.raises(ValueError, match="lakes and reservoirs"):
        section_class({"TN": 1.0, "TP": 0.1}, "river", items=["TN", "TP"])


def test_section_values_may_be_keyed_by_hj212_code_and_carry_units():
    result = section_class({"w21003": 1.8, "w20111": 0.5}, units={"w20111": "ug/L"})
    assert result.item_classes == {"NH3-N": 5, "Hg": 4}
    assert result.exceedance == {"NH3-N": 0.8, "Hg": 4.0}  # 0.5 µg/L against 0.1 µg/L


def test_main_pollutants_worst_class_first():
    result = section_class({"TP": 0.5, "NH3-N": 1.8, "CODMn": 8, "BOD5": 5, "DO": 6})
    # TP 劣Ⅴ; NH3-N Ⅴ; CODMn Ⅳ (0.33) before BOD5 Ⅳ (0.25).
    assert result.main_pollutants == ("TP", "NH3-N", "CODMn")
    assert result.main_pollutants_label() == "总磷(1.5)、氨氮(0.8)、高锰酸盐指数(0.33)"


def test_main_pollutants_ties_broken_by_exceedance_multiple():
    result = section_class({"NH3-N": 2.5, "TP": 0.9, "CODMn": 20, "COD": 45})
    # all 劣Ⅴ: TP 3.5, CODMn 2.33, NH3-N 1.5, COD 1.25
    assert result.main_pollutants == ("TP", "CODMn", "NH3-N")


def test_cyanide_or_heavy_metal_above_class_iii_takes_priority():
    # Pb is only class Ⅴ (0.2) against three 劣Ⅴ items, yet it comes first.
    result = section_class({"TP": 0.5, "NH3-N": 2.2, "CODMn": 20, "Pb": 0.06})
    assert result.item_classes["Pb"] == 5
    assert result.main_pollutants == ("Pb", "CODMn", "TP")  # then 2.33 > 1.5 > 1.2 (NH3-N)
    result = section_class({"TP": 0.5, "CODMn": 20, "CN": 0.21, "Cd": 0.006})
    assert result.main_pollutants == ("CN", "Cd", "CODMn")


def test_main_pollutants_only_above_class_iii_and_at_most_three():
    assert section_class({"COD": 20, "TP": 0.2}).main_pollutants == ()
    assert section_class({"COD": 25, "TP": 0.2}).main_pollutants == ("COD",)
    assert section_class({"DO": 2.5, "COD": 25}).main_pollutants == ("DO", "COD")


@pytest.mark.parametrize(
    ("values", "klass", "status"),
    [
        ({"COD": 15}, 1, "优"),
        ({"COD": 14, "NH3-N": 0.3}, 2, "优"),
        ({"COD": 20}, 3, "良好"),
        ({"COD": 30}, 4, "轻度污染"),
        ({"COD": 40}, 5, "中度污染"),
        ({"COD": 40.5}, 6, "重度污染"),
    ],
)
def test_quality_status_follows_the_class(values, klass, status):
    result = section_class(values)
    assert (result.klass, result.quality_status) == (klass, status)


def test_meets_target_class():
    result = section_class({"COD": 20})  # class III
    assert result.meets(3)
    assert result.meets(4)
    assert not result.meets(2)
    assert not section_class({"pH": 9.5}).meets(5)
    with pytest.raises(ValueError, match="target class"):
        result.meets(6)
    with pytest.raises(ValueError, match="target class"):
        result.meets("III")


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ({}, {}, "non-empty"),
        ({"temperature": 20.0}, {}, "no assessed item"),
        ({"TN": 1.0}, {}, "no assessed item"),
        ({"COD": 15, "w01018": 15}, {}, "given twice"),
        ({"COD": -1}, {}, "negative"),
        ({"COD": float("nan")}, {}, "NaN"),
        ({"COD": 15}, {"waterbody": "canal"}, "unknown waterbody"),
        ({"chlorophyll": 1.0}, {}, "unknown GB 3838 item"),
        ({"COD": 15}, {"units": {"NH3-N": "mg/L"}}, "units given"),
    ],
)
def test_section_class_bad_input(values, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        section_class(values, **kwargs)
    assert "\n" not in str(info.value)


# --- vectorised helpers agree with the scalar definition ----------------------------------------

_ARRAY_ITEMS = [name for name in GB3838_2002_TABLE1 if name not in ("temperature", "TN")]


def _near_limits(item, waterbody):
    row = GB3838_2002_TABLE1[item]
    limits = row.lake_limits if (waterbody != "river" and row.lake_limits) else row.limits
    return [v for lim in limits for v in (lim, math.nextafter(lim, 0), math.nextafter(lim, math.inf), lim * 1.5)]


@pytest.mark.parametrize("waterbody", ["river", "lake"])
@pytest.mark.parametrize("item", _ARRAY_ITEMS)
def test_item_class_array_agrees_with_item_class(item, waterbody):
    rng = np.random.default_rng(7)
    top = max(GB3838_2002_TABLE1[item].limits) * 2
    values = np.concatenate([np.array(_near_limits(item, waterbody)), rng.uniform(0, top, 500), [0.0]])
    got = item_class_array(item, values, waterbody)
    assert got.tolist() == [item_class(item, float(v), waterbody) for v in values]


@pytest.mark.parametrize("unit", ["mg/L", "ug/L"])
def test_item_class_array_converts_units_like_item_class(unit):
    values = np.array([0.05, 0.1, 0.11, 1.0, 1.01, 0.0001, 0.00011])
    got = item_class_array("Hg", values, unit=unit)
    assert got.tolist() == [item_class("Hg", float(v), unit=unit) for v in values]


def test_item_class_array_gives_0_for_nan_and_keeps_the_shape():
    got = item_class_array("NH3-N", np.array([[0.1, np.nan], [1.8, 2.1]]))
    assert got.tolist() == [[1, 0], [5, 6]]
    assert got.dtype == np.int8


def test_item_class_array_rejects_negative_values_and_temperature():
    with pytest.raises(ValueError, match="negative"):
        item_class_array("COD", np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="no GB 3838 class"):
        item_class_array("temperature", np.array([20.0]))


@settings(max_examples=200, deadline=None)
@given(
    ph=st.floats(0, 14),
    do=st.floats(0, 12),
    codmn=st.floats(0, 20),
    nh3n=st.floats(0, 3),
    tp=st.floats(0, 0.6),
    tn=st.floats(0, 3),
    waterbody=st.sampled_from(["river", "lake", "reservoir"]),
)
def test_section_class_array_agrees_with_section_class(ph, do, codmn, nh3n, tp, tn, waterbody):
    values = {"pH": ph, "DO": do, "CODMn": codmn, "NH3-N": nh3n, "TP": tp, "TN": tn}
    arrays = {k: np.array([v]) for k, v in values.items()}
    assert section_class_array(arrays, waterbody).tolist() == [section_class(values, waterbody).klass]


def test_section_class_array_skips_missing_items_per_slot():
    arrays = {"NH3-N": np.array([1.8, np.nan, np.nan]), "TP": np.array([0.1, 0.5, np.nan])}
    assert section_class_array(arrays).tolist() == [5, 6, 0]


def test_section_class_array_needs_equal_shapes():
    with pytest.raises(ValueError, match="equally shaped"):
        section_class_array({"COD": np.zeros(3), "TP": np.zeros(4)})
