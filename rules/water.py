"""Surface-water class: GB 3838-2002 Table 1 and the 环办〔2011〕22号 assessment method.

Source: ``reference/water-gb3838.md`` (§1 the table, §2 per-item and section class, §3 the 2011
method). Concentrations are mg/L unless a ``unit`` says otherwise; pH is dimensionless; fecal
coliform is a count per litre.

Reading rules, each stated once here:
- "≤" items: the class is the best class whose limit is ≥ the value; where several classes share
  a limit the value takes the **better** one (COD 15 → I; "从优不从劣", §2).
- DO is a lower bound (class I: ≥ 7.5 mg/L, the usual reading of "saturation 90 % or 7.5").
- pH inside 6–9 does not affect the class (class I); outside → 劣Ⅴ (class 6).
- Water temperature has no class (its limit is a man-made weekly change); asking for one raises.
- TN's row is labelled "lakes and reservoirs": rivers are not classed on TN, so ``item_class`` raises
  for TN on a river.
- A section's class is its worst assessed item (single-factor method). By default the assessed
  items are the 2011 method's 21: Table 1 minus water temperature, TN and fecal coliform. Those three
  are *reference indicators*: when present they are reported in ``reference_items``, never in the
  class.

Comparisons are made in the caller's unit: the table's mg/L limits are scaled to µg/L on their
decimal reading (0.0001 mg/L → 0.1 µg/L exactly), so a value equal to a printed limit is judged
equal to it whatever the unit.

Vectorised helpers (``item_class_array``, ``section_class_array``) serve hourly series, where gaps
are normal: NaN there means "no value" and gives class 0, never an error.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal

import numpy as np

from rules.rounding import round_gbt8170

Direction = Literal["upper", "lower", "range", "change"]

CLASS_NAMES: Final[dict[int, str]] = {1: "Ⅰ", 2: "Ⅱ", 3: "Ⅲ", 4: "Ⅳ", 5: "Ⅴ", 6: "劣Ⅴ"}
WORSE_THAN_V: Final[int] = 6  # 劣Ⅴ类, coded as class 6
NO_CLASS: Final[int] = 0  # array helpers only: no value (NaN) in that slot

WATERBODIES: Final[tuple[str, ...]] = ("river", "lake", "reservoir")


@dataclass(frozen=True)
class Gb3838Item:
    """One row of GB 3838-2002 Table 1.

    ``limits`` holds the class I…V limits for "upper" (≤) and "lower" (≥) items, ``(low, high)`` for
    the pH range, and is ``None`` for water temperature. ``lake_limits`` replaces ``limits`` for
    lakes and reservoirs (TP). ``lake_only`` marks a row labelled "lakes and reservoirs" (TN).
    """

    number: int
    name: str
    name_zh: str
    direction: Direction
    limits: tuple[float, ...] | None
    unit: str
    codes: tuple[str, ...]
    lake_limits: tuple[float, ...] | None = None
    lake_only: bool = False


# GB 3838-2002 Table 1 (地表水环境质量标准基本项目标准限值), reference/water-gb3838.md §1.
# Limits for classes I, II, III, IV, V; mg/L unless the unit says otherwise.
# Codes: HJ 212-2017 Table B.1 (first the code the reference lists in the table, then the
# plain-element codes of the note under it).
GB3838_2002_TABLE1: Final[Mapping[str, Gb3838Item]] = MappingProxyType(
    {
        row.name: row
        for row in (
            # Item 1: man-made change only (weekly mean max rise ≤ 1 °C, drop ≤ 2 °C); no class.
            Gb3838Item(1, "temperature", "水温", "change", None, "°C", ("w01010",)),
            # Item 2: 6–9 for every class.
            Gb3838Item(2, "pH", "pH", "range", (6.0, 9.0), "", ("w01001",)),
            # Item 3: ≥; class I "saturation 90 % (or 7.5)", implemented as 7.5 mg/L (§1 note).
            Gb3838Item(3, "DO", "溶解氧", "lower", (7.5, 6.0, 5.0, 3.0, 2.0), "mg/L", ("w01009",)),
            Gb3838Item(4, "CODMn", "高锰酸盐指数", "upper", (2.0, 4.0, 6.0, 10.0, 15.0), "mg/L", ("w01019",)),
            Gb3838Item(5, "COD", "化学需氧量", "upper", (15.0, 15.0, 20.0, 30.0, 40.0), "mg/L", ("w01018",)),
            Gb3838Item(6, "BOD5", "五日生化需氧量", "upper", (3.0, 3.0, 4.0, 6.0, 10.0), "mg/L", ("w01017",)),
            Gb3838Item(7, "NH3-N", "氨氮", "upper", (0.15, 0.5, 1.0, 1.5, 2.0), "mg/L", ("w21003",)),
            # Item 8: rivers, and in brackets lakes and reservoirs (湖、库).
            Gb3838Item(
                8, "TP", "总磷", "upper", (0.02, 0.1, 0.2, 0.3, 0.4), "mg/L", ("w21011",),
                lake_limits=(0.01, 0.025, 0.05, 0.1, 0.2),
            ),
            # Item 9: "总氮（湖、库，以N计）" — lakes and reservoirs only.
            Gb3838Item(9, "TN", "总氮", "upper", (0.2, 0.5, 1.0, 1.5, 2.0), "mg/L", ("w21001",), lake_only=True),
            Gb3838Item(10, "Cu", "铜", "upper", (0.01, 1.0, 1.0, 1.0, 1.0), "mg/L", ("w20122", "w20138")),
            Gb3838Item(11, "Zn", "锌", "upper", (0.05, 1.0, 1.0, 2.0, 2.0), "mg/L", ("w20123", "w20139")),
            Gb3838Item(12, "F", "氟化物", "upper", (1.0, 1.0, 1.0, 1.5, 1.5), "mg/L", ("w21017",)),
            Gb3838Item(13, "Se", "硒", "upper", (0.01, 0.01, 0.01, 0.02, 0.02), "mg/L", ("w20128", "w20140")),
            Gb3838Item(14, "As", "砷", "upper", (0.05, 0.05, 0.05, 0.1, 0.1), "mg/L", ("w20119", "w20141")),
            Gb3838Item(15, "Hg", "汞", "upper", (0.00005, 0.00005, 0.0001, 0.001, 0.001), "mg/L", ("w20111", "w20142")),
            Gb3838Item(16, "Cd", "镉", "upper", (0.001, 0.005, 0.005, 0.005, 0.01), "mg/L", ("w20115", "w20143")),
            Gb3838Item(17, "Cr6", "铬(六价)", "upper", (0.01, 0.05, 0.05, 0.05, 0.1), "mg/L", ("w20117",)),
            Gb3838Item(18, "Pb", "铅", "upper", (0.01, 0.01, 0.05, 0.05, 0.1), "mg/L", ("w20120", "w20144")),
            Gb3838Item(19, "CN", "氰化物", "upper", (0.005, 0.05, 0.2, 0.2, 0.2), "mg/L", ("w21016",)),
            Gb3838Item(20, "phenol", "挥发酚", "upper", (0.002, 0.002, 0.005, 0.01, 0.1), "mg/L", ("w23002",)),
            Gb3838Item(21, "petroleum", "石油类", "upper", (0.05, 0.05, 0.05, 0.5, 1.0), "mg/L", ("w22001",)),
            Gb3838Item(22, "LAS", "阴离子表面活性剂", "upper", (0.2, 0.2, 0.2, 0.3, 0.3), "mg/L", ("w19002",)),
            Gb3838Item(23, "sulfide", "硫化物", "upper", (0.05, 0.1, 0.2, 0.5, 1.0), "mg/L", ("w21019",)),
            Gb3838Item(
                24, "fecal_coliform", "粪大肠菌群", "upper", (200.0, 2000.0, 10000.0, 20000.0, 40000.0),
                "count/L", ("w02003",),
            ),
        )
    }
)

# HJ 212-2017 Table B.1 default concentration units of the water codes above (water-gb3838.md §1
# note; hj212.md §8.1). ``item_class`` does NOT apply them: the unit is configured per device and
# passed as ``unit=``; this table is for whoever maps a device's codes.
HJ212_WATER_DEFAULT_UNITS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "w01001": "",
        "w01009": "mg/L",
        "w01010": "°C",
        "w01017": "mg/L",
        "w01018": "mg/L",
        "w01019": "mg/L",
        "w02003": "count/L",
        "w19002": "mg/L",
        "w20111": "ug/L",
        "w20115": "ug/L",
        "w20117": "ug/L",
        "w20119": "ug/L",
        "w20120": "ug/L",
        "w20122": "mg/L",
        "w20123": "mg/L",
        "w20128": "ug/L",
        "w20138": "mg/L",
        "w20139": "mg/L",
        "w20140": "mg/L",
        "w20141": "mg/L",
        "w20142": "ug/L",
        "w20143": "ug/L",
        "w20144": "mg/L",
        "w21001": "mg/L",
        "w21003": "mg/L",
        "w21011": "mg/L",
        "w21016": "mg/L",
        "w21017": "mg/L",
        "w21019": "mg/L",
        "w22001": "mg/L",
        "w23002": "mg/L",
    }
)

# 环办〔2011〕22号 §3: routine assessment uses Table 1 minus these three reference indicators.
ASSESSMENT_2011_REFERENCE_ITEMS: Final[tuple[str, ...]] = ("temperature", "TN", "fecal_coliform")
ASSESSMENT_2011_ITEMS: Final[tuple[str, ...]] = tuple(
    name for name in GB3838_2002_TABLE1 if name not in ASSESSMENT_2011_REFERENCE_ITEMS
)

# 环办〔2011〕22号 Table 1: section class → quality status and colour.
ASSESSMENT_2011_STATUS: Final[Mapping[int, tuple[str, str]]] = MappingProxyType(
    {
        1: ("优", "blue"),
        2: ("优", "blue"),
        3: ("良好", "green"),
        4: ("轻度污染", "yellow"),
        5: ("中度污染", "orange"),
        6: ("重度污染", "red"),
    }
)

# 环办〔2011〕22号, main pollution indicators: only above class III; at most three; "当氰化物或铅、
# 铬等重金属超标时，优先作为主要污染指标". ecopark's reading of "heavy metals" in Table 1: Cu, Zn, Hg,
# Cd, Cr(VI), Pb, plus As (one of the five key heavy metals of national policy); Se is not a metal.
MAIN_POLLUTANT_THRESHOLD_CLASS: Final[int] = 3
MAIN_POLLUTANT_COUNT: Final[int] = 3
MAIN_POLLUTANT_PRIORITY_ITEMS: Final[frozenset[str]] = frozenset({"CN", "Cu", "Zn", "As", "Hg", "Cd", "Cr6", "Pb"})

# The exceedance multiple is taken against the class III limit, never for temperature, pH or DO.
EXCEEDANCE_REFERENCE_CLASS: Final[int] = 3


@dataclass(frozen=True)
class SectionClass:
    """The class of one section (single-factor method) and what the 2011 method reports with it.

    ``item_classes`` holds the assessed items only; ``reference_items`` the reference indicators
    present in the input (TN / fecal coliform with their class where one exists, ``None`` for water
    temperature and for TN on a river). Item names are ecopark's names, also when the input was
    keyed by HJ 212 codes.
    """

    klass: int
    waterbody: str
    item_classes: dict[str, int]
    worst_items: tuple[str, ...]
    exceedance: dict[str, float]
    main_pollutants: tuple[str, ...]
    quality_status: str
    reference_items: dict[str, int | None] = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        """Ⅰ…Ⅴ or 劣Ⅴ."""
        return CLASS_NAMES[self.klass]

    @property
    def colour(self) -> str:
        """The 2011 method's colour for the status (blue, green, yellow, orange, red)."""
        return ASSESSMENT_2011_STATUS[self.klass][1]

    def meets(self, target_class: int) -> bool:
        """Whether the section meets (符合) the target class 1…5, i.e. is that class or better."""
        if isinstance(target_class, bool) or not isinstance(target_class, (int, np.integer)) or not 1 <= target_class <= 5:
            raise ValueError(f"target class {target_class!r} is not a GB 3838 class: expected an int 1…5")
        return self.klass <= int(target_class)

    def main_pollutants_label(self) -> str:
        """The main pollutants as the 2011 method writes them: 氨氮(0.8)、总磷(1.5)."""
        parts = []
        for name in self.main_pollutants:
            zh = GB3838_2002_TABLE1[name].name_zh
            parts.append(f"{zh}({_format_multiple(self.exceedance[name])})" if name in self.exceedance else zh)
        return "、".join(parts)


def item_class(item: str, value: float, waterbody: str = "river", unit: str = "mg/L") -> int:
    """The GB 3838-2002 class (1…5, 6 for 劣Ⅴ) of one item's value.

    ``item`` is an ecopark name (``NH3-N``) or an HJ 212 code (``w21003``). ``value`` is in
    ``unit``: "mg/L" (default) or "ug/L"; pH is dimensionless and fecal coliform a count per litre
    (for those two, the default is taken as "the item's own unit"). ``waterbody`` is "river",
    "lake" or "reservoir" (TP limits differ; TN is classed only for lakes and reservoirs).
    """
    row = _row(item)
    kind = _waterbody_kind(waterbody)
    _require_classable(row, kind)
    scale_unit = _unit(row, unit)
    x = _scalar(row, value)
    limits = _LIMITS[(row.name, kind, scale_unit)]
    return _classify(row.direction, limits, x)


def section_class(
    values: Mapping[str, float],
    waterbody: str = "river",
    items: Iterable[str] | None = None,
    *,
    units: Mapping[str, str] | None = None,
) -> SectionClass:
    """Classify a section from one value per item (already averaged: classify means, not classes).

    ``values`` maps item names or HJ 212 codes to values (mg/L unless ``units`` names another unit
    for that key). ``items`` chooses the assessed items; by default the 2011 method's 21 items that
    are present. Present keys outside the assessed set are reported in ``reference_items``.
    """
    kind = _waterbody_kind(waterbody)
    if not isinstance(values, Mapping) or not values:
        raise ValueError("section_class needs a non-empty mapping of item → value")
    units = dict(units or {})
    by_name: dict[str, tuple[float, str]] = {}
    for key, value in values.items():
        row = _row(key)
        if row.name in by_name:
            raise ValueError(f"item {row.name} given twice (key {key!r} names it again)")
        scale_unit = _unit(row, units.pop(key, "mg/L"))
        by_name[row.name] = (_scalar(row, value), scale_unit)
    if units:
        raise ValueError(f"units given for items without a value: {sorted(units)}")

    assessed = _assessed_items(by_name, kind, items)
    item_classes: dict[str, int] = {}
    exceedance: dict[str, float] = {}
    for name in assessed:
        row = GB3838_2002_TABLE1[name]
        x, scale_unit = by_name[name]
        limits = _LIMITS[(name, kind, scale_unit)]
        klass = _classify(row.direction, limits, x)
        item_classes[name] = klass
        if klass > EXCEEDANCE_REFERENCE_CLASS and row.direction == "upper":
            exceedance[name] = _multiple(x, limits[EXCEEDANCE_REFERENCE_CLASS - 1])

    reference: dict[str, int | None] = {}
    for name, (x, scale_unit) in by_name.items():
        if name in item_classes:
            continue
        row = GB3838_2002_TABLE1[name]
        if row.direction == "change" or (row.lake_only and kind == "river"):
            reference[name] = None
        else:
            reference[name] = _classify(row.direction, _LIMITS[(name, kind, scale_unit)], x)

    klass = max(item_classes.values())
    worst = tuple(name for name, c in item_classes.items() if c == klass)
    return SectionClass(
        klass=klass,
        waterbody=waterbody,
        item_classes=item_classes,
        worst_items=worst,
        exceedance=exceedance,
        main_pollutants=_main_pollutants(klass, item_classes, exceedance),
        quality_status=ASSESSMENT_2011_STATUS[klass][0],
        reference_items=reference,
    )


def item_class_array(item: str, values: np.ndarray, waterbody: str = "river", unit: str = "mg/L") -> np.ndarray:
    """``item_class`` over an array (any shape) → int8 array of classes; NaN (no value) → 0."""
    row = _row(item)
    kind = _waterbody_kind(waterbody)
    _require_classable(row, kind)
    scale_unit = _unit(row, unit)
    x = np.asarray(values, dtype=np.float64)
    if np.isinf(x).any():
        raise ValueError(f"{row.name}: infinite value in the array")
    if (x < 0).any():  # NaN compares False: gaps pass
        raise ValueError(f"{row.name}: negative value in the array ({float(np.nanmin(x))})")
    limits = _LIMITS[(row.name, kind, scale_unit)]
    if row.direction == "range":
        low, high = limits
        out = np.where((x >= low) & (x <= high), 1, WORSE_THAN_V).astype(np.int8)
    else:
        # Class = 1 + the number of limits the value fails: "> L" for ≤ items, "< L" for DO. A value
        # equal to a shared limit fails none of them, so equal limits give the better class. Summing
        # comparisons is ~4× faster than np.searchsorted here (bench.water_bench).
        fails = np.greater if row.direction == "upper" else np.less
        out = np.ones(x.shape, dtype=np.int8)
        for limit in limits:
            out += fails(x, limit).view(np.int8)
    out[np.isnan(x)] = NO_CLASS
    return out


def section_class_array(
    values: Mapping[str, np.ndarray],
    waterbody: str = "river",
    items: Iterable[str] | None = None,
    *,
    units: Mapping[str, str] | None = None,
) -> np.ndarray:
    """``section_class(...).klass`` element-wise over equally shaped arrays → int8 array.

    Same item selection as ``section_class`` (reference indicators ignored). A slot where every
    assessed item is NaN gets 0 (no class); otherwise the worst class among the items present.
    """
    kind = _waterbody_kind(waterbody)
    if not isinstance(values, Mapping) or not values:
        raise ValueError("section_class_array needs a non-empty mapping of item → array")
    units = dict(units or {})
    by_name: dict[str, tuple[np.ndarray, str]] = {}
    for key, array in values.items():
        row = _row(key)
        if row.name in by_name:
            raise ValueError(f"item {row.name} given twice (key {key!r} names it again)")
        by_name[row.name] = (np.asarray(array, dtype=np.float64), units.pop(key, "mg/L"))
    if units:
        raise ValueError(f"units given for items without a value: {sorted(units)}")
    shapes = {a.shape for a, _ in by_name.values()}
    if len(shapes) != 1:
        raise ValueError(f"section_class_array needs equally shaped arrays, got shapes {sorted(shapes)}")
    worst: np.ndarray | None = None
    for name in _assessed_items(by_name, kind, items):
        array, unit = by_name[name]
        classes = item_class_array(name, array, waterbody, unit)
        worst = classes if worst is None else np.maximum(worst, classes, out=worst)
    assert worst is not None  # _assessed_items never returns an empty tuple
    return worst


# --- helpers -------------------------------------------------------------------------------------

_BY_KEY: Final[Mapping[str, Gb3838Item]] = MappingProxyType(
    {
        **{row.name: row for row in GB3838_2002_TABLE1.values()},
        **{code: row for row in GB3838_2002_TABLE1.values() for code in row.codes},
    }
)

_UNIT_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {"mg/l": "mg/L", "ug/l": "ug/L", "µg/l": "ug/L", "μg/l": "ug/L"}
)
# Concentration in the unit = concentration in mg/L × factor.
_UNIT_FACTORS: Final[Mapping[str, int]] = MappingProxyType({"mg/L": 1, "ug/L": 1000})
# Items whose unit is not a mass concentration: the default "mg/L" means "the item's own unit".
_OWN_UNITS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {"pH": frozenset({"mg/l", "", "ph", "dimensionless"}), "fecal_coliform": frozenset({"mg/l", "count/l", "个/l"})}
)


def _scaled_limits(limits: tuple[float, ...], factor: int) -> tuple[float, ...]:
    # Scale on the decimal reading so that 0.0001 mg/L becomes exactly the double nearest 0.1 µg/L.
    return tuple(float(Decimal(repr(limit)) * factor) for limit in limits)


def _build_limits() -> dict[tuple[str, str, str], tuple[float, ...]]:
    table: dict[tuple[str, str, str], tuple[float, ...]] = {}
    for row in GB3838_2002_TABLE1.values():
        if row.limits is None:
            continue
        for kind in ("river", "lake"):
            limits = row.lake_limits if (kind == "lake" and row.lake_limits is not None) else row.limits
            if row.name in _OWN_UNITS:
                table[(row.name, kind, "own")] = limits
                continue
            for unit, factor in _UNIT_FACTORS.items():
                table[(row.name, kind, unit)] = _scaled_limits(limits, factor)
    return table


_LIMITS: Final[Mapping[tuple[str, str, str], tuple[float, ...]]] = MappingProxyType(_build_limits())


def _row(item: object) -> Gb3838Item:
    if not isinstance(item, str) or item not in _BY_KEY:
        raise ValueError(
            f"unknown GB 3838 item {item!r}: expected one of {', '.join(GB3838_2002_TABLE1)} or an HJ 212 water code"
        )
    return _BY_KEY[item]


def _waterbody_kind(waterbody: object) -> str:
    if waterbody == "river":
        return "river"
    if waterbody in ("lake", "reservoir"):
        return "lake"
    raise ValueError(f"unknown waterbody {waterbody!r}: expected 'river', 'lake' or 'reservoir'")


def _require_classable(row: Gb3838Item, kind: str) -> None:
    if row.direction == "change":
        raise ValueError(
            "water temperature has no GB 3838 class: Table 1 limits only its man-made weekly change"
        )
    if row.lake_only and kind == "river":
        raise ValueError(
            f"{row.name} is classed only for lakes and reservoirs (GB 3838-2002 Table 1 item {row.number}); "
            "rivers are not classed on it"
        )


def _unit(row: Gb3838Item, unit: object) -> str:
    if not isinstance(unit, str):
        raise ValueError(f"{row.name}: unit {unit!r} is not a string")
    folded = unit.strip().lower()
    if row.name in _OWN_UNITS:
        if folded in _OWN_UNITS[row.name]:
            return "own"
        own = "dimensionless" if row.name == "pH" else row.unit
        raise ValueError(f"{row.name}: unit {unit!r} not accepted; its unit is {own}")
    if row.direction == "change":
        return "own"  # temperature is refused later, by _require_classable, with the real reason
    canonical = _UNIT_ALIASES.get(folded)
    if canonical is None:
        raise ValueError(f"{row.name}: unit {unit!r} not accepted; expected 'mg/L' or 'ug/L'")
    return canonical


def _scalar(row: Gb3838Item, value: object) -> float:
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{row.name}: value {value!r} is not a number")
    x = float(value)
    if math.isnan(x):
        raise ValueError(f"{row.name}: value is NaN")
    if math.isinf(x):
        raise ValueError(f"{row.name}: value is infinite")
    if x < 0 and row.direction != "change":
        raise ValueError(f"{row.name}: negative value {x} is not a concentration{' or pH' if row.name == 'pH' else ''}")
    return x


def _classify(direction: str, limits: tuple[float, ...], x: float) -> int:
    if direction == "range":
        low, high = limits
        return 1 if low <= x <= high else WORSE_THAN_V
    if direction == "lower":
        for klass, minimum in enumerate(limits, start=1):
            if x >= minimum:
                return klass
        return WORSE_THAN_V
    # bisect_left: the first class whose limit is ≥ x, so equal limits give the better class.
    return bisect.bisect_left(limits, x) + 1


def _assessed_items(present: Mapping[str, object], kind: str, items: Iterable[str] | None) -> tuple[str, ...]:
    if items is None:
        assessed = tuple(name for name in ASSESSMENT_2011_ITEMS if name in present)
        if not assessed:
            raise ValueError(
                f"no assessed item among {sorted(present)}: water temperature, TN and fecal coliform are "
                "reference indicators only (环办〔2011〕22号)"
            )
        return assessed
    if isinstance(items, str):
        raise ValueError(f"items must be a collection of item names, not the string {items!r}")
    chosen: list[str] = []
    for item in items:
        row = _row(item)
        _require_classable(row, kind)
        if row.name not in present:
            raise ValueError(f"item {row.name} is to be assessed but has no value")
        if row.name not in chosen:
            chosen.append(row.name)
    if not chosen:
        raise ValueError("items is empty: nothing to assess")
    return tuple(chosen)


def _multiple(value: float, limit: float) -> float:
    # On the decimal readings, so NH3-N 1.8 against 1.0 gives exactly 0.8 (not 0.8000000000000003).
    c, s = Decimal(repr(value)), Decimal(repr(limit))
    return float((c - s) / s)


def _main_pollutants(klass: int, item_classes: Mapping[str, int], exceedance: Mapping[str, float]) -> tuple[str, ...]:
    if klass <= MAIN_POLLUTANT_THRESHOLD_CLASS:
        return ()
    candidates = [name for name, c in item_classes.items() if c > MAIN_POLLUTANT_THRESHOLD_CLASS]
    order = {name: i for i, name in enumerate(GB3838_2002_TABLE1)}
    candidates.sort(
        key=lambda name: (
            name not in MAIN_POLLUTANT_PRIORITY_ITEMS,  # cyanide and heavy metals first
            -item_classes[name],  # then the worst class
            -exceedance.get(name, -math.inf),  # ties: larger multiple; DO/pH (no multiple) last
            order[name],  # stable: Table 1 order
        )
    )
    return tuple(candidates[:MAIN_POLLUTANT_COUNT])


def _format_multiple(multiple: float) -> str:
    # Two decimals, GB/T 8170 rounding, trailing zeros dropped: 0.8, 1.25, 2.
    return f"{round_gbt8170(multiple, 2):.2f}".rstrip("0").rstrip(".")
