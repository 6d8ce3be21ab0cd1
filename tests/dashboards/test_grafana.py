"""Grafana provisioning: the exact files, their panels, thresholds from the standards and the permits,
and Flux queries that read the store's schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from dashboards.grafana import (
    DASHBOARD_UID,
    DATASOURCE_UID,
    EVENTS_MEASUREMENT,
    dashboard,
    main,
    write_provisioning,
)
from park.model import Park
from store.schema import MEASUREMENTS

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "dashboards" / "grafana"

# Fields each measurement has (store/schema.py's table) that the dashboard may read.
SCHEMA_FIELDS = {
    "hourly_mean": {"value", "valid_minutes", "valid", "zs"},
    "aqi_hourly": {"aqi", "level", "category", "color", "primary", "edition"},
    "water_class_hourly": {"klass", "target_class", "meets", "worst_items"},
    "compliance_hourly": {"value", "limit", "compliant", "exceedance_multiple", "valid_minutes"},
    "compliance_daily": {"value", "limit", "compliant", "exceedance_multiple", "valid_minutes"},
}


def test_datasource_is_influxdb2_flux_with_credentials_from_the_environment(tmp_path, park):
    write_provisioning(park, tmp_path)
    doc = yaml.safe_load((tmp_path / "datasources" / "ecopark.yaml").read_text(encoding="utf-8"))
    assert doc == {
        "apiVersion": 1,
        "datasources": [{
            "name": "ecopark InfluxDB",
            "uid": DATASOURCE_UID,
            "type": "influxdb",
            "access": "proxy",
            "url": "${INFLUXDB_V2_URL}",
            "isDefault": True,
            "editable": False,
            "jsonData": {
                "version": "Flux",
                "organization": "${INFLUXDB_V2_ORG}",
                "defaultBucket": "${INFLUXDB_V2_BUCKET}",
                "tlsSkipVerify": False,
            },
            "secureJsonData": {"token": "${INFLUXDB_V2_TOKEN}"},
        }],
    }


def test_dashboard_provider_loads_the_dashboards_folder(tmp_path, park):
    paths = write_provisioning(park, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        "dashboards/ecopark-wall.json", "dashboards/ecopark.yaml", "datasources/ecopark.yaml"]
    doc = yaml.safe_load((tmp_path / "dashboards" / "ecopark.yaml").read_text(encoding="utf-8"))
    assert doc == {"apiVersion": 1, "providers": [{
        "name": "ecopark", "orgId": 1, "folder": "ecopark", "type": "file", "disableDeletion": False,
        "allowUiUpdates": False, "updateIntervalSeconds": 60,
        "options": {"path": "/etc/grafana/provisioning/dashboards", "foldersFromFilesStructure": False},
    }]}


def test_committed_provisioning_is_what_the_generator_writes(tmp_path, park):
    write_provisioning(park, tmp_path)
    for rel in ("datasources/ecopark.yaml", "dashboards/ecopark.yaml", "dashboards/ecopark-wall.json"):
        assert (COMMITTED / rel).read_text(encoding="utf-8") == (tmp_path / rel).read_text(encoding="utf-8"), (
            f"dashboards/grafana/{rel} is stale: run python -m dashboards.grafana config/park.yaml dashboards/grafana")


def test_dashboard_identity_and_layout(park):
    d = dashboard(park)
    assert d["uid"] == DASHBOARD_UID and d["timezone"] == "Asia/Shanghai"
    assert "昆明经济技术开发区" in d["title"]
    ids = [p["id"] for p in _all_panels(d)]
    assert len(ids) == len(set(ids))
    for p in _all_panels(d):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        if p["type"] != "row":
            assert all(t["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID} for t in p["targets"])


def test_every_station_has_an_aqi_stat_with_hj633_level_colours(park):
    from rules.aqi import HJ633_2012_LEVELS  # HJ 633-2012 Table 2 / Appendix A (air-aqi.md §5)

    expected = [{"color": lv.color, "value": None if i == 0 else lv.aqi_lo} for i, lv in enumerate(HJ633_2012_LEVELS)]
    assert [s["value"] for s in expected] == [None, 51, 101, 151, 201, 301]
    for station in park.sites_of("air"):
        [panel] = [p for p in _stats(park) if p["title"].startswith("AQI —") and station.name in p["title"]]
        assert panel["fieldConfig"]["defaults"]["thresholds"] == {"mode": "absolute", "steps": expected}
        assert panel["options"]["colorMode"] == "background"
        [query] = _queries(panel)
        assert '_measurement == "aqi_hourly"' in query and f'r.site == "{station.id}"' in query and 'r._field == "aqi"' in query
        [primary] = [p for p in _stats(park) if p["title"].startswith("首要污染物") and station.name in p["title"]]
        assert any('r._field == "primary"' in q for q in _queries(primary))


def test_every_section_has_a_class_stat_red_beyond_its_target(park):
    for section in park.sites_of("water"):
        [panel] = [p for p in _stats(park) if p["title"].startswith(f"{section.name} ")]
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps == [{"color": "green", "value": None}, {"color": "red", "value": section.target_class + 1}]
        mapping = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
        assert [mapping[str(n)]["text"] for n in range(1, 7)] == ["Ⅰ类", "Ⅱ类", "Ⅲ类", "Ⅳ类", "Ⅴ类", "劣Ⅴ类"]
        [query] = _queries(panel)
        assert '_measurement == "water_class_hourly"' in query and f'r.site == "{section.id}"' in query and 'r._field == "klass"' in query


def test_every_outlet_has_a_compliance_stat_with_its_permit_limits(park):
    outlets = [s for s in park.sites_of("emission") if s.permit]
    assert len(outlets) == 10
    for outlet in outlets:
        [panel] = [p for p in _stats(park) if f"· {outlet.id} " in p["title"]]
        assert outlet.enterprise_name in panel["title"]
        overrides = {o["matcher"]["options"]: {prop["id"]: prop["value"] for prop in o["properties"]}
                     for o in panel["fieldConfig"]["overrides"]}
        queries = {t["refId"]: t["query"] for t in panel["targets"]}
        assert len(queries) == len(outlet.permit)
        for name, limit in outlet.permit.items():
            ref = next(r for r, q in queries.items() if f'r.parameter == "{name}"' in q)
            measurement = "compliance_daily" if limit.averaging == "24h" else "compliance_hourly"
            assert f'_measurement == "{measurement}"' in queries[ref] and f'r.site == "{outlet.id}"' in queries[ref]
            steps = overrides[ref]["thresholds"]["steps"]
            if limit.lower is not None:  # pH 6–9
                assert steps == [{"color": "red", "value": None}, {"color": "green", "value": limit.lower},
                                 {"color": "red", "value": limit.upper}]
            else:
                assert steps == [{"color": "green", "value": None}, {"color": "red", "value": limit.upper}]
    nox = next(s for s in outlets if s.id == "YNBY-G1").permit["NOx"]
    assert nox.upper == 150  # GB 13271-2014 Table 3 special limit, from config/park.yaml


def test_events_table_and_hourly_means(park):
    d = dashboard(park)
    [events] = [p for p in _all_panels(d) if p["type"] == "table"]
    [query] = _queries(events)
    assert EVENTS_MEASUREMENT == "event"  # what store/influx.py writes
    assert f'_measurement == "{EVENTS_MEASUREMENT}"' in query and 'sort(columns: ["_time"], desc: true)' in query
    [row] = [p for p in d["panels"] if p["type"] == "row" and p["collapsed"]]
    series = [p for p in row["panels"] if p["type"] == "timeseries"]
    sites = {s.id for s in park.sites_of("air") + park.sites_of("water")} | {s.id for s in park.sites_of("emission") if s.permit}
    assert {re.search(r'r\.site == "([^"]+)"', _queries(p)[0]).group(1) for p in series} == sites
    assert all('_measurement == "hourly_mean"' in _queries(p)[0] for p in series)


def test_flux_queries_read_only_the_schema(park):
    seen: set[str] = set()
    for panel in _all_panels(dashboard(park)):
        for query in _queries(panel):
            assert query.startswith(("from(bucket: v.defaultBucket)", 'import "dict"'))
            measurements = re.findall(r'r\._measurement == "([^"]+)"', query)
            assert len(measurements) == 1
            m = measurements[0]
            seen.add(m)
            assert m in MEASUREMENTS or m == EVENTS_MEASUREMENT
            for field in re.findall(r'r\._field == "([^"]+)"', query):
                assert field in SCHEMA_FIELDS.get(m, {"message", "severity"}), (m, field)
    assert seen == {"aqi_hourly", "water_class_hourly", "compliance_hourly", "compliance_daily", "hourly_mean", EVENTS_MEASUREMENT}


def test_command_line_writes_files_and_reports_a_bad_config_in_one_line(tmp_path, capsys):
    assert main([str(REPO / "config" / "park.yaml"), str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "dashboards" / "ecopark-wall.json").read_text(encoding="utf-8"))["uid"] == DASHBOARD_UID
    bad = tmp_path / "bad.yaml"
    bad.write_text("park: {id: x}\n", encoding="utf-8")
    capsys.readouterr()
    assert main([str(bad), str(tmp_path / "out2")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing key" in err


# -- helpers ----------------------------------------------------------------------------------


def _all_panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def _stats(park: Park) -> list[dict]:
    return [p for p in _all_panels(dashboard(park)) if p["type"] == "stat"]


def _queries(panel: dict) -> list[str]:
    return [t["query"] for t in panel.get("targets", [])]
