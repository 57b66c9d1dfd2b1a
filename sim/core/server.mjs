// The HTTP server: routing (the families' routes plus the shared ones), request logging, the
// User-Agent check, latency, faults, and the /_sim control API.
//
// Cloudflare sits in front of Kie's hosts: a missing or bot-like User-Agent can get HTTP 403 with the
// plain-text body "error code: 1010" (observed by production clients; switchable with userAgentCheck).

import http from 'node:http';
import { MB } from './constants.mjs';
import { log, sleep } from './context.mjs';
import { control } from './control.mjs';
import { faultResponse, takeFault } from './faults.mjs';
import { hCredit } from './api.mjs';
import { hCommonDownload, hTempfile } from './tempfile.mjs';
import { hUploadBase64, hUploadStream, hUploadUrl } from './uploads.mjs';
import { envelope } from './util.mjs';

/**
 * Routes that belong to no family. A route is { method, path, cls, handler }: cls names the endpoint
 * class that stats count and faults target (create, record, download, credit, upload, tempfile).
 */
const SHARED_ROUTES = [
  { method: 'POST', path: '/api/v1/common/download-url', cls: 'download', handler: hCommonDownload },
  { method: 'GET', path: '/api/v1/chat/credit', cls: 'credit', handler: hCredit },
  { method: 'POST', path: '/api/file-stream-upload', cls: 'upload', handler: hUploadStream },
  { method: 'POST', path: '/api/file-base64-upload', cls: 'upload', handler: hUploadBase64 },
  { method: 'POST', path: '/api/file-url-upload', cls: 'upload', handler: hUploadUrl },
];

function routeTable(core) {
  const routes = [];
  for (const f of core.families.values()) routes.push(...f.routes);
  routes.push(...SHARED_ROUTES);
  return routes;
}

function matchRoute(routes, method, path) {
  if (path.startsWith('/tempfile/')) {
    return method === 'GET' || method === 'HEAD' ? { cls: 'tempfile', handler: hTempfile } : { cls: 'tempfile', wrongMethod: true };
  }
  const hit = routes.filter((r) => r.path === path);
  if (!hit.length) return null;
  const m = hit.find((r) => r.method === method);
  if (!m) return { cls: hit[0].cls, wrongMethod: true, allow: hit.map((r) => r.method).join(', ') };
  return { cls: m.cls, handler: m.handler };
}

function send(res, req, { status = 200, headers = {}, body, chunked = false }) {
  if (res.writableEnded || res.destroyed) return;
  if (chunked && Buffer.isBuffer(body)) {
    // Transfer-Encoding: chunked, no Content-Length: the receiver learns the size only at the end.
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return res.end();
    for (let i = 0; i < body.length; i += 64 * 1024) res.write(body.subarray(i, i + 64 * 1024));
    return res.end();
  }
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

async function handle(core, routes, req, res) {
  const { state } = core;
  const t0 = Date.now();
  const url = new URL(req.url, 'http://localhost');
  const path = url.pathname;
  const meta = { method: req.method, path: req.url, endpoint: null, fault: null, taskId: null };
  res.on('close', () => {
    log(core, { msg: 'request', ...meta, status: res.headersSent ? res.statusCode : null, ms: Date.now() - t0 });
  });
  let raw;
  try {
    raw = await readBody(req);
  } catch {
    return;
  }
  if (path.startsWith('/_sim/') || path === '/_sim') {
    meta.endpoint = 'control';
    return send(res, req, await control(core, req, url, raw));
  }
  state.stats.requests++;
  const route = matchRoute(routes, req.method, path);
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
  if (route.cls !== 'tempfile' && state.config.latencyMs > 0) await sleep(core, state.config.latencyMs);
  if (core.closed) return res.destroy();
  const fault = takeFault(core, route.cls, path);
  const ctx = { req, url, raw, taskId: null };
  if (fault) {
    meta.fault = fault.kind;
    // "Kie created the task but the answer was lost": the create goes through, the client sees the fault.
    const passThrough = fault.createsTask && route.cls === 'create' && ['code_500', 'http_500', 'timeout'].includes(fault.kind);
    if (passThrough) {
      await route.handler(core, ctx);
      meta.taskId = ctx.taskId;
      if (ctx.taskId) state.tasks.get(ctx.taskId).answerLost = fault.kind;
    }
    if (fault.kind === 'reset') return req.socket.destroy();
    if (fault.kind === 'timeout') {
      core.hanging.add(res);
      res.on('close', () => core.hanging.delete(res));
      return;
    }
    return send(res, req, faultResponse(fault, route.cls));
  }
  let out;
  try {
    out = await route.handler(core, ctx);
  } catch (e) {
    out = { status: 200, body: envelope(500) };
    log(core, { msg: 'handler error', error: String(e?.stack || e) });
  }
  meta.taskId = ctx.taskId;
  return send(res, req, out);
}

/** Create the server and listen on opts.port (0: any) and host; resolves the listening server. */
export async function listen(core, { port, host }) {
  const routes = routeTable(core);
  const server = http.createServer((req, res) => {
    handle(core, routes, req, res).catch((e) => {
      log(core, { msg: 'internal error', error: String(e?.stack || e) });
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
    server.listen(port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
