// Flux Kontext family: POST /api/v1/flux/kontext/generate, GET /api/v1/flux/kontext/record-info and the
// flux callback (docs.kie.ai flux-kontext-api/*).
//
// generate: prompt required; inputImage (one URL) makes it an edit; aspectRatio one of 21:9, 16:9, 4:3,
// 1:1, 3:4, 9:16; outputFormat jpeg (default) or png; model flux-kontext-pro (default) or flux-kontext-max.
// aspectRatio defaults to 16:9 for a text-to-image. For an edit it is optional: given, the output is cropped
// or padded to it; omitted, the input image's aspect ratio is kept (docs.kie.ai
// flux-kontext-api/generate-or-edit-image, "Usage modes").
// record-info `data`: paramJson (string), response {originImageUrl, resultImageUrl}, successFlag
// 0 generating / 1 success / 2 create failed / 3 generate failed, errorCode 400|500|501 or null.
// Callback: {code, msg, data:{taskId, info:{originImageUrl, resultImageUrl}}}; code 200 "BFL image
// generated successfully.", 400 content policy, 500 internal, 501 failed; both URLs "" on failure.

import { UPSTREAM_TIMEOUT_MSG, MB } from '../core/constants.mjs';
import { ratioOf } from '../core/images.mjs';
import { baseUrl, terminal } from '../core/context.mjs';
import { bizErr, createGate, creditsGate, ok, parseJson, recordLookup, validateCallBackUrl } from '../core/api.mjs';
import { createTask, priceFor, registerResult } from '../core/tasks.mjs';
import { isHttpUrl, isPlainObject } from '../core/util.mjs';

const FLUX_ARS = ['21:9', '16:9', '4:3', '1:1', '3:4', '9:16'];
const FLUX_AR_DEFAULT = '16:9';
const FLUX_MODELS = ['flux-kontext-pro', 'flux-kontext-max'];

export const MSG = {
  fluxSuccess: 'BFL image generated successfully.',
  fluxContentPolicy: 'Your request was flagged by the content moderation system',
  fluxUnreachable: 'Failed to fetch the input image',
  fluxInternal: 'Internal Error',
};

/** errorCode is an integer on flux. */
const FAILURES = {
  media: [400, MSG.fluxUnreachable],
  content_policy: [400, MSG.fluxContentPolicy],
  internal: [500, MSG.fluxInternal],
  upstream_timeout: [500, UPSTREAM_TIMEOUT_MSG],
};

/** POST /api/v1/flux/kontext/generate */
function hCreate(core, ctx) {
  const gate = createGate(core, ctx);
  if (gate) return gate;
  const p = parseJson(ctx);
  if (p.error) return p.error;
  const body = p.value;
  if (!isPlainObject(body)) return bizErr(422, 'request body must be a JSON object');
  if (body.prompt === undefined || body.prompt === null || body.prompt === '') return bizErr(422, 'prompt is required');
  if (typeof body.prompt !== 'string') return bizErr(422, 'prompt must be a string');
  const inputs = [];
  if (body.inputImage !== undefined && body.inputImage !== null && body.inputImage !== '') {
    if (!isHttpUrl(body.inputImage)) return bizErr(422, 'inputImage must be a valid http(s) URL');
    inputs.push(body.inputImage);
  }
  let aspect = body.aspectRatio ?? null;
  let aspectSource = 'request';
  if (aspect === null) {
    // An edit takes the input's ratio once the input is fetched (see inputsFetched below).
    aspectSource = inputs.length ? 'input' : 'default';
    aspect = inputs.length ? null : FLUX_AR_DEFAULT;
  } else if (!FLUX_ARS.includes(aspect)) return bizErr(422, `aspectRatio must be one of: ${FLUX_ARS.join(', ')}`);
  const format = body.outputFormat ?? 'jpeg';
  if (!['jpeg', 'png'].includes(format)) return bizErr(422, 'outputFormat must be one of: jpeg, png');
  const model = body.model ?? 'flux-kontext-pro';
  if (!FLUX_MODELS.includes(model)) return bizErr(422, `model must be one of: ${FLUX_MODELS.join(', ')}`);
  for (const b of ['promptUpsampling', 'enableTranslation', 'uploadCn']) {
    if (body[b] !== undefined && body[b] !== null && typeof body[b] !== 'boolean') return bizErr(422, `${b} must be a boolean`);
  }
  const cbErr = validateCallBackUrl(body.callBackUrl);
  if (cbErr) return bizErr(422, cbErr);
  const price = priceFor(core, model, {});
  const cg = creditsGate(core, price);
  if (cg) return cg;
  const task = createTask(core, {
    family: 'flux',
    model,
    body,
    input: body,
    callBackUrl: body.callBackUrl,
    inputs,
    imageLimit: 30 * MB,
    format,
    aspect,
    aspectSource,
    resolution: '1K',
    prompt: body.prompt,
  });
  ctx.taskId = task.id;
  return ok({ taskId: task.id });
}

function data(core, task) {
  const st = task.state;
  return {
    taskId: task.id,
    paramJson: JSON.stringify(task.body),
    completeTime: terminal(st) ? task.completedAt : null,
    createTime: task.createdAt,
    response:
      st === 'success'
        ? { originImageUrl: task.origin ?? '', resultImageUrl: task.results[0] ?? '' }
        : st === 'fail'
          ? { originImageUrl: '', resultImageUrl: '' }
          : null,
    successFlag: st === 'success' ? 1 : st === 'fail' ? 3 : 0,
    errorCode: st === 'fail' ? task.errorCode : null,
    errorMessage: st === 'fail' ? task.failMsg : '',
  };
}

/** GET /api/v1/flux/kontext/record-info */
function hRecord(core, ctx) {
  const r = recordLookup(core, ctx, 'flux', 'record is null');
  return r.resp || ok(data(core, r.task));
}

function callbackBody(core, task, override) {
  const st = override?.state ?? task.state;
  if (override?.stale) return { code: 200, msg: 'generating', data: { taskId: task.id, info: { originImageUrl: '', resultImageUrl: '' } } };
  if (st === 'success') {
    const res = task.state === 'success' ? task.results[0] ?? '' : `${baseUrl(core)}/tempfile/as/${task.id}_${Date.now()}.${task.format}`;
    const origin = task.state === 'success' ? task.origin ?? '' : res;
    return { code: 200, msg: MSG.fluxSuccess, data: { taskId: task.id, info: { originImageUrl: origin, resultImageUrl: res } } };
  }
  const code = task.state === 'fail' ? task.errorCode : 500;
  const msg = task.state === 'fail' ? task.failMsg : MSG.fluxInternal;
  return { code, msg, data: { taskId: task.id, info: { originImageUrl: '', resultImageUrl: '' } } };
}

export default {
  id: 'flux',
  prices: {
    'flux-kontext-pro': 5,
    'flux-kontext-max': 10,
  },
  routes: [
    { method: 'POST', path: '/api/v1/flux/kontext/generate', cls: 'create', handler: hCreate },
    { method: 'GET', path: '/api/v1/flux/kontext/record-info', cls: 'record', handler: hRecord },
  ],
  failure(kind) {
    const [errorCode, failMsg] = FAILURES[kind] || FAILURES.internal;
    return { errorCode, failMsg, failCode: String(errorCode) };
  },
  /**
   * An edit without aspectRatio keeps the input image's ratio (reduced, e.g. 30×40 → "3:4"). An input that
   * could not be fetched fails the task; one whose size cannot be read falls back to the 16:9 default.
   */
  inputsFetched(core, task) {
    if (task.aspectSource !== 'input') return;
    const first = task.inputsFetched[0];
    if (!first?.ok) return;
    if (first.width && first.height) task.aspect = ratioOf(first.width, first.height);
    else {
      task.aspect = FLUX_AR_DEFAULT;
      task.aspectSource = 'default';
    }
  },
  /** One result image plus the origin image (originImageUrl, valid for 10 minutes at Kie). */
  results(core, task, now) {
    task.results.push(registerResult(core, task, 0, now));
    task.origin = registerResult(core, task, 0, now, '_origin');
  },
  data,
  callbackBody,
};
