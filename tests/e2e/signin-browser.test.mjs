// Signing in as a person would, in headless Chromium: "Sign in with …" on the
// page → the real OpenID provider's login and consent pages (oidc-provider on
// a local port) → back on the page signed in with the starter credits →
// generate an image → keys in the account menu → sign out; a second sign-in
// finds the same account; sign out everywhere. Then a deployment with
// Turnstile on, whose widget script is served by a stand-in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { requireChromium, launchChromium, SHOTS } from './chromium.mjs';
import { startStack, requireBuild } from './harness.mjs';
import { startOidcProvider, startTurnstileStandIn } from './oidc-provider.mjs';

const CLIENT_SECRET = 'oidc-browser-secret-7c1e3a5b9d';
const TURNSTILE_SECRET = 'turnstile-browser-secret-4a6c8e0b2d';

let op, ts, s, t, browser;
before(async () => {
  requireChromium();
  requireBuild();
  op = await startOidcProvider();
  ts = await startTurnstileStandIn(TURNSTILE_SECRET);
  s = await startStack({ name: 'signin-browser', vars: { OIDC_ISSUER: op.issuer, OIDC_CLIENT_ID: 'page', OIDC_CLIENT_SECRET: CLIENT_SECRET }, secrets: [CLIENT_SECRET] });
  t = await startStack({
    name: 'signin-browser-turnstile',
    vars: { OIDC_ISSUER: op.issuer, OIDC_CLIENT_ID: 'page-ts', OIDC_CLIENT_SECRET: CLIENT_SECRET, TURNSTILE_SECRET_KEY: TURNSTILE_SECRET, TURNSTILE_SITE_KEY: '1x00000000000000000000AA', TURNSTILE_VERIFY_URL: ts.url, STARTER_CREDITS: '6' },
    secrets: [CLIENT_SECRET, TURNSTILE_SECRET],
  });
  await op.configure([
    { client_id: 'page', client_secret: CLIENT_SECRET, redirect_uris: [`${s.url}/auth/callback`] },
    { client_id: 'page-ts', client_secret: CLIENT_SECRET, redirect_uris: [`${t.url}/auth/callback`], id_token_signed_response_alg: 'ES256' },
  ]);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close().catch(() => {});
  await s?.close();
  await t?.close();
  await op?.close();
  await ts?.close();
});

async function newPage(stack) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('response', (r) => { if (r.url().startsWith(stack.url) && r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
  return { ctx, page, problems, byId: (id) => page.getByTestId(id) };
}

/** On the provider's pages: log in as `login` if asked, consent if asked, until back on `stack`. */
async function atProvider(page, stack, login) {
  for (let i = 0; i < 4 && !page.url().startsWith(stack.url); i++) {
    await page.waitForURL((u) => u.href.startsWith(stack.url) || /\/interaction\//.test(u.pathname));
    if (page.url().startsWith(stack.url)) break;
    const loginField = page.locator('input[name="login"]');
    if (await loginField.count()) {
      await loginField.fill(login);
      await page.locator('input[name="password"]').fill('correct horse');
    }
    await Promise.all([page.waitForNavigation(), page.locator('button[type="submit"]').click()]);
  }
  await page.waitForURL((u) => u.href.startsWith(stack.url));
}

/** What the Worker says to a request carrying only this cookie (or key). */
async function meWith(stack, headers) {
  const r = await fetch(`${stack.url}/api/me`, { headers });
  const text = await r.text();
  stack.responses.push({ method: 'GET', path: '/api/me', status: r.status, text, requestId: r.headers.get('x-request-id') });
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

test('click sign in → the provider\'s login and consent → signed in with the starter credits → generate → keys → sign out; again: same account; sign out everywhere', { timeout: 150000 }, async () => {
  const { ctx, page, problems, byId } = await newPage(s);
  await page.goto(`${s.url}/`);
  await page.locator('body[data-models="ready"]').waitFor();
  const button = byId('signin-oidc');
  await button.filter({ hasText: `Sign in with 127.0.0.1:${op.port}` }).waitFor();
  // Google's button comes first; the API-key form stays below it.
  const [buttonBox, keyBox] = [await button.boundingBox(), await byId('api-key').boundingBox()];
  assert.ok(buttonBox.y < keyBox.y);
  await page.screenshot({ path: path.join(SHOTS, 'signin-page.png') });

  await button.click();
  await page.waitForURL((u) => u.href.startsWith(op.issuer));
  await atProvider(page, s, 'grace');
  await byId('user-name').filter({ hasText: 'Person grace' }).waitFor();
  await byId('credits').filter({ hasText: /^10 credits$/ }).waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'signin-signed-in.png') });

  const cookies = await ctx.cookies(s.url);
  const session = cookies.find((c) => c.name === 'nb_session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');
  assert.equal(session.path, '/');
  assert.ok(!cookies.some((c) => c.name === 'nb_login'), 'the pre-auth cookie is gone');
  assert.equal(await page.evaluate(() => document.cookie), '', 'the page script cannot read the session');
  assert.equal(await page.evaluate(() => localStorage.getItem('nb.key')), null, 'no key in storage: the cookie signs in');

  // Generate an image, signed in by the cookie alone.
  await byId('model').selectOption('nano-banana');
  await byId('generate').filter({ hasText: '2 credits' }).waitFor();
  await byId('prompt').fill('A banana that signed in with its provider');
  await byId('generate').click();
  await page.locator('[data-testid="watch"] #watch[data-state="succeeded"]').waitFor();
  await page.waitForFunction(() => {
    const el = document.querySelector('[data-testid="result-image"]');
    return el && el.complete && el.naturalWidth > 0;
  });
  await byId('credits').filter({ hasText: /^8 credits$/ }).waitFor();

  // The account menu: a key is made (shown once), works, is revoked.
  await page.locator('#acct summary').click();
  await byId('keys').locator('li.hint').waitFor();
  await byId('key-name').fill('ci script');
  await byId('key-create').click();
  const shown = byId('key-new-value');
  await shown.filter({ hasText: /^nbk_/ }).waitFor();
  const key = await shown.textContent();
  await byId('key-item').filter({ hasText: 'ci script' }).waitFor();
  assert.equal((await meWith(s, { authorization: `Bearer ${key}` })).body.user.name, 'Person grace');
  await page.screenshot({ path: path.join(SHOTS, 'signin-keys.png') });
  await byId('key-revoke').click();
  await byId('key-item').waitFor({ state: 'detached' });
  assert.equal((await meWith(s, { authorization: `Bearer ${key}` })).status, 401);

  // Sign out: this session ends on the server, not only in the page.
  await page.locator('#acct summary').click();
  await byId('signout').click();
  await byId('signin').waitFor();
  await button.waitFor();
  assert.equal((await meWith(s, { cookie: `nb_session=${session.value}` })).status, 401);

  // Sign in again: the same account, no second grant.
  await button.click();
  await atProvider(page, s, 'grace');
  await byId('credits').filter({ hasText: /^8 credits$/ }).waitFor();
  const second = (await ctx.cookies(s.url)).find((c) => c.name === 'nb_session');
  assert.notEqual(second.value, session.value);
  assert.equal((await s.sql("SELECT COUNT(*) AS n FROM ledger WHERE kind = 'grant'"))[0].n, 1);

  // Sign out everywhere from the account menu.
  await page.locator('#acct summary').click();
  await byId('signout-all').click();
  await byId('signin').waitFor();
  assert.equal((await meWith(s, { cookie: `nb_session=${second.value}` })).status, 401);
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('with Turnstile on, a first sign-in shows the human check (widget from a stand-in) before the account is made', { timeout: 90000 }, async () => {
  const { ctx, page, problems, byId } = await newPage(t);
  let widgetLoaded = 0;
  await ctx.route('https://challenges.cloudflare.com/**', (route) => {
    widgetLoaded++;
    route.fulfill({
      contentType: 'text/javascript',
      body: "window.turnstile = { render(el, o) { if (o.sitekey && o.action === 'signup') setTimeout(() => o.callback('pass-from-browser'), 100); return 'w'; }, reset() {} };",
    });
  });
  await page.goto(`${t.url}/`);
  await byId('signin-oidc').click();
  await atProvider(page, t, 'tina');
  await byId('signup-who').filter({ hasText: 'Welcome, Person tina.' }).waitFor();
  await byId('user-name').filter({ hasText: 'Person tina' }).waitFor();
  await byId('credits').filter({ hasText: /^6 credits$/ }).waitFor();
  assert.equal(widgetLoaded, 1, 'the widget script loaded under the page\'s CSP');
  assert.equal(ts.calls.at(-1).response, 'pass-from-browser');
  assert.equal(new URL(page.url()).search, '', 'the address bar is clean again');
  assert.deepEqual(problems, []);
  await ctx.close();
});
