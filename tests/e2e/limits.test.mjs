// Cloudflare's per-invocation limits, which local workerd does not enforce,
// held here: wasm memory (bytes do not pass through wasm), body caps without
// Content-Length, image structure, outbound URLs read as fetch reads them, a
// refused create storing nothing, and the request id.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild, pngBytes, ledgerInvariant, waitFor, SECRETS } from './harness.mjs';

const MiB = 1024 * 1024;
let s;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'limits', vars: { MAX_ACTIVE_TASKS: '50', RATE_LIMIT_PER_MINUTE: '1000' } });
});
after(async () => s && s.close());

/** A real PNG header followed by `extra` bytes: a large but well-formed upload. */
const bigPng = (extra) => Buffer.concat([Buffer.from(pngBytes(16, 16)), Buffer.alloc(extra, 0x41)]);

function form(fields, images = []) {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  for (const bytes of images) f.append('image', new Blob([bytes], { type: 'image/png' }), 'in.png');
  return f;
}

/** Sends a body as a stream: Transfer-Encoding chunked, no Content-Length. */
async function chunked(path, { key, contentType, bytes, headers = {} }) {
  const body = new ReadableStream({
    start(c) {
      for (let i = 0; i < bytes.length; i += 1 * MiB) c.enqueue(bytes.subarray(i, i + 1 * MiB));
      c.close();
    },
  });
  const h = { 'content-type': contentType, ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  const res = await fetch(s.url + path, { method: 'POST', headers: h, body, duplex: 'half', signal: AbortSignal.timeout(90_000) });
  const text = await res.text();
  s.responses.push({ method: 'POST', path, status: res.status, text, requestId: res.headers.get('x-request-id') });
  return { status: res.status, body: JSON.parse(text), headers: res.headers };
}

async function multipartBytes(f) {
  const r = new Response(f);
  return { contentType: r.headers.get('content-type'), bytes: Buffer.from(await r.arrayBuffer()) };
}

const create = (key, json) => s.api('POST', '/api/create/ai-image', { key, json });

test('a 40 MB result and three 9 MB uploads never pass through wasm memory', async () => {
  const u = await s.createUser(1000);
  s.sim.configure({ results: { padBytes: 40 * MiB } });
  try {
    const r = await create(u.key, { model: 'nano-banana', prompt: 'a very large banana' });
    assert.equal(r.status, 202, r.text);
    const t = await s.waitTerminal(u.key, r.body.task.id, 60000);
    assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    assert.ok(t.results[0].bytes > 40 * MiB, `stored ${t.results[0].bytes} bytes`);
    const head = await fetch(t.results[0].url, { method: 'HEAD', signal: AbortSignal.timeout(90_000) });
    assert.equal(Number(head.headers.get('content-length')), t.results[0].bytes);
  } finally {
    s.sim.configure({ results: { padBytes: 0 } });
  }

  const images = [bigPng(9 * MiB), bigPng(9 * MiB), bigPng(9 * MiB)];
  const up = await s.api('POST', '/api/create/ai-image', { key: u.key, form: form({ model: 'nano-banana-2', prompt: 'three big inputs' }, images) });
  assert.equal(up.status, 202, up.text);
  const done = await s.waitTerminal(u.key, up.body.task.id, 60000);
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  // Kie fetched each input back whole, through our signed URLs.
  const fetched = s.sim.taskView(done.provider_task_id).inputsFetched;
  assert.deepEqual(fetched.map((f) => f.status), [200, 200, 200]);
  await s.cron();

  const lines = await waitFor(() => {
    const l = s.logs.filter((x) => ['http.request', 'cron.run', 'background.done'].includes(x.event));
    return l.some((x) => x.event === 'cron.run') ? l : null;
  }, { what: 'the cron line' });
  for (const l of lines) {
    assert.equal(typeof l.wasm_memory_bytes, 'number', JSON.stringify(l));
    assert.ok(l.wasm_memory_bytes <= 16 * MiB, `${l.event} ${l.route} ${l.path ?? ''}: wasm memory ${l.wasm_memory_bytes}`);
  }
});

test('a result is checked by its structure: a PNG signature over 45 MB of zeros fails and is refunded', async () => {
  const u = await s.createUser(10);
  s.sim.configure({ results: { shape: 'fake_png', padBytes: 45 * MiB } });
  try {
    const r = await create(u.key, { model: 'nano-banana', prompt: 'zeros' });
    const t = await s.waitTerminal(u.key, r.body.task.id, 60000);
    assert.equal(t.state, 'failed');
    assert.equal(t.error.code, 'result_invalid');
    const why = s.logs.find((l) => l.event === 'task.state' && l.task_id === t.id && l.to === 'failed');
    assert.match(why.cause, /not an image: PNG/, why.cause);
  } finally {
    s.sim.configure({ results: { shape: 'image', padBytes: 0 } });
  }
  assert.equal((await ledgerInvariant(s, u.id)).balance, 10);
});

test('a result without Content-Length is stored under the cap, and one over it fails', async () => {
  const u = await s.createUser(10);
  s.sim.configure({ results: { chunked: true, padBytes: 3 * MiB } });
  try {
    const ok = await create(u.key, { model: 'nano-banana', prompt: 'chunked result' });
    const t = await s.waitTerminal(u.key, ok.body.task.id, 60000);
    assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    assert.ok(t.results[0].bytes > 3 * MiB);
    const img = Buffer.from(await (await fetch(t.results[0].url, { signal: AbortSignal.timeout(90_000) })).arrayBuffer());
    assert.equal(img.length, t.results[0].bytes);

    s.sim.configure({ results: { padBytes: 51 * MiB } });
    const big = await create(u.key, { model: 'nano-banana', prompt: 'too big' });
    const tb = await s.waitTerminal(u.key, big.body.task.id, 60000);
    assert.equal(tb.state, 'failed');
    assert.equal(tb.error.code, 'result_invalid');
  } finally {
    s.sim.configure({ results: { chunked: false, padBytes: 0 } });
  }
});

test('body caps hold without Content-Length on every path that reads a body', async () => {
  const u = await s.createUser(100);
  const tasksBefore = (await s.sql('SELECT COUNT(*) AS n FROM tasks'))[0].n;
  // 7 × 9 MB multipart, streamed: over the 50 MB cap.
  const seven = await multipartBytes(form({ model: 'nano-banana-2', prompt: 'x' }, Array.from({ length: 7 }, () => bigPng(9 * MiB))));
  const big = await chunked('/api/create/ai-image', { key: u.key, contentType: seven.contentType, bytes: seven.bytes });
  assert.equal(big.status, 413, JSON.stringify(big.body));
  assert.equal(big.body.error.code, 'payload_too_large');

  const json = Buffer.from(JSON.stringify({ model: 'nano-banana', prompt: 'x'.repeat(300 * 1024) }));
  const j = await chunked('/api/create/ai-image', { key: u.key, contentType: 'application/json', bytes: json });
  assert.equal(j.status, 413);

  const cb = Buffer.from(JSON.stringify({ code: 200, data: { taskId: 'x', junk: 'y'.repeat(300 * 1024) } }));
  const w = await chunked('/api/webhooks/kie-image?task=tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa&token=t', { contentType: 'application/json', bytes: cb });
  assert.equal(w.status, 413);

  const admin = Buffer.from(JSON.stringify({ name: 'n'.repeat(20 * 1024), credits: 1 }));
  const a = await chunked('/api/admin/users', { key: SECRETS.ADMIN_TOKEN, contentType: 'application/json', bytes: admin });
  assert.equal(a.status, 413);

  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM tasks'))[0].n, tasksBefore, 'no task was created');
  assert.equal((await ledgerInvariant(s, u.id)).balance, 100, 'nothing was charged');
  for (const l of s.logs.filter((x) => x.event === 'http.request' && x.status === 413)) assert.equal(l.error_code, 'payload_too_large');
});

test('image URLs are read the way the fetcher reads them: every spelling of a private address is refused', async () => {
  const u = await s.createUser(100);
  const before = s.sim.state.stats.create;
  const bypasses = ['http://127.1/a.png', 'http://0x7f.0.0.1/a.png', 'http://0177.0.0.1/a.png', 'http://[::ffff:127.0.0.1]/a.png',
    'http://[::ffff:7f00:1]/a.png', 'http://[0:0:0:0:0:0:0:1]/a.png', 'http://localhost./a.png', 'http://169.254.169.254./latest',
    'http://127.0.0.1\\@example.com/a.png', 'http://[::ffff:a9fe:a9fe]/a.png', 'http://198.18.0.1/a.png', `http://127.0.0.1:${s.port}/api/health`];
  for (const url of bypasses) {
    const r = await create(u.key, { model: 'nano-banana-edit', prompt: 'x', image_urls: [url] });
    assert.equal(r.status, 422, `${url} was accepted: ${r.text}`);
    assert.equal(r.body.error.details.field, 'image_urls[0]');
  }
  assert.equal(s.sim.state.stats.create, before, 'nothing reached Kie');
  const ok = await create(u.key, { model: 'nano-banana-edit', prompt: 'x', image_urls: ['https://images.example.com/cat.png'] });
  assert.equal(ok.status, 202, ok.text);
});

test('result URLs from Kie are checked too: only Kie\'s own origin or a public host is fetched', async () => {
  const u = await s.createUser(10);
  for (const url of [`http://127.0.0.1:${s.port}/api/admin/users`, `http://127.1:${s.port}/api/health`, 'http://[::1]/x.png']) {
    s.sim.configure({ results: { url } });
    try {
      const r = await create(u.key, { model: 'nano-banana', prompt: `hostile result ${url}` });
      const t = await s.waitTerminal(u.key, r.body.task.id);
      assert.equal(t.state, 'failed', url);
      assert.equal(t.error.code, 'result_invalid');
    } finally {
      s.sim.configure({ results: { url: null } });
    }
  }
  // The Worker never called itself.
  assert.ok(!s.logs.some((l) => l.event === 'http.request' && l.path === '/api/admin/users' && l.method === 'GET'));
  assert.equal((await ledgerInvariant(s, u.id)).balance, 10, 'every hostile result was refunded');
});

test('a client-sent cf-ray becomes the request id only when it is a well-formed ray id', async () => {
  const hostile = await s.api('GET', '/api/health', { headers: { 'cf-ray': '<script>alert(1)</script>' } });
  assert.notEqual(hostile.headers.get('x-request-id'), '<script>alert(1)</script>');
  assert.match(hostile.headers.get('x-request-id'), /^[a-z2-7]{16}$/);
  assert.ok(!s.raw.some((line) => line.includes('<script>alert(1)</script>')), 'never in a log line');
  const ray = await s.api('GET', '/api/health', { headers: { 'cf-ray': '8c62826b600ba5f8-SJC' } });
  assert.equal(ray.headers.get('x-request-id'), '8c62826b600ba5f8-SJC');
});

test('every line that closes an invocation stays inside the subrequest budget and six connections', async () => {
  const closing = s.logs.filter((l) => ['http.request', 'cron.run', 'background.done', 'background.failed'].includes(l.event));
  assert.ok(closing.length > 20);
  for (const l of closing) {
    assert.ok(Number.isInteger(l.subrequests) && l.subrequests <= 50, `${l.event} ${l.path ?? ''}: ${l.subrequests} subrequests`);
    assert.ok(l.connections_peak <= 6, `${l.event} ${l.path ?? ''}: ${l.connections_peak} connections`);
  }
});

test('a create refused for the unfinished-task cap, the balance or the rate leaves nothing in storage', async () => {
  const capped = await startStack({ name: 'limits-refused', vars: { MAX_ACTIVE_TASKS: '1', RATE_LIMIT_PER_MINUTE: '1000' } });
  try {
    const u = await capped.createUser(100);
    // One unfinished task (Kie never finishes it) fills the cap.
    const first = await capped.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'hold the slot [sim:never]' } });
    assert.equal(first.status, 202, first.text);
    const keysBefore = await capped.r2Keys('in/');
    for (let i = 0; i < 5; i++) {
      const r = await capped.api('POST', '/api/create/ai-image', { key: u.key, form: form({ model: 'nano-banana-edit', prompt: `refused ${i}` }, [pngBytes(32, 32)]) });
      assert.equal(r.status, 429, r.text);
      assert.equal(r.body.error.details.limit, 'active_tasks');
    }
    const poor = await capped.createUser(0);
    const broke = await capped.api('POST', '/api/create/ai-image', { key: poor.key, form: form({ model: 'nano-banana-edit', prompt: 'no credits' }, [pngBytes(32, 32)]) });
    assert.equal(broke.status, 402);
    assert.deepEqual(await capped.r2Keys('in/'), keysBefore, 'refused creates stored no input');
    assert.equal((await ledgerInvariant(capped, u.id)).balance, 100 - 2);
  } finally {
    await capped.close();
  }
});
