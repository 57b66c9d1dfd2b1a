// Kie AI simulator: an in-process / standalone HTTP server that behaves like api.kie.ai,
// the Kie upload host and the Kie tempfile CDN, following Kie's documented and observed behaviour (docs.kie.ai).
// Zero dependencies: node built-ins only.
//
//   import { startKieSim } from './sim/kie-sim.mjs';
//   const sim = await startKieSim({ port: 0, apiKey: 'sim-key', hmacKey: null, credits: 10000, stepMs: 150 });
//   sim.url; sim.state; await sim.close();
//
// CLI: node sim/kie-sim.mjs --port 8790 [--host 127.0.0.1] [--api-key KEY] [--hmac-key KEY] [--step-ms N]
//      [--credits N] [--public-url URL] [--quiet]

import http from 'node:http';
import https from 'node:https';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { pathToFileURL } from 'node:url';

// ---------------------------------------------------------------------------------------------
// Constants from the spec
// ---------------------------------------------------------------------------------------------

const MB = 1024 * 1024;
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

const FOUR_O_SIZES = ['1:1', '3:2', '2:3'];
const FLUX_ARS = ['21:9', '16:9', '4:3', '1:1', '3:4', '9:16'];
const FLUX_MODELS = ['flux-kontext-pro', 'flux-kontext-max'];

export const MSG = {
  mediaUnavailable: 'Your media file is unavailable, please replace it.',
  contentPolicy: 'Invalid prompt: prompt contains prohibited content',
  internal: 'Internal Error',
  upstreamTimeout: 'upstream API service timed out',
  fourOContentPolicy: 'Your content was flagged by OpenAI as violating content policies',
  fourOUnreachable: 'Failed to fetch the image. Kindly verify any access limits set by you or your service provider.',
  fourOInternal: 'Internal Error',
  fluxSuccess: 'BFL image generated successfully.',
  fluxContentPolicy: 'Your request was flagged by the content moderation system',
  fluxUnreachable: 'Failed to fetch the input image',
  fluxInternal: 'Internal Error',
  jobsCallbackSuccess: 'Playground task completed successfully.',
  jobsCallbackFail: 'Playground task failed.',
};

const CODE_MSG = {
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Insufficient credits',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Task timed out',
  422: 'Validation error',
  429: 'Too many requests',
  433: 'Sub-key usage exceeds its limit',
  455: 'Service is currently unavailable due to maintenance',
  500: 'Server Error - An unexpected error occurred while processing the request',
  501: 'Generation failed',
  505: 'The feature is disabled',
  550: 'Connection Denied',
};

const SIM_MARKERS = ['content_policy', 'internal', 'upstream_timeout', 'empty_result', 'not_image', 'missing_result', 'slow', 'never'];
const OUTBOUND_UA = 'KieAI-Webhook/1.0';
const FETCH_UA = 'Mozilla/5.0 (compatible; KieAI-Fetcher/1.0)';

function defaultConfig(opts = {}) {
  return {
    apiKey: opts.apiKey ?? 'sim-key',
    hmacKey: opts.hmacKey ?? null,
    stepMs: opts.stepMs ?? 150,
    latencyMs: opts.latencyMs ?? 0,
    credits: opts.credits ?? 10000,
    publicUrl: opts.publicUrl ?? null,
    callbacks: {
      duplicates: 0,
      delayMs: 0,
      drop: false,
      reorder: false,
      maxAttempts: 3,
      retryDelayMs: 1000,
      timeoutMs: 15000,
      userAgent: OUTBOUND_UA,
      ...(opts.callbacks || {}),
    },
    rateLimit: { max: 20, windowMs: 10000, enabled: true, ...(opts.rateLimit || {}) },
    rateLimitAsHttp429: opts.rateLimitAsHttp429 ?? false,
    authAsHttp401: opts.authAsHttp401 ?? false,
    userAgentCheck: opts.userAgentCheck ?? false,
    strictInputKeys: opts.strictInputKeys ?? false,
    doubleEncodeParamInput: opts.doubleEncodeParamInput ?? false,
    inputFetchTimeoutMs: opts.inputFetchTimeoutMs ?? 10000,
    uploadFetchTimeoutMs: opts.uploadFetchTimeoutMs ?? 30000,
    outcome: opts.outcome ?? null,
    prices: {
      'google/nano-banana': 4,
      'google/nano-banana-edit': 4,
      'nano-banana-pro': { '1K': 18, '2K': 18, '4K': 24 },
      'nano-banana-2': { '1K': 8, '2K': 12, '4K': 18 },
      'gpt4o-image': { 1: 6, 2: 7, 4: 8 },
      'flux-kontext-pro': 5,
      'flux-kontext-max': 10,
      ...(opts.prices || {}),
    },
  };
}

function newStats() {
  return {
    requests: 0,
    create: 0,
    record: 0,
    credit: 0,
    upload: 0,
    tempfile: 0,
    download: 0,
    callbacksSent: 0,
    faultsApplied: 0,
    rateLimited: 0,
    recordByTask: {},
  };
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/** base64(HMAC-SHA256(key, taskId + "." + timestamp)), as in Kie's webhook-verification docs. */
export function signWebhook(key, taskId, timestamp) {
  return crypto.createHmac('sha256', Buffer.from(String(key), 'utf8')).update(`${taskId}.${timestamp}`, 'utf8').digest('base64');
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf) {
  let crc = 0xffffffff;
  for (let i = 0; i < buf.length; i++) crc = CRC_TABLE[(crc ^ buf[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** Truecolour 8-bit PNG; pixel(x, y) -> [r, g, b]. */
export function makePng(width, height, pixel) {
  const row = width * 3 + 1;
  const raw = Buffer.alloc(row * height);
  for (let y = 0; y < height; y++) {
    raw[y * row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const [r, g, b] = pixel(x, y);
      const o = y * row + 1 + x * 3;
      raw[o] = r;
      raw[o + 1] = g;
      raw[o + 2] = b;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  ihdr[10] = 0;
  ihdr[11] = 0;
  ihdr[12] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * Baseline JPEG (YCbCr 4:4:4, 8x8 blocks of flat colour, DC-only coefficients).
 * width and height are rounded up to multiples of 8; block(bx, by) -> [r, g, b].
 */
export function makeJpeg(width, height, block) {
  const bw = Math.ceil(width / 8);
  const bh = Math.ceil(height / 8);
  const W = bw * 8;
  const H = bh * 8;
  const u16 = (n) => [(n >> 8) & 0xff, n & 0xff];
  const parts = [];
  parts.push(Buffer.from([0xff, 0xd8])); // SOI
  parts.push(Buffer.from([0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00])); // APP0 JFIF
  parts.push(Buffer.from([0xff, 0xdb, 0x00, 0x43, 0x00, ...new Array(64).fill(1)])); // DQT: all ones
  parts.push(Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, ...u16(H), ...u16(W), 0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00])); // SOF0
  const dcBits = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
  const dcVals = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  parts.push(Buffer.from([0xff, 0xc4, ...u16(2 + 1 + 16 + dcVals.length), 0x00, ...dcBits, ...dcVals]));
  const acBits = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  parts.push(Buffer.from([0xff, 0xc4, ...u16(2 + 1 + 16 + 1), 0x10, ...acBits, 0x00])); // AC table: EOB only, code "0"
  parts.push(Buffer.from([0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x3f, 0x00])); // SOS

  // canonical Huffman codes for the DC table
  const dcCode = [];
  {
    let c = 0;
    let idx = 0;
    for (let len = 1; len <= 16; len++) {
      for (let i = 0; i < dcBits[len - 1]; i++) {
        dcCode[dcVals[idx++]] = { code: c, len };
        c++;
      }
      c <<= 1;
    }
  }

  const out = [];
  let acc = 0;
  let nbits = 0;
  const put = (value, len) => {
    for (let i = len - 1; i >= 0; i--) {
      acc = (acc << 1) | ((value >> i) & 1);
      nbits++;
      if (nbits === 8) {
        out.push(acc);
        if (acc === 0xff) out.push(0x00);
        acc = 0;
        nbits = 0;
      }
    }
  };
  const pred = [0, 0, 0];
  for (let by = 0; by < bh; by++) {
    for (let bx = 0; bx < bw; bx++) {
      const [r, g, b] = block(bx, by);
      const ycc = [
        0.299 * r + 0.587 * g + 0.114 * b,
        -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
        0.5 * r - 0.418688 * g - 0.081312 * b + 128,
      ];
      for (let c = 0; c < 3; c++) {
        const dc = Math.max(-1024, Math.min(1016, Math.round(8 * (ycc[c] - 128))));
        const diff = dc - pred[c];
        pred[c] = dc;
        const mag = Math.abs(diff);
        const cat = mag === 0 ? 0 : 32 - Math.clz32(mag);
        put(dcCode[cat].code, dcCode[cat].len);
        if (cat > 0) put(diff < 0 ? diff + (1 << cat) - 1 : diff, cat);
        put(0, 1); // EOB
      }
    }
  }
  if (nbits > 0) put((1 << (8 - nbits)) - 1, 8 - nbits);
  parts.push(Buffer.from(out));
  parts.push(Buffer.from([0xff, 0xd9])); // EOI
  return Buffer.concat(parts);
}

export function sniffImage(buf) {
  if (!buf || buf.length < 4) return null;
  if (buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) return 'jpeg';
  if (buf.length >= 8 && buf.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  if (buf.length >= 12 && buf.toString('latin1', 0, 4) === 'RIFF' && buf.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  return null;
}

const MIME_BY_EXT = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  jfif: 'image/jpeg',
  pjpeg: 'image/jpeg',
  pjp: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  svg: 'image/svg+xml',
  txt: 'text/plain',
  json: 'application/json',
  html: 'text/html',
  pdf: 'application/pdf',
  mp4: 'video/mp4',
  mp3: 'audio/mpeg',
};

function mimeFromName(name) {
  const m = /\.([A-Za-z0-9]+)$/.exec(name || '');
  return (m && MIME_BY_EXT[m[1].toLowerCase()]) || 'application/octet-stream';
}

function dimsFor(aspect, resolution) {
  const scale = { '1K': 1, '2K': 2, '4K': 4 }[resolution] || 1;
  const long = 64 * scale;
  let w = 1;
  let h = 1;
  const m = /^(\d+):(\d+)$/.exec(aspect || '');
  if (m) {
    w = Number(m[1]);
    h = Number(m[2]);
  }
  if (w >= h) return [long, Math.max(8, Math.round((long * h) / w / 8) * 8)];
  return [Math.max(8, Math.round((long * w) / h / 8) * 8), long];
}

function colourSeed(taskId, index) {
  const h = crypto.createHash('sha256').update(`${taskId}:${index}`).digest();
  return [h[0], h[1], h[2]];
}

function renderImage(file) {
  const [w, h] = dimsFor(file.aspect, file.resolution);
  const [r0, g0, b0] = colourSeed(file.taskId, file.index);
  const px = (x, y) => [(r0 + Math.floor((x * 160) / w)) & 0xff, (g0 + Math.floor((y * 160) / h)) & 0xff, b0];
  if (file.format === 'png') return makePng(w, h, px);
  return makeJpeg(w, h, (bx, by) => px(bx * 8 + 4, by * 8 + 4));
}

function isHttpUrl(s) {
  if (typeof s !== 'string' || !s) return false;
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function deepMerge(target, patch) {
  for (const [k, v] of Object.entries(patch || {})) {
    if (isPlainObject(v) && isPlainObject(target[k])) deepMerge(target[k], v);
    else target[k] = v;
  }
  return target;
}

function newTaskId() {
  return crypto.randomBytes(16).toString('hex');
}

function parseMarkers(prompt) {
  const found = new Set();
  if (typeof prompt !== 'string') return found;
  const re = /\[sim:([a-z_]+)\]/g;
  let m;
  while ((m = re.exec(prompt))) if (SIM_MARKERS.includes(m[1])) found.add(m[1]);
  return found;
}

function envelope(code, msg, data = null) {
  return { code, msg: msg ?? CODE_MSG[code] ?? 'Error', data };
}

/**
 * Plain http(s) request with an overall deadline, optional redirects and a byte cap.
 * Resolves { status, headers, body, url, redirects, truncated }; rejects on network error / timeout.
 */
function httpRequest({ method = 'GET', url, headers = {}, body = null, timeoutMs = 10000, maxRedirects = 0, maxBytes = 64 * MB, track }) {
  return new Promise((resolve, reject) => {
    let redirects = 0;
    let done = false;
    let current = null;
    const finish = (err, val) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (track) track.delete(handle);
      if (err) reject(err);
      else resolve(val);
    };
    const handle = {
      abort: (why) => {
        if (current) current.destroy();
        finish(new Error(why || 'aborted'));
      },
    };
    if (track) track.add(handle);
    const timer = setTimeout(() => handle.abort('timeout'), timeoutMs);
    const go = (target, m, b) => {
      let u;
      try {
        u = new URL(target);
      } catch {
        return finish(new Error(`invalid URL: ${target}`));
      }
      const lib = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null;
      if (!lib) return finish(new Error(`unsupported protocol ${u.protocol}`));
      const h = { ...headers };
      if (b) h['Content-Length'] = Buffer.byteLength(b);
      const req = lib.request(u, { method: m, headers: h, agent: false }, (res) => {
        const status = res.statusCode;
        if ([301, 302, 303, 307, 308].includes(status) && res.headers.location && redirects < maxRedirects) {
          res.resume();
          redirects++;
          const next = new URL(res.headers.location, u).href;
          const keep = status === 307 || status === 308;
          return go(next, keep ? m : 'GET', keep ? b : null);
        }
        const chunks = [];
        let size = 0;
        let truncated = false;
        res.on('data', (c) => {
          if (truncated) return;
          size += c.length;
          if (size > maxBytes) {
            truncated = true;
            chunks.push(c.subarray(0, Math.max(0, c.length - (size - maxBytes))));
            res.destroy();
            finish(null, { status, headers: res.headers, body: Buffer.concat(chunks), url: u.href, redirects, truncated: true });
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => finish(null, { status, headers: res.headers, body: Buffer.concat(chunks), url: u.href, redirects, truncated }));
        res.on('error', (e) => finish(e));
        res.on('aborted', () => finish(new Error('response aborted')));
      });
      current = req;
      req.on('error', (e) => finish(e));
      if (b) req.write(b);
      req.end();
    };
    go(url, method, body);
  });
}

function parseMultipart(buf, contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType || '');
  if (!m) return null;
  const boundary = Buffer.from(`--${(m[1] || m[2]).trim()}`);
  const parts = [];
  let pos = buf.indexOf(boundary);
  if (pos < 0) return null;
  while (pos >= 0) {
    pos += boundary.length;
    if (buf[pos] === 0x2d && buf[pos + 1] === 0x2d) break; // closing "--"
    if (buf[pos] === 0x0d && buf[pos + 1] === 0x0a) pos += 2;
    const headEnd = buf.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) break;
    const head = buf.toString('utf8', pos, headEnd);
    const next = buf.indexOf(boundary, headEnd + 4);
    if (next < 0) break;
    let end = next;
    if (buf[end - 2] === 0x0d && buf[end - 1] === 0x0a) end -= 2;
    const data = buf.subarray(headEnd + 4, end);
    const headers = {};
    for (const line of head.split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const cd = headers['content-disposition'] || '';
    const name = /\bname="([^"]*)"/i.exec(cd)?.[1] ?? null;
    const filename = /\bfilename="([^"]*)"/i.exec(cd)?.[1] ?? null;
    parts.push({ name, filename, contentType: headers['content-type'] || null, data });
    pos = next;
  }
  return parts;
}

// ---------------------------------------------------------------------------------------------
// The simulator
// ---------------------------------------------------------------------------------------------

export async function startKieSim(opts = {}) {
  const host = opts.host ?? '127.0.0.1';
  const startOpts = { ...opts };
  const logFn = typeof opts.log === 'function' ? opts.log : opts.log ? (o) => process.stdout.write(`${JSON.stringify(o)}\n`) : null;
  const linkSecret = crypto.randomBytes(16);

  const state = {
    config: defaultConfig(startOpts),
    credits: 0,
    tasks: new Map(),
    files: new Map(), // tempfile path (after /tempfile/) -> descriptor
    faults: [],
    callbacks: [], // delivery log
    stats: newStats(),
    createTimes: [], // accepted creates (rate-limit window)
    epoch: 0,
  };
  state.credits = state.config.credits;

  const timers = new Set();
  const outbound = new Set();
  const hanging = new Set();
  let closed = false;
  let faultSeq = 0;

  const later = (ms, fn) => {
    if (closed) return null;
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, Math.max(0, ms));
    timers.add(t);
    return t;
  };
  const sleep = (ms) => new Promise((r) => (ms > 0 ? later(ms, r) || r() : r()));

  const baseUrl = () => state.config.publicUrl || sim.url;
  const log = (o) => {
    if (logFn) logFn({ time: new Date().toISOString(), ...o });
  };

  // ---------------- tasks ----------------

  function priceFor(family, model, opts2) {
    const p = state.config.prices;
    let v;
    if (family === '4o') v = p['gpt4o-image'];
    else v = p[model];
    if (isPlainObject(v)) v = v[opts2.resolution ?? opts2.nVariants ?? '1K'] ?? Object.values(v)[0];
    return typeof v === 'number' ? v : 0;
  }

  function createTask({ family, model, body, input, callBackUrl, inputs, imageLimit, format, aspect, resolution, nVariants, prompt }) {
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
    task.price = priceFor(family, model, { resolution, nVariants });
    state.tasks.set(task.id, task);
    state.credits -= task.price;
    state.createTimes.push(now);
    scheduleStep(task);
    return task;
  }

  const alive = (task) => !closed && task.epoch === state.epoch;
  const stepDelay = (task) => (Number(state.config.stepMs) || 0) * (task.markers.has('slow') ? 10 : 1);

  function setState(task, s) {
    const now = Date.now();
    task.state = s;
    task.updatedAt = now;
    task.history.push({ state: s, at: now });
  }

  function scheduleStep(task) {
    later(stepDelay(task), () => {
      if (!alive(task)) return;
      if (task.state === 'waiting') {
        setState(task, 'queuing');
        scheduleStep(task);
      } else if (task.state === 'queuing') {
        setState(task, 'generating');
        task.generatingAt = Date.now();
        const fetching = fetchInputs(task);
        const minTime = sleep(stepDelay(task));
        Promise.all([fetching, minTime]).then(() => {
          if (!alive(task) || task.markers.has('never')) return;
          finish(task);
        });
      }
    });
  }

  async function fetchInputs(task) {
    const urls = task.inputs || [];
    task.inputsFetched = await Promise.all(urls.map((u) => fetchInput(u, task.imageLimit)));
  }

  async function fetchInput(url, maxBytes) {
    const t0 = Date.now();
    const rec = { url, finalUrl: url, status: null, contentType: null, bytes: 0, kind: null, ok: false, error: null, redirects: 0, ms: 0 };
    try {
      const r = await httpRequest({
        url,
        headers: { 'User-Agent': FETCH_UA, Accept: 'image/avif,image/webp,image/png,image/jpeg,*/*' },
        timeoutMs: state.config.inputFetchTimeoutMs,
        maxRedirects: 5,
        maxBytes: (maxBytes || 30 * MB) + 1,
        track: outbound,
      });
      rec.status = r.status;
      rec.contentType = r.headers['content-type'] ?? null;
      rec.bytes = r.body.length;
      rec.kind = sniffImage(r.body);
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

  function registerResult(task, index, ts, suffix = '') {
    const ext = task.format;
    const name = `as/${task.id}_${ts + index}${suffix}.${ext}`;
    const mode = task.markers.has('not_image') ? 'not_image' : task.markers.has('missing_result') ? 'missing' : 'ok';
    if (mode !== 'missing') {
      state.files.set(name, {
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
    return `${baseUrl()}/tempfile/${name}`;
  }

  function finish(task) {
    const now = Date.now();
    const badInput = task.inputsFetched.find((r) => !r.ok);
    let fail = null;
    if (badInput) fail = 'media';
    else if (task.markers.has('content_policy')) fail = 'content_policy';
    else if (task.markers.has('internal')) fail = 'internal';
    else if (task.markers.has('upstream_timeout')) fail = 'upstream_timeout';
    task.completedAt = now;
    if (fail) {
      applyFailure(task, fail);
      state.credits += task.price;
      task.creditsConsumed = 0;
      setState(task, 'fail');
    } else {
      if (!task.markers.has('empty_result')) {
        const n = task.family === '4o' ? task.nVariants : 1;
        for (let i = 0; i < n; i++) task.results.push(registerResult(task, i, now));
        if (task.family === 'flux') task.origin = registerResult(task, 0, now, '_origin');
      }
      task.creditsConsumed = task.price;
      setState(task, 'success');
    }
    deliverCallbacks(task);
  }

  function applyFailure(task, kind) {
    const table = {
      jobs: {
        media: ['422', MSG.mediaUnavailable],
        content_policy: ['422', MSG.contentPolicy],
        internal: ['500', MSG.internal],
        upstream_timeout: ['500', MSG.upstreamTimeout],
      },
      '4o': {
        media: [451, MSG.fourOUnreachable],
        content_policy: [400, MSG.fourOContentPolicy],
        internal: [500, MSG.fourOInternal],
        upstream_timeout: [500, MSG.upstreamTimeout],
      },
      flux: {
        media: [400, MSG.fluxUnreachable],
        content_policy: [400, MSG.fluxContentPolicy],
        internal: [500, MSG.fluxInternal],
        upstream_timeout: [500, MSG.upstreamTimeout],
      },
    };
    const [code, msg] = table[task.family][kind] || table[task.family].internal;
    if (task.family === 'jobs') {
      task.failCode = code;
      task.failMsg = msg;
    } else {
      task.errorCode = code;
      task.failMsg = msg;
      task.failCode = String(code);
    }
  }

  const terminal = (s) => s === 'success' || s === 'fail';

  // ---------------- record views ----------------

  function paramString(task) {
    const b = { ...task.body };
    if (state.config.doubleEncodeParamInput && isPlainObject(b.input)) b.input = JSON.stringify(b.input);
    return JSON.stringify(b);
  }

  function jobsData(task, override) {
    const st = override?.state ?? task.state;
    const results = override?.results ?? task.results;
    const done = terminal(st);
    const fail = st === 'fail';
    const completedAt = task.completedAt ?? (done ? Date.now() : null);
    return {
      taskId: task.id,
      model: task.model,
      state: st,
      param: paramString(task),
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

  function progressOf(task) {
    if (task.state === 'success') return '1.00';
    if (task.state === 'waiting') return '0.00';
    if (task.state === 'queuing') return '0.10';
    if (task.state === 'generating') {
      const d = stepDelay(task) || 1;
      const f = Math.min(1, (Date.now() - (task.generatingAt || Date.now())) / d);
      return (0.2 + 0.79 * f).toFixed(2);
    }
    const last = task.history.filter((h) => h.state !== 'fail').pop();
    return last?.state === 'generating' ? '0.99' : '0.00';
  }

  function fourOData(task) {
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
      progress: progressOf(task),
    };
  }

  function fluxData(task) {
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

  // ---------------- callbacks ----------------

  function callbackBody(task, override) {
    const st = override?.state ?? task.state;
    if (task.family === 'jobs') {
      if (override?.stale) {
        const d = jobsData(task, { state: 'generating' });
        return { code: 200, msg: 'success', data: d };
      }
      let results = task.results;
      if (st === 'success' && !results.length && task.state !== 'success') results = [`${baseUrl()}/tempfile/as/${task.id}_${Date.now()}.${task.format}`];
      const fo = st === 'fail' && task.state !== 'fail' ? { failCode: '500', failMsg: MSG.internal } : {};
      const data = jobsData(task, { state: st, results, ...fo });
      return st === 'success'
        ? { code: 200, msg: MSG.jobsCallbackSuccess, data }
        : { code: 501, msg: MSG.jobsCallbackFail, data };
    }
    if (task.family === '4o') {
      if (override?.stale) return { code: 200, msg: 'generating', data: { taskId: task.id, info: null } };
      if (st === 'success') {
        const urls = task.state === 'success' ? task.results : [`${baseUrl()}/tempfile/as/${task.id}_${Date.now()}.png`];
        return { code: 200, msg: 'success', data: { taskId: task.id, info: { result_urls: urls.slice() } } };
      }
      const code = task.state === 'fail' ? task.errorCode : 500;
      const msg = task.state === 'fail' ? task.failMsg : MSG.fourOInternal;
      return { code, msg, data: { taskId: task.id, info: null } };
    }
    // flux
    if (override?.stale) return { code: 200, msg: 'generating', data: { taskId: task.id, info: { originImageUrl: '', resultImageUrl: '' } } };
    if (st === 'success') {
      const res = task.state === 'success' ? task.results[0] ?? '' : `${baseUrl()}/tempfile/as/${task.id}_${Date.now()}.${task.format}`;
      const origin = task.state === 'success' ? task.origin ?? '' : res;
      return { code: 200, msg: MSG.fluxSuccess, data: { taskId: task.id, info: { originImageUrl: origin, resultImageUrl: res } } };
    }
    const code = task.state === 'fail' ? task.errorCode : 500;
    const msg = task.state === 'fail' ? task.failMsg : MSG.fluxInternal;
    return { code, msg, data: { taskId: task.id, info: { originImageUrl: '', resultImageUrl: '' } } };
  }

  async function postCallback(task, url, body, kind, attempt, extra = {}) {
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
      const r = await httpRequest({ method: 'POST', url, headers, body: payload, timeoutMs: cfg.timeoutMs, maxBytes: 64 * 1024, track: outbound });
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

  async function deliverWithRetries(task, url, body, kind) {
    const cfg = state.config.callbacks;
    const max = Math.max(1, Number(cfg.maxAttempts) || 1);
    let last = null;
    for (let attempt = 1; attempt <= max; attempt++) {
      if (!alive(task)) return last;
      last = await postCallback(task, url, body, kind, attempt);
      if (last.ok) return last;
      if (attempt < max) await sleep(cfg.retryDelayMs);
    }
    return last;
  }

  async function deliverCallbacks(task) {
    if (!task.callBackUrl) return;
    const cfg = state.config.callbacks;
    if (cfg.drop) {
      const entry = { taskId: task.id, family: task.family, url: task.callBackUrl, kind: 'dropped', attempt: 0, status: null, ok: false, ms: 0, error: 'dropped by config', at: Date.now() };
      state.callbacks.push(entry);
      task.callbacks.push(entry);
      return;
    }
    if (cfg.delayMs > 0) await sleep(cfg.delayMs);
    if (!alive(task)) return;
    const body = callbackBody(task);
    await deliverWithRetries(task, task.callBackUrl, body, 'primary');
    const dups = Math.max(0, Number(cfg.duplicates) || 0);
    for (let i = 0; i < dups && alive(task); i++) await postCallback(task, task.callBackUrl, body, 'duplicate', 1);
    if (cfg.reorder && alive(task)) await postCallback(task, task.callBackUrl, callbackBody(task, { stale: true }), 'stale', 1);
  }

  // ---------------- rate limit / faults ----------------

  function rateLimited() {
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

  function takeFault(cls, path) {
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

  function addFault(rule) {
    const kind = String(rule.kind || '');
    if (!/^(code|http)_\d{3}$/.test(kind) && !['http_403_1010', 'timeout', 'garbage', 'reset'].includes(kind)) {
      throw new Error(`unknown fault kind: ${kind}`);
    }
    const endpoint = rule.endpoint || '*';
    if (!['create', 'record', 'credit', 'upload', 'tempfile', 'download', '*'].includes(endpoint)) throw new Error(`unknown fault endpoint: ${endpoint}`);
    const f = {
      id: ++faultSeq,
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
    state.faults.push(f);
    return f;
  }

  function faultResponse(f, cls) {
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

  // ---------------- API handlers ----------------

  function authOk(req) {
    const h = req.headers.authorization || '';
    const m = /^Bearer\s+(.+)$/i.exec(h.trim());
    return !!m && m[1].trim() === String(state.config.apiKey);
  }
  const unauthorized = () => ({ status: state.config.authAsHttp401 ? 401 : 200, body: envelope(401, 'Unauthorized') });
  const ok = (data) => ({ status: 200, body: envelope(200, 'success', data) });
  const bizErr = (code, msg) => ({ status: 200, body: envelope(code, msg) });

  function parseJson(ctx) {
    if (!ctx.raw.length) return { value: {} };
    try {
      return { value: JSON.parse(ctx.raw.toString('utf8')) };
    } catch {
      return { error: bizErr(400, 'Invalid JSON body') };
    }
  }

  function createGate(ctx) {
    if (!authOk(ctx.req)) return unauthorized();
    const rl = rateLimited();
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

  function creditsGate(price) {
    return state.credits < price ? bizErr(402, 'Insufficient credits') : null;
  }

  function validateUrlList(list, field, max, required) {
    if (list === undefined || list === null) return required ? `${field} is required` : null;
    if (!Array.isArray(list)) return `${field} must be an array of URLs`;
    if (required && list.length === 0) return `${field} must contain at least 1 item`;
    if (list.length > max) return `${field} must contain at most ${max} items`;
    for (let i = 0; i < list.length; i++) {
      if (!isHttpUrl(list[i])) return `${field}[${i}] must be a valid http(s) URL`;
    }
    return null;
  }

  function validateCallBackUrl(v) {
    if (v === undefined || v === null || v === '') return null;
    return isHttpUrl(v) ? null : 'callBackUrl must be a valid http(s) URL';
  }

  function hCreateJobs(ctx) {
    const gate = createGate(ctx);
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
    if (state.config.strictInputKeys) {
      const known = new Set(['prompt', 'output_format', ...spec.sizeFields, ...spec.bools]);
      if (spec.images) known.add(spec.images.field);
      if (spec.resolution) known.add('resolution');
      const unknown = Object.keys(input).filter((k) => !known.has(k));
      if (unknown.length) return bizErr(422, `unsupported input field: ${unknown[0]}`);
    }
    const price = priceFor('jobs', body.model, { resolution });
    const cg = creditsGate(price);
    if (cg) return cg;
    const task = createTask({
      family: 'jobs',
      model: body.model,
      body,
      input,
      callBackUrl: body.callBackUrl,
      inputs: images,
      imageLimit: spec.images?.maxBytes,
      format,
      aspect,
      resolution,
      prompt: input.prompt,
    });
    ctx.taskId = task.id;
    return ok({ taskId: task.id });
  }

  function hCreate4o(ctx) {
    const gate = createGate(ctx);
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
    const price = priceFor('4o', 'gpt4o-image', { nVariants });
    const cg = creditsGate(price);
    if (cg) return cg;
    const task = createTask({
      family: '4o',
      model: 'gpt4o-image',
      body,
      input: body,
      callBackUrl: body.callBackUrl,
      inputs: files,
      imageLimit: 25 * MB,
      format: 'png',
      aspect: body.size,
      resolution: '1K',
      nVariants,
      prompt: body.prompt,
    });
    ctx.taskId = task.id;
    return ok({ taskId: task.id });
  }

  function hCreateFlux(ctx) {
    const gate = createGate(ctx);
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
    const aspect = body.aspectRatio ?? '16:9';
    if (!FLUX_ARS.includes(aspect)) return bizErr(422, `aspectRatio must be one of: ${FLUX_ARS.join(', ')}`);
    const format = body.outputFormat ?? 'jpeg';
    if (!['jpeg', 'png'].includes(format)) return bizErr(422, 'outputFormat must be one of: jpeg, png');
    const model = body.model ?? 'flux-kontext-pro';
    if (!FLUX_MODELS.includes(model)) return bizErr(422, `model must be one of: ${FLUX_MODELS.join(', ')}`);
    for (const b of ['promptUpsampling', 'enableTranslation', 'uploadCn']) {
      if (body[b] !== undefined && body[b] !== null && typeof body[b] !== 'boolean') return bizErr(422, `${b} must be a boolean`);
    }
    const cbErr = validateCallBackUrl(body.callBackUrl);
    if (cbErr) return bizErr(422, cbErr);
    const price = priceFor('flux', model, {});
    const cg = creditsGate(price);
    if (cg) return cg;
    const task = createTask({
      family: 'flux',
      model,
      body,
      input: body,
      callBackUrl: body.callBackUrl,
      inputs,
      imageLimit: 30 * MB,
      format,
      aspect,
      resolution: '1K',
      prompt: body.prompt,
    });
    ctx.taskId = task.id;
    return ok({ taskId: task.id });
  }

  function recordLookup(ctx, family) {
    if (!authOk(ctx.req)) return { resp: unauthorized() };
    const id = ctx.url.searchParams.get('taskId');
    if (!id) return { resp: bizErr(400, 'taskId parameter is required') };
    ctx.taskId = id;
    state.stats.recordByTask[id] = (state.stats.recordByTask[id] || 0) + 1;
    const task = state.tasks.get(id);
    if (task) task.recordCalls++;
    if (!task || task.family !== family) return { resp: family === 'jobs' ? bizErr(422, 'recordInfo is null') : bizErr(422, 'record is null') };
    return { task };
  }

  function hRecordJobs(ctx) {
    const r = recordLookup(ctx, 'jobs');
    return r.resp || ok(jobsData(r.task));
  }
  function hRecord4o(ctx) {
    const r = recordLookup(ctx, '4o');
    return r.resp || ok(fourOData(r.task));
  }
  function hRecordFlux(ctx) {
    const r = recordLookup(ctx, 'flux');
    return r.resp || ok(fluxData(r.task));
  }

  function hCredit(ctx) {
    if (!authOk(ctx.req)) return unauthorized();
    return ok(state.credits);
  }

  function tempfileKey(u) {
    let parsed;
    try {
      parsed = new URL(u);
    } catch {
      return null;
    }
    if (!parsed.pathname.startsWith('/tempfile/')) return null;
    const key = decodeURIComponent(parsed.pathname.slice('/tempfile/'.length));
    return state.files.has(key) ? key : null;
  }

  function signLink(key, expires) {
    return crypto.createHmac('sha256', linkSecret).update(`${key}|${expires}`).digest('hex');
  }

  function hCommonDownload(ctx) {
    if (!authOk(ctx.req)) return unauthorized();
    const p = parseJson(ctx);
    if (p.error) return p.error;
    const u = p.value?.url;
    if (!u || typeof u !== 'string') return bizErr(422, 'url is required');
    const key = tempfileKey(u);
    if (!key) return bizErr(422, 'Only urls generated by kie.ai are supported');
    const expires = Date.now() + 20 * 60 * 1000;
    return ok(`${baseUrl()}/tempfile/${key}?expires=${expires}&sig=${signLink(key, expires)}`);
  }

  function h4oDownload(ctx) {
    if (!authOk(ctx.req)) return unauthorized();
    const p = parseJson(ctx);
    if (p.error) return p.error;
    const { taskId, url: u } = p.value || {};
    if (!taskId) return bizErr(422, 'taskId is required');
    if (!u || typeof u !== 'string') return bizErr(422, 'url is required');
    const task = state.tasks.get(taskId);
    if (!task) return bizErr(422, 'record is null');
    if (Date.now() - task.createdAt > 14 * 24 * 3600 * 1000) return bizErr(422, 'Temporarily supports records within 14 days');
    if (task.state !== 'success') return bizErr(422, 'record status is not success');
    if (!task.results.length) return bizErr(422, 'record result data is empty');
    const key = tempfileKey(u);
    if (!key) return bizErr(451, 'Failed to fetch the image');
    const now = new Date();
    const amzDate = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const expires = 1200;
    const sig = signLink(key, `${amzDate}|${expires}`);
    return ok(
      `${baseUrl()}/tempfile/${key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=sim%2F${amzDate.slice(0, 8)}%2Fauto%2Fs3%2Faws4_request&X-Amz-Date=${amzDate}&X-Amz-Expires=${expires}&X-Amz-SignedHeaders=host&X-Amz-Signature=${sig}`,
    );
  }

  // ---------------- uploads ----------------

  const upOk = (data) => ({ status: 200, body: { success: true, code: 200, msg: 'File uploaded successfully', data } });
  const upErr = (code, msg) => ({ status: 200, body: { success: false, code, msg } });

  function checkUploadPath(p) {
    if (p === undefined || p === null || p === '') return 'Missing required parameter: uploadPath';
    if (typeof p !== 'string') return 'Invalid parameter: uploadPath';
    if (p.startsWith('/') || p.endsWith('/')) return 'Invalid parameter: uploadPath must not start or end with /';
    if (p.split('/').some((s) => s === '..' || s === '.')) return 'Invalid parameter: uploadPath';
    return null;
  }

  function storeUpload(bytes, uploadPath, fileName) {
    let name = fileName;
    if (!name) {
      const kind = sniffImage(bytes);
      const ext = kind === 'jpeg' ? 'jpg' : kind || 'bin';
      name = `${crypto.randomBytes(8).toString('hex')}.${ext}`;
    }
    name = String(name).replace(/[/\\]/g, '_');
    const filePath = `${uploadPath}/${name}`;
    const key = `kieai/${filePath}`;
    const mimeType = mimeFromName(name);
    const now = new Date();
    state.files.set(key, { kind: 'upload', bytes, contentType: mimeType, createdAt: now.getTime(), mode: 'ok' });
    const url = `${baseUrl()}/tempfile/${key.split('/').map(encodeURIComponent).join('/')}`;
    return upOk({
      fileId: crypto.createHash('sha1').update(key).digest('hex').slice(0, 24),
      fileName: name,
      filePath,
      downloadUrl: url,
      fileUrl: url,
      fileSize: bytes.length,
      mimeType,
      uploadedAt: now.toISOString(),
      uploadTime: now.toISOString(),
      expiresAt: new Date(now.getTime() + 3 * 24 * 3600 * 1000).toISOString(),
    });
  }

  function uploadAuth(ctx) {
    if (authOk(ctx.req)) return null;
    return { status: state.config.authAsHttp401 ? 401 : 200, body: { success: false, code: 401, msg: 'Authentication failed: Invalid API Key' } };
  }

  function hUploadStream(ctx) {
    const a = uploadAuth(ctx);
    if (a) return a;
    const parts = parseMultipart(ctx.raw, ctx.req.headers['content-type']);
    if (!parts) return upErr(400, 'Invalid multipart/form-data request');
    const field = (n) => parts.find((p) => p.name === n);
    const file = field('file');
    if (!file) return upErr(400, 'Missing required parameter: file');
    const uploadPath = field('uploadPath')?.data.toString('utf8');
    const err = checkUploadPath(uploadPath);
    if (err) return upErr(400, err);
    const fileName = field('fileName')?.data.toString('utf8') || null;
    return storeUpload(Buffer.from(file.data), uploadPath, fileName);
  }

  function hUploadBase64(ctx) {
    const a = uploadAuth(ctx);
    if (a) return a;
    let body;
    try {
      body = JSON.parse(ctx.raw.toString('utf8') || '{}');
    } catch {
      return upErr(400, 'Invalid JSON body');
    }
    let data = body?.base64Data;
    if (data === undefined || data === null || data === '') return upErr(400, 'Missing required parameter: base64Data');
    if (typeof data !== 'string') return upErr(400, 'Base64 decoding failed: Invalid Base64 format');
    const err = checkUploadPath(body.uploadPath);
    if (err) return upErr(400, err);
    const dm = /^data:([^;,]*)(;[^,]*)?,/.exec(data);
    if (dm) data = data.slice(dm[0].length);
    data = data.replace(/\s+/g, '');
    if (!data || !/^[A-Za-z0-9+/]*={0,2}$/.test(data) || data.length % 4 === 1) return upErr(400, 'Base64 decoding failed: Invalid Base64 format');
    return storeUpload(Buffer.from(data, 'base64'), body.uploadPath, body.fileName || null);
  }

  async function hUploadUrl(ctx) {
    const a = uploadAuth(ctx);
    if (a) return a;
    let body;
    try {
      body = JSON.parse(ctx.raw.toString('utf8') || '{}');
    } catch {
      return upErr(400, 'Invalid JSON body');
    }
    if (!body?.fileUrl) return upErr(400, 'Missing required parameter: fileUrl');
    if (!isHttpUrl(body.fileUrl)) return upErr(400, 'Invalid parameter: fileUrl');
    const err = checkUploadPath(body.uploadPath);
    if (err) return upErr(400, err);
    let r;
    try {
      r = await httpRequest({ url: body.fileUrl, headers: { 'User-Agent': FETCH_UA }, timeoutMs: state.config.uploadFetchTimeoutMs, maxRedirects: 5, maxBytes: 100 * MB, track: outbound });
    } catch (e) {
      return upErr(500, `File download failed: ${e.message}`);
    }
    if (r.status < 200 || r.status >= 300) return upErr(500, `File download failed: HTTP ${r.status}`);
    let name = body.fileName;
    if (!name) {
      const last = new URL(r.url).pathname.split('/').pop();
      name = last && /\.[A-Za-z0-9]+$/.test(last) ? `${crypto.randomBytes(4).toString('hex')}_${last}` : null;
    }
    return storeUpload(r.body, body.uploadPath, name);
  }

  // ---------------- tempfile ----------------

  function hTempfile(ctx) {
    const key = decodeURIComponent(ctx.url.pathname.slice('/tempfile/'.length));
    const file = state.files.get(key);
    const notFound = { status: 404, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Not Found' };
    if (!file) return notFound;
    const q = ctx.url.searchParams;
    if (q.has('expires')) {
      const exp = Number(q.get('expires'));
      if (q.get('sig') !== signLink(key, q.get('expires')) || !(exp > Date.now())) {
        return { status: 403, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Request has expired' };
      }
    }
    if (q.has('X-Amz-Signature')) {
      const d = q.get('X-Amz-Date') || '';
      const exp = Number(q.get('X-Amz-Expires'));
      const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(d);
      const t = m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : NaN;
      const valid = q.get('X-Amz-Signature') === signLink(key, `${d}|${q.get('X-Amz-Expires')}`) && t + exp * 1000 > Date.now();
      if (!valid) {
        return { status: 403, headers: { 'Content-Type': 'application/xml' }, body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>' };
      }
    }
    if (file.mode === 'not_image') {
      return { status: 200, headers: { 'Content-Type': 'text/html; charset=utf-8' }, body: '<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>garbage &#0; not an image</body></html>' };
    }
    if (file.kind === 'result' && !file.bytes) file.bytes = renderImage(file);
    const contentType = file.kind === 'result' ? (file.format === 'png' ? 'image/png' : 'image/jpeg') : file.contentType;
    return {
      status: 200,
      headers: {
        'Content-Type': contentType,
        'Cache-Control': 'public, max-age=1209600',
        'Last-Modified': new Date(file.createdAt).toUTCString(),
        ETag: `"${crypto.createHash('md5').update(file.bytes).digest('hex')}"`,
        'Accept-Ranges': 'none',
      },
      body: file.bytes,
    };
  }

  // ---------------- routing ----------------

  const ROUTES = [
    ['POST', '/api/v1/jobs/createTask', 'create', hCreateJobs],
    ['GET', '/api/v1/jobs/recordInfo', 'record', hRecordJobs],
    ['POST', '/api/v1/gpt4o-image/generate', 'create', hCreate4o],
    ['GET', '/api/v1/gpt4o-image/record-info', 'record', hRecord4o],
    ['POST', '/api/v1/gpt4o-image/download-url', 'download', h4oDownload],
    ['POST', '/api/v1/flux/kontext/generate', 'create', hCreateFlux],
    ['GET', '/api/v1/flux/kontext/record-info', 'record', hRecordFlux],
    ['POST', '/api/v1/common/download-url', 'download', hCommonDownload],
    ['GET', '/api/v1/chat/credit', 'credit', hCredit],
    ['POST', '/api/file-stream-upload', 'upload', hUploadStream],
    ['POST', '/api/file-base64-upload', 'upload', hUploadBase64],
    ['POST', '/api/file-url-upload', 'upload', hUploadUrl],
  ];

  function matchRoute(method, path) {
    if (path.startsWith('/tempfile/')) {
      return method === 'GET' || method === 'HEAD' ? { cls: 'tempfile', handler: hTempfile } : { cls: 'tempfile', wrongMethod: true };
    }
    const hit = ROUTES.filter((r) => r[1] === path);
    if (!hit.length) return null;
    const m = hit.find((r) => r[0] === method);
    if (!m) return { cls: hit[0][2], wrongMethod: true, allow: hit.map((r) => r[0]).join(', ') };
    return { cls: m[2], handler: m[3] };
  }

  function send(res, req, { status = 200, headers = {}, body }) {
    if (res.writableEnded || res.destroyed) return;
    let buf;
    const h = { ...headers };
    if (Buffer.isBuffer(body)) buf = body;
    else if (typeof body === 'string') buf = Buffer.from(body, 'utf8');
    else {
      buf = Buffer.from(JSON.stringify(body ?? null), 'utf8');
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json;charset=UTF-8';
    }
    h['Content-Length'] = buf.length;
    res.writeHead(status, h);
    if (req.method === 'HEAD') res.end();
    else res.end(buf);
  }

  function readBody(req, limit = 120 * MB) {
    return new Promise((resolve, reject) => {
      const chunks = [];
      let size = 0;
      req.on('data', (c) => {
        size += c.length;
        if (size <= limit) chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  }

  function badUserAgent(ua) {
    if (!ua || !ua.trim()) return true;
    return /^(python-urllib|python-requests|go-http-client|java\/|okhttp|libwww-perl|wget|scrapy)/i.test(ua.trim());
  }

  async function handle(req, res) {
    const t0 = Date.now();
    const url = new URL(req.url, 'http://localhost');
    const path = url.pathname;
    const meta = { method: req.method, path: req.url, endpoint: null, fault: null, taskId: null };
    res.on('close', () => {
      log({ msg: 'request', ...meta, status: res.headersSent ? res.statusCode : null, ms: Date.now() - t0 });
    });
    let raw;
    try {
      raw = await readBody(req);
    } catch {
      return;
    }
    if (path.startsWith('/_sim/') || path === '/_sim') {
      meta.endpoint = 'control';
      return send(res, req, await control(req, url, raw));
    }
    state.stats.requests++;
    const route = matchRoute(req.method, path);
    if (!route) {
      meta.endpoint = 'unknown';
      return send(res, req, { status: 404, body: envelope(404, 'Not Found') });
    }
    meta.endpoint = route.cls;
    state.stats[route.cls] = (state.stats[route.cls] || 0) + 1;
    if (route.wrongMethod) return send(res, req, { status: 405, headers: { Allow: route.allow || 'GET, HEAD' }, body: envelope(405, `Request method '${req.method}' is not supported`) });
    if (state.config.userAgentCheck && badUserAgent(req.headers['user-agent'])) {
      meta.fault = 'ua_1010';
      return send(res, req, { status: 403, headers: { 'Content-Type': 'text/plain; charset=UTF-8' }, body: 'error code: 1010' });
    }
    if (route.cls !== 'tempfile' && state.config.latencyMs > 0) await sleep(state.config.latencyMs);
    if (closed) return res.destroy();
    const fault = takeFault(route.cls, path);
    const ctx = { req, url, raw, taskId: null };
    if (fault) {
      meta.fault = fault.kind;
      const passThrough = fault.createsTask && route.cls === 'create' && ['code_500', 'http_500', 'timeout'].includes(fault.kind);
      if (passThrough) {
        await route.handler(ctx);
        meta.taskId = ctx.taskId;
        if (ctx.taskId) state.tasks.get(ctx.taskId).answerLost = fault.kind;
      }
      if (fault.kind === 'reset') return req.socket.destroy();
      if (fault.kind === 'timeout') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      return send(res, req, faultResponse(fault, route.cls));
    }
    let out;
    try {
      out = await route.handler(ctx);
    } catch (e) {
      out = { status: 200, body: envelope(500) };
      log({ msg: 'handler error', error: String(e?.stack || e) });
    }
    meta.taskId = ctx.taskId;
    return send(res, req, out);
  }

  // ---------------- control API ----------------

  function taskView(t) {
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

  function publicConfig() {
    return JSON.parse(JSON.stringify(state.config));
  }

  function reset() {
    state.epoch++;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    for (const h of [...outbound]) h.abort('reset');
    state.config = defaultConfig(startOpts);
    state.credits = state.config.credits;
    state.tasks.clear();
    state.files.clear();
    state.faults = [];
    state.callbacks = [];
    state.stats = newStats();
    state.createTimes = [];
  }

  function configure(patch) {
    if (!isPlainObject(patch)) throw new Error('config must be an object');
    const { credits, ...rest } = patch;
    deepMerge(state.config, rest);
    if (credits !== undefined) {
      state.credits = Number(credits);
    }
    return publicConfig();
  }

  async function manualCallback(id, opts2 = {}) {
    const task = state.tasks.get(id);
    if (!task) return { status: 404, body: { error: 'task not found' } };
    const url = opts2.url || task.callBackUrl;
    if (!url) return { status: 400, body: { error: 'task has no callBackUrl; pass "url"' } };
    let body = opts2.body;
    if (!body) {
      const st = opts2.state || (terminal(task.state) ? task.state : null);
      if (!st) return { status: 400, body: { error: 'task is not terminal; pass "state" or "body"' } };
      if (!terminal(st)) return { status: 400, body: { error: 'state must be success or fail' } };
      body = callbackBody(task, { state: st });
    }
    const entry = await postCallback(task, url, body, 'manual', 1, { timestamp: opts2.timestamp, signature: opts2.signature, hmacKey: opts2.hmacKey, headers: opts2.headers });
    return { status: 200, body: { ok: entry.ok, status: entry.status, error: entry.error, ms: entry.ms, sent: body, delivery: entry } };
  }

  async function control(req, url, raw) {
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
        reset();
        return { status: 200, body: { ok: true } };
      }
      if (p === '/_sim/config' && m === 'POST') return { status: 200, body: { ok: true, config: configure(body), credits: state.credits } };
      if (p === '/_sim/config' && m === 'GET') return { status: 200, body: { config: publicConfig(), credits: state.credits } };
      if (p === '/_sim/faults' && m === 'POST') {
        const rules = Array.isArray(body) ? body : [body];
        const added = rules.map(addFault);
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
      if (mm && m === 'POST') return await manualCallback(mm[1], body);
      if (p === '/_sim/stats' && m === 'GET') return { status: 200, body: { ...state.stats, credits: state.credits, tasks: state.tasks.size } };
      if (p === '/_sim/callbacks' && m === 'GET') return { status: 200, body: state.callbacks };
      if (p === '/_sim/files' && m === 'GET') {
        return { status: 200, body: [...state.files.entries()].map(([k, f]) => ({ path: k, url: `${baseUrl()}/tempfile/${k}`, kind: f.kind, mode: f.mode, taskId: f.taskId ?? null })) };
      }
      return { status: 404, body: { error: 'unknown control endpoint' } };
    } catch (e) {
      return { status: 400, body: { error: e.message } };
    }
  }

  // ---------------- server ----------------

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      log({ msg: 'internal error', error: String(e?.stack || e) });
      try {
        if (!res.headersSent) send(res, req, { status: 500, body: envelope(500) });
      } catch {
        /* ignore */
      }
    });
  });
  // Idle connections are closed by the client, never under it: a server-side
  // idle close races with the client reusing the connection, which a busy
  // machine turns into "Network connection lost" on a call that was fine.
  server.keepAliveTimeout = 0;

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const urlHost = addr.family === 'IPv6' || host.includes(':') ? `[${addr.address}]` : host === '0.0.0.0' ? '127.0.0.1' : host;

  const sim = {
    url: `http://${urlHost}:${addr.port}`,
    port: addr.port,
    state,
    server,
    get config() {
      return state.config;
    },
    reset,
    configure,
    addFault,
    clearFaults() {
      state.faults = [];
    },
    getTask(id) {
      return state.tasks.get(id);
    },
    taskView(id) {
      const t = state.tasks.get(id);
      return t ? taskView(t) : null;
    },
    /** Resolve once the task is terminal and its callback deliveries (if any) have settled. */
    async waitForTask(id, { timeoutMs = 10000, callbacks = false } = {}) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const t = state.tasks.get(id);
        if (t && terminal(t.state) && (!callbacks || !t.callBackUrl || t.callbacks.length > 0)) return t;
        if (Date.now() > deadline) throw new Error(`task ${id} not terminal after ${timeoutMs} ms (state ${t?.state})`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    signWebhook,
    async close() {
      if (closed) return;
      closed = true;
      state.epoch++;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const h of [...outbound]) h.abort('closed');
      for (const r of hanging) r.destroy();
      hanging.clear();
      await new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
    },
  };
  return sim;
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const [k, inline] = a.slice(2).split(/=(.*)/s, 2);
    if (k === 'quiet') {
      out.quiet = true;
      continue;
    }
    out[k] = inline !== undefined ? inline : argv[++i];
  }
  return out;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const env = process.env;
  const num = (v) => (v === undefined || v === null || v === '' ? undefined : Number(v));
  const sim = await startKieSim({
    port: num(a.port ?? env.KIE_SIM_PORT) ?? 8790,
    host: a.host ?? env.KIE_SIM_HOST ?? '127.0.0.1',
    apiKey: a['api-key'] ?? env.KIE_SIM_API_KEY ?? 'sim-key',
    hmacKey: a['hmac-key'] ?? env.KIE_SIM_HMAC_KEY ?? null,
    stepMs: num(a['step-ms'] ?? env.KIE_SIM_STEP_MS),
    credits: num(a.credits ?? env.KIE_SIM_CREDITS),
    publicUrl: a['public-url'] ?? env.KIE_SIM_PUBLIC_URL ?? null,
    log: !a.quiet,
  });
  process.stdout.write(`${JSON.stringify({ msg: 'kie simulator listening', url: sim.url })}\n`);
  const stop = () => sim.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`${JSON.stringify({ msg: 'kie simulator failed to start', error: String(e?.message || e) })}\n`);
    process.exit(1);
  });
}
