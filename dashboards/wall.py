"""The monitoring wall: one page for the environment bureau's big screen, read across a room.

``WallPage`` is a small aiohttp server over a ``store.base.Store``:

- ``GET /`` the page (``dashboards/static/``: plain HTML, CSS and JS, no build step, no CDN —
  the wall runs offline);
- ``GET /api/wall`` a JSON snapshot of everything the page shows (``WallPage.snapshot``);
- ``GET /api/stream`` Server-Sent Events: the snapshot, pushed whenever it changes (the store is
  polled every ``refresh_s`` seconds by one task shared by all viewers);
- ``GET /healthz``.

The page reads only what ``store/schema.py`` defines: the newest ``aqi_hourly`` / ``aqi_daily``
per air station, ``water_class_hourly`` / ``water_class_daily`` per river section,
``compliance_hourly`` / ``compliance_daily`` per outlet and parameter, ``store.events`` and
``store.freshness``. It computes no standard: AQI level, category and colour come with the result
(``rules/aqi.py`` wrote them); the tables below only translate them for display.

Freshness: a site is *stale* when its newest raw reading is older than ``stale_factor`` times its
expected reporting interval. The demo runs a simulated clock far ahead of (or behind) wall time,
so with ``relative_freshness=True`` ages are measured from the newest reading anywhere in the park
instead of from now.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import inspect
import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from aiohttp import web

from park.model import Park, Site
from park.parameters import parameter
from store.base import Store
from store.schema import Event, Result

STATIC_DIR: Final[Path] = Path(__file__).resolve().parent / "static"

# HJ 633-2012 Table 2 and Appendix A (identical in HJ 633-2026), ``reference/air-aqi.md`` §5:
# level → (category, customary English category, colour). The same table as
# ``rules.aqi.HJ633_2012_LEVELS`` (tests/dashboards check they agree); repeated here because
# ``dashboards/`` may import only ``park/`` and ``store/`` (DESIGN.md, rooms).
HJ633_APPENDIX_A_LEVELS: Final[Mapping[int, tuple[str, str, str]]] = MappingProxyType({
    1: ("优", "Excellent", "#00E400"),
    2: ("良", "Good", "#FFFF00"),
    3: ("轻度污染", "Lightly polluted", "#FF7E00"),
    4: ("中度污染", "Moderately polluted", "#FF0000"),
    5: ("重度污染", "Heavily polluted", "#99004C"),
    6: ("严重污染", "Severely polluted", "#7E0023"),
})
# HJ 633-2012 Table 2: the lowest AQI of each level (level I from 0; HJ 633-2026 says 1).
HJ633_LEVEL_LOWER_AQI: Final[Mapping[int, int]] = MappingProxyType({1: 0, 2: 51, 3: 101, 4: 151, 5: 201, 6: 301})
HJ633_LEVEL_NUMERALS: Final[Mapping[int, str]] = MappingProxyType({1: "一级", 2: "二级", 3: "三级", 4: "四级", 5: "五级", 6: "六级"})

# GB 3838-2002 class names as ``rules.water.CLASS_NAMES`` writes them (劣Ⅴ coded as class 6).
GB3838_CLASS_NAMES: Final[Mapping[int, str]] = MappingProxyType({1: "Ⅰ", 2: "Ⅱ", 3: "Ⅲ", 4: "Ⅳ", 5: "Ⅴ", 6: "劣Ⅴ"})
# 环办〔2011〕22号 Table 1 (``reference/water-gb3838.md`` §3, ``rules.water.ASSESSMENT_2011_STATUS``):
# class → (quality status, English, colour name). The method names colours only; the hex values
# are ours, chosen to read on the wall's dark background.
HJ2011_22_STATUS: Final[Mapping[int, tuple[str, str, str]]] = MappingProxyType({
    1: ("优", "excellent", "blue"),
    2: ("优", "excellent", "blue"),
    3: ("良好", "good", "green"),
    4: ("轻度污染", "light pollution", "yellow"),
    5: ("中度污染", "moderate pollution", "orange"),
    6: ("重度污染", "heavy pollution", "red"),
})
STATUS_COLOUR_HEX: Final[Mapping[str, str]] = MappingProxyType({
    "blue": "#1E90FF", "green": "#22C55E", "yellow": "#FACC15", "orange": "#FB923C", "red": "#EF4444",
})

# Expected reporting interval per site role, minutes: stations, sections and outlets send minute
# data (HJ 212 2051); meters are read hourly (2061). Override with ``expected_interval_min``.
DEFAULT_EXPECTED_INTERVAL_MIN: Final[Mapping[str, float]] = MappingProxyType({
    "station": 1.0,
    "section": 1.0,
    "gas_outlet": 1.0,
    "wastewater_outlet": 1.0,
    "water_meter": 60.0,
    "energy_meter": 60.0,
})
DEFAULT_STALE_FACTOR: Final[float] = 2.0
DEFAULT_EVENT_LIMIT: Final[int] = 30
# An idle SSE connection gets a comment this often so proxies and browsers keep it open.
SSE_KEEPALIVE_S: Final[float] = 15.0

StatsSource = Callable[[], "Mapping[str, Any] | Awaitable[Mapping[str, Any]]"]
AnnualSource = Callable[[], "list[Mapping[str, Any]] | None | Awaitable[list[Mapping[str, Any]] | None]"]

_log = logging.getLogger(__name__)


class WallPage:
    """The wall page server for one park over one store.

    ``stats``: optional callable (sync or async) giving counters to show, e.g. dead-letter counts.
    ``annual``: optional callable giving the year-end HJ 274 indicator rows (dicts with
    ``indicator``, ``indicator_en``, ``value``, ``unit``, ``limit``, ``passed``); without one the
    panel shows "—". ``expected_interval_min`` maps a site role (or a site id) to its reporting
    interval in minutes; a site is stale beyond ``stale_factor`` intervals.
    """

    def __init__(
        self,
        park: Park,
        store: Store,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        refresh_s: float = 2.0,
        stats: StatsSource | None = None,
        annual: AnnualSource | None = None,
        relative_freshness: bool = False,
        expected_interval_min: Mapping[str, float] | None = None,
        stale_factor: float = DEFAULT_STALE_FACTOR,
        event_limit: int = DEFAULT_EVENT_LIMIT,
    ) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be positive, got {refresh_s}")
        if stale_factor <= 0:
            raise ValueError(f"stale_factor must be positive, got {stale_factor}")
        self.park = park
        self.store = store
        self.host = host
        self.port = port
        self.refresh_s = refresh_s
        self.stats = stats
        self.annual = annual
        self.relative_freshness = relative_freshness
        self.expected_interval_min = {**DEFAULT_EXPECTED_INTERVAL_MIN, **(expected_interval_min or {})}
        self.stale_factor = stale_factor
        self.event_limit = event_limit
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._changed = asyncio.Condition()
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_json: str = ""
        self._digest: str = ""
        self._version = 0

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8080/`` (the bound port after ``start``)."""
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> None:
        """Bind and serve; ``port=0`` picks a free port, readable from ``.port`` afterwards."""
        if self._runner is not None:
            return
        self._closing.clear()
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/api/wall", self._api_wall)
        app.router.add_get("/api/stream", self._api_stream)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_static("/static/", STATIC_DIR, show_index=False)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(exc.errno, f"wall page cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        sockets = getattr(site._server, "sockets", None) or []  # the bound port when port=0
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._runner = runner
        await self._refresh()
        self._poller = asyncio.create_task(self._poll(), name="wall-poller")

    async def stop(self) -> None:
        """Stop polling, end open event streams and close the server (the store stays open)."""
        if self._runner is None:
            return
        self._closing.set()
        async with self._changed:
            self._changed.notify_all()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> WallPage:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the snapshot ---------------------------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        """Everything the wall shows, as JSON-ready data (shape: see ``tests/dashboards``)."""
        m = self.store
        aqi_h, aqi_d, water_h, water_d, comp_h, comp_d = await asyncio.gather(
            m.latest_results("aqi_hourly"),
            m.latest_results("aqi_daily"),
            m.latest_results("water_class_hourly"),
            m.latest_results("water_class_daily"),
            m.latest_results("compliance_hourly"),
            m.latest_results("compliance_daily"),
        )
        events = await m.events(limit=self.event_limit)
        fresh = await m.freshness()
        stats = await _optional(self.stats, "stats")
        annual = await _optional(self.annual, "annual indicators")

        air = [self._air(s, _by_site(aqi_h).get(s.id), _by_site(aqi_d).get(s.id)) for s in self.park.sites_of("air")]
        water = [self._water(s, _by_site(water_h).get(s.id), _by_site(water_d).get(s.id)) for s in self.park.sites_of("water")]
        comp_h_idx, comp_d_idx = _by_site_parameter(comp_h), _by_site_parameter(comp_d)
        outlets = [
            self._outlet(s, comp_h_idx, comp_d_idx)
            for s in self.park.sites_of("emission")
            if s.role in ("gas_outlet", "wastewater_outlet")
        ]
        reference, freshness = self._freshness(fresh)
        return {
            "park": {
                "id": self.park.id,
                "name": self.park.name,
                "name_en": self.park.name_en,
                "area_km2": self.park.area_km2,
                "timezone": self.park.timezone,
            },
            "reference_time": _iso(reference),
            "relative_freshness": self.relative_freshness,
            "air": air,
            "water": water,
            "outlets": outlets,
            "events": [self._event(e) for e in events],
            "freshness": freshness,
            "annual": [dict(row) for row in annual] if annual else None,
            "counters": {str(k): _json_value(v) for k, v in (stats or {}).items()},
            "store_ok": True,
        }

    def _air(self, site: Site, hourly: Result | None, daily: Result | None) -> dict[str, Any]:
        return {
            "site": site.id, "name": site.name, "name_en": site.name_en,
            "hourly": self._aqi(hourly), "daily": self._aqi(daily),
        }

    def _aqi(self, result: Result | None) -> dict[str, Any] | None:
        if result is None:
            return None
        f = result.fields
        level = _as_int(f.get("level"))
        category, category_en, colour = HJ633_APPENDIX_A_LEVELS.get(level, (None, None, None)) if level else (None, None, None)
        primary = [p.strip() for p in str(f.get("primary") or "").split(",") if p.strip()]
        return {
            "ts": _iso(result.ts),
            "aqi": _as_int(f.get("aqi")),
            "level": level,
            "level_name": HJ633_LEVEL_NUMERALS.get(level) if level else None,
            "category": f.get("category") or category,
            "category_en": f.get("category_en") or category_en,
            "color": f.get("color") or colour,
            "primary": primary,
            "primary_zh": [_air_label(p) for p in primary],
            "iaqi": {k[len("iaqi_"):]: _json_value(v) for k, v in f.items() if k.startswith("iaqi_")},
            "edition": f.get("edition"),
        }

    def _water(self, site: Site, hourly: Result | None, daily: Result | None) -> dict[str, Any]:
        target = site.target_class
        return {
            "site": site.id, "name": site.name, "name_en": site.name_en,
            "target_class": target,
            "target": GB3838_CLASS_NAMES.get(target) if target else None,
            "hourly": self._klass(hourly, target), "daily": self._klass(daily, target),
        }

    def _klass(self, result: Result | None, site_target: int | None) -> dict[str, Any] | None:
        if result is None:
            return None
        f = result.fields
        number = _class_number(f.get("klass"))
        target = _as_int(f.get("target_class")) or site_target
        meets = f.get("meets")
        if not isinstance(meets, bool):
            meets = number <= target if number and target else None
        status = HJ2011_22_STATUS.get(number) if number else None
        worst = f.get("worst_items")
        return {
            "ts": _iso(result.ts),
            "klass": GB3838_CLASS_NAMES.get(number) if number else (str(f.get("klass")) if f.get("klass") is not None else None),
            "klass_number": number,
            "target": GB3838_CLASS_NAMES.get(target) if target else None,
            "target_class": target,
            "meets": meets,
            "status": status[0] if status else None,
            "status_en": status[1] if status else None,
            "status_color": STATUS_COLOUR_HEX[status[2]] if status else None,
            "worst_items": [w.strip() for w in str(worst).split(",") if w.strip()] if worst else [],
        }

    def _outlet(self, site: Site, hourly: dict[tuple[str, str], Result], daily: dict[tuple[str, str], Result]) -> dict[str, Any]:
        names = list(site.permit) + [p for p in site.parameters if p not in site.permit and ((site.id, p) in hourly or (site.id, p) in daily)]
        params = []
        for name in names:
            p = parameter(name, "emission")
            permit = site.permit.get(name)
            h, d = hourly.get((site.id, name)), daily.get((site.id, name))
            # A wastewater permit is judged on daily means, a gas permit on hourly means.
            judged = d if (permit and permit.averaging == "24h" and d is not None) else (h or d)
            params.append({
                "parameter": name,
                "label": p.label_zh,
                "unit": p.unit,
                "permit": {"upper": permit.upper, "lower": permit.lower, "averaging": permit.averaging} if permit else None,
                "hourly": _compliance(h),
                "daily": _compliance(d),
                "judged": "daily" if judged is d and d is not None else ("hourly" if h is not None else None),
            })
        return {
            "site": site.id, "name": site.name, "name_en": site.name_en, "role": site.role,
            "enterprise": site.enterprise, "enterprise_name": site.enterprise_name,
            "parameters": params,
        }

    def _event(self, e: Event) -> dict[str, Any]:
        site = self.park.sites.get(e.site)
        return {
            "id": e.id, "kind": e.kind, "site": e.site,
            "site_name": site.name if site else e.site,
            "site_name_en": site.name_en if site else "",
            "enterprise_name": site.enterprise_name if site else None,
            "ts": _iso(e.ts), "severity": e.severity, "message": e.message,
        }

    def _freshness(self, newest: Mapping[str, dt.datetime]) -> tuple[dt.datetime, list[dict[str, Any]]]:
        now = dt.datetime.now(dt.timezone.utc)
        known = [ts for sid, ts in newest.items() if sid in self.park.sites]
        reference = max(known) if (self.relative_freshness and known) else now
        rows = []
        for site in self.park.sites.values():
            expected = self.expected_interval_min.get(site.id, self.expected_interval_min.get(site.role, 1.0))
            last = newest.get(site.id)
            age = max(0.0, (reference - last).total_seconds() / 60.0) if last else None
            rows.append({
                "site": site.id, "name": site.name, "name_en": site.name_en, "kind": site.kind, "role": site.role,
                "enterprise_name": site.enterprise_name,
                "last": _iso(last) if last else None,
                # whole minutes: the snapshot (and the page) changes once a minute, not every poll
                "age_min": math.floor(age) if age is not None else None,
                "expected_min": expected,
                "stale": age is None or age > self.stale_factor * expected,
            })
        return reference, rows

    # -- serving --------------------------------------------------------------------------------

    async def _refresh(self) -> bool:
        """Recompute the snapshot; True when it changed (ignoring nothing: every field counts)."""
        try:
            snap = await self.snapshot()
        except Exception as exc:  # a store outage must not take the wall down: show it instead
            _log.warning("wall page: store read failed: %s", exc)
            if self._snapshot is None:
                return False
            snap = {**self._snapshot, "store_ok": False, "store_error": f"{type(exc).__name__}: {exc}"}
        text = json.dumps(snap, ensure_ascii=False, separators=(",", ":"), default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return False
        self._version += 1
        snap = {**snap, "version": self._version}
        self._snapshot = snap
        self._snapshot_json = json.dumps(snap, ensure_ascii=False, separators=(",", ":"), default=str)
        self._digest = digest
        async with self._changed:
            self._changed.notify_all()
        return True

    async def _poll(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.refresh_s)
            if not self._closing.is_set():
                try:
                    await self._refresh()
                except Exception:  # keep polling: the next round may succeed
                    _log.exception("wall page: refresh failed")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def _api_wall(self, request: web.Request) -> web.Response:
        # The poller keeps the snapshot at most refresh_s old: polling viewers never hit the store.
        if not self._snapshot_json:
            await self._refresh()
        return web.Response(text=self._snapshot_json or "{}", content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _healthz(self, request: web.Request) -> web.Response:
        ok = bool(self._snapshot and self._snapshot.get("store_ok"))
        return web.json_response({"status": "ok" if ok else "degraded", "version": self._version}, status=200 if ok else 503)

    async def _api_stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        })
        await resp.prepare(request)
        sent = 0
        try:
            await resp.write(f"retry: {int(self.refresh_s * 1000)}\n\n".encode())
            while not self._closing.is_set():
                if self._version != sent and self._snapshot_json:
                    sent = self._version
                    await resp.write(f"id: {sent}\nevent: snapshot\ndata: {self._snapshot_json}\n\n".encode())
                async with self._changed:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            self._changed.wait_for(lambda: self._version != sent or self._closing.is_set()),
                            SSE_KEEPALIVE_S,
                        )
                if self._version == sent and not self._closing.is_set():
                    await resp.write(b": keepalive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp


# -- helpers ----------------------------------------------------------------------------------


async def _optional(source: Callable[[], Any] | None, what: str) -> Any:
    """A caller-supplied extra (counters, annual table): its failure must not blank the wall."""
    if source is None:
        return None
    try:
        value = source()
        return await value if inspect.isawaitable(value) else value
    except Exception as exc:
        _log.warning("wall page: %s failed: %s", what, exc)
        return None


def _by_site(results: list[Result]) -> dict[str, Result]:
    out: dict[str, Result] = {}
    for r in results:
        if r.site not in out or r.ts > out[r.site].ts:
            out[r.site] = r
    return out


def _by_site_parameter(results: list[Result]) -> dict[tuple[str, str], Result]:
    out: dict[tuple[str, str], Result] = {}
    for r in results:
        key = (r.site, r.tags.get("parameter", ""))
        if key not in out or r.ts > out[key].ts:
            out[key] = r
    return out


def _air_label(name: str) -> str:
    try:
        return parameter(name, "air").label_zh
    except ValueError:
        return ""


def _compliance(result: Result | None) -> dict[str, Any] | None:
    if result is None:
        return None
    f = result.fields
    compliant = f.get("compliant")
    return {
        "ts": _iso(result.ts),
        "value": _json_value(f.get("value")),
        "limit": _json_value(f.get("limit")),
        "compliant": compliant if isinstance(compliant, bool) else None,
        "multiple": _json_value(f.get("exceedance_multiple")),
        "valid_minutes": _json_value(f.get("valid_minutes")),
        "running": bool(f.get("running")),
    }


_ROMAN_TO_CLASS: Final[Mapping[str, int]] = MappingProxyType({
    **{name: n for n, name in GB3838_CLASS_NAMES.items()},
    "I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "劣V": 6, ">V": 6,
})


def _class_number(value: object) -> int | None:
    """A class as stored (1…6, or its name Ⅲ / III / 劣Ⅴ) → 1…6."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        n = int(value)
        return n if n in GB3838_CLASS_NAMES else None
    return _ROMAN_TO_CLASS.get(str(value).strip())


def _as_int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _json_value(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _iso(ts: dt.datetime) -> str:
    return ts.isoformat()
