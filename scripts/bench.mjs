// Benchmark of the built Worker on the local stack (workerd via Miniflare with
// local D1/KV/R2, plus the Kie simulator answering instantly). Prints a
// fixed-width report meant to be compared run to run, and writes the same
// figures to test-artifacts/bench.json.
//
//   node scripts/bench.mjs [--requests 200] [--warmup 20] [--concurrency 4] [--tasks 10] [--poll-ms 500]
//
// Everything stays on 127.0.0.1; every phase is bounded in request count and time.

import { readFileSync, mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import os from 'node:os';
import path from 'node:path';
import { startStack, requireBuild, ROOT, sleep } from '../tests/e2e/harness.mjs';

// ------------------------------------------------------------------ options

function parseArgs(argv) {
  const o = { requests: 200, warmup: 20, concurrency: 4, tasks: 10, pollMs: 500, timeLimitS: 150 };
  const names = { '--requests': 'requests', '--warmup': 'warmup', '--concurrency': 'concurrency', '--tasks': 'tasks', '--poll-ms': 'pollMs', '--time-limit': 'timeLimitS' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    if (flag === '-h' || flag === '--help') {
      console.log('usage: node scripts/bench.mjs [--requests N] [--warmup N] [--concurrency N] [--tasks N] [--poll-ms N] [--time-limit S]');
      process.exit(0);
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
  return o;
}

const OPT = parseArgs(process.argv.slice(2));
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
  return { status: res.status, body: parsed, text, ms, requestId: res.headers.get('x-request-id') };
}

/**
 * Runs `warmup` then `n` requests with `concurrency` workers. `make(i)` returns the
 * call's arguments; `expect` is the status every measured request must answer.
 */
async function load(name, { n, warmup, concurrency, expect, make }) {
  for (let i = 0; i < warmup; i++) {
    const r = await call(...make(-1 - i));
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
      const r = await call(...make(i));
      if (r.status !== expect) bad.push(`${r.status} ${r.text.slice(0, 200)}`);
      lat.push(r.ms);
      if (r.requestId) ids.push(r.requestId);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wall = (performance.now() - t0) / 1000;
  if (bad.length) throw new Error(`${name}: ${bad.length}/${n} requests did not answer ${expect}; first: ${bad[0]}`);
  return { n, concurrency, p50_ms: round(quantile(lat, 0.5), 2), p95_ms: round(quantile(lat, 0.95), 2), max_ms: round(Math.max(...lat), 2), rps: round(n / wall, 1), wall_s: round(wall, 2), ids };
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
  };
}

// ------------------------------------------------------------------ bundle size

function bundle() {
  const out = {};
  for (const f of ['build/index_bg.wasm', 'build/index.js']) {
    const buf = readFileSync(path.join(ROOT, f));
    out[f] = { raw_kb: kb(buf.length), gzip_kb: kb(gzipSync(buf, { level: 9 }).length), raw_bytes: buf.length };
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
    machine: { node: process.version, platform: `${os.platform()}-${os.arch()}`, cpus: os.cpus().length, cpu: os.cpus()[0]?.model?.trim() ?? '?' },
    options: { requests: OPT.requests, warmup: OPT.warmup, concurrency: OPT.concurrency, tasks: OPT.tasks, poll_ms: OPT.pollMs },
    bundle: bundle(),
    routes: {},
    kie_per_task: {},
  };

  const stack = await startStack({
    name: 'bench',
    sim: { stepMs: 1, credits: 10_000_000, rateLimit: { enabled: false } },
    // KIE_CREATES_PER_WINDOW is capped at 10000 by the Worker's config check.
    vars: { RATE_LIMIT_PER_MINUTE: '100000', MAX_ACTIVE_TASKS: '10000', KIE_CREATES_PER_WINDOW: '10000' },
  });
  try {
    const { sim, url } = stack;
    const user = await stack.createUser(1_000_000, 'bench');
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
    //    simulator's own jobs-shaped success callback for that task.
    const simTask = sim.taskView(done.provider_task_id);
    if (!simTask?.callBackUrl) throw new Error('the simulator task has no callBackUrl');
    const manual = await call(`${sim.url}/_sim/tasks/${done.provider_task_id}/callback`, { method: 'POST', json: {} });
    if (!manual.body?.ok) throw new Error(`manual callback failed: ${manual.text.slice(0, 300)}`);
    const cbBody = JSON.stringify(manual.body.sent);
    const callback = await load('callback', { ...run, expect: 200, make: () => [simTask.callBackUrl, { method: 'POST', headers: { 'user-agent': 'KieAI-Webhook/1.0' }, json: cbBody }] });

    const phases = [
      ['health', 'GET /api/health', health],
      ['create', 'POST /api/create/ai-image', create],
      ['tasks.get', 'GET /api/tasks/:id (succeeded)', status],
      ['webhook', 'POST /api/webhooks/kie-image (replay)', callback],
    ];
    for (const [route, label, r] of phases) {
      const lines = (await requestLines(stack, r.ids)).filter((l) => l.route === route);
      const { ids, ...rest } = r;
      report.routes[route] = { label, ...rest, ...serverStats(lines) };
    }

    // 5. Kie calls per completed task, with callbacks on and with callbacks dropped.
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
    report.total_s = round((Date.now() - started) / 1000, 1);
  } finally {
    // Not stack.close(): that also writes the whole request log to test-artifacts/logs.
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
  line(`node ${r.machine.node}  ${r.machine.platform}  ${r.machine.cpus} cpu  ${r.machine.cpu}`);
  line(`${r.options.requests} requests/route after ${r.options.warmup} warm-up, concurrency ${r.options.concurrency}; ${r.options.tasks} tasks per Kie condition, client poll ${r.options.poll_ms} ms`);
  line();
  line('Bundle                       raw KB   gzip-9 KB');
  for (const [f, b] of Object.entries(r.bundle)) line(`${pad(f, 24, false)} ${pad(fmt(b.raw_kb), 10)} ${pad(fmt(b.gzip_kb), 11)}`);
  if (r.page) {
    for (const [f, b] of Object.entries(r.page)) line(`${pad(`page ${f}`, 24, false)} ${pad(fmt(b.raw_kb), 10)} ${pad(fmt(b.gzip_kb), 11)}`);
    const total = Object.values(r.page).reduce((s, b) => s + b.raw_kb, 0);
    const gz = Object.values(r.page).reduce((s, b) => s + b.gzip_kb, 0);
    line(`${pad('page first load total', 24, false)} ${pad(fmt(total), 10)} ${pad(fmt(gz), 11)}   (target < 100 KB before images)`);
  }
  line();
  line('Latency (client, loopback, simulator stepMs 1)          |  per request, median of Worker log lines');
  line('route                                   p50 ms   p95 ms    req/s  | srv ms  D1 q  rows rd  rows wr  Kie  rd min-max');
  for (const v of Object.values(r.routes)) {
    line(
      `${pad(v.label, 37, false)} ${pad(fmt(v.p50_ms, 2), 8)} ${pad(fmt(v.p95_ms, 2), 8)} ${pad(fmt(v.rps, 1), 8)}  | ${pad(fmt(v.server_ms_p50, 0), 6)} ${pad(fmt(v.d1_queries, 0), 5)} ${pad(fmt(v.d1_rows_read, 0), 8)} ${pad(fmt(v.d1_rows_written, 0), 8)} ${pad(fmt(v.kie_calls, 0), 4)}  ${pad(`${v.d1_rows_read_min ?? '-'}-${v.d1_rows_read_max ?? '-'}`, 10)}`,
    );
  }
  line('create: callbacks are withheld during its phase, so the user\'s unfinished tasks grow with every request.');
  const logNote = Object.values(r.routes).filter((v) => v.log_lines < r.options.requests);
  if (logNote.length) line(`(log lines missing for: ${logNote.map((v) => `${v.label} ${v.log_lines}/${r.options.requests}`).join(', ')})`);
  line();
  line('Kie calls per completed task         tasks  ok  create  record  total  (log)  max rec  polls  done p50 ms');
  const names = { callbacks: 'callbacks on', dropped_callbacks: 'callbacks dropped (polling)' };
  for (const [k, v] of Object.entries(r.kie_per_task)) {
    line(
      `${pad(names[k] || k, 35, false)} ${pad(v.tasks, 6)} ${pad(v.succeeded, 3)} ${pad(fmt(v.kie_creates_per_task, 2), 7)} ${pad(fmt(v.kie_records_per_task, 2), 7)} ${pad(fmt(v.kie_calls_per_task, 2), 6)} ${pad(fmt(v.log_kie_calls_per_task, 2), 6)} ${pad(v.record_calls_max, 8)} ${pad(fmt(v.client_polls_per_task, 1), 6)} ${pad(fmt(v.time_to_terminal_ms_p50, 0), 11)}`,
    );
  }
  line();
  line(`total ${fmt(r.total_s, 1)} s; JSON: test-artifacts/bench.json`);
  return out.join('\n');
}

try {
  const report = await main();
  const dir = path.join(ROOT, 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'bench.json'), `${JSON.stringify(report, null, 2)}\n`);
  console.log(render(report));
  process.exit(0);
} catch (e) {
  console.error(`bench failed: ${e?.stack || e}`);
  process.exit(1);
}
