// Kie callbacks with HMAC signing on: duplicates, late, out of order and
// dropped deliveries; forged and replayed callbacks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild, waitFor, ledgerInvariant, sleep } from './harness.mjs';

let s;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'callbacks', hmac: true, vars: { MAX_ACTIVE_TASKS: '50', RATE_LIMIT_PER_MINUTE: '1000', REFRESH_QUIET_SECONDS: '1' } });
});
after(async () => s && s.close());

async function simCallback(providerId, opts) {
  const r = await fetch(`${s.sim.url}/_sim/tasks/${providerId}/callback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(opts) });
  return (await r.json()).status;
}
const dbTask = async (id) => (await s.sql('SELECT state, error_code FROM tasks WHERE id = ?', id))[0];
const ledgerKinds = async (id) => (await s.sql('SELECT kind FROM ledger WHERE task_id = ? ORDER BY id', id)).map((r) => r.kind);

async function runWith(config, prompts, { poll = false } = {}) {
  s.sim.configure({ callbacks: config });
  try {
    const u = await s.createUser(100);
    const ids = [];
    for (const prompt of prompts) {
      const r = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt } });
      assert.equal(r.status, 202, r.text);
      ids.push(r.body.task.id);
    }
    const finals = await Promise.all(
      ids.map((id) =>
        poll
          ? s.waitTerminal(u.key, id)
          : waitFor(async () => {
              const t = await dbTask(id);
              return ['succeeded', 'failed'].includes(t.state) ? t : null;
            }, { what: `task ${id} finished without polling` }),
      ),
    );
    return { u, ids, finals };
  } finally {
    s.sim.configure({ callbacks: { duplicates: 0, delayMs: 0, drop: false, reorder: false } });
  }
}

test('duplicated x5, late and out-of-order callbacks all end in the right state with exact credits', async () => {
  const { u, ids, finals } = await runWith({ duplicates: 4, delayMs: 600, reorder: true }, ['ok one', 'bad one [sim:internal]', 'ok two']);
  assert.deepEqual(finals.map((t) => t.state), ['succeeded', 'failed', 'succeeded']);
  assert.equal(finals[1].error_code, 'provider_failed');
  // Every copy, the stale (out-of-order) ones included, has been handled.
  await waitFor(() => s.logs.filter((l) => l.event === 'http.request' && l.route === 'webhook' && ids.includes(l.task_id)).length >= 15, { what: 'all 15 callbacks handled' });
  assert.deepEqual(await ledgerKinds(ids[0]), ['reserve', 'capture']);
  assert.deepEqual(await ledgerKinds(ids[1]), ['reserve', 'release']);
  assert.deepEqual(await ledgerKinds(ids[2]), ['reserve', 'capture']);
  assert.deepEqual((await Promise.all(ids.map(dbTask))).map((t) => t.state), ['succeeded', 'failed', 'succeeded'], 'terminal states never change');
  const inv = await ledgerInvariant(s, u.id);
  assert.equal(inv.balance, 100 - 4);
  assert.equal(inv.ledgerSum, inv.balance);
  const received = s.logs.filter((l) => l.event === 'callback.received' && ids.includes(l.task_id));
  assert.ok(received.length >= 15, `${received.length} callbacks received`);
});

test('dropped callbacks: the cron completes the tasks (no client polls)', async () => {
  s.sim.configure({ callbacks: { drop: true } });
  try {
    const u = await s.createUser(10);
    const ok = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'nobody calls back' } });
    const bad = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'nobody calls back [sim:content_policy]' } });
    await waitFor(() => [ok, bad].every((r) => ['success', 'fail'].includes(s.sim.state.tasks.get(r.body.task.provider_task_id).state)), { what: 'Kie to finish' });
    await sleep(1100); // quiet for REFRESH_QUIET_SECONDS
    await s.cron();
    assert.equal((await dbTask(ok.body.task.id)).state, 'succeeded');
    const failed = await dbTask(bad.body.task.id);
    assert.deepEqual([failed.state, failed.error_code], ['failed', 'content_policy']);
    assert.equal((await ledgerInvariant(s, u.id)).balance, 8);
    const cronLine = s.logs.find((l) => l.event === 'cron.run' && l.summary?.refreshed >= 2);
    assert.ok(cronLine, 'the cron run logs what it did');
  } finally {
    s.sim.configure({ callbacks: { drop: false } });
  }
});

test('forged callbacks get 401 and change nothing; a replayed genuine callback changes nothing', async () => {
  const u = await s.createUser(10);
  const a = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'forever [sim:never]' } });
  const b = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'normal' } });
  const aKie = a.body.task.provider_task_id;
  const bKie = b.body.task.provider_task_id;
  await s.waitTerminal(u.key, b.body.task.id);
  const aUrl = s.sim.state.tasks.get(aKie).callBackUrl;
  const bUrl = s.sim.state.tasks.get(bKie).callBackUrl;
  assert.match(aUrl, /\/api\/webhooks\/kie-image\?task=tsk_[a-z2-7]+&token=[a-z2-7]+$/);
  const forgedSuccess = { state: 'success' };
  const now = Math.floor(Date.now() / 1000);

  assert.equal(await simCallback(aKie, { ...forgedSuccess, hmacKey: 'not-the-key' }), 401, 'bad HMAC');
  assert.equal(await simCallback(aKie, { ...forgedSuccess, signature: 'AAAA' }), 401, 'garbage signature');
  assert.equal(await simCallback(aKie, { ...forgedSuccess, timestamp: String(now - 3600) }), 401, 'stale timestamp');
  assert.equal(await simCallback(aKie, { ...forgedSuccess, headers: { 'X-Webhook-Signature': '' } }), 401, 'missing signature');
  assert.equal(await simCallback(aKie, { ...forgedSuccess, url: aUrl.replace(/token=[a-z2-7]+/, 'token=wrongtoken') }), 401, 'wrong task token');
  assert.equal(await simCallback(aKie, { ...forgedSuccess, url: aUrl.replace(/&token=[a-z2-7]+/, '') }), 401, 'no token');
  assert.equal(await simCallback(aKie, { ...forgedSuccess, url: bUrl }), 401, "another task's token");
  const aState = await dbTask(a.body.task.id);
  assert.ok(['submitted', 'generating'].includes(aState.state), `forgeries changed nothing (${aState.state})`);
  assert.deepEqual(await ledgerKinds(a.body.task.id), ['reserve']);

  // Correctly signed with the right token, but the body lies: Kie is asked, and
  // Kie says it is still generating, so nothing changes.
  assert.equal(await simCallback(aKie, forgedSuccess), 200);
  await sleep(1500);
  assert.ok(['submitted', 'generating'].includes((await dbTask(a.body.task.id)).state));

  // Replaying B's genuine success callback: 200 and no change.
  const before = await ledgerKinds(b.body.task.id);
  assert.equal(await simCallback(bKie, {}), 200);
  assert.equal(await simCallback(bKie, { state: 'fail' }), 200);
  await sleep(300);
  assert.equal((await dbTask(b.body.task.id)).state, 'succeeded');
  assert.deepEqual(await ledgerKinds(b.body.task.id), before);

  // Unknown task: 200 so Kie stops retrying, and a warning in the log.
  const unknown = await s.api('POST', '/api/webhooks/kie-image', { json: { code: 200, data: { taskId: 'ffffffffffffffffffffffffffffffff', state: 'success' } } });
  assert.equal(unknown.status, 401, 'unsigned (HMAC is on)');
  const rejected = s.logs.filter((l) => l.event === 'http.rejected' && l.route === 'webhook');
  assert.ok(rejected.length >= 7 && rejected.every((l) => l.cause), 'each 401 is logged with its cause');
});

test('every callback shape is understood (jobs, 4o, Kontext, generic, flat)', async () => {
  const plain = await startStack({ name: 'callback-shapes', vars: { RATE_LIMIT_PER_MINUTE: '1000' } });
  try {
    const u = await plain.createUser(100);
    const make = async (model, prompt) => (await plain.api('POST', '/api/create/ai-image', { key: u.key, json: { model, prompt } })).body.task;
    const tasks = [await make('gpt-4o', '4o shape'), await make('flux-kontext-pro', 'kontext shape'), await make('nano-banana', 'jobs shape')];
    for (const t of tasks) {
      const row = await waitFor(async () => {
        const [r] = await plain.sql('SELECT state FROM tasks WHERE id = ?', t.id);
        return r.state === 'succeeded' ? r : null;
      }, { what: `${t.model} via its callback` });
      assert.equal(row.state, 'succeeded');
    }
    const shapes = new Set(plain.logs.filter((l) => l.event === 'callback.received').map((l) => l.shape));
    assert.deepEqual([...shapes].sort(), ['flux', 'gpt4o', 'jobs']);
    // The flat shape of the seed's handler and the generic one, with our token.
    const n = await make('nano-banana', 'flat shape [sim:never]');
    const url = plain.sim.state.tasks.get(n.provider_task_id).callBackUrl;
    const flat = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ taskId: n.provider_task_id, state: 'success' }) });
    assert.equal(flat.status, 200);
    const generic = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ taskId: n.provider_task_id, code: 200, data: { task_id: n.provider_task_id, callbackType: 'task_completed' } }) });
    assert.equal(generic.status, 200);
    const garbage = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'not json' });
    assert.equal(garbage.status, 400);
    const huge = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pad: 'x'.repeat(400000) }) });
    assert.equal(huge.status, 413);
    assert.ok(plain.logs.some((l) => l.event === 'callback.received' && l.shape === 'flat'));
    assert.ok(plain.logs.some((l) => l.event === 'callback.received' && l.shape === 'generic'));
  } finally {
    await plain.close();
  }
});
