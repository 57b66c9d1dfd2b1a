// Alerts, against a local receiver (a small HTTP server in this test): one
// message when a condition starts, one (saying "resolved") when it ends,
// nothing in between; a receiver that is down, refuses or hangs is retried by
// the next cron run and never holds up a request. Slack, Feishu (signed body)
// and JSON (signed header) formats.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { startStack, requireBuild, waitFor, SECRETS } from './harness.mjs';

/** A webhook receiver: records every request; `mode` is ok | down | hang. */
async function startReceiver({ answer } = {}) {
  const calls = [];
  const hanging = new Set();
  const receiver = { calls, mode: 'ok', url: '' };
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const call = { path: req.url, headers: req.headers, body, json: null, mode: receiver.mode };
      try { call.json = JSON.parse(body); } catch { /* not JSON */ }
      calls.push(call);
      if (receiver.mode === 'hang') {
        hanging.add(res);
        return;
      }
      if (receiver.mode === 'down') {
        res.writeHead(503, { 'content-type': 'text/plain' }).end('receiver down');
        return;
      }
      const [status, type, text] = answer ? answer(call) : [200, 'text/plain', 'ok'];
      res.writeHead(status, { 'content-type': type }).end(text);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  receiver.url = `http://127.0.0.1:${server.address().port}`;
  receiver.release = () => {
    for (const res of hanging) res.destroy();
    hanging.clear();
  };
  receiver.close = () => {
    receiver.release();
    return new Promise((r) => { server.close(() => r()); server.closeAllConnections?.(); });
  };
  /** Messages the receiver accepted (mode ok at the time). */
  receiver.accepted = () => calls.filter((c) => c.mode === 'ok');
  return receiver;
}

const setCredits = (stack, credits) =>
  fetch(`${stack.sim.url}/_sim/config`, { method: 'POST', body: JSON.stringify({ credits }) }).then((r) => r.json());
const alerts = async (stack) => (await stack.admin('GET', '/api/admin/alerts')).body.alerts;
const noSecretIn = (stack, secret) => {
  for (const line of stack.raw) assert.ok(!line.includes(secret), `a receiver secret appeared in a log line: ${line.slice(0, 200)}`);
  for (const r of stack.responses) assert.ok(!r.text.includes(secret), `a receiver secret appeared in the response to ${r.path}`);
};

let receivers = [];
before(() => requireBuild());
after(async () => Promise.all(receivers.map((r) => r.close())));

test('slack: start once, nothing in between, "resolved" once; a receiver that is down is retried next run', { timeout: 150000 }, async () => {
  const rx = await startReceiver();
  receivers.push(rx);
  const hookPath = '/services/T0AAA/B0BBB/slack-hook-secret-path';
  const st = await startStack({ name: 'alerts-slack', vars: { ALERT_WEBHOOK_URL: rx.url + hookPath, KIE_BALANCE_WARN: '0', ALERT_RESOLVE_AFTER_SECONDS: '0' } });
  try {
    // Healthy: nothing is sent.
    await st.cron();
    assert.equal(rx.calls.length, 0);

    // The condition starts: one message, then silence while it lasts.
    await setCredits(st, 0);
    await st.cron();
    assert.equal(rx.calls.length, 1);
    const start = rx.calls[0];
    assert.equal(start.path, hookPath);
    assert.match(start.headers['content-type'], /^application\/json/);
    assert.deepEqual(Object.keys(start.json), ['text']);
    assert.match(start.json.text, /^\[banana-worker · test\] ALERT: Kie balance cannot pay for any task: 0 Kie credits left; the cheapest model \(nano-banana\) costs about 4 per task/);
    assert.match(start.json.text, new RegExp(`Dashboard: ${st.url}/admin$`));
    assert.doesNotMatch(start.json.text, /resolved/);
    await st.cron();
    await st.cron();
    assert.equal(rx.calls.length, 1, 'nothing in between');
    let list = await alerts(st);
    assert.equal(list.length, 1);
    const open = list[0];
    assert.deepEqual(Object.keys(open).filter((k) => ['id', 'condition', 'state', 'started_at', 'resolved_at', 'message'].includes(k)).sort(),
      ['condition', 'id', 'message', 'resolved_at', 'started_at', 'state']);
    assert.match(open.id, /^alr_/);
    assert.deepEqual([open.condition, open.state, open.resolved_at], ['kie_balance_empty', 'open', null]);
    assert.match(open.started_at, /^\d{4}-\d\d-\d\dT/);
    assert.ok(open.delivery.start_sent_at);

    // It ends: one message saying "resolved", then silence.
    await setCredits(st, 10000);
    await st.cron();
    assert.equal(rx.calls.length, 2);
    assert.match(rx.calls[1].json.text, /^\[banana-worker · test\] Kie balance cannot pay for any task — resolved after \d+ s; balance now 10000 Kie credits\./);
    await st.cron();
    assert.equal(rx.calls.length, 2);
    list = await alerts(st);
    assert.equal(list[0].state, 'resolved');
    assert.ok(list[0].resolved_at && list[0].delivery.end_sent_at);
    assert.match(list[0].resolved_message, /resolved/);

    // The receiver is down when the next condition starts: recorded, retried each run, sent once it is back.
    rx.mode = 'down';
    st.sim.configure({ apiKey: 'rotated-at-kie' });
    await st.cron();
    await st.cron();
    assert.equal(rx.calls.filter((c) => c.mode === 'down').length, 2, 'one attempt per run');
    list = await alerts(st);
    const rejected = list.find((a) => a.condition === 'kie_key_rejected');
    assert.equal(rejected.state, 'open');
    assert.equal(rejected.delivery.start_sent_at, null);
    assert.equal(rejected.delivery.last_error, 'http 503');
    assert.equal(rejected.delivery.attempts, 2);
    const diag = (await st.admin('GET', '/api/admin/diagnose')).body;
    const delivery = diag.checks.find((c) => c.name === 'alert delivery');
    assert.equal(delivery.status, 'fail');
    assert.match(delivery.hint, /1 alert messages are waiting: the slack receiver answered "http 503" on the last try/);
    assert.ok(st.logs.some((l) => l.event === 'alert.send_failed' && l.cause === 'http 503'));

    rx.mode = 'ok';
    await st.cron();
    const sent = rx.accepted();
    assert.equal(sent.length, 3);
    assert.match(sent[2].json.text, /ALERT: Kie rejects the API key: kie code 401: Unauthorized\. Every new task fails until KIEAI_APIKEY holds a valid key\./);
    await st.cron();
    assert.equal(rx.accepted().length, 3, 'delivered once');

    // A receiver that hangs: the cron gives up after its own timeout, and
    // requests are answered meanwhile (delivery only ever happens in the cron).
    st.sim.configure({ apiKey: SECRETS.KIEAI_APIKEY });
    rx.mode = 'hang';
    const cronDone = st.cron().then(() => 'cron');
    await waitFor(() => rx.calls.some((c) => c.mode === 'hang'), { what: 'the hanging delivery' });
    const u = await st.createUser(3);
    const created = await st.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'while the receiver hangs' } });
    assert.equal(created.status, 202);
    const first = await Promise.race([cronDone, Promise.resolve('request answered first')]);
    assert.equal(first, 'request answered first');
    assert.equal(await cronDone, 'cron');
    rx.release();
    list = await alerts(st);
    const hung = list.find((a) => a.condition === 'kie_key_rejected');
    assert.equal(hung.state, 'resolved');
    assert.equal(hung.delivery.last_error, 'timeout');
    assert.equal(hung.delivery.end_sent_at, null);
    rx.mode = 'ok';
    await st.cron();
    assert.match(rx.accepted().at(-1).json.text, /Kie rejects the API key — resolved after/);
    assert.equal(rx.accepted().length, 4);

    noSecretIn(st, 'slack-hook-secret-path');
  } finally {
    await st.close();
  }
});

test('feishu: the body is signed with ALERT_WEBHOOK_SECRET; a Feishu error code (HTTP 200) is a failed delivery', { timeout: 120000 }, async () => {
  const secret = 'feishu-bot-signing-secret';
  let expect = 'not-yet-the-right-secret';
  const rx = await startReceiver({
    answer: (call) => {
      const b = call.json || {};
      const want = createHmac('sha256', `${b.timestamp}\n${expect}`).update('').digest('base64');
      const fresh = Math.abs(Date.now() / 1000 - Number(b.timestamp)) < 3600;
      return b.sign === want && fresh
        ? [200, 'application/json', '{"code":0,"msg":"success","data":{}}']
        : [200, 'application/json', '{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}'];
    },
  });
  receivers.push(rx);
  const st = await startStack({
    name: 'alerts-feishu',
    vars: { ALERT_WEBHOOK_URL: `${rx.url}/open-apis/bot/v2/hook/feishu-hook-token`, ALERT_WEBHOOK_FORMAT: 'feishu', ALERT_WEBHOOK_SECRET: secret, ALERT_RESOLVE_AFTER_SECONDS: '0' },
  });
  try {
    await setCredits(st, 500); // below the default KIE_BALANCE_WARN (1000), above a task's cost
    await st.cron();
    assert.equal(rx.calls.length, 1);
    let [a] = await alerts(st);
    assert.equal(a.condition, 'kie_balance_low');
    assert.match(a.delivery.last_error, /^feishu code 19021: sign match fail/);
    assert.equal(a.delivery.start_sent_at, null);

    expect = secret; // the bot's secret now matches
    await st.cron();
    assert.equal(rx.calls.length, 2);
    const msg = rx.calls[1].json;
    assert.equal(msg.msg_type, 'text');
    assert.match(msg.content.text, /^\[banana-worker · test\] ALERT: Kie balance below the warning threshold: 500 Kie credits left, below KIE_BALANCE_WARN \(1000\)\./);
    assert.match(msg.timestamp, /^\d{10}$/);
    [a] = await alerts(st);
    assert.ok(a.delivery.start_sent_at);

    await st.cron();
    assert.equal(rx.calls.length, 2, 'nothing in between');
    await setCredits(st, 5000);
    await st.cron();
    assert.equal(rx.calls.length, 3);
    assert.match(rx.calls[2].json.content.text, /Kie balance below the warning threshold — resolved after \d+ s; balance now 5000 Kie credits\./);
    noSecretIn(st, secret);
    noSecretIn(st, 'feishu-hook-token');
  } finally {
    await st.close();
  }
});

test('json: a documented body, signed in X-Banana-Signature; failures by cause and rejected callbacks alert too', { timeout: 150000 }, async () => {
  const secret = 'json-alert-signing-secret';
  const rx = await startReceiver({ answer: () => [204, 'text/plain', ''] });
  receivers.push(rx);
  const st = await startStack({
    name: 'alerts-json',
    vars: { ALERT_WEBHOOK_URL: `${rx.url}/hooks/banana`, ALERT_WEBHOOK_FORMAT: 'json', ALERT_WEBHOOK_SECRET: secret, ALERT_FAILURE_MIN: '2', ALERT_RESOLVE_AFTER_SECONDS: '0' },
  });
  try {
    // Two tasks fail at Kie (provider_failed): 2 of 3 finished, over the 20% rate and the minimum of 2.
    const u = await st.createUser(20);
    const ids = [];
    for (const prompt of ['fine', 'broken [sim:internal]', 'broken too [sim:internal]']) {
      const r = await st.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt } });
      ids.push(r.body.task.id);
    }
    for (const id of ids) await st.waitTerminal(u.key, id);
    // A forged callback (a wrong per-task token) is answered 401 and counted.
    const forged = await st.api('POST', `/api/webhooks/kie-image?task=${ids[0]}&token=forged`, { json: { code: 200, data: { taskId: 'x', state: 'success' } } });
    assert.equal(forged.status, 401);
    await waitFor(async () => {
      const m = await st.admin('GET', '/api/admin/metrics');
      return m.body.events.callbacks_rejected.token === 1;
    }, { what: 'the rejected callback to be counted' });

    await st.cron();
    const bodies = rx.calls.map((c) => c.json);
    assert.deepEqual(bodies.map((b) => b.alert.condition).sort(), ['callbacks_rejected:token', 'failures:provider_failed']);
    for (const call of rx.calls) {
      // Verify as a receiver would: HMAC-SHA256 over "<t>.<raw body>", and a fresh timestamp.
      const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(call.headers['x-banana-signature']);
      assert.equal(v1, createHmac('sha256', secret).update(`${t}.${call.body}`).digest('hex'));
      assert.ok(Math.abs(Date.now() / 1000 - Number(t)) < 300);
      assert.equal(call.headers['x-banana-event'], 'alert.opened');
      const b = call.json;
      assert.deepEqual(Object.keys(b).sort(), ['alert', 'dashboard', 'environment', 'sent_at', 'service', 'text', 'type']);
      assert.deepEqual([b.type, b.service, b.environment, b.dashboard], ['alert.opened', 'banana-worker', 'test', `${st.url}/admin`]);
      assert.deepEqual(Object.keys(b.alert).sort(), ['condition', 'id', 'message', 'resolved_at', 'started_at', 'state']);
      assert.equal(b.alert.state, 'open');
    }
    const failures = bodies.find((b) => b.alert.condition === 'failures:provider_failed');
    assert.match(failures.alert.message, /^Tasks failing with provider_failed: 2 of 3 tasks finished in the last 15 min failed with provider_failed \(66%/);
    const callbacks = bodies.find((b) => b.alert.condition === 'callbacks_rejected:token');
    assert.match(callbacks.alert.message, /^Kie callbacks rejected \(token\): 1 Kie callbacks were answered 401 in the last 15 min; the per-task token in the callback URL is wrong/);

    // A third condition starts and ends: alert.opened, then alert.resolved with resolved_at.
    await setCredits(st, 1);
    await st.cron();
    await setCredits(st, 10000);
    await st.cron();
    const balance = rx.calls.filter((c) => c.json.alert.condition === 'kie_balance_empty');
    assert.deepEqual(balance.map((c) => c.headers['x-banana-event']), ['alert.opened', 'alert.resolved']);
    assert.equal(balance[1].json.alert.state, 'resolved');
    assert.match(balance[1].json.alert.resolved_at, /^\d{4}-/);
    assert.match(balance[1].json.alert.message, /resolved/);
    assert.equal(rx.calls.length, 2 + 2 + 2, 'kie_balance_low opened and resolved with it');
    noSecretIn(st, secret);
  } finally {
    await st.close();
  }
});

test('D1 unreadable (no migrations): the scheduled job still says so, once', { timeout: 90000 }, async () => {
  const rx = await startReceiver();
  receivers.push(rx);
  const st = await startStack({ name: 'alerts-no-d1', migrations: false, vars: { ALERT_WEBHOOK_URL: `${rx.url}/hook` } });
  try {
    await st.cron();
    assert.equal(rx.calls.length, 1);
    assert.match(rx.calls[0].json.text, /ALERT: D1 cannot be read: the scheduled job failed with "d1 [^"]*no such table[^"]*"\. Nothing can be created or finished until it can/);
    await waitFor(async () => {
      await st.cron();
      return st.logs.filter((l) => l.event === 'monitor.failed').length >= 2;
    }, { what: 'a second run' });
    assert.equal(rx.calls.length, 1, 'not repeated while it lasts');
  } finally {
    await st.close();
  }
});
