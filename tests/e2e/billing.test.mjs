// Buying credits: Stripe Checkout into the ledger, exactly once; refunds and
// disputes taken back, never below zero; owed credits block creating until an
// operator clears them. The Worker talks to a local Stripe stand-in
// (sim/stripe-sim.mjs); every webhook is signed by the official `stripe`
// library, the signing oracle.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Stripe from 'stripe';
import { startStack, requireBuild, ledgerInvariant, waitFor } from './harness.mjs';
import { startStripeSim, makeEvent } from '../../sim/stripe-sim.mjs';

const STRIPE_KEY = 'sk_test_standin_key_5b7d9f1a3c';
const WEBHOOK_SECRET = 'whsec_standin_secret_8e6c4a2b0d';
const PACKS = [
  { id: 'small', credits: 10, amount: 500, currency: 'usd' },
  { id: 'big', credits: 100, amount: 4000, currency: 'usd' },
];
const oracle = new Stripe('sk_test_oracle_only');
const nowS = () => Math.floor(Date.now() / 1000);

let s, stripeSim;
const billingVars = () => ({
  STRIPE_SECRET_KEY: STRIPE_KEY,
  STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  STRIPE_API_BASE: stripeSim.url,
  CREDIT_PACKS: JSON.stringify(PACKS),
  MAX_ACTIVE_TASKS: '50',
  RATE_LIMIT_PER_MINUTE: '1000',
});

before(async () => {
  requireBuild();
  stripeSim = await startStripeSim({ apiKey: STRIPE_KEY, webhookSecret: WEBHOOK_SECRET });
  s = await startStack({ name: 'billing', vars: billingVars() });
});
after(async () => {
  if (s) {
    await s.close();
    // The Stripe secrets are not in the harness's list: hold them to the same rule here.
    for (const secret of [STRIPE_KEY, WEBHOOK_SECRET]) {
      for (const line of s.raw) assert.ok(!line.includes(secret), `a Stripe secret appeared in a log line: ${line.slice(0, 160)}`);
      for (const r of s.responses) assert.ok(!r.text.includes(secret), `a Stripe secret appeared in the response to ${r.method} ${r.path}`);
    }
  }
  if (stripeSim) await stripeSim.close();
});

/** Posts a Stripe event to the Worker, signed by the official library (or with `header`). */
async function send(event, { timestamp = nowS(), secret = WEBHOOK_SECRET, header, payload } = {}) {
  const body = payload ?? JSON.stringify(event);
  const signature = header ?? oracle.webhooks.generateTestHeaderString({ payload: body, secret, timestamp });
  return s.api('POST', '/api/webhooks/stripe', { body, headers: { 'content-type': 'application/json', 'stripe-signature': signature } });
}

async function checkout(key, pack = 'small') {
  return s.api('POST', '/api/billing/checkout', { key, json: { pack } });
}
async function buy(key, pack = 'small') {
  const r = await checkout(key, pack);
  assert.equal(r.status, 201, r.text);
  return r.body.order_id;
}
const sessionOf = (orderId) => [...stripeSim.state.sessions.values()].find((x) => x.metadata.order_id === orderId);
const completed = (orderId, status = 'paid', type = 'checkout.session.completed') => makeEvent(type, stripeSim.completedSession(sessionOf(orderId).id, status));
const me = async (key) => (await s.api('GET', '/api/me', { key })).body.user;
const order = async (id) => (await s.sql('SELECT * FROM orders WHERE id = ?', id))[0];
const ledgerRows = (userId) => s.sql('SELECT kind, amount, balance_after, reason, actor FROM ledger WHERE user_id = ? ORDER BY id', userId);

/** users.credits = SUM(ledger), never negative; users.owed = SUM(orders.owed). */
async function invariants(userId) {
  const inv = await ledgerInvariant(s, userId);
  assert.equal(inv.balance, inv.ledgerSum, 'the ledger sums to the balance');
  assert.ok(inv.balance >= 0 && (inv.lowest === null || inv.lowest >= 0), 'never negative');
  const [{ owed }] = await s.sql('SELECT owed FROM users WHERE id = ?', userId);
  const [{ total }] = await s.sql('SELECT COALESCE(SUM(owed), 0) AS total FROM orders WHERE user_id = ?', userId);
  assert.equal(owed, total, 'users.owed sums the orders');
  return { ...inv, owed };
}

test('packs come from CREDIT_PACKS; an unknown pack is 422 and asks Stripe nothing', async () => {
  const packs = await s.api('GET', '/api/billing/packs');
  assert.equal(packs.status, 200);
  assert.deepEqual(packs.body.packs, PACKS);
  const u = await s.createUser(0);
  const calls = stripeSim.state.calls.length;
  const r = await checkout(u.key, 'nope');
  assert.equal(r.status, 422);
  assert.equal(r.body.error.code, 'validation_failed');
  assert.equal(r.body.error.details.field, 'pack');
  assert.deepEqual(r.body.error.details.allowed, ['small', 'big']);
  assert.equal((await checkout(undefined)).status, 401);
  assert.equal(stripeSim.state.calls.length, calls);
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM orders WHERE user_id = ?', u.id))[0].n, 0);
});

test('checkout records the order, then one form-encoded Checkout Session keyed by it; paid completion grants once', async () => {
  const u = await s.createUser(3);
  const calls = stripeSim.state.calls.length;
  const r = await checkout(u.key);
  assert.equal(r.status, 201, r.text);
  const { order_id: id, url } = r.body;
  assert.match(id, /^ord_[a-z2-7]{26}$/);
  const call = stripeSim.state.calls.at(-1);
  assert.equal(stripeSim.state.calls.length, calls + 1);
  assert.equal(call.path, '/v1/checkout/sessions');
  assert.match(call.contentType, /^application\/x-www-form-urlencoded/);
  assert.equal(call.idempotencyKey, id, 'our order id is the Idempotency-Key');
  assert.equal(call.params.mode, 'payment');
  assert.equal(call.params.client_reference_id, id);
  assert.equal(call.params['metadata[order_id]'], id);
  assert.equal(call.params['line_items[0][price_data][unit_amount]'], '500');
  assert.equal(call.params['line_items[0][price_data][currency]'], 'usd');
  assert.equal(call.params.success_url, `${s.url}/?checkout=success&order=${id}`);
  assert.equal(call.params.cancel_url, `${s.url}/?checkout=cancel&order=${id}`);
  const session = sessionOf(id);
  assert.equal(url, session.url);
  let o = await order(id);
  assert.equal(o.state, 'open');
  assert.equal(o.checkout_session_id, session.id);
  assert.equal((await me(u.key)).credits, 3, 'nothing granted before Stripe says paid');

  const event = completed(id);
  const paid = await send(event);
  assert.equal(paid.status, 200, paid.text);
  assert.equal(paid.body.outcome, 'granted');
  assert.equal((await me(u.key)).credits, 13);
  const again = await send(event);
  assert.equal(again.status, 200);
  assert.equal(again.body.outcome, 'replayed');
  assert.equal((await me(u.key)).credits, 13);
  const grants = (await ledgerRows(u.id)).filter((x) => x.reason === `purchase ${id}`);
  assert.deepEqual(grants, [{ kind: 'grant', amount: 10, balance_after: 13, reason: `purchase ${id}`, actor: 'stripe' }]);
  o = await order(id);
  assert.equal(o.state, 'paid');
  assert.equal(o.payment_intent_id, session.pi);
  const mine = await s.api('GET', '/api/billing/orders', { key: u.key });
  assert.equal(mine.body.orders[0].id, id);
  assert.equal(mine.body.orders[0].state, 'paid');
  assert.equal(mine.body.orders[0].url, null);
  assert.ok(!('checkout_session_id' in mine.body.orders[0]));
  await invariants(u.id);
});

test('the same event five times at once, and completed + async_payment_succeeded for one session, grant once', async () => {
  const u = await s.createUser(0);
  const id = await buy(u.key);
  const event = completed(id);
  const results = await Promise.all(Array.from({ length: 5 }, () => send(event)));
  assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200]);
  assert.deepEqual(results.map((r) => r.body.outcome).sort(), ['granted', 'replayed', 'replayed', 'replayed', 'replayed']);
  const late = await send(completed(id, 'paid', 'checkout.session.async_payment_succeeded'));
  assert.equal(late.status, 200);
  assert.equal(late.body.outcome, 'no_change');
  assert.equal((await me(u.key)).credits, 10);

  // Both kinds of event, many deliveries each, all at once, on a fresh order.
  const id2 = await buy(u.key);
  const done = completed(id2);
  const mixed = [done, done, done, ...Array.from({ length: 4 }, () => completed(id2, 'paid', 'checkout.session.async_payment_succeeded'))];
  const outcomes = (await Promise.all(mixed.map((e) => send(e)))).map((r) => r.body.outcome);
  assert.equal(outcomes.filter((o) => o === 'granted').length, 1, outcomes.join(','));
  assert.equal((await me(u.key)).credits, 20);
  assert.equal((await ledgerRows(u.id)).filter((x) => x.kind === 'grant').length, 2);
  await invariants(u.id);
});

test('an unpaid completion waits; async success then grants once; a failed or expired session closes unpaid', async () => {
  const u = await s.createUser(0);
  const id = await buy(u.key);
  const waiting = await send(completed(id, 'unpaid'));
  assert.equal(waiting.body.outcome, 'processing');
  let o = await order(id);
  assert.equal(o.state, 'processing');
  assert.equal(o.payment_intent_id, sessionOf(id).pi, 'the PaymentIntent is kept for refunds');
  assert.equal((await me(u.key)).credits, 0);
  const success = completed(id, 'paid', 'checkout.session.async_payment_succeeded');
  assert.equal((await send(success)).body.outcome, 'granted');
  assert.equal((await send(success)).body.outcome, 'replayed');
  assert.equal((await me(u.key)).credits, 10);

  const failing = await buy(u.key, 'big');
  assert.equal((await send(completed(failing, 'unpaid'))).body.outcome, 'processing');
  assert.equal((await send(completed(failing, 'unpaid', 'checkout.session.async_payment_failed'))).body.outcome, 'closed');
  o = await order(failing);
  assert.equal(o.state, 'failed');
  assert.equal(o.failure, 'payment_failed');
  const expiring = await buy(u.key, 'big');
  assert.equal((await send(completed(expiring, 'unpaid', 'checkout.session.expired'))).body.outcome, 'closed');
  assert.equal((await order(expiring)).state, 'expired');
  assert.equal((await me(u.key)).credits, 10);
  await invariants(u.id);
});

test('bad signatures and timestamps outside ±300 s are refused with 400, change nothing, and the log says why', async () => {
  const u = await s.createUser(0);
  const id = await buy(u.key);
  const event = completed(id);
  const payload = JSON.stringify(event);
  const [{ n: eventsBefore }] = await s.sql('SELECT COUNT(*) AS n FROM stripe_events');
  const cases = [
    ['wrong secret', { secret: 'whsec_not_the_endpoint_secret' }, /no v1 signature matches/],
    ['tampered body', { payload: payload.replace('"paid"', '"paid" '), header: oracle.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET }) }, /no v1 signature matches/],
    ['no header', { header: '' }, /no Stripe-Signature header/],
    ['no v1', { header: `t=${nowS()},v0=${'a'.repeat(64)}` }, /no v1= signature/],
    ['no timestamp', { header: `v1=${'a'.repeat(64)}` }, /no valid t= timestamp/],
    ['old', { timestamp: nowS() - 400 }, /more than 300 s in the past/],
    ['future', { timestamp: nowS() + 400 }, /more than 300 s in the future/],
  ];
  for (const [name, opts, why] of cases) {
    const r = await send(event, { ...opts, payload: opts.payload ?? payload });
    assert.equal(r.status, 400, `${name}: ${r.text}`);
    assert.equal(r.body.error.code, 'invalid_request', name);
    assert.match(r.body.error.message, why, name);
    await waitFor(() => s.logs.some((l) => l.event === 'stripe.rejected' && l.request_id === r.headers.get('x-request-id') && why.test(l.reason)), { what: `a log line for ${name}` });
  }
  assert.equal((await me(u.key)).credits, 0);
  assert.equal((await order(id)).state, 'open');
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM stripe_events'))[0].n, eventsBefore, 'no refused event is remembered');

  // Within the window, among several v1 signatures (a secret being rolled), one matching is enough.
  const t = nowS() - 240;
  const good = oracle.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET, timestamp: t });
  const header = `t=${t},v1=${'0'.repeat(64)},${good.split(',')[1]}`;
  const ok = await send(event, { header, payload });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.outcome, 'granted');
  assert.equal((await me(u.key)).credits, 10);
  await invariants(u.id);
});

test('a refund after part of the credits were spent: balance to zero, the rest owed, creates refused until the operator clears it', async () => {
  const u = await s.createUser(0);
  const id = await buy(u.key);
  assert.equal((await send(completed(id))).body.outcome, 'granted');
  for (let i = 0; i < 3; i++) {
    const t = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: `spent ${i}` } });
    assert.equal(t.status, 202, t.text);
    assert.equal((await s.waitTerminal(u.key, t.body.task.id)).state, 'succeeded');
  }
  assert.equal((await me(u.key)).credits, 4);

  const session = sessionOf(id);
  const refund = makeEvent('charge.refunded', stripeSim.charge(session.id, { refunded: true, amount_refunded: 500, refunds: { data: [{ id: 're_full_1' }] } }));
  const r = await send(refund);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.outcome, 'reversed');
  const user = await me(u.key);
  assert.equal(user.credits, 0);
  assert.equal(user.owed, 6);
  assert.deepEqual((await ledgerRows(u.id)).at(-1), { kind: 'adjust', amount: -4, balance_after: 0, reason: 'refund re_full_1', actor: 'stripe' });
  const o = await order(id);
  assert.equal(o.owed, 6);
  assert.equal(o.reversed_credits, 10);
  assert.equal(o.refunded_amount, 500);
  assert.equal((await send(refund)).body.outcome, 'replayed');
  assert.equal((await me(u.key)).credits, 0);
  await invariants(u.id);

  const refused = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'blocked' } });
  assert.equal(refused.status, 402);
  assert.equal(refused.body.error.code, 'credits_owed');
  assert.equal(refused.body.error.details.owed, 6);
  const noCheckout = await checkout(u.key);
  assert.equal(noCheckout.status, 402);
  assert.equal(noCheckout.body.error.code, 'credits_owed');
  const listed = await s.admin('GET', '/api/admin/orders?owed=true');
  assert.ok(listed.body.orders.some((x) => x.id === id && x.owed === 6 && x.user_id === u.id));
  const mine = await s.api('GET', '/api/billing/orders', { key: u.key });
  assert.equal(mine.body.owed, 6);

  assert.equal((await s.api('POST', `/api/admin/users/${u.id}/clear-owed`, { key: u.key, json: { reason: 'x' } })).status, 403);
  const cleared = await s.admin('POST', `/api/admin/users/${u.id}/clear-owed`, { reason: 'settled by email' });
  assert.equal(cleared.status, 200, cleared.text);
  assert.equal(cleared.body.cleared, 6);
  assert.equal(cleared.body.user.owed, 0);
  assert.deepEqual((await ledgerRows(u.id)).at(-1), { kind: 'adjust', amount: 0, balance_after: 0, reason: 'owed cleared (6 credits): settled by email', actor: 'admin' });
  const audit = await s.admin('GET', `/api/admin/audit?target=${u.id}`);
  assert.deepEqual([audit.body.entries[0].action, audit.body.entries[0].detail], ['owed.clear', '6 credits (settled by email)']);
  assert.equal((await order(id)).owed_cleared, 6);
  assert.equal((await s.admin('POST', `/api/admin/users/${u.id}/clear-owed`, { reason: 'again' })).body.cleared, 0);
  await invariants(u.id);

  const unblocked = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'no credits yet' } });
  assert.equal(unblocked.body.error.code, 'insufficient_credits', 'the block is lifted; the balance decides again');
  await s.admin('POST', `/api/admin/users/${u.id}/credits`, { amount: 2, reason: 'goodwill' });
  assert.equal((await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'again' } })).status, 202);
  await invariants(u.id);
});

test('a refund or dispute that arrives before its purchase is refused with 503 and remembered only once it can take the credits back', async () => {
  const u = await s.createUser(0);
  // 1. The refund comes first: we do not know the PaymentIntent yet; Stripe says it is our order's.
  const id = await buy(u.key);
  const cs = sessionOf(id).id;
  const refund = makeEvent('charge.refunded', stripeSim.charge(cs, { refunded: true, amount_refunded: 500, refunds: { data: [{ id: 're_early_1' }] } }));
  const early = await send(refund);
  assert.equal(early.status, 503, early.text);
  assert.equal(early.body.error.code, 'upstream_unavailable');
  assert.equal(early.body.error.retryable, true);
  assert.ok(stripeSim.state.calls.some((c) => c.method === 'GET' && c.path === '/v1/checkout/sessions'), 'Stripe was asked whose payment it is');
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM stripe_events WHERE id = ?', refund.id))[0].n, 0, 'not remembered: Stripe delivers it again');
  assert.ok(s.logs.some((l) => l.event === 'billing.reversal_early' && l.order_id === id));
  // The purchase's own event lands, then Stripe's redelivery of the refund takes everything back.
  assert.equal((await send(completed(id))).body.outcome, 'granted');
  assert.equal((await me(u.key)).credits, 10);
  assert.equal((await send(refund)).body.outcome, 'reversed');
  assert.equal((await me(u.key)).credits, 0);
  assert.equal((await order(id)).reversed_credits, 10);
  await invariants(u.id);

  // 2. A delayed payment method: the order is processing (its PaymentIntent known) when a dispute arrives.
  const slow = await buy(u.key);
  assert.equal((await send(completed(slow, 'unpaid'))).body.outcome, 'processing');
  const dispute = { id: 'dp_early_1', object: 'dispute', amount: 500, currency: 'usd', charge: sessionOf(slow).charge, payment_intent: sessionOf(slow).pi, status: 'needs_response' };
  const disputed = makeEvent('charge.dispute.created', dispute);
  assert.equal((await send(disputed)).status, 503);
  assert.equal((await send(completed(slow, 'paid', 'checkout.session.async_payment_succeeded'))).body.outcome, 'granted');
  assert.equal((await send(disputed)).body.outcome, 'reversed');
  assert.equal((await me(u.key)).credits, 0);
  await invariants(u.id);

  // 3. Stripe cannot be asked: 503 as well, nothing remembered; a payment not made through our Checkout stays 200.
  stripeSim.configure({ fail: 500 });
  try {
    const unknown = makeEvent('charge.refunded', { id: 'ch_unasked', object: 'charge', payment_intent: 'pi_unasked', amount: 100, amount_refunded: 100 });
    assert.equal((await send(unknown)).status, 503);
    assert.equal((await s.sql('SELECT COUNT(*) AS n FROM stripe_events WHERE id = ?', unknown.id))[0].n, 0);
  } finally {
    stripeSim.configure({ fail: null });
  }
});

test('a partial refund takes back its share once; redeliveries, repeats and late smaller totals take nothing', async () => {
  const u = await s.createUser(0);
  const id = await buy(u.key, 'big'); // 100 credits for 4000
  await send(completed(id));
  const cs = sessionOf(id).id;
  const refunded = (amount, refundId) => makeEvent('charge.refunded', stripeSim.charge(cs, { amount_refunded: amount, refunds: { data: [{ id: refundId }] } }));
  const first = refunded(1000, 're_part_1');
  assert.equal((await send(first)).body.outcome, 'reversed');
  assert.equal((await me(u.key)).credits, 75);
  assert.equal((await send(first)).body.outcome, 'replayed', 'the same delivery again');
  assert.equal((await send(refunded(1000, 're_part_1'))).body.outcome, 'no_change', 'another event with the same cumulative amount');
  assert.equal((await me(u.key)).credits, 75);
  // Two more refunds reported at once, in either order: 75 credits back in all (3000 of 4000).
  const outcomes = await Promise.all([send(refunded(3000, 're_part_3')), send(refunded(2000, 're_part_2'))]);
  assert.ok(outcomes.every((r) => r.status === 200));
  assert.equal((await me(u.key)).credits, 25);
  assert.equal((await send(refunded(2000, 're_part_2'))).body.outcome !== 'reversed', true, 'a late smaller total takes nothing');
  assert.equal((await me(u.key)).credits, 25);
  assert.equal((await send(refunded(4000, 're_part_4'))).body.outcome, 'reversed');
  assert.equal((await me(u.key)).credits, 0);
  const o = await order(id);
  assert.equal(o.refunded_amount, 4000);
  assert.equal(o.reversed_credits, 100);
  assert.equal(o.owed, 0);
  const adjusts = (await ledgerRows(u.id)).filter((x) => x.kind === 'adjust');
  assert.equal(adjusts.reduce((a, x) => a + x.amount, 0), -100);
  assert.ok(adjusts.every((x) => /^refund re_part_\d$/.test(x.reason)));
  await invariants(u.id);
});

test('a dispute takes the disputed credits back once (created and funds_withdrawn share its key)', async () => {
  const u = await s.createUser(0);
  const id = await buy(u.key);
  await send(completed(id));
  const t = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'nano-banana', prompt: 'before the dispute' } });
  assert.equal(t.status, 202);
  assert.equal((await s.waitTerminal(u.key, t.body.task.id)).state, 'succeeded');
  assert.equal((await me(u.key)).credits, 8);
  const pi = sessionOf(id).pi;
  const dispute = { id: 'dp_test_1', object: 'dispute', amount: 500, currency: 'usd', charge: sessionOf(id).charge, payment_intent: pi, reason: 'fraudulent', status: 'needs_response' };
  const created = await send(makeEvent('charge.dispute.created', dispute));
  assert.equal(created.body.outcome, 'reversed');
  const withdrawn = await send(makeEvent('charge.dispute.funds_withdrawn', dispute));
  assert.equal(withdrawn.body.outcome, 'no_change');
  const user = await me(u.key);
  assert.equal(user.credits, 0);
  assert.equal(user.owed, 2);
  assert.deepEqual((await ledgerRows(u.id)).at(-1), { kind: 'adjust', amount: -8, balance_after: 0, reason: 'dispute dp_test_1', actor: 'stripe' });
  const o = await order(id);
  assert.equal(o.disputed_amount, 500);
  assert.equal(o.reversed_credits, 10);
  await invariants(u.id);
});

test('a double-clicked checkout is one order and one Stripe call with the order id as Idempotency-Key', async () => {
  const u = await s.createUser(0);
  const calls = stripeSim.state.calls.length;
  stripeSim.configure({ delayMs: 400 });
  let clicks;
  try {
    clicks = await Promise.all([checkout(u.key), checkout(u.key)]);
  } finally {
    stripeSim.configure({ delayMs: 0 });
  }
  assert.deepEqual(clicks.map((r) => r.status).sort(), [200, 201], clicks.map((r) => r.text).join('\n'));
  assert.equal(clicks[0].body.order_id, clicks[1].body.order_id);
  assert.equal(clicks[0].body.url, clicks[1].body.url);
  const mine = stripeSim.state.calls.slice(calls);
  assert.equal(mine.length, 1, 'one call to Stripe');
  assert.equal(mine[0].idempotencyKey, clicks[0].body.order_id);
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM orders WHERE user_id = ?', u.id))[0].n, 1);
  // Coming back later (e.g. from "cancel") offers the same open checkout.
  const later = await checkout(u.key);
  assert.equal(later.status, 200);
  assert.equal(later.body.order_id, clicks[0].body.order_id);
  assert.equal(stripeSim.state.calls.length, calls + 1);
  // Another pack is another order.
  assert.notEqual(await buy(u.key, 'big'), clicks[0].body.order_id);
  await invariants(u.id);
});

test('events Stripe sends about things we do not know answer 200 and change nothing; metadata is never trusted', async () => {
  const u = await s.createUser(0);
  const id = await buy(u.key);
  const session = stripeSim.completedSession(sessionOf(id).id);
  const forged = makeEvent('checkout.session.completed', { ...session, id: 'cs_test_not_ours', metadata: { order_id: id }, client_reference_id: id });
  const r = await send(forged);
  assert.equal(r.status, 200);
  assert.equal(r.body.outcome, 'unknown_session');
  assert.equal((await order(id)).state, 'open');
  assert.equal((await me(u.key)).credits, 0);
  const stranger = makeEvent('charge.refunded', { id: 'ch_stranger', payment_intent: 'pi_stranger', amount: 100, amount_refunded: 100 });
  assert.equal((await send(stranger)).body.outcome, 'unknown_payment');
  const legacy = makeEvent('charge.refunded', { id: 'ch_legacy', object: 'charge', payment_intent: null, amount: 100, amount_refunded: 100 });
  const unusable = await send(legacy);
  assert.equal(unusable.status, 200, 'a signed event we cannot use is not retried forever');
  assert.equal(unusable.body.outcome, 'unusable');
  const unknown = makeEvent('customer.created', { id: 'cus_1', object: 'customer' });
  assert.equal((await send(unknown)).body.outcome, 'ignored');
  assert.equal((await send(unknown)).body.outcome, 'replayed');
  const seen = await s.sql('SELECT id FROM stripe_events WHERE id IN (?, ?, ?)', forged.id, stranger.id, unknown.id);
  assert.equal(seen.length, 3, 'every event id is remembered');
  const wrongPrice = makeEvent('checkout.session.completed', { ...session, amount_total: 1 });
  assert.equal((await send(wrongPrice)).body.outcome, 'amount_mismatch');
  assert.equal((await me(u.key)).credits, 0);
  await invariants(u.id);
});

test('operators see every order and its state; diagnose checks the Stripe key', async () => {
  const all = await s.admin('GET', '/api/admin/orders?limit=100');
  assert.equal(all.status, 200);
  const states = new Set(all.body.orders.map((o) => o.state));
  for (const st of ['open', 'paid', 'failed', 'expired']) assert.ok(states.has(st), `${st} in ${[...states]}`);
  assert.ok(all.body.orders.every((o) => o.user_id && 'checkout_session_id' in o));
  const paid = await s.admin('GET', '/api/admin/orders?state=paid');
  assert.ok(paid.body.orders.length > 0 && paid.body.orders.every((o) => o.state === 'paid'));
  assert.equal((await s.admin('GET', '/api/admin/orders?state=bogus')).status, 422);
  const u = await s.createUser(0);
  assert.equal((await s.api('GET', '/api/admin/orders', { key: u.key })).status, 403);

  let d = await s.admin('GET', '/api/admin/diagnose');
  const check = (name) => d.body.checks.find((c) => c.name === name);
  assert.equal(check('stripe key').status, 'pass', JSON.stringify(d.body.checks));
  assert.match(check('stripe key').hint, /test mode/);
  assert.equal(check('stripe webhook').status, 'pass');
  assert.match(check('stripe webhook').hint, /\/api\/webhooks\/stripe/);
  stripeSim.configure({ fail: 401 });
  try {
    d = await s.admin('GET', '/api/admin/diagnose');
  } finally {
    stripeSim.configure({ fail: null });
  }
  assert.equal(check('stripe key').status, 'fail');
  assert.match(check('stripe key').hint, /401/);
});

test('Stripe failing or unreachable: 502/503, nothing granted, the order failed (never paid); the next click starts afresh', async () => {
  const u = await s.createUser(0);
  stripeSim.configure({ fail: 500 });
  let r;
  try {
    r = await checkout(u.key);
  } finally {
    stripeSim.configure({ fail: null });
  }
  assert.equal(r.status, 503, r.text);
  assert.equal(r.body.error.code, 'upstream_unavailable');
  stripeSim.configure({ fail: 400 });
  try {
    r = await checkout(u.key);
  } finally {
    stripeSim.configure({ fail: null });
  }
  assert.equal(r.status, 502, r.text);
  assert.equal(r.body.error.code, 'upstream_error');

  // Unreachable: the stand-in goes away.
  const port = Number(new URL(stripeSim.url).port);
  await stripeSim.close();
  try {
    r = await checkout(u.key);
    assert.equal(r.status, 503, r.text);
  } finally {
    stripeSim = await startStripeSim({ port, apiKey: STRIPE_KEY, webhookSecret: WEBHOOK_SECRET });
  }
  const rows = await s.sql('SELECT state, failure FROM orders WHERE user_id = ? ORDER BY created_at', u.id);
  assert.deepEqual(rows, [
    { state: 'failed', failure: 'stripe_unavailable' },
    { state: 'failed', failure: 'stripe_refused' },
    { state: 'failed', failure: 'stripe_unavailable' },
  ]);
  assert.equal((await me(u.key)).credits, 0);
  assert.equal((await ledgerRows(u.id)).length, 0);
  assert.ok(s.logs.some((l) => l.event === 'stripe.call' && l.stripe_transport?.startsWith('unreachable')));
  const fresh = await checkout(u.key);
  assert.equal(fresh.status, 201, fresh.text);
  await invariants(u.id);
});

test('a bad CREDIT_PACKS is a named configuration problem; without billing settings the packs are empty and checkout says so', async () => {
  const [bad, off] = await Promise.all([
    startStack({ name: 'billing-bad-packs', vars: { ...billingVars(), CREDIT_PACKS: '[{"id":"x","credits":10,"amount":0,"currency":"usd"}]' } }),
    startStack({ name: 'billing-off' }),
  ]);
  try {
    const health = await bad.api('GET', '/api/health');
    assert.deepEqual(health.body.config_problems, ['CREDIT_PACKS']);
    const packs = await bad.api('GET', '/api/billing/packs');
    assert.equal(packs.status, 503);
    assert.equal(packs.body.error.code, 'config_error');
    assert.match(packs.body.error.details.settings[0].problem, /pack 1: 'amount'/);
    const diag = await bad.admin('GET', '/api/admin/diagnose');
    assert.equal(diag.body.checks.find((c) => c.name === 'setting CREDIT_PACKS').status, 'fail');

    assert.deepEqual((await off.api('GET', '/api/billing/packs')).body, { packs: [] });
    const u = await off.createUser(0);
    const r = await off.api('POST', '/api/billing/checkout', { key: u.key, json: { pack: 'small' } });
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'config_error');
    const hook = await off.api('POST', '/api/webhooks/stripe', { json: {} });
    assert.equal(hook.status, 503);
    const d = await off.admin('GET', '/api/admin/diagnose');
    assert.equal(d.body.checks.find((c) => c.name === 'stripe key').status, 'skip');
  } finally {
    await Promise.all([bad.close(), off.close()]);
  }
});
