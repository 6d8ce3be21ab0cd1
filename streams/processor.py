"""The park's stream processing, free of Faust: readings in, results and events out.

``ParkProcessor.process(batch)`` is what a Faust agent calls for each batch it takes from a
readings topic. For every reading it:

1. keeps the raw reading in the store (idempotent upsert: a duplicate changes nothing);
2. files each value into its site's minute buckets — one value per minute, so a duplicate or a
   re-sent reading overwrites itself;
3. recomputes every hour the batch touched, and from those the results that depend on them:
   air — hourly means, the 8 h O3 and 24 h PM moving means, the real-time AQI of that hour and the
   daily means and daily AQI of its day; water — hourly means and the section class of the hour
   and day; enterprise outlets — hourly means, hourly compliance of stack gases at reference O2,
   daily compliance of wastewater (flow-weighted) and pH per hour; meters — hourly consumption;
4. emits events: AQI at level III or worse, a section below its target, an exceedance, flags of
   maintenance or fault, a reading older than the lateness horizon, a site gone silent.

**Why the state is a cache, not the truth.** Tansu restores Faust tables unreliably
(STACK-NOTES.md), and a worker may be killed mid-window. So raw readings are written to the store
*before* anything is derived from them, and every in-memory bucket is a cache that is refilled from
the store on a miss: after a restart (or on another worker after a rebalance) the first reading of
an hour loads that hour's stored readings and recomputes it whole. Correctness never depends on
what the process remembered. Kafka offsets are committed after the batch, so a crash replays the
batch, and replaying is idempotent.

**A reading hours late** is filed into its hour like any other; the hour and every result that
depends on it (later moving means, the day) are recomputed. A reading older than the park's
lateness horizon (relative to the site's newest reading) is kept raw and reported as a
``late_reading`` event, but not recomputed: derived results that old may already be in reports.

Every number comes from ``rules/``. Results follow ``store/schema.py``; hours are labelled by their
start (``rules/periods.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from park.model import Park, Site
from park.reading import Reading
from rules import aqi as aqi_rules
from rules import emission as emission_rules
from rules import validity
from rules import water as water_rules
from store.base import Store, StoreUnavailable
from store.schema import Event, FieldValue, Result

log = logging.getLogger("ecopark.streams")

HOUR = dt.timedelta(hours=1)
DAY_HOURS = 24
# Hours of minute data kept in memory per site; older hours are reloaded from the store when a late
# reading touches them.
MINUTE_CACHE_HOURS = 3
# Hours of hourly means kept in memory per site: a day plus the longest moving window.
HOURLY_CACHE_HOURS = 2 * DAY_HOURS + 1
AIR_POLLUTANTS = aqi_rules.POLLUTANTS
# HJ 212 flags that call for a maintenance/fault event (reference/hj212.md §7).
ATTENTION_FLAGS = frozenset("MDCFB")
# AQI levels from which an event is raised: III 轻度污染 and worse (HJ 633 Table of levels).
AQI_EVENT_LEVEL = 3
METER_PARAMETERS = ("water_m3", "energy_kwh")


@dataclass(frozen=True, slots=True)
class HourValue:
    """One parameter's hourly mean: ``value`` (canonical unit) and ``zs`` (converted, stacks)."""

    value: float | None
    valid_minutes: int
    valid: bool
    zs: float | None = None


@dataclass
class Output:
    results: list[Result] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    late: int = 0


async def process_with_retry(
    processor: "ParkProcessor",
    readings: Sequence[Reading],
    *,
    initial_s: float = 0.5,
    max_s: float = 30.0,
    log: logging.Logger = log,
) -> Output:
    """Process a batch; while the store is unavailable, retry with backoff and hold the stream.

    Holding the stream is the buffer: Kafka keeps the readings and no offset is committed past
    this batch, so a store outage of a minute (or an hour) loses nothing and costs no memory here.
    Processing the batch again after a partial write is idempotent.
    """
    delay = initial_s
    while True:
        try:
            return await processor.process(readings)
        except StoreUnavailable as exc:
            processor.counters["store_retries"] += 1
            log.warning("store unavailable (%s): retrying a batch of %d readings in %.1f s", exc, len(readings), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_s)


class ParkProcessor:
    """Turns batches of validated readings into stored results and events for one park.

    ``store`` is written to and read back on cache misses. ``pm_realtime`` is the HJ 633-2012
    real-time PM method (``24h_moving`` or ``1h_on_24h_bp``). ``silence_after`` is how long a site
    may stay quiet (in reading time) before a ``silent`` event; ``silence_grace_s`` is how long it
    must also have been quiet on the wall clock (partitions are consumed unevenly, so a site can lag
    the park in reading time by a second's worth of a fast simulation without being silent).
    """

    def __init__(
        self,
        park: Park,
        store: Store,
        *,
        pm_realtime: str = "24h_moving",
        silence_after: dt.timedelta = dt.timedelta(hours=2),
        silence_grace_s: float = 3.0,
    ) -> None:
        if pm_realtime not in aqi_rules.PM_REALTIME_METHODS:
            raise ValueError(f"unknown pm_realtime {pm_realtime!r}: expected one of {', '.join(aqi_rules.PM_REALTIME_METHODS)}")
        self.park = park
        self.store = store
        self.pm_realtime = pm_realtime
        self.silence_after = silence_after
        self.silence_grace_s = silence_grace_s
        self.lateness = dt.timedelta(hours=park.lateness_horizon_h)
        self.tz = park.tz
        self._sites: dict[str, _SiteState] = {}
        self._silent: dict[str, dt.datetime] = {}
        self.counters: dict[str, int] = defaultdict(int)

    # -- public ----------------------------------------------------------------------------------

    async def process(self, readings: Sequence[Reading]) -> Output:
        """Store, file and derive one batch; returns what was written."""
        out = Output()
        if not readings:
            return out
        unseen = {r.site for r in readings if r.site not in self._sites and r.site in self.park.sites}
        if unseen:  # before the batch is stored, so the batch's own readings do not count
            await self._recall_newest(unseen)
        await self.store.write_readings(readings)
        dirty: dict[str, set[dt.datetime]] = defaultdict(set)
        daily: dict[str, list[Reading]] = defaultdict(list)
        attention: dict[tuple[str, dt.datetime], set[str]] = defaultdict(set)
        for reading in readings:
            site = self.park.sites.get(reading.site)
            if site is None:  # validated upstream; a config change between collector and worker
                self.counters["unknown_site"] += 1
                continue
            state = self._state(site)
            if state.newest is not None and reading.ts < state.newest - self.lateness:
                out.late += 1
                out.events.append(self._late_event(site, reading, state.newest))
                continue
            if state.newest is None or reading.ts > state.newest:
                state.newest = reading.ts
            state.heard_at = time.monotonic()
            hour = self._hour(reading.ts)
            flags = {v.flag for v in reading.values.values()} & ATTENTION_FLAGS
            if flags:
                attention[(site.id, hour)] |= flags
            if reading.interval == "1d":
                daily[site.id].append(reading)
                continue
            if reading.interval == "1h":
                state.hour_readings.setdefault(hour, {}).update(reading.values)
            else:
                state.file_minute(hour, reading)
            dirty[site.id].add(hour)
        self.counters["readings"] += len(readings)
        for site_id in list(dirty):
            # hours left unjudged while they were running are judged now that they are over
            state = self._sites[site_id]
            finished = {h for h in state.unfinished if state.newest is not None and h + HOUR <= state.newest}
            state.unfinished -= finished
            dirty[site_id] |= finished

        for site_id, hours in dirty.items():
            site = self.park.sites[site_id]
            await self._derive(site, sorted(hours), out)
        for site_id, rs in daily.items():
            out.results.extend(self._daily_readings(self.park.sites[site_id], rs))
        for (site_id, hour), flags in attention.items():
            out.events.append(self._attention_event(self.park.sites[site_id], hour, flags))
        out.events.extend(self._recoveries(dirty))

        if out.results:
            await self.store.write_results(out.results)
        if out.events:
            await self.store.write_events(out.events)
        self._evict()
        return out

    async def check_silence(self) -> list[Event]:
        """Sites whose newest reading lags the park's newest by more than ``silence_after``.

        Judged in reading time, not wall time, so a simulation running faster than real time and a
        back-fill after an outage both behave; returns (and stores) the new ``silent`` events.
        The newest reading of every site comes from the store as well as from this process, so a
        site that fell silent before a restart (or is read by another worker) is still seen; the
        event id is the site and its last reading, so workers reporting the same silence agree.
        """
        newest: dict[str, dt.datetime] = {
            site_id: ts.astimezone(self.tz) for site_id, ts in (await self.store.freshness()).items()
            if site_id in self.park.sites
        }
        for site_id, state in self._sites.items():
            if state.newest is not None and (site_id not in newest or state.newest > newest[site_id]):
                newest[site_id] = state.newest
        if not newest:
            return []
        park_now = max(newest.values())
        events = []
        for site_id, last in newest.items():
            if park_now - last <= self.silence_after:
                continue
            state = self._sites.get(site_id)
            if state is not None and state.heard_at is not None and time.monotonic() - state.heard_at < self.silence_grace_s:
                continue
            if self._silent.get(site_id) == last:
                continue
            self._silent[site_id] = last
            site = self.park.sites[site_id]
            hours = (park_now - last) / HOUR
            events.append(Event(
                id=f"silent/{site_id}/{_stamp(last)}", kind="silent", site=site_id, ts=last,
                severity="warning",
                message=f"{_label(site)} 无数据 {hours:.1f} 小时 / silent for {hours:.1f} h since {_local(last, self.tz)}",
                data={"last_reading": last.isoformat(), "silent_h": round(hours, 2)},
            ))
        if events:
            await self.store.write_events(events)
        return events

    # -- derivation ------------------------------------------------------------------------------

    async def _derive(self, site: Site, hours: list[dt.datetime], out: Output) -> None:
        state = self._state(site)
        for hour in hours:
            means = await self._recompute_hour(site, state, hour)
            out.results.extend(self._hourly_results(site, hour, means))
        if site.role == "station":
            await self._derive_air(site, state, hours, out)
        elif site.role == "section":
            await self._derive_water(site, state, hours, out)
        elif site.role == "gas_outlet":
            await self._derive_gas(site, state, hours, out)
        elif site.role == "wastewater_outlet":
            await self._derive_wastewater(site, state, hours, out)

    async def _recompute_hour(self, site: Site, state: "_SiteState", hour: dt.datetime) -> dict[str, HourValue]:
        if hour in state.hour_readings and hour not in state.minutes:
            # an HJ 212 hourly value (2061) is the hour's mean as the analyser judged it: a whole
            # valid hour when its flag counts, no valid minute when it does not
            means = {}
            for p, v in state.hour_readings[hour].items():
                ok = validity.flag_counts_as_valid(v.flag)
                means[p] = HourValue(v.v if ok else None, validity.MINUTES_PER_HOUR if ok else 0, ok, v.zs if ok else None)
        else:
            if not state.minutes_loaded(hour):
                await self._load_minutes(site, state, hour)
            means = {}
            for param, minutes in state.minutes.get(hour, {}).items():
                if param in METER_PARAMETERS:
                    means[param] = _consumption(minutes)
                    continue
                pairs = [(m[0], m[1]) for m in minutes.values()]
                mean = validity.hourly_mean(pairs)
                zs = None
                if any(m[2] is not None for m in minutes.values()):
                    zs = validity.hourly_mean([(m[2], m[1]) for m in minutes.values()]).value
                means[param] = HourValue(mean.value, mean.valid_minutes, mean.valid, zs)
        state.hourly[hour] = means
        return means

    async def _recall_newest(self, site_ids: set[str]) -> None:
        """A site new to this process (restart, rebalance) takes its newest reading from the store:
        the lateness horizon must not depend on what the process remembered, or a replayed
        straggler would reopen hours the crashed worker had refused to."""
        stored = await self.store.freshness()
        for site_id in site_ids:
            newest = stored.get(site_id)  # the store answers in UTC; readings come in park time
            self._state(self.park.sites[site_id]).newest = newest.astimezone(self.tz) if newest else None

    async def _load_minutes(self, site: Site, state: "_SiteState", hour: dt.datetime) -> None:
        """Refill an hour's minute buckets from the store (cache miss: restart, rebalance, late)."""
        stored = await self.store.readings(site.id, hour, hour + HOUR)
        buckets = state.minutes.setdefault(hour, {})
        for r in stored:
            if r.interval not in ("1min", "rt"):
                continue
            minute = int((r.ts - hour).total_seconds() // 60)
            bucket = buckets.setdefault(r.parameter, {})
            bucket.setdefault(minute, (r.value, r.flag, r.zs))  # what the batch filed is newer
        state.loaded.add(hour)
        self.counters["hours_loaded"] += 1

    async def _hour_window(self, site: Site, state: "_SiteState", start: dt.datetime, n: int) -> list[dict[str, HourValue]]:
        """Hourly means of ``n`` hours from ``start``, loading hours missing from the cache."""
        hours = [start + i * HOUR for i in range(n)]
        missing = [h for h in hours if h not in state.hourly and h not in state.hourly_absent]
        if missing:
            await self._load_hourly(site, state, min(missing), max(missing) + HOUR)
        return [state.hourly.get(h, {}) for h in hours]

    async def _load_hourly(self, site: Site, state: "_SiteState", start: dt.datetime, end: dt.datetime) -> None:
        stored = await self.store.results("hourly_mean", start, end, site=site.id)
        found: dict[dt.datetime, dict[str, HourValue]] = defaultdict(dict)
        for r in stored:
            f = r.fields
            found[self._hour(r.ts)][r.tags.get("parameter", "")] = HourValue(
                _num(f.get("value")), int(f.get("valid_minutes") or 0), bool(f.get("valid")), _num(f.get("zs")))
        h = start
        while h < end:
            if h in found:
                state.hourly.setdefault(h, found[h])
            elif h not in state.hourly:
                state.hourly_absent.add(h)
            h += HOUR
        self.counters["hourly_loads"] += 1

    # air ----------------------------------------------------------------------------------------

    async def _derive_air(self, site: Site, state: "_SiteState", hours: list[dt.datetime], out: Output) -> None:
        newest_hour = self._hour(state.newest) if state.newest else hours[-1]
        affected: set[dt.datetime] = set()
        for h in hours:
            # a changed hour changes the moving means (and so the AQI) of the 23 hours after it
            last = min(h + (DAY_HOURS - 1) * HOUR, newest_hour)
            t = h
            while t <= last:
                affected.add(t)
                t += HOUR
        for a in sorted(affected):
            window = await self._hour_window(site, state, a - (DAY_HOURS - 1) * HOUR, DAY_HOURS)
            now = window[-1]
            if not now:
                continue
            conc: dict[str, float | None] = {p: _valid(now.get(p)) for p in AIR_POLLUTANTS}
            if all(v is None for v in conc.values()) and self._running(state, a):
                state.unfinished.add(a)  # nothing to judge yet: no NA tile on the wall mid-hour
                continue
            o3_8h = validity.moving_8h_mean([_valid(w.get("O3")) for w in window[-8:]])
            conc["O3_8h"] = o3_8h
            for p in ("PM10", "PM2.5", "SO2"):
                dm = validity.daily_mean([_valid(w.get(p)) for w in window])
                conc[f"{p}_24h"] = dm.value
                if p != "SO2" and p in site.parameters:
                    out.results.append(self._result("moving_mean", site, a, {"value": dm.value, "valid_hours": dm.valid_hours, "valid": dm.valid}, parameter=p, window="24h"))
            if "O3" in site.parameters:
                n_valid = sum(1 for w in window[-8:] if _valid(w.get("O3")) is not None)
                out.results.append(self._result("moving_mean", site, a, {"value": o3_8h, "valid_hours": n_valid, "valid": o3_8h is not None}, parameter="O3", window="8h"))
            local = a.astimezone(self.tz)
            report = aqi_rules.realtime_aqi(conc, when=local, pm_realtime=self.pm_realtime)
            out.results.append(self._result("aqi_hourly", site, a, _aqi_fields(report)))
            if report.level is not None and report.level >= AQI_EVENT_LEVEL:
                out.events.append(Event(
                    id=f"aqi_level/{site.id}/{_stamp(a)}", kind="aqi_level", site=site.id, ts=a,
                    severity="critical" if report.level >= 5 else "warning",
                    message=(f"{_label(site)} {local:%m-%d %H}时 AQI {report.aqi} {report.category}"
                             f"（首要污染物 {'、'.join(report.primary or ())}）/ AQI {report.aqi} {report.category_en}"),
                    data={"aqi": report.aqi, "level": report.level, "primary": ",".join(report.primary or ())},
                ))
        for day in sorted({self._day(h) for h in hours}):
            await self._derive_air_day(site, state, day, out)

    async def _derive_air_day(self, site: Site, state: "_SiteState", day: dt.date, out: Output) -> None:
        start = self._day_start(day)
        window = await self._hour_window(site, state, start, DAY_HOURS)
        conc: dict[str, float | None] = {}
        for p in AIR_POLLUTANTS:
            if p not in site.parameters:
                continue
            hourly = [_valid(w.get(p)) for w in window]
            if p == "O3":
                mda8 = validity.o3_daily_max_8h(hourly, when=day)
                conc["O3_8h"] = mda8.value
                present = [v for v in hourly if v is not None]
                conc["O3_1h"] = max(present) if present else None
                out.results.append(self._result("daily_mean", site, start, {"value": mda8.value, "valid_hours": len(present), "valid": mda8.valid, "statistic": "max_8h", "max_1h": conc["O3_1h"]}, parameter=p))
                continue
            dm = validity.daily_mean(hourly)
            conc[p] = dm.value
            out.results.append(self._result("daily_mean", site, start, {"value": dm.value, "valid_hours": dm.valid_hours, "valid": dm.valid}, parameter=p))
        report = aqi_rules.daily_aqi(conc, when=day)
        out.results.append(self._result("aqi_daily", site, start, _aqi_fields(report)))

    # water --------------------------------------------------------------------------------------

    async def _derive_water(self, site: Site, state: "_SiteState", hours: list[dt.datetime], out: Output) -> None:
        for h in hours:
            values = {p: v.value for p, v in state.hourly.get(h, {}).items() if v.valid and v.value is not None}
            if not values and self._running(state, h):
                state.unfinished.add(h)
                continue
            self._classify_section(site, h, values, "water_class_hourly", out)
        for day in sorted({self._day(h) for h in hours}):
            start = self._day_start(day)
            window = await self._hour_window(site, state, start, DAY_HOURS)
            values = {}
            for p in site.parameters:
                dm = validity.daily_mean([_valid(w.get(p)) for w in window])
                if dm.valid:
                    values[p] = dm.value
                out.results.append(self._result("daily_mean", site, start, {"value": dm.value, "valid_hours": dm.valid_hours, "valid": dm.valid}, parameter=p))
            self._classify_section(site, start, values, "water_class_daily", out)

    def _classify_section(self, site: Site, ts: dt.datetime, values: dict[str, float | None], measurement: str, out: Output) -> None:
        assessed = {p: v for p, v in values.items() if v is not None}
        try:
            sc = water_rules.section_class(assessed, waterbody=site.waterbody or "river")
        except ValueError as exc:  # nothing assessable this period
            self.counters["unclassified"] += 1
            log.debug("%s %s: %s", site.id, ts, exc)
            return
        target = site.target_class or 5
        meets = sc.meets(target)
        fields: dict[str, FieldValue] = {
            "klass": sc.klass, "class_name": sc.class_name, "target_class": target, "meets": meets,
            "worst_items": ",".join(sc.worst_items), "quality_status": sc.quality_status,
            "main_pollutants": sc.main_pollutants_label(), "items": len(sc.item_classes),
        }
        for item, multiple in sc.exceedance.items():
            fields[f"exceedance_{item}"] = multiple
        out.results.append(self._result(measurement, site, ts, fields))
        if not meets and measurement == "water_class_hourly":
            local = ts.astimezone(self.tz)
            out.events.append(Event(
                id=f"below_target/{site.id}/{_stamp(ts)}", kind="below_target", site=site.id, ts=ts,
                severity="critical" if sc.klass >= 5 else "warning",
                message=(f"{_label(site)} {local:%m-%d %H}时 {sc.class_name}类，低于目标 {water_rules.CLASS_NAMES[target]}类"
                         f"（{sc.main_pollutants_label() or '、'.join(sc.worst_items)}）/ class {sc.klass} below target {target}"),
                data={"klass": sc.klass, "target_class": target, "worst_items": ",".join(sc.worst_items)},
            ))

    # enterprise outlets -------------------------------------------------------------------------

    async def _derive_gas(self, site: Site, state: "_SiteState", hours: list[dt.datetime], out: Output) -> None:
        for h in hours:
            means = state.hourly.get(h, {})
            o2 = means.get("O2")
            flow = means.get("gas_flow")
            for param, limit in site.permit.items():
                m = means.get(param)
                if m is None or limit.upper is None:
                    continue
                if not m.valid and self._running(state, h):
                    state.unfinished.add(h)  # judged when valid, or as "not judged" once the hour is over
                    continue
                fields: dict[str, FieldValue] = {"limit": limit.upper, "valid_minutes": m.valid_minutes, "measured": m.value}
                judged = m.zs
                if judged is None and m.value is not None and site.reference_o2_pct is not None and o2 is not None and o2.valid and o2.value is not None:
                    try:
                        judged = emission_rules.to_reference_o2(m.value, o2.value, site.reference_o2_pct)
                    except emission_rules.OxygenNearAmbientError:
                        fields["note"] = "O2 near ambient: not converted"
                        judged = None
                elif judged is None and site.reference_o2_pct is None:
                    judged = m.value
                if judged is None:
                    fields.update(value=None, compliant=None, exceedance_multiple=0.0)
                else:
                    c = emission_rules.hourly_compliance(judged, limit.upper, m.valid_minutes)
                    fields.update(value=judged, compliant=c.compliant, exceedance_multiple=c.exceedance_multiple)
                    if flow is not None and flow.valid and m.valid and m.value is not None and flow.value is not None:
                        fields["mass_kg_h"] = emission_rules.mass_emission_kg_h(m.value, flow.value)
                out.results.append(self._result("compliance_hourly", site, h, fields, parameter=param))
                if fields.get("compliant") is False:
                    out.events.append(self._exceedance_event(site, h, param, fields, "1h"))

    async def _derive_wastewater(self, site: Site, state: "_SiteState", hours: list[dt.datetime], out: Output) -> None:
        ph_limit = site.permit.get("pH")
        for h in hours:
            ph = state.hourly.get(h, {}).get("pH")
            if ph_limit is not None and ph is not None and ph.valid and ph.value is not None:
                c = emission_rules.ph_compliance(ph.value, (ph_limit.lower or 0.0, ph_limit.upper or 14.0))
                fields: dict[str, FieldValue] = {"value": ph.value, "limit": f"{ph_limit.lower:g}-{ph_limit.upper:g}", "compliant": c.compliant, "exceedance_multiple": 0.0, "valid_minutes": ph.valid_minutes}
                out.results.append(self._result("compliance_hourly", site, h, fields, parameter="pH"))
                if c.compliant is False:
                    out.events.append(self._exceedance_event(site, h, "pH", fields, "1h"))
        for day in sorted({self._day(h) for h in hours}):
            start = self._day_start(day)
            window = await self._hour_window(site, state, start, DAY_HOURS)
            flows = [_valid(w.get("water_flow")) for w in window]
            for param, limit in site.permit.items():
                if param == "pH" or limit.upper is None:
                    continue
                concs = [_valid(w.get(param)) for w in window]
                valid_hours = sum(1 for c in concs if c is not None)
                pairs = [(c, f) for c, f in zip(concs, flows) if c is not None]
                if not pairs:
                    continue
                # an hour without discharge (flow 0) weighs nothing; it does not void the weighting
                if all(f is not None for _, f in pairs) and math.fsum(f for _, f in pairs) > 0:  # type: ignore[misc]
                    mean = emission_rules.flow_weighted_mean([c for c, _ in pairs], [f for _, f in pairs])  # type: ignore[misc]
                    weighting = "flow"
                else:
                    mean = math.fsum(c for c, _ in pairs) / len(pairs)
                    weighting = "arithmetic"
                c = emission_rules.daily_compliance(mean, limit.upper, valid_hours)
                fields = {"value": mean, "limit": limit.upper, "compliant": c.compliant, "exceedance_multiple": c.exceedance_multiple, "valid_hours": valid_hours, "weighting": weighting,
                          # a day still receiving hours is not judged yet, which is not an invalid day
                          "running": c.compliant is None and state.newest is not None and state.newest < start + DAY_HOURS * HOUR}
                out.results.append(self._result("compliance_daily", site, start, fields, parameter=param))
                if c.compliant is False:
                    out.events.append(self._exceedance_event(site, start, param, fields, "24h"))

    def _exceedance_event(self, site: Site, ts: dt.datetime, param: str, fields: dict[str, FieldValue], period: str) -> Event:
        local = ts.astimezone(self.tz)
        when = f"{local:%m-%d %H}时" if period == "1h" else f"{local:%m-%d}日均"
        value = fields.get("value")
        multiple = fields.get("exceedance_multiple") or 0.0
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return Event(
            id=f"exceedance/{site.id}/{param}/{period}/{_stamp(ts)}", kind="exceedance", site=site.id, ts=ts,
            severity="critical",
            message=(f"{site.enterprise_name or ''} {site.name} {when} {param} {text} 超过许可限值 {fields.get('limit')}"
                     f"（超标 {multiple:.2f} 倍）/ {param} {text} exceeds permit {fields.get('limit')}"),
            data={"parameter": param, "value": value, "limit": fields.get("limit"), "exceedance_multiple": multiple, "period": period},
        )

    # single-purpose results ----------------------------------------------------------------------

    def _hourly_results(self, site: Site, hour: dt.datetime, means: dict[str, HourValue]) -> Iterable[Result]:
        for param, m in means.items():
            if param in METER_PARAMETERS:
                yield self._result("meter_hourly", site, hour, {"consumption": m.value, "valid": m.valid}, parameter=param)
                continue
            fields: dict[str, FieldValue] = {"value": m.value, "valid_minutes": m.valid_minutes, "valid": m.valid}
            if m.zs is not None:
                fields["zs"] = m.zs
            yield self._result("hourly_mean", site, hour, fields, parameter=param)

    def _daily_readings(self, site: Site, readings: list[Reading]) -> Iterable[Result]:
        for r in readings:
            start = self._day_start(self._day(r.ts))
            for param, v in r.values.items():
                ok = validity.flag_counts_as_valid(v.flag)
                yield self._result("daily_mean", site, start, {"value": v.zs if v.zs is not None else v.v, "valid": ok, "source": "reported"}, parameter=param)

    def _late_event(self, site: Site, reading: Reading, newest: dt.datetime) -> Event:
        hours = (newest - reading.ts) / HOUR
        return Event(
            id=f"late_reading/{reading.id}", kind="late_reading", site=site.id, ts=reading.ts, severity="info",
            message=(f"{_label(site)} 迟到数据 {_local(reading.ts, self.tz)}（晚 {hours:.0f} 小时，超出 {self.lateness / HOUR:g} 小时时限）已存原始值，未重算"
                     f" / reading {hours:.0f} h late, beyond the {self.lateness / HOUR:g} h horizon: stored raw, not recomputed"),
            data={"reading_ts": reading.ts.isoformat(), "newest": newest.isoformat(), "late_h": round(hours, 2)},
        )

    def _attention_event(self, site: Site, hour: dt.datetime, flags: set[str]) -> Event:
        names = {"M": "维护 maintenance", "C": "校准 calibration", "D": "故障 fault", "F": "停运 stopped", "B": "通讯异常 communication fault"}
        text = "、".join(names[f] for f in sorted(flags))
        return Event(
            id=f"maintenance/{site.id}/{_stamp(hour)}/{''.join(sorted(flags))}", kind="maintenance", site=site.id, ts=hour,
            severity="info", message=f"{_label(site)} {hour.astimezone(self.tz):%m-%d %H}时 数据标记 {text}（不计入有效数据）",
            data={"flags": "".join(sorted(flags))},
        )

    def _recoveries(self, dirty: dict[str, set[dt.datetime]]) -> Iterable[Event]:
        for site_id in dirty:
            last = self._silent.pop(site_id, None)
            if last is None:
                continue
            site = self.park.sites[site_id]
            yield Event(
                id=f"recovered/{site_id}/{_stamp(last)}", kind="recovered", site=site_id, ts=self._sites[site_id].newest or last,
                severity="info", message=f"{_label(site)} 恢复上报 / reporting again", data={"silent_since": last.isoformat()},
            )

    # helpers -------------------------------------------------------------------------------------

    def _result(self, measurement: str, site: Site, ts: dt.datetime, fields: dict[str, FieldValue], **tags: str) -> Result:
        return Result(measurement=measurement, site=site.id, ts=ts.astimezone(self.tz), fields=fields, tags=tags)

    def _running(self, state: "_SiteState", hour: dt.datetime) -> bool:
        """Whether ``hour`` may still receive minutes: the site's newest reading lies inside it."""
        return state.newest is None or state.newest < hour + HOUR

    def _state(self, site: Site) -> "_SiteState":
        state = self._sites.get(site.id)
        if state is None:
            state = self._sites[site.id] = _SiteState()
        return state

    def _hour(self, ts: dt.datetime) -> dt.datetime:
        return ts.astimezone(self.tz).replace(minute=0, second=0, microsecond=0).astimezone(dt.timezone.utc)

    def _day(self, ts: dt.datetime) -> dt.date:
        return ts.astimezone(self.tz).date()

    def _day_start(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(0), tzinfo=self.tz).astimezone(dt.timezone.utc)

    def _evict(self) -> None:
        for state in self._sites.values():
            if state.newest is None:
                continue
            newest_hour = self._hour(state.newest)
            state.evict(newest_hour - MINUTE_CACHE_HOURS * HOUR, newest_hour - HOURLY_CACHE_HOURS * HOUR)


class _SiteState:
    """A site's cache: minute buckets of recent hours and hourly means of the last two days."""

    __slots__ = ("newest", "heard_at", "minutes", "loaded", "hour_readings", "hourly", "hourly_absent", "unfinished")

    def __init__(self) -> None:
        self.newest: dt.datetime | None = None
        self.heard_at: float | None = None  # time.monotonic() of the last reading
        # hours whose judgement waits for the hour to end (too few valid minutes so far)
        self.unfinished: set[dt.datetime] = set()
        # hour → parameter → minute of hour → (value, flag, zs)
        self.minutes: dict[dt.datetime, dict[str, dict[int, tuple[float, str, float | None]]]] = {}
        self.loaded: set[dt.datetime] = set()
        self.hour_readings: dict[dt.datetime, dict] = {}
        self.hourly: dict[dt.datetime, dict[str, HourValue]] = {}
        self.hourly_absent: set[dt.datetime] = set()

    def file_minute(self, hour: dt.datetime, reading: Reading) -> None:
        minute = int((reading.ts - hour).total_seconds() // 60)
        buckets = self.minutes.setdefault(hour, {})
        for param, v in reading.values.items():
            buckets.setdefault(param, {})[minute] = (v.v, v.flag, v.zs)
        self.hourly_absent.discard(hour)

    def minutes_loaded(self, hour: dt.datetime) -> bool:
        return hour in self.loaded

    def evict(self, minutes_before: dt.datetime, hourly_before: dt.datetime) -> None:
        for hour in [h for h in self.minutes if h < minutes_before]:
            del self.minutes[hour]
            self.loaded.discard(hour)
        for hour in [h for h in self.hour_readings if h < hourly_before]:
            del self.hour_readings[hour]
        for hour in [h for h in self.hourly if h < hourly_before]:
            del self.hourly[hour]
        self.unfinished = {h for h in self.unfinished if h >= hourly_before}
        self.hourly_absent = {h for h in self.hourly_absent if h >= hourly_before}


def _consumption(minutes: dict[int, tuple[float, str, float | None]]) -> HourValue:
    """A cumulative meter's use within the hour: last minus first valid total of the hour."""
    totals = [minutes[m][0] for m in sorted(minutes) if validity.flag_counts_as_valid(minutes[m][1])]
    if len(totals) < 2:
        return HourValue(None, len(totals), False)
    return HourValue(max(totals[-1] - totals[0], 0.0), len(totals), True)


def _valid(m: HourValue | None) -> float | None:
    return m.value if m is not None and m.valid else None


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _aqi_fields(report: aqi_rules.AqiResult) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {
        "aqi": report.aqi, "level": report.level, "category": report.category, "category_en": report.category_en,
        "color": report.color, "primary": ",".join(report.primary or ()), "edition": report.edition,
        "exceeding": ",".join(report.exceeding), "missing": ",".join(report.missing),
    }
    for key, value in report.iaqi.items():
        fields[f"iaqi_{key}"] = value
    return fields


def _stamp(ts: dt.datetime) -> str:
    return ts.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%MZ")


def _local(ts: dt.datetime, tz) -> str:
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _label(site: Site) -> str:
    return f"{site.enterprise_name} {site.name}" if site.enterprise_name else site.name
