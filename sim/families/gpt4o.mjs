// GPT-4o image family: POST /api/v1/gpt4o-image/generate, GET /api/v1/gpt4o-image/record-info,
// POST /api/v1/gpt4o-image/download-url and the 4o callback (docs.kie.ai 4o-image-api/*).
//
// record-info `data`: paramJson (string), response.resultUrls (camelCase; null while running),
// successFlag 0 generating / 1 success / 2 failed, status GENERATING|SUCCESS|GENERATE_FAILED,
// errorCode an integer or null, progress a string "0.00".."1.00".
// Callback: {code, msg, data:{taskId, info:{result_urls}}} with snake_case result_urls; on failure
// `info` is null and `code` is 400 (content policy), 451 (input not downloadable) or 500.

import { MB, UPSTREAM_TIMEOUT_MSG } from '../core/constants.mjs';
import { baseUrl, stepDelay, terminal } from '../core/context.mjs';
import { authOk, bizErr, createGate, creditsGate, ok, parseJson, recordLookup, unauthorized, validateCallBackUrl, validateUrlList } from '../core/api.mjs';
import { createTask, priceFor, registerResult } from '../core/tasks.mjs';
import { presignedLink, tempfileKey } from '../core/tempfile.mjs';
import { isHttpUrl, isPlainObject } from '../core/util.mjs';

const FOUR_O_SIZES = ['1:1', '3:2', '2:3'];

export const MSG = {
  fourOContentPolicy: 'Your content was flagged by OpenAI as violating content policies',
  fourOUnreachable: 'Failed to fetch the image. Kindly verify any access limits set by you or your service provider.',
  fourOInternal: 'Internal Error',
};

/** errorCode is an integer on 4o. */
const FAILURES = {
  media: [451, MSG.fourOUnreachable],
  content_policy: [400, MSG.fourOContentPolicy],
  internal: [500, MSG.fourOInternal],
  upstream_timeout: [500, UPSTREAM_TIMEOUT_MSG],
};

/**
 * POST /api/v1/gpt4o-image/generate: `size` is required (1:1, 3:2, 2:3); prompt, filesUrl (at most 5) or
 * both; maskUrl is ignored with more than one image; nVariants 1, 2 or 4; fileUrl is the deprecated single form.
 */
function hCreate(core, ctx) {
  const gate = createGate(core, ctx);
  if (gate) return gate;
  const p = parseJson(ctx);
  if (p.error) return p.error;
  const body = p.value;
  if (!isPlainObject(body)) return bizErr(422, 'request body must be a JSON object');
  if (body.size === undefined || body.size === null || body.size === '') return bizErr(422, 'size is required');
  if (!FOUR_O_SIZES.includes(body.size)) return bizErr(422, `size must be one of: ${FOUR_O_SIZES.join(', ')}`);
  if (body.prompt !== undefined && body.prompt !== null && typeof body.prompt !== 'string') return bizErr(422, 'prompt must be a string');
  let files = [];
  if (body.filesUrl !== undefined && body.filesUrl !== null) {
    const err = validateUrlList(body.filesUrl, 'filesUrl', 5, false);
    if (err) return bizErr(422, err);
    files = body.filesUrl.slice();
  } else if (body.fileUrl !== undefined && body.fileUrl !== null && body.fileUrl !== '') {
    if (!isHttpUrl(body.fileUrl)) return bizErr(422, 'fileUrl must be a valid http(s) URL');
    files = [body.fileUrl];
  }
  if (!body.prompt && files.length === 0) return bizErr(422, 'prompt or filesUrl is required');
  if (body.maskUrl !== undefined && body.maskUrl !== null && body.maskUrl !== '') {
    if (!isHttpUrl(body.maskUrl)) return bizErr(422, 'maskUrl must be a valid http(s) URL');
    if (files.length <= 1) files.push(body.maskUrl);
  }
  let nVariants = 1;
  if (body.nVariants !== undefined && body.nVariants !== null) {
    if (![1, 2, 4].includes(body.nVariants)) return bizErr(422, 'nVariants must be one of: 1, 2, 4');
    nVariants = body.nVariants;
  }
  for (const b of ['isEnhance', 'uploadCn', 'enableFallback']) {
    if (body[b] !== undefined && body[b] !== null && typeof body[b] !== 'boolean') return bizErr(422, `${b} must be a boolean`);
  }
  if (body.fallbackModel !== undefined && body.fallbackModel !== null && !['GPT_IMAGE_1', 'FLUX_MAX'].includes(body.fallbackModel)) {
    return bizErr(422, 'fallbackModel must be one of: GPT_IMAGE_1, FLUX_MAX');
  }
  const cbErr = validateCallBackUrl(body.callBackUrl);
  if (cbErr) return bizErr(422, cbErr);
  const price = priceFor(core, 'gpt4o-image', { nVariants });
  const cg = creditsGate(core, price);
  if (cg) return cg;
  const task = createTask(core, {
    family: '4o',
    model: 'gpt4o-image',
    body,
    input: body,
    callBackUrl: body.callBackUrl,
    inputs: files,
    imageLimit: 25 * MB,
    format: 'png',
    aspect: body.size,
    aspectSource: 'request',
    resolution: '1K',
    nVariants,
    prompt: body.prompt,
  });
  ctx.taskId = task.id;
  return ok({ taskId: task.id });
}

/** progress is a string; it grows while generating and stays where it stopped on failure. */
function progressOf(core, task) {
  if (task.state === 'success') return '1.00';
  if (task.state === 'waiting') return '0.00';
  if (task.state === 'queuing') return '0.10';
  if (task.state === 'generating') {
    const d = stepDelay(core, task) || 1;
    const f = Math.min(1, (Date.now() - (task.generatingAt || Date.now())) / d);
    return (0.2 + 0.79 * f).toFixed(2);
  }
  const last = task.history.filter((h) => h.state !== 'fail').pop();
  return last?.state === 'generating' ? '0.99' : '0.00';
}

function data(core, task) {
  const st = task.state;
  return {
    taskId: task.id,
    paramJson: JSON.stringify(task.body),
    completeTime: terminal(st) ? task.completedAt : null,
    createTime: task.createdAt,
    response: st === 'success' ? { resultUrls: task.results.slice() } : null,
    successFlag: st === 'success' ? 1 : st === 'fail' ? 2 : 0,
    status: st === 'success' ? 'SUCCESS' : st === 'fail' ? 'GENERATE_FAILED' : 'GENERATING',
    errorCode: st === 'fail' ? task.errorCode : null,
    errorMessage: st === 'fail' ? task.failMsg : '',
    progress: progressOf(core, task),
  };
}

/** GET /api/v1/gpt4o-image/record-info */
function hRecord(core, ctx) {
  const r = recordLookup(core, ctx, '4o', 'record is null');
  return r.resp || ok(data(core, r.task));
}

/**
 * POST /api/v1/gpt4o-image/download-url: {taskId, url} → a pre-signed link valid for 20 min.
 * 422 messages as documented; 451 when the image cannot be fetched.
 */
function hDownload(core, ctx) {
  if (!authOk(core, ctx.req)) return unauthorized(core);
  const p = parseJson(ctx);
  if (p.error) return p.error;
  const { taskId, url: u } = p.value || {};
  if (!taskId) return bizErr(422, 'taskId is required');
  if (!u || typeof u !== 'string') return bizErr(422, 'url is required');
  const task = core.state.tasks.get(taskId);
  if (!task) return bizErr(422, 'record is null');
  if (Date.now() - task.createdAt > 14 * 24 * 3600 * 1000) return bizErr(422, 'Temporarily supports records within 14 days');
  if (task.state !== 'success') return bizErr(422, 'record status is not success');
  if (!task.results.length) return bizErr(422, 'record result data is empty');
  const key = tempfileKey(core, u);
  if (!key) return bizErr(451, 'Failed to fetch the image');
  return ok(presignedLink(core, key));
}

function callbackBody(core, task, override) {
  const st = override?.state ?? task.state;
  if (override?.stale) return { code: 200, msg: 'generating', data: { taskId: task.id, info: null } };
  if (st === 'success') {
    const urls = task.state === 'success' ? task.results : [`${baseUrl(core)}/tempfile/as/${task.id}_${Date.now()}.png`];
    return { code: 200, msg: 'success', data: { taskId: task.id, info: { result_urls: urls.slice() } } };
  }
  const code = task.state === 'fail' ? task.errorCode : 500;
  const msg = task.state === 'fail' ? task.failMsg : MSG.fourOInternal;
  return { code, msg, data: { taskId: task.id, info: null } };
}

export default {
  id: '4o',
  prices: {
    'gpt4o-image': { 1: 6, 2: 7, 4: 8 },
  },
  routes: [
    { method: 'POST', path: '/api/v1/gpt4o-image/generate', cls: 'create', handler: hCreate },
    { method: 'GET', path: '/api/v1/gpt4o-image/record-info', cls: 'record', handler: hRecord },
    { method: 'POST', path: '/api/v1/gpt4o-image/download-url', cls: 'download', handler: hDownload },
  ],
  failure(kind) {
    const [errorCode, failMsg] = FAILURES[kind] || FAILURES.internal;
    return { errorCode, failMsg, failCode: String(errorCode) };
  },
  /** nVariants result images. */
  results(core, task, now) {
    for (let i = 0; i < task.nVariants; i++) task.results.push(registerResult(core, task, i, now));
  },
  data,
  callbackBody,
};
