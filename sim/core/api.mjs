// Building blocks for api.kie.ai handlers: Bearer auth, the {code,msg,data} envelope, the create gate
// (auth, rate limit, credits), common validators and the record-info lookup; plus GET /api/v1/chat/credit.
//
// Business errors come back as HTTP 200 with the verdict in `code` (docs.kie.ai, and production clients
// that measured it); real HTTP 401 / 429 are switchable (authAsHttp401, rateLimitAsHttp429).
//
// A handler is handler(core, ctx) with ctx = { req, url, raw, taskId }; it sets ctx.taskId for the
// request log and returns { status, headers?, body }.

import { envelope, isHttpUrl } from './util.mjs';
import { rateLimited } from './faults.mjs';

export function authOk(core, req) {
  const h = req.headers.authorization || '';
  const m = /^Bearer\s+(.+)$/i.exec(h.trim());
  return !!m && m[1].trim() === String(core.state.config.apiKey);
}

export const unauthorized = (core) => ({ status: core.state.config.authAsHttp401 ? 401 : 200, body: envelope(401, 'Unauthorized') });
export const ok = (data) => ({ status: 200, body: envelope(200, 'success', data) });
export const bizErr = (code, msg) => ({ status: 200, body: envelope(code, msg) });

export function parseJson(ctx) {
  if (!ctx.raw.length) return { value: {} };
  try {
    return { value: JSON.parse(ctx.raw.toString('utf8')) };
  } catch {
    return { error: bizErr(400, 'Invalid JSON body') };
  }
}

/** Auth and the create rate limit, shared by every create endpoint; null when the request may go on. */
export function createGate(core, ctx) {
  const { state } = core;
  if (!authOk(core, ctx.req)) return unauthorized(core);
  const rl = rateLimited(core);
  if (rl) {
    state.stats.rateLimited++;
    return {
      status: state.config.rateLimitAsHttp429 ? 429 : 200,
      headers: state.config.rateLimitAsHttp429 ? { 'Retry-After': String(rl.retryAfter) } : {},
      body: envelope(429, 'Too many requests'),
    };
  }
  return null;
}

export function creditsGate(core, price) {
  return core.state.credits < price ? bizErr(402, 'Insufficient credits') : null;
}

export function validateUrlList(list, field, max, required) {
  if (list === undefined || list === null) return required ? `${field} is required` : null;
  if (!Array.isArray(list)) return `${field} must be an array of URLs`;
  if (required && list.length === 0) return `${field} must contain at least 1 item`;
  if (list.length > max) return `${field} must contain at most ${max} items`;
  for (let i = 0; i < list.length; i++) {
    if (!isHttpUrl(list[i])) return `${field}[${i}] must be a valid http(s) URL`;
  }
  return null;
}

export function validateCallBackUrl(v) {
  if (v === undefined || v === null || v === '') return null;
  return isHttpUrl(v) ? null : 'callBackUrl must be a valid http(s) URL';
}

/**
 * The shared part of every record-info endpoint: auth, taskId, per-task poll counting, and the
 * family's "not found" answer (a task of another family is not found either).
 * Returns { task } or { resp }.
 */
export function recordLookup(core, ctx, family, notFoundMsg) {
  const { state } = core;
  if (!authOk(core, ctx.req)) return { resp: unauthorized(core) };
  const id = ctx.url.searchParams.get('taskId');
  if (!id) return { resp: bizErr(400, 'taskId parameter is required') };
  ctx.taskId = id;
  state.stats.recordByTask[id] = (state.stats.recordByTask[id] || 0) + 1;
  const task = state.tasks.get(id);
  if (task) task.recordCalls++;
  if (!task || task.family !== family) return { resp: bizErr(422, notFoundMsg) };
  return { task };
}

/** GET /api/v1/chat/credit: `data` is the bare balance (docs.kie.ai common-api/get-account-credits). */
export function hCredit(core, ctx) {
  if (!authOk(core, ctx.req)) return unauthorized(core);
  return ok(core.state.credits);
}
