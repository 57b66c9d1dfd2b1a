// Health, self-diagnosis, configuration errors and logs that tell the story.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, requireBuild, waitFor, SECRETS } from './harness.mjs';

let s;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'operations' });
});
after(async () => s && s.close());

const statusOf = (report, name) => report.checks.find((c) => c.name === name)?.status;
function onlyFailing(report) {
  return report.checks.filter((c) => c.status === 'fail').map((c) => c.name);
}

test('health is public, cheap, and reports version, commit and each binding', async () => {
  const r = await s.api('GET', '/api/health');
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'ok');
  assert.deepEqual(r.body.checks, { d1: 'ok', kv: 'ok', r2: 'ok', config: 'ok' });
  assert.match(r.body.version, /^\d+\.\d+\.\d+$/);
  assert.ok(r.body.commit && r.body.commit !== '');
  const line = s.logs.find((l) => l.request_id === r.headers.get('x-request-id') && l.event === 'http.request');
  assert.ok(line.d1_queries <= 1, 'one D1 query at most');
});

test('diagnose passes every link of a healthy deployment, as JSON and as text', async () => {
  await s.cron();
  const r = await s.admin('GET', '/api/admin/diagnose');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(onlyFailing(r.body), []);
  for (const name of ['setting KIEAI_APIKEY', 'd1', 'kv', 'r2', 'public input url', 'public base url', 'kie key', 'cron']) {
    assert.equal(statusOf(r.body, name), 'pass', `${name}: ${JSON.stringify(r.body.checks)}`);
  }
  assert.equal(statusOf(r.body, 'setting KIE_WEBHOOK_HMAC_KEY'), 'skip');
  assert.match(r.body.checks.find((c) => c.name === 'kie key').hint, /balance \d+/);
  const text = await fetch(`${s.url}/api/admin/diagnose?format=text`, { headers: { authorization: `Bearer ${SECRETS.ADMIN_TOKEN}` } });
  assert.match(text.headers.get('content-type'), /^text\/plain/);
  const body = await text.text();
  assert.match(body, /^diagnose: PASS/);
  assert.match(body, /\[pass\] kie key/);
  // It spent nothing at Kie.
  assert.equal(s.sim.state.stats.create, 0);
});

test('diagnose fails exactly the broken link: Kie down, wrong Kie key, no R2, PUBLIC_BASE_URL elsewhere', async () => {
  // Kie down.
  const port = Number(new URL(s.sim.url).port);
  await s.sim.close();
  let r = await s.admin('GET', '/api/admin/diagnose');
  assert.deepEqual(onlyFailing(r.body), ['kie key'], JSON.stringify(r.body.checks));
  const { startKieSim } = await import('../../sim/kie-sim.mjs');
  s.sim = await startKieSim({ port, host: '127.0.0.1', apiKey: SECRETS.KIEAI_APIKEY });

  const wrongKey = await startStack({ name: 'diag-wrong-key', vars: { KIEAI_APIKEY: 'not-the-right-kie-key' } });
  const noR2 = await startStack({ name: 'diag-no-r2', noR2: true });
  const elsewhere = await startStack({ name: 'diag-elsewhere', vars: { PUBLIC_BASE_URL: s.url } });
  try {
    for (const st of [wrongKey, noR2, elsewhere]) await st.cron();
    r = await wrongKey.admin('GET', '/api/admin/diagnose');
    assert.deepEqual(onlyFailing(r.body), ['kie key']);
    assert.match(r.body.checks.find((c) => c.name === 'kie key').hint, /401|Unauthorized/);
    r = await noR2.admin('GET', '/api/admin/diagnose');
    assert.deepEqual(onlyFailing(r.body), ['r2']);
    assert.equal(statusOf(r.body, 'public input url'), 'skip');
    r = await elsewhere.admin('GET', '/api/admin/diagnose');
    assert.deepEqual(onlyFailing(r.body), ['public base url'], JSON.stringify(r.body.checks));
    assert.match(r.body.checks.find((c) => c.name === 'public base url').hint, /not this deployment/);
  } finally {
    await Promise.all([wrongKey.close(), noR2.close(), elsewhere.close()]);
  }
});

test('each required setting removed in turn is named by health and diagnose, and users get 503 config_error', async () => {
  for (const name of ['KIEAI_APIKEY', 'ADMIN_TOKEN', 'FILE_URL_SECRET']) {
    const st = await startStack({ name: `missing-${name}`, omit: [name] });
    try {
      const health = await st.api('GET', '/api/health');
      assert.equal(health.status, 503);
      assert.deepEqual(health.body.config_problems, [name]);
      const diag = await st.admin('GET', '/api/admin/diagnose');
      if (name === 'ADMIN_TOKEN') {
        assert.equal(diag.status, 503);
        assert.equal(diag.body.error.code, 'config_error');
        assert.deepEqual(diag.body.error.details.settings.map((p) => p.name), [name]);
      } else {
        assert.equal(diag.status, 200);
        const failing = onlyFailing(diag.body).filter((n) => n.startsWith('setting '));
        assert.deepEqual(failing, [`setting ${name}`]);
      }
      for (const [method, path, json] of [['POST', '/api/create/ai-image', { model: 'nano-banana', prompt: 'x' }], ['GET', '/api/me'], ['GET', '/api/tasks']]) {
        const r = await st.api(method, path, { key: 'nbk_whatever', json });
        assert.equal(r.status, 503, `${name} ${path}`);
        assert.equal(r.body.error.code, 'config_error');
        assert.match(r.body.error.message, new RegExp(name));
        assert.equal(r.body.error.retryable, false, 'the operator must fix it first');
      }
      assert.ok(!st.responses.some((x) => x.status === 500));
    } finally {
      await st.close();
    }
  }
  const bad = await startStack({ name: 'bad-url', vars: { PUBLIC_BASE_URL: 'worker.example.com' } });
  try {
    const h = await bad.api('GET', '/api/health');
    assert.deepEqual(h.body.config_problems, ['PUBLIC_BASE_URL']);
  } finally {
    await bad.close();
  }
});

test('a cron that never ran is a failure in production and only a note elsewhere', async () => {
  const fresh = await startStack({ name: 'no-cron' });
  const prod = await startStack({ name: 'no-cron-prod', vars: { ENVIRONMENT: 'production', PUBLIC_BASE_URL: 'https://banana.example.invalid' } });
  try {
    const dev = await fresh.admin('GET', '/api/admin/diagnose');
    assert.equal(statusOf(dev.body, 'cron'), 'skip');
    assert.match(dev.body.checks.find((c) => c.name === 'cron').hint, /__scheduled/);
    const p = await prod.admin('GET', '/api/admin/diagnose');
    assert.equal(statusOf(p.body, 'cron'), 'fail');
    // In production the Kie API must be https: the simulator's http URL is named.
    assert.ok(onlyFailing(p.body).includes('setting KIE_API_BASE'), JSON.stringify(p.body.checks));
  } finally {
    await Promise.all([fresh.close(), prod.close()]);
  }
});

test('the cron records and logs each run, and forgets old rate-limit windows and Stripe event ids', async () => {
  const day = 24 * 3600 * 1000;
  await s.sql('INSERT INTO rate_windows (user_id, window_start, count) VALUES (?, ?, 1), (?, ?, 1)', 'usr_old', 0, 'usr_new', Date.now());
  // Event ids are kept 30 days: one a day past that goes, one a day short of it stays.
  await s.sql(
    "INSERT INTO stripe_events (id, type, order_id, received_at) VALUES ('evt_old', 'charge.refunded', NULL, ?), ('evt_kept', 'charge.refunded', NULL, ?)",
    Date.now() - 31 * day,
    Date.now() - 29 * day,
  );
  await s.cron();
  const left = await s.sql("SELECT user_id FROM rate_windows WHERE user_id IN ('usr_old', 'usr_new')");
  assert.deepEqual(left.map((r) => r.user_id), ['usr_new']);
  const events = await s.sql("SELECT id FROM stripe_events WHERE id IN ('evt_old', 'evt_kept')");
  assert.deepEqual(events.map((r) => r.id), ['evt_kept']);
  const line = [...s.logs].reverse().find((l) => l.event === 'cron.run');
  assert.ok(line.summary.rate_windows_pruned >= 1 && typeof line.duration_ms === 'number', JSON.stringify(line));
  assert.equal(line.summary.stripe_events_pruned, 1, JSON.stringify(line));
  const [run] = await s.sql('SELECT summary FROM cron_runs ORDER BY id DESC LIMIT 1');
  assert.equal(JSON.parse(run.summary).rate_windows_pruned, line.summary.rate_windows_pruned);
});

test("one task's events can be pulled together by its id, across requests", async () => {
  const u = await s.createUser(5);
  const r = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'trace me' } });
  const id = r.body.task.id;
  await waitFor(async () => (await s.sql('SELECT state FROM tasks WHERE id = ?', id))[0].state === 'succeeded', { what: 'success' });
  const events = s.logs.filter((l) => l.task_id === id).map((l) => l.event);
  for (const e of ['task.created', 'kie.call', 'task.state', 'callback.received', 'result.stored', 'http.request']) {
    assert.ok(events.includes(e), `${e} in ${events.join(',')}`);
  }
  const requests = new Set(s.logs.filter((l) => l.task_id === id).map((l) => l.request_id));
  assert.ok(requests.size >= 2, 'create and callback are different requests, tied by the task id');
  const kieCalls = s.logs.filter((l) => l.task_id === id && l.event === 'kie.call');
  assert.ok(kieCalls.every((l) => typeof l.kie_latency_ms === 'number' && l.kie_code === 200));
  assert.ok(kieCalls.filter((l) => l.kie_op === 'record').every((l) => l.provider_task_id));
  const states = s.logs.filter((l) => l.task_id === id && l.event === 'task.state').map((l) => `${l.from}>${l.to}`);
  assert.deepEqual(states, ['queued>submitted', 'submitted>succeeded']);
  for (const l of s.logs) assert.ok(['info', 'warn', 'error'].includes(l.level));
});
