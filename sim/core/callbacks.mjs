// Callback (webhook) delivery shared by every family; the body comes from the family module.
//
// Kie POSTs a JSON body to callBackUrl once, when the task is terminal (docs.kie.ai market pages).
// Delivery rules from the 4o, Flux Kontext and Runway callback pages: 15 s timeout, the same taskId
// may be delivered more than once, and delivery stops after 3 consecutive failures.
// With an HMAC key set, X-Webhook-Timestamp (Unix seconds) and X-Webhook-Signature are added
// (docs.kie.ai common-api/webhook-verification).
// Configurable misbehaviour: delay, duplicates, a stale copy after the real one (reorder), drop.

import crypto from 'node:crypto';
import { OUTBOUND_UA } from './constants.mjs';
import { alive, familyOf, sleep, terminal } from './context.mjs';
import { httpRequest } from './http-client.mjs';

/** base64(HMAC-SHA256(key, taskId + "." + timestamp)), as in Kie's webhook-verification docs. */
export function signWebhook(key, taskId, timestamp) {
  return crypto.createHmac('sha256', Buffer.from(String(key), 'utf8')).update(`${taskId}.${timestamp}`, 'utf8').digest('base64');
}

/** The family's callback body; override { state } forces a terminal state, { stale: true } a "still running" copy. */
export function callbackBody(core, task, override) {
  return familyOf(core, task).callbackBody(core, task, override);
}

export async function postCallback(core, task, url, body, kind, attempt, extra = {}) {
  const { state } = core;
  const cfg = state.config.callbacks;
  const payload = JSON.stringify(body);
  const headers = { 'Content-Type': 'application/json', 'User-Agent': cfg.userAgent || OUTBOUND_UA, Accept: '*/*', Connection: 'close' };
  const key = extra.hmacKey !== undefined ? extra.hmacKey : state.config.hmacKey;
  let timestamp = null;
  if (key) {
    timestamp = extra.timestamp != null ? String(extra.timestamp) : String(Math.floor(Date.now() / 1000));
    headers['X-Webhook-Timestamp'] = timestamp;
    headers['X-Webhook-Signature'] = extra.signature ?? signWebhook(key, task.id, timestamp);
  }
  if (extra.headers) Object.assign(headers, extra.headers);
  const t0 = Date.now();
  const entry = { taskId: task.id, family: task.family, url, kind, attempt, status: null, ok: false, ms: 0, error: null, at: t0, timestamp, responseBody: null };
  state.stats.callbacksSent++;
  try {
    const r = await httpRequest({ method: 'POST', url, headers, body: payload, timeoutMs: cfg.timeoutMs, maxBytes: 64 * 1024, track: core.outbound });
    entry.status = r.status;
    entry.ok = r.status >= 200 && r.status < 300;
    entry.responseBody = r.body.toString('utf8').slice(0, 500);
    if (!entry.ok) entry.error = `HTTP ${r.status}`;
  } catch (e) {
    entry.error = e.code ? `${e.code}: ${e.message}` : e.message;
  }
  entry.ms = Date.now() - t0;
  state.callbacks.push(entry);
  task.callbacks.push(entry);
  return entry;
}

async function deliverWithRetries(core, task, url, body, kind) {
  const cfg = core.state.config.callbacks;
  const max = Math.max(1, Number(cfg.maxAttempts) || 1);
  let last = null;
  for (let attempt = 1; attempt <= max; attempt++) {
    if (!alive(core, task)) return last;
    last = await postCallback(core, task, url, body, kind, attempt);
    if (last.ok) return last;
    if (attempt < max) await sleep(core, cfg.retryDelayMs);
  }
  return last;
}

/** Deliver a terminal task's callback (if it has a callBackUrl), following config.callbacks. */
export async function deliverCallbacks(core, task) {
  if (!task.callBackUrl) return;
  const { state } = core;
  const cfg = state.config.callbacks;
  if (cfg.drop) {
    const entry = { taskId: task.id, family: task.family, url: task.callBackUrl, kind: 'dropped', attempt: 0, status: null, ok: false, ms: 0, error: 'dropped by config', at: Date.now() };
    state.callbacks.push(entry);
    task.callbacks.push(entry);
    return;
  }
  if (cfg.delayMs > 0) await sleep(core, cfg.delayMs);
  if (!alive(core, task)) return;
  const body = callbackBody(core, task);
  await deliverWithRetries(core, task, task.callBackUrl, body, 'primary');
  const dups = Math.max(0, Number(cfg.duplicates) || 0);
  for (let i = 0; i < dups && alive(core, task); i++) await postCallback(core, task, task.callBackUrl, body, 'duplicate', 1);
  if (cfg.reorder && alive(core, task)) await postCallback(core, task, task.callBackUrl, callbackBody(core, task, { stale: true }), 'stale', 1);
}

/**
 * POST /_sim/tasks/:id/callback: send one callback now. opts: url, body (sent verbatim), state
 * (success|fail, for a task that is not terminal or to send the other outcome), timestamp, signature,
 * hmacKey, headers.
 */
export async function manualCallback(core, id, opts = {}) {
  const task = core.state.tasks.get(id);
  if (!task) return { status: 404, body: { error: 'task not found' } };
  const url = opts.url || task.callBackUrl;
  if (!url) return { status: 400, body: { error: 'task has no callBackUrl; pass "url"' } };
  let body = opts.body;
  if (!body) {
    const st = opts.state || (terminal(task.state) ? task.state : null);
    if (!st) return { status: 400, body: { error: 'task is not terminal; pass "state" or "body"' } };
    if (!terminal(st)) return { status: 400, body: { error: 'state must be success or fail' } };
    body = callbackBody(core, task, { state: st });
  }
  const entry = await postCallback(core, task, url, body, 'manual', 1, { timestamp: opts.timestamp, signature: opts.signature, hmacKey: opts.hmacKey, headers: opts.headers });
  return { status: 200, body: { ok: entry.ok, status: entry.status, error: entry.error, ms: entry.ms, sent: body, delivery: entry } };
}
