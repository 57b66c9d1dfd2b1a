// Kie misbehaving: rate limits, maintenance, 5xx, timeouts, garbage, failed
// generations and bad results. No task is lost; none is charged without finishing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild, waitFor, ledgerInvariant, sleep, SECRETS } from './harness.mjs';
import { createHmac } from 'node:crypto';

let s;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'faults', vars: { MAX_ACTIVE_TASKS: '50', RATE_LIMIT_PER_MINUTE: '1000' } });
});
after(async () => s && s.close());

const create = (key, prompt, extra = {}) => s.api('POST', '/api/create/ai-image', { key, json: { model: 'nano-banana', prompt, ...extra } });
const ledgerKinds = async (id) => (await s.sql('SELECT kind FROM ledger WHERE task_id = ? ORDER BY id', id)).map((r) => r.kind);

async function settle(key, ids) {
  // The cron is the safety net for whatever the background retries did not finish.
  return waitFor(async () => {
    await s.cron();
    const ts = await Promise.all(ids.map((id) => s.task(key, id)));
    return ts.every((t) => ['succeeded', 'failed'].includes(t.state)) ? ts : null;
  }, { timeoutMs: 30000, intervalMs: 500, what: 'tasks to settle' });
}

test('429, then 455, then HTTP 500, garbage and a refused key: nothing lost, nothing charged without finishing', async () => {
  const u = await s.createUser(100);
  // Each fault lasts until it is cleared, not for a time: a slow machine
  // cannot let a create slip past the end of it.
  s.sim.addFault({ endpoint: 'create', kind: 'code_429', times: -1 });
  const limited = [await create(u.key, 'during 429 a'), await create(u.key, 'during 429 b')];
  for (const r of limited) {
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.task.state, 'queued');
  }
  s.sim.clearFaults();
  s.sim.addFault({ endpoint: 'create', kind: 'code_455', times: -1 });
  const maint = await create(u.key, 'during maintenance');
  assert.equal(maint.status, 202);
  assert.equal(maint.body.task.state, 'queued');
  s.sim.clearFaults();
  const settled = await settle(u.key, [...limited, maint].map((r) => r.body.task.id));
  assert.deepEqual(settled.map((t) => t.state), ['succeeded', 'succeeded', 'succeeded']);
  for (const t of settled) assert.deepEqual(await ledgerKinds(t.id), ['reserve', 'capture']);
  // The log explains each retry.
  const deferrals = s.logs.filter((l) => l.event === 'task.deferred' && l.task_id === limited[0].body.task.id);
  assert.ok(deferrals.length >= 1 && deferrals.every((l) => /429/.test(l.cause) && l.next_attempt_at && l.attempt >= 1), JSON.stringify(deferrals));
  assert.ok(s.logs.some((l) => l.event === 'task.deferred' && l.task_id === maint.body.task.id && /455/.test(l.cause)));

  // A 500 may or may not have created the task at Kie: fail and refund, never resubmit.
  s.sim.addFault({ endpoint: 'create', kind: 'http_500', times: 1 });
  const five = await create(u.key, 'during a 500');
  assert.equal(five.status, 502, five.text);
  assert.equal(five.body.error.code, 'upstream_error');
  assert.equal(five.body.error.details.task.state, 'failed');
  assert.equal(five.body.error.details.task.error.code, 'submission_failed');
  assert.deepEqual(await ledgerKinds(five.body.error.details.task.id), ['reserve', 'release']);
  assert.ok(s.logs.some((l) => l.event === 'kie.ambiguous' && l.task_id === five.body.error.details.task.id));

  s.sim.addFault({ endpoint: 'create', kind: 'garbage', times: 1 });
  const garbage = await create(u.key, 'garbage answer');
  assert.equal(garbage.status, 502);

  // Kie says our key is wrong: refused for good, refunded, and the log has Kie's code.
  s.sim.addFault({ endpoint: 'create', kind: 'code_401', times: 1 });
  const unauth = await create(u.key, 'bad key');
  assert.equal(unauth.status, 502);
  assert.ok(s.logs.some((l) => l.event === 'kie.rejected' && l.kie_code === 401));

  // 501 (generation failed) and 505 (model disabled) are Kie's definite refusals, not lost answers.
  for (const code of [501, 505]) {
    s.sim.addFault({ endpoint: 'create', kind: `code_${code}`, times: 1 });
    const refused = await create(u.key, `refused ${code}`);
    assert.equal(refused.status, 502, refused.text);
    const id = refused.body.error.details.task.id;
    assert.deepEqual(await ledgerKinds(id), ['reserve', 'release']);
    assert.ok(s.logs.some((l) => l.event === 'kie.rejected' && l.task_id === id && l.kie_code === code), `kie.rejected ${code}`);
    assert.ok(!s.logs.some((l) => l.event === 'kie.ambiguous' && l.task_id === id), `${code} is not ambiguous`);
  }

  const inv = await ledgerInvariant(s, u.id);
  assert.equal(inv.balance, 100 - 3 * 2, 'only the three finished tasks are paid for');
  assert.equal(inv.ledgerSum, inv.balance);
  const active = await s.sql("SELECT COUNT(*) AS n FROM tasks WHERE user_id = ? AND state NOT IN ('succeeded','failed')", u.id);
  assert.equal(active[0].n, 0, 'no task is left hanging');
});

test('a create Kie never answers times out: failed, refunded, logged as a timeout', async () => {
  // A short Kie timeout on a stack of its own: elsewhere a loaded machine
  // could make a genuine answer miss it.
  const t = await startStack({ name: 'kie-timeout', vars: { KIE_TIMEOUT_MS: '1000' } });
  try {
    const u = await t.createUser(10);
    t.sim.addFault({ endpoint: 'create', kind: 'timeout', times: 1 });
    const slow = await t.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'during a timeout' } });
    assert.equal(slow.status, 502, slow.text);
    const id = slow.body.error.details.task.id;
    assert.deepEqual((await t.sql('SELECT kind FROM ledger WHERE task_id = ? ORDER BY id', id)).map((r) => r.kind), ['reserve', 'release']);
    assert.ok(t.logs.some((l) => l.event === 'kie.call' && l.task_id === id && l.kie_transport === 'timed out'));
    assert.equal((await ledgerInvariant(t, u.id)).balance, 10);
  } finally {
    await t.close();
  }
});

test('record-info failing for a while: polling recovers', async () => {
  s.sim.configure({ callbacks: { drop: true } });
  try {
    const u = await s.createUser(10);
    // Failing until the Worker has met the failure, then recovering.
    s.sim.addFault({ endpoint: 'record', kind: 'http_500', times: -1 });
    const r = await create(u.key, 'record is flaky');
    const id = r.body.task.id;
    await waitFor(async () => {
      await s.task(u.key, id);
      return s.logs.some((l) => l.event === 'kie.record_unavailable' && l.task_id === id);
    }, { timeoutMs: 30000, intervalMs: 500, what: 'a poll to meet the failing record-info' });
    s.sim.clearFaults();
    const t = await s.waitTerminal(u.key, id, 30000);
    assert.equal(t.state, 'succeeded');
  } finally {
    s.sim.clearFaults();
    s.sim.configure({ callbacks: { drop: false } });
  }
});

test('failed generations and bad results fail with a cause a person understands, refunded', async () => {
  const u = await s.createUser(100);
  // A correctly signed link to an input that does not exist: Kie cannot fetch it.
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const key = 'in/doesnotexist.png';
  const sig = createHmac('sha256', SECRETS.FILE_URL_SECRET).update(`file:${key}:${exp}`).digest().subarray(0, 20).toString('base64url');
  const missingInput = `${s.url}/files/${key}?exp=${exp}&sig=${sig}`;
  const cases = [
    ['nano-banana', 'nsfw [sim:content_policy]', 'content_policy', /content policy/i],
    ['gpt-4o', 'nsfw [sim:content_policy]', 'content_policy', /content policy/i],
    ['flux-kontext-pro', 'nsfw [sim:content_policy]', 'content_policy', /content policy/i],
    ['nano-banana', 'boom [sim:internal]', 'provider_failed', /failed to generate/i],
    ['nano-banana', 'late [sim:upstream_timeout]', 'provider_timeout', /did not finish in time/i],
    ['nano-banana', 'nothing [sim:empty_result]', 'result_invalid', /no usable image/i],
    ['nano-banana', 'html [sim:not_image]', 'result_invalid', /no usable image/i],
    ['nano-banana', 'gone [sim:missing_result]', 'result_invalid', /no usable image/i],
    ['nano-banana-edit', 'edit a ghost', 'input_unreachable', /could not download/i, [missingInput]],
    ['gpt-4o', 'edit a ghost', 'input_unreachable', /could not download/i, [missingInput]],
  ];
  const made = [];
  for (const [model, prompt, , , urls] of cases) {
    const r = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model, prompt, ...(urls ? { image_urls: urls } : {}) } });
    assert.equal(r.status, 202, r.text);
    made.push(r.body.task.id);
  }
  for (const [i, [model, , code, message]] of cases.entries()) {
    const t = await s.waitTerminal(u.key, made[i]);
    assert.equal(t.state, 'failed', `${model}: ${JSON.stringify(t)}`);
    assert.equal(t.error.code, code, `${model} ${cases[i][1]}`);
    assert.match(t.error.message, message);
    assert.match(t.error.message, /credits were returned/);
    assert.equal(t.results.length, 0);
    assert.deepEqual(await ledgerKinds(t.id), ['reserve', 'release']);
  }
  assert.equal((await ledgerInvariant(s, u.id)).balance, 100);
});

test('a task past its deadline is failed by the cron and refunded', async () => {
  const d = await startStack({ name: 'deadline', vars: { TASK_DEADLINE_SECONDS: '10', REFRESH_QUIET_SECONDS: '1' } });
  try {
    const u = await d.createUser(10);
    const r = await d.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'forever [sim:never]' } });
    assert.equal(r.status, 202);
    await d.cron();
    assert.ok(['submitted', 'generating'].includes((await d.sql('SELECT state FROM tasks WHERE id = ?', r.body.task.id))[0].state));
    await sleep(10500);
    await d.cron();
    const [row] = await d.sql('SELECT state, error_code FROM tasks WHERE id = ?', r.body.task.id);
    assert.deepEqual([row.state, row.error_code], ['failed', 'provider_timeout']);
    assert.equal((await ledgerInvariant(d, u.id)).balance, 10);
    const stuck = await d.admin('GET', '/api/admin/tasks?stuck=true');
    assert.equal(stuck.body.tasks.length, 0);
  } finally {
    await d.close();
  }
});
