// The cron under Cloudflare's Free-plan budget (50 subrequests per invocation):
// a backlog of 500 queued and 300 quiet tasks drains across runs, every run
// stays within its budget, nothing is lost and nothing is submitted twice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startStack, requireBuild, ledgerInvariant, SECRETS } from './harness.mjs';

const QUEUED = 500;
const QUIET = 300;
const PRICE = 2;
let s;
before(async () => {
  requireBuild();
  s = await startStack({
    name: 'backlog',
    sim: { rateLimit: { enabled: false }, credits: 1e9 },
    vars: { KIE_CREATES_PER_WINDOW: '10000', SUBREQUEST_BUDGET: '50' },
  });
});
after(async () => s && s.close());

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
const taskId = () => `tsk_${Array.from(randomBytes(26), (b) => B32[b & 31]).join('')}`;

/** Kie tasks that really exist at the simulator (so a refresh finds them), made without our Worker. */
async function kieTasks(n) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${s.sim.url}/api/v1/jobs/createTask`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRETS.KIEAI_APIKEY}`, 'content-type': 'application/json', 'user-agent': 'backlog-test' },
      body: JSON.stringify({ model: 'google/nano-banana', input: { prompt: `quiet ${i}`, output_format: 'png' } }),
    });
    ids.push((await r.json()).data.taskId);
  }
  return ids;
}

test('500 queued and 300 quiet tasks drain across cron runs inside the subrequest budget', { timeout: 600000 }, async () => {
  const u = await s.createUser(QUEUED * PRICE + QUIET * PRICE);
  const now = Date.now();
  const providerIds = await kieTasks(QUIET);
  const createsBefore = s.sim.state.stats.create;

  // The backlog is seeded as the create path leaves it: each task paid for by a reserve row.
  const rows = [
    ...Array.from({ length: QUEUED }, (_, i) => ({ id: taskId(), state: 'queued', provider: null, at: now - 60000 + i })),
    ...providerIds.map((p, i) => ({ id: taskId(), state: 'submitted', provider: p, at: now - 3600000 + i })),
  ];
  for (let i = 0; i < rows.length; i += 100) {
    const chunk = JSON.stringify(rows.slice(i, i + 100));
    await s.sql(
      `INSERT INTO tasks (id, user_id, model, prompt, aspect_ratio, output_format, inputs, results, state, credits, provider_task_id,
         callback_token, request_hash, attempts, checked_at, submitted_at, deadline_at, created_at, updated_at)
       SELECT j.value ->> '$.id', ?2, 'nano-banana', 'backlog', '1:1', 'png', '[]', '[]', j.value ->> '$.state', ?3, j.value ->> '$.provider',
         lower(hex(randomblob(20))), 'seed', 0,
         CASE WHEN j.value ->> '$.provider' IS NULL THEN NULL ELSE j.value ->> '$.at' END,
         CASE WHEN j.value ->> '$.provider' IS NULL THEN NULL ELSE j.value ->> '$.at' END,
         ?4, j.value ->> '$.at', j.value ->> '$.at' FROM json_each(?1) j`,
      chunk, u.id, PRICE, now + 3600000,
    );
    await s.sql(
      `INSERT INTO ledger (user_id, task_id, kind, amount, balance_after, actor, created_at)
       SELECT ?2, j.value ->> '$.id', 'reserve', -?3, 0, 'user', j.value ->> '$.at' FROM json_each(?1) j`,
      chunk, u.id, PRICE,
    );
  }
  await s.sql('UPDATE users SET credits = 0 WHERE id = ?', u.id);
  assert.deepEqual(await ledgerInvariant(s, u.id), { balance: 0, ledgerSum: 0, lowest: 0 });

  let runs = 0;
  for (;;) {
    const [{ n: open }] = await s.sql("SELECT COUNT(*) AS n FROM tasks WHERE user_id = ? AND state IN ('queued','submitted','generating')", u.id);
    if (open === 0) break;
    assert.ok(runs < 400, `still ${open} unfinished tasks after ${runs} cron runs`);
    await s.cron();
    runs++;
  }

  const cronLines = s.logs.filter((l) => l.event === 'cron.run' || l.event === 'cron.failed');
  assert.equal(cronLines.filter((l) => l.event === 'cron.failed').length, 0, JSON.stringify(cronLines.find((l) => l.event === 'cron.failed')));
  assert.ok(cronLines.length >= runs);
  for (const l of cronLines) assert.ok(l.subrequests <= 50, `a cron run spent ${l.subrequests} subrequests`);
  assert.ok(runs > 10, `the backlog drained across runs (${runs})`);
  assert.ok(cronLines.some((l) => l.summary?.stopped_early), 'runs stopped at their budget and left the rest');

  const [{ n: succeeded }] = await s.sql("SELECT COUNT(*) AS n FROM tasks WHERE user_id = ? AND state = 'succeeded'", u.id);
  assert.equal(succeeded, QUEUED + QUIET, 'nothing was lost');
  assert.equal(s.sim.state.stats.create - createsBefore, QUEUED, 'each queued task was submitted exactly once');
  const [{ n: distinct }] = await s.sql('SELECT COUNT(DISTINCT provider_task_id) AS n FROM tasks WHERE user_id = ?', u.id);
  assert.equal(distinct, QUEUED + QUIET);
  const [{ n: captures }] = await s.sql("SELECT COUNT(*) AS n FROM ledger WHERE user_id = ? AND kind = 'capture'", u.id);
  assert.equal(captures, QUEUED + QUIET, 'each task captured once');
  const inv = await ledgerInvariant(s, u.id);
  assert.equal(inv.balance, 0);
  assert.equal(inv.ledgerSum, 0);
});
