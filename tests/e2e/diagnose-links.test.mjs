// Diagnose names every broken link: eight misconfigurations, injected one at a
// time into a real stack, and for each the report fails that link (and only
// that one) with a hint that names the cause and what to do.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild, waitFor, quietPort, migrationNames, SECRETS, HMAC_KEY } from './harness.mjs';

const MIGRATIONS = migrationNames();
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const failing = (report) => report.checks.filter((c) => c.status === 'fail').map((c) => c.name);
const check = (report, name) => report.checks.find((c) => c.name === name);

async function diagnose(stack) {
  const r = await stack.admin('GET', '/api/admin/diagnose');
  assert.equal(r.status, 200, r.text);
  return r.body;
}

/** Diagnose fails exactly `link`, with a hint matching `hint`; returns that check. */
async function namesExactly(stack, link, hint) {
  const report = await diagnose(stack);
  assert.equal(report.status, 'fail');
  assert.deepEqual(failing(report), [link], JSON.stringify(report.checks, null, 1));
  assert.match(check(report, link).hint, hint);
  return check(report, link);
}

let healthy;
before(async () => {
  requireBuild();
  healthy = await startStack({ name: 'diag-healthy' });
});
after(async () => healthy && healthy.close());

test('a healthy stack passes every link, the Kie balance and the callbacks included', async () => {
  const report = await diagnose(healthy);
  assert.deepEqual(failing(report), []);
  assert.equal(check(report, 'kie balance').status, 'pass');
  assert.match(check(report, 'kie balance').hint, /^10000 Kie credits: about 2500 nano-banana tasks; warns below 1000 \(KIE_BALANCE_WARN\)$/);
  assert.equal(check(report, 'callbacks').status, 'pass');
  assert.match(check(report, 'd1').hint, new RegExp(`migrations current \\(${esc(MIGRATIONS.at(-1))}\\)`));
});

test('health says when the cron last ran, for an outside uptime checker', async () => {
  const st = await startStack({ name: 'health-cron' });
  try {
    let h = await st.api('GET', '/api/health');
    assert.deepEqual(h.body.cron, { status: 'never', last_run_at: null, age_s: null });
    assert.equal(h.body.status, 'ok');
    await st.cron();
    h = await st.api('GET', '/api/health');
    assert.equal(h.body.cron.status, 'ok');
    assert.ok(Date.now() - Date.parse(h.body.cron.last_run_at) < 60000);
    assert.ok(h.body.cron.age_s >= 0 && h.body.cron.age_s < 60);
    const line = st.logs.find((l) => l.event === 'http.request' && l.request_id === h.headers.get('x-request-id'));
    assert.equal(line.d1_queries, 1, 'the cron read doubles as the D1 check');
    const run = st.logs.find((l) => l.event === 'monitor.run');
    assert.ok(run && run.kie_balance === 10000 && Array.isArray(run.conditions), JSON.stringify(run));
  } finally {
    await st.close();
  }
});

test('1. a required secret missing', async () => {
  const st = await startStack({ name: 'diag-secret', omit: ['FILE_URL_SECRET'] });
  try {
    const c = await namesExactly(st, 'setting FILE_URL_SECRET', /^missing: set it with `wrangler secret put FILE_URL_SECRET --env <environment>`/);
    assert.doesNotMatch(c.hint, new RegExp(SECRETS.FILE_URL_SECRET));
  } finally {
    await st.close();
  }
});

test('2. an invalid Kie key', async () => {
  const st = await startStack({ name: 'diag-kie-key', vars: { KIEAI_APIKEY: 'not-the-account-key' } });
  try {
    await namesExactly(st, 'kie key', /rejects KIEAI_APIKEY \(kie code 401: Unauthorized\); set this Kie account's key with `wrangler secret put KIEAI_APIKEY/);
    const report = await diagnose(st);
    assert.equal(check(report, 'kie balance').status, 'skip', 'no balance without a valid key');
  } finally {
    await st.close();
  }
});

test('3. the Kie balance is zero (and a low balance is a warning)', async () => {
  const setCredits = (credits) => fetch(`${healthy.sim.url}/_sim/config`, { method: 'POST', body: JSON.stringify({ credits }) }).then((r) => r.json());
  try {
    await setCredits(0);
    const c = await namesExactly(healthy, 'kie balance',
      /^0 Kie credits cannot pay for the cheapest model \(nano-banana, about 4 Kie credits per task\): Kie refuses every new task; top up at kie\.ai/);
    assert.ok(c);
    const report = await diagnose(healthy);
    assert.equal(check(report, 'kie key').status, 'pass', 'the key itself is fine');
    // What it means for users: Kie refuses every create; the task fails and is refunded.
    const u = await healthy.createUser(5);
    const r = await healthy.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'no credit at Kie' } });
    assert.equal(r.status, 502, r.text);
    assert.equal(r.body.error.code, 'upstream_error');
    assert.deepEqual([r.body.error.details.task.state, r.body.error.details.task.error.code], ['failed', 'submission_failed']);

    await setCredits(600);
    const low = await diagnose(healthy);
    assert.deepEqual(failing(low), []);
    assert.equal(low.status, 'pass');
    assert.equal(check(low, 'kie balance').status, 'warn');
    assert.match(check(low, 'kie balance').hint, /^600 Kie credits, below KIE_BALANCE_WARN \(1000\): about 150 nano-banana tasks left/);
    const text = await fetch(`${healthy.url}/api/admin/diagnose?format=text`, { headers: { authorization: `Bearer ${SECRETS.ADMIN_TOKEN}` } }).then((x) => x.text());
    assert.match(text, /^\[warn\] kie balance/m);
  } finally {
    await setCredits(10000);
  }
});

test('4. PUBLIC_BASE_URL does not answer', async () => {
  const nobody = `http://127.0.0.1:${await quietPort()}`;
  const st = await startStack({ name: 'diag-unreachable', vars: { PUBLIC_BASE_URL: nobody } });
  try {
    await namesExactly(st, 'public base url', new RegExp(`^${nobody.replace(/\./g, '\\.')} is not reachable from the Worker .*Kie could not reach it either`));
    assert.equal(check(await diagnose(st), 'public input url').status, 'skip');
  } finally {
    await st.close();
  }
});

test('5. PUBLIC_BASE_URL points at another deployment', async () => {
  const st = await startStack({ name: 'diag-elsewhere', vars: { PUBLIC_BASE_URL: healthy.url } });
  try {
    await namesExactly(st, 'public base url', /answered HTTP 200 but it is not this deployment \(another Worker or environment\); set PUBLIC_BASE_URL of env test to this Worker's own URL/);
  } finally {
    await st.close();
  }
});

test('6. migrations not applied: none, or not the newest', async () => {
  const none = await startStack({ name: 'diag-no-migrations', migrations: false });
  const old = await startStack({ name: 'diag-old-migrations', migrations: '0001' });
  try {
    const command = esc('run `npx wrangler d1 migrations apply DB --remote --env test`');
    await namesExactly(none, 'd1', new RegExp(`^no migrations applied \\(missing ${esc(MIGRATIONS.join(', '))}\\); ${command}$`));
    const c = await namesExactly(old, 'd1',
      new RegExp(`^migrations not applied: ${esc(MIGRATIONS.slice(1).join(', '))} \\(the database is at ${esc(MIGRATIONS[0])}\\); ${command}$`));
    assert.doesNotMatch(c.hint, /database_id/);
    for (const link of ['callbacks', 'cron']) assert.equal(check(await diagnose(none), link).status, 'skip', link);
    assert.equal(check(await diagnose(old), 'callbacks').status, 'skip');
  } finally {
    await Promise.all([none.close(), old.close()]);
  }
});

test('7. R2 unbound', async () => {
  const st = await startStack({ name: 'diag-no-r2', noR2: true });
  try {
    await namesExactly(st, 'r2', /^no R2 binding named FILES in this environment$/);
  } finally {
    await st.close();
  }
});

test('8. the HMAC key is not the one Kie signs with: callbacks are rejected, recorded, and named', async () => {
  const st = await startStack({ name: 'diag-hmac', hmac: true, vars: { KIE_WEBHOOK_HMAC_KEY: 'hmac-key-of-another-account' } });
  try {
    assert.notEqual(st.bindings.KIE_WEBHOOK_HMAC_KEY, HMAC_KEY);
    assert.deepEqual(failing(await diagnose(st)), [], 'nothing to see before a callback arrives');
    const u = await st.createUser(5);
    const r = await st.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'signed with the other key' } });
    const providerId = r.body.task.provider_task_id;
    // Kie really signs and sends the callback; the Worker answers 401.
    await waitFor(() => st.sim.state.callbacks.some((c) => c.taskId === providerId && c.status === 401), { what: 'a rejected callback' });
    const c = await waitFor(async () => {
      const report = await diagnose(st);
      return failing(report).includes('callbacks') && report;
    }, { what: 'diagnose to name the rejected callbacks' });
    assert.deepEqual(failing(c), ['callbacks'], JSON.stringify(c.checks));
    assert.match(check(c, 'callbacks').hint,
      /^\d+ Kie callbacks were answered 401 in the last 15 min \(signature \d+\); likely cause: the signature does not match: KIE_WEBHOOK_HMAC_KEY is likely not the key Kie signs with/);
    // The task still finishes, by polling.
    const t = await st.waitTerminal(u.key, r.body.task.id);
    assert.equal(t.state, 'succeeded');
    assert.ok(st.logs.some((l) => l.event === 'http.rejected' && l.route === 'webhook' && l.status === 401));
  } finally {
    await st.close();
  }
});
