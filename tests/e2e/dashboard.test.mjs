// The operator dashboard at /admin in a real browser (Chromium through
// playwright-core), fed by tasks really run through the stack (successes on
// several models, failures by simulator markers and faults, a rejected
// callback, a stuck task, a Kie balance that dips), and the browser error
// reports of the user page reaching the logs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { requireChromium, launchChromium, SHOTS } from './chromium.mjs';
import { startStack, requireBuild, waitFor, sleep, pngBytes, SECRETS } from './harness.mjs';

const CHARTS = ['chart-tasks', 'chart-time-to-result', 'chart-failure-causes', 'chart-kie-calls', 'chart-credits', 'chart-queue', 'chart-kie-balance'];

let s, browser, user, neverTask;
const sim = (p, body) => fetch(s.sim.url + p, { method: 'POST', body: JSON.stringify(body) }).then((r) => r.json());

async function create(key, model, prompt) {
  const r = await s.api('POST', '/api/create/ai-image', { key, json: { model, prompt } });
  assert.ok([202, 502].includes(r.status), r.text);
  return r.body.task?.id || r.body.error.details.task.id;
}
async function createEdit(key, prompt) {
  const form = new FormData();
  form.append('model', 'nano-banana-edit');
  form.append('prompt', prompt);
  form.append('image', new Blob([pngBytes(48, 48)], { type: 'image/png' }), 'input.png');
  const r = await s.api('POST', '/api/create/ai-image', { key, form });
  assert.equal(r.status, 202, r.text);
  return r.body.task.id;
}

/** Real traffic: three batches a few seconds apart, a cron run after each (one queue and balance sample each). */
async function seed() {
  user = await s.createUser(500, 'Ada Lovelace');
  await s.createUser(40, 'Grace Hopper');
  await s.cron();
  const batches = [
    [['nano-banana', 'a banana on the moon'], ['nano-banana', 'a banana in the rain'], ['gpt-4o', 'a banana portrait'],
      ['flux-kontext-pro', 'a banana boat'], ['nano-banana', 'refused [sim:content_policy]']],
    [['nano-banana-pro', 'a pro banana'], ['nano-banana-2', 'banana two'], ['nano-banana', 'broken [sim:internal]'],
      ['gpt-4o', 'another portrait'], ['nano-banana', 'slow one [sim:slow]'], ['nano-banana', 'too late [sim:upstream_timeout]']],
    [['nano-banana', 'not an image [sim:not_image]'], ['flux-kontext-max', 'a max banana'], ['nano-banana', 'refused again [sim:content_policy]'],
      ['nano-banana', 'broken again [sim:internal]'], ['nano-banana', 'a fine banana']],
  ];
  for (const [i, batch] of batches.entries()) {
    if (i === 2) await sim('/_sim/faults', { kind: 'http_503', endpoint: 'record', times: 2 });
    const ids = [];
    for (const [model, prompt] of batch) ids.push(await create(user.key, model, prompt));
    ids.push(await createEdit(user.key, `an edit, batch ${i + 1}`));
    if (i === 1) {
      await sim('/_sim/faults', { kind: 'code_500', endpoint: 'create', times: 1 }); // the answer is lost: submission_failed
      ids.push(await create(user.key, 'nano-banana', 'the answer to this one is lost'));
      await sim('/_sim/faults', { kind: 'code_429', endpoint: 'create', times: 1 }); // deferred: one task waits in the queue
      ids.push(await create(user.key, 'nano-banana', 'queued for a moment'));
      await s.cron(); // a sample while tasks are queued and at Kie
    }
    for (const id of ids) await s.waitTerminal(user.key, id, 30000);
    await s.cron();
    await sleep(2500); // spread the samples over time
  }
  // A callback with a wrong per-task token: answered 401 and counted.
  const forged = await s.api('POST', `/api/webhooks/kie-image?task=${(await s.sql('SELECT id FROM tasks LIMIT 1'))[0].id}&token=forged`,
    { json: { code: 200, data: { taskId: 'x', state: 'success' } } });
  assert.equal(forged.status, 401);
  // The Kie balance dips to zero and recovers: an alert opens and is resolved.
  await sim('/_sim/config', { credits: 0 });
  await s.cron();
  await sleep(1500);
  await sim('/_sim/config', { credits: 9900 });
  await s.cron();
  // A task Kie never finishes, left past its deadline (nothing refreshes it until the operator does).
  neverTask = await create(user.key, 'nano-banana', 'never finishes [sim:never]');
  await waitFor(async () => (await s.admin('GET', '/api/admin/tasks?stuck=true')).body.tasks.some((t) => t.id === neverTask),
    { timeoutMs: 30000, what: 'the stuck task' });
}

before(async () => {
  requireChromium();
  requireBuild();
  s = await startStack({
    name: 'dashboard',
    vars: { RATE_LIMIT_PER_MINUTE: '1000', MAX_ACTIVE_TASKS: '50', TASK_DEADLINE_SECONDS: '10', ALERT_FAILURE_MIN: '2', ALERT_FAILURE_RATE: '5',
      KIE_BALANCE_WARN: '20000', ALERT_RESOLVE_AFTER_SECONDS: '0' },
  });
  browser = await launchChromium();
  await seed();
});
after(async () => {
  await browser?.close().catch(() => {});
  await s?.close();
});

/** A page that records console errors, page errors and failed responses. */
async function watchedPage(ctx, { allow = () => false } = {}) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  const problems = [];
  // A failed load is logged by the browser too; the response handler judges it.
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('response', (r) => { if (r.status() >= 400 && !allow(r)) problems.push(`${r.status()} ${r.url()}`); });
  return { page, problems };
}

async function signIn(page) {
  await page.goto(s.url + '/admin');
  await page.getByTestId('signin').waitFor();
  await page.getByTestId('admin-token').fill(SECRETS.ADMIN_TOKEN);
  await page.getByTestId('signin-submit').click();
  await page.locator('body[data-loaded="true"]').waitFor();
}

test('the metrics API: aggregates match the tasks, the windows, its cost on the log line, operator only', async () => {
  const r = await s.admin('GET', '/api/admin/metrics?window=24h');
  assert.equal(r.status, 200, r.text);
  const m = r.body;
  const finished = await s.sql("SELECT CASE WHEN state = 'succeeded' THEN 'succeeded' ELSE error_code END AS o, COUNT(*) AS n FROM tasks WHERE completed_at IS NOT NULL GROUP BY o");
  const byOutcome = Object.fromEntries(finished.map((x) => [x.o, x.n]));
  assert.equal(m.tasks.total, finished.reduce((a, x) => a + x.n, 0));
  assert.equal(m.tasks.succeeded, byOutcome.succeeded);
  assert.deepEqual(Object.fromEntries(m.failure_causes.map((c) => [c.cause, c.count])), Object.fromEntries(Object.entries(byOutcome).filter(([o]) => o !== 'succeeded')));
  for (const cause of ['content_policy', 'provider_failed', 'result_invalid', 'submission_failed']) assert.ok(byOutcome[cause] >= 1, cause);
  assert.equal(m.tasks.buckets.length, 24);
  const [{ spent }] = await s.sql("SELECT SUM(credits) AS spent FROM tasks WHERE state = 'succeeded'");
  assert.equal(m.credits.total, spent);
  assert.deepEqual(m.time_to_result.map((t) => t.model).sort(), ['flux-kontext-max', 'flux-kontext-pro', 'gpt-4o', 'nano-banana', 'nano-banana-2', 'nano-banana-edit', 'nano-banana-pro']);
  for (const t of m.time_to_result) assert.ok(t.p50_ms > 0 && t.p95_ms >= t.p50_ms, JSON.stringify(t));
  const ops = Object.fromEntries(m.kie_calls.map((k) => [k.op, k]));
  assert.ok(ops.create.results['200'] >= 15 && ops.create.results['500'] === 1 && ops.create.results['429'] === 1, JSON.stringify(ops.create));
  assert.equal(ops.record.results['503'], 2);
  assert.ok(ops.credit.calls >= 5, 'one free credit call per cron run');
  assert.ok(m.queue.series.length >= 2 && m.queue.series.some((p) => p.queued >= 1 || p.at_kie >= 1), JSON.stringify(m.queue.series));
  assert.ok(m.kie_balance.series.length >= 2);
  assert.equal(m.kie_balance.now, 9900);
  assert.equal(m.kie_balance.warn_below, 20000);
  assert.deepEqual(m.kie_balance.cheapest_task, { model: 'nano-banana', kie_credits: 4 });
  assert.equal(m.events.callbacks_rejected.token, 1);
  assert.equal(m.queue.now.at_kie, 1, 'the task Kie never finishes');

  // Its cost is on its request log line: a handful of indexed D1 reads.
  const line = s.logs.find((l) => l.event === 'http.request' && l.request_id === r.headers.get('x-request-id'));
  assert.ok(line.d1_queries >= 5 && line.d1_queries <= 10, `d1_queries ${line.d1_queries}`);
  assert.ok(line.d1_rows_read < 500, `d1_rows_read ${line.d1_rows_read}`);
  assert.ok(s.logs.some((l) => l.event === 'admin.metrics' && l.request_id === line.request_id && l.window === '24h'));

  const week = await s.admin('GET', '/api/admin/metrics?window=7d');
  assert.equal(week.body.tasks.buckets.length, 28);
  assert.equal(week.body.tasks.total, m.tasks.total);
  const bad = await s.admin('GET', '/api/admin/metrics?window=30d');
  assert.equal(bad.status, 422);
  assert.deepEqual(bad.body.error.details.allowed, ['24h', '7d']);
  assert.equal((await s.api('GET', '/api/admin/metrics')).status, 401);
  assert.equal((await s.api('GET', '/api/admin/metrics', { key: user.key })).status, 403);
  assert.equal((await s.api('GET', '/api/admin/alerts', { key: user.key })).status, 403);
});

test('the monitoring reads and prunes go through indexes (no table scans)', async () => {
  const plans = {
    task_hours: ['SELECT hour, model, outcome, bucket, tasks, credits FROM task_hours WHERE hour >= ?1', 1],
    live_tasks: ["SELECT model, COUNT(*) FROM tasks WHERE completed_at >= MAX(?2, (SELECT value FROM monitor_state WHERE key = ?1)) GROUP BY model", 'tasks_rolled_up_to', 1],
    rollup: ["SELECT model, COUNT(*) FROM tasks WHERE completed_at >= (SELECT value FROM monitor_state WHERE key = ?2) AND completed_at < ?1 GROUP BY model", 1, 'tasks_rolled_up_to'],
    outcomes: ['SELECT error_code, COUNT(*) FROM tasks WHERE completed_at >= ?1 GROUP BY 1', 1],
    queue: ["SELECT SUM(state = 'queued'), MIN(created_at) FROM tasks WHERE state IN ('queued', 'submitted', 'generating')"],
    kie_calls: ['SELECT op, result, bucket, SUM(calls) AS calls FROM kie_calls WHERE hour >= ?1 GROUP BY op, result, bucket', 1],
    events: ['SELECT kind, SUM(count) AS count FROM monitor_events WHERE minute >= ?1 GROUP BY kind', 1],
    samples: ['SELECT (at / 10000) * 10000 AS at, MAX(queued) FROM monitor_samples WHERE at >= ?1 GROUP BY 1 ORDER BY 1', 1],
    open_alerts: ["SELECT id FROM alerts WHERE state = 'open'"],
    alert_list: ["SELECT id, started_at, 1 AS is_open FROM alerts WHERE state = 'open' UNION ALL SELECT id, started_at, 0 AS is_open FROM alerts WHERE started_at >= ?1 AND state = 'resolved' ORDER BY is_open DESC, started_at DESC LIMIT 100", 1],
    unsent_alerts: ["SELECT id FROM alerts WHERE (start_sent_at IS NULL OR end_sent_at IS NULL) AND (start_sent_at IS NULL OR state = 'resolved') AND COALESCE(resolved_at, started_at) > ?1 ORDER BY started_at LIMIT 6", 1],
    prune_task_hours: ['DELETE FROM task_hours WHERE hour < ?1', 1],
    prune_samples: ['DELETE FROM monitor_samples WHERE at < ?1', 1],
    prune_events: ['DELETE FROM monitor_events WHERE minute < ?1', 1],
  };
  for (const [name, [q, ...params]] of Object.entries(plans)) {
    const text = (await s.sql(`EXPLAIN QUERY PLAN ${q}`, ...params)).map((p) => p.detail).join(' | ');
    assert.ok(!/\bSCAN (tasks|task_hours|kie_calls|monitor_events|monitor_samples|alerts)\b(?! USING)/.test(text), `${name} scans a table: ${text}`);
    assert.ok(/USING (COVERING )?INDEX|PRIMARY KEY/.test(text), `${name} uses an index: ${text}`);
  }
});

test('the user page reports uncaught errors and failed API calls; they reach the logs scrubbed', { timeout: 60000 }, async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
  try {
    const page = await ctx.newPage();
    let failModels = true;
    await page.route('**/api/models', (route) => (failModels
      ? route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":{"code":"internal_error","message":"down","request_id":"rid-models-503"}}' })
      : route.continue()));
    await page.goto(s.url + '/?utm=secret-campaign');
    await waitFor(() => s.logs.some((l) => l.event === 'client.error' && /GET \/api\/models failed: HTTP 503/.test(l.client_message)), { what: 'the failed API call report' });
    failModels = false;
    await page.evaluate(() => {
      setTimeout(() => { throw new Error('boom in the page, key nbk_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstu'); }, 0);
    });
    const line = await waitFor(() => s.logs.find((l) => l.event === 'client.error' && /boom in the page/.test(l.client_message)), { what: 'the uncaught error report' });
    assert.equal(line.level, 'warn');
    assert.equal(line.page, '/', 'the path only, no query string');
    assert.match(line.client_message, /key \[redacted\]/);
    assert.doesNotMatch(JSON.stringify(line), /nbk_abc|secret-campaign/);
    assert.ok(line.client_stack && line.user_agent);
    const api = s.logs.find((l) => l.event === 'client.error' && /api\/models/.test(l.client_message));
    assert.equal(api.client_request_id, null, 'only ids the page got from the server header are kept');
  } finally {
    await ctx.close();
  }
});

test('the dashboard on a desktop: sign in once for the tab, every chart with data, alerts, diagnose, recheck, credits', { timeout: 120000 }, async () => {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-GB' });
  try {
    const { page, problems } = await watchedPage(ctx, { allow: (r) => r.status() === 401 && new URL(r.url()).pathname === '/api/admin/alerts' });
    const sizes = new Map();
    page.on('response', (res) => {
      const p = new URL(res.url()).pathname;
      if (['/admin', '/admin.js', '/admin.css', '/errors.js'].includes(p) && !sizes.has(p)) sizes.set(p, res.body().then((b) => b.length));
    });
    const res = await page.goto(s.url + '/admin');
    assert.equal(res.status(), 200);
    assert.match(res.headers()['content-security-policy'], /script-src 'self'/);
    assert.match(res.headers()['content-type'], /^text\/html/);
    // A wrong token is refused in the page.
    await page.getByTestId('admin-token').fill('not-the-operator-token');
    await page.getByTestId('signin-submit').click();
    await page.getByTestId('signin-error').filter({ hasText: 'That is not the operator token.' }).waitFor();
    await page.getByTestId('admin-token').fill(SECRETS.ADMIN_TOKEN);
    await page.getByTestId('signin-submit').click();
    await page.locator('body[data-loaded="true"]').waitFor();
    await page.locator('#diag tr[data-status]').first().waitFor();

    // Under 100 KB before data.
    const transfer = (await Promise.all([...sizes.values()])).reduce((a, b) => a + b, 0);
    console.log('dashboard-transfer-bytes', transfer);
    assert.equal(sizes.size, 4);
    assert.ok(transfer < 100 * 1024, `dashboard transfer ${transfer} bytes`);

    // Every chart is drawn with data.
    for (const id of CHARTS) {
      const points = Number(await page.getByTestId(id).getAttribute('data-points'));
      assert.ok(points > 0, `${id} has data (${points})`);
      assert.ok(await page.getByTestId(id).locator('svg .bar, svg .line').count() > 0, `${id} draws marks`);
    }
    const legend = await page.getByTestId('chart-tasks').locator('.legend').textContent();
    for (const word of ['succeeded', 'content_policy', 'provider_failed', 'result_invalid', 'submission_failed']) assert.ok(legend.includes(word), word);
    assert.match(await page.getByTestId('chart-kie-calls').textContent(), /code 500/);
    assert.ok(await page.getByTestId('chart-kie-balance').locator('.threshold').count() === 1, 'the warning threshold is drawn');

    // Open alerts, the resolved one in the history, the figures.
    const open = await page.getByTestId('alert').evaluateAll((els) => els.map((e) => e.dataset.condition).sort());
    assert.deepEqual(open, ['callbacks_rejected:token', 'failures:content_policy', 'failures:provider_failed', 'kie_balance_low']);
    await page.getByTestId('alert-history-item').filter({ hasText: 'Kie balance cannot pay for any task' }).waitFor();
    assert.equal(await page.getByTestId('overall').textContent(), 'Attention');
    const tiles = await page.getByTestId('tile').allTextContents();
    assert.ok(tiles.some((t) => /^Browser errors[\d,]+/.test(t) && !/^Browser errors0/.test(t)), tiles.join(' | '));
    assert.ok(tiles.some((t) => /^Kie balance9,900below 20,000/.test(t)), tiles.join(' | '));
    // Diagnose, in the page.
    await page.locator('#diag tr[data-status="fail"]').filter({ hasText: 'callbacks' }).waitFor();
    await page.locator('#diag tr[data-status="warn"]').filter({ hasText: 'kie balance' }).waitFor();
    assert.match(await page.getByTestId('diagnose-summary').textContent(), /^FAIL · 1 failing of \d+ · environment test/);
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-desktop-1440.png'), fullPage: true });

    // A stuck task, rechecked from the page: Kie is asked, the deadline fails it (and refunds it).
    const row = page.locator(`[data-testid="stuck-task"][data-task-id="${neverTask}"]`);
    await row.getByTestId('recheck').click();
    await page.locator('#stuck-note').filter({ hasText: `${neverTask}: submitted → failed` }).waitFor();
    await row.waitFor({ state: 'detached' });
    assert.equal((await s.task(user.key, neverTask)).error.code, 'provider_timeout');

    // A user, looked up and given credits with a reason (kept in the ledger).
    const before = (await s.api('GET', '/api/me', { key: user.key })).body.user.credits;
    await page.getByTestId('recent-users').getByRole('button', { name: 'Ada Lovelace' }).click();
    await page.getByTestId('user-credits').filter({ hasText: `${before} credits` }).waitFor();
    await page.getByTestId('credit-amount').fill('25');
    await page.getByTestId('credit-reason').fill('goodwill after the outage');
    await page.getByTestId('credit-submit').click();
    await page.getByTestId('credit-result').filter({ hasText: `the balance is now ${before + 25}` }).waitFor();
    const ledger = (await s.admin('GET', `/api/admin/users/${user.id}/ledger`)).body.entries;
    assert.deepEqual([ledger[0].amount, ledger[0].reason, ledger[0].actor], [25, 'goodwill after the outage', 'admin']);

    // The 7-day window.
    await page.getByTestId('window-7d').click();
    await page.locator('#u-tasks').filter({ hasText: 'per 6 hours' }).waitFor();
    await page.locator('body[data-loaded="true"]').waitFor();
    assert.ok(Number(await page.getByTestId('chart-tasks').getAttribute('data-points')) > 0);

    // The token is kept for this tab only: a reload keeps the session, another tab asks again.
    const storage = await page.evaluate(() => ({ session: sessionStorage.getItem('nb.admin.token'), local: JSON.stringify({ ...localStorage }) }));
    assert.equal(storage.session, SECRETS.ADMIN_TOKEN);
    assert.ok(!storage.local.includes(SECRETS.ADMIN_TOKEN), 'never in localStorage');
    await page.reload();
    await page.locator('body[data-loaded="true"]').waitFor();
    assert.equal(await page.getByTestId('signin').isVisible(), false);
    const other = await ctx.newPage();
    await other.goto(s.url + '/admin');
    await other.getByTestId('signin').waitFor();
    await other.close();
    // Forget the token.
    await page.getByTestId('forget-token').click();
    await page.getByTestId('signin').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nb.admin.token')), null);

    assert.deepEqual(problems, [], 'no console errors, page errors or failed requests');
  } finally {
    await ctx.close();
  }
});

test('the dashboard on a phone: one column, no sideways scrolling, charts drawn at its width', { timeout: 60000 }, async () => {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'en-GB' });
  try {
    const { page, problems } = await watchedPage(ctx);
    await signIn(page);
    await page.locator('#diag tr[data-status]').first().waitFor();
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 390, `no horizontal scrolling (${wide}px)`);
    const [a, b] = await Promise.all([page.getByTestId('chart-time-to-result').boundingBox(), page.getByTestId('chart-failure-causes').boundingBox()]);
    assert.ok(b.y > a.y + a.height && Math.abs(a.x - b.x) < 2, 'one column');
    for (const id of CHARTS) {
      const svgWidth = await page.getByTestId(id).locator('svg').first().evaluate((el) => el.getBoundingClientRect().width);
      assert.ok(svgWidth <= 370, `${id} fits (${svgWidth}px)`);
      assert.ok(Number(await page.getByTestId(id).getAttribute('data-points')) > 0, id);
    }
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-phone-390.png'), fullPage: true });
    assert.deepEqual(problems, []);
  } finally {
    await ctx.close();
  }
});

test('POST /api/client-errors: small, rate-limited per client, never echoed', async () => {
  const st = await startStack({ name: 'client-errors' });
  try {
    const post = (json, headers) => st.api('POST', '/api/client-errors', { json, headers });
    const ok = await post({ message: 'TypeError: x is undefined', url: 'https://w.example/?token=abc#f', stack: 'at f (https://w.example/app.js?v=1:1:2)', request_id: 'abc-123' });
    assert.equal(ok.status, 204);
    assert.equal(ok.text, '');
    const line = st.logs.find((l) => l.event === 'client.error' && l.request_id === ok.headers.get('x-request-id'));
    assert.deepEqual([line.client_message, line.page, line.client_stack, line.client_request_id], ['TypeError: x is undefined', '/', 'at f (https://w.example/app.js?…)', 'abc-123']);
    const big = await post({ message: 'x'.repeat(5000), url: '/' });
    assert.equal(big.status, 413);
    assert.equal(big.body.error.code, 'payload_too_large');
    assert.ok(!big.text.includes('xxxx'), 'never echoed');
    assert.equal((await st.api('POST', '/api/client-errors', { body: 'message=hi', headers: { 'content-type': 'text/plain' } })).status, 415);
    const missing = await post({ url: '/' });
    assert.equal(missing.status, 422);
    assert.equal(missing.body.error.details.field, 'message');
    // 20 reports a minute per client: the 21st is refused with Retry-After (counted in D1, across isolates).
    let last;
    for (let i = 0; i < 20; i++) last = await post({ message: `report ${i}`, url: '/' });
    assert.equal(last.status, 429, 'two reports counted above, eighteen more reach the limit');
    assert.equal(last.body.error.code, 'rate_limited');
    assert.ok(Number(last.headers.get('retry-after')) >= 1);
    const other = await post({ message: 'from elsewhere', url: '/' }, { 'CF-Connecting-IP': '203.0.113.9' });
    assert.equal(other.status, 204, 'another client has its own window');
    assert.ok(!(await st.sql('SELECT user_id FROM rate_windows')).some((r) => r.user_id.includes('203.0.113.9')), 'the address itself is not kept');
  } finally {
    await st.close();
  }
});
