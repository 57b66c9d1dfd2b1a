// End-to-end harness: the built Worker (build/index.js + wasm) running in
// workerd through Miniflare, with real local D1/KV/R2 and the migrations
// applied, talking over HTTP to a Kie simulator that calls it back.
// Each test file starts its own isolated stack.
//
// Everything here talks to workerd over plain async HTTP. Miniflare's binding
// proxies (getD1Database, getWorker, getKVNamespace, getR2Bucket, ...) are not
// used: their synchronous calls (prepare, bind, any property read) block this
// thread in Atomics.wait until a helper thread posts the reply and notifies.
// When that thread is preempted between setting the flag and notifying, its
// late notify wakes the *next* call before its reply exists: that call fails
// an assertion in SynchronousFetcher.fetch and every later call reads the
// previous call's reply. A busy 2-core machine is enough to make it happen.
//   - D1 is migrated by wrangler's own command, in a child process, into a
//     temporary directory; each stack's Miniflare opens its own copy of it;
//   - sql() goes through a small helper Worker bound to the same database;
//   - every fetch from a test process uses a fresh connection (see below);
//   - cron() is Miniflare's /cdn-cgi/handler/scheduled trigger.

import { Miniflare } from 'miniflare';
import { readFileSync, readdirSync, existsSync, mkdirSync, writeFileSync, mkdtempSync, rmSync, cpSync } from 'node:fs';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { startKieSim, makePng, makeJpeg } from '../../sim/kie-sim.mjs';
import { parseToml } from '../../scripts/deploy.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

// Every request from a test process opens its own connection. Kept-alive
// connections race with the server's idle close (workerd drops an idle one
// after 5 s; undici keeps it for 4 s, by a timer a busy machine runs late):
// a request written to a connection the server has just closed fails with
// "other side closed" or ECONNRESET before the Worker ever sees it.
const nodeFetch = globalThis.fetch;
globalThis.fetch = function fetch(input, init = {}) {
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  if (!headers.has('connection')) headers.set('connection', 'close');
  return nodeFetch(input, { ...init, headers });
};
export { makePng, makeJpeg };

// Known secret values: the secrets test asserts none of them ever appears in a
// log line or a response body.
export const SECRETS = {
  KIEAI_APIKEY: 'kie-test-key-7f3a9c1e5b',
  ADMIN_TOKEN: 'admin-test-token-4d8e2b6a1c9f',
  FILE_URL_SECRET: 'file-url-secret-9a7c5e3b1d',
};
export const HMAC_KEY = 'hmac-test-key-2c4e6a8b0d';

// The documented fields of the one-per-request log line (README, "Logs").
export const REQUEST_LINE_FIELDS = ['ts', 'level', 'msg', 'request_id', 'route', 'event', 'method', 'path', 'status', 'duration_ms',
  'error_code', 'd1_queries', 'd1_rows_read', 'd1_rows_written', 'kie_calls', 'subrequests', 'connections_peak', 'wasm_memory_bytes'];
/** Lines that close an invocation and carry its meter (README, "Production limits"). */
const CLOSING_EVENTS = new Set(['http.request', 'cron.run', 'cron.failed', 'background.done', 'background.failed']);

// Worker ports are taken below the kernel's ephemeral range (where every
// listen(0) of the other test processes lands), at random, retried if taken.
export function portIsFree(port) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
export async function quietPort() {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    if (await portIsFree(port)) return port;
  }
}

/** The migration files, in the order wrangler applies them. */
export function migrationNames() {
  return readdirSync(path.join(ROOT, 'migrations')).filter((f) => f.endsWith('.sql')).sort();
}

/** The local database id wrangler uses for the DB binding (wrangler.toml, top level). */
export function localD1Id() {
  const config = parseToml(readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8'));
  const db = (config.d1_databases || []).find((d) => d.binding === 'DB');
  if (!db) throw new Error('wrangler.toml has no D1 binding named DB');
  // wrangler's local commands use the preview id when there is one.
  return db.preview_database_id ?? db.database_id;
}

/**
 * `wrangler d1 migrations apply DB --local --persist-to <dir>`: the migrations
 * applied and recorded in d1_migrations exactly as wrangler does it for
 * `wrangler dev`. Runs in a child process with a time limit (30 s; it takes
 * about 7 s with both cores busy); an attempt that fails or hangs is killed
 * (with its workerd) and retried: applied migrations
 * are recorded in the same transaction, so a retry applies only what is missing.
 */
export async function applyMigrations(persistTo, { attempts = 3, timeoutMs = 30000, config } = {}) {
  const wrangler = path.join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
  const env = {
    ...process.env,
    CI: 'true', // no confirmation prompt
    WRANGLER_SEND_METRICS: 'false',
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    WRANGLER_HIDE_BANNER: 'true', // also skips the update check
    WRANGLER_LOG_PATH: path.join(persistTo, 'wrangler-logs'),
  };
  let last = '';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const args = [wrangler, 'd1', 'migrations', 'apply', 'DB', '--local', '--persist-to', persistTo, ...(config ? ['--config', config] : [])];
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env,
      detached: true, // its own process group: a hung attempt is killed with its workerd
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, timeoutMs);
    const code = await new Promise((resolve) => {
      child.once('error', (e) => {
        output += String(e);
        resolve(-1);
      });
      child.once('close', (c) => resolve(c));
    });
    clearTimeout(timer);
    if (code === 0 && !timedOut) return output;
    last = `attempt ${attempt}: ${timedOut ? `no answer in ${timeoutMs} ms` : `exit ${code}`}\n${output.slice(-3000)}`;
  }
  throw new Error(`wrangler d1 migrations apply failed\n${last}`);
}

/** The migrations a stack gets: all, none (`false`), or those up to a file name prefix ('0001'). */
function migrationsUpTo(upTo) {
  if (upTo === false) return [];
  const all = migrationNames();
  if (typeof upTo !== 'string') return all;
  const last = all.findIndex((n) => n.startsWith(upTo));
  if (last < 0) throw new Error(`no migration starts with ${upTo}`);
  return all.slice(0, last + 1);
}

// wrangler runs once per test process (and set of migrations); every stack of
// the process starts from its own copy of the migrated files (copied while
// nothing has them open). A partial set runs wrangler with a copy of
// wrangler.toml whose migrations_dir holds just those files.
const migrated = new Map();
function migratedTemplate(names) {
  const key = names.join(',');
  if (!migrated.has(key)) {
    const made = (async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'd1-migrated-'));
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
      let config;
      if (names.length !== migrationNames().length) {
        const only = path.join(dir, 'migrations');
        mkdirSync(only);
        for (const n of names) cpSync(path.join(ROOT, 'migrations', n), path.join(only, n));
        config = path.join(dir, 'wrangler.toml');
        const toml = readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8').replace(/^main = .*$/m, '').replaceAll('migrations_dir = "migrations"', `migrations_dir = ${JSON.stringify(only)}`);
        writeFileSync(config, toml);
      }
      await applyMigrations(dir, { config });
      return dir;
    })();
    made.catch(() => migrated.delete(key));
    migrated.set(key, made);
  }
  return migrated.get(key);
}

// Bound to the stack's database next to the Worker, on a socket of its own:
// direct reads for invariants, over async HTTP.
const SQL_WORKER = `
export default {
  async fetch(request, env) {
    const { pathname, searchParams } = new URL(request.url);
    if (pathname === '/r2-keys') {
      if (!env.FILES) return Response.json({ keys: [] });
      const keys = [];
      let cursor;
      do {
        const page = await env.FILES.list({ prefix: searchParams.get('prefix') || undefined, cursor });
        keys.push(...page.objects.map((o) => o.key));
        cursor = page.truncated ? page.cursor : undefined;
      } while (cursor);
      return Response.json({ keys });
    }
    if (request.method !== 'POST' || pathname !== '/sql') return new Response('not found', { status: 404 });
    const { query, params } = await request.json();
    try {
      const { results } = await env.DB.prepare(query).bind(...params).all();
      return Response.json({ results });
    } catch (e) {
      return Response.json({ error: String(e && (e.cause?.message || e.message) || e) }, { status: 500 });
    }
  },
};
`;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * fetch, with the reason in the message when no response came (undici only
 * says "fetch failed"), and a time limit per attempt, so nothing waits
 * forever: a hung request fails its test by name (and the stack's log lines
 * are still written) instead of the whole file timing out in silence. A
 * request that may safely be sent again (a read, or a create with an
 * Idempotency-Key) is, when no response came: a workerd starved of CPU drops a
 * connection whose request it has not read within 15 s.
 */
async function request(what, doFetch, { resend = false, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await doFetch(AbortSignal.timeout(timeoutMs));
    } catch (e) {
      if (resend && attempt < 3) continue;
      const c = e?.cause;
      const why = e?.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : e?.message;
      throw new Error(`${what}: ${why}${c ? ` (${[c.code, c.message].filter(Boolean).join(': ')})` : ''}`, { cause: e });
    }
  }
}
/** `promise`, or an error saying `what` after `ms`. */
function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms / 1000} s`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
/** workerd is ready in about a second, a few with both cores busy; past this it is retried. */
const READY_TIMEOUT_MS = 45_000;
/** The longest any single request to a stack may take (a cron run works at most 45 s). */
const REQUEST_TIMEOUT_MS = 90_000;
const safeToResend = (method, headers) => ['GET', 'HEAD', 'OPTIONS'].includes(method) || Object.keys(headers).some((k) => k.toLowerCase() === 'idempotency-key');

export async function waitFor(fn, { timeoutMs = 15000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)?.slice(0, 400)}`);
}

/**
 * Starts simulator + Worker. Options:
 *   vars: extra/overriding bindings; omit: binding names to leave out;
 *   hmac: sign callbacks (and require them); callbacks: false to run without PUBLIC_BASE_URL;
 *   sim: simulator options; noR2: leave the R2 binding out;
 *   script: the Worker module to run instead of build/index.js (the benchmark's
 *   JavaScript reference Worker), with the same Miniflare options;
 *   secrets: more secret values that must never appear in a log line or a body.
 *   migrations: false to apply none, or a file name prefix ('0001') to stop after that migration.
 */
export async function startStack(opts = {}) {
  const sim = await startKieSim({ port: 0, host: '127.0.0.1', apiKey: SECRETS.KIEAI_APIKEY, hmacKey: opts.hmac ? HMAC_KEY : null, stepMs: 120, ...(opts.sim || {}) });
  let port = await quietPort();
  let url = `http://127.0.0.1:${port}`;
  const bindings = {
    ENVIRONMENT: 'test',
    KIE_API_BASE: sim.url,
    PUBLIC_BASE_URL: opts.callbacks === false ? undefined : url,
    ...SECRETS,
    ...(opts.hmac ? { KIE_WEBHOOK_HMAC_KEY: HMAC_KEY } : {}),
    ...(opts.vars || {}),
  };
  for (const k of opts.omit || []) delete bindings[k];
  for (const k of Object.keys(bindings)) if (bindings[k] === undefined) delete bindings[k];

  const logs = [];
  const raw = [];
  const onLine = (line) => {
    raw.push(line);
    const start = line.indexOf('{');
    if (start < 0) return;
    try {
      const obj = JSON.parse(line.slice(start));
      if (obj && obj.msg && obj.ts) logs.push(obj);
    } catch {}
  };
  const pipe = (stream) => {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  };

  // This stack's own D1, migrated by wrangler before workerd opens it.
  const stateDir = mkdtempSync(path.join(tmpdir(), `stack-${opts.name || 'stack'}-`));
  const d1Id = localD1Id();
  const wantMigrations = migrationsUpTo(opts.migrations);
  try {
    if (wantMigrations.length) cpSync(path.join(await migratedTemplate(wantMigrations), 'v3'), path.join(stateDir, 'v3'), { recursive: true });
  } catch (e) {
    await sim.close().catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
    throw e;
  }

  const options = () => ({
    host: '127.0.0.1',
    port,
    // Where `wrangler ... --persist-to stateDir` keeps D1: the same file for the same id.
    d1Persist: path.join(stateDir, 'v3', 'd1'),
    unsafeTriggerHandlers: true, // /cdn-cgi/handler/scheduled, for cron()
    ...(opts.inspectorPort ? { inspectorPort: opts.inspectorPort } : {}),
    handleRuntimeStdio(stdout, stderr) {
      pipe(stdout);
      pipe(stderr);
    },
    workers: [
      {
        name: 'banana-worker',
        modules: true,
        scriptPath: path.join(ROOT, opts.script || 'build/index.js'),
        modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
        compatibilityDate: '2026-04-20',
        d1Databases: { DB: d1Id },
        kvNamespaces: opts.noKv ? [] : ['CACHE'],
        r2Buckets: opts.noR2 ? [] : ['FILES'],
        bindings,
      },
      {
        name: 'harness-sql',
        modules: true,
        script: SQL_WORKER,
        compatibilityDate: '2026-04-20',
        d1Databases: { DB: d1Id },
        r2Buckets: opts.noR2 ? [] : ['FILES'],
        unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }],
      },
    ],
  });
  let mf;
  for (let attempt = 1; ; attempt++) {
    mf = new Miniflare(options());
    try {
      await within(mf.ready, READY_TIMEOUT_MS, `workerd for stack ${opts.name || 'stack'} did not become ready`);
      break;
    } catch (e) {
      await mf.dispose().catch(() => {});
      if (attempt >= 5) {
        await sim.close().catch(() => {});
        rmSync(stateDir, { recursive: true, force: true });
        throw e;
      }
      // Taken meanwhile by another test process: another port.
      const previous = url;
      port = await quietPort();
      url = `http://127.0.0.1:${port}`;
      if (bindings.PUBLIC_BASE_URL === previous) bindings.PUBLIC_BASE_URL = url;
    }
  }

  const sqlUrl = await mf.unsafeGetDirectURL('harness-sql');
  const responses = [];
  async function api(method, p, { key, json, form, headers = {}, body } = {}) {
    const h = { ...headers };
    if (key) h.authorization = `Bearer ${key}`;
    let payload = body;
    if (json !== undefined) {
      h['content-type'] = 'application/json';
      payload = typeof json === 'string' ? json : JSON.stringify(json);
    }
    if (form) payload = form;
    const res = await request(`${method} ${p}`, (signal) => fetch(url + p, { method, headers: h, body: payload, signal }), { resend: safeToResend(method, h) });
    const text = await res.text();
    let parsed = null;
    try {
      parsed = JSON.parse(text);
    } catch {}
    responses.push({ method, path: p, status: res.status, text, requestId: res.headers.get('x-request-id') });
    return { status: res.status, body: parsed, text, headers: res.headers };
  }
  const admin = (method, p, json) => api(method, p, { key: SECRETS.ADMIN_TOKEN, json });
  async function createUser(credits = 10, name = 'Test user') {
    const r = await admin('POST', '/api/admin/users', { name, credits });
    if (r.status !== 201) throw new Error(`create user failed: ${r.status} ${r.text}`);
    return { id: r.body.user.id, key: r.body.api_key };
  }
  async function task(key, id) {
    return (await api('GET', `/api/tasks/${id}`, { key })).body?.task;
  }
  async function waitTerminal(key, id, timeoutMs = 15000) {
    return waitFor(async () => {
      const t = await task(key, id);
      return t && (t.state === 'succeeded' || t.state === 'failed') ? t : null;
    }, { timeoutMs, what: `task ${id} to finish` });
  }
  /** Reads D1 directly (for invariants only, never to drive behaviour). */
  /** The keys stored in R2 (for checks only, never to drive behaviour). */
  async function r2Keys(prefix = '') {
    const res = await request('r2 list', (signal) => fetch(new URL(`/r2-keys?prefix=${encodeURIComponent(prefix)}`, sqlUrl), { signal }), { resend: true });
    return (await res.json()).keys;
  }
  async function sql(query, ...params) {
    const res = await request(`sql ${query}`, (signal) =>
      fetch(new URL('/sql', sqlUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query, params }),
        signal,
      }),
      { resend: /^\s*(SELECT|EXPLAIN)\b/i.test(query) },
    );
    const text = await res.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`sql: ${res.status} ${text.slice(0, 300)} (${query})`);
    }
    if (res.status !== 200) throw new Error(`sql: ${body.error} (${query})`);
    return body.results;
  }
  /** Runs the Worker's scheduled handler once, as the cron trigger would, and waits for it. */
  async function cron(pattern = '* * * * *') {
    // Resent if no answer came: the cron tolerates running twice, as it must in production.
    const res = await request('cron', (signal) => fetch(`${url}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent(pattern)}`, { signal }), { resend: true });
    return { outcome: await res.text() };
  }
  let stopped = false;
  /** Stops workerd and the simulator and removes this stack's files (no checks). */
  async function stop() {
    if (stopped) return;
    stopped = true;
    await mf.dispose().catch(() => {});
    // The test may have replaced the simulator (stop/start): close the current one.
    await stack.sim.close().catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  }
  async function close() {
    await sleep(200); // let the last log lines arrive
    await stop();
    saveArtifacts();
    checkLogsAndSecrets();
  }
  // Every file's stack enforces two rules over everything it saw:
  // each response had exactly one request log line with the documented
  // fields, and no secret value ever appeared in a log line or a response body.
  function checkLogsAndSecrets() {
    const secrets = [...Object.values(SECRETS), HMAC_KEY, ...(opts.secrets || [])];
    for (const line of raw) {
      for (const secret of secrets) if (line.includes(secret)) throw new Error(`a secret appeared in a log line: ${line.slice(0, 200)}`);
    }
    for (const r of responses) {
      for (const secret of secrets) if (r.text.includes(secret)) throw new Error(`a secret appeared in the response to ${r.method} ${r.path}`);
      if (!r.requestId) throw new Error(`no X-Request-Id on ${r.method} ${r.path}`);
      const lines = logs.filter((l) => l.event === 'http.request' && l.request_id === r.requestId);
      if (lines.length !== 1) throw new Error(`${lines.length} request log lines for ${r.method} ${r.path} (${r.requestId})`);
      for (const f of REQUEST_LINE_FIELDS) if (!(f in lines[0])) throw new Error(`request log line without ${f}: ${JSON.stringify(lines[0])}`);
    }
    // Cloudflare's per-invocation limits, which workerd does not enforce: every
    // invocation stayed inside its subrequest budget and six connections.
    const budget = Number(bindings.SUBREQUEST_BUDGET || 50);
    for (const l of logs.filter((x) => CLOSING_EVENTS.has(x.event))) {
      if (!(l.subrequests <= budget)) throw new Error(`${l.event} ${l.path ?? ''} spent ${l.subrequests} subrequests (budget ${budget})`);
      if (!(l.connections_peak <= 6)) throw new Error(`${l.event} ${l.path ?? ''} held ${l.connections_peak} connections at once`);
    }
  }
  function saveArtifacts() {
    const dir = path.join(ROOT, 'test-artifacts', 'logs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `${opts.name || 'stack'}-${port}.log`), raw.join('\n'));
    writeFileSync(path.join(dir, `${opts.name || 'stack'}-${port}.responses.json`), JSON.stringify(responses));
  }
  const stack = { url, port, sim, logs, raw, responses, api, admin, createUser, task, waitTerminal, sql, r2Keys, cron, close, stop, bindings, stateDir };

  // The Worker's database is the one wrangler migrated (same persistence
  // directory, same id): otherwise workerd would have opened an empty one.
  const recorded = (await sql('SELECT name FROM d1_migrations ORDER BY id').catch(() => [])).map((r) => r.name);
  if (JSON.stringify(recorded) !== JSON.stringify(wantMigrations)) {
    await stop();
    throw new Error(`the stack's D1 is not the database wrangler migrated: d1_migrations has ${JSON.stringify(recorded)}`);
  }
  return stack;
}

/** Sum of a user's ledger equals the balance, and the balance is never negative. */
export async function ledgerInvariant(stack, userId) {
  const [u] = await stack.sql('SELECT credits FROM users WHERE id = ?', userId);
  const [s] = await stack.sql('SELECT COALESCE(SUM(amount), 0) AS total, MIN(balance_after) AS low FROM ledger WHERE user_id = ?', userId);
  return { balance: u.credits, ledgerSum: s.total, lowest: s.low };
}

export const pngBytes = (w = 32, h = 32) => makePng(w, h, (x, y) => [x * 8, y * 8, 128]);

export function requireBuild() {
  if (!existsSync(path.join(ROOT, 'build/index.js'))) throw new Error('build/index.js missing: run scripts/build.sh first');
}
