// The control API under /_sim/ (no auth): tests and scripts reset the simulator, change its
// configuration, inject faults, read tasks, stats, callback deliveries and files, and (re)send callbacks.
//
//   POST /_sim/reset                     forget everything, back to the start options
//   GET|POST /_sim/config                read / deep-merge the configuration ({ credits } sets the balance)
//   GET|POST|DELETE /_sim/faults         list / add (one rule or an array) / clear fault rules
//   GET /_sim/tasks, /_sim/tasks/:id     task views
//   POST /_sim/tasks/:id/callback        send a callback now (see manualCallback)
//   GET /_sim/stats, /_sim/callbacks, /_sim/files

import { defaultConfig, newStats } from './constants.mjs';
import { baseUrl } from './context.mjs';
import { manualCallback } from './callbacks.mjs';
import { addFault } from './faults.mjs';
import { deepMerge, isPlainObject } from './util.mjs';

/** What the control API shows of a task. `body` is the request body exactly as the simulator received it. */
export function taskView(t) {
  return {
    id: t.id,
    taskId: t.id,
    family: t.family,
    model: t.model,
    input: t.input,
    body: t.body,
    callBackUrl: t.callBackUrl,
    state: t.state,
    history: t.history,
    markers: [...t.markers],
    inputsFetched: t.inputsFetched,
    aspect: t.aspect,
    aspectSource: t.aspectSource,
    resultUrls: t.results,
    failCode: t.failCode,
    failMsg: t.failMsg,
    errorCode: t.errorCode,
    price: t.price,
    creditsConsumed: t.creditsConsumed,
    callbacks: t.callbacks,
    recordCalls: t.recordCalls,
    answerLost: t.answerLost || null,
    createdAt: t.createdAt,
    completedAt: t.completedAt,
  };
}

export function publicConfig(core) {
  return JSON.parse(JSON.stringify(core.state.config));
}

/** Forget all tasks, files, faults and stats; stop pending work; back to the start options. */
export function reset(core) {
  const { state } = core;
  state.epoch++;
  for (const t of core.timers) clearTimeout(t);
  core.timers.clear();
  for (const h of [...core.outbound]) h.abort('reset');
  state.config = defaultConfig(core.startOpts, core.familyPrices);
  state.credits = state.config.credits;
  state.tasks.clear();
  state.files.clear();
  state.faults = [];
  state.callbacks = [];
  state.stats = newStats();
  state.createTimes = [];
}

/** Deep-merge a patch into the configuration; `credits` sets the balance. */
export function configure(core, patch) {
  if (!isPlainObject(patch)) throw new Error('config must be an object');
  const { credits, ...rest } = patch;
  deepMerge(core.state.config, rest);
  if (credits !== undefined) {
    core.state.credits = Number(credits);
  }
  return publicConfig(core);
}

export async function control(core, req, url, raw) {
  const { state } = core;
  const p = url.pathname;
  const m = req.method;
  let body = {};
  if (raw.length) {
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      return { status: 400, body: { error: 'invalid JSON' } };
    }
  }
  try {
    if (p === '/_sim/reset' && m === 'POST') {
      reset(core);
      return { status: 200, body: { ok: true } };
    }
    if (p === '/_sim/config' && m === 'POST') return { status: 200, body: { ok: true, config: configure(core, body), credits: state.credits } };
    if (p === '/_sim/config' && m === 'GET') return { status: 200, body: { config: publicConfig(core), credits: state.credits } };
    if (p === '/_sim/faults' && m === 'POST') {
      const rules = Array.isArray(body) ? body : [body];
      const added = rules.map((r) => addFault(core, r));
      return { status: 200, body: { ok: true, fault: added[0], faults: added } };
    }
    if (p === '/_sim/faults' && m === 'GET') return { status: 200, body: state.faults };
    if (p === '/_sim/faults' && m === 'DELETE') {
      const n = state.faults.length;
      state.faults = [];
      return { status: 200, body: { ok: true, cleared: n } };
    }
    if (p === '/_sim/tasks' && m === 'GET') return { status: 200, body: [...state.tasks.values()].map(taskView) };
    let mm = /^\/_sim\/tasks\/([^/]+)$/.exec(p);
    if (mm && m === 'GET') {
      const t = state.tasks.get(mm[1]);
      return t ? { status: 200, body: taskView(t) } : { status: 404, body: { error: 'task not found' } };
    }
    mm = /^\/_sim\/tasks\/([^/]+)\/callback$/.exec(p);
    if (mm && m === 'POST') return await manualCallback(core, mm[1], body);
    if (p === '/_sim/stats' && m === 'GET') return { status: 200, body: { ...state.stats, credits: state.credits, tasks: state.tasks.size } };
    if (p === '/_sim/callbacks' && m === 'GET') return { status: 200, body: state.callbacks };
    if (p === '/_sim/files' && m === 'GET') {
      return { status: 200, body: [...state.files.entries()].map(([k, f]) => ({ path: k, url: `${baseUrl(core)}/tempfile/${k}`, kind: f.kind, mode: f.mode, taskId: f.taskId ?? null })) };
    }
    return { status: 404, body: { error: 'unknown control endpoint' } };
  } catch (e) {
    return { status: 400, body: { error: e.message } };
  }
}
