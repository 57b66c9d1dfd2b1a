// Every model, every input path: text-to-image, multipart uploads and
// image_urls, with the simulator in strict mode (unknown Kie fields are 422),
// so a wrong field name for any model fails the task.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild, pngBytes, ledgerInvariant } from './harness.mjs';
import { imageSize } from '../../sim/kie-sim.mjs';

let s;
let user;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'models', sim: { strictInputKeys: true }, vars: { MAX_ACTIVE_TASKS: '50', RATE_LIMIT_PER_MINUTE: '1000', MAX_UPLOAD_BYTES: '200000' } });
  user = await s.createUser(1000);
});
after(async () => s && s.close());

const MODELS = {
  'nano-banana': { t2i: true, i2i: false },
  'nano-banana-edit': { t2i: false, i2i: true },
  'nano-banana-pro': { t2i: true, i2i: true, extra: { resolution: '2K', output_format: 'jpeg' } },
  'nano-banana-2': { t2i: true, i2i: true, extra: { resolution: '4K', aspect_ratio: '8:1' } },
  'gpt-4o': { t2i: true, i2i: true, extra: { aspect_ratio: '3:2' } },
  'flux-kontext-pro': { t2i: true, i2i: true, extra: { aspect_ratio: '21:9', output_format: 'png' } },
  'flux-kontext-max': { t2i: true, i2i: true },
};

function multipart(fields, files = []) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) form.append(k, v);
  for (const f of files) form.append('image', new Blob([f.bytes], { type: f.type || 'image/png' }), f.name || 'in.png');
  return form;
}

function simTask(id) {
  return s.sim.state.tasks.get(id);
}

for (const [model, spec] of Object.entries(MODELS)) {
  test(`${model}: every allowed input path completes`, async () => {
    const done = [];
    if (spec.t2i) {
      const r = await s.api('POST', '/api/create/ai-image', { key: user.key, json: { model, prompt: `t2i ${model}`, ...(spec.extra || {}) } });
      assert.equal(r.status, 202, r.text);
      done.push(r.body.task.id);
    }
    if (spec.i2i) {
      // Multipart upload, the seed's form: `type` names the model, `mode` is given.
      const form = multipart({ prompt: `edit ${model}`, type: model, mode: 'image-to-image', ...(spec.extra || {}) }, [{ bytes: pngBytes(40, 30) }]);
      const r = await s.api('POST', '/api/create/ai-image', { key: user.key, form });
      assert.equal(r.status, 202, r.text);
      const t = await s.waitTerminal(user.key, r.body.task.id);
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
      const fetched = simTask(t.provider_task_id).inputsFetched;
      assert.equal(fetched.length, 1);
      assert.match(fetched[0].url, /\/files\/in\/[a-z2-7]+\.png\?exp=\d+&sig=/, 'Kie fetched the input through our signed URL');
      assert.equal(fetched[0].status, 200);
      assert.equal(fetched[0].kind, 'png');
      // The same image again, by URL (a signed link to our storage).
      const r2 = await s.api('POST', '/api/create/ai-image', { key: user.key, json: { model, prompt: `by url ${model}`, image_urls: [t.inputs[0].url], ...(spec.extra || {}) } });
      assert.equal(r2.status, 202, r2.text);
      done.push(r2.body.task.id);
    }
    for (const id of done) {
      const t = await s.waitTerminal(user.key, id);
      assert.equal(t.state, 'succeeded', `${model} ${id}: ${JSON.stringify(t.error)}`);
      const img = await fetch(t.results[0].url);
      assert.equal(img.status, 200);
      assert.match(img.headers.get('content-type'), /^image\/(png|jpeg)$/);
      const sim = simTask(t.provider_task_id);
      assert.ok(sim, 'the simulator created it');
      if (spec.extra?.resolution) assert.equal(sim.resolution, spec.extra.resolution);
    }
  });
}

test('Flux Kontext: an edit without a chosen ratio sends none, so Kie keeps the input image\'s ratio', async () => {
  const form = multipart({ prompt: 'keep my ratio', model: 'flux-kontext-pro' }, [{ bytes: pngBytes(30, 40) }]);
  const r = await s.api('POST', '/api/create/ai-image', { key: user.key, form });
  assert.equal(r.status, 202, r.text);
  assert.equal(r.body.task.aspect_ratio, null);
  const t = await s.waitTerminal(user.key, r.body.task.id);
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const sim = s.sim.taskView(t.provider_task_id);
  assert.ok(!('aspectRatio' in sim.body), `the Worker sent aspectRatio: ${JSON.stringify(sim.body)}`);
  assert.equal(sim.aspectSource, 'input');
  const out = imageSize(Buffer.from(await (await fetch(t.results[0].url)).arrayBuffer()));
  assert.equal(out.width * 4, out.height * 3, `result ${out.width}x${out.height} keeps the 3:4 input ratio`);

  // A chosen ratio is sent as chosen.
  const chosen = await s.api('POST', '/api/create/ai-image', { key: user.key, form: multipart({ prompt: 'square please', model: 'flux-kontext-pro', aspect_ratio: '1:1' }, [{ bytes: pngBytes(30, 40) }]) });
  const t2 = await s.waitTerminal(user.key, chosen.body.task.id);
  assert.equal(s.sim.taskView(t2.provider_task_id).body.aspectRatio, '1:1');
});

test('uploads are checked by their bytes, size and count before any money moves', async () => {
  const u = await s.createUser(10);
  const html = new TextEncoder().encode('<html><body>not a png</body></html>');
  const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>');
  const big = new Uint8Array(210000);
  big.set(pngBytes(8, 8).subarray(0, 60));
  const cases = [
    [multipart({ prompt: 'x', model: 'nano-banana-edit' }, [{ bytes: html, name: 'cat.png', type: 'image/png' }]), 415, 'unsupported_media_type'],
    [multipart({ prompt: 'x', model: 'nano-banana-edit' }, [{ bytes: svg, name: 'cat.svg', type: 'image/svg+xml' }]), 415, 'unsupported_media_type'],
    [multipart({ prompt: 'x', model: 'nano-banana-edit' }, [{ bytes: big }]), 413, 'payload_too_large'],
    [multipart({ prompt: 'x', model: 'flux-kontext-pro' }, [{ bytes: pngBytes() }, { bytes: pngBytes() }]), 422, 'validation_failed'],
    [multipart({ prompt: 'x', model: 'nano-banana' }, [{ bytes: pngBytes() }]), 422, 'validation_failed'],
    [multipart({ prompt: 'x', model: 'nano-banana-edit' }), 422, 'validation_failed'],
    [multipart({ prompt: 'x', model: 'gpt-4o', aspect_ratio: '16:9' }), 422, 'validation_failed'],
    [multipart({ prompt: 'x', model: 'nano-banana-pro', mode: 'text-to-image' }, [{ bytes: pngBytes() }]), 422, 'validation_failed'],
  ];
  for (const [form, status, code] of cases) {
    const r = await s.api('POST', '/api/create/ai-image', { key: u.key, form });
    assert.equal(r.status, status, r.text);
    assert.equal(r.body.error.code, code);
  }
  const urlCases = [
    ['http://127.0.0.1:9/cat.png', 'private'],
    ['http://169.254.169.254/latest/meta-data', 'private'],
    ['file:///etc/passwd', 'http'],
    [`${s.url}/files/in/abc.png`, 'signed'],
    [`${s.url}/files/in/abc.png?exp=9999999999&sig=forged`, 'signed'],
  ];
  for (const [url] of urlCases) {
    const r = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana-edit', prompt: 'x', image_urls: [url] } });
    assert.equal(r.status, 422, `${url}: ${r.text}`);
    assert.equal(r.body.error.details.field, 'image_urls[0]');
  }
  const inv = await ledgerInvariant(s, u.id);
  assert.equal(inv.balance, 10, 'nothing was charged');
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM tasks WHERE user_id = ?', u.id))[0].n, 0);
});
