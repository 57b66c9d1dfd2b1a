// End-to-end harness: the built Worker (build/index.js + wasm) running in
// workerd through Miniflare, with real local D1/KV/R2 and the migrations
// applied, talking over HTTP to a Kie simulator that calls it back.
// Each test file starts its own isolated stack.

import { Miniflare } from 'miniflare';
import { readFileSync, readdirSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { startKieSim, makePng, makeJpeg } from '../../sim/kie-sim.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
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
  'error_code', 'd1_queries', 'd1_rows_read', 'd1_rows_written', 'kie_calls'];

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

function migrationStatements() {
  const dir = path.join(ROOT, 'migrations');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((name) => {
      const sql = readFileSync(path.join(dir, name), 'utf8')
        .split('\n')
        .filter((l) => !l.trim().startsWith('--'))
        .join('\n');
      return { name, statements: sql.split(/;\s*\n/).map((s) => s.trim()).filter(Boolean) };
    });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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
    KIE_TIMEOUT_MS: '3000',
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

  const options = () => ({
    modules: true,
    scriptPath: path.join(ROOT, 'build/index.js'),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2026-04-20',
    host: '127.0.0.1',
    port,
    d1Databases: { DB: `db-${randomBytes(6).toString('hex')}` },
    kvNamespaces: opts.noKv ? [] : ['CACHE'],
    r2Buckets: opts.noR2 ? [] : ['FILES'],
    bindings,
    handleRuntimeStdio(stdout, stderr) {
      pipe(stdout);
      pipe(stderr);
    },
  });
  let mf;
  for (let attempt = 1; ; attempt++) {
    mf = new Miniflare(options());
    try {
      await mf.ready;
      break;
    } catch (e) {
      await mf.dispose().catch(() => {});
      if (attempt >= 5) throw e;
      // Taken meanwhile by another test process: another port.
      const previous = url;
      port = await quietPort();
      url = `http://127.0.0.1:${port}`;
      if (bindings.PUBLIC_BASE_URL === previous) bindings.PUBLIC_BASE_URL = url;
    }
  }

  const db = await mf.getD1Database('DB');
  const upTo = opts.migrations;
  if (upTo !== false) await db.prepare('CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)').run();
  for (const m of upTo === false ? [] : migrationStatements()) {
    if (typeof upTo === 'string' && m.name > upTo && !m.name.startsWith(upTo)) break;
    await db.batch([...m.statements.map((s) => db.prepare(s)), db.prepare('INSERT INTO d1_migrations (name) VALUES (?)').bind(m.name)]);
  }

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
    const res = await fetch(url + p, { method, headers: h, body: payload });
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
  async function sql(query, ...params) {
    return (await db.prepare(query).bind(...params).all()).results;
  }
  async function cron() {
    const worker = await mf.getWorker();
    return worker.scheduled({ cron: '* * * * *' });
  }
  async function close() {
    await sleep(200); // let the last log lines arrive
    await mf.dispose().catch(() => {});
    // The test may have replaced the simulator (stop/start): close the current one.
    await stack.sim.close().catch(() => {});
    saveArtifacts();
    checkLogsAndSecrets();
  }
  // Every file's stack enforces two rules over everything it saw:
  // each response had exactly one request log line with the documented
  // fields, and no secret value ever appeared in a log line or a response body.
  function checkLogsAndSecrets() {
    const secrets = [...Object.values(SECRETS), HMAC_KEY];
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
  }
  function saveArtifacts() {
    const dir = path.join(ROOT, 'test-artifacts', 'logs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `${opts.name || 'stack'}-${port}.log`), raw.join('\n'));
    writeFileSync(path.join(dir, `${opts.name || 'stack'}-${port}.responses.json`), JSON.stringify(responses));
  }
  const stack = { url, port, sim, mf, logs, raw, responses, api, admin, createUser, task, waitTerminal, sql, cron, close, bindings };
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
