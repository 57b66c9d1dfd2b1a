// File upload API on the upload host (kieai.redpandaai.co): file-stream-upload (multipart),
// file-base64-upload and file-url-upload (docs.kie.ai file-upload-api/*). Uploaded files are served
// from /tempfile/kieai/<uploadPath>/<fileName>, with the Content-Type taken from the file-name
// extension, as Kie's host does. Both downloadUrl and fileUrl are returned: the per-endpoint pages
// and the quickstart disagree on the key.

import crypto from 'node:crypto';
import { MB, FETCH_UA } from './constants.mjs';
import { authOk } from './api.mjs';
import { baseUrl } from './context.mjs';
import { httpRequest } from './http-client.mjs';
import { sniffImage } from './images.mjs';
import { isHttpUrl } from './util.mjs';

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

/** multipart/form-data parts: { name, filename, contentType, data }; null when the body is not multipart. */
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

const upOk = (data) => ({ status: 200, body: { success: true, code: 200, msg: 'File uploaded successfully', data } });
const upErr = (code, msg) => ({ status: 200, body: { success: false, code, msg } });

function checkUploadPath(p) {
  if (p === undefined || p === null || p === '') return 'Missing required parameter: uploadPath';
  if (typeof p !== 'string') return 'Invalid parameter: uploadPath';
  if (p.startsWith('/') || p.endsWith('/')) return 'Invalid parameter: uploadPath must not start or end with /';
  if (p.split('/').some((s) => s === '..' || s === '.')) return 'Invalid parameter: uploadPath';
  return null;
}

function storeUpload(core, bytes, uploadPath, fileName) {
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
  core.state.files.set(key, { kind: 'upload', bytes, contentType: mimeType, createdAt: now.getTime(), mode: 'ok' });
  const url = `${baseUrl(core)}/tempfile/${key.split('/').map(encodeURIComponent).join('/')}`;
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

function uploadAuth(core, ctx) {
  if (authOk(core, ctx.req)) return null;
  return { status: core.state.config.authAsHttp401 ? 401 : 200, body: { success: false, code: 401, msg: 'Authentication failed: Invalid API Key' } };
}

/** POST /api/file-stream-upload: multipart `file`, `uploadPath`, optional `fileName`. */
export function hUploadStream(core, ctx) {
  const a = uploadAuth(core, ctx);
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
  return storeUpload(core, Buffer.from(file.data), uploadPath, fileName);
}

/** POST /api/file-base64-upload: raw base64 or a data: URL. */
export function hUploadBase64(core, ctx) {
  const a = uploadAuth(core, ctx);
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
  return storeUpload(core, Buffer.from(data, 'base64'), body.uploadPath, body.fileName || null);
}

/** POST /api/file-url-upload: the host downloads fileUrl (30 s timeout). */
export async function hUploadUrl(core, ctx) {
  const a = uploadAuth(core, ctx);
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
    r = await httpRequest({ url: body.fileUrl, headers: { 'User-Agent': FETCH_UA }, timeoutMs: core.state.config.uploadFetchTimeoutMs, maxRedirects: 5, maxBytes: 100 * MB, track: core.outbound });
  } catch (e) {
    return upErr(500, `File download failed: ${e.message}`);
  }
  if (r.status < 200 || r.status >= 300) return upErr(500, `File download failed: HTTP ${r.status}`);
  let name = body.fileName;
  if (!name) {
    const last = new URL(r.url).pathname.split('/').pop();
    name = last && /\.[A-Za-z0-9]+$/.test(last) ? `${crypto.randomBytes(4).toString('hex')}_${last}` : null;
  }
  return storeUpload(core, r.body, body.uploadPath, name);
}
