// The first vertical slice and the cross-cutting rules of the foundation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild, waitFor, SECRETS, migrationNames } from './harness.mjs';
import { startKieSim } from '../../sim/kie-sim.mjs';

let s;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'foundation' });
});
after(async () => s && s.close());

test('text-to-image with a callback ends succeeded with a result served from /files/', async () => {
  const u = await s.createUser(10);
  const r = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'a banana on the moon' } });
  assert.equal(r.status, 202, r.text);
  assert.match(r.body.task.id, /^tsk_[a-z2-7]{26}$/);
  assert.ok(['queued', 'submitted'].includes(r.body.task.state));
  assert.ok(r.headers.get('x-request-id'));

  // The callback (not polling) must finish it: wait on the D1 row, without GET.
  const id = r.body.task.id;
  await waitFor(async () => (await s.sql('SELECT state FROM tasks WHERE id = ?', id))[0].state === 'succeeded', { what: 'callback to finish the task' });
  assert.ok(s.logs.some((l) => l.event === 'callback.received' && l.task_id === id), 'callback was received');

  const t = await s.task(u.key, id);
  assert.equal(t.state, 'succeeded');
  assert.equal(t.results.length, 1);
  assert.match(t.results[0].url, /\/files\/out\//);
  const img = await fetch(t.results[0].url);
  assert.equal(img.status, 200);
  assert.equal(img.headers.get('content-type'), 'image/png');
  assert.equal(img.headers.get('x-content-type-options'), 'nosniff');
  const bytes = Buffer.from(await img.arrayBuffer());
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

  // The file needs its signature.
  const unsigned = await fetch(t.results[0].url.split('?')[0]);
  assert.equal(unsigned.status, 404);
  const tampered = await fetch(t.results[0].url.replace(/sig=[^&]+/, 'sig=AAAA'));
  assert.equal(tampered.status, 404);
  // HEAD and Range.
  const head = await fetch(t.results[0].url, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(bytes.length));
  const part = await fetch(t.results[0].url, { headers: { range: 'bytes=0-7' } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes 0-7/${bytes.length}`);
  assert.equal((await part.arrayBuffer()).byteLength, 8);
});

test('bad input gets the api.md error, never a 500, and the log says why', async () => {
  const u = await s.createUser(10);
  const cases = [
    [{ method: 'POST', path: '/api/create/ai-image', json: '{"model": "nano-banana", ' }, 400, 'invalid_json'],
    [{ method: 'POST', path: '/api/create/ai-image', json: { model: 'dall-e', prompt: 'x' } }, 422, 'validation_failed', 'model'],
    [{ method: 'POST', path: '/api/create/ai-image', json: { model: 'nano-banana' } }, 422, 'validation_failed', 'prompt'],
    [{ method: 'POST', path: '/api/create/ai-image', json: { model: 'nano-banana', prompt: 7 } }, 400, 'invalid_request'],
    [{ method: 'POST', path: '/api/create/ai-image', json: { model: 'nano-banana', prompt: 'x'.repeat(300 * 1024) } }, 413, 'payload_too_large'],
    [{ method: 'POST', path: '/api/create/ai-image', body: 'prompt=x', headers: { 'content-type': 'text/plain' } }, 415, 'unsupported_media_type'],
    [{ method: 'GET', path: '/api/create/ai-image' }, 405, 'method_not_allowed'],
    [{ method: 'DELETE', path: '/api/tasks' }, 405, 'method_not_allowed'],
    [{ method: 'GET', path: '/api/nothing-here' }, 404, 'not_found'],
    [{ method: 'GET', path: '/api/tasks/tsk_doesnotexist' }, 404, 'not_found'],
  ];
  for (const [req, status, code, field] of cases) {
    const r = await s.api(req.method, req.path, { key: u.key, json: req.json, body: req.body, headers: req.headers });
    assert.equal(r.status, status, `${req.method} ${req.path}: ${r.text.slice(0, 200)}`);
    assert.equal(r.body.error.code, code);
    assert.equal(typeof r.body.error.message, 'string');
    assert.equal(r.body.error.request_id, r.headers.get('x-request-id'));
    if (field) assert.equal(r.body.error.details.field, field);
    if (status === 405) assert.ok(r.headers.get('allow'));
    const line = await waitFor(() => s.logs.find((l) => l.event === 'http.request' && l.request_id === r.body.error.request_id), { what: 'request log line' });
    assert.equal(line.status, status);
    assert.equal(line.error_code, code);
    assert.ok(s.logs.some((l) => l.event === 'http.rejected' && l.request_id === r.body.error.request_id && l.reason), 'the log says why');
  }
  const me = await s.api('GET', '/api/me', { key: u.key });
  assert.equal(me.body.user.credits, 10, 'bad requests cost nothing');
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM tasks WHERE user_id = ?', u.id))[0].n, 0);
  assert.ok(!s.responses.some((r) => r.status >= 500), 'no 500 anywhere');
});

test('no key is 401, an admin token is not a user key', async () => {
  const r = await s.api('GET', '/api/me');
  assert.equal(r.status, 401);
  assert.equal(r.body.error.code, 'unauthorized');
  const r2 = await s.api('GET', '/api/me', { key: SECRETS.ADMIN_TOKEN });
  assert.equal(r2.status, 401);
});

test('with the simulator stopped, create answers 202 queued and the task completes once it is back', async () => {
  const u = await s.createUser(10);
  const simPort = new URL(s.sim.url).port;
  await s.sim.close();
  const r = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'while Kie is down' } });
  assert.equal(r.status, 202, r.text);
  assert.equal(r.body.task.state, 'queued');
  const failedCall = await waitFor(() => s.logs.find((l) => l.event === 'kie.call' && l.task_id === r.body.task.id && l.kie_transport.startsWith('unreachable')), { what: 'the failed Kie call in the log' });
  assert.equal(failedCall.kie_op, 'create');
  assert.ok(s.logs.some((l) => l.event === 'task.deferred' && l.task_id === r.body.task.id && l.cause), 'the log says why it was deferred');
  const me = await s.api('GET', '/api/me', { key: u.key });
  assert.equal(me.body.user.credits, 8, 'reserved, not lost');

  s.sim = await startKieSim({ port: Number(simPort), host: '127.0.0.1', apiKey: SECRETS.KIEAI_APIKEY, stepMs: 120 });
  await s.cron();
  const t = await s.waitTerminal(u.key, r.body.task.id);
  assert.equal(t.state, 'succeeded');
});

test('D1 is migrated by wrangler itself: d1_migrations as wrangler records it, and diagnose agrees', async () => {
  const rows = await s.sql('SELECT id, name, applied_at FROM d1_migrations ORDER BY id');
  assert.deepEqual(rows.map((r) => r.name), migrationNames());
  rows.forEach((r, i) => {
    assert.equal(r.id, i + 1);
    assert.match(r.applied_at, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
  });
  const [table] = await s.sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'd1_migrations'");
  assert.deepEqual(table.sql.replace(/\s+/g, ' '), 'CREATE TABLE d1_migrations( id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL )');
  const r = await s.admin('GET', '/api/admin/diagnose');
  const d1 = r.body.checks.find((c) => c.name === 'd1');
  assert.equal(d1.status, 'pass', d1.hint);
  assert.ok(d1.hint.includes(migrationNames().at(-1)), d1.hint);
});
