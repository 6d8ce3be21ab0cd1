"""The parameters ecopark knows: short name, HJ 212-2017 code, canonical unit, accepted units.

Codes and default units are HJ 212-2017 Appendix B (Tables B.1 water, B.2 air; a05024 for ambient
O3 comes from HJ 524-2009), see `reference/hj212.md` §8. The *canonical* unit is the one the
standards judge in (GB 3095 µg/m³ with CO in mg/m³; GB 3838 mg/L; emission permits mg/m³ and
mg/L), which is not always HJ 212's default: readings in another accepted unit are converted on
the way in, anything else is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True, slots=True)
class Parameter:
    """A measured quantity. ``units`` maps an accepted unit to its factor into ``unit``."""

    name: str
    code: str
    unit: str
    label_zh: str
    units: dict[str, float] = field(default_factory=dict)
    may_be_negative: bool = False
    upper_bound: float | None = None  # physically impossible above this (in ``unit``)

    def to_canonical(self, value: float, unit: str) -> float:
        """``value`` in ``unit`` expressed in this parameter's canonical unit."""
        factor = self.units.get(_normalise_unit(unit))
        if factor is None:
            accepted = ", ".join(sorted(self.units))
            raise ValueError(f"unit {unit!r} does not fit {self.name} (accepted: {accepted})")
        return value * factor


def parameter(name_or_code: str, kind: str) -> Parameter:
    """Look a parameter up by short name (``PM2.5``) or HJ 212 code (``a34004``) for a site kind.

    ``kind`` is ``air`` (ambient station), ``water`` (river section) or ``emission`` (enterprise
    outlet or meter): SO2 is µg/m³ in ambient air but mg/m³ in a stack, under the same HJ 212 code.
    """
    table = _LOOKUP.get(kind)
    if table is None:
        raise ValueError(f"unknown site kind {kind!r} (expected one of {', '.join(_LOOKUP)})")
    found = table.get(name_or_code)
    if found is None:
        raise ValueError(f"unknown parameter {name_or_code!r} for {kind} sites")
    return found


def parameters_for(kind: str) -> tuple[Parameter, ...]:
    """Every parameter a site of ``kind`` may report."""
    return _TABLES[kind]


# Unit spellings normalised: µ and u, ³ and 3, case of "l".
def _normalise_unit(unit: str) -> str:
    u = unit.strip().replace("µ", "u").replace("μ", "u").replace("³", "3").replace("°", "deg")
    return u.replace("/l", "/L").replace("M3", "m3")


_UGM3 = {"ug/m3": 1.0, "mg/m3": 1000.0}
_MGM3 = {"mg/m3": 1.0, "ug/m3": 0.001}
_MGL = {"mg/L": 1.0, "ug/L": 0.001}
_NONE = {"": 1.0, "pH": 1.0, "-": 1.0}
_PCT = {"%": 1.0}

AMBIENT_AIR: Final[tuple[Parameter, ...]] = (
    # GB 3095 units: µg/m³, CO mg/m³
    Parameter("SO2", "a21026", "ug/m3", "二氧化硫", _UGM3),
    Parameter("NO2", "a21004", "ug/m3", "二氧化氮", _UGM3),
    Parameter("PM10", "a34002", "ug/m3", "可吸入颗粒物", _UGM3),
    Parameter("PM2.5", "a34004", "ug/m3", "细颗粒物", _UGM3),
    Parameter("CO", "a21005", "mg/m3", "一氧化碳", _MGM3),
    Parameter("O3", "a05024", "ug/m3", "臭氧", _UGM3),
    Parameter("temp", "a01001", "degC", "气温", {"degC": 1.0, "C": 1.0}, may_be_negative=True),
    Parameter("humidity", "a01002", "%", "湿度", _PCT, upper_bound=100.0),
    Parameter("pressure", "a01006", "kPa", "气压", {"kPa": 1.0, "hPa": 0.1}),
    Parameter("wind_speed", "a01007", "m/s", "风速", {"m/s": 1.0}),
    Parameter("wind_dir", "a01008", "deg", "风向", {"deg": 1.0}, upper_bound=360.0),
)

SURFACE_WATER: Final[tuple[Parameter, ...]] = (
    # GB 3838-2002 Table 1 units: mg/L, pH dimensionless
    Parameter("pH", "w01001", "", "pH值", _NONE, upper_bound=14.0),
    Parameter("DO", "w01009", "mg/L", "溶解氧", _MGL),
    Parameter("CODMn", "w01019", "mg/L", "高锰酸盐指数", _MGL),
    Parameter("COD", "w01018", "mg/L", "化学需氧量", _MGL),
    Parameter("BOD5", "w01017", "mg/L", "五日生化需氧量", _MGL),
    Parameter("NH3-N", "w21003", "mg/L", "氨氮", _MGL),
    Parameter("TP", "w21011", "mg/L", "总磷", _MGL),
    Parameter("TN", "w21001", "mg/L", "总氮", _MGL),
    Parameter("water_temp", "w01010", "degC", "水温", {"degC": 1.0, "C": 1.0}, may_be_negative=True),
)

ENTERPRISE: Final[tuple[Parameter, ...]] = (
    # stack gas: standard state, dry, mg/m³ (GB 13271-2014); flow in m³/h
    Parameter("SO2", "a21026", "mg/m3", "二氧化硫", _MGM3),
    Parameter("NOx", "a21002", "mg/m3", "氮氧化物", _MGM3),
    Parameter("particulates", "a34013", "mg/m3", "颗粒物", _MGM3),
    Parameter("O2", "a19001", "%", "氧含量", _PCT, upper_bound=21.0),
    Parameter("gas_flow", "a00000", "m3/h", "废气流量", {"m3/h": 1.0, "m3/s": 3600.0}),
    Parameter("stack_temp", "a01012", "degC", "烟气温度", {"degC": 1.0, "C": 1.0}),
    # wastewater: GB 8978 / GB 18918 units, mg/L
    Parameter("pH", "w01001", "", "pH值", _NONE, upper_bound=14.0),
    Parameter("COD", "w01018", "mg/L", "化学需氧量", _MGL),
    Parameter("NH3-N", "w21003", "mg/L", "氨氮", _MGL),
    Parameter("TP", "w21011", "mg/L", "总磷", _MGL),
    Parameter("TN", "w21001", "mg/L", "总氮", _MGL),
    Parameter("water_flow", "w00000", "m3/h", "污水流量", {"m3/h": 1.0, "L/s": 3.6, "m3/s": 3600.0}),
    # meters: cumulative totals
    Parameter("water_m3", "w00001", "m3", "取水量", {"m3": 1.0, "t": 1.0}),
    Parameter("energy_kwh", "e00001", "kWh", "用电量", {"kWh": 1.0, "MWh": 1000.0}),
)



def _index(params: tuple[Parameter, ...]) -> dict[str, Parameter]:
    return {**{p.name: p for p in params}, **{p.code: p for p in params}}


_TABLES: Final[dict[str, tuple[Parameter, ...]]] = {
    "air": AMBIENT_AIR,
    "water": SURFACE_WATER,
    "emission": ENTERPRISE,
}
_LOOKUP: Final[dict[str, dict[str, Parameter]]] = {kind: _index(t) for kind, t in _TABLES.items()}
