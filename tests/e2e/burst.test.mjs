// Deferred submission: a burst of 100 creates from many users all finish,
// without ever exceeding Kie's per-account create window.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild, waitFor, ledgerInvariant } from './harness.mjs';

let s;
before(async () => {
  requireBuild();
  // Kie's 20-per-10-s window, scaled to 20 per 2 s so the test runs in seconds.
  s = await startStack({ name: 'burst', sim: { stepMs: 50, rateLimit: { max: 20, windowMs: 2000 } }, vars: { KIE_WINDOW_SECONDS: '2', KIE_CREATES_PER_WINDOW: '20' } });
});
after(async () => s && s.close());

test('100 creates from 20 users: all accepted, all finish, none refused for the Kie limit', async () => {
  const users = await Promise.all(Array.from({ length: 20 }, (_, i) => s.createUser(10, `burst ${i}`)));
  const started = Date.now();
  const creates = await Promise.all(
    users.flatMap((u) => Array.from({ length: 5 }, (_, j) => s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: `burst ${u.id} ${j}` } }).then((r) => ({ u, r })))),
  );
  assert.ok(creates.every(({ r }) => r.status === 202), creates.map(({ r }) => r.status).join(','));
  const queued = creates.filter(({ r }) => r.body.task.state === 'queued').length;
  assert.ok(queued >= 80, `${queued} were queued for later submission`);
  await waitFor(async () => {
    await s.cron();
    const [row] = await s.sql("SELECT COUNT(*) AS n FROM tasks WHERE state = 'succeeded'");
    return row.n === 100;
  }, { timeoutMs: 60000, intervalMs: 1000, what: 'all 100 tasks to succeed' });
  assert.equal(s.sim.state.stats.rateLimited, 0, 'Kie never had to refuse a create');
  assert.equal(s.sim.state.stats.create, 100, 'one Kie create per task');
  // Never more than 20 creates in any 2 s window, as Kie saw them.
  const times = [...s.sim.state.tasks.values()].map((t) => t.createdAt).sort((a, b) => a - b);
  for (let i = 20; i < times.length; i++) assert.ok(times[i] - times[i - 20] >= 2000 - 50, `window exceeded at ${i}`);
  for (const u of users) {
    const inv = await ledgerInvariant(s, u.id);
    assert.equal(inv.balance, 0);
    assert.equal(inv.ledgerSum, 0);
  }
  console.log(`burst of 100 finished in ${Date.now() - started} ms`);
});
