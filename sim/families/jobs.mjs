// Market jobs family (the Nano Banana models): POST /api/v1/jobs/createTask, GET /api/v1/jobs/recordInfo
// and the jobs callback.
//
// Per-model `input` rules from docs.kie.ai market/google/{nano-banana,nano-banana-edit,
// pro-image-to-image,nanobanana2}. recordInfo `data` from docs.kie.ai market/common/get-task-detail:
// `param` and `resultJson` are JSON strings, times are Unix ms, `state` is
// waiting|queuing|generating|success|fail. The callback is wrapped, {code,msg,data}, with `data`
// identical to the recordInfo `data` ("identical to the Query Task API response", docs.kie.ai).

import { MB, UPSTREAM_TIMEOUT_MSG } from '../core/constants.mjs';
import { baseUrl, terminal } from '../core/context.mjs';
import { bizErr, createGate, creditsGate, ok, parseJson, recordLookup, validateCallBackUrl, validateUrlList } from '../core/api.mjs';
import { createTask, priceFor, registerResult } from '../core/tasks.mjs';
import { isPlainObject } from '../core/util.mjs';

const AR_BASIC = ['1:1', '9:16', '16:9', '3:4', '4:3', '3:2', '2:3', '5:4', '4:5', '21:9', 'auto'];
const AR_PRO = ['1:1', '2:3', '3:2', '3:4', '4:3', '4:5', '5:4', '9:16', '16:9', '21:9', 'auto'];
const AR_NB2 = ['1:1', '1:4', '1:8', '2:3', '3:2', '3:4', '4:1', '4:3', '4:5', '5:4', '8:1', '9:16', '16:9', '21:9', 'auto'];
const RESOLUTIONS = ['1K', '2K', '4K'];

export const JOB_MODELS = {
  'google/nano-banana': {
    promptMax: 5000,
    images: null,
    sizeFields: ['aspect_ratio', 'image_size'],
    arEnum: AR_BASIC,
    arDefault: '1:1',
    formats: ['png', 'jpeg'],
    formatDefault: 'png',
    resolution: false,
    bools: ['nsfw_checker', 'enable_translation'],
  },
  'google/nano-banana-edit': {
    promptMax: 5000,
    images: { field: 'image_urls', max: 10, required: true, maxBytes: 10 * MB },
    sizeFields: ['aspect_ratio', 'image_size'],
    arEnum: AR_BASIC,
    arDefault: '1:1',
    formats: ['png', 'jpeg'],
    formatDefault: 'png',
    resolution: false,
    bools: ['nsfw_checker', 'enable_translation'],
  },
  'nano-banana-pro': {
    promptMax: 10000,
    images: { field: 'image_input', max: 8, required: false, maxBytes: 30 * MB },
    sizeFields: ['aspect_ratio'],
    arEnum: AR_PRO,
    arDefault: '1:1',
    formats: ['png', 'jpg'],
    formatDefault: 'png',
    resolution: true,
    bools: [],
  },
  'nano-banana-2': {
    promptMax: 20000,
    images: { field: 'image_input', max: 14, required: false, maxBytes: 30 * MB },
    sizeFields: ['aspect_ratio'],
    arEnum: AR_NB2,
    arDefault: 'auto',
    formats: ['jpg', 'png'],
    formatDefault: 'jpg',
    resolution: true,
    bools: ['google_search'],
  },
};

export const MSG = {
  mediaUnavailable: 'Your media file is unavailable, please replace it.',
  contentPolicy: 'Invalid prompt: prompt contains prohibited content',
  internal: 'Internal Error',
  jobsCallbackSuccess: 'Playground task completed successfully.',
  jobsCallbackFail: 'Playground task failed.',
};

/** failCode is a string on jobs; an unreachable input is "422" (docs.kie.ai, user reports). */
const FAILURES = {
  media: ['422', MSG.mediaUnavailable],
  content_policy: ['422', MSG.contentPolicy],
  internal: ['500', MSG.internal],
  upstream_timeout: ['500', UPSTREAM_TIMEOUT_MSG],
};

/** POST /api/v1/jobs/createTask */
function hCreate(core, ctx) {
  const gate = createGate(core, ctx);
  if (gate) return gate;
  const p = parseJson(ctx);
  if (p.error) return p.error;
  const body = p.value;
  if (!isPlainObject(body)) return bizErr(422, 'request body must be a JSON object');
  if (body.model === undefined || body.model === null || body.model === '') return bizErr(422, 'model is required');
  const spec = JOB_MODELS[body.model];
  if (!spec) return bizErr(422, 'model name not supported');
  const cbErr = validateCallBackUrl(body.callBackUrl);
  if (cbErr) return bizErr(422, cbErr);
  const input = body.input;
  if (input === undefined || input === null) return bizErr(422, 'input is required');
  if (!isPlainObject(input)) return bizErr(422, 'input must be an object');
  if (input.prompt === undefined || input.prompt === null || input.prompt === '') return bizErr(422, 'prompt is required');
  if (typeof input.prompt !== 'string') return bizErr(422, 'prompt must be a string');
  if (input.prompt.length > spec.promptMax) return bizErr(422, `prompt length must be at most ${spec.promptMax} characters`);
  let images = [];
  if (spec.images) {
    const err = validateUrlList(input[spec.images.field], spec.images.field, spec.images.max, spec.images.required);
    if (err) return bizErr(422, err);
    images = input[spec.images.field] || [];
  }
  // aspect_ratio (new) and image_size (deprecated alias) are both accepted; aspect_ratio wins.
  let aspect;
  for (const f of spec.sizeFields) {
    if (input[f] === undefined || input[f] === null) continue;
    if (!spec.arEnum.includes(input[f])) return bizErr(422, `${f} must be one of: ${spec.arEnum.join(', ')}`);
  }
  for (const f of spec.sizeFields) {
    if (input[f] !== undefined && input[f] !== null) {
      aspect = input[f];
      break;
    }
  }
  const aspectSource = aspect === undefined ? 'default' : 'request';
  aspect = aspect ?? spec.arDefault;
  let resolution = '1K';
  if (spec.resolution && input.resolution !== undefined && input.resolution !== null) {
    if (!RESOLUTIONS.includes(input.resolution)) return bizErr(422, `resolution must be one of: ${RESOLUTIONS.join(', ')}`);
    resolution = input.resolution;
  }
  let format = spec.formatDefault;
  if (input.output_format !== undefined && input.output_format !== null) {
    if (!spec.formats.includes(input.output_format)) return bizErr(422, `output_format must be one of: ${spec.formats.join(', ')}`);
    format = input.output_format;
  }
  for (const b of spec.bools) {
    if (input[b] !== undefined && input[b] !== null && typeof input[b] !== 'boolean') return bizErr(422, `${b} must be a boolean`);
  }
  // Some models reject unknown input keys with a 422, others ignore them silently (observed).
  if (core.state.config.strictInputKeys) {
    const known = new Set(['prompt', 'output_format', ...spec.sizeFields, ...spec.bools]);
    if (spec.images) known.add(spec.images.field);
    if (spec.resolution) known.add('resolution');
    const unknown = Object.keys(input).filter((k) => !known.has(k));
    if (unknown.length) return bizErr(422, `unsupported input field: ${unknown[0]}`);
  }
  const price = priceFor(core, body.model, { resolution });
  const cg = creditsGate(core, price);
  if (cg) return cg;
  const task = createTask(core, {
    family: 'jobs',
    model: body.model,
    body,
    input,
    callBackUrl: body.callBackUrl,
    inputs: images,
    imageLimit: spec.images?.maxBytes,
    format,
    aspect,
    aspectSource,
    resolution,
    prompt: input.prompt,
  });
  ctx.taskId = task.id;
  return ok({ taskId: task.id });
}

/** `param` is the create request as a JSON string; some captured examples double-encode its `input`. */
function paramString(core, task) {
  const b = { ...task.body };
  if (core.state.config.doubleEncodeParamInput && isPlainObject(b.input)) b.input = JSON.stringify(b.input);
  return JSON.stringify(b);
}

/** recordInfo `data`; override { state, results, failCode, failMsg } shapes a callback for another state. */
function data(core, task, override) {
  const st = override?.state ?? task.state;
  const results = override?.results ?? task.results;
  const done = terminal(st);
  const fail = st === 'fail';
  const completedAt = task.completedAt ?? (done ? Date.now() : null);
  return {
    taskId: task.id,
    model: task.model,
    state: st,
    param: paramString(core, task),
    resultJson: st === 'success' ? JSON.stringify({ resultUrls: results }) : '',
    failCode: fail ? (override?.failCode ?? task.failCode) : '',
    failMsg: fail ? (override?.failMsg ?? task.failMsg) : '',
    costTime: done ? (fail ? 0 : Math.max(1, Math.round((completedAt - task.createdAt) / 1000))) : null,
    completeTime: done ? completedAt : null,
    createTime: task.createdAt,
    updateTime: done ? Math.max(task.updatedAt, completedAt) : task.updatedAt,
    creditsConsumed: done ? (fail ? 0 : task.price) : null,
  };
}

/** GET /api/v1/jobs/recordInfo; an unknown taskId is 422 "recordInfo is null" (docs.kie.ai get-task-detail). */
function hRecord(core, ctx) {
  const r = recordLookup(core, ctx, 'jobs', 'recordInfo is null');
  return r.resp || ok(data(core, r.task));
}

/** Success: code 200 "Playground task completed successfully."; failure: code 501 "Playground task failed." */
function callbackBody(core, task, override) {
  const st = override?.state ?? task.state;
  if (override?.stale) {
    const d = data(core, task, { state: 'generating' });
    return { code: 200, msg: 'success', data: d };
  }
  let results = task.results;
  if (st === 'success' && !results.length && task.state !== 'success') results = [`${baseUrl(core)}/tempfile/as/${task.id}_${Date.now()}.${task.format}`];
  const fo = st === 'fail' && task.state !== 'fail' ? { failCode: '500', failMsg: MSG.internal } : {};
  const d = data(core, task, { state: st, results, ...fo });
  return st === 'success' ? { code: 200, msg: MSG.jobsCallbackSuccess, data: d } : { code: 501, msg: MSG.jobsCallbackFail, data: d };
}

export default {
  id: 'jobs',
  prices: {
    'google/nano-banana': 4,
    'google/nano-banana-edit': 4,
    'nano-banana-pro': { '1K': 18, '2K': 18, '4K': 24 },
    'nano-banana-2': { '1K': 8, '2K': 12, '4K': 18 },
  },
  routes: [
    { method: 'POST', path: '/api/v1/jobs/createTask', cls: 'create', handler: hCreate },
    { method: 'GET', path: '/api/v1/jobs/recordInfo', cls: 'record', handler: hRecord },
  ],
  failure(kind) {
    const [failCode, failMsg] = FAILURES[kind] || FAILURES.internal;
    return { failCode, failMsg };
  },
  results(core, task, now) {
    task.results.push(registerResult(core, task, 0, now));
  },
  data,
  callbackBody,
};
