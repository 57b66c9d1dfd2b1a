// Without PUBLIC_BASE_URL there are no callbacks: reading the task polls Kie.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild } from './harness.mjs';

let s;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'polling', callbacks: false });
});
after(async () => s && s.close());

test('GET /api/tasks/:id polls Kie and completes the task', async () => {
  const u = await s.createUser(5);
  const r = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'polled banana' } });
  assert.equal(r.status, 202, r.text);
  const created = s.sim.state.tasks.get(r.body.task.provider_task_id);
  assert.ok(created, 'the simulator has the task');
  assert.equal(created.callBackUrl ?? null, null, 'no callback URL without PUBLIC_BASE_URL');
  const t = await s.waitTerminal(u.key, r.body.task.id);
  assert.equal(t.state, 'succeeded');
  assert.equal(t.results.length, 1);
});

test('many clients polling one task do not multiply calls to Kie', async () => {
  const u = await s.createUser(5);
  const r = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'slow one [sim:slow]' } });
  const pid = r.body.task.provider_task_id;
  const before = s.sim.state.stats.recordByTask?.[pid] ?? 0;
  const started = Date.now();
  await Promise.all(Array.from({ length: 20 }, () => s.task(u.key, r.body.task.id)));
  await Promise.all(Array.from({ length: 20 }, () => s.task(u.key, r.body.task.id)));
  const elapsed = Date.now() - started;
  const after = s.sim.state.stats.recordByTask?.[pid] ?? 0;
  // One refresh per task per POLL_INTERVAL_SECONDS (3 s) at most.
  assert.ok(after - before <= 1 + Math.floor(elapsed / 3000), `${after - before} record calls for 40 polls in ${elapsed} ms`);
});
