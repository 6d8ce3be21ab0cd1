"""Emission compliance: flue-gas reference-O2 conversion, hourly/daily compliance, mass emission.

Source: ``reference/emissions.md`` (§1 conversions, §2 reference O2, §5 compliance, §8 mass
emission) and ``reference/hj212.md`` (Appendix D formulas, codes and default units).

Rules, each stated once here:
- Flue-gas limits are standard-state dry concentrations **at the reference O2**:
  C_ref = C × (21 − O2_ref) / (21 − O2_meas). The converted value is the one judged.
- **O2 guard (ecopark's choice, not a verified clause):** above ``O2_CONVERSION_MAX_PCT`` (19 %)
  measured O2 the flue gas is nearly air — a stopped or starting boiler — and the factor
  21 − O2_meas blows up; ``to_reference_o2`` then raises ``OxygenNearAmbientError`` (a
  ``ValueError``) so the caller flags the hour instead of judging it. HJ 75-2017 treats shutdown
  periods separately; that rule was not verified (emissions.md §1).
- A flue-gas hour is judged only when it is a valid hour (≥ ``MIN_VALID_MINUTES_PER_HOUR`` valid
  minutes, HJ 212-2017 App. D / 2017 permit specifications); then **any** hourly mean above the
  permitted limit is an exceedance (§5). A value equal to the limit complies.
- Wastewater limits are daily means: a day is judged with ≥ ``MIN_VALID_HOURS_PER_DAY_CEMS`` valid
  hours; the daily mean is flow-weighted. pH is judged as a range, value by value.
- Mass emission uses the **un-converted** concentration (§8).
- The limit judged is the per-outlet permit limit, from configuration; no limit is hard-coded here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final

import numpy as np

from rules.validity import MIN_VALID_MINUTES_PER_HOUR

__all__ = [
    "MIN_VALID_MINUTES_PER_HOUR",
    "MIN_VALID_HOURS_PER_DAY_CEMS",
    "REFERENCE_O2_PCT",
    "O2_CONVERSION_MAX_PCT",
    "MOLAR_MASS_G_MOL",
    "MOLAR_VOLUME_L_MOL",
    "NO_TO_NO2_FACTOR",
    "WASTEWATER_PH_RANGE",
    "Compliance",
    "OxygenNearAmbientError",
    "reference_o2_pct",
    "to_reference_o2",
    "hourly_compliance",
    "daily_compliance",
    "ph_compliance",
    "flow_weighted_mean",
    "mass_emission_kg_h",
    "mass_emission",
    "wastewater_load_kg",
    "tonnes",
    "ppm_to_mgm3",
    "nox_as_no2",
]

# HJ 212-2017 App. D: a valid daily mean (CEMS) is the mean of ≥ 20 valid hourly means. Same number
# as GB 3095's ambient rule in rules.validity, but a different standard: kept apart on purpose.
MIN_VALID_HOURS_PER_DAY_CEMS: Final[int] = 20
MINUTES_PER_HOUR: Final[int] = 60
HOURS_PER_DAY: Final[int] = 24

# emissions.md §2: reference O2 content (基准氧含量), % by volume, dry gas.
# Keys: (standard, source type). GB 13271-2014 covers boilers; GB 13223-2011 thermal power.
REFERENCE_O2_PCT: Final[Mapping[tuple[str, str], float]] = MappingProxyType(
    {
        ("GB 13271-2014", "coal"): 9.0,  # coal-fired boilers (incl. coal-like fuels)
        ("GB 13271-2014", "oil"): 3.5,
        ("GB 13271-2014", "gas"): 3.5,
        ("GB 13223-2011", "coal"): 6.0,
        ("GB 13223-2011", "oil"): 3.0,
        ("GB 13223-2011", "gas"): 3.0,  # gas-fired boilers
        ("GB 13223-2011", "gas_turbine"): 15.0,
    }
)

# O2 in air (%, dry): the 21 of the conversion formula (emissions.md §1).
AIR_O2_PCT: Final[float] = 21.0
# Above this measured O2 the conversion is refused (see the module docstring). A gas turbine runs
# at about 15 %, so 19 % leaves every firing state convertible.
O2_CONVERSION_MAX_PCT: Final[float] = 19.0

# emissions.md §1: ppm → mg/m³ at standard state (273 K, 101 325 Pa): C = ppm × M / 22.4.
MOLAR_VOLUME_L_MOL: Final[float] = 22.4
MOLAR_MASS_G_MOL: Final[Mapping[str, float]] = MappingProxyType(
    {"SO2": 64.06, "NO2": 46.01, "NO": 30.01, "CO": 28.01}
)
# emissions.md §1: NOx (as NO2) = NO × 46/30 + NO2, the ratio as the reference writes it.
NO_TO_NO2_FACTOR: Final[float] = 46 / 30

# GB 8978-1996 Table 4 and GB 18918-2002 Table 1: pH 6–9 for every grade/class (emissions.md §6–7).
WASTEWATER_PH_RANGE: Final[tuple[float, float]] = (6.0, 9.0)

# Flow units → m³/h. 1 L/s = 3.6 m³/h (emissions.md §8); m³/s is HJ 212's default for a00000.
_FLOW_TO_M3H: Final[Mapping[str, float]] = MappingProxyType({"m3/h": 1.0, "m3/s": 3600.0, "l/s": 3.6})
_FLOW_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {"m3/h": "m3/h", "m³/h": "m3/h", "m3/s": "m3/s", "m³/s": "m3/s", "l/s": "l/s"}
)
_GAS_CONC_UNITS: Final[frozenset[str]] = frozenset({"mg/m3", "mg/m³"})
_WATER_CONC_UNITS: Final[frozenset[str]] = frozenset({"mg/l"})
MG_PER_KG: Final[float] = 1e6
KG_PER_TONNE: Final[float] = 1e3
LITRES_PER_M3: Final[float] = 1e3


class OxygenNearAmbientError(ValueError):
    """Measured O2 is too close to air's 21 % for the reference-O2 conversion (e.g. shutdown)."""


@dataclass(frozen=True)
class Compliance:
    """One judged value against its limit.

    ``compliant`` is ``None`` when the period is not valid (too few valid minutes or hours) and so
    cannot be judged; ``exceedance_multiple`` is (C − L) / L when C > L, else 0 (also 0 when not
    judged, and for pH). ``limit`` is a number, or the ``(low, high)`` range for pH.
    """

    compliant: bool | None
    exceedance_multiple: float
    value: float
    limit: float | tuple[float, float]

    @property
    def judged(self) -> bool:
        return self.compliant is not None

    @property
    def exceeded(self) -> bool:
        return self.compliant is False


def reference_o2_pct(standard: str, source: str) -> float:
    """The reference O2 (%) of a source type under a standard, from ``REFERENCE_O2_PCT``."""
    key = (standard, source)
    if key not in REFERENCE_O2_PCT:
        known = ", ".join(f"{s}/{t}" for s, t in REFERENCE_O2_PCT)
        raise ValueError(f"no reference O2 for {standard!r} / {source!r}: known {known}")
    return REFERENCE_O2_PCT[key]


def to_reference_o2(measured_mgm3: float, o2_measured_pct: float, o2_reference_pct: float) -> float:
    """Convert a standard-state dry concentration (mg/m³) to the reference O2 (%, dry).

    C_ref = C × (21 − O2_ref) / (21 − O2_meas). Raises ``OxygenNearAmbientError`` when
    O2_meas > ``O2_CONVERSION_MAX_PCT`` (19 %), ``ValueError`` for negative or non-finite inputs.
    """
    c = _non_negative("measured concentration (mg/m3)", measured_mgm3)
    o2 = _non_negative("measured O2 (%)", o2_measured_pct)
    o2_ref = _non_negative("reference O2 (%)", o2_reference_pct)
    if o2_ref >= AIR_O2_PCT:
        raise ValueError(f"reference O2 {o2_ref} % is not below air's {AIR_O2_PCT} %")
    if o2 > O2_CONVERSION_MAX_PCT:
        raise OxygenNearAmbientError(
            f"measured O2 {o2} % is above {O2_CONVERSION_MAX_PCT} %: flue gas is nearly air "
            "(shutdown?), no reference-O2 conversion; flag the hour"
        )
    return c * (AIR_O2_PCT - o2_ref) / (AIR_O2_PCT - o2)


def hourly_compliance(
    concentration_mgm3: float,
    limit_mgm3: float,
    valid_minutes: int,
    *,
    o2_measured_pct: float | None = None,
    o2_reference_pct: float | None = None,
) -> Compliance:
    """Judge one flue-gas hourly mean against the permitted limit (mg/m³ at the reference O2).

    Judged only with ≥ ``MIN_VALID_MINUTES_PER_HOUR`` (45) valid minutes; then compliant iff
    C ≤ limit (2017 permit specifications §12.2: any valid hourly mean above the limit exceeds).
    ``concentration_mgm3`` is taken as already converted, unless both O2 arguments are given: then
    it is the measured standard-state dry value and is converted first (``to_reference_o2``, which
    raises ``OxygenNearAmbientError`` above 19 % O2). ``Compliance.value`` is the judged value.
    """
    minutes = _count("valid minutes", valid_minutes, MINUTES_PER_HOUR)
    if (o2_measured_pct is None) != (o2_reference_pct is None):
        raise ValueError("give both o2_measured_pct and o2_reference_pct, or neither")
    if o2_measured_pct is not None and o2_reference_pct is not None:
        concentration_mgm3 = to_reference_o2(concentration_mgm3, o2_measured_pct, o2_reference_pct)
    return _judge(concentration_mgm3, limit_mgm3, minutes >= MIN_VALID_MINUTES_PER_HOUR, "mg/m3")


def daily_compliance(concentration_mgL: float, limit_mgL: float, valid_hours: int) -> Compliance:
    """Judge one wastewater daily mean (mg/L; flow-weighted, see ``flow_weighted_mean``).

    Judged only with ≥ ``MIN_VALID_HOURS_PER_DAY_CEMS`` (20) valid hours; then compliant iff
    C ≤ limit. For COD, NH3-N, TP, TN and the like; pH is judged per value (``ph_compliance``).
    """
    hours = _count("valid hours", valid_hours, HOURS_PER_DAY)
    return _judge(concentration_mgL, limit_mgL, hours >= MIN_VALID_HOURS_PER_DAY_CEMS, "mg/L")


def ph_compliance(ph: float, ph_range: tuple[float, float] = WASTEWATER_PH_RANGE) -> Compliance:
    """Judge one pH value against a range (6–9 by default); the ends are inside."""
    value = _non_negative("pH", ph)
    low, high = (_non_negative("pH range bound", b) for b in ph_range)
    if low > high:
        raise ValueError(f"pH range {ph_range!r} is empty")
    return Compliance(low <= value <= high, 0.0, value, (low, high))


def flow_weighted_mean(concs_mgL: Sequence[float], volumes_m3: Sequence[float]) -> float:
    """Flow-weighted mean concentration Σ(C_i × D_i) / Σ D_i (HJ 212-2017 App. D), mg/L.

    ``volumes_m3`` are the discharged volumes of the same slices. Raises ``ValueError`` on
    mismatched lengths, negative or non-finite values, or a zero total volume.
    """
    concs = [_non_negative("concentration (mg/L)", c) for c in concs_mgL]
    volumes = [_non_negative("volume (m3)", v) for v in volumes_m3]
    if len(concs) != len(volumes):
        raise ValueError(f"{len(concs)} concentrations but {len(volumes)} volumes")
    total = math.fsum(volumes)
    if total == 0:
        raise ValueError("total volume is zero: no flow-weighted mean")
    return math.fsum(c * v for c, v in zip(concs, volumes)) / total


def mass_emission_kg_h(conc_mgm3: float, flow_m3h: float) -> float:
    """Flue-gas mass emission G = C × Q × 10⁻⁶ in kg/h (emissions.md §8).

    ``conc_mgm3``: standard-state dry concentration, **not** O2-converted; ``flow_m3h``:
    standard-state dry flow in m³/h.
    """
    c = _non_negative("concentration (mg/m3)", conc_mgm3)
    q = _non_negative("flow (m3/h)", flow_m3h)
    return c * q / MG_PER_KG


def mass_emission(conc: float, conc_unit: str, flow: float, flow_unit: str) -> float:
    """Flue-gas mass emission in kg/h with the units checked.

    ``conc_unit`` must be "mg/m3" (a flue-gas concentration); ``flow_unit`` one of "m3/h",
    "m3/s", "L/s" (1 L/s = 3.6 m³/h). A wastewater concentration (mg/L) raises: use
    ``wastewater_load_kg``.
    """
    unit = str(conc_unit).strip().lower()
    if unit in _WATER_CONC_UNITS:
        raise ValueError(
            f"unit mismatch: {conc_unit} is a wastewater concentration, mass_emission takes flue gas in mg/m3 "
            "(use wastewater_load_kg)"
        )
    if unit not in _GAS_CONC_UNITS:
        raise ValueError(f"concentration unit {conc_unit!r} not accepted: expected 'mg/m3'")
    flow_key = _FLOW_ALIASES.get(str(flow_unit).strip().lower())
    if flow_key is None:
        raise ValueError(f"flow unit {flow_unit!r} not accepted: expected 'm3/h', 'm3/s' or 'L/s'")
    q = _non_negative(f"flow ({flow_unit})", flow)
    return mass_emission_kg_h(conc, q * _FLOW_TO_M3H[flow_key])


def wastewater_load_kg(conc_mgL: float, volume_m3: float) -> float:
    """Wastewater load G = C × D × 10⁻³ in kg (mg/L × m³ = g; emissions.md §8)."""
    c = _non_negative("concentration (mg/L)", conc_mgL)
    v = _non_negative("volume (m3)", volume_m3)
    return c * v / LITRES_PER_M3


def tonnes(kg: float) -> float:
    """Kilograms → tonnes."""
    return _non_negative("mass (kg)", kg) / KG_PER_TONNE


def ppm_to_mgm3(ppm: float, gas: str) -> float:
    """ppm (by volume) → mg/m³ at standard state: C = ppm × M / 22.4 (SO2, NO2, NO, CO)."""
    if gas not in MOLAR_MASS_G_MOL:
        raise ValueError(f"no molar mass for gas {gas!r}: expected one of {', '.join(MOLAR_MASS_G_MOL)}")
    return _non_negative("ppm", ppm) * MOLAR_MASS_G_MOL[gas] / MOLAR_VOLUME_L_MOL


def nox_as_no2(no_mgm3: float, no2_mgm3: float) -> float:
    """NOx expressed as NO2 (mg/m³) from NO and NO2 measured separately: NO × 46/30 + NO2."""
    return _non_negative("NO (mg/m3)", no_mgm3) * NO_TO_NO2_FACTOR + _non_negative("NO2 (mg/m3)", no2_mgm3)


# --- helpers -------------------------------------------------------------------------------------


def _non_negative(what: str, value: object) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{what}: {value!r} is not a number")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{what}: {x} is not a finite number")
    if x < 0:
        raise ValueError(f"{what}: {x} is negative")
    return x


def _count(what: str, value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what}: {value!r} is not a whole number")
    if not 0 <= value <= maximum:
        raise ValueError(f"{what}: {value} is outside 0..{maximum}")
    return int(value)


def _judge(value: float, limit: float, valid: bool, unit: str) -> Compliance:
    c = _non_negative(f"concentration ({unit})", value)
    lim = _non_negative(f"limit ({unit})", limit)
    if lim == 0:
        raise ValueError(f"limit ({unit}) is zero: no exceedance multiple can be taken against it")
    if not valid:
        return Compliance(None, 0.0, c, lim)
    return Compliance(c <= lim, _multiple(c, lim) if c > lim else 0.0, c, lim)


def _multiple(value: float, limit: float) -> float:
    # On the decimal readings, so 60 against 50 gives exactly 0.2.
    c, s = Decimal(repr(value)), Decimal(repr(limit))
    return float((c - s) / s)
