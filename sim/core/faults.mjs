// Create rate limit and injected faults.
//
// Rate limit: 20 new generation requests per 10 s per account; the excess is rejected with 429 and
// neither queued nor charged (docs.kie.ai "Getting Started with KIE API").
// Faults (POST /_sim/faults) replace the answer of an endpoint class: a business code in an HTTP 200
// envelope (code_NNN), a real HTTP status (http_NNN), Cloudflare's 403 "error code: 1010"
// (http_403_1010), a non-JSON page (garbage), a connection reset, or no answer at all (timeout).

import { CODE_MSG } from './constants.mjs';
import { envelope } from './util.mjs';

const FAULT_ENDPOINTS = ['create', 'record', 'credit', 'upload', 'tempfile', 'download', '*'];

/** null when a create may go ahead; { retryAfter } (seconds) when the window is full. */
export function rateLimited(core) {
  const { state } = core;
  const rl = state.config.rateLimit;
  if (!rl || rl.enabled === false || !(rl.max >= 0)) return null;
  const now = Date.now();
  const windowMs = Number(rl.windowMs) || 10000;
  while (state.createTimes.length && state.createTimes[0] <= now - windowMs) state.createTimes.shift();
  if (state.createTimes.length >= rl.max) {
    const retryAfterMs = state.createTimes.length ? state.createTimes[0] + windowMs - now : windowMs;
    return { retryAfter: Math.max(1, Math.ceil(retryAfterMs / 1000)) };
  }
  return null;
}

/** The first live fault rule for this endpoint class and path, counted as applied; or null. */
export function takeFault(core, cls, path) {
  const { state } = core;
  const now = Date.now();
  state.faults = state.faults.filter((f) => f.times !== 0 && !(f.expiresAt && f.expiresAt <= now));
  for (const f of state.faults) {
    if (f.endpoint !== '*' && f.endpoint !== cls) continue;
    if (f.path && f.path !== path) continue;
    if (f.times > 0) f.times--;
    f.applied++;
    state.stats.faultsApplied++;
    return { ...f };
  }
  return null;
}

/**
 * rule: { kind, endpoint = '*', times = 1 (-1: until cleared), durationMs, createsTask (a create that
 * fails with code_500/http_500/timeout still creates the task: "the answer was lost"), path, msg, retryAfter }.
 */
export function addFault(core, rule) {
  const kind = String(rule.kind || '');
  if (!/^(code|http)_\d{3}$/.test(kind) && !['http_403_1010', 'timeout', 'garbage', 'reset'].includes(kind)) {
    throw new Error(`unknown fault kind: ${kind}`);
  }
  const endpoint = rule.endpoint || '*';
  if (!FAULT_ENDPOINTS.includes(endpoint)) throw new Error(`unknown fault endpoint: ${endpoint}`);
  const f = {
    id: ++core.faultSeq,
    endpoint,
    kind,
    times: rule.times != null ? Number(rule.times) : rule.durationMs ? -1 : 1,
    durationMs: rule.durationMs ?? null,
    expiresAt: rule.durationMs ? Date.now() + Number(rule.durationMs) : null,
    createsTask: !!rule.createsTask,
    path: rule.path || null,
    msg: rule.msg || null,
    retryAfter: rule.retryAfter ?? 1,
    applied: 0,
  };
  core.state.faults.push(f);
  return f;
}

/** The response a fault produces (reset and timeout are handled by the server). */
export function faultResponse(f, cls) {
  const upload = cls === 'upload';
  const env = (code) => (upload ? { success: false, code, msg: f.msg || CODE_MSG[code] || 'Error' } : envelope(code, f.msg || CODE_MSG[code]));
  if (f.kind === 'http_403_1010') return { status: 403, headers: { 'Content-Type': 'text/plain; charset=UTF-8' }, body: 'error code: 1010' };
  if (f.kind === 'garbage') return { status: 200, headers: { 'Content-Type': 'text/html; charset=UTF-8' }, body: '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>' };
  let m = /^code_(\d{3})$/.exec(f.kind);
  if (m) return { status: 200, body: env(Number(m[1])) };
  m = /^http_(\d{3})$/.exec(f.kind);
  if (m) {
    const status = Number(m[1]);
    const headers = status === 429 || status === 503 ? { 'Retry-After': String(f.retryAfter) } : {};
    return { status, headers, body: env(status) };
  }
  return { status: 500, body: env(500) };
}
