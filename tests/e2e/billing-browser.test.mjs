// Buying credits on the page, in a real browser (Chromium through
// playwright-core): the packs, "Buy credits" to the Stripe stand-in's checkout
// and back, "payment received" while the webhook is held back (the page polls
// /api/me), the credits and the paid order appearing when it lands; and a
// cancelled checkout offering to continue.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { requireChromium, launchChromium, SHOTS } from './chromium.mjs';
import { startStack, requireBuild, ledgerInvariant, waitFor } from './harness.mjs';
import { startStripeSim } from '../../sim/stripe-sim.mjs';

const STRIPE_KEY = 'sk_test_browser_key_3f5a7c9e1b';
const WEBHOOK_SECRET = 'whsec_browser_secret_6d4b2f0a8c';
const PACKS = [
  { id: 'small', credits: 10, amount: 500, currency: 'usd' },
  { id: 'big', credits: 100, amount: 4000, currency: 'usd' },
];

let stack, stripeSim, browser;
before(async () => {
  requireChromium();
  requireBuild();
  stripeSim = await startStripeSim({ apiKey: STRIPE_KEY, webhookSecret: WEBHOOK_SECRET });
  stack = await startStack({
    name: 'billing-browser',
    vars: { STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, STRIPE_API_BASE: stripeSim.url, CREDIT_PACKS: JSON.stringify(PACKS) },
  });
  stripeSim.configure({ webhookUrl: `${stack.url}/api/webhooks/stripe` });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close().catch(() => {});
  await stack?.close();
  await stripeSim?.close();
});

test('buy credits: packs, checkout and back, payment received, credits and the paid order appear; a cancel offers to continue', { timeout: 90000 }, async () => {
  const user = await stack.createUser(0, 'Bea Buyer');
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
  const byId = (id) => page.getByTestId(id);

  await page.goto(stack.url + '/');
  await byId('api-key').fill(user.key);
  await byId('signin-submit').click();
  await byId('credits').filter({ hasText: /^0 credits$/ }).waitFor();
  await byId('billing').waitFor();
  assert.equal(await byId('buy-small').textContent(), 'Buy 10 credits · $5.00');
  assert.equal(await byId('buy-big').textContent(), 'Buy 100 credits · $40.00');

  // Cancel at the checkout: back on the page, nothing charged, the open checkout can be continued.
  await byId('buy-big').click();
  await page.waitForURL(/\/c\/pay\/cs_test_/);
  await byId('standin-cancel').click();
  await page.waitForURL((u) => u.origin === stack.url);
  await byId('billing-status').filter({ hasText: 'Checkout cancelled; nothing was charged.' }).waitFor();
  const resume = await byId('billing-resume').getAttribute('href');
  assert.match(resume, /\/c\/pay\/cs_test_/);
  assert.equal(new URL(page.url()).search, '', 'the return parameters are taken off the address');

  // Pay: Stripe sends the person back before its webhook lands.
  stripeSim.configure({ holdWebhooks: true });
  await byId('buy-small').click();
  await page.waitForURL(/\/c\/pay\/cs_test_/);
  await byId('standin-pay').click();
  await page.waitForURL((u) => u.origin === stack.url);
  const returned = Date.now();
  await byId('billing-status').filter({ hasText: /^Payment received/ }).waitFor();
  assert.equal(await byId('credits').textContent(), '0 credits', 'no credits before Stripe confirms');
  await page.screenshot({ path: path.join(SHOTS, 'billing-payment-received.png'), fullPage: true });
  // The page keeps polling /api/me; now Stripe's webhook lands.
  await waitFor(() => stack.logs.some((l) => l.event === 'http.request' && l.path === '/api/me' && l.user_id === user.id && Date.parse(l.ts) > returned), { what: 'a poll of /api/me after the return' });
  assert.equal(await stripeSim.release(), 1);
  await byId('billing-status').filter({ hasText: '10 credits added. Balance: 10 credits.' }).waitFor({ timeout: 30000 });
  await byId('credits').filter({ hasText: /^10 credits$/ }).waitFor();
  const paidRow = page.locator('[data-testid="order-row"][data-state="paid"]');
  await paidRow.waitFor();
  assert.match(await paidRow.textContent(), /10 credits.*\$5\.00.*Paid/);
  assert.equal(await page.locator('[data-testid="order-row"][data-state="open"]').count(), 1, 'the cancelled checkout is still open');
  await page.screenshot({ path: path.join(SHOTS, 'billing-credits-added.png'), fullPage: true });

  // The page follows the language toggle.
  await byId('lang-toggle').click();
  await byId('billing-status').filter({ hasText: '已到账 10 积分' }).waitFor();

  assert.deepEqual(stripeSim.state.deliveries.map((d) => d.status), [200]);
  const inv = await ledgerInvariant(stack, user.id);
  assert.equal(inv.balance, 10);
  assert.equal(inv.ledgerSum, 10);
  assert.deepEqual(problems, [], 'no console errors, CSP violations or failed requests');
  await ctx.close();
});

test('the operator dashboard lists orders with their states, shows what a user owes, and clears it', { timeout: 90000 }, async () => {
  // A purchase, spent in part, then refunded in full: the user owes what was spent.
  const user = await stack.createUser(0, 'Owen Owes');
  const r = await stack.api('POST', '/api/billing/checkout', { key: user.key, json: { pack: 'small' } });
  assert.equal(r.status, 201, r.text);
  const session = [...stripeSim.state.sessions.values()].find((x) => x.metadata.order_id === r.body.order_id);
  const oracle = (await import('stripe')).default;
  const signer = new oracle('sk_test_oracle_only');
  const send = async (event) => {
    const payload = JSON.stringify(event);
    const header = signer.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET, timestamp: Math.floor(Date.now() / 1000) });
    return stack.api('POST', '/api/webhooks/stripe', { body: payload, headers: { 'content-type': 'application/json', 'stripe-signature': header } });
  };
  const { makeEvent } = await import('../../sim/stripe-sim.mjs');
  assert.equal((await send(makeEvent('checkout.session.completed', stripeSim.completedSession(session.id)))).body.outcome, 'granted');
  const task = await stack.api('POST', '/api/create/ai-image', { key: user.key, json: { model: 'nano-banana', prompt: 'spent before the refund' } });
  assert.equal((await stack.waitTerminal(user.key, task.body.task.id)).state, 'succeeded');
  assert.equal((await send(makeEvent('charge.refunded', stripeSim.charge(session.id, { amount_refunded: 500 })))).body.outcome, 'reversed');

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 }, locale: 'en-US' });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  await page.goto(stack.url + '/admin');
  await page.getByTestId('admin-token').fill(stack.bindings.ADMIN_TOKEN);
  await page.getByTestId('signin-submit').click();
  await page.locator('body[data-loaded="true"]').waitFor();
  const row = page.locator(`[data-testid="order"][data-order-id="${r.body.order_id}"]`);
  await row.waitFor();
  assert.equal(await row.getAttribute('data-state'), 'paid');
  const cells = await row.locator('td').allTextContents();
  assert.deepEqual(cells.slice(1, 7), [user.id, '10', '5.00 USD', 'paid', '5.00 USD · 10 cr back', '2']);

  await page.getByTestId('user-id').fill(user.id);
  await page.getByTestId('user-lookup').click();
  await page.getByTestId('user-owed').filter({ hasText: '2 credits' }).waitFor();
  await page.getByTestId('owed-reason').fill('paid back by bank transfer');
  await page.getByTestId('owed-clear').click();
  await page.getByTestId('owed-result').filter({ hasText: 'Cleared 2 owed credits.' }).waitFor();
  assert.equal(await page.getByTestId('user-owed').count(), 0);
  const ledger = await stack.sql('SELECT kind, amount, reason, actor FROM ledger WHERE user_id = ? ORDER BY id DESC LIMIT 1', user.id);
  assert.deepEqual(ledger, [{ kind: 'adjust', amount: 0, reason: 'owed cleared (2 credits): paid back by bank transfer', actor: 'admin' }]);
  const inv = await ledgerInvariant(stack, user.id);
  assert.equal(inv.balance, inv.ledgerSum);
  await page.screenshot({ path: path.join(SHOTS, 'billing-dashboard-orders.png'), fullPage: true });
  assert.deepEqual(problems, [], 'no console errors on the dashboard');
  await ctx.close();
});
