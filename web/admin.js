'use strict';
// The operator dashboard: GET /api/admin/metrics, /alerts, /diagnose and
// /tasks?stuck=true, drawn as inline SVG; recheck of stuck tasks; user lookup
// with credit adjustment. The operator token is asked once and kept for this
// tab only (sessionStorage).
(() => {
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'nb.admin.token';
const REFRESH_MS = 60000;
const SVGNS = 'http://www.w3.org/2000/svg';

// Colours: outcomes and Kie results keep theirs from one load to the next.
const OK = '#1f8a4c';
const CAUSE = {
  content_policy: '#d08a1e', provider_failed: '#c53030', provider_timeout: '#8e44ad', submission_failed: '#5f6b7a',
  input_unreachable: '#c05621', input_invalid: '#b7950b', result_invalid: '#a0522d', unknown: '#8a8f98',
};
const EXTRA = ['#2b6cb0', '#2c7a7b', '#97266d', '#744210', '#4a5568'];
const causeColor = (c, i) => CAUSE[c] || EXTRA[i % EXTRA.length];
const kieColor = (r) => (r === '200' ? OK : r === 'timeout' ? '#8e44ad' : r === 'unreachable' ? '#5f6b7a'
  : /^(4\d\d|http 4)/.test(r) ? '#d08a1e' : '#c53030');

let token = null, win = '24h', timer = 0, loading = false, metrics = null, drawnWidth = 0, resizeTimer = 0;

// ---- small helpers ---------------------------------------------------------
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  for (const kid of kids.flat()) if (kid != null) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return el;
}
const title = (text) => s('title', {}, text);
const fmtInt = (n) => (n == null ? '—' : Math.round(n).toLocaleString('en-US'));
const fmtNum = (n) => (n == null ? '—' : Number(n).toLocaleString('en-US', { maximumFractionDigits: 2 }));
function fmtMs(ms) {
  if (ms == null) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  return `${(ms / 60000).toFixed(ms < 600000 ? 1 : 0)} min`;
}
function fmtAge(s) {
  if (s == null) return '—';
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
const time = (iso) => new Date(iso).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
const stamp = (iso) => new Date(iso).toLocaleString('en-GB', { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const ago = (iso) => fmtAge(Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000)));

// ---- HTTP ------------------------------------------------------------------
class ApiError extends Error {}
async function api(path, opts = {}) {
  let res;
  try {
    res = await fetch(path, {
      method: opts.method || 'GET', cache: 'no-store',
      headers: { Authorization: 'Bearer ' + token, ...(opts.body ? { 'Content-Type': 'application/json' } : {}) },
      body: opts.body ? JSON.stringify(opts.body) : undefined,
    });
  } catch {
    if (window.reportApiFailure) window.reportApiFailure(opts.method || 'GET', path, 0);
    throw Object.assign(new ApiError('The server cannot be reached. Check the connection.'), { status: 0 });
  }
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (res.ok) return body;
  const e = body && body.error;
  if (res.status >= 500 && window.reportApiFailure) window.reportApiFailure(opts.method || 'GET', path, res.status, res.headers.get('X-Request-Id'), e && e.code);
  throw Object.assign(new ApiError(e ? e.message : `HTTP ${res.status}`), { status: res.status, code: e && e.code, rid: e && e.request_id });
}

// ---- charts ----------------------------------------------------------------
// Every chart is drawn at its container's width in CSS pixels (text stays
// readable on a phone) and redrawn when the width changes.
const widthOf = (el) => Math.max(280, Math.round(el.getBoundingClientRect().width) || 640);
const phone = (w) => w < 520;

/** A round step and top for an axis from 0 to at least `max` (about 4 steps). */
function scale(max, integer) {
  const raw = Math.max(max, integer ? 4 : 1e-9) / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((v) => v >= raw && (!integer || Number.isInteger(v)));
  if (!step) step = 10 * p;
  if (integer) step = Math.max(1, Math.round(step));
  return { step, top: step * Math.max(integer ? 4 : 1, Math.ceil(max / step)) };
}

function empty(el, text) {
  const w = widthOf(el);
  el.replaceChildren(s('svg', { viewBox: `0 0 ${w} 64`, width: w, height: 64, role: 'img', 'aria-label': text },
    s('text', { x: w / 2, y: 36, 'text-anchor': 'middle', class: 'empty' }, text)));
  el.dataset.points = '0';
}

function legend(items) {
  return h('ul', { class: 'legend' }, items.map((it) => h('li', {},
    s('svg', { viewBox: '0 0 10 10', 'aria-hidden': 'true' }, s('rect', { width: 10, height: 10, rx: 2, fill: it.color })),
    it.name, it.value != null ? h('b', { text: it.value }) : null)));
}

function yAxis(svg, { L, R, T, ph, W, top, step, fmt }) {
  for (let v = 0; v <= top + 1e-9; v += step) {
    const y = T + ph - (ph * v) / top;
    svg.append(s('line', { x1: L, x2: W - R, y1: y, y2: y, class: v ? 'gridline' : 'baseline' }),
      s('text', { x: L - 6, y: y + 4, 'text-anchor': 'end', class: 'axis' }, fmt(v)));
  }
}

/** Stacked vertical bars: bars = [{label, tick, segments: [{name, value, color}]}]. */
function stackedBars(el, bars, { unit, emptyText }) {
  const total = bars.reduce((a, b) => a + b.segments.reduce((x, y) => x + y.value, 0), 0);
  if (!total) return empty(el, emptyText);
  const W = widthOf(el), H = phone(W) ? 170 : 210, L = 40, R = 6, T = 10, B = 24, pw = W - L - R, ph = H - T - B;
  const { top, step } = scale(Math.max(...bars.map((b) => b.segments.reduce((x, y) => x + y.value, 0))), true);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': `${unit}: ${total} in the window` });
  yAxis(svg, { L, R, T, ph, W, top, step, fmt: fmtInt });
  const bw = pw / bars.length, gap = Math.min(6, bw * 0.25);
  const every = Math.ceil(bars.length / Math.max(2, Math.floor(pw / 64)));
  bars.forEach((b, i) => {
    let y = T + ph;
    const x = L + i * bw + gap / 2;
    for (const seg of b.segments) {
      if (!seg.value) continue;
      const hgt = (ph * seg.value) / top;
      y -= hgt;
      svg.append(s('rect', { x: x.toFixed(1), y: y.toFixed(1), width: Math.max(1, bw - gap).toFixed(1), height: Math.max(0.5, hgt).toFixed(1), fill: seg.color, class: 'bar' },
        title(`${b.label}: ${seg.name} ${fmtInt(seg.value)}`)));
    }
    if ((bars.length - 1 - i) % every === 0) {
      svg.append(s('text', { x: (L + i * bw + bw / 2).toFixed(1), y: H - 7, 'text-anchor': 'middle', class: 'axis' }, b.tick));
    }
  });
  el.replaceChildren(svg);
  el.dataset.points = String(bars.filter((b) => b.segments.some((x) => x.value)).length);
}

/** Horizontal bars, one row per item: [{label, value, color, text}]. */
function hbars(el, rows, { emptyText }) {
  if (!rows.length) return empty(el, emptyText);
  const W = widthOf(el), row = 30, L = Math.min(140, W * 0.34), R = Math.min(150, W * 0.34), H = rows.length * row + 6, pw = W - L - R;
  const max = Math.max(...rows.map((r) => r.value));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': emptyText });
  rows.forEach((r, i) => {
    const y = 3 + i * row;
    const w = Math.max(2, (pw * r.value) / max);
    svg.append(s('text', { x: L - 8, y: y + 18, 'text-anchor': 'end', class: 'label' }, r.label),
      s('rect', { x: L, y: y + 5, width: w.toFixed(1), height: 18, rx: 3, fill: r.color, class: 'bar' }, title(`${r.label}: ${r.text}`)),
      s('text', { x: L + w + 6, y: y + 18, class: 'value' }, r.text));
  });
  el.replaceChildren(svg);
  el.dataset.points = String(rows.length);
}

/** p50 (dark) and p95 (light) per model on one time scale. */
function percentiles(el, rows) {
  rows = rows.filter((r) => r.p50_ms != null);
  if (!rows.length) return empty(el, 'No task has succeeded in this window');
  const W = widthOf(el), row = 36, L = Math.min(140, W * 0.34), R = Math.min(150, W * 0.36), H = rows.length * row + 24, pw = W - L - R;
  const { top, step } = scale(Math.max(...rows.map((r) => r.p95_ms || r.p50_ms)), false);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': 'Time to result per model' });
  for (let v = 0; v <= top + 1e-9; v += step) {
    const x = L + (pw * v) / top;
    svg.append(s('line', { x1: x, x2: x, y1: 2, y2: H - 20, class: v ? 'gridline' : 'baseline' }),
      s('text', { x, y: H - 5, 'text-anchor': 'middle', class: 'axis' }, fmtMs(v)));
  }
  rows.forEach((r, i) => {
    const y = 4 + i * row;
    const w95 = Math.max(2, (pw * (r.p95_ms || r.p50_ms)) / top), w50 = Math.max(2, (pw * r.p50_ms) / top);
    svg.append(s('text', { x: L - 8, y: y + 18, 'text-anchor': 'end', class: 'label' }, r.model),
      s('rect', { x: L, y: y + 5, width: w95.toFixed(1), height: 18, rx: 3, fill: '#a9bdf2', class: 'bar' }, title(`${r.model} p95 ${fmtMs(r.p95_ms)}`)),
      s('rect', { x: L, y: y + 5, width: w50.toFixed(1), height: 18, rx: 3, fill: '#2d5bd7', class: 'bar' }, title(`${r.model} p50 ${fmtMs(r.p50_ms)}`)),
      s('text', { x: L + w95 + 6, y: y + 13, class: 'value' }, `${fmtMs(r.p50_ms)} · ${fmtMs(r.p95_ms)}`),
      s('text', { x: L + w95 + 6, y: y + 26, class: 'value' }, `${fmtInt(r.tasks)} ${r.tasks === 1 ? 'task' : 'tasks'}`));
  });
  el.replaceChildren(svg, legend([{ name: 'p50', color: '#2d5bd7' }, { name: 'p95', color: '#a9bdf2' }]));
  el.dataset.points = String(rows.length);
}

/** Lines over time: series = [{name, color, points: [[t, v]]}]; threshold = {value, name}. */
function lines(el, series, { emptyText, from, to, threshold, integer = true, fmt = fmtInt }) {
  const all = series.flatMap((x) => x.points);
  if (!all.length) return empty(el, emptyText);
  const W = widthOf(el), H = phone(W) ? 170 : 200, L = 52, R = 12, T = 10, B = 24, pw = W - L - R, ph = H - T - B;
  const t0 = Math.min(from, ...all.map((p) => p[0])), t1 = Math.max(to, ...all.map((p) => p[0]));
  const span = Math.max(60000, t1 - t0);
  const { top, step } = scale(Math.max(...all.map((p) => p[1]), threshold ? threshold.value : 0), integer);
  const X = (t) => L + (pw * (t - t0)) / span, Y = (v) => T + ph - (ph * v) / top;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': series.map((x) => x.name).join(', ') });
  yAxis(svg, { L, R, T, ph, W, top, step, fmt });
  const ticks = phone(W) ? 3 : 5;
  for (let i = 0; i < ticks; i++) {
    const t = t0 + (span * i) / (ticks - 1);
    const d = new Date(t);
    const label = span > 36 * 3600000 ? d.toLocaleDateString('en-GB', { weekday: 'short', day: 'numeric' })
      : d.toLocaleTimeString('en-GB', span > 20 * 60000 ? { hour: '2-digit', minute: '2-digit' } : { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    svg.append(s('text', { x: X(t), y: H - 7, 'text-anchor': i === 0 ? 'start' : i === ticks - 1 ? 'end' : 'middle', class: 'axis' }, label));
  }
  if (threshold) {
    svg.append(s('line', { x1: L, x2: W - R, y1: Y(threshold.value), y2: Y(threshold.value), class: 'threshold' }, title(`${threshold.name} ${fmt(threshold.value)}`)));
  }
  for (const x of series) {
    if (!x.points.length) continue;
    const d = x.points.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');
    svg.append(s('path', { d, fill: 'none', stroke: x.color, 'stroke-width': 2, 'stroke-linejoin': 'round', class: 'line' }));
    if (x.points.length <= 60) {
      for (const p of x.points) {
        svg.append(s('circle', { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 3, fill: x.color, class: 'pt' },
          title(`${new Date(p[0]).toLocaleTimeString('en-GB')}: ${x.name} ${fmt(p[1])}`)));
      }
    }
  }
  const items = series.map((x) => ({ name: x.name, color: x.color, value: x.points.length ? fmt(x.points[x.points.length - 1][1]) : '—' }));
  if (threshold) items.push({ name: threshold.name, color: '#b7791f', value: fmt(threshold.value) });
  el.replaceChildren(svg, legend(items));
  el.dataset.points = String(all.length);
}

/** Kie calls per operation: the share of each result, with call count and latency. */
function kieCalls(el, ops) {
  if (!ops.length) return empty(el, 'No call to Kie in this window');
  const W = widthOf(el), row = 46, L = 62, R = 8, H = ops.length * row + 2, pw = W - L - R;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': 'Kie calls per operation' });
  const seen = new Map();
  ops.forEach((op, i) => {
    const y = 2 + i * row;
    svg.append(s('text', { x: L - 8, y: y + 15, 'text-anchor': 'end', class: 'label' }, op.op));
    let x = L;
    for (const [result, n] of Object.entries(op.results).sort((a, b) => b[1] - a[1])) {
      const w = (pw * n) / op.calls;
      seen.set(result, (seen.get(result) || 0) + n);
      svg.append(s('rect', { x: x.toFixed(1), y: y + 3, width: Math.max(1, w).toFixed(1), height: 16, fill: kieColor(result), class: 'bar' }, title(`${op.op}: ${result} × ${n}`)));
      x += w;
    }
    svg.append(s('text', { x: L, y: y + 35, class: 'value' }, `${fmtInt(op.calls)} calls · p50 ${fmtMs(op.p50_ms)} · p95 ${fmtMs(op.p95_ms)}`));
  });
  const name = (r) => (/^\d+$/.test(r) ? `code ${r}` : r.replace(/^http /, 'HTTP '));
  el.replaceChildren(svg, legend([...seen].map(([r, n]) => ({ name: name(r), color: kieColor(r), value: fmtInt(n) }))));
  el.dataset.points = String(ops.length);
}

// ---- rendering -------------------------------------------------------------
function tick(iso, width) {
  const d = new Date(iso);
  return width > 3600000 ? d.toLocaleDateString('en-GB', { weekday: 'short' }) + ' ' + d.toLocaleTimeString('en-GB', { hour: '2-digit' }) + 'h'
    : d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
}

function renderMetrics(m) {
  metrics = m;
  drawnWidth = $('c-tasks').getBoundingClientRect().width;
  const per = m.bucket_ms > 3600000 ? 'per 6 hours' : 'per hour';
  $('u-tasks').textContent = per;
  $('u-credits').textContent = per;
  const causes = m.failure_causes.map((c) => c.cause);
  const bars = m.tasks.buckets.map((b) => ({
    label: stamp(b.at), tick: tick(b.at, m.bucket_ms),
    segments: [{ name: 'succeeded', value: b.succeeded, color: OK },
      ...causes.map((c, i) => ({ name: c, value: b.by_cause[c] || 0, color: causeColor(c, i) }))],
  }));
  stackedBars($('c-tasks'), bars, { unit: 'tasks', emptyText: 'No task finished in this window' });
  if (m.tasks.total) {
    $('c-tasks').append(legend([{ name: 'succeeded', color: OK, value: fmtInt(m.tasks.succeeded) },
      ...m.failure_causes.map((c, i) => ({ name: c.cause, color: causeColor(c.cause, i), value: fmtInt(c.count) }))]));
  }
  percentiles($('c-ttr'), m.time_to_result);
  hbars($('c-causes'), m.failure_causes.map((c, i) => ({
    label: c.cause, value: c.count, color: causeColor(c.cause, i),
    text: `${fmtInt(c.count)} · ${Math.round((100 * c.count) / Math.max(1, m.tasks.total))}% of finished`,
  })), { emptyText: 'No task failed in this window' });
  kieCalls($('c-kie'), m.kie_calls);
  stackedBars($('c-credits'), m.credits.buckets.map((b) => ({ label: stamp(b.at), tick: tick(b.at, m.bucket_ms), segments: [{ name: 'credits', value: b.spent, color: '#2d5bd7' }] })),
    { unit: 'credits', emptyText: 'No credits spent in this window' });
  const from = Date.parse(m.from), to = Date.parse(m.to);
  const firstSample = m.queue.series.length ? Date.parse(m.queue.series[0].at) : to;
  lines($('c-queue'), [
    { name: 'queued', color: '#d08a1e', points: m.queue.series.map((p) => [Date.parse(p.at), p.queued]) },
    { name: 'at Kie', color: '#2d5bd7', points: m.queue.series.map((p) => [Date.parse(p.at), p.at_kie]) },
  ], { emptyText: 'No sample yet (the cron takes one a minute)', from: Math.max(from, firstSample), to });
  const kb = m.kie_balance;
  lines($('c-balance'), [{ name: 'balance', color: '#2c7a7b', points: kb.series.map((p) => [Date.parse(p.at), p.balance]) }],
    { emptyText: 'No balance read yet (the cron reads it every minute)', from: Math.max(from, kb.series.length ? Date.parse(kb.series[0].at) : to), to,
      threshold: kb.warn_below > 0 ? { value: kb.warn_below, name: 'KIE_BALANCE_WARN' } : null, integer: false, fmt: fmtNum });
  renderTiles(m);
  const env = $('env');
  env.textContent = m.environment;
  env.className = 'env ' + m.environment;
  env.hidden = !m.environment;
}

function tile(k, v, d, cls) {
  return h('div', { class: 'tile' + (cls ? ' ' + cls : ''), 'data-testid': 'tile' }, h('div', { class: 'k', text: k }), h('div', { class: 'v', text: v }), h('div', { class: 'd', text: d || '' }));
}

function renderTiles(m) {
  const t = m.tasks;
  const rate = t.total ? Math.round((100 * t.succeeded) / t.total) : null;
  const q = m.queue.now;
  const kb = m.kie_balance;
  const low = kb.now != null && kb.cheapest_task && kb.now < kb.cheapest_task.kie_credits;
  const warn = kb.now != null && kb.warn_below > 0 && kb.now < kb.warn_below;
  const rejected = Object.values(m.events.callbacks_rejected).reduce((a, b) => a + b, 0);
  const busiest = [...m.time_to_result].sort((a, b) => b.tasks - a.tasks)[0];
  $('tiles').replaceChildren(
    tile(`Tasks · ${m.window}`, fmtInt(t.total), `${fmtInt(t.succeeded)} succeeded · ${fmtInt(t.failed)} failed`),
    tile('Success rate', rate == null ? '—' : `${rate}%`, t.total ? 'of finished tasks' : 'nothing finished yet', rate != null && rate < 80 ? 'bad' : rate != null && rate < 95 ? 'warn' : ''),
    tile('Time to result', busiest ? fmtMs(busiest.p95_ms) : '—', busiest ? `p95 of ${busiest.model}` : 'no success yet'),
    tile('Credits spent', fmtInt(m.credits.total), `in ${m.window}`),
    tile('Queue now', `${fmtInt(q.queued)} · ${fmtInt(q.at_kie)}`, `queued · at Kie${q.oldest_queued_s != null ? ` · oldest ${fmtAge(q.oldest_queued_s)}` : ''}`, q.overdue ? 'bad' : ''),
    tile('Kie balance', kb.now == null ? '—' : fmtNum(kb.now), low ? 'cannot pay for a task' : warn ? `below ${fmtNum(kb.warn_below)}` : 'Kie credits', low ? 'bad' : warn ? 'warn' : ''),
    tile('Callbacks rejected', fmtInt(rejected), `401s · ${m.window}`, rejected ? 'bad' : ''),
    tile('Browser errors', fmtInt(m.events.client_errors), `reports · ${m.window}`, m.events.client_errors ? 'warn' : ''),
  );
}

function renderAlerts(list) {
  const open = list.alerts.filter((a) => a.state === 'open');
  const box = $('alerts-list');
  if (!open.length) {
    box.replaceChildren(h('p', { class: 'calm', 'data-testid': 'no-alerts', text: 'No open alerts.' }));
  } else {
    box.replaceChildren(...open.map((a) => h('article', { class: 'alert', 'data-testid': 'alert', 'data-condition': a.condition },
      h('h3', {}, a.title, h('span', { class: 'since', text: `since ${stamp(a.started_at)} · ${ago(a.started_at)}` })),
      h('p', { text: a.message }),
      h('p', { class: 'delivery', text: a.delivery.start_sent_at ? `Message delivered ${stamp(a.delivery.start_sent_at)}`
        : a.delivery.last_error ? `Not delivered yet: ${a.delivery.last_error} (${a.delivery.attempts} attempts; retried every minute)` : 'Not delivered (no receiver configured, or waiting for the next run)' }))));
  }
  const past = list.alerts.filter((a) => a.state !== 'open');
  $('history').replaceChildren(...(past.length ? past.map((a) => h('li', { 'data-testid': 'alert-history-item' },
    h('span', { class: 'st resolved', text: 'resolved' }), h('strong', { text: a.title }),
    h('div', { class: 'when', text: `${stamp(a.started_at)} → ${a.resolved_at ? stamp(a.resolved_at) : '…'}` })))
    : [h('li', { class: 'hint', text: 'No resolved alert in the last 7 days.' })]));
  return open.length;
}

function renderStatus(openAlerts, diag) {
  const bad = openAlerts > 0 || (diag && diag.status === 'fail');
  const parts = [h('span', { class: 'pill ' + (bad ? 'bad' : 'ok'), 'data-testid': 'overall', text: bad ? 'Attention' : 'Healthy' })];
  parts.push(h('span', { text: `${openAlerts} open alert${openAlerts === 1 ? '' : 's'}` }));
  if (diag) {
    const failed = diag.checks.filter((c) => c.status === 'fail').length;
    const warned = diag.checks.filter((c) => c.status === 'warn').length;
    const words = failed ? `${failed} failing` : 'every link passes';
    parts.push(h('span', { text: `diagnose: ${words}${warned ? `, ${warned} warning${warned === 1 ? '' : 's'}` : ''}` }),
      h('span', { class: 'hint', text: `version ${diag.version} · ${diag.commit}` }));
  }
  $('status').replaceChildren(...parts);
}

let lastDiag = null, lastOpen = 0;
async function runDiagnose() {
  const btn = $('diag-run');
  btn.disabled = true;
  $('diag-summary').textContent = 'Running the checks…';
  try {
    const d = await api('/api/admin/diagnose');
    lastDiag = d;
    const failed = d.checks.filter((c) => c.status === 'fail').length;
    $('diag-summary').textContent = `${d.status === 'pass' ? 'PASS' : 'FAIL'} · ${failed} failing of ${d.checks.length} · environment ${d.environment} · ${new Date().toLocaleTimeString('en-GB')}`;
    $('diag').replaceChildren(h('thead', {}, h('tr', {}, h('th', { text: 'Status' }), h('th', { text: 'Link' }), h('th', { text: 'Hint' }))),
      h('tbody', {}, d.checks.map((c) => h('tr', { 'data-status': c.status }, h('td', {}, h('span', { class: 'chip ' + c.status, text: c.status })),
        h('td', { text: c.name }), h('td', { class: 'hint-cell', text: c.hint })))));
    renderStatus(lastOpen, lastDiag);
  } catch (e) {
    if (!handleAuth(e)) $('diag-summary').textContent = `Diagnose failed: ${e.message}`;
  } finally {
    btn.disabled = false;
  }
}

async function loadStuck() {
  const r = await api('/api/admin/tasks?stuck=true&limit=20');
  const table = $('stuck');
  if (!r.tasks.length) {
    table.replaceChildren(h('tbody', {}, h('tr', {}, h('td', { class: 'hint-cell', text: 'No unfinished task is past its deadline.' }))));
    return;
  }
  table.replaceChildren(h('thead', {}, h('tr', {}, ['Task', 'User', 'Model', 'State', 'Age', 'Tries', ''].map((t) => h('th', { text: t })))),
    h('tbody', {}, r.tasks.map((t) => h('tr', { 'data-testid': 'stuck-task', 'data-task-id': t.id },
      h('td', {}, h('code', { text: t.id })), h('td', {}, h('code', { text: t.user_id })), h('td', { text: t.model }), h('td', { text: t.state }),
      h('td', { text: ago(t.created_at) }), h('td', { text: String(t.attempts) }),
      h('td', {}, h('button', { type: 'button', class: 'small', 'data-testid': 'recheck', onclick: (ev) => recheck(t.id, ev.currentTarget), text: 'Recheck' }))))));
}

async function recheck(id, btn) {
  btn.disabled = true;
  try {
    const r = await api(`/api/admin/tasks/${encodeURIComponent(id)}/recheck`, { method: 'POST' });
    $('stuck-note').textContent = `${id}: ${r.previous_state} → ${r.task.state}`;
    await loadStuck();
  } catch (e) {
    if (!handleAuth(e)) $('stuck-note').textContent = `Recheck of ${id} failed: ${e.message}`;
    btn.disabled = false;
  }
}

// ---- orders ------------------------------------------------------------------
const money = (amount, currency) => `${(amount / 100).toFixed(2)} ${String(currency).toUpperCase()}`;

async function loadOrders() {
  const r = await api('/api/admin/orders?limit=20');
  const table = $('orders');
  if (!r.orders.length) {
    table.replaceChildren(h('tbody', {}, h('tr', {}, h('td', { class: 'hint-cell', text: 'No orders yet (or buying credits is off).' }))));
    return;
  }
  table.replaceChildren(h('thead', {}, h('tr', {}, ['Order', 'User', 'Credits', 'Price', 'State', 'Refunded', 'Owed', 'Created'].map((t) => h('th', { text: t })))),
    h('tbody', {}, r.orders.map((o) => h('tr', { 'data-testid': 'order', 'data-order-id': o.id, 'data-state': o.state },
      h('td', {}, h('code', { text: o.id })),
      h('td', {}, h('button', { type: 'button', class: 'small ghost', onclick: () => { $('user-id').value = o.user_id; showUser(o.user_id); }, text: o.user_id })),
      h('td', { class: 'mono', text: fmtInt(o.credits) }), h('td', { class: 'mono', text: money(o.amount, o.currency) }),
      h('td', { text: o.state + (o.failure ? ` (${o.failure})` : '') }),
      h('td', { class: 'mono', text: o.refunded_amount || o.disputed_amount ? `${money(o.refunded_amount, o.currency)}${o.disputed_amount ? ' · disputed' : ''} · ${fmtInt(o.credits_reversed)} cr back` : '' }),
      h('td', { class: 'mono', text: o.owed ? fmtInt(o.owed) : '' }),
      h('td', { text: ago(o.created_at) })))));
}

/** What a user owes (a purchase refunded or disputed after its credits were spent), and clearing it. */
function owedBox(user) {
  if (!user.owed) return '';
  const msg = h('p', { class: 'hint', 'aria-live': 'polite' });
  const reason = h('input', { id: 'owed-reason', maxlength: '200', required: true, placeholder: 'why (kept in the ledger)', 'data-testid': 'owed-reason' });
  const form = h('form', { class: 'adjust', novalidate: true },
    h('div', {}, h('label', { for: 'owed-reason', text: `Owes ${fmtInt(user.owed)} credits: creating and buying are refused until cleared` }), reason),
    h('button', { type: 'submit', 'data-testid': 'owed-clear', text: 'Clear' }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!reason.value.trim()) {
      msg.className = 'err';
      msg.textContent = 'Give a reason.';
      return;
    }
    try {
      const r = await api(`/api/admin/users/${encodeURIComponent(user.id)}/clear-owed`, { method: 'POST', body: { reason: reason.value.trim() } });
      await showUser(user.id);
      $('user-out').append(h('p', { class: 'ok-text', 'data-testid': 'owed-result', text: `Cleared ${fmtInt(r.cleared)} owed credits.` }));
      loadOrders().catch(() => {});
    } catch (e) {
      if (!handleAuth(e)) { msg.className = 'err'; msg.textContent = e.message; }
    }
  });
  return h('div', {}, form, msg);
}

// ---- users -------------------------------------------------------------------
async function loadUsers() {
  const r = await api('/api/admin/users?limit=6');
  $('users').replaceChildren(...r.users.map((u) => h('li', {}, h('button', { type: 'button', onclick: () => { $('user-id').value = u.id; showUser(u.id); }, text: u.name }),
    h('span', { class: 'mono', text: `${fmtInt(u.credits)} credits` }))));
}

async function showUser(id) {
  const out = $('user-out');
  id = id.trim();
  if (!/^usr_[a-z0-9]+$/i.test(id)) {
    out.replaceChildren(h('p', { class: 'err', text: 'A user id looks like usr_…' }));
    return;
  }
  out.replaceChildren(h('p', { class: 'hint', text: 'Loading…' }));
  try {
    const [{ user }, ledger] = await Promise.all([api(`/api/admin/users/${encodeURIComponent(id)}`), api(`/api/admin/users/${encodeURIComponent(id)}/ledger?limit=5`)]);
    const msg = h('p', { class: 'hint', 'aria-live': 'polite' });
    const amount = h('input', { id: 'adj-amount', type: 'number', step: '1', required: true, 'data-testid': 'credit-amount' });
    const reason = h('input', { id: 'adj-reason', maxlength: '200', required: true, placeholder: 'why (kept in the ledger)', 'data-testid': 'credit-reason' });
    const form = h('form', { class: 'adjust', novalidate: true },
      h('div', {}, h('label', { for: 'adj-amount', text: 'Credits ±' }), amount),
      h('div', {}, h('label', { for: 'adj-reason', text: 'Reason' }), reason),
      h('button', { type: 'submit', 'data-testid': 'credit-submit', text: 'Apply' }));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const n = Number(amount.value);
      if (!Number.isInteger(n) || n === 0 || !reason.value.trim()) {
        msg.className = 'err';
        msg.textContent = 'Give a whole number other than 0 and a reason.';
        return;
      }
      try {
        const r = await api(`/api/admin/users/${encodeURIComponent(id)}/credits`, { method: 'POST', body: { amount: n, reason: reason.value.trim() } });
        msg.className = 'ok-text';
        msg.textContent = `Done: the balance is now ${fmtInt(r.user.credits)}.`;
        await showUser(id);
        $('user-out').append(h('p', { class: 'ok-text', 'data-testid': 'credit-result', text: `Done: the balance is now ${fmtInt(r.user.credits)}.` }));
        loadUsers().catch(() => {});
      } catch (e) {
        if (!handleAuth(e)) { msg.className = 'err'; msg.textContent = e.message; }
      }
    });
    out.replaceChildren(h('div', { class: 'userbox' },
      h('dl', {}, h('dt', { text: 'Name' }), h('dd', { text: user.name }), h('dt', { text: 'Id' }), h('dd', {}, h('code', { text: user.id })),
        h('dt', { text: 'Balance' }), h('dd', { 'data-testid': 'user-credits', text: `${fmtInt(user.credits)} credits` }),
        h('dt', { text: 'Since' }), h('dd', { text: stamp(user.created_at) }),
        ...(user.owed ? [h('dt', { text: 'Owes' }), h('dd', { class: 'err', 'data-testid': 'user-owed', text: `${fmtInt(user.owed)} credits` })] : [])),
      h('table', { class: 'table' }, h('tbody', {}, ledger.entries.map((e) => h('tr', {}, h('td', { text: stamp(e.created_at) }), h('td', { text: e.kind }),
        h('td', { class: 'mono', text: (e.amount > 0 ? '+' : '') + e.amount }), h('td', { class: 'hint-cell', text: e.reason || e.task_id || '' }))))),
      owedBox(user), form, msg));
  } catch (e) {
    if (!handleAuth(e)) out.replaceChildren(h('p', { class: 'err', text: e.status === 404 ? 'No user has this id.' : e.message }));
  }
}

// ---- loading, auth -----------------------------------------------------------
function problem(text) {
  $('problem').textContent = text || '';
  $('problem').hidden = !text;
}

function handleAuth(e) {
  if (e.status !== 401 && e.status !== 403) return false;
  signOut(e.status === 403 ? e.message : 'The operator token was not accepted; enter it again.');
  return true;
}

async function load() {
  if (loading || !token) return;
  loading = true;
  $('refresh').disabled = true;
  try {
    const [m, alerts] = await Promise.all([api('/api/admin/metrics?window=' + win), api('/api/admin/alerts')]);
    renderMetrics(m);
    lastOpen = renderAlerts(alerts);
    renderStatus(lastOpen, lastDiag);
    await Promise.all([loadStuck(), loadUsers(), loadOrders()]);
    $('updated').textContent = 'Updated ' + new Date().toLocaleTimeString('en-GB');
    document.body.dataset.loaded = 'true';
    problem('');
  } catch (e) {
    if (!handleAuth(e)) problem(`Could not load the dashboard: ${e.message}${e.rid ? ` (request ${e.rid})` : ''}. Retrying in a minute.`);
  } finally {
    loading = false;
    $('refresh').disabled = false;
    clearTimeout(timer);
    if (token) timer = setTimeout(() => { if (document.visibilityState === 'visible') load(); else timer = setTimeout(load, REFRESH_MS); }, REFRESH_MS);
  }
}

function showDash() {
  $('signin').hidden = true;
  $('dash').hidden = false;
  $('controls').hidden = false;
  load();
  runDiagnose();
}

function signOut(message) {
  token = null;
  clearTimeout(timer);
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* storage off */ }
  $('dash').hidden = true;
  $('controls').hidden = true;
  $('signin').hidden = false;
  $('signin-err').textContent = message || '';
  $('signin-err').hidden = !message;
  $('token').value = '';
  $('token').focus();
}

$('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  token = value;
  try {
    await api('/api/admin/alerts');
  } catch (e) {
    token = null;
    $('signin-err').textContent = e.status === 401 || e.status === 403 ? 'That is not the operator token.' : e.message;
    $('signin-err').hidden = false;
    return;
  }
  try { sessionStorage.setItem(TOKEN_KEY, value); } catch { /* storage off: kept in memory */ }
  $('signin-err').hidden = true;
  showDash();
});
$('refresh').addEventListener('click', () => { load(); runDiagnose(); });
$('forget').addEventListener('click', () => signOut(''));
$('diag-run').addEventListener('click', runDiagnose);
$('user-form').addEventListener('submit', (ev) => { ev.preventDefault(); showUser($('user-id').value); });
for (const b of document.querySelectorAll('[data-window]')) {
  b.addEventListener('click', () => {
    win = b.dataset.window;
    for (const x of document.querySelectorAll('[data-window]')) x.setAttribute('aria-pressed', String(x === b));
    load();
  });
}
// Charts are drawn at their width: draw them again when it changes.
addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (metrics && Math.abs($('c-tasks').getBoundingClientRect().width - drawnWidth) > 1) renderMetrics(metrics);
  }, 100);
});
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible' && token && !loading) load(); });

try { token = sessionStorage.getItem(TOKEN_KEY); } catch { token = null; }
if (token) showDash(); else signOut('');
})();
