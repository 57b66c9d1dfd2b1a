// People sign in with OpenID Connect, end to end over HTTP: the real Worker
// in workerd against a real OpenID provider (oidc-provider) on a local port.
// The happy path with the starter credits and a generated image, every
// refusal (state, replay, each broken ID-token claim, bad signature), the
// same-origin rule, keys, sessions, Turnstile against a stand-in, the per-IP
// limit on new accounts, and diagnose.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startStack, requireBuild, waitFor, ledgerInvariant, sleep } from './harness.mjs';
import { startOidcProvider, startTurnstileStandIn, throughProvider, Jar } from './oidc-provider.mjs';

const CLIENT_SECRET = 'oidc-client-secret-5e7a1c9b3d';
const ES_CLIENT_SECRET = 'oidc-es-client-secret-2f4b6d8e0a';
const TURNSTILE_SECRET = 'turnstile-secret-8b2d4f6a0c1e';
const SITE_KEY = '1x00000000000000000000AA';
const EVIL = 'http://evil.example';

let op, ts, s, t, u, h;
const HTTPS_ORIGIN = 'https://banana.example';
before(async () => {
  requireBuild();
  op = await startOidcProvider();
  ts = await startTurnstileStandIn(TURNSTILE_SECRET);
  s = await startStack({
    name: 'signin',
    vars: { OIDC_ISSUER: op.issuer, OIDC_CLIENT_ID: 'banana-rs', OIDC_CLIENT_SECRET: CLIENT_SECRET, SESSION_REFRESH_SECONDS: '1', NEW_ACCOUNTS_PER_IP: '3' },
    secrets: [CLIENT_SECRET],
  });
  t = await startStack({
    name: 'signin-turnstile',
    vars: {
      OIDC_ISSUER: op.issuer, OIDC_CLIENT_ID: 'banana-es', OIDC_CLIENT_SECRET: ES_CLIENT_SECRET, STARTER_CREDITS: '7',
      TURNSTILE_SECRET_KEY: TURNSTILE_SECRET, TURNSTILE_SITE_KEY: SITE_KEY, TURNSTILE_VERIFY_URL: ts.url, NEW_ACCOUNTS_PER_IP: '2',
    },
    secrets: [ES_CLIENT_SECRET, TURNSTILE_SECRET],
  });
  u = await startStack({ name: 'signin-off' });
  // A deployment whose public origin is https (TLS ends in front of it, as on Cloudflare).
  h = await startStack({
    name: 'signin-https',
    vars: { PUBLIC_BASE_URL: HTTPS_ORIGIN, OIDC_ISSUER: op.issuer, OIDC_CLIENT_ID: 'banana-https', OIDC_CLIENT_SECRET: CLIENT_SECRET },
    secrets: [CLIENT_SECRET],
  });
  await op.configure([
    { client_id: 'banana-rs', client_secret: CLIENT_SECRET, redirect_uris: [`${s.url}/auth/callback`], id_token_signed_response_alg: 'RS256' },
    { client_id: 'banana-es', client_secret: ES_CLIENT_SECRET, redirect_uris: [`${t.url}/auth/callback`], id_token_signed_response_alg: 'ES256' },
    { client_id: 'banana-https', client_secret: CLIENT_SECRET, redirect_uris: [`${HTTPS_ORIGIN}/auth/callback`] },
  ]);
});
after(async () => {
  await s?.close();
  await t?.close();
  await u?.close();
  await h?.close();
  await op?.close();
  await ts?.close();
});

// Every new person comes from their own address unless a test says otherwise
// (the per-IP limit is tested on purpose below).
let ipCounter = 0;
const freshIp = () => `198.51.100.${++ipCounter}`;

/** One request without following redirects, recorded for the harness's per-response checks. */
async function raw(stack, method, pathOrUrl, { jar, headers = {}, json, ip } = {}) {
  const url = pathOrUrl.startsWith('http') ? pathOrUrl : stack.url + pathOrUrl;
  const h = { ...headers };
  if (jar && jar.header()) h.cookie = jar.header();
  if (ip) h['cf-connecting-ip'] = ip;
  let body;
  if (json !== undefined) {
    h['content-type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const res = await fetch(url, { method, redirect: 'manual', headers: h, body });
  jar?.take(res);
  const text = await res.text();
  let parsed = null;
  try { parsed = JSON.parse(text); } catch {}
  stack.responses.push({ method, path: new URL(url).pathname, status: res.status, text, requestId: res.headers.get('x-request-id') });
  return { status: res.status, headers: res.headers, text, body: parsed, location: res.headers.get('location'), cookies: res.headers.getSetCookie() };
}

/** /auth/login, then the provider's login and consent pages; the callback URL is not visited yet. */
async function startSignIn(stack, login, jar = new Jar()) {
  const r = await raw(stack, 'GET', '/auth/login', { jar });
  assert.equal(r.status, 302, r.text);
  const callback = await throughProvider(r.location, login, `${stack.url}/auth/callback`);
  return { jar, callback, authorization: new URL(r.location), loginCookie: jar.get('nb_login') };
}

async function signIn(stack, login, { ip = freshIp(), headers = {} } = {}) {
  const started = await startSignIn(stack, login);
  const r = await raw(stack, 'GET', started.callback, { jar: started.jar, ip, headers });
  return { ...started, r };
}

const same = (stack) => ({ origin: stack.url });
const me = (stack, jar) => raw(stack, 'GET', '/api/me', { jar });
const refusals = (stack) => stack.logs.filter((l) => l.event === 'auth.refused');
const usersNamed = async (stack, login) => (await stack.sql('SELECT user_id FROM identities WHERE subject = ?', login)).length;
const grants = async (stack, userId) => (await stack.sql("SELECT amount, reason, actor FROM ledger WHERE user_id = ? AND kind = 'grant'", userId));

test('sign in: login redirects with PKCE, state and nonce; the callback opens an account with the starter credits and a session; the session generates an image', { timeout: 60000 }, async () => {
  const jar = new Jar();
  const login = await raw(s, 'GET', '/auth/login', { jar });
  assert.equal(login.status, 302);
  const auth = new URL(login.location);
  assert.equal(auth.origin, op.issuer);
  const q = Object.fromEntries(auth.searchParams);
  assert.equal(q.response_type, 'code');
  assert.equal(q.client_id, 'banana-rs');
  assert.equal(q.redirect_uri, `${s.url}/auth/callback`);
  assert.deepEqual(q.scope.split(' ').sort(), ['email', 'openid', 'profile']);
  assert.equal(q.code_challenge_method, 'S256');
  assert.match(q.code_challenge, /^[A-Za-z0-9_-]{43}$/);
  assert.match(q.state, /^[A-Za-z0-9_-]{43}$/);
  assert.match(q.nonce, /^[A-Za-z0-9_-]{43}$/);
  const preAuth = login.cookies.find((c) => c.startsWith('nb_login='));
  assert.match(preAuth, /; Path=\/; HttpOnly; SameSite=Lax; Max-Age=600$/, 'plain name and no Secure on http');

  const callback = await throughProvider(login.location, 'ada', `${s.url}/auth/callback`);
  const cb = await raw(s, 'GET', callback, { jar, ip: freshIp() });
  assert.equal(cb.status, 302, cb.text);
  assert.equal(cb.location, '/');
  const session = cb.cookies.find((c) => c.startsWith('nb_session='));
  assert.match(session, /^nb_session=[a-z2-7]{52}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=2592000$/);
  assert.ok(cb.cookies.some((c) => /^nb_login=; .*Max-Age=0/.test(c)), 'the pre-auth cookie is cleared');

  // The Worker proved possession of the verifier, and authenticated as the client.
  const tokenRequest = op.state.tokenRequests.at(-1);
  assert.equal(createHash('sha256').update(tokenRequest.form.code_verifier).digest('base64url'), q.code_challenge);
  assert.equal(tokenRequest.form.redirect_uri, `${s.url}/auth/callback`);
  assert.equal(tokenRequest.authorization, `Basic ${Buffer.from(`banana-rs:${CLIENT_SECRET}`).toString('base64')}`);
  assert.equal(op.state.idTokenAlgs.at(-1), 'RS256');

  const m = await me(s, jar);
  assert.equal(m.status, 200);
  assert.equal(m.body.user.name, 'Person ada');
  assert.equal(m.body.user.credits, 10);
  const userId = m.body.user.id;
  assert.deepEqual(await grants(s, userId), [{ amount: 10, reason: 'starter credits', actor: 'system' }]);
  const [identity] = await s.sql('SELECT issuer, subject, email FROM identities WHERE user_id = ?', userId);
  assert.deepEqual(identity, { issuer: op.issuer, subject: 'ada', email: 'ada@example.test' });
  // D1 keeps a hash of the session id, never the id.
  const cookieValue = session.split(';')[0].split('=')[1];
  const stored = await s.sql('SELECT id_hash FROM sessions WHERE user_id = ?', userId);
  assert.equal(stored.length, 1);
  assert.equal(stored[0].id_hash, createHash('sha256').update(cookieValue).digest('hex'));
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM login_attempts')).at(0).n, 0, 'the sign-in was used up');

  // Signed in by the cookie alone: create, poll (the one-query session path), list.
  const created = await raw(s, 'POST', '/api/create/ai-image', { jar, headers: same(s), json: { model: 'nano-banana', prompt: 'a banana signed in' } });
  assert.equal(created.status, 202, created.text);
  const done = await waitFor(async () => {
    const r = await raw(s, 'GET', `/api/tasks/${created.body.task.id}`, { jar });
    return r.body?.task?.state === 'succeeded' && r.body.task;
  }, { what: 'the task to succeed' });
  assert.equal(done.results.length, 1);
  assert.equal((await me(s, jar)).body.user.credits, 8);
  assert.equal((await raw(s, 'GET', '/api/tasks', { jar })).body.tasks[0].id, done.id);
  const inv = await ledgerInvariant(s, userId);
  assert.equal(inv.balance, inv.ledgerSum);
  assert.ok(s.logs.some((l) => l.event === 'auth.signup' && l.user_id === userId && l.credits === 10));
});

test('a second sign-in of the same person opens the same account and grants nothing more', async () => {
  const first = await signIn(s, 'grace');
  const second = await signIn(s, 'grace');
  assert.equal(first.r.status, 302);
  assert.equal(second.r.status, 302);
  const a = (await me(s, first.jar)).body.user;
  const b = (await me(s, second.jar)).body.user;
  assert.equal(a.id, b.id);
  assert.equal(b.credits, 10);
  assert.equal((await grants(s, a.id)).length, 1);
  assert.equal(await usersNamed(s, 'grace'), 1);
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM sessions WHERE user_id = ?', a.id))[0].n, 2, 'two browsers, two sessions');
});

test('two callbacks racing for a new person make one account and one grant', async () => {
  const one = await startSignIn(s, 'racer');
  const two = await startSignIn(s, 'racer');
  const ip = freshIp();
  const [r1, r2] = await Promise.all([raw(s, 'GET', one.callback, { jar: one.jar, ip }), raw(s, 'GET', two.callback, { jar: two.jar, ip })]);
  assert.equal(r1.status, 302);
  assert.equal(r2.status, 302);
  const a = (await me(s, one.jar)).body.user;
  const b = (await me(s, two.jar)).body.user;
  assert.equal(a.id, b.id);
  assert.equal(await usersNamed(s, 'racer'), 1);
  assert.equal((await grants(s, a.id)).length, 1);
  assert.equal(a.credits, 10);
});

test('refused: a tampered state, a replayed callback, a code the provider already redeemed, no pre-auth cookie; nothing created, nobody signed in', { timeout: 60000 }, async () => {
  // Tampered state (as a browser sees it: an HTML page).
  let st = await startSignIn(s, 'mallory-state');
  const tampered = new URL(st.callback);
  tampered.searchParams.set('state', `${tampered.searchParams.get('state').slice(0, -2)}xx`);
  let r = await raw(s, 'GET', tampered.href, { jar: st.jar, ip: freshIp() });
  assert.equal(r.status, 400);
  assert.match(r.headers.get('content-type'), /^text\/html/);
  assert.match(r.text, /data-code="invalid_request"/);
  assert.match(r.headers.get('content-security-policy'), /default-src 'none'/);
  assert.ok(!r.cookies.some((c) => c.startsWith('nb_session=')));
  assert.equal(await usersNamed(s, 'mallory-state'), 0);
  assert.match(refusals(s).at(-1).cause, /state mismatch/);
  // The untampered answer is no good afterwards either: that sign-in is used up.
  r = await raw(s, 'GET', st.callback, { headers: { cookie: `nb_login=${st.loginCookie}`, accept: 'application/json' } });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'invalid_request');

  // A replayed callback: the same code and state, the same pre-auth cookie.
  st = await startSignIn(s, 'replayer');
  r = await raw(s, 'GET', st.callback, { jar: st.jar, ip: freshIp() });
  assert.equal(r.status, 302);
  const sessions = (await s.sql('SELECT COUNT(*) AS n FROM sessions')).at(0).n;
  r = await raw(s, 'GET', st.callback, { headers: { cookie: `nb_login=${st.loginCookie}`, accept: 'application/json' } });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'invalid_request');
  assert.ok(!r.cookies.some((c) => c.startsWith('nb_session=') && !c.includes('Max-Age=0')));
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM sessions')).at(0).n, sessions, 'no new session');

  // The provider refuses a code presented twice (the proxy redeems it first).
  op.setMode('replay');
  try {
    st = await startSignIn(s, 'replay-op');
    const before = op.state.tokenRequests.length;
    r = await raw(s, 'GET', st.callback, { jar: st.jar, ip: freshIp(), headers: { accept: 'application/json' } });
    assert.equal(r.status, 401);
    assert.equal(r.body.error.code, 'unauthorized');
    assert.equal(op.state.tokenRequests.length, before + 1);
    assert.equal(await usersNamed(s, 'replay-op'), 0);
    assert.match(refusals(s).at(-1).cause, /invalid_grant/);
  } finally {
    op.setMode('pass');
  }

  // An answer naming another issuer (RFC 9207 mix-up): refused before the code is used.
  st = await startSignIn(s, 'mixed-up');
  const mixed = new URL(st.callback);
  assert.equal(mixed.searchParams.get('iss'), op.issuer, 'this provider names itself');
  mixed.searchParams.set('iss', 'https://other-provider.example');
  const tokenCalls = op.state.tokenRequests.length;
  r = await raw(s, 'GET', mixed.href, { jar: st.jar, ip: freshIp() });
  assert.equal(r.status, 400);
  assert.equal(op.state.tokenRequests.length, tokenCalls, 'the code was not sent anywhere');
  assert.match(refusals(s).at(-1).cause, /iss parameter/);

  // An answer arriving in a browser that did not start the sign-in.
  st = await startSignIn(s, 'elsewhere');
  r = await raw(s, 'GET', st.callback, { ip: freshIp() });
  assert.equal(r.status, 400);
  assert.equal(await usersNamed(s, 'elsewhere'), 0);
  // The provider said no (the person cancelled).
  const cancel = await raw(s, 'GET', '/auth/login', { jar: new Jar() });
  const cancelled = await raw(s, 'GET', `/auth/callback?error=access_denied&state=${new URL(cancel.location).searchParams.get('state')}`, { headers: { cookie: `nb_login=${cancel.cookies[0].split(';')[0].split('=')[1]}` } });
  assert.equal(cancelled.status, 401);
});

test('ID tokens that do not check out are refused: wrong aud, wrong iss, bad signature, expired, wrong nonce, alg none', { timeout: 90000 }, async () => {
  const cases = [['aud', /aud/], ['iss', /iss/], ['badsig', /signature/], ['expired', /expired/], ['nonce', /nonce/], ['alg-none', /alg/]];
  for (const [mode, why] of cases) {
    op.setMode(mode);
    try {
      const st = await startSignIn(s, `bad-${mode}`);
      const r = await raw(s, 'GET', st.callback, { jar: st.jar, ip: freshIp(), headers: { accept: 'application/json' } });
      assert.equal(r.status, 401, `${mode}: ${r.text}`);
      assert.equal(r.body.error.code, 'unauthorized');
      assert.ok(!r.cookies.some((c) => c.startsWith('nb_session=')), mode);
      assert.equal(await usersNamed(s, `bad-${mode}`), 0, mode);
      assert.match(refusals(s).at(-1).cause, why, mode);
    } finally {
      op.setMode('pass');
    }
  }
  // No log line carries a token or a code.
  for (const line of s.raw) assert.ok(!/eyJ[A-Za-z0-9_-]{20,}\.eyJ/.test(line), 'no JWT in the logs');
});

test('ES256 tokens verify with WebCrypto; a rotated signing key is found by fetching the JWKS again', { timeout: 60000 }, async () => {
  op.setMode('es256');
  try {
    const r = (await signIn(s, 'es-person')).r;
    assert.equal(r.status, 302, r.text);
  } finally {
    op.setMode('pass');
  }
  assert.equal(await usersNamed(s, 'es-person'), 1);

  const jwksBefore = op.state.jwksRequests;
  op.publishRotatedKey();
  op.setMode('rotated');
  try {
    const r = (await signIn(s, 'rotated-person')).r;
    assert.equal(r.status, 302, r.text);
  } finally {
    op.setMode('pass');
  }
  assert.equal(op.state.jwksRequests, jwksBefore + 1, 'an unknown kid fetched the keys once more');
  assert.equal(await usersNamed(s, 'rotated-person'), 1);
});

test('cookie-authenticated changes from another origin are 403; API-key requests are not affected', async () => {
  const { jar } = await signIn(s, 'origin-person');
  const user = (await me(s, jar)).body.user;
  const create = (headers) => raw(s, 'POST', '/api/create/ai-image', { jar, headers, json: { model: 'nano-banana', prompt: 'cross-origin' } });
  let r = await create({ origin: EVIL });
  assert.equal(r.status, 403);
  assert.equal(r.body.error.code, 'forbidden');
  r = await create({ 'sec-fetch-site': 'cross-site' });
  assert.equal(r.status, 403);
  r = await create({ 'sec-fetch-site': 'same-site' });
  assert.equal(r.status, 403);
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM tasks WHERE user_id = ?', user.id))[0].n, 0, 'nothing was created');
  assert.equal((await me(s, jar)).body.user.credits, 10, 'nothing was charged');

  for (const [method, path] of [['POST', '/api/me/keys'], ['DELETE', '/api/me/sessions'], ['POST', '/auth/logout']]) {
    r = await raw(s, method, path, { jar, headers: { origin: EVIL }, json: method === 'POST' ? {} : undefined });
    assert.equal(r.status, 403, `${method} ${path}`);
  }
  assert.equal((await me(s, jar)).status, 200, 'still signed in');
  // Reads are not changes: a cross-site GET answers.
  assert.equal((await raw(s, 'GET', '/api/me', { jar, headers: { origin: EVIL, 'sec-fetch-site': 'cross-site' } })).status, 200);

  r = await create(same(s));
  assert.equal(r.status, 202);
  const key = (await raw(s, 'POST', '/api/me/keys', { jar, headers: same(s), json: { name: 'script' } })).body.api_key;
  r = await raw(s, 'POST', '/api/create/ai-image', { headers: { authorization: `Bearer ${key}`, origin: EVIL }, json: { model: 'nano-banana', prompt: 'by key' } });
  assert.equal(r.status, 202, 'a key is not a cookie');
});

test('self-service keys: created with a name and shown once, listed without the key, revoked at once; the operator\'s rotation still revokes all', async () => {
  const { jar } = await signIn(s, 'keyholder');
  const user = (await me(s, jar)).body.user;
  const made = await raw(s, 'POST', '/api/me/keys', { jar, headers: same(s), json: { name: 'laptop' } });
  assert.equal(made.status, 201);
  const key = made.body.api_key;
  assert.match(key, /^nbk_[a-z2-7]{52}$/);
  assert.equal(made.body.key.name, 'laptop');
  assert.equal(made.body.key.hint, `${key.slice(0, 8)}…`);
  const id = made.body.key.id;
  assert.equal(id, createHash('sha256').update(key).digest('hex').slice(0, 16));

  const list = await raw(s, 'GET', '/api/me/keys', { jar });
  assert.deepEqual(list.body.keys.map((k) => [k.id, k.name]), [[id, 'laptop']]);
  assert.ok(!list.text.includes(key), 'the key itself is never listed');
  assert.equal((await raw(s, 'GET', '/api/me', { headers: { authorization: `Bearer ${key}` } })).body.user.id, user.id);
  // A key can list keys and make keys too (scripts).
  assert.equal((await raw(s, 'GET', '/api/me/keys', { headers: { authorization: `Bearer ${key}` } })).status, 200);

  // Someone else's key cannot be revoked by its id (it is not found).
  const other = await s.createUser(1, 'Operator-made');
  const otherId = createHash('sha256').update(other.key).digest('hex').slice(0, 16);
  assert.equal((await raw(s, 'DELETE', `/api/me/keys/${otherId}`, { jar, headers: same(s) })).status, 404);
  assert.equal((await raw(s, 'GET', '/api/me', { headers: { authorization: `Bearer ${other.key}` } })).status, 200, 'operator-created keys keep working');

  assert.equal((await raw(s, 'DELETE', `/api/me/keys/${id}`, { jar, headers: same(s) })).status, 200);
  assert.equal((await raw(s, 'GET', '/api/me', { headers: { authorization: `Bearer ${key}` } })).status, 401);
  assert.equal((await raw(s, 'DELETE', `/api/me/keys/${id}`, { jar, headers: same(s) })).status, 404, 'already revoked');
  assert.deepEqual((await raw(s, 'GET', '/api/me/keys', { jar })).body.keys, []);

  // At most ten working keys.
  const keys = [];
  for (let i = 0; i < 10; i++) keys.push((await raw(s, 'POST', '/api/me/keys', { jar, headers: same(s), json: { name: `k${i}` } })).body.api_key);
  const eleventh = await raw(s, 'POST', '/api/me/keys', { jar, headers: same(s), json: { name: 'one too many' } });
  assert.equal(eleventh.status, 422);
  assert.equal((await raw(s, 'POST', '/api/me/keys', { jar, headers: same(s), json: { name: '' } })).status, 422);

  // The operator issuing a new key revokes every key of the person.
  const rotated = await s.admin('POST', `/api/admin/users/${user.id}/keys`);
  assert.equal(rotated.status, 201);
  for (const k of keys) assert.equal((await raw(s, 'GET', '/api/me', { headers: { authorization: `Bearer ${k}` } })).status, 401);
  assert.equal((await raw(s, 'GET', '/api/me', { headers: { authorization: `Bearer ${rotated.body.api_key}` } })).status, 200);
  assert.equal((await me(s, jar)).status, 200, 'the browser session is not a key');
});

test('sign-out ends this session; sign-out everywhere ends all of them; a used session slides', { timeout: 60000 }, async () => {
  const a = await signIn(s, 'leaver');
  const b = await signIn(s, 'leaver');
  let r = await raw(s, 'POST', '/auth/logout', { jar: a.jar, headers: same(s) });
  assert.equal(r.status, 200);
  assert.ok(r.cookies.some((c) => /^nb_session=; Path=\/; HttpOnly; SameSite=Lax; Max-Age=0/.test(c)));
  const ended = a.r.cookies.find((c) => c.startsWith('nb_session=')).split(';')[0];
  r = await raw(s, 'GET', '/api/me', { headers: { cookie: ended } });
  assert.equal(r.status, 401, 'the old cookie no longer works');
  assert.equal((await me(s, b.jar)).status, 200, 'the other browser is still signed in');

  const c = await signIn(s, 'leaver');
  r = await raw(s, 'DELETE', '/api/me/sessions', { jar: b.jar, headers: same(s) });
  assert.equal(r.status, 200);
  assert.equal(r.body.ended, 2);
  assert.equal((await me(s, b.jar)).status, 401);
  assert.equal((await me(s, c.jar)).status, 401);

  // Sliding: after SESSION_REFRESH_SECONDS the next use pushes the expiry out (and renews the cookie).
  const d = await signIn(s, 'leaver');
  const userId = (await me(s, d.jar)).body.user.id;
  const [before] = await s.sql('SELECT expires_at, refreshed_at FROM sessions WHERE user_id = ?', userId);
  await sleep(1100);
  r = await me(s, d.jar);
  assert.equal(r.status, 200);
  assert.ok(r.cookies.some((x) => /^nb_session=[a-z2-7]{52}; .*Max-Age=2592000/.test(x)), 'cookie renewed');
  const [afterRow] = await s.sql('SELECT expires_at, refreshed_at FROM sessions WHERE user_id = ?', userId);
  assert.ok(afterRow.expires_at > before.expires_at && afterRow.refreshed_at > before.refreshed_at);
  r = await me(s, d.jar);
  assert.ok(!r.cookies.some((x) => x.startsWith('nb_session=')), 'not refreshed again at once');
});

test('the per-IP limit on new accounts: the fourth new person from one address is refused; existing people still sign in', { timeout: 60000 }, async () => {
  const ip = '192.0.2.77';
  for (const login of ['ip-1', 'ip-2', 'ip-3']) assert.equal((await signIn(s, login, { ip })).r.status, 302, login);
  const refused = await signIn(s, 'ip-4', { ip });
  assert.equal(refused.r.status, 429);
  assert.match(refused.r.headers.get('content-type'), /^text\/html/);
  assert.ok(Number(refused.r.headers.get('retry-after')) > 0);
  assert.equal(await usersNamed(s, 'ip-4'), 0);
  assert.equal((await signIn(s, 'ip-1', { ip })).r.status, 302, 'an existing person is not a new account');
  assert.equal((await signIn(s, 'ip-4', { ip: freshIp() })).r.status, 302, 'another address may');
  const stored = await s.sql('SELECT ip_hash FROM signup_windows');
  assert.ok(stored.length > 0 && stored.every((row) => /^[0-9a-f]{64}$/.test(row.ip_hash) && !row.ip_hash.includes('192')));
});

test('starting sign-ins is limited per address: the 21st in a minute is 429 and stores nothing; another address is not affected', { timeout: 60000 }, async () => {
  // Aligned to the start of a minute window so all 21 fall into one.
  const msIntoMinute = Date.now() % 60000;
  if (msIntoMinute > 45000) await new Promise((r) => setTimeout(r, 60000 - msIntoMinute + 200));
  const ip = '203.0.113.77';
  const [{ n: before }] = await s.sql('SELECT COUNT(*) AS n FROM login_attempts');
  for (let i = 0; i < 20; i++) assert.equal((await raw(s, 'GET', '/auth/login', { ip })).status, 302, `start ${i + 1}`);
  const limited = await raw(s, 'GET', '/auth/login', { ip, headers: { accept: 'application/json' } });
  assert.equal(limited.status, 429, limited.text);
  assert.equal(limited.body.error.code, 'rate_limited');
  assert.ok(Number(limited.headers.get('retry-after')) >= 1);
  assert.equal((await s.sql('SELECT COUNT(*) AS n FROM login_attempts'))[0].n, before + 20, 'the refused start stored nothing');
  assert.ok(s.logs.some((l) => l.event === 'auth.login_limited'));
  assert.equal((await raw(s, 'GET', '/auth/login', { ip: '203.0.113.78' })).status, 302);
});

test('Turnstile on a first sign-in (stand-in siteverify); the provider signs this client\'s ID tokens with ES256; per-IP limit on this path too', { timeout: 90000 }, async () => {
  const ip = '203.0.113.7';
  const first = await signIn(t, 'newbie', { ip });
  assert.equal(first.r.status, 302);
  assert.equal(first.r.location, '/?signup=verify');
  assert.equal(op.state.idTokenAlgs.at(-1), 'ES256');
  assert.ok(first.r.cookies.some((c) => /^nb_signup=[a-z2-7]{52}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=900$/.test(c)));
  assert.ok(!first.r.cookies.some((c) => c.startsWith('nb_session=')));
  assert.equal(await usersNamed(t, 'newbie'), 0, 'no account before the human check');

  const status = await raw(t, 'GET', '/auth/status', { jar: first.jar });
  assert.deepEqual(status.body.signup, { name: 'Person newbie', email: 'newbie@example.test' });
  assert.equal(status.body.turnstile_site_key, SITE_KEY);
  assert.equal(status.body.signed_in, false);
  const page = await raw(t, 'GET', '/');
  assert.match(page.headers.get('content-security-policy'), /script-src 'self' https:\/\/challenges\.cloudflare\.com; frame-src https:\/\/challenges\.cloudflare\.com/);

  let r = await raw(t, 'POST', '/auth/signup', { jar: first.jar, headers: same(t), ip, json: { turnstile_token: 'fail-token' } });
  assert.equal(r.status, 403);
  assert.equal(r.body.error.details.reason, 'turnstile_failed');
  assert.deepEqual(ts.calls.at(-1), { secret: TURNSTILE_SECRET, response: 'fail-token', remoteip: ip });
  assert.equal(await usersNamed(t, 'newbie'), 0);
  r = await raw(t, 'POST', '/auth/signup', { jar: first.jar, headers: { origin: EVIL }, ip, json: { turnstile_token: 'pass-1' } });
  assert.equal(r.status, 403, 'the sign-up cookie obeys the same-origin rule');
  assert.equal(ts.calls.at(-1).response, 'fail-token', 'refused before asking Turnstile');

  r = await raw(t, 'POST', '/auth/signup', { jar: first.jar, headers: same(t), ip, json: { turnstile_token: 'pass-1' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.user.credits, 7);
  assert.ok(r.cookies.some((c) => c.startsWith('nb_session=') && !c.includes('Max-Age=0')));
  assert.ok(r.cookies.some((c) => /^nb_signup=; .*Max-Age=0/.test(c)));
  const user = (await me(t, first.jar)).body.user;
  assert.equal(user.credits, 7);
  assert.deepEqual(await grants(t, user.id), [{ amount: 7, reason: 'starter credits', actor: 'system' }]);
  r = await raw(t, 'POST', '/auth/signup', { jar: first.jar, headers: same(t), ip, json: { turnstile_token: 'pass-2' } });
  assert.equal(r.status, 401, 'the sign-up is used up');

  // Known people are not asked again.
  const calls = ts.calls.length;
  const again = await signIn(t, 'newbie', { ip });
  assert.equal(again.r.location, '/');
  assert.equal((await me(t, again.jar)).body.user.id, user.id);
  assert.equal(ts.calls.length, calls);

  // NEW_ACCOUNTS_PER_IP=2 here: a second new person from the address passes, a third waits.
  const second = await signIn(t, 'newbie-2', { ip });
  assert.equal((await raw(t, 'POST', '/auth/signup', { jar: second.jar, headers: same(t), ip, json: { turnstile_token: 'pass-3' } })).status, 200);
  const third = await signIn(t, 'newbie-3', { ip });
  r = await raw(t, 'POST', '/auth/signup', { jar: third.jar, headers: same(t), ip, json: { turnstile_token: 'pass-4' } });
  assert.equal(r.status, 429);
  assert.equal(r.body.error.code, 'rate_limited');
  assert.equal(await usersNamed(t, 'newbie-3'), 0);
  r = await raw(t, 'POST', '/auth/signup', { jar: third.jar, headers: same(t), ip: '203.0.113.8', json: { turnstile_token: 'pass-5' } });
  assert.equal(r.status, 200);
  assert.equal(await usersNamed(t, 'newbie-3'), 1);

  const d = await t.admin('GET', '/api/admin/diagnose');
  const check = (name) => d.body.checks.find((c) => c.name === name);
  assert.equal(check('turnstile').status, 'pass');
  assert.equal(check('oidc keys').status, 'pass');
});

test('/auth/status, diagnose, and a deployment without sign-in', async () => {
  let r = await raw(s, 'GET', '/auth/status');
  assert.equal(r.status, 200);
  assert.equal(r.body.signed_in, false);
  assert.equal(r.body.oidc.provider, `127.0.0.1:${op.port}`);
  assert.equal(r.body.turnstile_site_key, null);
  const { jar } = await signIn(s, 'status-person');
  assert.equal((await raw(s, 'GET', '/auth/status', { jar })).body.signed_in, true);

  const d = await s.admin('GET', '/api/admin/diagnose');
  const check = (name) => d.body.checks.find((c) => c.name === name);
  assert.equal(check('oidc discovery').status, 'pass', JSON.stringify(check('oidc discovery')));
  assert.match(check('oidc keys').hint, /3 usable signing key/);
  assert.equal(check('oidc redirect uri').status, 'pass');
  assert.ok(check('oidc redirect uri').hint.startsWith(`${s.url}/auth/callback`));
  assert.equal(check('turnstile').status, 'skip');

  // Without OIDC settings: the button is not offered, /auth/login names the missing setting, diagnose skips.
  r = await raw(u, 'GET', '/auth/status');
  assert.equal(r.body.oidc, null);
  r = await raw(u, 'GET', '/auth/login');
  assert.equal(r.status, 503);
  assert.match(r.text, /OIDC_CLIENT_ID/);
  r = await raw(u, 'GET', '/auth/login', { headers: { accept: 'application/json' } });
  assert.equal(r.body.error.code, 'config_error');
  const du = await u.admin('GET', '/api/admin/diagnose');
  assert.equal(du.body.checks.find((c) => c.name === 'sign-in provider').status, 'skip');
});

test('on an https origin the cookies are Secure with __Host- names, and only those names are accepted', { timeout: 60000 }, async () => {
  const jar = new Jar();
  const login = await raw(h, 'GET', '/auth/login', { jar });
  assert.equal(login.status, 302);
  assert.equal(new URL(login.location).searchParams.get('redirect_uri'), `${HTTPS_ORIGIN}/auth/callback`);
  assert.match(login.cookies[0], /^__Host-nb_login=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=600; Secure$/);
  const answer = new URL(await throughProvider(login.location, 'tls-person', `${HTTPS_ORIGIN}/auth/callback`));
  // The browser reaches the Worker through the TLS edge; the test talks to it directly.
  const cb = await raw(h, 'GET', `/auth/callback${answer.search}`, { jar, ip: freshIp() });
  assert.equal(cb.status, 302, cb.text);
  const session = cb.cookies.find((c) => c.startsWith('__Host-nb_session='));
  assert.match(session, /^__Host-nb_session=[a-z2-7]{52}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=2592000; Secure$/);
  const value = session.split(';')[0].split('=')[1];
  assert.equal((await raw(h, 'GET', '/api/me', { headers: { cookie: `__Host-nb_session=${value}` } })).body.user.name, 'Person tls-person');
  assert.equal((await raw(h, 'GET', '/api/me', { headers: { cookie: `nb_session=${value}` } })).status, 401, 'the plain name could be set by a sibling subdomain');
  const made = await raw(h, 'POST', '/api/me/keys', { headers: { cookie: `__Host-nb_session=${value}`, origin: HTTPS_ORIGIN }, json: { name: 'tls' } });
  assert.equal(made.status, 201, 'PUBLIC_BASE_URL is our origin');
});
