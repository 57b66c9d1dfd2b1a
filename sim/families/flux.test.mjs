// Flux Kontext aspect ratio: without aspectRatio an edit keeps the input image's ratio and a
// text-to-image is 16:9 (docs.kie.ai flux-kontext-api/generate-or-edit-image).
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startKieSim, makePng, makeJpeg, imageSize } from '../kie-sim.mjs';

const KEY = 'sim-key';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let sim;
let aux; // serves the input images
let auxUrl;

before(async () => {
  const files = {
    '/portrait.png': ['image/png', makePng(30, 40, (x, y) => [x * 8, y * 6, 64])], // 3:4
    '/portrait.jpg': ['image/jpeg', makeJpeg(24, 32, (bx, by) => [bx * 60, by * 60, 200])], // 3:4
  };
  aux = http.createServer((req, res) => {
    const f = files[req.url];
    if (!f) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'Content-Type': f[0] });
    res.end(f[1]);
  });
  await new Promise((r) => aux.listen(0, '127.0.0.1', r));
  auxUrl = `http://127.0.0.1:${aux.address().port}`;
  sim = await startKieSim({ port: 0, host: '127.0.0.1', apiKey: KEY, stepMs: 20 });
});

after(async () => {
  await sim.close();
  await new Promise((r) => aux.close(r));
});

beforeEach(() => sim.reset());

async function api(path, body) {
  const res = await fetch(sim.url + path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res.json();
}

const generate = async (body) => {
  const r = await api('/api/v1/flux/kontext/generate', body);
  assert.equal(r.code, 200, JSON.stringify(r));
  return r.data.taskId;
};

/** Poll to the end; the task as the control API shows it and the sizes of its result and origin images. */
async function finished(taskId) {
  const deadline = Date.now() + 5000;
  let d;
  for (;;) {
    d = (await api(`/api/v1/flux/kontext/record-info?taskId=${taskId}`)).data;
    if (d.successFlag !== 0) break;
    if (Date.now() > deadline) throw new Error(`timeout polling ${taskId}`);
    await sleep(10);
  }
  assert.equal(d.successFlag, 1, JSON.stringify(d));
  const sizeOf = async (u) => imageSize(Buffer.from(await (await fetch(u)).arrayBuffer()));
  const view = await (await fetch(`${sim.url}/_sim/tasks/${taskId}`)).json();
  return { view, size: await sizeOf(d.response.resultImageUrl), originSize: await sizeOf(d.response.originImageUrl) };
}

test('an edit without aspectRatio keeps the input image ratio (3:4 PNG and JPEG inputs)', async () => {
  for (const [path, outputFormat, input] of [
    ['/portrait.png', 'png', { width: 30, height: 40 }],
    ['/portrait.jpg', undefined, { width: 24, height: 32 }],
  ]) {
    const id = await generate({ prompt: 'edit', inputImage: `${auxUrl}${path}`, outputFormat });
    const { view, size, originSize } = await finished(id);
    assert.deepEqual(size, { width: 48, height: 64 }, path); // 3:4 with a 64 px long side
    assert.deepEqual(originSize, size);
    assert.equal(view.aspect, '3:4');
    assert.equal(view.aspectSource, 'input');
    assert.ok(!('aspectRatio' in view.body), 'the request had no aspectRatio');
    assert.equal(view.inputsFetched[0].width, input.width);
    assert.equal(view.inputsFetched[0].height, input.height);
  }
});

test('an edit with aspectRatio follows it', async () => {
  const id = await generate({ prompt: 'edit', inputImage: `${auxUrl}/portrait.png`, aspectRatio: '16:9', outputFormat: 'png' });
  const { view, size } = await finished(id);
  assert.deepEqual(size, { width: 64, height: 40 }); // 16:9, short side rounded to a multiple of 8
  assert.equal(view.aspect, '16:9');
  assert.equal(view.aspectSource, 'request');
  assert.equal(view.body.aspectRatio, '16:9');
});

test('a text-to-image without aspectRatio is 16:9', async () => {
  const id = await generate({ prompt: 'a fox' });
  const { view, size } = await finished(id);
  assert.deepEqual(size, { width: 64, height: 40 });
  assert.equal(view.aspect, '16:9');
  assert.equal(view.aspectSource, 'default');
  assert.ok(!('aspectRatio' in view.body));
});

test('an edit whose input cannot be fetched fails as before, with no aspect applied', async () => {
  const id = await generate({ prompt: 'edit', inputImage: `${auxUrl}/missing.png` });
  const deadline = Date.now() + 5000;
  while (!['success', 'fail'].includes(sim.getTask(id).state)) {
    if (Date.now() > deadline) throw new Error('not terminal');
    await sleep(10);
  }
  const view = sim.taskView(id);
  assert.equal(view.state, 'fail');
  assert.equal(view.errorCode, 400);
  assert.equal(view.aspect, null);
  assert.equal(view.aspectSource, 'input');
});
