// The operator commands (scripts/ops.mjs) against a running Worker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startStack, requireBuild, ROOT, SECRETS } from './harness.mjs';

let s;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'ops-tools' });
  await s.cron();
});
after(async () => s && s.close());

function ops(...args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['scripts/ops.mjs', ...args], { cwd: ROOT, env: { ...process.env, ADMIN_TOKEN: SECRETS.ADMIN_TOKEN } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out }));
  });
}

test('diagnose and check-kie report the chain and exit 0 when it is healthy', async () => {
  const d = await ops('diagnose', '--url', s.url);
  assert.equal(d.code, 0, d.out);
  assert.match(d.out, /diagnose: PASS/);
  const k = await ops('check-kie', '--url', s.url);
  assert.equal(k.code, 0, k.out);
  assert.match(k.out, /kie key: pass: .*balance/);
  assert.ok(!d.out.includes(SECRETS.KIEAI_APIKEY) && !k.out.includes(SECRETS.KIEAI_APIKEY));
});

test('full-flow follows a task to a stored image; check-image-url tells a fetchable image from a broken one', async () => {
  const f = await ops('full-flow', '--url', s.url);
  assert.equal(f.code, 0, f.out);
  assert.match(f.out, /queued -> |submitted -> /);
  assert.match(f.out, /result 200 image\/png/);
  assert.match(f.out, /full flow ok/);
  const again = await ops('full-flow', '--url', s.url);
  assert.equal(again.code, 0, 'reuses the ops-smoke user');
  const users = await s.admin('GET', '/api/admin/users?limit=100');
  assert.equal(users.body.users.filter((u) => u.name === 'ops-smoke').length, 1);

  const [row] = await s.sql("SELECT t.id FROM tasks t JOIN users u ON u.id = t.user_id WHERE u.name = 'ops-smoke' AND t.state = 'succeeded' LIMIT 1");
  const view = await s.admin('GET', `/api/admin/tasks?limit=5`);
  const url = view.body.tasks.find((t) => t.id === row.id).results[0].url;
  const good = await ops('check-image-url', '--url', url);
  assert.equal(good.code, 0, good.out);
  assert.match(good.out, /kind png/);
  const bad = await ops('check-image-url', '--url', `${s.url}/api/health`);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /not a jpeg\/png\/webp/);
});
