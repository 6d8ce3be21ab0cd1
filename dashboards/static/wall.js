// The monitoring wall: renders /api/wall snapshots, pushed by /api/stream (Server-Sent Events),
// falling back to polling /api/wall when EventSource fails. Every piece of data goes into the page
// through textContent / attributes, never innerHTML: an event message is text, whatever it holds.
'use strict';
(function () {
  var POLL_MS = 5000;          // polling fallback interval
  var SSE_RETRY_MS = 60000;    // while polling, try the event stream again this often
  var SSE_MAX_ERRORS = 3;      // consecutive stream errors before falling back to polling

  var EVENT_KINDS = {
    aqi_level: ['空气质量', 'AQI level'],
    below_target: ['断面未达标', 'Below target'],
    exceedance: ['超标排放', 'Exceedance'],
    silent: ['数据中断', 'Silent site'],
    maintenance: ['运维标记', 'Maintenance'],
    late_reading: ['迟到数据', 'Late reading'],
    recovered: ['已恢复', 'Recovered']
  };
  var CODE = { particulates: 'PM', 'NH3-N': 'NH₃-N', SO2: 'SO₂', NOx: 'NOₓ' };  // short labels for tiles
  var SEVERITY = { critical: ['严重', 'Critical'], warning: ['警告', 'Warning'], info: ['提示', 'Info'] };
  var CONN = {
    live: ['● 实时推送', 'Live'], polling: ['● 轮询', 'Polling'],
    wait: ['● 连接中', 'Connecting'], offline: ['● 离线', 'Offline'], stale: ['● 数据库异常', 'Store unavailable']
  };

  // Test and operator marker: survives only as long as the page is not reloaded.
  var wall = window.ecoparkWall = {
    loadId: String(Date.now()) + '-' + Math.random().toString(36).slice(2),
    updates: 0, version: null, transport: null, snapshot: null
  };

  // -- DOM helpers (text only) -------------------------------------------------------------------
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
    return parent;
  }
  function bi(zh, en, cls) {  // "中文 English" pair
    var span = el('span', cls || 'bi');
    add(span, el('span', 'zh', zh), document.createTextNode(' '), el('span', 'en', en));
    return span;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || v === '') return '—';
    if (typeof v === 'number') {
      if (!isFinite(v)) return '—';
      var d = digits === undefined ? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) : digits;
      return v.toFixed(d);
    }
    return String(v);
  }
  var tz = undefined;
  function time(iso, withDate) {
    if (!iso) return '—';
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    var opts = { hour: '2-digit', minute: '2-digit', hour12: false, timeZone: tz };
    if (withDate) { opts.month = '2-digit'; opts.day = '2-digit'; }
    try { return new Intl.DateTimeFormat('zh-CN', opts).format(d); } catch (e) { return d.toISOString(); }
  }
  function age(mins) {
    if (mins === null || mins === undefined) return '无数据 no data';
    if (mins < 1) return '< 1 min';
    if (mins < 120) return Math.round(mins) + ' min';
    if (mins < 48 * 60) return (mins / 60).toFixed(1) + ' h';
    return (mins / 1440).toFixed(1) + ' d';
  }
  // Text colour that reads on a given background (yellow AQI needs dark text).
  function inkOn(hex) {
    var m = /^#?([0-9a-f]{6})$/i.exec(hex || '');
    if (!m) return '#fff';
    var n = parseInt(m[1], 16), r = n >> 16, g = (n >> 8) & 255, b = n & 255;
    return (0.299 * r + 0.587 * g + 0.114 * b) > 150 ? '#111' : '#fff';
  }
  function safeColour(c) { return /^#[0-9a-f]{3,8}$/i.test(c || '') ? c : null; }

  // -- sections ----------------------------------------------------------------------------------
  function renderPark(s) {
    document.getElementById('park-name').textContent = s.park.name;
    document.getElementById('park-name-en').textContent = s.park.name_en;
    document.title = s.park.name + ' · ' + s.park.name_en + ' — 环境监测大屏 monitoring wall';
    tz = s.park.timezone || undefined;
    document.getElementById('data-time').textContent = time(s.reference_time, true);
  }

  function renderAir(list) {
    var box = document.getElementById('air-list');
    var nodes = list.map(function (st) {
      var tile = el('div', 'air-tile');
      tile.dataset.site = st.site;
      add(tile, add(el('div', 'site-name'), el('span', 'zh', st.name), el('span', 'en', st.name_en)));
      var h = st.hourly;
      var colour = h ? safeColour(h.color) : null;
      var big = el('div', 'aqi-value', h && h.aqi !== null ? h.aqi : '—');
      if (colour) big.style.color = colour;
      big.dataset.color = colour || '';
      var right = el('div', 'aqi-side');
      var cat = el('div', 'aqi-cat');
      if (h && h.category) {
        add(cat, el('div', 'zh', h.category), el('div', 'en', h.category_en || ''));
        if (colour) { cat.style.background = colour; cat.style.color = inkOn(colour); }
      } else cat.textContent = '无数据 No data';
      add(right, el('div', 'aqi-label', 'AQI'), cat,
        h && h.level ? el('div', 'aqi-level', (h.level_name || '') + ' · level ' + ['', 'I', 'II', 'III', 'IV', 'V', 'VI'][h.level]) : null);
      add(tile, add(el('div', 'aqi-row'), big, right));
      var prim = el('div', 'primary');
      add(prim, add(el('div', 'lbl'), bi('首要污染物', 'Primary pollutant')));
      var pv = el('div', 'primary-value');
      if (h && h.primary && h.primary.length) {
        h.primary.forEach(function (p, i) {
          add(pv, add(el('span', 'pollutant'), el('span', 'code', p), el('span', 'zh', (h.primary_zh && h.primary_zh[i]) || '')));
        });
      } else pv.textContent = '— (AQI ≤ 50 无 none)';
      add(tile, add(prim, pv));
      var meta = el('div', 'aqi-meta');
      var end = h ? new Date(new Date(h.ts).getTime() + 3600 * 1000).toISOString() : null;  // labelled by its start
      add(meta, add(el('span', 'hour'), bi('时段', 'Hour', 'lbl'), el('span', 'v', h ? ' ' + time(h.ts) + '–' + time(end) : ' —')));
      var d = st.daily;
      var daily = el('span', 'daily');
      add(daily, bi('日AQI', 'Daily', 'lbl'), document.createTextNode(' '));
      var dv = el('span', 'daily-value', d && d.aqi !== null ? d.aqi : '—');
      if (d && safeColour(d.color)) dv.style.color = d.color;
      add(daily, dv, d && d.category ? el('span', 'daily-cat', ' ' + d.category + ' ' + (d.category_en || '')) : null);
      add(meta, daily);
      tile.appendChild(meta);
      return tile;
    });
    if (!nodes.length) nodes = [el('div', 'none', '—')];
    box.replaceChildren.apply(box, nodes);
  }

  function renderWater(list) {
    var box = document.getElementById('water-list');
    var nodes = list.map(function (sec) {
      var row = el('div', 'water-row');
      row.dataset.site = sec.site;
      var h = sec.hourly;
      add(row, add(el('div', 'site-name'), el('span', 'zh', sec.name), el('span', 'en', sec.name_en)));
      var klass = el('div', 'klass', h && h.klass ? h.klass + '类' : '—');
      if (h && safeColour(h.status_color)) { klass.style.background = h.status_color; klass.style.color = inkOn(h.status_color); }
      var info = el('div', 'water-info');
      var target = el('div', 'target');
      add(target, bi('目标', 'Target', 'lbl'), document.createTextNode(' '), el('span', 'target-value', (sec.target || '—') + '类'));
      var meets = el('div', 'meets');
      if (h && h.meets === true) { meets.classList.add('ok'); add(meets, bi('达标', 'Meets target')); }
      else if (h && h.meets === false) { meets.classList.add('bad'); add(meets, bi('未达标', 'Below target')); }
      else { meets.classList.add('unknown'); add(meets, bi('无数据', 'No data')); }
      row.dataset.meets = h && typeof h.meets === 'boolean' ? String(h.meets) : '';
      var status = el('div', 'wstatus');
      if (h && h.status) add(status, bi(h.status, h.status_en));
      if (h && h.worst_items && h.worst_items.length) add(status, el('span', 'worst', ' · ' + h.worst_items.join('、')));
      add(status, el('span', 'when', h ? '  ' + time(h.ts) : ''));
      add(info, target, meets, status);
      add(row, add(el('div', 'water-body'), klass, info));
      return row;
    });
    if (!nodes.length) nodes = [el('div', 'none', '—')];
    box.replaceChildren.apply(box, nodes);
  }

  function limitText(p) {
    var c = p.judged === 'daily' ? p.daily : p.hourly;
    var permit = p.permit;
    function n(v) { return typeof v === 'number' && isFinite(v) ? String(+v.toPrecision(6)) : '—'; }
    if (permit && permit.lower !== null && permit.upper !== null) return n(permit.lower) + '–' + n(permit.upper);
    if (c && typeof c.limit === 'number') return n(c.limit);
    if (c && c.limit) return String(c.limit);
    return permit && permit.upper !== null ? n(permit.upper) : '—';
  }

  function renderOutlets(list) {
    var box = document.getElementById('outlet-list');
    var groups = [], byEnt = {};
    list.forEach(function (o) {
      var key = o.enterprise || o.site;
      if (!byEnt[key]) { byEnt[key] = { name: o.enterprise_name || o.name, outlets: [] }; groups.push(byEnt[key]); }
      byEnt[key].outlets.push(o);
    });
    var nodes = groups.map(function (g) {
      var ent = el('div', 'enterprise');
      add(ent, el('div', 'ent-name', g.name));
      var outs = el('div', 'ent-outlets');
      g.outlets.forEach(function (o) {
        var og = el('div', 'outlet');
        og.dataset.site = o.site;
        og.style.flexGrow = String(Math.max(1, o.parameters.length));
        var units = o.parameters.map(function (p) { return p.unit; }).filter(function (u, i, a) { return u && a.indexOf(u) === i; });
        add(og, add(el('div', 'outlet-name'), el('span', 'zh', o.name), el('span', 'en', o.name_en),
          el('span', 'units', units.length ? ' · ' + units.join(', ').replace(/m3/g, 'm³') : ''),
          o.parameters.some(function (p) { return p.judged === 'daily'; }) ? bi(' · 日均', 'daily means', 'units') : null));
        var tiles = el('div', 'tiles');
        o.parameters.forEach(function (p) {
          var c = p.judged === 'daily' ? p.daily : p.hourly;
          var t = el('div', 'tile');
          t.dataset.site = o.site;
          t.dataset.parameter = p.parameter;
          var state = !c ? 'nodata' : c.compliant === true ? 'ok' : c.compliant === false ? 'bad' : c.running ? 'running' : 'invalid';
          t.classList.add(state);
          t.dataset.state = state;
          add(t, add(el('div', 'p-name'), el('span', 'code', CODE[p.parameter] || p.parameter), el('span', 'zh', p.label)));
          add(t, add(el('div', 'p-value'), el('span', 'v', c ? fmt(c.value) : '—')));
          var lim = el('div', 'p-limit');
          add(lim, el('span', 'lbl', '限值 '), el('span', 'limit-value', limitText(p)));
          t.appendChild(lim);
          if (state === 'bad' && typeof c.multiple === 'number' && c.multiple > 0) {
            t.appendChild(el('div', 'p-multiple', '超标 ' + fmt(c.multiple, 2) + ' 倍'));
            t.title = 'exceeded by ' + fmt(c.multiple * 100, 0) + ' % of the limit';
          }
          else if (state === 'invalid') t.appendChild(el('div', 'p-multiple', '无效时段 invalid period'));
          else if (state === 'running') t.appendChild(el('div', 'p-multiple', '日均统计中 day in progress'));
          tiles.appendChild(t);
        });
        og.appendChild(tiles);
        outs.appendChild(og);
      });
      ent.appendChild(outs);
      return ent;
    });
    if (!nodes.length) nodes = [el('div', 'none', '—')];
    box.replaceChildren.apply(box, nodes);
  }

  function renderEvents(list) {
    var box = document.getElementById('event-list');
    var nodes = list.map(function (e) {
      var li = el('li', 'event sev-' + (SEVERITY[e.severity] ? e.severity : 'info'));
      li.dataset.id = e.id;
      var kind = EVENT_KINDS[e.kind] || [e.kind, ''];
      var sev = SEVERITY[e.severity] || [e.severity, ''];
      add(li,
        add(el('div', 'ev-meta'),
          el('span', 'ev-time', time(e.ts, true)),
          add(el('span', 'ev-sev'), bi(sev[0], sev[1])),
          add(el('span', 'ev-kind'), bi(kind[0], kind[1])),
          el('span', 'ev-site', (e.enterprise_name ? e.enterprise_name + ' ' : '') + e.site_name)),
        el('div', 'ev-msg', e.message));
      return li;
    });
    if (!nodes.length) nodes = [add(el('li', 'event none'), bi('暂无事件', 'No events'))];
    box.replaceChildren.apply(box, nodes);
  }

  function renderAnnual(rows) {
    var box = document.getElementById('annual-body');
    if (!rows || !rows.length) {
      box.replaceChildren(el('div', 'none', '—'), add(el('div', 'note'), bi('年终评价后显示，不作估算', 'shown after the year-end evaluation; never estimated')));
      return;
    }
    var table = el('table', 'annual-table');
    var head = el('tr');
    [['指标', 'Indicator'], ['数值', 'Value'], ['限值', 'Limit'], ['达标', 'Pass']].forEach(function (h) { add(head, add(el('th'), bi(h[0], h[1]))); });
    table.appendChild(head);
    rows.forEach(function (r) {
      var tr = el('tr', r.passed === true ? 'ok' : r.passed === false ? 'bad' : '');
      add(tr, add(el('td'), bi(r.indicator || '', r.indicator_en || '')),
        el('td', 'num', fmt(r.value) + (r.unit ? ' ' + r.unit : '')),
        el('td', 'num', fmt(r.limit)),
        el('td', 'pass', r.passed === true ? '✓' : r.passed === false ? '✗' : '—'));
      table.appendChild(tr);
    });
    box.replaceChildren(table);
  }

  function renderFreshness(list, counters, relative) {
    var box = document.getElementById('fresh-list');
    var nodes = list.map(function (f) {
      var chip = el('div', 'fresh ' + (f.stale ? 'stale' : 'fresh-ok'));
      chip.dataset.freshSite = f.site;
      chip.dataset.stale = String(f.stale);
      var name = f.enterprise_name ? f.enterprise_name + ' ' + f.name : f.name;
      add(chip, el('span', 'f-name', name), el('span', 'f-age', age(f.age_min)));
      chip.title = f.site + ' ' + (f.name_en || '') + ' · last ' + (f.last || '—');
      return chip;
    });
    box.replaceChildren.apply(box, nodes);
    var cbox = document.getElementById('counters');
    var keys = Object.keys(counters || {});
    var cn = keys.map(function (k) {
      var c = el('div', 'counter');
      c.dataset.counter = k;
      add(c, el('span', 'c-name', k), el('span', 'c-value', fmt(counters[k], 0)));
      return c;
    });
    cn.unshift(add(el('div', 'fresh-note'), bi(relative ? '相对园区最新数据' : '相对当前时间', relative ? 'age vs newest park reading' : 'age vs now')));
    cbox.replaceChildren.apply(cbox, cn);
  }

  var drawn = {};
  function section(name, data, draw) {
    var key = JSON.stringify(data === undefined ? null : data);
    if (drawn[name] === key) return;
    draw();
    drawn[name] = key;
  }

  function apply(snap) {
    if (!snap || !snap.park) return;
    wall.snapshot = snap;
    wall.version = snap.version;
    wall.updates += 1;
    // Redraw only the sections whose data changed: no flicker, and the rest of the DOM stays put.
    section('park', [snap.park, snap.reference_time], function () { renderPark(snap); });
    section('air', snap.air, function () { renderAir(snap.air || []); });
    section('water', snap.water, function () { renderWater(snap.water || []); });
    section('outlets', snap.outlets, function () { renderOutlets(snap.outlets || []); });
    section('events', snap.events, function () { renderEvents(snap.events || []); });
    section('annual', snap.annual, function () { renderAnnual(snap.annual); });
    section('freshness', [snap.freshness, snap.counters, snap.relative_freshness], function () {
      renderFreshness(snap.freshness || [], snap.counters, snap.relative_freshness);
    });
    document.body.dataset.version = String(snap.version);
    if (snap.store_ok === false) setConn('stale');
    else if (wall.transport) setConn(wall.transport);
  }

  function setConn(kind) {
    var c = document.getElementById('conn');
    var t = CONN[kind] || CONN.wait;
    c.className = 'conn conn-' + kind;
    c.replaceChildren(document.createTextNode(t[0] + ' '), el('span', 'en', t[1]));
  }

  // -- transport ---------------------------------------------------------------------------------
  var pollTimer = null, source = null;
  function startStream() {
    if (!window.EventSource) { startPolling(); return; }
    var errors = 0;
    source = new EventSource('/api/stream');
    source.addEventListener('snapshot', function (ev) {
      errors = 0;
      wall.transport = 'live';
      if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
      try { apply(JSON.parse(ev.data)); } catch (e) { console.error('wall: bad snapshot', e); }
    });
    source.onerror = function () {
      errors += 1;
      if (errors >= SSE_MAX_ERRORS || source.readyState === 2) {
        source.close(); source = null;
        startPolling();
        setTimeout(startStream, SSE_RETRY_MS);
      } else setConn('wait');
    };
  }
  function startPolling() {
    wall.transport = 'polling';
    if (!pollTimer) poll();
  }
  function poll() {
    pollTimer = null;
    fetch('/api/wall', { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (s) { if (wall.transport === 'polling') { apply(s); setConn('polling'); } })
      .catch(function () { setConn('offline'); })
      .then(function () { if (wall.transport === 'polling') pollTimer = setTimeout(poll, POLL_MS); });
  }

  // First paint from a plain request, then live updates.
  fetch('/api/wall', { cache: 'no-store' }).then(function (r) { return r.json(); })
    .then(function (s) { if (!wall.updates) apply(s); }).catch(function () {});
  startStream();
})();
