// Task lifecycle shared by every family: creation and charging, the
// waiting → queuing → generating → success|fail schedule (docs.kie.ai market/common/get-task-detail),
// input fetching, result files, refunds on failure, and the hand-off to callback delivery.
// What differs per family (failure codes, how many results) comes from the family module.

import { FETCH_UA, MB, SIM_MARKERS } from './constants.mjs';
import { alive, baseUrl, familyOf, later, sleep, stepDelay } from './context.mjs';
import { httpRequest } from './http-client.mjs';
import { imageSize, sniffImage } from './images.mjs';
import { isPlainObject, newTaskId, parseMarkers } from './util.mjs';
import { deliverCallbacks } from './callbacks.mjs';

/** Price of a task from config.prices[model]; a table is keyed by resolution or nVariants. */
export function priceFor(core, model, opts) {
  let v = core.state.config.prices[model];
  if (isPlainObject(v)) v = v[opts.resolution ?? opts.nVariants ?? '1K'] ?? Object.values(v)[0];
  return typeof v === 'number' ? v : 0;
}

/**
 * Create, charge and schedule a task. Called by a family's create handler once the request is valid.
 * family: the family id; body: the request body as received; input: the part holding the model input;
 * inputs: image URLs to fetch; imageLimit: their byte cap; format/aspect/resolution/nVariants: the result.
 * aspectSource: where the aspect ratio came from: 'request', 'default', or 'input' (the family sets
 * `aspect` from the fetched input in its inputsFetched hook).
 */
export function createTask(core, { family, model, body, input, callBackUrl, inputs, imageLimit, format, aspect, aspectSource, resolution, nVariants, prompt }) {
  const { state } = core;
  const now = Date.now();
  const markers = parseMarkers(prompt);
  if (state.config.outcome && SIM_MARKERS.includes(state.config.outcome)) markers.add(state.config.outcome);
  const task = {
    id: newTaskId(),
    family,
    model,
    body,
    input,
    callBackUrl: callBackUrl || null,
    state: 'waiting',
    history: [{ state: 'waiting', at: now }],
    createdAt: now,
    updatedAt: now,
    generatingAt: null,
    completedAt: null,
    markers,
    inputs,
    imageLimit,
    inputsFetched: [],
    format,
    aspect,
    aspectSource,
    resolution,
    nVariants: nVariants || 1,
    results: [],
    origin: null,
    failCode: '',
    failMsg: '',
    errorCode: null,
    price: 0,
    creditsConsumed: null,
    callbacks: [],
    recordCalls: 0,
    epoch: state.epoch,
  };
  task.price = priceFor(core, model, { resolution, nVariants });
  state.tasks.set(task.id, task);
  state.credits -= task.price;
  state.createTimes.push(now);
  scheduleStep(core, task);
  return task;
}

function setState(task, s) {
  const now = Date.now();
  task.state = s;
  task.updatedAt = now;
  task.history.push({ state: s, at: now });
}

function scheduleStep(core, task) {
  later(core, stepDelay(core, task), () => {
    if (!alive(core, task)) return;
    if (task.state === 'waiting') {
      setState(task, 'queuing');
      scheduleStep(core, task);
    } else if (task.state === 'queuing') {
      setState(task, 'generating');
      task.generatingAt = Date.now();
      const fetching = fetchInputs(core, task);
      const minTime = sleep(core, stepDelay(core, task));
      Promise.all([fetching, minTime]).then(() => {
        if (!alive(core, task) || task.markers.has('never')) return;
        finish(core, task);
      });
    }
  });
}

async function fetchInputs(core, task) {
  const urls = task.inputs || [];
  task.inputsFetched = await Promise.all(urls.map((u) => fetchInput(core, u, task.imageLimit)));
  if (alive(core, task)) familyOf(core, task).inputsFetched?.(core, task);
}

/** Fetch one input image the way Kie does: follow redirects, cap the size, accept only jpeg/png/webp; note its size. */
async function fetchInput(core, url, maxBytes) {
  const t0 = Date.now();
  const rec = { url, finalUrl: url, status: null, contentType: null, bytes: 0, kind: null, width: null, height: null, ok: false, error: null, redirects: 0, ms: 0 };
  try {
    const r = await httpRequest({
      url,
      headers: { 'User-Agent': FETCH_UA, Accept: 'image/avif,image/webp,image/png,image/jpeg,*/*' },
      timeoutMs: core.state.config.inputFetchTimeoutMs,
      maxRedirects: 5,
      maxBytes: (maxBytes || 30 * MB) + 1,
      track: core.outbound,
    });
    rec.status = r.status;
    rec.contentType = r.headers['content-type'] ?? null;
    rec.bytes = r.body.length;
    rec.kind = sniffImage(r.body);
    const size = rec.kind ? imageSize(r.body) : null;
    rec.width = size?.width ?? null;
    rec.height = size?.height ?? null;
    rec.finalUrl = r.url;
    rec.redirects = r.redirects;
    if (r.status < 200 || r.status >= 300) rec.error = `HTTP ${r.status}`;
    else if (maxBytes && r.body.length > maxBytes) rec.error = `file larger than ${maxBytes} bytes`;
    else if (!rec.kind) rec.error = 'not a jpeg/png/webp image';
    else rec.ok = true;
  } catch (e) {
    rec.error = e.code ? `${e.code}: ${e.message}` : e.message;
  }
  rec.ms = Date.now() - t0;
  return rec;
}

/**
 * Register result file number `index` of a task and return its URL. Kie serves results from
 * tempfile.aiquickdraw.com/as/<taskId>_<ms>.<ext>; the file is rendered on first download.
 */
export function registerResult(core, task, index, ts, suffix = '') {
  if (core.state.config.results?.url) return core.state.config.results.url;
  const ext = task.format;
  const name = `as/${task.id}_${ts + index}${suffix}.${ext}`;
  const mode = task.markers.has('not_image') ? 'not_image' : task.markers.has('missing_result') ? 'missing' : 'ok';
  if (mode !== 'missing') {
    core.state.files.set(name, {
      kind: 'result',
      taskId: task.id,
      index,
      format: ext === 'png' ? 'png' : 'jpeg',
      aspect: task.aspect,
      resolution: task.resolution,
      mode,
      createdAt: Date.now(),
      bytes: null,
    });
  }
  return `${baseUrl(core)}/tempfile/${name}`;
}

function finish(core, task) {
  const family = familyOf(core, task);
  const now = Date.now();
  const badInput = task.inputsFetched.find((r) => !r.ok);
  let fail = null;
  if (badInput) fail = 'media';
  else if (task.markers.has('content_policy')) fail = 'content_policy';
  else if (task.markers.has('internal')) fail = 'internal';
  else if (task.markers.has('upstream_timeout')) fail = 'upstream_timeout';
  task.completedAt = now;
  if (fail) {
    Object.assign(task, family.failure(fail));
    core.state.credits += task.price; // failed tasks are not charged
    task.creditsConsumed = 0;
    setState(task, 'fail');
  } else {
    if (!task.markers.has('empty_result')) family.results(core, task, now);
    task.creditsConsumed = task.price;
    setState(task, 'success');
  }
  deliverCallbacks(core, task);
}
