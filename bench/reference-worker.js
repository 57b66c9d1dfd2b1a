// Reference Worker for the benchmark (scripts/bench.mjs): a measuring
// instrument, not part of the service, never deployed. It is the plain
// JavaScript a team would write for the three routes the benchmark compares,
// doing the same work per request as the Rust Worker on the same D1 schema:
//
//   GET  /api/tasks/:id            Bearer nbk_… key hashed with SHA-256, one JOIN
//                                  for key + task, result URLs HMAC-signed like
//                                  files::signed_url, the same task view.
//   POST /api/webhooks/kie-image   body read and parsed, Kie's HMAC headers checked
//                                  (when KIE_WEBHOOK_HMAC_KEY is set), the task read
//                                  by id, its token compared in constant time.
//   GET  /app.css, /app.js         the same bytes and headers as the embedded page
//                                  (text bindings ASSET_APP_CSS / ASSET_APP_JS and
//                                  their ETags, passed in by the benchmark).
//   GET  /api/ping                 a trivial JSON answer (the floor of a request).
//
// Every response carries X-Request-Id, X-Content-Type-Options and Cache-Control
// like ours, and every request writes one JSON `http.request` log line with the
// same fields (the callback also writes `callback.received`, as ours does).
// Tasks that are not finished are answered as stored: the reference only covers
// the finished-task paths the benchmark measures. No dependencies, no build step.

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data: https: http:; " +
  "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

const TASK_COLUMNS =
  't.id, t.user_id, t.model, t.prompt, t.aspect_ratio, t.resolution, t.output_format, t.inputs, ' +
  't.results, t.state, t.credits, t.error_code, t.error_message, t.provider_task_id, t.callback_token, t.request_hash, ' +
  't.attempts, t.checked_at, t.submitted_at, t.deadline_at, t.created_at, t.updated_at, t.completed_at';
const TASK_FOR_KEY_SQL = `SELECT ${TASK_COLUMNS} FROM api_keys k JOIN tasks t ON t.user_id = k.user_id WHERE k.key_hash = ?1 AND k.revoked_at IS NULL AND t.id = ?2`;
const TASK_BY_ID_SQL = `SELECT ${TASK_COLUMNS} FROM tasks t WHERE t.id = ?1`;
const USER_BY_KEY_SQL = 'SELECT u.id, u.name, u.credits, u.created_at FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?1 AND k.revoked_at IS NULL';

const MAX_CALLBACK_BYTES = 256 * 1024;
const HMAC_WINDOW_S = 300;
const enc = new TextEncoder();

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---------------------------------------------------------------- small helpers

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
function base32(bytes) {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const b of bytes) {
    buffer = ((buffer << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(buffer >> bits) & 31];
    }
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

function hex(buf) {
  let s = '';
  for (const b of new Uint8Array(buf)) s += b.toString(16).padStart(2, '0');
  return s;
}

function base64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
const base64url = (bytes) => base64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

async function hmacSha256(key, message) {
  const k = await crypto.subtle.importKey('raw', enc.encode(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, enc.encode(message)));
}

/** Compares two strings in time that depends only on their lengths. */
function ctEq(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

const iso = (ms) => (ms == null ? null : new Date(ms).toISOString());
const parseList = (s) => {
  try {
    const v = JSON.parse(s);
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
};

// ---------------------------------------------------------------- request context

class Ctx {
  constructor(env, request) {
    this.env = env;
    this.url = new URL(request.url);
    this.requestId = request.headers.get('cf-ray') || base32(crypto.getRandomValues(new Uint8Array(10)));
    this.route = 'unknown';
    this.fields = {};
    this.d1 = { queries: 0, read: 0, written: 0 };
  }

  async all(sql, ...args) {
    const r = await this.env.DB.prepare(sql).bind(...args).all();
    this.d1.queries++;
    this.d1.read += r.meta?.rows_read ?? 0;
    this.d1.written += r.meta?.rows_written ?? 0;
    return r.results;
  }

  line(level, event, msg, extra) {
    const text = JSON.stringify({ ts: new Date().toISOString(), level, msg, request_id: this.requestId, route: this.route, ...this.fields, event, ...extra });
    if (level === 'error') console.error(text);
    else if (level === 'warn') console.warn(text);
    else console.log(text);
  }
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json; charset=utf-8' } });
}

// ---------------------------------------------------------------- routes

/** A URL for `key`, valid until a whole day past now + ttl (as files::signed_url). */
async function signedUrl(origin, secret, key, ttlS, nowMs) {
  const exp = (Math.floor((Math.floor(nowMs / 1000) + ttlS) / 86400) + 1) * 86400;
  const sig = base64url((await hmacSha256(secret, `file:${key}:${exp}`)).subarray(0, 20));
  return `${origin}/files/${key}?exp=${exp}&sig=${sig}`;
}

async function taskView(ctx, t) {
  const secret = ctx.env.FILE_URL_SECRET;
  const ttl = Number(ctx.env.RESULT_URL_TTL_SECONDS) || 7 * 86400;
  const origin = ctx.url.origin;
  const now = Date.now();
  const sign = (key) => signedUrl(origin, secret, key, ttl, now);
  const inputs = await Promise.all(parseList(t.inputs).map(async (i) => ({ url: i.key ? await sign(i.key) : (i.url ?? null) })));
  const results = await Promise.all(parseList(t.results).map(async (r) => ({ url: await sign(r.key), content_type: r.content_type, bytes: r.bytes })));
  return {
    id: t.id,
    state: t.state,
    model: t.model,
    prompt: t.prompt,
    aspect_ratio: t.aspect_ratio,
    resolution: t.resolution,
    output_format: t.output_format,
    inputs,
    results,
    credits: t.credits,
    error: t.error_code != null ? { code: t.error_code, message: t.error_message } : null,
    provider_task_id: t.provider_task_id,
    created_at: iso(t.created_at),
    updated_at: iso(t.updated_at),
    completed_at: iso(t.completed_at),
  };
}

async function getTask(ctx, request, id) {
  const auth = request.headers.get('Authorization') || '';
  const key = (auth.startsWith('Bearer ') || auth.startsWith('bearer ') ? auth.slice(7) : '').trim();
  if (!key || key.length > 256) throw new HttpError(401, 'unauthorized', "Send your API key as 'Authorization: Bearer nbk_…'.");
  if (!key.startsWith('nbk_')) throw new HttpError(401, 'unauthorized', 'That is not a valid API key.');
  const hash = hex(await crypto.subtle.digest('SHA-256', enc.encode(key)));
  ctx.fields.task_id = id;
  const [task] = await ctx.all(TASK_FOR_KEY_SQL, hash, id);
  if (!task) {
    const [user] = await ctx.all(USER_BY_KEY_SQL, hash);
    if (!user) throw new HttpError(401, 'unauthorized', 'That API key is not valid (it may have been rotated).');
    throw new HttpError(404, 'not_found', 'Not found.');
  }
  ctx.fields.user_id = task.user_id;
  if (task.provider_task_id) ctx.fields.provider_task_id = task.provider_task_id;
  return json(200, { task: await taskView(ctx, task) });
}

const HINTS = {
  waiting: 'waiting', queuing: 'waiting', queued: 'waiting', pending: 'waiting',
  generating: 'generating', processing: 'generating', running: 'generating',
  success: 'success', succeeded: 'success', completed: 'success',
  fail: 'fail', failed: 'fail', error: 'fail',
};

async function webhook(ctx, request) {
  const declared = Number(request.headers.get('Content-Length'));
  if (declared > MAX_CALLBACK_BYTES) throw new HttpError(413, 'payload_too_large', 'The request body is too large.');
  const text = await request.text();
  if (text.length > MAX_CALLBACK_BYTES) throw new HttpError(413, 'payload_too_large', 'The request body is too large.');
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'invalid_json', 'The callback body is not a JSON object.');
  const data = body.data && typeof body.data === 'object' ? body.data : null;
  const idOf = (o) => {
    const v = o.taskId ?? o.task_id;
    return typeof v === 'string' && v.trim() ? v.trim() : null;
  };
  const providerId = (data && idOf(data)) || idOf(body);
  if (providerId) ctx.fields.provider_task_id = providerId;
  const state = String((data ?? body).state ?? '').toLowerCase();
  const hint = HINTS[state] ?? 'none';
  if (hint === 'success' && typeof data?.resultJson === 'string') {
    try {
      JSON.parse(data.resultJson);
    } catch {}
  }

  const hmacKey = ctx.env.KIE_WEBHOOK_HMAC_KEY;
  if (hmacKey) {
    const ts = request.headers.get('X-Webhook-Timestamp');
    const sig = request.headers.get('X-Webhook-Signature');
    const n = Number(ts?.trim());
    const ok =
      ts != null && sig != null && providerId && Number.isInteger(n) && Math.abs(Math.floor(Date.now() / 1000) - n) <= HMAC_WINDOW_S &&
      ctEq(base64(await hmacSha256(hmacKey, `${providerId}.${ts}`)), sig.trim());
    if (!ok) throw new HttpError(401, 'unauthorized', 'The callback signature is not valid.');
  }

  const id = ctx.url.searchParams.get('task');
  const [task] = id ? await ctx.all(TASK_BY_ID_SQL, id) : providerId ? await ctx.all(`SELECT ${TASK_COLUMNS} FROM tasks t WHERE t.provider_task_id = ?1`, providerId) : [];
  if (!task) {
    ctx.line('warn', 'callback.unknown_task', 'callback for a task we do not know', {});
    return json(200, { ok: true, ignored: 'unknown_task' });
  }
  ctx.fields.task_id = task.id;
  ctx.fields.user_id = task.user_id;
  const token = ctx.url.searchParams.get('token');
  const tokenOk = token != null && ctEq(token, task.callback_token);
  const sameTask = !providerId || !task.provider_task_id || providerId === task.provider_task_id;
  if (!tokenOk || !sameTask) throw new HttpError(401, 'unauthorized', 'This callback is not authorised for that task.');
  const shape = data ? (data.state !== undefined ? 'jobs' : data.info !== undefined ? 'gpt4o' : 'generic') : 'flat';
  ctx.line('info', 'callback.received', 'Kie callback received', { shape, hint, task_state: task.state });
  if (task.state === 'succeeded' || task.state === 'failed') return json(200, { ok: true, state: task.state });
  await ctx.all('UPDATE tasks SET checked_at = ?1 WHERE id = ?2', Date.now(), task.id);
  return json(200, { ok: true });
}

const assetCache = new Map();
function asset(ctx, request, name) {
  const [binding, type] = name === 'app.css' ? ['ASSET_APP_CSS', 'text/css; charset=utf-8'] : ['ASSET_APP_JS', 'text/javascript; charset=utf-8'];
  const text = ctx.env[binding];
  if (typeof text !== 'string') throw new HttpError(404, 'not_found', 'Not found.');
  let bytes = assetCache.get(name);
  if (!bytes) assetCache.set(name, (bytes = enc.encode(text)));
  const etag = ctx.env[`${binding}_ETAG`] || '"reference"';
  const fresh = request.headers.get('If-None-Match') === etag;
  return new Response(fresh ? null : bytes, {
    status: fresh ? 304 : 200,
    headers: {
      'Content-Type': type,
      ETag: etag,
      'Cache-Control': 'public, max-age=0, must-revalidate',
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
    },
  });
}

function route(method, path) {
  const s = path.split('/');
  if ((path === '/app.css' || path === '/app.js') && method === 'GET') return ['page', (ctx, req) => asset(ctx, req, path.slice(1))];
  if (path === '/api/ping' && method === 'GET') return ['ping', () => json(200, { ok: true })];
  if (s.length === 4 && s[1] === 'api' && s[2] === 'tasks' && s[3] && method === 'GET') return ['tasks.get', (ctx, req) => getTask(ctx, req, s[3])];
  if (path === '/api/webhooks/kie-image' && method === 'POST') return ['webhook', (ctx, req) => webhook(ctx, req)];
  return ['unknown', null];
}

export default {
  async fetch(request, env) {
    const started = Date.now();
    const ctx = new Ctx(env, request);
    const [name, handler] = route(request.method, ctx.url.pathname);
    ctx.route = name;
    let resp;
    let errorCode = null;
    try {
      if (!handler) throw new HttpError(404, 'not_found', 'There is no such route.');
      resp = await handler(ctx, request);
    } catch (e) {
      const err = e instanceof HttpError ? e : new HttpError(500, 'internal', 'Something went wrong on our side.');
      errorCode = err.code;
      const failed = err.status >= 500;
      ctx.line(failed ? 'error' : 'warn', failed ? 'http.error' : 'http.rejected', failed ? 'request failed' : 'request refused', { error_code: err.code, status: err.status, cause: err === e ? null : String(e), reason: err.message });
      resp = json(err.status, { error: { code: err.code, message: err.message, request_id: ctx.requestId, retryable: err.status >= 500 } });
    }
    const h = resp.headers;
    h.set('X-Request-Id', ctx.requestId);
    h.set('X-Content-Type-Options', 'nosniff');
    if (!h.has('Cache-Control')) h.set('Cache-Control', 'no-store');
    const status = resp.status;
    ctx.line(status >= 500 ? 'error' : status >= 400 ? 'warn' : 'info', 'http.request', 'request', {
      method: request.method,
      path: ctx.url.pathname,
      status,
      duration_ms: Date.now() - started,
      error_code: errorCode,
      d1_queries: ctx.d1.queries,
      d1_rows_read: ctx.d1.read,
      d1_rows_written: ctx.d1.written,
      kie_calls: 0,
      // The same invocation meter as ours: every D1 call is a subrequest; no
      // connection is held past a call; there is no wasm memory to report.
      subrequests: ctx.d1.queries,
      connections_peak: 0,
      wasm_memory_bytes: 0,
    });
    return resp;
  },
};
