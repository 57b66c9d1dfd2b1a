import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startKieSim, makePng, signWebhook } from './kie-sim.mjs';

const KEY = 'sim-key';
const PNG_SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Verifier written from Kie's webhook-verification docs, independent of the simulator's own signer.
function verifyKieSignature(hmacKey, taskId, timestamp, signature) {
  const expected = crypto.createHmac('sha256', hmacKey).update(`${taskId}.${timestamp}`).digest('base64');
  return expected.length === signature.length && crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
}

let sim;
let aux; // local server: input images + callback receiver
let auxUrl;
const received = []; // callbacks
let cbStatuses = []; // queue of statuses the receiver answers with

function startAux() {
  const png = makePng(16, 16, (x, y) => [x * 16, y * 16, 128]);
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const u = new URL(req.url, 'http://x');
        if (u.pathname.startsWith('/cb')) {
          received.push({ path: req.url, headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')), at: Date.now() });
          const status = cbStatuses.length ? cbStatuses.shift() : 200;
          res.writeHead(status, { 'Content-Type': 'application/json' });
          return res.end('{"status":"received"}');
        }
        if (u.pathname === '/img.png') {
          res.writeHead(200, { 'Content-Type': 'image/png' });
          return res.end(png);
        }
        if (u.pathname === '/redirect') {
          res.writeHead(302, { Location: '/img.png' });
          return res.end();
        }
        if (u.pathname === '/page.html') {
          res.writeHead(200, { 'Content-Type': 'text/html' });
          return res.end('<html>nope</html>');
        }
        res.writeHead(404);
        res.end('not found');
      });
    });
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

async function api(path, { method = 'GET', body, key = KEY, headers = {}, signal } = {}) {
  const h = { 'User-Agent': 'kie-sim-test/1.0', ...headers };
  if (key !== null) h.Authorization = `Bearer ${key}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(sim.url + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, headers: res.headers, text, json };
}

const control = (path, body, method = 'POST') => api(`/_sim/${path}`, { method, body, key: null }).then((r) => r.json);
const createJob = (model, input, extra = {}) => api('/api/v1/jobs/createTask', { method: 'POST', body: { model, input, ...extra } });

async function pollJob(taskId, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  const seen = new Set();
  for (;;) {
    const r = await api(`/api/v1/jobs/recordInfo?taskId=${taskId}`);
    assert.equal(r.json.code, 200, r.text);
    seen.add(r.json.data.state);
    if (r.json.data.state === 'success' || r.json.data.state === 'fail') return { data: r.json.data, seen };
    if (Date.now() > deadline) throw new Error(`timeout polling ${taskId}`);
    await sleep(10);
  }
}

async function pollFamily(path, taskId, done, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await api(`${path}?taskId=${taskId}`);
    assert.equal(r.json.code, 200, r.text);
    if (done(r.json.data)) return r.json.data;
    if (Date.now() > deadline) throw new Error(`timeout polling ${taskId}`);
    await sleep(10);
  }
}

async function waitFor(pred, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('waitFor timed out');
    await sleep(10);
  }
}

before(async () => {
  aux = await startAux();
  auxUrl = `http://127.0.0.1:${aux.address().port}`;
  sim = await startKieSim({ port: 0, host: '127.0.0.1', apiKey: KEY, hmacKey: null, credits: 10000, stepMs: 20 });
});

after(async () => {
  await sim.close();
  await new Promise((r) => aux.close(r));
});

beforeEach(async () => {
  await control('reset', {});
  await control('config', { stepMs: 20, callbacks: { retryDelayMs: 20 } });
  received.length = 0;
  cbStatuses = [];
});

describe('jobs API', () => {
  test('create + poll to success for every model, string-encoded param/resultJson', async () => {
    // Slow enough that the first read surely sees a running task, even on a loaded machine.
    await control('config', { stepMs: 300 });
    const cases = [
      ['google/nano-banana', { prompt: 'a red banana' }, 'png'],
      ['google/nano-banana-edit', { prompt: 'make it blue', image_urls: [`${auxUrl}/img.png`] }, 'png'],
      ['nano-banana-pro', { prompt: 'pro', resolution: '2K', output_format: 'png' }, 'png'],
      ['nano-banana-2', { prompt: 'nb2', aspect_ratio: '16:9' }, 'jpg'],
    ];
    await Promise.all(
      cases.map(async ([model, input, ext]) => {
        const c = await createJob(model, input, { callBackUrl: 'https://example.invalid/cb?t=1' });
        assert.equal(c.status, 200);
        assert.equal(c.json.code, 200);
        assert.equal(c.json.msg, 'success');
        assert.match(c.json.data.taskId, /^[0-9a-f]{32}$/);
        const first = await api(`/api/v1/jobs/recordInfo?taskId=${c.json.data.taskId}`);
        assert.equal(first.json.data.creditsConsumed, null);
        assert.equal(first.json.data.resultJson, '');
        assert.equal(first.json.data.completeTime, null);
        const { data, seen } = await pollJob(c.json.data.taskId);
        assert.equal(data.state, 'success', JSON.stringify(data));
        assert.ok(seen.size >= 1);
        assert.deepEqual(
          sim.state.tasks.get(data.taskId).history.map((h) => h.state),
          ['waiting', 'queuing', 'generating', 'success'],
        );
        assert.equal(data.model, model);
        assert.equal(typeof data.param, 'string');
        const param = JSON.parse(data.param);
        assert.equal(param.model, model);
        assert.deepEqual(param.input, input);
        assert.equal(typeof data.resultJson, 'string');
        const rj = JSON.parse(data.resultJson);
        assert.equal(rj.resultUrls.length, 1);
        assert.ok(rj.resultUrls[0].startsWith(`${sim.url}/tempfile/as/${data.taskId}_`));
        assert.ok(rj.resultUrls[0].endsWith(`.${ext}`));
        assert.equal(data.failCode, '');
        assert.equal(data.failMsg, '');
        assert.ok(data.creditsConsumed > 0);
        assert.ok(data.createTime > 1.7e12 && data.completeTime >= data.createTime && data.updateTime >= data.createTime);
        assert.equal(typeof data.costTime, 'number');
      }),
    );
    const credit = await api('/api/v1/chat/credit');
    assert.equal(credit.json.code, 200);
    assert.equal(credit.json.data, 10000 - (4 + 4 + 18 + 8));
  });

  test('per-model validation → 422 in an HTTP 200 envelope; no task created', async () => {
    const bad = [
      [{ model: 'google/nano-banana-2', input: { prompt: 'x' } }, /model name not supported/],
      [{ model: 'nano-banana-ultra', input: { prompt: 'x' } }, /model name not supported/],
      [{ model: 'google/nano-banana' }, /input/],
      [{ model: 'google/nano-banana', input: {} }, /prompt/],
      [{ model: 'google/nano-banana', input: { prompt: 'x'.repeat(5001) } }, /5000/],
      [{ model: 'nano-banana-pro', input: { prompt: 'x'.repeat(10001) } }, /10000/],
      [{ model: 'nano-banana-2', input: { prompt: 'x'.repeat(20001) } }, /20000/],
      [{ model: 'google/nano-banana', input: { prompt: 'x', output_format: 'jpg' } }, /output_format/],
      [{ model: 'nano-banana-pro', input: { prompt: 'x', output_format: 'jpeg' } }, /output_format/],
      [{ model: 'google/nano-banana', input: { prompt: 'x', aspect_ratio: '1:4' } }, /aspect_ratio/],
      [{ model: 'google/nano-banana', input: { prompt: 'x', image_size: '7:3' } }, /image_size/],
      [{ model: 'nano-banana-pro', input: { prompt: 'x', aspect_ratio: '8:1' } }, /aspect_ratio/],
      [{ model: 'nano-banana-pro', input: { prompt: 'x', resolution: '8K' } }, /resolution/],
      [{ model: 'google/nano-banana-edit', input: { prompt: 'x' } }, /image_urls is required/],
      [{ model: 'google/nano-banana-edit', input: { prompt: 'x', image_urls: Array(11).fill('https://a.b/c.png') } }, /at most 10/],
      [{ model: 'nano-banana-pro', input: { prompt: 'x', image_input: Array(9).fill('https://a.b/c.png') } }, /at most 8/],
      [{ model: 'nano-banana-2', input: { prompt: 'x', image_input: Array(15).fill('https://a.b/c.png') } }, /at most 14/],
      [{ model: 'google/nano-banana-edit', input: { prompt: 'x', image_urls: ['data:image/png;base64,AAAA'] } }, /URL/],
      [{ model: 'google/nano-banana', input: { prompt: 'x' }, callBackUrl: 'not a url' }, /callBackUrl/],
    ];
    for (const [body, re] of bad) {
      const r = await api('/api/v1/jobs/createTask', { method: 'POST', body });
      assert.equal(r.status, 200);
      assert.equal(r.json.code, 422, `${JSON.stringify(body).slice(0, 120)} → ${r.text}`);
      assert.match(r.json.msg, re);
      assert.equal(r.json.data, null);
    }
    // accepted edge cases: max lengths, image_size alias with aspect_ratio winning, nano-banana-2 max images
    const okCases = [
      { model: 'google/nano-banana', input: { prompt: 'x'.repeat(5000), image_size: '9:16', aspect_ratio: '16:9' } },
      { model: 'nano-banana-2', input: { prompt: 'y', aspect_ratio: '8:1', output_format: 'png', resolution: '4K' } },
      { model: 'nano-banana-pro', input: { prompt: 'z', image_urls: ['ignored-unknown-key'] } },
    ];
    for (const body of okCases) {
      const r = await api('/api/v1/jobs/createTask', { method: 'POST', body });
      assert.equal(r.json.code, 200, r.text);
    }
    assert.equal(sim.state.tasks.size, okCases.length);
    const t = [...sim.state.tasks.values()][0];
    assert.equal(t.aspect, '16:9');
    // strict mode rejects unknown input keys
    await control('config', { strictInputKeys: true });
    const strict = await api('/api/v1/jobs/createTask', { method: 'POST', body: okCases[2] });
    assert.equal(strict.json.code, 422);
    assert.match(strict.json.msg, /image_urls/);
  });

  test('auth: missing or wrong Bearer → 401 envelope (HTTP 200), switchable to HTTP 401', async () => {
    for (const key of [null, 'wrong']) {
      const r = await api('/api/v1/jobs/createTask', { method: 'POST', body: { model: 'google/nano-banana', input: { prompt: 'x' } }, key });
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { code: 401, msg: 'Unauthorized', data: null });
    }
    assert.deepEqual((await api('/api/v1/chat/credit', { key: 'nope' })).json, { code: 401, msg: 'Unauthorized', data: null });
    await control('config', { authAsHttp401: true });
    const r = await api('/api/v1/jobs/recordInfo?taskId=abc', { key: 'nope' });
    assert.equal(r.status, 401);
    assert.equal(r.json.code, 401);
    assert.equal(sim.state.tasks.size, 0);
  });

  test('recordInfo: unknown id → 422 "recordInfo is null"; missing → 400', async () => {
    assert.deepEqual((await api('/api/v1/jobs/recordInfo?taskId=0123456789abcdef0123456789abcdef')).json, { code: 422, msg: 'recordInfo is null', data: null });
    assert.deepEqual((await api('/api/v1/jobs/recordInfo')).json, { code: 400, msg: 'taskId parameter is required', data: null });
  });

  test('rate limit: 21st create within 10 s → 429, not queued, not charged', async () => {
    const body = { model: 'google/nano-banana', input: { prompt: 'x [sim:never]' } };
    const rs = [];
    for (let i = 0; i < 21; i++) rs.push(await api('/api/v1/jobs/createTask', { method: 'POST', body }));
    assert.ok(rs.slice(0, 20).every((r) => r.json.code === 200));
    assert.equal(rs[20].status, 200);
    assert.deepEqual(rs[20].json, { code: 429, msg: 'Too many requests', data: null });
    assert.equal(sim.state.tasks.size, 20);
    assert.equal((await api('/api/v1/chat/credit')).json.data, 10000 - 20 * 4);
    // other create endpoints share the window
    const fo = await api('/api/v1/gpt4o-image/generate', { method: 'POST', body: { prompt: 'x', size: '1:1' } });
    assert.equal(fo.json.code, 429);
    // real HTTP 429 variant
    await control('config', { rateLimitAsHttp429: true });
    const h = await api('/api/v1/jobs/createTask', { method: 'POST', body });
    assert.equal(h.status, 429);
    assert.ok(Number(h.headers.get('retry-after')) >= 1);
    // small window slides
    await control('reset', {});
    await control('config', { rateLimit: { max: 2, windowMs: 200 } });
    assert.equal((await api('/api/v1/jobs/createTask', { method: 'POST', body })).json.code, 200);
    assert.equal((await api('/api/v1/jobs/createTask', { method: 'POST', body })).json.code, 200);
    assert.equal((await api('/api/v1/jobs/createTask', { method: 'POST', body })).json.code, 429);
    await sleep(220);
    assert.equal((await api('/api/v1/jobs/createTask', { method: 'POST', body })).json.code, 200);
  });

  test('insufficient credits → 402', async () => {
    await control('config', { credits: 3 });
    const r = await createJob('google/nano-banana', { prompt: 'x' });
    assert.deepEqual(r.json, { code: 402, msg: 'Insufficient credits', data: null });
    assert.equal(sim.state.tasks.size, 0);
  });

  test('forced outcomes via prompt markers', async () => {
    const mk = async (marker) => (await createJob('google/nano-banana', { prompt: `cat ${marker}` })).json.data.taskId;
    const [cp, internal, empty, notImg, missing] = await Promise.all(
      ['[sim:content_policy]', '[sim:internal]', '[sim:empty_result]', '[sim:not_image]', '[sim:missing_result]'].map(mk),
    );
    const d1 = (await pollJob(cp)).data;
    assert.equal(d1.state, 'fail');
    assert.equal(d1.failCode, '422');
    assert.equal(d1.failMsg, 'Invalid prompt: prompt contains prohibited content');
    assert.equal(d1.creditsConsumed, 0);
    assert.equal(d1.resultJson, '');
    const d2 = (await pollJob(internal)).data;
    assert.equal(d2.failCode, '500');
    assert.equal(d2.failMsg, 'Internal Error');
    const d3 = (await pollJob(empty)).data;
    assert.equal(d3.state, 'success');
    assert.deepEqual(JSON.parse(d3.resultJson), { resultUrls: [] });
    const u4 = JSON.parse((await pollJob(notImg)).data.resultJson).resultUrls[0];
    const r4 = await fetch(u4);
    assert.equal(r4.status, 200);
    assert.match(r4.headers.get('content-type'), /text\/html/);
    assert.ok(!(await r4.text()).startsWith('\x89PNG'));
    const u5 = JSON.parse((await pollJob(missing)).data.resultJson).resultUrls[0];
    assert.equal((await fetch(u5)).status, 404);
    // refunds: failed tasks cost nothing
    assert.equal((await api('/api/v1/chat/credit')).json.data, 10000 - 3 * 4);
    // never stays generating
    const nev = await mk('[sim:never]');
    await sleep(150);
    assert.equal((await api(`/api/v1/jobs/recordInfo?taskId=${nev}`)).json.data.state, 'generating');
  });
});

describe('result files', () => {
  test('PNG bytes with the PNG signature, HEAD works; jpeg output is a JPEG', async () => {
    const a = (await createJob('google/nano-banana', { prompt: 'x', aspect_ratio: '16:9' })).json.data.taskId;
    const b = (await createJob('google/nano-banana', { prompt: 'x', output_format: 'jpeg' })).json.data.taskId;
    const ua = JSON.parse((await pollJob(a)).data.resultJson).resultUrls[0];
    const ub = JSON.parse((await pollJob(b)).data.resultJson).resultUrls[0];
    const ra = await fetch(ua);
    assert.equal(ra.status, 200);
    assert.equal(ra.headers.get('content-type'), 'image/png');
    const bytes = Buffer.from(await ra.arrayBuffer());
    assert.ok(bytes.subarray(0, 8).equals(PNG_SIG));
    assert.equal(bytes.readUInt32BE(16), 64); // IHDR width
    assert.equal(bytes.readUInt32BE(20), 40); // 16:9 → 64×40 (rounded to 8)
    const head = await fetch(ua, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers.get('content-length')), bytes.length);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
    const rb = await fetch(ub);
    assert.equal(rb.headers.get('content-type'), 'image/jpeg');
    const jb = Buffer.from(await rb.arrayBuffer());
    assert.deepEqual([...jb.subarray(0, 3)], [0xff, 0xd8, 0xff]);
    assert.deepEqual([...jb.subarray(-2)], [0xff, 0xd9]);
    assert.ok(ub.endsWith('.jpeg'));
    assert.equal((await fetch(`${sim.url}/tempfile/as/nope.png`)).status, 404);
  });

  test('download-url endpoints return working links', async () => {
    const id = (await createJob('google/nano-banana', { prompt: 'x' })).json.data.taskId;
    const u = JSON.parse((await pollJob(id)).data.resultJson).resultUrls[0];
    const d = await api('/api/v1/common/download-url', { method: 'POST', body: { url: u } });
    assert.equal(d.json.code, 200);
    const dl = await fetch(d.json.data);
    assert.equal(dl.status, 200);
    assert.ok(Buffer.from(await dl.arrayBuffer()).subarray(0, 8).equals(PNG_SIG));
    const bad = await api('/api/v1/common/download-url', { method: 'POST', body: { url: 'https://example.com/x.png' } });
    assert.equal(bad.json.code, 422);

    const fo = (await api('/api/v1/gpt4o-image/generate', { method: 'POST', body: { prompt: 'x', size: '1:1' } })).json.data.taskId;
    const notYet = await api('/api/v1/gpt4o-image/download-url', { method: 'POST', body: { taskId: fo, url: u } });
    assert.deepEqual(notYet.json, { code: 422, msg: 'record status is not success', data: null });
    const data = await pollFamily('/api/v1/gpt4o-image/record-info', fo, (x) => x.successFlag !== 0);
    const d2 = await api('/api/v1/gpt4o-image/download-url', { method: 'POST', body: { taskId: fo, url: data.response.resultUrls[0] } });
    assert.equal(d2.json.code, 200);
    assert.match(d2.json.data, /X-Amz-Expires=1200/);
    assert.equal((await fetch(d2.json.data)).status, 200);
    assert.deepEqual((await api('/api/v1/gpt4o-image/download-url', { method: 'POST', body: { taskId: 'f'.repeat(32), url: u } })).json, {
      code: 422,
      msg: 'record is null',
      data: null,
    });
  });
});

describe('4o and flux families', () => {
  test('4o: generate + record-info to success (response.resultUrls, successFlag, progress string)', async () => {
    await control('config', { stepMs: 300 }); // the first read must see it running
    const c = await api('/api/v1/gpt4o-image/generate', { method: 'POST', body: { prompt: 'banana', size: '3:2', nVariants: 2 } });
    assert.equal(c.json.code, 200);
    const id = c.json.data.taskId;
    const running = (await api(`/api/v1/gpt4o-image/record-info?taskId=${id}`)).json.data;
    assert.equal(running.successFlag, 0);
    assert.equal(running.status, 'GENERATING');
    assert.equal(running.response, null);
    assert.equal(typeof running.progress, 'string');
    const d = await pollFamily('/api/v1/gpt4o-image/record-info', id, (x) => x.successFlag !== 0);
    assert.equal(d.successFlag, 1);
    assert.equal(d.status, 'SUCCESS');
    assert.equal(d.progress, '1.00');
    assert.equal(d.errorCode, null);
    assert.equal(d.response.resultUrls.length, 2);
    assert.equal(JSON.parse(d.paramJson).size, '3:2');
    const img = Buffer.from(await (await fetch(d.response.resultUrls[1])).arrayBuffer());
    assert.ok(img.subarray(0, 8).equals(PNG_SIG));
  });

  test('4o: validation', async () => {
    const cases = [
      [{ prompt: 'x' }, /size is required/],
      [{ prompt: 'x', size: '16:9' }, /size must be one of/],
      [{ size: '1:1' }, /prompt or filesUrl/],
      [{ prompt: 'x', size: '1:1', filesUrl: Array(6).fill('https://a.b/c.png') }, /at most 5/],
      [{ prompt: 'x', size: '1:1', nVariants: 3 }, /nVariants/],
    ];
    for (const [body, re] of cases) {
      const r = await api('/api/v1/gpt4o-image/generate', { method: 'POST', body });
      assert.equal(r.json.code, 422, r.text);
      assert.match(r.json.msg, re);
    }
  });

  test('flux kontext: generate + record-info to success (response.resultImageUrl, default jpeg)', async () => {
    const c = await api('/api/v1/flux/kontext/generate', { method: 'POST', body: { prompt: 'a fox', inputImage: `${auxUrl}/img.png`, model: 'flux-kontext-max' } });
    assert.equal(c.json.code, 200, c.text);
    const d = await pollFamily('/api/v1/flux/kontext/record-info', c.json.data.taskId, (x) => x.successFlag !== 0);
    assert.equal(d.successFlag, 1);
    assert.equal(d.errorCode, null);
    assert.ok(d.response.resultImageUrl.endsWith('.jpeg'));
    assert.ok(d.response.originImageUrl);
    const img = Buffer.from(await (await fetch(d.response.resultImageUrl)).arrayBuffer());
    assert.deepEqual([...img.subarray(0, 3)], [0xff, 0xd8, 0xff]);
    const bad = await api('/api/v1/flux/kontext/generate', { method: 'POST', body: { prompt: 'x', aspectRatio: '2:3' } });
    assert.equal(bad.json.code, 422);
    assert.match(bad.json.msg, /aspectRatio/);
    const bad2 = await api('/api/v1/flux/kontext/generate', { method: 'POST', body: { prompt: 'x', model: 'flux-pro' } });
    assert.equal(bad2.json.code, 422);
  });
});

describe('input fetching', () => {
  test('edit with a reachable input (via redirect) succeeds and records the fetch', async () => {
    const c = await createJob('google/nano-banana-edit', { prompt: 'edit', image_urls: [`${auxUrl}/img.png`, `${auxUrl}/redirect`] });
    const { data } = await pollJob(c.json.data.taskId);
    assert.equal(data.state, 'success');
    const view = await control(`tasks/${c.json.data.taskId}`, undefined, 'GET');
    assert.equal(view.inputsFetched.length, 2);
    for (const f of view.inputsFetched) {
      assert.equal(f.status, 200);
      assert.equal(f.contentType, 'image/png');
      assert.equal(f.kind, 'png');
      assert.ok(f.bytes > 50);
      assert.equal(f.ok, true);
    }
    assert.equal(view.inputsFetched[1].redirects, 1);
  });

  test('unreachable / non-image input → fail with failCode "422" (jobs), 451 (4o), 400 (flux)', async () => {
    const dead = http.createServer();
    await new Promise((r) => dead.listen(0, '127.0.0.1', r));
    const deadUrl = `http://127.0.0.1:${dead.address().port}/x.png`;
    await new Promise((r) => dead.close(r));
    const cb = `${auxUrl}/cb`;
    const ids = await Promise.all([
      createJob('google/nano-banana-edit', { prompt: 'e', image_urls: [deadUrl] }),
      createJob('nano-banana-pro', { prompt: 'e', image_input: [`${auxUrl}/missing.png`] }),
      createJob('nano-banana-2', { prompt: 'e', image_input: [`${auxUrl}/page.html`] }),
    ]).then((rs) => rs.map((r) => r.json.data.taskId));
    for (const id of ids) {
      const { data } = await pollJob(id);
      assert.equal(data.state, 'fail');
      assert.equal(data.failCode, '422');
      assert.equal(data.failMsg, 'Your media file is unavailable, please replace it.');
      assert.equal(data.creditsConsumed, 0);
    }
    const fetched = ids.map((id) => sim.state.tasks.get(id).inputsFetched[0]);
    assert.equal(fetched[0].status, null);
    assert.match(fetched[0].error, /ECONNREFUSED/);
    assert.equal(fetched[1].status, 404);
    assert.equal(fetched[2].kind, null);
    assert.equal(fetched[2].contentType, 'text/html');

    const fo = (await api('/api/v1/gpt4o-image/generate', { method: 'POST', body: { prompt: 'e', size: '1:1', filesUrl: [deadUrl], callBackUrl: cb } })).json.data.taskId;
    const d4 = await pollFamily('/api/v1/gpt4o-image/record-info', fo, (x) => x.successFlag !== 0);
    assert.equal(d4.successFlag, 2);
    assert.equal(d4.status, 'GENERATE_FAILED');
    assert.equal(d4.errorCode, 451);
    const fl = (await api('/api/v1/flux/kontext/generate', { method: 'POST', body: { prompt: 'e', inputImage: deadUrl } })).json.data.taskId;
    const df = await pollFamily('/api/v1/flux/kontext/record-info', fl, (x) => x.successFlag !== 0);
    assert.equal(df.successFlag, 3);
    assert.equal(df.errorCode, 400);
    await waitFor(() => received.length === 1);
    assert.equal(received[0].body.code, 451);
    assert.deepEqual(received[0].body.data, { taskId: fo, info: null });
  });
});

describe('faults', () => {
  const body = { model: 'google/nano-banana', input: { prompt: 'x' } };

  test('code_429 envelope in HTTP 200, then normal again', async () => {
    await control('faults', { endpoint: 'create', kind: 'code_429' });
    const r = await api('/api/v1/jobs/createTask', { method: 'POST', body });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { code: 429, msg: 'Too many requests', data: null });
    assert.equal(sim.state.tasks.size, 0);
    assert.equal((await api('/api/v1/jobs/createTask', { method: 'POST', body })).json.code, 200);
    assert.equal((await api('/api/v1/chat/credit')).json.data, 10000 - 4);
  });

  test('http_500, http_429, code_455, http_403_1010, garbage, reset', async () => {
    await control('faults', { endpoint: 'record', kind: 'http_500' });
    const r1 = await api('/api/v1/jobs/recordInfo?taskId=x');
    assert.equal(r1.status, 500);
    await control('faults', { endpoint: 'credit', kind: 'http_429' });
    const r2 = await api('/api/v1/chat/credit');
    assert.equal(r2.status, 429);
    assert.equal(r2.headers.get('retry-after'), '1');
    await control('faults', { endpoint: 'credit', kind: 'code_455' });
    assert.equal((await api('/api/v1/chat/credit')).json.code, 455);
    await control('faults', { endpoint: 'upload', kind: 'http_403_1010' });
    const r3 = await api('/api/file-base64-upload', { method: 'POST', body: { base64Data: 'AAAA', uploadPath: 'a' } });
    assert.equal(r3.status, 403);
    assert.equal(r3.text, 'error code: 1010');
    await control('faults', { endpoint: 'create', kind: 'garbage' });
    const r4 = await api('/api/v1/jobs/createTask', { method: 'POST', body });
    assert.equal(r4.status, 200);
    assert.equal(r4.json, null);
    assert.throws(() => JSON.parse(r4.text));
    await control('faults', { endpoint: '*', kind: 'reset' });
    await assert.rejects(api('/api/v1/chat/credit'));
    assert.equal(sim.state.tasks.size, 0);
    assert.equal((await api('/api/v1/chat/credit')).json.code, 200);
  });

  test('timeout: no answer until the client gives up (AbortSignal); createsTask keeps the task', async () => {
    await control('faults', { endpoint: 'create', kind: 'timeout', createsTask: true });
    const t0 = Date.now();
    await assert.rejects(api('/api/v1/jobs/createTask', { method: 'POST', body, signal: AbortSignal.timeout(300) }), (e) => e.name === 'TimeoutError' || e.name === 'AbortError');
    assert.ok(Date.now() - t0 >= 280);
    assert.equal(sim.state.tasks.size, 1); // "Kie created the task but the answer was lost"
    const tasks = await control('tasks', undefined, 'GET');
    assert.equal(tasks[0].answerLost, 'timeout');
    await control('faults', { endpoint: 'create', kind: 'code_500' });
    assert.equal((await api('/api/v1/jobs/createTask', { method: 'POST', body })).json.code, 500);
    assert.equal(sim.state.tasks.size, 1);
  });

  test('times: -1 until cleared; durationMs expiry', async () => {
    await control('faults', { endpoint: 'credit', kind: 'code_500', times: -1 });
    for (let i = 0; i < 3; i++) assert.equal((await api('/api/v1/chat/credit')).json.code, 500);
    await control('faults', undefined, 'DELETE');
    assert.equal((await api('/api/v1/chat/credit')).json.code, 200);
    await control('faults', { endpoint: 'credit', kind: 'code_500', durationMs: 100 });
    assert.equal((await api('/api/v1/chat/credit')).json.code, 500);
    assert.equal((await api('/api/v1/chat/credit')).json.code, 500);
    await sleep(120);
    assert.equal((await api('/api/v1/chat/credit')).json.code, 200);
  });
});

describe('callbacks', () => {
  test('HMAC signature matches the documented test vector', () => {
    const want = 'U6g7KIxUE8sH3FB3oyeHwIqop1qL+NM/XVa03KVbXCc=';
    assert.equal(signWebhook('test-webhook-hmac-key', 'b31f0a77d507765367dc8f5868ba3ceb', '1769670760'), want);
    assert.ok(verifyKieSignature('test-webhook-hmac-key', 'b31f0a77d507765367dc8f5868ba3ceb', '1769670760', want));
  });

  test('jobs success and failure callbacks: wrapped shape, data identical to recordInfo, signed', async () => {
    await control('config', { hmacKey: 'test-webhook-hmac-key' });
    const ok = (await createJob('google/nano-banana', { prompt: 'ok' }, { callBackUrl: `${auxUrl}/cb?token=abc` })).json.data.taskId;
    const bad = (await createJob('google/nano-banana', { prompt: 'bad [sim:internal]' }, { callBackUrl: `${auxUrl}/cb?token=abc` })).json.data.taskId;
    await waitFor(() => received.length === 2);
    const byId = Object.fromEntries(received.map((r) => [r.body.data.taskId, r]));
    const s = byId[ok];
    assert.equal(s.body.code, 200);
    assert.equal(s.body.msg, 'Playground task completed successfully.');
    assert.equal(s.path, '/cb?token=abc');
    assert.equal(s.headers['content-type'], 'application/json');
    assert.ok(s.headers['user-agent']);
    const rec = (await api(`/api/v1/jobs/recordInfo?taskId=${ok}`)).json.data;
    assert.deepEqual(s.body.data, rec);
    assert.equal(JSON.parse(s.body.data.resultJson).resultUrls.length, 1);
    const ts = s.headers['x-webhook-timestamp'];
    assert.match(ts, /^\d{10}$/);
    assert.ok(Math.abs(Number(ts) - Date.now() / 1000) < 5);
    assert.equal(s.headers['x-webhook-signature'].length, 44);
    assert.ok(verifyKieSignature('test-webhook-hmac-key', ok, ts, s.headers['x-webhook-signature']));
    const f = byId[bad];
    assert.equal(f.body.code, 501);
    assert.equal(f.body.msg, 'Playground task failed.');
    assert.equal(f.body.data.state, 'fail');
    assert.equal(f.body.data.failCode, '500');
    assert.ok(verifyKieSignature('test-webhook-hmac-key', bad, f.headers['x-webhook-timestamp'], f.headers['x-webhook-signature']));
    // no callBackUrl → nothing sent
    const none = (await createJob('google/nano-banana', { prompt: 'quiet' })).json.data.taskId;
    await pollJob(none);
    await sleep(30);
    assert.equal(received.length, 2);
    // without hmacKey there are no signature headers
    await control('config', { hmacKey: null });
    await createJob('google/nano-banana', { prompt: 'nosig' }, { callBackUrl: `${auxUrl}/cb` });
    await waitFor(() => received.length === 3);
    assert.equal(received[2].headers['x-webhook-signature'], undefined);
  });

  test('4o and flux callback shapes', async () => {
    await createJob('google/nano-banana', { prompt: 'warm-up' }); // unrelated task, no callback
    const a = (await api('/api/v1/gpt4o-image/generate', { method: 'POST', body: { prompt: 'p', size: '1:1', callBackUrl: `${auxUrl}/cb/4o` } })).json.data.taskId;
    const b = (await api('/api/v1/gpt4o-image/generate', { method: 'POST', body: { prompt: 'p [sim:content_policy]', size: '1:1', callBackUrl: `${auxUrl}/cb/4o` } })).json.data.taskId;
    const c = (await api('/api/v1/flux/kontext/generate', { method: 'POST', body: { prompt: 'p', outputFormat: 'png', callBackUrl: `${auxUrl}/cb/flux` } })).json.data.taskId;
    const d = (await api('/api/v1/flux/kontext/generate', { method: 'POST', body: { prompt: 'p [sim:content_policy]', callBackUrl: `${auxUrl}/cb/flux` } })).json.data.taskId;
    await waitFor(() => received.length === 4);
    const byId = Object.fromEntries(received.map((r) => [r.body.data.taskId, r.body]));
    assert.equal(byId[a].code, 200);
    assert.equal(byId[a].msg, 'success');
    assert.equal(byId[a].data.info.result_urls.length, 1);
    assert.deepEqual(byId[b], { code: 400, msg: 'Your content was flagged by OpenAI as violating content policies', data: { taskId: b, info: null } });
    assert.equal(byId[c].code, 200);
    assert.equal(byId[c].msg, 'BFL image generated successfully.');
    assert.ok(byId[c].data.info.resultImageUrl.endsWith('.png'));
    assert.ok(byId[c].data.info.originImageUrl);
    assert.equal(byId[d].code, 400);
    assert.deepEqual(byId[d].data.info, { originImageUrl: '', resultImageUrl: '' });
  });

  test('duplicates, reorder (stale copy after the real one), retries on non-2xx', async () => {
    await control('config', { callbacks: { duplicates: 2, reorder: true } });
    const id = (await createJob('google/nano-banana', { prompt: 'dup' }, { callBackUrl: `${auxUrl}/cb` })).json.data.taskId;
    await waitFor(() => received.length === 4);
    assert.deepEqual(received.slice(0, 3).map((r) => r.body.data.state), ['success', 'success', 'success']);
    assert.deepEqual(received[0].body, received[1].body);
    assert.equal(received[3].body.data.state, 'generating');
    assert.equal(received[3].body.data.taskId, id);
    const stats = await control('stats', undefined, 'GET');
    assert.equal(stats.callbacksSent, 4);

    received.length = 0;
    await control('config', { callbacks: { duplicates: 0, reorder: false } });
    cbStatuses = [500, 503];
    const id2 = (await createJob('google/nano-banana', { prompt: 'retry' }, { callBackUrl: `${auxUrl}/cb` })).json.data.taskId;
    await waitFor(() => received.length === 3);
    await waitFor(() => sim.state.tasks.get(id2).callbacks.length === 3);
    const log = (await control(`tasks/${id2}`, undefined, 'GET')).callbacks;
    assert.deepEqual(log.map((e) => [e.attempt, e.status, e.ok]), [[1, 500, false], [2, 503, false], [3, 200, true]]);
    assert.ok(log.every((e) => typeof e.ms === 'number' && e.url === `${auxUrl}/cb`));

    received.length = 0;
    cbStatuses = [500, 500, 500, 500];
    const id3 = (await createJob('google/nano-banana', { prompt: 'give up' }, { callBackUrl: `${auxUrl}/cb` })).json.data.taskId;
    await waitFor(() => sim.state.tasks.get(id3).callbacks.length === 3);
    await sleep(60);
    assert.equal(received.length, 3); // stops after 3 failed attempts
  });

  test('drop: no delivery; manual (re)send with overrides', async () => {
    await control('config', { callbacks: { drop: true }, hmacKey: 'k' });
    const id = (await createJob('google/nano-banana', { prompt: 'drop' }, { callBackUrl: `${auxUrl}/cb` })).json.data.taskId;
    await pollJob(id);
    await sleep(50);
    assert.equal(received.length, 0);
    const r1 = await control(`tasks/${id}/callback`, {});
    assert.equal(r1.status, 200);
    assert.equal(received.length, 1);
    assert.equal(received[0].body.data.state, 'success');
    const r2 = await control(`tasks/${id}/callback`, { state: 'fail' });
    assert.equal(r2.status, 200);
    assert.equal(received[1].body.code, 501);
    assert.equal(received[1].body.data.failCode, '500');
    const forged = { code: 200, msg: 'x', data: { taskId: id, state: 'success', resultJson: '{"resultUrls":["https://evil/x.png"]}' } };
    await control(`tasks/${id}/callback`, { body: forged, timestamp: 1769670760 });
    assert.deepEqual(received[2].body, forged);
    assert.equal(received[2].headers['x-webhook-timestamp'], '1769670760');
    assert.equal(received[2].headers['x-webhook-signature'], signWebhook('k', id, '1769670760'));
  });
});

describe('uploads, credit, control API, CLI', () => {
  test('base64, multipart stream and url uploads return downloadUrl and fileUrl serving the bytes', async () => {
    const png = makePng(8, 8, () => [1, 2, 3]);
    const b = await api('/api/file-base64-upload', { method: 'POST', body: { base64Data: `data:image/png;base64,${png.toString('base64')}`, uploadPath: 'images/x', fileName: 'a.png' } });
    assert.equal(b.json.success, true);
    assert.equal(b.json.code, 200);
    assert.equal(b.json.data.downloadUrl, b.json.data.fileUrl);
    assert.equal(b.json.data.filePath, 'images/x/a.png');
    assert.equal(b.json.data.fileSize, png.length);
    assert.equal(b.json.data.mimeType, 'image/png');
    const got = await fetch(b.json.data.downloadUrl);
    assert.equal(got.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(png));

    const fd = new FormData();
    fd.append('file', new Blob([png], { type: 'image/png' }), 'orig.png');
    fd.append('uploadPath', 'images/y');
    fd.append('fileName', 'b.jpg');
    const s = await fetch(`${sim.url}/api/file-stream-upload`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: fd }).then((r) => r.json());
    assert.equal(s.code, 200, JSON.stringify(s));
    assert.equal(s.data.mimeType, 'image/jpeg'); // content type from the extension, like Kie
    const got2 = await fetch(s.data.fileUrl);
    assert.equal(got2.headers.get('content-type'), 'image/jpeg');
    assert.ok(Buffer.from(await got2.arrayBuffer()).equals(png));

    const u = await api('/api/file-url-upload', { method: 'POST', body: { fileUrl: `${auxUrl}/img.png`, uploadPath: 'remote' } });
    assert.equal(u.json.code, 200, u.text);
    assert.equal((await fetch(u.json.data.downloadUrl)).status, 200);

    // uploaded file works as an edit input
    const c = await createJob('google/nano-banana-edit', { prompt: 'e', image_urls: [b.json.data.downloadUrl] });
    assert.equal((await pollJob(c.json.data.taskId)).data.state, 'success');

    assert.deepEqual((await api('/api/file-base64-upload', { method: 'POST', body: { base64Data: '@@@', uploadPath: 'a' } })).json, {
      success: false,
      code: 400,
      msg: 'Base64 decoding failed: Invalid Base64 format',
    });
    assert.equal((await api('/api/file-base64-upload', { method: 'POST', body: { base64Data: 'AAAA' } })).json.msg, 'Missing required parameter: uploadPath');
    assert.deepEqual((await api('/api/file-base64-upload', { method: 'POST', body: { base64Data: 'AAAA', uploadPath: 'a' }, key: 'bad' })).json, {
      success: false,
      code: 401,
      msg: 'Authentication failed: Invalid API Key',
    });
  });

  test('credit is free and numeric; stats and tasks views; latency; reset', async () => {
    const c = await api('/api/v1/chat/credit');
    assert.deepEqual(c.json, { code: 200, msg: 'success', data: 10000 });
    const id = (await createJob('google/nano-banana', { prompt: 'x' }, { callBackUrl: 'http://127.0.0.1:1/cb' })).json.data.taskId;
    await api(`/api/v1/jobs/recordInfo?taskId=${id}`);
    await api(`/api/v1/jobs/recordInfo?taskId=${id}`);
    const stats = await control('stats', undefined, 'GET');
    assert.equal(stats.create, 1);
    assert.equal(stats.record, 2);
    assert.equal(stats.credit, 1);
    assert.equal(stats.recordByTask[id], 2);
    const tasks = await control('tasks', undefined, 'GET');
    assert.equal(tasks.length, 1);
    for (const k of ['id', 'family', 'model', 'input', 'callBackUrl', 'state', 'inputsFetched', 'callbacks', 'createdAt']) assert.ok(k in tasks[0], k);
    assert.equal(tasks[0].family, 'jobs');
    assert.equal((await api('/_sim/tasks/nope', { key: null })).status, 404);

    await control('config', { latencyMs: 120 });
    const t0 = Date.now();
    await api('/api/v1/chat/credit');
    assert.ok(Date.now() - t0 >= 110);

    await control('reset', {});
    assert.equal(sim.state.tasks.size, 0);
    assert.equal(sim.config.latencyMs, 0);
    assert.equal((await control('stats', undefined, 'GET')).create, 0);
  });

  test('CLI prints the listening line and logs requests as JSON lines', async () => {
    const file = fileURLToPath(new URL('./kie-sim.mjs', import.meta.url));
    const child = spawn(process.execPath, [file, '--port', '0', '--api-key', 'cli-key', '--step-ms', '10'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const lines = [];
      let buf = '';
      child.stdout.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          lines.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
      });
      await waitFor(() => lines.length >= 1, 5000);
      assert.equal(lines[0].msg, 'kie simulator listening');
      assert.match(lines[0].url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const r = await fetch(`${lines[0].url}/api/v1/chat/credit`, { headers: { Authorization: 'Bearer cli-key' } }).then((x) => x.json());
      assert.equal(r.code, 200);
      await waitFor(() => lines.length >= 2, 5000);
      assert.equal(lines[1].path, '/api/v1/chat/credit');
      assert.equal(lines[1].status, 200);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
