"""Grafana provisioning as code: the InfluxDB 2 datasource and the monitoring-wall dashboard.

``write_provisioning(park, out_dir)`` writes what a Grafana container mounts at
``/etc/grafana/provisioning``::

    datasources/ecopark.yaml        the InfluxDB 2 datasource (Flux); url/org/bucket/token from env
    dashboards/ecopark.yaml         the file provider that loads the dashboard below
    dashboards/ecopark-wall.json    the monitoring wall

Regenerate the committed copy for the reference park with
``python -m dashboards.grafana config/park.yaml dashboards/grafana``.

Queries read exactly what ``store/schema.py`` defines, as the InfluxDB adapter writes it:
measurement = ``Result.measurement``, tags ``site`` + ``Result.tags`` (``parameter``), fields =
``Result.fields``; events as ``store.influx.EVENT_MEASUREMENT`` (``event``: tags id, kind, site;
fields message, severity, data).

Colours are the standards': AQI stat thresholds are HJ 633 Table 2 / Appendix A
(``dashboards.wall.HJ633_APPENDIX_A_LEVELS``, ``reference/air-aqi.md`` §5); an outlet parameter
turns red at its permit limit (``park.Site.permit``), a section at the class after its target.
Grafana threshold steps apply from their value upwards (≥), so a value exactly *at* a limit
shows red although the standard calls it compliant (C ≤ L); the ``compliant`` field written by
``rules/emission.py`` stays the authority (the events table and the wall page use it).

Plain dicts serialised to JSON: no grafana-foundation-sdk (its unpinned install picks old
Grafana types, STACK-NOTES.md). ``schemaVersion`` targets Grafana 10/11.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

import yaml

from dashboards.wall import GB3838_CLASS_NAMES, HJ633_APPENDIX_A_LEVELS, HJ633_LEVEL_LOWER_AQI
from park.model import Park, Site, load_park
from park.parameters import parameter
from store.influx import EVENT_MEASUREMENT
from store.schema import MEASUREMENTS

# Environment variables Grafana interpolates into the datasource file at start-up; the names are
# influxdb-client's own (``InfluxDBClient.from_env_properties``) plus a bucket.
ENV_URL: Final[str] = "INFLUXDB_V2_URL"
ENV_ORG: Final[str] = "INFLUXDB_V2_ORG"
ENV_BUCKET: Final[str] = "INFLUXDB_V2_BUCKET"
ENV_TOKEN: Final[str] = "INFLUXDB_V2_TOKEN"

DATASOURCE_NAME: Final[str] = "ecopark InfluxDB"
DATASOURCE_UID: Final[str] = "ecopark-influxdb"
DASHBOARD_UID: Final[str] = "ecopark-wall"
PROVIDER_NAME: Final[str] = "ecopark"
# Where the container sees ``out_dir/dashboards`` when ``out_dir`` is mounted as provisioning.
DEFAULT_DASHBOARDS_PATH: Final[str] = "/etc/grafana/provisioning/dashboards"
SCHEMA_VERSION: Final[int] = 39
EVENTS_MEASUREMENT: Final[str] = EVENT_MEASUREMENT

# How far back a "latest value" panel looks, whatever the time picker says: an hourly result is
# written after its hour ends; a daily one (labelled by the day's start) up to two days back.
LATEST_LOOKBACK: Final[dict[str, str]] = {"hourly": "-1d", "daily": "-3d"}

# Colours that are ours, not a standard's.
OK_COLOUR: Final[str] = "green"
BAD_COLOUR: Final[str] = "red"

_DS: Final[dict[str, str]] = {"type": "influxdb", "uid": DATASOURCE_UID}
_GRID_W: Final[int] = 24


def datasource_config(*, name: str = DATASOURCE_NAME, uid: str = DATASOURCE_UID) -> dict[str, Any]:
    """The datasource provisioning document (``datasources/ecopark.yaml``)."""
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": name,
            "uid": uid,
            "type": "influxdb",
            "access": "proxy",
            "url": f"${{{ENV_URL}}}",
            "isDefault": True,
            "editable": False,
            "jsonData": {
                "version": "Flux",
                "organization": f"${{{ENV_ORG}}}",
                "defaultBucket": f"${{{ENV_BUCKET}}}",
                "tlsSkipVerify": False,
            },
            "secureJsonData": {"token": f"${{{ENV_TOKEN}}}"},
        }],
    }


def dashboard_provider_config(dashboards_path: str = DEFAULT_DASHBOARDS_PATH) -> dict[str, Any]:
    """The dashboard provider document (``dashboards/ecopark.yaml``)."""
    return {
        "apiVersion": 1,
        "providers": [{
            "name": PROVIDER_NAME,
            "orgId": 1,
            "folder": "ecopark",
            "type": "file",
            "disableDeletion": False,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 60,
            "options": {"path": dashboards_path, "foldersFromFilesStructure": False},
        }],
    }


def aqi_thresholds() -> list[dict[str, Any]]:
    """HJ 633 AQI level colours as Grafana threshold steps (a level starts at its lowest AQI)."""
    steps = []
    for level, (_, _, colour) in sorted(HJ633_APPENDIX_A_LEVELS.items()):
        lower = HJ633_LEVEL_LOWER_AQI[level]
        steps.append({"color": colour, "value": None if level == 1 else lower})
    return steps


def permit_thresholds(site: Site, name: str) -> list[dict[str, Any]]:
    """Green within the permit, red beyond: ``[ok, bad@upper]`` or, for a range, ``[bad, ok@lower, bad@upper]``."""
    limit = site.permit[name]
    if limit.lower is not None:
        return [{"color": BAD_COLOUR, "value": None}, {"color": OK_COLOUR, "value": limit.lower},
                {"color": BAD_COLOUR, "value": limit.upper}]
    return [{"color": OK_COLOUR, "value": None}, {"color": BAD_COLOUR, "value": limit.upper}]


def dashboard(park: Park) -> dict[str, Any]:
    """The monitoring-wall dashboard JSON for a park."""
    b = _Builder()
    b.row("环境空气质量 Air quality — AQI (HJ 633)")
    for site in park.sites_of("air"):
        b.add(_aqi_stat(site), w=6, h=7)
        b.add(_primary_stat(site), w=5, h=7)
        b.add(_aqi_series(site), w=13, h=7)
    b.row("河流断面水质 River sections — class vs target (GB 3838)")
    sections = park.sites_of("water")
    for site in sections:
        b.add(_water_stat(site), w=max(6, _GRID_W // max(1, len(sections))), h=5)
    b.row("重点企业排放达标 Enterprise emission compliance (permit limits)")
    for site in _outlets(park):
        b.add(_outlet_stat(site), w=12, h=5)
    b.row("事件 Events")
    b.add(_events_table(park), w=_GRID_W, h=9)
    hourly = b.row("小时均值 Hourly means", collapsed=True)
    for site in park.sites_of("air") + park.sites_of("water") + _outlets(park):
        b.add(_hourly_series(site), w=12, h=8, into=hourly)
    return {
        "uid": DASHBOARD_UID,
        "title": f"{park.name} {park.name_en} — 环境监测 monitoring wall".strip(),
        "tags": ["ecopark", park.id],
        "timezone": park.timezone,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [],
        "panels": b.panels,
    }


def write_provisioning(park: Park, out_dir: str | Path, *, dashboards_path: str = DEFAULT_DASHBOARDS_PATH) -> list[Path]:
    """Write the three provisioning files under ``out_dir``; returns their paths."""
    out = Path(out_dir)
    files = {
        out / "datasources" / "ecopark.yaml": _yaml(datasource_config()),
        out / "dashboards" / "ecopark.yaml": _yaml(dashboard_provider_config(dashboards_path)),
        out / "dashboards" / "ecopark-wall.json": json.dumps(dashboard(park), ensure_ascii=False, indent=2) + "\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboards.grafana", description="Write Grafana provisioning for a park.")
    ap.add_argument("config", help="park config, e.g. config/park.yaml")
    ap.add_argument("out_dir", help="provisioning directory to write, e.g. dashboards/grafana")
    ap.add_argument("--dashboards-path", default=DEFAULT_DASHBOARDS_PATH, help="where Grafana sees the dashboards folder")
    args = ap.parse_args(argv)
    try:
        park = load_park(args.config)
        paths = write_provisioning(park, args.out_dir, dashboards_path=args.dashboards_path)
    except (ValueError, OSError) as exc:
        print(f"ecopark grafana: {exc}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


# -- panels -----------------------------------------------------------------------------------


def _aqi_stat(site: Site) -> dict[str, Any]:
    return _stat(
        f"AQI — {_label(site)}",
        [_target("A", _latest("aqi_hourly", site, "aqi"))],
        defaults={
            "unit": "none", "decimals": 0, "min": 0,
            "thresholds": {"mode": "absolute", "steps": aqi_thresholds()},
        },
        options={"colorMode": "background", "textMode": "value_and_name", "graphMode": "none"},
        description="Hourly AQI (HJ 633); colours: HJ 633 Appendix A.",
    )


def _primary_stat(site: Site) -> dict[str, Any]:
    return _stat(
        f"首要污染物 Primary pollutant — {site.name}",
        [_target("A", _latest("aqi_hourly", site, "primary")), _target("B", _latest("aqi_hourly", site, "category"))],
        defaults={"unit": "none", "noValue": "—", "color": {"mode": "fixed", "fixedColor": "text"}},
        options={"colorMode": "none", "textMode": "value", "graphMode": "none",
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/.*/", "values": False}},
        description="Primary pollutant (only when AQI > 50) and the category, from aqi_hourly.",
    )


def _aqi_series(site: Site) -> dict[str, Any]:
    flux = _flux("aqi_hourly", site, "aqi", range_=None) + "\n  |> keep(columns: [\"_time\", \"_value\"])"
    return {
        "type": "timeseries",
        "title": f"AQI 时均 hourly — {site.name}",
        "datasource": _DS,
        "targets": [_target("A", flux)],
        "fieldConfig": {"defaults": {
            "unit": "none", "min": 0, "displayName": "AQI",
            "thresholds": {"mode": "absolute", "steps": aqi_thresholds()},
            "color": {"mode": "thresholds"},
            "custom": {"drawStyle": "bars", "fillOpacity": 80, "thresholdsStyle": {"mode": "off"}},
        }, "overrides": []},
        "options": {"legend": {"showLegend": False}, "tooltip": {"mode": "single"}},
    }


def _water_stat(site: Site) -> dict[str, Any]:
    target = site.target_class or 5
    return _stat(
        f"{site.name} {site.name_en} — 目标 target {GB3838_CLASS_NAMES[target]}",
        [_target("A", _latest("water_class_hourly", site, "klass"))],
        defaults={
            "unit": "none", "decimals": 0, "noValue": "—",
            # meets the target: class ≤ target (GB 3838; 劣Ⅴ coded 6)
            "thresholds": {"mode": "absolute", "steps": [
                {"color": OK_COLOUR, "value": None}, {"color": BAD_COLOUR, "value": target + 1}]},
            "mappings": [{"type": "value", "options": {
                str(n): {"text": f"{name}类", "index": n - 1} for n, name in GB3838_CLASS_NAMES.items()}}],
        },
        options={"colorMode": "background", "textMode": "value", "graphMode": "none"},
        description=f"Water class of the latest hour (water_class_hourly.klass); red when worse than the target class {GB3838_CLASS_NAMES[target]}.",
    )


def _outlet_stat(site: Site) -> dict[str, Any]:
    targets, overrides = [], []
    for name in site.permit:
        limit = site.permit[name]
        period = "daily" if limit.averaging == "24h" else "hourly"
        ref = _ref(name)
        targets.append(_target(ref, _latest(f"compliance_{period}", site, "value", parameter=name)))
        p = parameter(name, "emission")
        overrides.append({
            "matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [
                {"id": "displayName", "value": f"{p.label_zh} {name}"},
                {"id": "unit", "value": f"suffix: {_unit(p.unit)}" if p.unit else "none"},
                {"id": "thresholds", "value": {"mode": "absolute", "steps": permit_thresholds(site, name)}},
            ],
        })
    means = "日均 daily means" if any(lim.averaging == "24h" for lim in site.permit.values()) else "时均 hourly means"
    return _stat(
        f"{site.enterprise_name} {site.name} {site.name_en} · {site.id} ({means})",
        targets,
        defaults={"decimals": 2, "noValue": "—", "color": {"mode": "thresholds"}},
        overrides=overrides,
        options={"colorMode": "background", "textMode": "value_and_name", "graphMode": "none", "orientation": "vertical"},
        description="Compared value (converted to reference O2 where the permit says) against the permit limit; red at or above the limit.",
    )


def _events_table(park: Park) -> dict[str, Any]:
    sites = ", ".join(f'"{sid}": "{_flux_string(_label(s))}"' for sid, s in park.sites.items())
    flux = (
        "import \"dict\"\n"
        f"names = [{sites}]\n"
        "from(bucket: v.defaultBucket)\n"
        "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n"
        f"  |> filter(fn: (r) => r._measurement == \"{EVENTS_MEASUREMENT}\" and (r._field == \"message\" or r._field == \"severity\"))\n"
        "  |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")\n"
        "  |> group()\n"
        "  |> map(fn: (r) => ({r with site_name: dict.get(dict: names, key: r.site, default: r.site)}))\n"
        "  |> keep(columns: [\"_time\", \"severity\", \"kind\", \"site_name\", \"message\"])\n"
        "  |> sort(columns: [\"_time\"], desc: true)\n"
        "  |> limit(n: 100)"
    )
    return {
        "type": "table",
        "title": "最新事件 Latest events",
        "datasource": _DS,
        "targets": [_target("A", flux)],
        "fieldConfig": {"defaults": {"custom": {"align": "left"}}, "overrides": [
            {"matcher": {"id": "byName", "options": "severity"}, "properties": [
                {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                {"id": "mappings", "value": [{"type": "value", "options": {
                    "critical": {"text": "严重 critical", "color": "red", "index": 0},
                    "warning": {"text": "警告 warning", "color": "orange", "index": 1},
                    "info": {"text": "提示 info", "color": "blue", "index": 2}}}]},
            ]},
            {"matcher": {"id": "byName", "options": "message"}, "properties": [{"id": "displayName", "value": "消息 message"}]},
            {"matcher": {"id": "byName", "options": "_time"}, "properties": [{"id": "displayName", "value": "时间 time"}]},
            {"matcher": {"id": "byName", "options": "site_name"}, "properties": [{"id": "displayName", "value": "站点 site"}]},
            {"matcher": {"id": "byName", "options": "kind"}, "properties": [{"id": "displayName", "value": "类型 kind"}]},
        ]},
        "options": {"showHeader": True, "sortBy": [{"displayName": "时间 time", "desc": True}]},
    }


def _hourly_series(site: Site) -> dict[str, Any]:
    names = list(site.permit) if site.kind == "emission" else [p for p in site.parameters if p in _SERIES_PARAMETERS[site.kind]]
    wanted = " or ".join(f'r.parameter == "{n}"' for n in names)
    flux = (
        "from(bucket: v.defaultBucket)\n"
        "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n"
        f"  |> filter(fn: (r) => r._measurement == \"{_measurement('hourly_mean')}\" and r.site == \"{site.id}\" and r._field == \"value\")\n"
        f"  |> filter(fn: (r) => {wanted})\n"
        "  |> keep(columns: [\"_time\", \"_value\", \"parameter\"])"
    )
    return {
        "type": "timeseries",
        "title": f"小时均值 Hourly means — {_label(site)}",
        "datasource": _DS,
        "targets": [_target("A", flux)],
        "fieldConfig": {"defaults": {"displayName": "${__field.labels.parameter}", "custom": {"drawStyle": "line", "lineWidth": 2}}, "overrides": []},
        "options": {"legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }


# Time series worth plotting per site kind (weather and flow are context, not judged).
_SERIES_PARAMETERS: Final[dict[str, frozenset[str]]] = {
    "air": frozenset({"SO2", "NO2", "PM10", "PM2.5", "CO", "O3"}),
    "water": frozenset({"pH", "DO", "CODMn", "COD", "BOD5", "NH3-N", "TP", "TN"}),
    "emission": frozenset(),
}


# -- helpers ----------------------------------------------------------------------------------


class _Builder:
    """Lays panels out left to right on Grafana's 24-column grid, wrapping rows."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._id = 0
        self._x = 0
        self._y = 0
        self._row_h = 0

    def _next_id(self) -> int:
        self._id += 1
        return self._id

    def _newline(self) -> None:
        self._y += self._row_h
        self._x = 0
        self._row_h = 0

    def row(self, title: str, collapsed: bool = False) -> dict[str, Any]:
        self._newline()
        row = {"type": "row", "id": self._next_id(), "title": title, "collapsed": collapsed,
               "gridPos": {"h": 1, "w": _GRID_W, "x": 0, "y": self._y}, "panels": []}
        self.panels.append(row)
        self._y += 1
        return row

    def add(self, panel: dict[str, Any], *, w: int, h: int, into: dict[str, Any] | None = None) -> None:
        if self._x + w > _GRID_W:
            self._newline()
        panel = {"id": self._next_id(), **panel, "gridPos": {"h": h, "w": w, "x": self._x, "y": self._y}}
        (into["panels"] if into is not None else self.panels).append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)


def _stat(title: str, targets: list[dict[str, Any]], *, defaults: dict[str, Any], options: dict[str, Any],
          overrides: list[dict[str, Any]] | None = None, description: str = "") -> dict[str, Any]:
    opts = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "justifyMode": "center", "orientation": "auto", "wideLayout": True, **options}
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": _DS,
        "targets": targets,
        "fieldConfig": {"defaults": {"color": {"mode": "thresholds"}, **defaults}, "overrides": overrides or []},
        "options": opts,
    }


def _target(ref: str, flux: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": _DS, "query": flux}


def _latest(measurement: str, site: Site, field: str, *, parameter: str | None = None) -> str:
    lookback = LATEST_LOOKBACK["daily" if measurement.endswith("_daily") else "hourly"]
    return _flux(measurement, site, field, range_=lookback, parameter=parameter) + "\n  |> last()"


def _flux(measurement: str, site: Site, field: str, *, range_: str | None, parameter: str | None = None) -> str:
    start = f"range(start: {range_})" if range_ else "range(start: v.timeRangeStart, stop: v.timeRangeStop)"
    tag = f' and r.parameter == "{parameter}"' if parameter else ""
    return (
        "from(bucket: v.defaultBucket)\n"
        f"  |> {start}\n"
        f"  |> filter(fn: (r) => r._measurement == \"{_measurement(measurement)}\" and r.site == \"{site.id}\"{tag} and r._field == \"{field}\")"
    )


def _measurement(name: str) -> str:
    if name not in MEASUREMENTS:
        raise ValueError(f"measurement {name!r} is not in store/schema.py MEASUREMENTS")
    return name


def _outlets(park: Park) -> list[Site]:
    return [s for s in park.sites_of("emission") if s.role in ("gas_outlet", "wastewater_outlet") and s.permit]


def _label(site: Site) -> str:
    parts = [site.enterprise_name or "", site.name, site.name_en]
    return " ".join(p for p in parts if p)


def _ref(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _unit(unit: str) -> str:
    return unit.replace("m3", "m³").replace("ug", "µg")


def _flux_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _yaml(doc: dict[str, Any]) -> str:
    header = "# Generated by `python -m dashboards.grafana` (dashboards/grafana.py); do not edit by hand.\n"
    return header + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, default_flow_style=False)


if __name__ == "__main__":
    sys.exit(main())
