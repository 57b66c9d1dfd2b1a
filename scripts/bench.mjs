// Benchmark of the built Worker on the local stack (workerd via Miniflare with
// local D1/KV/R2, plus the Kie simulator answering instantly). Prints a
// fixed-width report meant to be compared run to run, and writes the same
// figures to test-artifacts/bench.json.
//
//   node scripts/bench.mjs [--requests 200] [--warmup 20] [--concurrency 4] [--tasks 10] [--poll-ms 500]
//                          [--rounds 7] [--round-ms 1200] [--quick] [--profile] [--out FILE]
//
// It also compares three routes with bench/reference-worker.js, the plain
// JavaScript Worker doing the same work, run in its own Miniflare instance with
// the same options and a copy of our D1 rows: status of a finished task, a
// duplicate (HMAC-signed) callback, and a static asset. For each route both
// Workers run `--rounds` rounds of the same request count at the same
// concurrency, interleaved (ours, JS, JS, ours, …: the order alternates), after
// a warm-up of both, from the same node:http keep-alive client; a round lasts
// at least `--round-ms`. The ratio is ours
// req/s ÷ JS req/s within each round; the report gives the median over rounds
// and its range. Before measuring, both Workers' answers are checked to match
// (status, body, headers, one log line with the same D1 counts), so the
// comparison cannot drift from what the service does.
//
// --quick: a few small rounds, to check that the benchmark still runs (tests/tools).
// --profile: after all routes' rounds, a V8 CPU profile of each Worker's isolate
//   (scripts/isolate-profile.mjs): its time per request by kind of code.
//
// Everything stays on 127.0.0.1; every phase is bounded in request count and time.

import { readFileSync, readdirSync, mkdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import { gzipSync } from 'node:zlib';
import os from 'node:os';
import path from 'node:path';
import { startStack, requireBuild, ROOT, sleep, HMAC_KEY, REQUEST_LINE_FIELDS, quietPort } from '../tests/e2e/harness.mjs';
import { profileIsolate, KINDS, SAMPLING_US } from './isolate-profile.mjs';
import { signWebhook } from '../sim/kie-sim.mjs';

// ------------------------------------------------------------------ options

const QUICK = { requests: 30, warmup: 5, tasks: 2, pollMs: 300, rounds: 2, roundMs: 250, timeLimitS: 100 };

function parseArgs(argv) {
  const o = { requests: 200, warmup: 20, concurrency: 4, tasks: 10, pollMs: 500, timeLimitS: 240, rounds: 9, roundMs: 1200, quick: false, profile: false, out: null };
  if (argv.includes('--quick')) Object.assign(o, QUICK, { quick: true });
  const names = { '--requests': 'requests', '--warmup': 'warmup', '--concurrency': 'concurrency', '--tasks': 'tasks', '--poll-ms': 'pollMs', '--time-limit': 'timeLimitS', '--rounds': 'rounds', '--round-ms': 'roundMs' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    if (flag === '-h' || flag === '--help') {
      console.log('usage: node scripts/bench.mjs [--requests N] [--warmup N] [--concurrency N] [--tasks N] [--poll-ms N] [--rounds N] [--round-ms N] [--time-limit S] [--quick] [--profile] [--out FILE]');
      process.exit(0);
    }
    if (flag === '--quick') continue;
    if (flag === '--profile') {
      o.profile = true;
      continue;
    }
    if (flag === '--out') {
      o.out = path.resolve(inline ?? argv[++i] ?? '');
      continue;
    }
    const key = names[flag];
    if (!key) throw new Error(`unknown option ${argv[i]}`);
    const v = Number(inline ?? argv[++i]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`${flag} needs a positive whole number`);
    o[key] = v;
  }
  o.requests = Math.min(o.requests, 2000);
  o.warmup = Math.min(o.warmup, 200);
  o.concurrency = Math.min(o.concurrency, 32);
  o.tasks = Math.min(o.tasks, 50);
  o.rounds = Math.min(o.rounds, 25);
  o.roundMs = Math.min(o.roundMs, 10_000);
  return o;
}

const OPT = parseArgs(process.argv.slice(2));
// Miniflare names modules relative to the working directory: run from the root.
process.chdir(ROOT);
const REQ_TIMEOUT_MS = 10_000;

// Hard stop: the whole run must stay bounded.
const watchdog = setTimeout(() => {
  console.error(`bench: gave up after ${OPT.timeLimitS} s`);
  process.exit(2);
}, OPT.timeLimitS * 1000);
watchdog.unref();

// ------------------------------------------------------------------ helpers

const median = (xs) => quantile(xs, 0.5);
function quantile(xs, q) {
  const a = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((x, y) => x - y);
  if (!a.length) return null;
  const pos = (a.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return a[lo] + (a[hi] - a[lo]) * (pos - lo);
}
const round = (x, d = 1) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);
const kb = (bytes) => round(bytes / 1024, 1);

async function call(url, { method = 'GET', headers = {}, json } = {}) {
  const h = { ...headers };
  let body;
  if (json !== undefined) {
    h['content-type'] = 'application/json';
    body = typeof json === 'string' ? json : JSON.stringify(json);
  }
  const t0 = performance.now();
  const res = await fetch(url, { method, headers: h, body, signal: AbortSignal.timeout(REQ_TIMEOUT_MS) });
  const text = await res.text();
  const ms = performance.now() - t0;
  let parsed = null;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed, text, ms, requestId: res.headers.get('x-request-id'), headers: res.headers };
}

// The comparison's client: node:http with kept-alive connections, far cheaper
// per request than fetch (the client shares the machine with both Workers, so
// its cost would blur the difference). No Accept-Encoding: on Cloudflare the
// edge compresses outside the Worker; here workerd would, for both alike.
// Each measured run gets its own agent, closed after it, so no connection sits
// idle between runs (a server closing an idle kept-alive connection just as
// the client reuses it resets the request: that one is retried, and counted).
let keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });
let leanRetries = 0;
async function leanCall(url, opts = {}) {
  try {
    return await leanOnce(url, opts);
  } catch (e) {
    if (!(e.code === 'ECONNRESET' || e.message === 'socket hang up')) throw e;
    leanRetries++;
    return leanOnce(url, opts);
  }
}
function leanOnce(url, { method = 'GET', headers = {}, json } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    let body;
    if (json !== undefined) {
      h['content-type'] = 'application/json';
      body = typeof json === 'string' ? json : JSON.stringify(json);
      h['content-length'] = Buffer.byteLength(body);
    }
    const t0 = performance.now();
    const req = http.request(url, { method, headers: h, agent: keepAlive, timeout: REQ_TIMEOUT_MS }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode, text, ms: performance.now() - t0, requestId: res.headers['x-request-id'] });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${REQ_TIMEOUT_MS} ms: ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Runs `warmup` then `n` requests with `concurrency` workers. `make(i)` returns the
 * call's arguments; `expect` is the status every measured request must answer.
 */
async function load(name, { n, warmup, concurrency, expect, make, client = call }) {
  for (let i = 0; i < warmup; i++) {
    const r = await client(...make(-1 - i));
    if (r.status !== expect) throw new Error(`${name} warm-up: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  }
  const lat = [];
  const ids = [];
  const bad = [];
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const r = await client(...make(i));
      if (r.status !== expect) bad.push(`${r.status} ${r.text.slice(0, 200)}`);
      lat.push(r.ms);
      if (r.requestId) ids.push(r.requestId);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wall = (performance.now() - t0) / 1000;
  if (bad.length) throw new Error(`${name}: ${bad.length}/${n} requests did not answer ${expect}; first: ${bad[0]}`);
  return { n, concurrency, p50_ms: round(quantile(lat, 0.5), 2), p95_ms: round(quantile(lat, 0.95), 2), max_ms: round(Math.max(...lat), 2), rps: round(n / wall, 1), wall_s: round(wall, 2), ids, lat, wall };
}

/** The Worker's http.request log lines for these request ids (waits for stdout to catch up). */
async function requestLines(stack, ids, timeoutMs = 5000) {
  const want = new Set(ids);
  const deadline = Date.now() + timeoutMs;
  let found = [];
  while (Date.now() < deadline) {
    found = stack.logs.filter((l) => l.event === 'http.request' && want.has(l.request_id));
    if (found.length >= want.size) break;
    await sleep(50);
  }
  return found;
}

function serverStats(lines) {
  const pick = (k) => median(lines.map((l) => l[k]));
  return {
    log_lines: lines.length,
    server_ms_p50: pick('duration_ms'),
    d1_queries: pick('d1_queries'),
    d1_rows_read: pick('d1_rows_read'),
    d1_rows_written: pick('d1_rows_written'),
    kie_calls: pick('kie_calls'),
    d1_queries_min: lines.length ? Math.min(...lines.map((l) => l.d1_queries ?? 0)) : null,
    d1_queries_max: lines.length ? Math.max(...lines.map((l) => l.d1_queries ?? 0)) : null,
    d1_rows_read_min: lines.length ? Math.min(...lines.map((l) => l.d1_rows_read ?? 0)) : null,
    d1_rows_read_max: lines.length ? Math.max(...lines.map((l) => l.d1_rows_read ?? 0)) : null,
    subrequests: pick('subrequests'),
    subrequests_max: lines.length ? Math.max(...lines.map((l) => l.subrequests ?? 0)) : null,
    wasm_memory_bytes_max: lines.length ? Math.max(...lines.map((l) => l.wasm_memory_bytes ?? 0)) : null,
  };
}

// ------------------------------------------------------------------ bundle size

function bundle() {
  const out = {};
  for (const f of ['build/index_bg.wasm', 'build/index.js']) {
    const buf = readFileSync(path.join(ROOT, f));
    const gz = gzipSync(buf, { level: 9 }).length;
    out[f] = { raw_kb: kb(buf.length), gzip_kb: kb(gz), raw_bytes: buf.length, gzip_bytes: gz };
  }
  return out;
}

/** What is uploaded (wasm + JS shim), in KiB, against the size goal. */
const BUNDLE_GOAL_GZIP_KIB = 220;
function bundleTotal(b) {
  const files = Object.values(b);
  const raw = files.reduce((a, f) => a + f.raw_bytes, 0);
  const gz = files.reduce((a, f) => a + f.gzip_bytes, 0);
  return { raw_kib: kb(raw), gzip_kib: kb(gz), goal_gzip_kib: BUNDLE_GOAL_GZIP_KIB, meets_goal: gz / 1024 <= BUNDLE_GOAL_GZIP_KIB };
}

// ------------------------------------------------------------------ server CPU (Linux /proc)

// Each Miniflare instance runs one workerd process: its CPU time per request
// is measured around every round (less noisy than throughput on a small machine).
let clockTicks = 100;
try {
  clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {}

function workerdPids() {
  const pids = new Set();
  try {
    for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
      for (const c of readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean)) {
        try {
          if (readFileSync(`/proc/${c}/comm`, 'utf8').trim() === 'workerd') pids.add(Number(c));
        } catch {}
      }
    }
  } catch {}
  return pids;
}

function cpuMs(pid) {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks; // utime + stime
  } catch {
    return null;
  }
}

/** Starts a stack and tells which workerd process is its own. */
async function startWithPid(opts) {
  const before = workerdPids();
  const inspectorPort = OPT.profile ? await quietPort() : undefined;
  const stack = await startStack({ ...opts, inspectorPort });
  stack.inspectorPort = inspectorPort;
  // A port retry may leave a disposed workerd exiting for a moment.
  let mine = [];
  for (let i = 0; i < 20; i++) {
    mine = [...workerdPids()].filter((p) => !before.has(p));
    if (mine.length <= 1) break;
    await sleep(100);
  }
  stack.pid = mine.length === 1 ? mine[0] : null;
  return stack;
}

// ------------------------------------------------------------------ ours vs the JavaScript reference Worker

const RATIO_GOALS = { status: 1.0, callback: 1.0, static: 0.9 };

/** Copies our rows into the reference Worker's D1 (same schema, same data). */
async function copyRows(from, to, tables) {
  for (const table of tables) {
    for (const r of await from.sql(`SELECT * FROM ${table}`)) {
      const cols = Object.keys(r);
      await to.sql(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((_, j) => `?${j + 1}`).join(', ')})`, ...cols.map((c) => r[c]));
    }
  }
}

/**
 * One request to each Worker: same status, same body (origins aside), same
 * headers, and one request log line each with the documented fields and the
 * same D1 counts. Throws on any difference: the reference must do our work.
 */
async function checkParity(name, sides, mk, headerNames) {
  const seen = {};
  for (const [side, t] of Object.entries(sides)) {
    const r = await call(...mk(t));
    const [line] = await requestLines(t.stack, [r.requestId]);
    // Background lines (ours flushes its monitoring counters every few seconds,
    // after whichever request is running then) are not the request's own.
    const lines = t.stack.logs.filter((l) => l.request_id === r.requestId && !String(l.event).startsWith('background.'));
    seen[side] = { r, line, lines: lines.length, text: r.text.replaceAll(t.stack.url, 'ORIGIN') };
  }
  const { ours, js } = seen;
  const problems = [];
  if (ours.r.status !== 200 || js.r.status !== 200) problems.push(`status ${ours.r.status} (ours) vs ${js.r.status} (JS)`);
  const same = ours.r.body != null ? isDeepStrictEqual(JSON.parse(ours.text), JSON.parse(js.text)) : ours.text === js.text;
  if (!same) problems.push(`bodies differ:\n  ours ${ours.text.slice(0, 600)}\n  JS   ${js.text.slice(0, 600)}`);
  for (const h of ['content-type', 'cache-control', 'x-content-type-options', ...headerNames]) {
    if (ours.r.headers.get(h) !== js.r.headers.get(h)) problems.push(`header ${h}: ${ours.r.headers.get(h)} (ours) vs ${js.r.headers.get(h)} (JS)`);
  }
  for (const [side, v] of Object.entries(seen)) {
    if (!v.r.requestId) problems.push(`${side}: no X-Request-Id`);
    if (!v.line) problems.push(`${side}: no request log line`);
    else for (const f of REQUEST_LINE_FIELDS) if (!(f in v.line)) problems.push(`${side}: request log line without ${f}`);
  }
  if (ours.lines !== js.lines) problems.push(`log lines per request: ${ours.lines} (ours) vs ${js.lines} (JS)`);
  for (const k of ['d1_queries', 'd1_rows_read', 'd1_rows_written']) {
    if (ours.line && js.line && ours.line[k] !== js.line[k]) problems.push(`${k}: ${ours.line[k]} (ours) vs ${js.line[k]} (JS)`);
  }
  if (problems.length) throw new Error(`the reference Worker does not answer ${name} like ours:\n- ${problems.join('\n- ')}`);
  return { log_lines_per_request: ours.lines, d1_queries: ours.line.d1_queries, d1_rows_read: ours.line.d1_rows_read, d1_rows_written: ours.line.d1_rows_written };
}

/** One measured run against one Worker, with both processes' CPU time. */
async function measured(name, t, n, mk) {
  const srv0 = cpuMs(t.stack.pid);
  const cli0 = process.cpuUsage();
  const make = mk(t);
  keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const r = await load(name, { n, warmup: 0, concurrency: OPT.concurrency, expect: 200, make: () => make, client: leanCall });
  const srv = cpuMs(t.stack.pid);
  const cli = process.cpuUsage(cli0);
  keepAlive.destroy();
  return { ...r, srv_cpu_ms: srv == null || srv0 == null ? null : srv - srv0, cli_cpu_ms: (cli.user + cli.system) / 1000 };
}

/**
 * Warm-up of both, then `rounds` rounds of the same request count for both
 * Workers, the order alternating each round. The count is raised (for both)
 * until a round of the faster Worker lasts at least roundMs.
 */
async function compareRoute(name, sides, mk, endBy) {
  const target = OPT.roundMs / 1000;
  const minRounds = Math.min(OPT.rounds, OPT.quick ? 2 : 3);
  const warm = {};
  for (const side of ['js', 'ours']) warm[side] = await measured(`${name} warm-up (${side})`, sides[side], OPT.quick ? 20 : 150, mk);
  let n = Math.min(20_000, Math.max(OPT.quick ? 20 : 50, Math.ceil(Math.max(warm.ours.rps, warm.js.rps) * target * 1.1)));
  const runs = { ours: [], js: [] };
  const rounds = [];
  let lastRoundMs = 0;
  for (let i = 0; i < OPT.rounds; i++) {
    // On a loaded machine, fewer rounds (at least minRounds) rather than an unbounded run.
    if (i >= minRounds && Date.now() + lastRoundMs > endBy) break;
    const roundStart = Date.now();
    const order = i % 2 === 0 ? ['ours', 'js'] : ['js', 'ours'];
    const got = {};
    for (const side of order) {
      got[side] = await measured(`${name} (${side})`, sides[side], n, mk);
      runs[side].push(got[side]);
    }
    const cpu = (x) => (x.srv_cpu_ms == null ? null : x.srv_cpu_ms / x.n);
    rounds.push({
      n,
      first: order[0],
      ours_rps: got.ours.rps,
      js_rps: got.js.rps,
      ratio: round(got.ours.n / got.ours.wall / (got.js.n / got.js.wall), 3),
      ours_cpu_ms_per_req: round(cpu(got.ours), 3),
      js_cpu_ms_per_req: round(cpu(got.js), 3),
      cpu_ratio: cpu(got.ours) ? round(cpu(got.js) / cpu(got.ours), 3) : null,
    });
    lastRoundMs = Date.now() - roundStart;
    const shortest = Math.min(got.ours.wall, got.js.wall);
    if (shortest < target) n = Math.min(20_000, Math.ceil((n * target * 1.1) / shortest));
  }
  const summary = async (side) => {
    const rs = runs[side];
    const total = rs.reduce((a, r) => a + r.n, 0);
    const wall = rs.reduce((a, r) => a + r.wall, 0);
    const lat = rs.flatMap((r) => r.lat);
    const srv = rs.every((r) => r.srv_cpu_ms != null) ? rs.reduce((a, r) => a + r.srv_cpu_ms, 0) : null;
    const ids = rs.flatMap((r) => r.ids);
    const lines = await requestLines(sides[side].stack, ids);
    return {
      requests: total,
      rps: round(total / wall, 1),
      rps_rounds: rs.map((r) => r.rps),
      p50_ms: round(quantile(lat, 0.5), 2),
      p95_ms: round(quantile(lat, 0.95), 2),
      server_cpu_ms_per_req: srv == null ? null : round(srv / total, 3),
      client_cpu_ms_per_req: round(rs.reduce((a, r) => a + r.cli_cpu_ms, 0) / total, 3),
      server_ms_p50: median(lines.map((l) => l.duration_ms)),
      log_lines: lines.length,
    };
  };
  const ratios = rounds.map((r) => r.ratio);
  const ours = await summary('ours');
  const js = await summary('js');
  return {
    rounds,
    ours,
    js,
    ratio: round(median(ratios), 3),
    ratio_min: Math.min(...ratios),
    ratio_max: Math.max(...ratios),
    ratio_pooled: round(ours.rps / js.rps, 3),
    // JS CPU ÷ our CPU per request (above 1: ours needs less), median over rounds.
    cpu_ratio: round(median(rounds.map((r) => r.cpu_ratio)), 3),
    goal: RATIO_GOALS[name],
    meets_goal: median(ratios) >= RATIO_GOALS[name],
  };
}

/** `budgetEnd`: when the comparison should be over (the rest of the run needs time too). */
async function versusJs(stack, done, cbBody, callBackUrl, budgetEnd) {
  // The JS Worker serves the very bytes (and ETags) ours serves: the page as shipped, minified.
  const served = async (p) => {
    const res = await fetch(stack.url + p);
    return { text: await res.text(), etag: res.headers.get('etag') };
  };
  const [css, js] = [await served('/app.css'), await served('/app.js')];
  const ref = await startWithPid({
    name: 'bench-reference',
    script: 'bench/reference-worker.js',
    hmac: true,
    sim: { stepMs: 1 },
    vars: { ...stack.benchVars, ASSET_APP_CSS: css.text, ASSET_APP_JS: js.text, ASSET_APP_CSS_ETAG: css.etag, ASSET_APP_JS_ETAG: js.etag },
  });
  try {
    await copyRows(stack, ref, ['users', 'api_keys', 'tasks']);
    const sides = { ours: { stack }, js: { stack: ref } };
    const auth = { authorization: `Bearer ${stack.benchKey}` };
    const cbPath = callBackUrl.slice(stack.url.length);
    const routes = {
      status: {
        label: 'GET /api/tasks/:id (succeeded)',
        short: 'GET /api/tasks/:id',
        mk: (t) => [`${t.stack.url}/api/tasks/${done.id}`, { headers: auth }],
        headers: [],
      },
      callback: {
        label: 'POST /api/webhooks/kie-image (duplicate, HMAC-signed)',
        short: 'POST /api/webhooks/kie-image',
        // A fresh Kie timestamp and signature for each run (valid for ±300 s).
        mk: (t) => {
          const ts = String(Math.floor(Date.now() / 1000));
          const headers = { 'user-agent': 'KieAI-Webhook/1.0', 'x-webhook-timestamp': ts, 'x-webhook-signature': signWebhook(HMAC_KEY, done.provider_task_id, ts) };
          return [t.stack.url + cbPath, { method: 'POST', headers, json: cbBody }];
        },
        headers: [],
      },
      static: {
        label: 'GET /app.css (embedded in wasm / JS text binding)',
        short: 'GET /app.css',
        mk: (t) => [`${t.stack.url}/app.css`],
        headers: ['etag', 'content-security-policy', 'referrer-policy'],
      },
    };
    const out = { reference: 'bench/reference-worker.js', rounds: OPT.rounds, round_ms: OPT.roundMs, concurrency: OPT.concurrency, ratio: 'ours req/s ÷ JS req/s per round, median over rounds', routes: {} };
    if (!stack.pid || !ref.pid) out.note = 'workerd processes not found: no server CPU figures';
    const names = Object.keys(routes);
    for (const [k, name] of names.entries()) {
      const r = routes[name];
      const parity = await checkParity(name, sides, r.mk, r.headers);
      const endBy = Date.now() + (budgetEnd - Date.now()) / (names.length - k);
      out.routes[name] = { label: r.label, short: r.short, parity, ...(await compareRoute(name, sides, r.mk, endBy)) };
    }
    // After every route's rounds: an attached inspector slows both isolates (console.log goes to it too).
    if (OPT.profile) for (const name of names) out.routes[name].profile = await profileRoute(name, sides, routes[name].mk);
    out.client_retries = leanRetries;
    return out;
  } finally {
    ref.inspector?.close();
    await ref.stop().catch(() => {});
  }
}

/** Each Worker's isolate profiled over the same requests. */
async function profileRoute(name, sides, mk) {
  const n = OPT.quick ? 100 : 1500;
  const out = {};
  for (const side of ['ours', 'js']) {
    const t = sides[side];
    out[side] = await profileIsolate(t.stack, n, () => measured(`${name} profile (${side})`, t, n, mk));
  }
  return out;
}

// ------------------------------------------------------------------ main

async function main() {
  requireBuild();
  const started = Date.now();
  const report = {
    schema: 1,
    when: new Date().toISOString(),
    machine: { node: process.version, platform: `${os.platform()}-${os.arch()}`, cpus: os.cpus().length, cpu: os.cpus()[0]?.model?.trim() ?? '?', loadavg_1m_at_start: round(os.loadavg()[0], 2) },
    options: { requests: OPT.requests, warmup: OPT.warmup, concurrency: OPT.concurrency, tasks: OPT.tasks, poll_ms: OPT.pollMs, rounds: OPT.rounds, round_ms: OPT.roundMs, quick: OPT.quick },
    bundle: bundle(),
    routes: {},
    kie_per_task: {},
  };
  report.bundle_total = bundleTotal(report.bundle);

  // Both Workers (ours, and the JS reference later) get the same bindings
  // (the reference also gets the page's text as ours serves it); Kie signs its
  // callbacks (HMAC on).
  const benchVars = {
    // KIE_CREATES_PER_WINDOW is capped at 10000 by the Worker's config check.
    RATE_LIMIT_PER_MINUTE: '100000', MAX_ACTIVE_TASKS: '10000', KIE_CREATES_PER_WINDOW: '10000',
  };
  const stack = await startWithPid({
    name: 'bench',
    hmac: true,
    sim: { stepMs: 1, credits: 10_000_000, rateLimit: { enabled: false } },
    vars: benchVars,
  });
  stack.benchVars = benchVars;
  try {
    const { sim, url } = stack;
    const user = await stack.createUser(1_000_000, 'bench');
    stack.benchKey = user.key;
    const auth = { authorization: `Bearer ${user.key}` };
    const createBody = { model: 'nano-banana', prompt: 'bench' };
    const run = { n: OPT.requests, warmup: OPT.warmup, concurrency: OPT.concurrency };

    // Tasks that reach succeeded through a callback (used by status and callback).
    const finishedTask = async () => {
      const r = await call(`${url}/api/create/ai-image`, { method: 'POST', headers: auth, json: createBody });
      if (r.status !== 202) throw new Error(`create: HTTP ${r.status} ${r.text.slice(0, 300)}`);
      const id = r.body.task.id;
      const deadline = Date.now() + 15_000;
      for (;;) {
        const t = await call(`${url}/api/tasks/${id}`, { headers: auth });
        if (t.body?.task?.state === 'succeeded') return t.body.task;
        if (t.body?.task?.state === 'failed') throw new Error(`task ${id} failed: ${t.text.slice(0, 300)}`);
        if (Date.now() > deadline) throw new Error(`task ${id} did not finish: ${t.text.slice(0, 300)}`);
        await sleep(50);
      }
    };

    // 0. the web page's first load: what a browser transfers before images.
    report.page = {};
    for (const asset of ['/', '/app.js', '/app.css']) {
      const res = await fetch(url + asset);
      const buf = Buffer.from(await res.arrayBuffer());
      report.page[asset] = { raw_kb: kb(buf.length), gzip_kb: kb(gzipSync(buf, { level: 9 }).length), raw_bytes: buf.length };
    }

    // 1. health
    const health = await load('health', { ...run, expect: 200, make: () => [`${url}/api/health`] });

    // 2. create. Callbacks are dropped during this phase so that background
    //    webhook traffic (and result copying) does not mix into create latency.
    sim.configure({ callbacks: { drop: true } });
    const create = await load('create', { ...run, expect: 202, make: () => [`${url}/api/create/ai-image`, { method: 'POST', headers: auth, json: createBody }] });
    sim.configure({ callbacks: { drop: false } });

    // 3. status of a finished task
    const done = await finishedTask();
    const status = await load('status', { ...run, expect: 200, make: () => [`${url}/api/tasks/${done.id}`, { headers: auth }] });

    // 4. callback replayed to a finished task (idempotent path). The body is the
    //    simulator's own jobs-shaped success callback for that task, signed
    //    with Kie's HMAC headers (the stack requires them).
    const simTask = sim.taskView(done.provider_task_id);
    if (!simTask?.callBackUrl) throw new Error('the simulator task has no callBackUrl');
    const manual = await call(`${sim.url}/_sim/tasks/${done.provider_task_id}/callback`, { method: 'POST', json: {} });
    if (!manual.body?.ok) throw new Error(`manual callback failed: ${manual.text.slice(0, 300)}`);
    const cbBody = JSON.stringify(manual.body.sent);
    const ts = String(Math.floor(Date.now() / 1000));
    const cbHeaders = { 'user-agent': 'KieAI-Webhook/1.0', 'x-webhook-timestamp': ts, 'x-webhook-signature': signWebhook(HMAC_KEY, done.provider_task_id, ts) };
    const callback = await load('callback', { ...run, expect: 200, make: () => [simTask.callBackUrl, { method: 'POST', headers: cbHeaders, json: cbBody }] });

    const phases = [
      ['health', 'GET /api/health', health],
      ['create', 'POST /api/create/ai-image', create],
      ['tasks.get', 'GET /api/tasks/:id (succeeded)', status],
      ['webhook', 'POST /api/webhooks/kie-image (replay)', callback],
    ];
    for (const [route, label, r] of phases) {
      const lines = (await requestLines(stack, r.ids)).filter((l) => l.route === route);
      const { ids, lat, wall, ...rest } = r;
      report.routes[route] = { label, ...rest, ...serverStats(lines) };
    }

    // 5. The same status, callback and static asset against the JS reference Worker.
    // Bounded: the whole run should end within about 3 minutes (quick: 1) on a busy machine.
    report.vs_js = await versusJs(stack, done, cbBody, simTask.callBackUrl, started + (OPT.quick ? 55_000 : 165_000));

    // 6. Kie calls per completed task, with callbacks on and with callbacks dropped.
    //    The client polls GET /api/tasks/:id every pollMs until the task is terminal.
    for (const [cond, drop] of [['callbacks', false], ['dropped_callbacks', true]]) {
      sim.configure({ callbacks: { drop } });
      const createsBefore = sim.state.stats.create;
      const recordsBefore = sim.state.stats.record;
      const t0 = Date.now();
      const tasks = await Promise.all(
        Array.from({ length: OPT.tasks }, async () => {
          const r = await call(`${url}/api/create/ai-image`, { method: 'POST', headers: auth, json: createBody });
          if (r.status !== 202) throw new Error(`create: HTTP ${r.status} ${r.text.slice(0, 300)}`);
          const created = Date.now();
          const id = r.body.task.id;
          let polls = 0;
          let t;
          const deadline = created + 20_000;
          for (;;) {
            await sleep(OPT.pollMs);
            polls++;
            t = (await call(`${url}/api/tasks/${id}`, { headers: auth })).body?.task;
            if (t && (t.state === 'succeeded' || t.state === 'failed')) break;
            if (Date.now() > deadline) throw new Error(`${cond}: task ${id} not terminal after 20 s (state ${t?.state})`);
          }
          return { id, pid: t.provider_task_id, state: t.state, polls, ms: Date.now() - created };
        }),
      );
      await sleep(300); // let late callbacks/logs land
      const pids = new Set(tasks.map((t) => t.pid));
      const ours = new Set(tasks.map((t) => t.id));
      const kieEvents = stack.logs.filter((l) => l.event === 'kie.call' && ours.has(l.task_id));
      const perTask = tasks.map((t) => {
        const ev = kieEvents.filter((l) => l.task_id === t.id);
        return {
          ...t,
          sim_record: sim.state.stats.recordByTask[t.pid] ?? 0,
          log_create: ev.filter((l) => l.kie_op === 'create').length,
          log_record: ev.filter((l) => l.kie_op === 'record').length,
          callbacks_delivered: (sim.taskView(t.pid)?.callbacks ?? []).filter((c) => c.ok).length,
        };
      });
      const n = tasks.length;
      const simCreates = sim.state.stats.create - createsBefore;
      const simRecords = sim.state.stats.record - recordsBefore;
      report.kie_per_task[cond] = {
        tasks: n,
        succeeded: tasks.filter((t) => t.state === 'succeeded').length,
        kie_creates_per_task: round(simCreates / n, 2),
        kie_records_per_task: round(simRecords / n, 2),
        kie_calls_per_task: round((simCreates + simRecords) / n, 2),
        log_kie_calls_per_task: round(kieEvents.length / n, 2),
        record_calls_max: Math.max(...perTask.map((t) => t.sim_record)),
        client_polls_per_task: round(median(tasks.map((t) => t.polls)), 1),
        time_to_terminal_ms_p50: round(median(tasks.map((t) => t.ms)), 0),
        callbacks_delivered_per_task: round(perTask.reduce((a, t) => a + t.callbacks_delivered, 0) / n, 2),
        wall_s: round((Date.now() - t0) / 1000, 2),
        per_task: perTask,
      };
      if (pids.size !== n) throw new Error(`${cond}: provider task ids not unique`);
    }
    sim.configure({ callbacks: { drop: false } });
    const closing = stack.logs.filter((l) => typeof l.wasm_memory_bytes === 'number');
    report.memory = { lines: closing.length, peak_wasm_memory_bytes: closing.length ? Math.max(...closing.map((l) => l.wasm_memory_bytes)) : null };
    report.total_s = round((Date.now() - started) / 1000, 1);
  } finally {
    // Not stack.close(): that also writes the whole request log to test-artifacts/logs.
    stack.inspector?.close();
    await stack.stop();
  }
  return report;
}

// ------------------------------------------------------------------ report

function pad(s, w, right = true) {
  s = s == null ? '-' : String(s);
  return right ? s.padStart(w) : s.padEnd(w);
}
const fmt = (x, d = 1) => (x == null ? '-' : Number(x).toFixed(d));

function render(r) {
  const out = [];
  const line = (s = '') => out.push(s);
  line(`Worker benchmark  ${r.when}`);
  line(`node ${r.machine.node}  ${r.machine.platform}  ${r.machine.cpus} cpu  ${r.machine.cpu}  load average ${fmt(r.machine.loadavg_1m_at_start, 2)} at start`);
  line(`${r.options.requests} requests/route after ${r.options.warmup} warm-up, concurrency ${r.options.concurrency}; ${r.options.tasks} tasks per Kie condition, client poll ${r.options.poll_ms} ms`);
  line();
  line('Bundle                       raw KB   gzip-9 KB');
  for (const [f, b] of Object.entries(r.bundle)) line(`${pad(f, 24, false)} ${pad(fmt(b.raw_kb), 10)} ${pad(fmt(b.gzip_kb), 11)}`);
  const bt = r.bundle_total;
  line(`${pad('Worker total (wasm + JS)', 24, false)} ${pad(fmt(bt.raw_kib), 10)} ${pad(fmt(bt.gzip_kib), 11)}`);
  line(`total gzip KiB (goal ≤ ${bt.goal_gzip_kib}): ${fmt(bt.gzip_kib)}  ${bt.meets_goal ? 'meets goal' : 'OVER GOAL'}`);
  if (r.page) {
    for (const [f, b] of Object.entries(r.page)) line(`${pad(`page ${f}`, 24, false)} ${pad(fmt(b.raw_kb), 10)} ${pad(fmt(b.gzip_kb), 11)}`);
    const total = Object.values(r.page).reduce((s, b) => s + b.raw_kb, 0);
    const gz = Object.values(r.page).reduce((s, b) => s + b.gzip_kb, 0);
    line(`${pad('page first load total', 24, false)} ${pad(fmt(total), 10)} ${pad(fmt(gz), 11)}   (target < 100 KB before images)`);
  }
  line();
  line('Latency (client, loopback, simulator stepMs 1)          |  per request, median of Worker log lines');
  line('route                                   p50 ms   p95 ms    req/s  | srv ms  D1 q  rows rd  rows wr  Kie  rd min-max  subreq (max)  wasm MiB max');
  for (const v of Object.values(r.routes)) {
    line(
      `${pad(v.label, 37, false)} ${pad(fmt(v.p50_ms, 2), 8)} ${pad(fmt(v.p95_ms, 2), 8)} ${pad(fmt(v.rps, 1), 8)}  | ${pad(fmt(v.server_ms_p50, 0), 6)} ${pad(fmt(v.d1_queries, 0), 5)} ${pad(fmt(v.d1_rows_read, 0), 8)} ${pad(fmt(v.d1_rows_written, 0), 8)} ${pad(fmt(v.kie_calls, 0), 4)}  ${pad(`${v.d1_rows_read_min ?? '-'}-${v.d1_rows_read_max ?? '-'}`, 10)}  ${pad(`${fmt(v.subrequests, 0)} (${v.subrequests_max ?? '-'})`, 12)}  ${pad(v.wasm_memory_bytes_max == null ? '-' : fmt(v.wasm_memory_bytes_max / 1048576, 1), 12)}`,
    );
  }
  if (r.memory) line(`peak wasm memory over every invocation of the run: ${fmt(r.memory.peak_wasm_memory_bytes / 1048576, 1)} MiB (${r.memory.lines} lines)`);
  line('create: callbacks are withheld during its phase, so the user\'s unfinished tasks grow with every request.');
  line('webhook: the replay carries Kie\'s HMAC headers (the stack requires them).');
  const logNote = Object.values(r.routes).filter((v) => v.log_lines < r.options.requests);
  if (logNote.length) line(`(log lines missing for: ${logNote.map((v) => `${v.label} ${v.log_lines}/${r.options.requests}`).join(', ')})`);
  if (r.vs_js) {
    const v = r.vs_js;
    line();
    line(`vs JavaScript reference Worker (${v.reference}): up to ${v.rounds} interleaved rounds/route, concurrency ${v.concurrency}, round ≥ ${v.round_ms} ms`);
    line('                                     ------- ours -------  --- JS reference ---  ours/JS req/s                       server CPU ms/req');
    line('route                                req/s  p50 ms p95 ms  req/s  p50 ms p95 ms  median  min-max  rnd  goal         ours    JS  JS/ours');
    const side = (x) => `${pad(fmt(x.rps, 0), 5)} ${pad(fmt(x.p50_ms, 2), 7)} ${pad(fmt(x.p95_ms, 1), 6)}`;
    for (const [name, x] of Object.entries(v.routes)) {
      line(
        `${pad(name, 8, false)} ${pad(x.short, 27, false)} ${side(x.ours)}  ${side(x.js)}  ${pad(fmt(x.ratio, 2), 6)}  ${pad(`${fmt(x.ratio_min, 2)}-${fmt(x.ratio_max, 2)}`, 9, false)} ${pad(x.rounds.length, 3)}  ≥ ${fmt(x.goal, 1)} ${pad(x.meets_goal ? 'ok' : 'MISSED', 6, false)}  ${pad(fmt(x.ours.server_cpu_ms_per_req, 2), 5)} ${pad(fmt(x.js.server_cpu_ms_per_req, 2), 5)} ${pad(fmt(x.cpu_ratio, 2), 8)}`,
      );
    }
    line('ratio: ours req/s ÷ JS req/s within each round (same request count, order alternating), median and range over rounds.');
    line('server CPU: the Worker\'s workerd process (Miniflare entry, D1, logging included); JS/ours is the median per-round ratio.');
    line('Before measuring, both answered alike: status, body (origin aside), headers, log lines and D1 counts per request.');
    const cli = Object.values(v.routes).flatMap((x) => [x.ours.client_cpu_ms_per_req, x.js.client_cpu_ms_per_req]);
    line(`client (node:http keep-alive, no compression): ${fmt(Math.min(...cli), 2)}-${fmt(Math.max(...cli), 2)} CPU ms per request${v.client_retries ? `; ${v.client_retries} request(s) retried after a connection reset` : ''}.`);
    const missing = Object.values(v.routes).flatMap((x) => ['ours', 'js'].filter((k) => x[k].log_lines < x[k].requests).map((k) => `${x.label} ${k} ${x[k].log_lines}/${x[k].requests}`));
    if (missing.length) line(`(log lines missing for: ${missing.join(', ')})`);
    if (v.note) line(`(${v.note})`);
    const profiled = Object.entries(v.routes).filter(([, x]) => x.profile);
    if (profiled.length) {
      const p0 = profiled[0][1].profile.ours;
      line();
      line(`Where each isolate's time goes (V8 CPU profile, ${p0.requests} requests per route and side, sampled every ${SAMPLING_US} µs), ms per request`);
      line(`route    side   busy ${KINDS.map(([, short]) => pad(short, 8)).join(' ')}`);
      for (const [name, x] of profiled) {
        for (const side of ['ours', 'js']) {
          const p = x.profile[side];
          line(`${pad(name, 8, false)} ${pad(side === 'js' ? 'JS' : side, 4, false)} ${pad(fmt(p.busy_ms_per_req, 3), 6)} ${KINDS.map(([k]) => pad(p.kinds[k] == null ? '-' : fmt(p.kinds[k], 3), 8)).join(' ')}`);
        }
        line(`         ours, most time: ${x.profile.ours.top.slice(0, 4).map(([f, ms]) => `${f} ${fmt(ms, 3)}`).join('; ')}`);
      }
      if (!p0.wasm_names) line('(wasm functions unnamed: PROFILE_NAMES=1 FORCE_BUILD=1 bash scripts/build.sh keeps their names)');
    }
  }
  line();
  line('Kie calls per completed task         tasks  ok  create  record  total  (log)  max rec  polls  done p50 ms');
  const names = { callbacks: 'callbacks on', dropped_callbacks: 'callbacks dropped (polling)' };
  for (const [k, v] of Object.entries(r.kie_per_task)) {
    line(
      `${pad(names[k] || k, 35, false)} ${pad(v.tasks, 6)} ${pad(v.succeeded, 3)} ${pad(fmt(v.kie_creates_per_task, 2), 7)} ${pad(fmt(v.kie_records_per_task, 2), 7)} ${pad(fmt(v.kie_calls_per_task, 2), 6)} ${pad(fmt(v.log_kie_calls_per_task, 2), 6)} ${pad(v.record_calls_max, 8)} ${pad(fmt(v.client_polls_per_task, 1), 6)} ${pad(fmt(v.time_to_terminal_ms_p50, 0), 11)}`,
    );
  }
  line();
  line(`total ${fmt(r.total_s, 1)} s; JSON: ${r.out}`);
  return out.join('\n');
}

try {
  const report = await main();
  const out = OPT.out || path.join(ROOT, 'test-artifacts', 'bench.json');
  report.out = path.relative(ROOT, out).startsWith('..') ? out : path.relative(ROOT, out);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(render(report));
  process.exit(0);
} catch (e) {
  console.error(`bench failed: ${e?.stack || e}`);
  process.exit(1);
}
