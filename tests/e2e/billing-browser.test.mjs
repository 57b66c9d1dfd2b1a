// Buying credits on the page, in a real browser (Chromium through
// playwright-core): the packs, "Buy credits" to the Stripe stand-in's checkout
// and back, "payment received" while the webhook is held back (the page polls
// /api/me), the credits and the paid order appearing when it lands; and a
// cancelled checkout offering to continue.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startStack, requireBuild, ledgerInvariant, waitFor, ROOT } from './harness.mjs';
import { startStripeSim } from '../../sim/stripe-sim.mjs';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'test-artifacts', 'screenshots');
const STRIPE_KEY = 'sk_test_browser_key_3f5a7c9e1b';
const WEBHOOK_SECRET = 'whsec_browser_secret_6d4b2f0a8c';
const PACKS = [
  { id: 'small', credits: 10, amount: 500, currency: 'usd' },
  { id: 'big', credits: 100, amount: 4000, currency: 'usd' },
];

let stack, stripeSim, browser;
before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium) before the browser test`);
  requireBuild();
  mkdirSync(SHOTS, { recursive: true });
  stripeSim = await startStripeSim({ apiKey: STRIPE_KEY, webhookSecret: WEBHOOK_SECRET });
  stack = await startStack({
    name: 'billing-browser',
    vars: { STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, STRIPE_API_BASE: stripeSim.url, CREDIT_PACKS: JSON.stringify(PACKS) },
  });
  stripeSim.configure({ webhookUrl: `${stack.url}/api/webhooks/stripe` });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
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
