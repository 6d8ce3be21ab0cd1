"""The park: its sites (air stations, river sections, enterprise outlets and meters), permits,
targets and inspectors, loaded from ``config/park.yaml``.

Loading validates everything and fails with one line naming the file, the line and the key,
e.g. ``config/park.yaml:41: enterprises[0].outlets[1].permit: unknown parameter 'CODD' for a
emission site``. Nothing downstream re-checks the config.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from park.parameters import Parameter, parameter

SiteKind = Literal["air", "water", "emission"]
SiteRole = Literal["station", "section", "gas_outlet", "wastewater_outlet", "water_meter", "energy_meter"]

DEFAULT_CONFIG: Final[Path] = Path(__file__).resolve().parent.parent / "config" / "park.yaml"

# The Kafka topic of each kind of site (issue #2); the MQTT topic is ``{mqtt_prefix}/{kind}/{site}``.
READING_TOPICS: Final[dict[str, str]] = {
    "air": "readings.air",
    "water": "readings.water",
    "emission": "readings.emission",
}
DEADLETTER_TOPIC: Final[str] = "readings.deadletter"

_ROLE_KIND: Final[dict[str, SiteKind]] = {
    "station": "air",
    "section": "water",
    "gas_outlet": "emission",
    "wastewater_outlet": "emission",
    "water_meter": "emission",
    "energy_meter": "emission",
}


class ConfigError(ValueError):
    """A config file is wrong; the message is one line: ``file:line: key: problem``."""


@dataclass(frozen=True, slots=True)
class PermitLimit:
    """A permitted limit: an upper bound in the parameter's canonical unit, or a range (pH)."""

    parameter: str
    upper: float | None = None
    lower: float | None = None
    averaging: Literal["1h", "24h"] = "1h"


@dataclass(frozen=True, slots=True)
class Site:
    """One thing that publishes readings: a station, a section, an outlet or a meter."""

    id: str
    kind: SiteKind
    role: SiteRole
    name: str
    name_en: str
    parameters: tuple[str, ...]
    enterprise: str | None = None
    enterprise_name: str | None = None
    waterbody: Literal["river", "lake"] | None = None
    target_class: int | None = None
    reference_o2_pct: float | None = None
    permit: dict[str, PermitLimit] = field(default_factory=dict)
    mn: str | None = None
    pw: str | None = None
    sm4_key: bytes | None = None
    hj212_version: Literal["2017", "2025"] = "2017"

    def parameter(self, name_or_code: str) -> Parameter:
        return parameter(name_or_code, self.kind)


@dataclass(frozen=True, slots=True)
class Inspector:
    id: str
    name: str
    email: str | None = None
    webhook: str | None = None
    phone: str | None = None
    sites: tuple[str, ...] = ()  # empty: every site
    escalate_to: str | None = None


@dataclass(frozen=True, slots=True)
class Park:
    id: str
    name: str
    name_en: str
    timezone: str
    sites: dict[str, Site]
    inspectors: dict[str, Inspector] = field(default_factory=dict)
    area_km2: float | None = None
    mqtt_prefix: str = "ecopark"
    lateness_horizon_h: float = 48.0
    source: str = "<memory>"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def site(self, site_id: str) -> Site:
        try:
            return self.sites[site_id]
        except KeyError:
            raise ValueError(f"unknown site {site_id!r}") from None

    def sites_of(self, kind: SiteKind) -> list[Site]:
        return [s for s in self.sites.values() if s.kind == kind]

    def site_by_mn(self, mn: str) -> Site | None:
        for s in self.sites.values():
            if s.mn == mn:
                return s
        return None

    def mqtt_topic(self, site: Site) -> str:
        return f"{self.mqtt_prefix}/{site.kind}/{site.id}"


def load_park(path: str | Path | None = None) -> Park:
    """Load and validate a park config (default: the reference park, ``config/park.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read config: not UTF-8 text (byte {exc.start})") from None
    return parse_park(text, source=str(path))


def parse_park(text: str, source: str = "<string>") -> Park:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        raise ConfigError(f"{source}:1: the config is empty")
    return _Loader(source).park(root)


# ---------------------------------------------------------------------------------------------
# Validation: a small walker over YAML nodes, so every error knows its line.

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MN = re.compile(r"^[0-9A-Za-z]{1,24}$")


class _Loader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node, path: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}:{node.start_mark.line + 1}: {path or '(top)'}: {problem}")

    # -- structure helpers
    def mapping(self, node: yaml.Node, path: str, allowed: set[str], required: set[str]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, path, "expected a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            key = k.value
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(sorted(allowed))})"
                raise self.fail(k, f"{path}.{key}" if path else key, f"unknown key{extra}")
            if key in out:
                raise self.fail(k, f"{path}.{key}" if path else key, "key given twice")
            out[key] = (k, v)
        for key in sorted(required - out.keys()):
            raise self.fail(node, path or "(top)", f"missing key {key!r}")
        return out

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, path, "expected a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, path: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, path, "expected a single value")
        if node.tag == "tag:yaml.org,2002:str":
            return node.value
        try:
            return yaml.safe_load(yaml.serialize(node))
        except yaml.YAMLError:
            raise self.fail(node, path, f"cannot read a value tagged {node.tag!r}") from None

    def text(self, node: yaml.Node, path: str) -> str:
        value = self.scalar(node, path)
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
            raise self.fail(node, path, "expected text")
        return str(value)

    def number(self, node: yaml.Node, path: str, low: float | None = None, high: float | None = None) -> float:
        value = self.scalar(node, path)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(node, path, f"expected a number, got {node.value!r}")
        if low is not None and value < low:
            raise self.fail(node, path, f"{value} is below {low:g}" if high is None else f"{value} is outside {low:g}…{high:g}")
        if high is not None and value > high:
            raise self.fail(node, path, f"{value} is above {high:g}" if low is None else f"{value} is outside {low:g}…{high:g}")
        return float(value)

    def ident(self, node: yaml.Node, path: str) -> str:
        value = self.text(node, path)
        if not _ID.match(value):
            raise self.fail(node, path, f"{value!r} is not a valid id (letters, digits, _ . -)")
        return value

    # -- the park
    def park(self, root: yaml.Node) -> Park:
        top = self.mapping(root, "", {"park", "air_stations", "river_sections", "enterprises", "inspectors"}, {"park"})
        _, pnode = top["park"]
        p = self.mapping(pnode, "park", {"id", "name", "name_en", "timezone", "area_km2", "mqtt_prefix", "lateness_horizon_h"}, {"id", "name", "timezone"})
        tz_node = p["timezone"][1]
        timezone = self.text(tz_node, "park.timezone")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(tz_node, "park.timezone", f"unknown time zone {timezone!r}") from None

        sites: dict[str, Site] = {}
        mns: dict[str, str] = {}

        def add(site: Site, node: yaml.Node, path: str) -> None:
            if site.id in sites:
                raise self.fail(node, path, f"site id {site.id!r} is used twice")
            if site.mn:
                if site.mn in mns:
                    raise self.fail(node, path, f"MN {site.mn} is already used by site {mns[site.mn]}")
                mns[site.mn] = site.id
            sites[site.id] = site

        if "air_stations" in top:
            for i, n in enumerate(self.sequence(top["air_stations"][1], "air_stations")):
                path = f"air_stations[{i}]"
                add(self.station(n, path), n, path)
        if "river_sections" in top:
            for i, n in enumerate(self.sequence(top["river_sections"][1], "river_sections")):
                path = f"river_sections[{i}]"
                add(self.section(n, path), n, path)
        if "enterprises" in top:
            for i, n in enumerate(self.sequence(top["enterprises"][1], "enterprises")):
                for site, snode, spath in self.enterprise(n, f"enterprises[{i}]"):
                    add(site, snode, spath)
        inspectors: dict[str, Inspector] = {}
        if "inspectors" in top:
            for i, n in enumerate(self.sequence(top["inspectors"][1], "inspectors")):
                insp = self.inspector(n, f"inspectors[{i}]", sites)
                if insp.id in inspectors:
                    raise self.fail(n, f"inspectors[{i}]", f"inspector id {insp.id!r} is used twice")
                inspectors[insp.id] = insp
            for i, n in enumerate(self.sequence(top["inspectors"][1], "inspectors")):
                insp = list(inspectors.values())[i]
                if insp.escalate_to and insp.escalate_to not in inspectors:
                    where = next(v for k, v in n.value if k.value == "escalate_to")
                    raise self.fail(where, f"inspectors[{i}].escalate_to", f"unknown inspector {insp.escalate_to!r}")

        return Park(
            id=self.ident(p["id"][1], "park.id"),
            name=self.text(p["name"][1], "park.name"),
            name_en=self.text(p["name_en"][1], "park.name_en") if "name_en" in p else "",
            timezone=timezone,
            sites=sites,
            inspectors=inspectors,
            area_km2=self.number(p["area_km2"][1], "park.area_km2", 0) if "area_km2" in p else None,
            mqtt_prefix=self.text(p["mqtt_prefix"][1], "park.mqtt_prefix") if "mqtt_prefix" in p else "ecopark",
            lateness_horizon_h=self.number(p["lateness_horizon_h"][1], "park.lateness_horizon_h", 1, 24 * 366) if "lateness_horizon_h" in p else 48.0,
            source=self.source,
        )

    def parameters(self, node: yaml.Node, path: str, kind: SiteKind) -> tuple[str, ...]:
        names = []
        for j, n in enumerate(self.sequence(node, path)):
            name = self.text(n, f"{path}[{j}]")
            try:
                names.append(parameter(name, kind).name)
            except ValueError as exc:
                raise self.fail(n, f"{path}[{j}]", str(exc)) from None
        if not names:
            raise self.fail(node, path, "a site needs at least one parameter")
        return tuple(names)

    def station(self, node: yaml.Node, path: str) -> Site:
        m = self.mapping(node, path, {"id", "name", "name_en", "control", "parameters"}, {"id", "name", "parameters"})
        return Site(
            id=self.ident(m["id"][1], f"{path}.id"),
            kind="air",
            role="station",
            name=self.text(m["name"][1], f"{path}.name"),
            name_en=self.text(m["name_en"][1], f"{path}.name_en") if "name_en" in m else "",
            parameters=self.parameters(m["parameters"][1], f"{path}.parameters", "air"),
        )

    def section(self, node: yaml.Node, path: str) -> Site:
        m = self.mapping(node, path, {"id", "name", "name_en", "waterbody", "target_class", "parameters"}, {"id", "name", "target_class", "parameters"})
        waterbody = "river"
        if "waterbody" in m:
            waterbody = self.text(m["waterbody"][1], f"{path}.waterbody")
            if waterbody not in ("river", "lake"):
                raise self.fail(m["waterbody"][1], f"{path}.waterbody", f"expected 'river' or 'lake', got {waterbody!r}")
        target = self.number(m["target_class"][1], f"{path}.target_class", 1, 5)
        if target != int(target):
            raise self.fail(m["target_class"][1], f"{path}.target_class", "a class is a whole number 1–5")
        return Site(
            id=self.ident(m["id"][1], f"{path}.id"),
            kind="water",
            role="section",
            name=self.text(m["name"][1], f"{path}.name"),
            name_en=self.text(m["name_en"][1], f"{path}.name_en") if "name_en" in m else "",
            parameters=self.parameters(m["parameters"][1], f"{path}.parameters", "water"),
            waterbody=waterbody,  # type: ignore[arg-type]
            target_class=int(target),
        )

    def enterprise(self, node: yaml.Node, path: str) -> list[tuple[Site, yaml.Node, str]]:
        m = self.mapping(node, path, {"id", "name", "name_en", "industry", "outlets", "meters"}, {"id", "name", "outlets"})
        ent_id = self.ident(m["id"][1], f"{path}.id")
        ent_name = self.text(m["name"][1], f"{path}.name")
        out = []
        for key in ("outlets", "meters"):
            if key not in m:
                continue
            for j, n in enumerate(self.sequence(m[key][1], f"{path}.{key}")):
                opath = f"{path}.{key}[{j}]"
                out.append((self.outlet(n, opath, ent_id, ent_name, meter=(key == "meters")), n, opath))
        return out

    def outlet(self, node: yaml.Node, path: str, ent_id: str, ent_name: str, meter: bool) -> Site:
        m = self.mapping(
            node, path,
            {"id", "name", "name_en", "role", "parameters", "permit", "reference_o2_pct", "mn", "pw", "sm4_key", "hj212_version"},
            {"id", "name", "role", "parameters"},
        )
        role = self.text(m["role"][1], f"{path}.role")
        roles = ("water_meter", "energy_meter") if meter else ("gas_outlet", "wastewater_outlet")
        if role not in roles:
            raise self.fail(m["role"][1], f"{path}.role", f"expected one of {', '.join(roles)}, got {role!r}")
        params = self.parameters(m["parameters"][1], f"{path}.parameters", "emission")
        permit: dict[str, PermitLimit] = {}
        if "permit" in m:
            pm = m["permit"][1]
            if not isinstance(pm, yaml.MappingNode):
                raise self.fail(pm, f"{path}.permit", "expected a mapping of parameter → limit")
            for k, v in pm.value:
                ppath = f"{path}.permit.{k.value}"
                try:
                    param = parameter(k.value, "emission")
                except ValueError as exc:
                    raise self.fail(k, ppath, str(exc)) from None
                pname = param.name
                if pname in permit:
                    raise self.fail(k, ppath, f"{pname} has a limit twice")
                if pname not in params:
                    raise self.fail(k, ppath, f"{pname} has a limit but is not among the outlet's parameters")
                averaging = "1h" if role == "gas_outlet" else "24h"
                if isinstance(v, yaml.SequenceNode):
                    lo, hi = (self.number(x, ppath, 0, param.upper_bound) for x in self.sequence(v, ppath)) if len(v.value) == 2 else (None, None)
                    if lo is None or lo >= hi:
                        raise self.fail(v, ppath, "a range is [low, high] with low < high")
                    permit[pname] = PermitLimit(pname, upper=hi, lower=lo, averaging=averaging)
                else:
                    permit[pname] = PermitLimit(pname, upper=self.number(v, ppath, 0, param.upper_bound), averaging=averaging)
        ref_o2 = None
        if "reference_o2_pct" in m:
            ref_o2 = self.number(m["reference_o2_pct"][1], f"{path}.reference_o2_pct", 0, 20.9)
            if role != "gas_outlet":
                raise self.fail(m["reference_o2_pct"][1], f"{path}.reference_o2_pct", "only a gas outlet has a reference O2")
        mn = pw = None
        key = None
        if "mn" in m:
            # the raw text: an unquoted 0012 must stay "0012", not become the octal number 10
            mn_node = m["mn"][1]
            mn = mn_node.value if isinstance(mn_node, yaml.ScalarNode) else self.text(mn_node, f"{path}.mn")
            if not _MN.match(mn):
                raise self.fail(m["mn"][1], f"{path}.mn", f"MN {mn!r} is not 1–24 letters or digits")
        if "pw" in m:
            pw = self.text(m["pw"][1], f"{path}.pw")
        if "sm4_key" in m:
            raw = self.text(m["sm4_key"][1], f"{path}.sm4_key")
            try:
                key = bytes.fromhex(raw)
            except ValueError:
                key = b""
            if len(key) != 16:
                raise self.fail(m["sm4_key"][1], f"{path}.sm4_key", "an SM4 key is 32 hex digits (128 bits)")
        version = "2017"
        if "hj212_version" in m:
            version = str(self.text(m["hj212_version"][1], f"{path}.hj212_version"))
            if version not in ("2017", "2025"):
                raise self.fail(m["hj212_version"][1], f"{path}.hj212_version", f"expected 2017 or 2025, got {version!r}")
        return Site(
            id=self.ident(m["id"][1], f"{path}.id"),
            kind=_ROLE_KIND[role],
            role=role,  # type: ignore[arg-type]
            name=self.text(m["name"][1], f"{path}.name"),
            name_en=self.text(m["name_en"][1], f"{path}.name_en") if "name_en" in m else "",
            parameters=params,
            enterprise=ent_id,
            enterprise_name=ent_name,
            reference_o2_pct=ref_o2,
            permit=permit,
            mn=mn,
            pw=pw,
            sm4_key=key,
            hj212_version=version,  # type: ignore[arg-type]
        )

    def inspector(self, node: yaml.Node, path: str, sites: dict[str, Site]) -> Inspector:
        m = self.mapping(node, path, {"id", "name", "email", "webhook", "phone", "sites", "escalate_to"}, {"id", "name"})
        site_ids: list[str] = []
        if "sites" in m:
            for j, n in enumerate(self.sequence(m["sites"][1], f"{path}.sites")):
                sid = self.text(n, f"{path}.sites[{j}]")
                if sid not in sites:
                    raise self.fail(n, f"{path}.sites[{j}]", f"unknown site {sid!r}")
                site_ids.append(sid)
        opt = {k: self.text(m[k][1], f"{path}.{k}") for k in ("email", "webhook", "phone", "escalate_to") if k in m}
        return Inspector(id=self.ident(m["id"][1], f"{path}.id"), name=self.text(m["name"][1], f"{path}.name"), sites=tuple(site_ids), **opt)
