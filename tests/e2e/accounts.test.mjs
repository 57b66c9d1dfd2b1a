// Accounts, keys, credits as a ledger, idempotency, limits and ownership.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild, waitFor, ledgerInvariant, SECRETS } from './harness.mjs';

let s;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'accounts', vars: { MAX_ACTIVE_TASKS: '50', RATE_LIMIT_PER_MINUTE: '1000' } });
});
after(async () => s && s.close());

const create = (key, json, headers) => s.api('POST', '/api/create/ai-image', { key, json, headers });

async function ledgerRows(userId) {
  return s.sql('SELECT kind, amount, task_id, balance_after FROM ledger WHERE user_id = ? ORDER BY id', userId);
}

test('20 concurrent creates with credits for exactly 3: 3 accepted, 17 refused with 402, balance 0', async () => {
  const u = await s.createUser(6); // nano-banana costs 2
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => create(u.key, { model: 'nano-banana', prompt: `race ${i}` })));
  const accepted = results.filter((r) => r.status === 202);
  const refused = results.filter((r) => r.status === 402);
  assert.equal(accepted.length, 3, results.map((r) => r.status).join(','));
  assert.equal(refused.length, 17);
  for (const r of refused) {
    assert.equal(r.body.error.code, 'insufficient_credits');
    assert.equal(r.body.error.details.needed, 2);
  }
  const inv = await ledgerInvariant(s, u.id);
  assert.equal(inv.balance, 0);
  assert.equal(inv.ledgerSum, 0, 'the ledger sums to the balance');
  assert.ok(inv.lowest >= 0, 'never negative');
  assert.equal((await s.sql("SELECT COUNT(*) AS n FROM ledger WHERE user_id = ? AND kind = 'reserve'", u.id))[0].n, 3);
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM tasks WHERE user_id = ?', u.id))[0].n, 3);
});

test('a task failing at Kie is refunded exactly once despite 5 callbacks racing cron and polls', async () => {
  s.sim.configure({ callbacks: { duplicates: 4 } });
  try {
    const u = await s.createUser(4);
    const r = await create(u.key, { model: 'nano-banana', prompt: 'forbidden [sim:content_policy]' });
    assert.equal(r.status, 202, r.text);
    const id = r.body.task.id;
    // Race: polls and cron runs while the 5 callbacks arrive.
    const racers = [];
    for (let i = 0; i < 6; i++) racers.push(s.task(u.key, id), s.cron());
    await Promise.all(racers);
    const t = await s.waitTerminal(u.key, id);
    assert.equal(t.state, 'failed');
    assert.equal(t.error.code, 'content_policy');
    assert.match(t.error.message, /content policy/i);
    await waitFor(() => s.sim.state.tasks.get(t.provider_task_id).callbacks.length >= 5, { what: '5 callbacks' });
    await waitFor(async () => s.logs.filter((l) => l.event === 'callback.received' && l.task_id === id).length >= 5, { what: 'callbacks logged' });
    for (let i = 0; i < 3; i++) await Promise.all([s.cron(), s.task(u.key, id)]);
    const rows = (await ledgerRows(u.id)).filter((x) => x.task_id === id);
    assert.deepEqual(rows.map((x) => x.kind), ['reserve', 'release']);
    const inv = await ledgerInvariant(s, u.id);
    assert.equal(inv.balance, 4);
    assert.equal(inv.ledgerSum, 4);
  } finally {
    s.sim.configure({ callbacks: { duplicates: 0 } });
  }
});

test('a succeeded task keeps exactly its price however many duplicate callbacks arrive', async () => {
  s.sim.configure({ callbacks: { duplicates: 5 } });
  try {
    const u = await s.createUser(5);
    const r = await create(u.key, { model: 'nano-banana', prompt: 'duplicated' });
    const id = r.body.task.id;
    const t = await s.waitTerminal(u.key, id);
    assert.equal(t.state, 'succeeded');
    await waitFor(() => s.sim.state.tasks.get(t.provider_task_id).callbacks.length >= 6, { what: '6 callbacks' });
    await Promise.all([s.cron(), s.task(u.key, id)]);
    const rows = (await ledgerRows(u.id)).filter((x) => x.task_id === id);
    assert.deepEqual(rows.map((x) => [x.kind, x.amount]), [['reserve', -2], ['capture', 0]]);
    assert.equal((await ledgerInvariant(s, u.id)).balance, 3);
  } finally {
    s.sim.configure({ callbacks: { duplicates: 0 } });
  }
});

test('the same Idempotency-Key sent 10 times concurrently creates one task and one reservation', async () => {
  const u = await s.createUser(10);
  const body = { model: 'nano-banana', prompt: 'exactly once' };
  const results = await Promise.all(Array.from({ length: 10 }, () => create(u.key, body, { 'Idempotency-Key': 'click-123' })));
  const ids = new Set(results.map((r) => r.body?.task?.id));
  assert.equal(ids.size, 1, results.map((r) => `${r.status}:${r.text.slice(0, 80)}`).join('\n'));
  assert.ok(results.every((r) => r.status === 202 || r.status === 200));
  assert.equal(results.filter((r) => r.status === 202).length, 1, 'one creation, the rest are replays');
  assert.equal((await s.sql("SELECT COUNT(*) AS n FROM ledger WHERE user_id = ? AND kind = 'reserve'", u.id))[0].n, 1);
  assert.equal((await ledgerInvariant(s, u.id)).balance, 8);
  // Kie saw one task.
  const [id] = ids;
  const [row] = await s.sql('SELECT provider_task_id FROM tasks WHERE id = ?', id);
  const kieTasks = [...s.sim.state.tasks.values()].filter((t) => JSON.stringify(t.input ?? t.params ?? t).includes('exactly once'));
  assert.equal(kieTasks.length, 1);
  assert.equal(kieTasks[0].id, row.provider_task_id);
  // Same key, different body: 409, nothing charged.
  const conflict = await create(u.key, { model: 'nano-banana', prompt: 'something else' }, { 'Idempotency-Key': 'click-123' });
  assert.equal(conflict.status, 409);
  assert.equal(conflict.body.error.code, 'idempotency_conflict');
  // Keys are per user: another user may use the same key.
  const v = await s.createUser(10);
  const other = await create(v.key, body, { 'Idempotency-Key': 'click-123' });
  assert.equal(other.status, 202);
  assert.notEqual(other.body.task.id, id);
  assert.equal((await ledgerInvariant(s, u.id)).balance, 8);
  // A bad key is a 400.
  const bad = await create(u.key, body, { 'Idempotency-Key': 'has space' });
  assert.equal(bad.status, 400);
});

test('ownership: another user gets 404, user keys get 403 on admin, no key 401, rotated keys stop at once', async () => {
  const a = await s.createUser(10, 'Alice');
  const b = await s.createUser(10, 'Bob');
  const r = await create(a.key, { model: 'nano-banana', prompt: "alice's" });
  const t = await s.waitTerminal(a.key, r.body.task.id);
  const mine = await s.api('GET', `/api/tasks/${t.id}`, { key: b.key });
  const missing = await s.api('GET', '/api/tasks/tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa', { key: b.key });
  assert.equal(mine.status, 404);
  assert.equal(missing.status, 404);
  assert.deepEqual({ ...mine.body.error, request_id: 0 }, { ...missing.body.error, request_id: 0 }, 'indistinguishable from a missing task');
  const list = await s.api('GET', '/api/tasks', { key: b.key });
  assert.equal(list.body.tasks.length, 0);
  const ledger = await s.api('GET', '/api/me/ledger', { key: b.key });
  assert.ok(ledger.body.entries.every((e) => e.task_id !== t.id));
  // B cannot fetch A's result without A's signed URL.
  const path = new URL(t.results[0].url).pathname;
  assert.equal((await fetch(s.url + path)).status, 404);
  assert.equal((await fetch(`${s.url}${path}?exp=9999999999&sig=forged`)).status, 404);

  assert.equal((await s.api('GET', '/api/admin/users', { key: a.key })).status, 403);
  assert.equal((await s.api('GET', '/api/admin/users')).status, 401);
  assert.equal((await s.api('GET', '/api/admin/users', { key: 'wrong-admin-token-xxxxxxxx' })).status, 401);

  const rotated = await s.admin('POST', `/api/admin/users/${a.id}/keys`);
  assert.equal(rotated.status, 201);
  assert.match(rotated.body.api_key, /^nbk_/);
  assert.equal((await s.api('GET', '/api/me', { key: a.key })).status, 401, 'the old key stops working at once');
  assert.equal((await s.api('GET', `/api/tasks/${t.id}`, { key: a.key })).status, 401);
  const me = await s.api('GET', '/api/me', { key: rotated.body.api_key });
  assert.equal(me.body.user.id, a.id);
  const audit = await s.sql("SELECT action FROM audit_log WHERE target = ? AND action = 'key.rotate'", a.id);
  assert.equal(audit.length, 1, 'the rotation is recorded');
});

test('admin credits: grants and adjustments are ledger rows with reasons; never below zero', async () => {
  const u = await s.createUser(5);
  const grant = await s.admin('POST', `/api/admin/users/${u.id}/credits`, { amount: 7, reason: 'support refund' });
  assert.equal(grant.status, 200, grant.text);
  assert.equal(grant.body.user.credits, 12);
  const take = await s.admin('POST', `/api/admin/users/${u.id}/credits`, { amount: -12, reason: 'chargeback' });
  assert.equal(take.body.user.credits, 0);
  const tooMuch = await s.admin('POST', `/api/admin/users/${u.id}/credits`, { amount: -1, reason: 'oops' });
  assert.equal(tooMuch.status, 422);
  const rows = await ledgerRows(u.id);
  assert.deepEqual(rows.map((r) => [r.kind, r.amount]), [['grant', 5], ['grant', 7], ['adjust', -12]]);
  const visible = await s.api('GET', `/api/admin/users/${u.id}/ledger`, { key: SECRETS.ADMIN_TOKEN });
  assert.deepEqual(visible.body.entries.map((e) => e.reason), ['chargeback', 'support refund', 'starting credits']);
  assert.ok(visible.body.entries.every((e) => e.actor === 'admin'));
  const audit = await s.api('GET', `/api/admin/audit?target=${u.id}`, { key: SECRETS.ADMIN_TOKEN });
  assert.deepEqual(audit.body.entries.map((e) => [e.action, e.detail]), [['credits.change', '-12 (chargeback)'], ['credits.change', '+7 (support refund)'], ['user.create', 'Test user']]);
  assert.ok(audit.body.entries.every((e) => e.actor === 'admin' && e.created_at));
});

test('bad input on admin endpoints gets the api.md error and changes nothing', async () => {
  const u = await s.createUser(5);
  const before = await ledgerRows(u.id);
  const cases = [
    ['POST', '/api/admin/users', { name: 'x', credits: -1 }, 422],
    ['POST', '/api/admin/users', { name: 'x', credits: 1e12 }, 422],
    ['POST', '/api/admin/users', { name: 'x', credits: '5' }, 400],
    ['POST', '/api/admin/users', { name: 'x', credits: 1.5 }, 400],
    ['POST', '/api/admin/users', { credits: 5 }, 422],
    ['POST', '/api/admin/users', { name: 'x'.repeat(101), credits: 5 }, 422],
    ['POST', `/api/admin/users/${u.id}/credits`, { amount: 'lots', reason: 'x' }, 400],
    ['POST', `/api/admin/users/${u.id}/credits`, { amount: 5 }, 422],
    ['POST', `/api/admin/users/${u.id}/credits`, { amount: 0, reason: 'x' }, 422],
    ['POST', `/api/admin/users/${u.id}/credits`, { amount: 2e9, reason: 'x' }, 422],
    ['POST', '/api/admin/users/usr_nobody/credits', { amount: 5, reason: 'x' }, 404],
    ['POST', '/api/admin/users/usr_nobody/keys', undefined, 404],
    ['GET', '/api/admin/users/usr_nobody', undefined, 404],
    ['GET', '/api/admin/users/../../etc', undefined, 404],
    ['POST', '/api/admin/tasks/tsk_nothing/recheck', undefined, 404],
    ['GET', '/api/admin/tasks?state=exploded', undefined, 422],
    ['GET', '/api/admin/users?limit=0', undefined, 422],
    ['GET', '/api/admin/users?cursor=garbage!!', undefined, 422],
    ['POST', '/api/admin/users', '{"name": ', 400],
    ['POST', '/api/admin/users', { name: 'x'.repeat(20000), credits: 1 }, 413],
  ];
  for (const [method, path, json, status] of cases) {
    const r = await s.api(method, path, { key: SECRETS.ADMIN_TOKEN, json });
    assert.equal(r.status, status, `${method} ${path}: ${r.text.slice(0, 200)}`);
    assert.ok(r.body.error.code && r.body.error.message);
  }
  assert.deepEqual(await ledgerRows(u.id), before);
  assert.equal((await s.sql("SELECT COUNT(*) AS n FROM users WHERE name = 'x'"))[0].n, 0);
});

test('per-user limits answer 429 with Retry-After and are held in D1', async () => {
  const limited = await startStack({ name: 'limits', vars: { RATE_LIMIT_PER_MINUTE: '3', MAX_ACTIVE_TASKS: '2' } });
  try {
    const u = await limited.createUser(100);
    const never = (i) => limited.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: `stuck ${i} [sim:never]` } });
    const [a, b, c] = [await never(1), await never(2), await never(3)];
    assert.deepEqual([a.status, b.status], [202, 202]);
    assert.equal(c.status, 429, 'a third unfinished task is over the cap');
    assert.equal(c.body.error.details.max_active_tasks, 2);
    assert.equal(c.body.error.details.limit, 'active_tasks');
    assert.ok(Number(c.headers.get('retry-after')) > 0);
    const d = await never(4);
    assert.equal(d.status, 429, 'the fourth create in a minute is over the rate limit');
    assert.ok(Number(d.headers.get('retry-after')) >= 1);
    assert.equal(d.body.error.details.limit_per_minute, 3);
    assert.equal(d.body.error.details.limit, 'per_minute');
    const [row] = await limited.sql('SELECT SUM(count) AS n FROM rate_windows WHERE user_id = ?', u.id);
    assert.equal(row.n, 4);
    assert.equal((await ledgerInvariant(limited, u.id)).balance, 96, 'refused creates cost nothing');
  } finally {
    await limited.close();
  }
});

test('history pages are newest first with stable cursors, and read through indexes', async () => {
  const u = await s.createUser(100);
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push((await create(u.key, { model: 'nano-banana', prompt: `page ${i}` })).body.task.id);
  const seen = [];
  let cursor = null;
  for (let page = 0; page < 5; page++) {
    const r = await s.api('GET', `/api/tasks?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { key: u.key });
    assert.equal(r.status, 200);
    seen.push(...r.body.tasks.map((t) => t.id));
    cursor = r.body.next_cursor;
    if (!cursor) break;
    // A task created between pages does not shift the next page.
    if (page === 0) await create(u.key, { model: 'nano-banana', prompt: 'late arrival' });
  }
  assert.deepEqual(seen, [...ids].reverse());
  const ledger = await s.api('GET', '/api/me/ledger?limit=3', { key: u.key });
  assert.equal(ledger.body.entries.length, 3);
  const next = await s.api('GET', `/api/me/ledger?limit=3&cursor=${ledger.body.next_cursor}`, { key: u.key });
  assert.ok(next.body.entries[0].id < ledger.body.entries[2].id);
  // One read: the tasks are still finishing (captures keep arriving).
  const [kinds] = await s.sql("SELECT SUM(kind = 'grant') AS grants, SUM(kind = 'reserve') AS reserves FROM ledger WHERE user_id = ?", u.id);
  assert.deepEqual(kinds, { grants: 1, reserves: 6 });

  // Query plans of the hot reads: no full table scans.
  const plans = {
    status: ["SELECT t.id FROM api_keys k JOIN tasks t ON t.user_id = k.user_id WHERE k.key_hash = ?1 AND k.revoked_at IS NULL AND t.id = ?2", 'h', 't'],
    history: ['SELECT t.id FROM tasks t WHERE (t.created_at, t.id) < (?1, ?2) AND t.user_id = ?4 ORDER BY t.created_at DESC, t.id DESC LIMIT ?3', 1, 'x', 3, 'u'],
    history_by_state: ['SELECT t.id FROM tasks t WHERE (t.created_at, t.id) < (?1, ?2) AND t.user_id = ?4 AND t.state = ?5 ORDER BY t.created_at DESC, t.id DESC LIMIT ?3', 1, 'x', 3, 'u', 'queued'],
    ledger: ['SELECT id FROM ledger WHERE user_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3', 'u', 1, 3],
    auth: ['SELECT u.id FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?1 AND k.revoked_at IS NULL', 'h'],
    idempotency: ['SELECT t.id FROM tasks t WHERE t.user_id = ?1 AND t.idempotency_key = ?2', 'u', 'k'],
    callback: ['SELECT t.id FROM tasks t WHERE t.provider_task_id = ?1', 'p'],
    cron_queue: ["SELECT id FROM tasks WHERE state = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) AND (lease_until IS NULL OR lease_until < ?1) ORDER BY created_at, id LIMIT ?2", 1, 2],
  };
  for (const [name, [q, ...params]] of Object.entries(plans)) {
    const plan = await s.sql(`EXPLAIN QUERY PLAN ${q}`, ...params);
    const text = plan.map((p) => p.detail).join(' | ');
    assert.ok(!/\bSCAN (t|k|u|tasks|ledger|users|api_keys)\b(?! USING)/.test(text), `${name} scans a table: ${text}`);
    assert.ok(/USING (COVERING )?INDEX|USING INTEGER PRIMARY KEY|PRIMARY KEY/.test(text), `${name} uses an index: ${text}`);
  }
});
