// A real OpenID provider for the sign-in tests: `oidc-provider` (a certified
// implementation) on a local port, with test clients and signing keys (RS256
// and ES256) that the test generates and therefore holds. In front of it sits
// a small proxy that passes everything through, except that it can re-mint
// the ID token the token endpoint returns with one broken claim or a bad
// signature (using the provider's own private key), replay a token request,
// and publish a rotated key. Also a stand-in for Turnstile's siteverify, and
// a client that walks the provider's login and consent pages without a
// browser, for the refusal tests.
import Provider from 'oidc-provider';
import http from 'node:http';
import { generateKeyPairSync, sign, randomBytes } from 'node:crypto';

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

function keyPair(kind, kid) {
  const { privateKey, publicKey } = kind === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const alg = kind === 'ec' ? 'ES256' : 'RS256';
  return { kid, alg, privateKey, privateJwk: { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' }, publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } };
}

/** Signs a JWT with node:crypto (ES256 as raw r||s, the JWS form). */
export function mint(header, payload, key) {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(payload))}`;
  const sig = key.alg === 'ES256' ? sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }) : sign('sha256', Buffer.from(input), key.privateKey);
  return `${input}.${b64(sig)}`;
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

async function readBody(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

function forward(port, method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: url, headers }, async (res) => {
      resolve({ status: res.statusCode, rawHeaders: res.rawHeaders, body: await readBody(res) });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Starts the proxy (whose address is the issuer) at once; `configure()`
 * creates the provider once the Workers' callback URLs are known.
 */
export async function startOidcProvider() {
  const rsa = keyPair('rsa', 'rsa-1');
  const ec = keyPair('ec', 'ec-1');
  const rotated = keyPair('rsa', 'rsa-rotated');
  const stranger = keyPair('rsa', 'rsa-1'); // same kid as the real key, another private key
  let internalPort = 0;
  let providerServer = null;
  const state = { mode: 'pass', rotatedPublished: false, tokenRequests: [], idTokenAlgs: [], jwksRequests: 0, discoveryRequests: 0 };

  function remint(idToken) {
    const [h, p] = idToken.split('.');
    const header = b64json(h);
    const payload = b64json(p);
    const now = Math.floor(Date.now() / 1000);
    switch (state.mode) {
      case 'aud': return mint(header, { ...payload, aud: 'someone-else' }, rsa);
      case 'iss': return mint(header, { ...payload, iss: 'http://127.0.0.1:1/evil' }, rsa);
      case 'expired': return mint(header, { ...payload, iat: now - 7200, exp: now - 3600 }, rsa);
      case 'nonce': return mint(header, { ...payload, nonce: 'not-this-sign-ins-nonce' }, rsa);
      case 'badsig': return mint(header, payload, stranger);
      case 'es256': return mint({ ...header, alg: 'ES256', kid: ec.kid }, payload, ec);
      case 'rotated': return mint({ ...header, kid: rotated.kid }, payload, rotated);
      case 'alg-none': return `${b64(JSON.stringify({ alg: 'none' }))}.${p}.${b64('unsigned')}`;
      default: return idToken;
    }
  }

  const front = http.createServer(async (req, res) => {
    try {
      if (!internalPort) { res.writeHead(503); res.end('not configured'); return; }
      const body = await readBody(req);
      const path = req.url.split('?')[0];
      if (path === '/.well-known/openid-configuration') state.discoveryRequests++;
      if (path === '/jwks') state.jwksRequests++;
      let up = await forward(internalPort, req.method, req.url, req.headers, body);
      let out = up.body;
      let rewritten = false;
      if (req.method === 'POST' && path === '/token') {
        state.tokenRequests.push({ authorization: req.headers.authorization || null, form: Object.fromEntries(new URLSearchParams(body.toString())) });
        if (state.mode === 'replay') {
          // The same code presented a second time: the provider's answer to that is what the Worker gets.
          up = await forward(internalPort, req.method, req.url, req.headers, body);
          out = up.body;
        } else if (up.status === 200) {
          state.idTokenAlgs.push(b64json(JSON.parse(out.toString()).id_token.split('.')[0]).alg);
        }
        if (up.status === 200 && !['pass', 'replay'].includes(state.mode)) {
          const json = JSON.parse(out.toString());
          json.id_token = remint(json.id_token);
          out = Buffer.from(JSON.stringify(json));
          rewritten = true;
        }
      }
      if (path === '/jwks' && state.rotatedPublished) {
        const json = JSON.parse(out.toString());
        json.keys.push(rotated.publicJwk);
        out = Buffer.from(JSON.stringify(json));
        rewritten = true;
      }
      const headers = [];
      for (let i = 0; i < up.rawHeaders.length; i += 2) {
        const name = up.rawHeaders[i];
        if (rewritten && /^(content-length|etag|transfer-encoding)$/i.test(name)) continue;
        headers.push(name, up.rawHeaders[i + 1]);
      }
      res.writeHead(up.status, headers);
      res.end(out);
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  });
  const port = await listen(front);
  const issuer = `http://127.0.0.1:${port}`;

  /** clients: [{client_id, client_secret, redirect_uris, id_token_signed_response_alg}] */
  async function configure(clients) {
    const provider = new Provider(issuer, {
      clients: clients.map((c) => ({ response_types: ['code'], grant_types: ['authorization_code'], ...c })),
      jwks: { keys: [rsa.privateJwk, ec.privateJwk] },
      pkce: { required: () => true, methods: ['S256'] },
      features: { devInteractions: { enabled: true } },
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
      conformIdTokenClaims: false,
      cookies: { keys: [randomBytes(16).toString('hex')], long: { httpOnly: true, sameSite: 'lax' }, short: { httpOnly: true, sameSite: 'lax' } },
      findAccount: (ctx, id) => ({
        accountId: id,
        claims: () => ({ sub: id, email: `${id}@example.test`, email_verified: true, name: `Person ${id}` }),
      }),
    });
    providerServer = http.createServer(provider.callback());
    internalPort = await listen(providerServer);
    return provider;
  }

  async function close() {
    await new Promise((r) => front.close(r));
    front.closeAllConnections?.();
    if (providerServer) {
      await new Promise((r) => providerServer.close(r));
      providerServer.closeAllConnections?.();
    }
  }

  return { issuer, port, keys: { rsa, ec, rotated }, state, configure, close, setMode: (m) => { state.mode = m; }, publishRotatedKey: () => { state.rotatedPublished = true; } };
}

/** A stand-in for Turnstile's siteverify: `pass-…` tokens pass, the rest fail. */
export async function startTurnstileStandIn(secret) {
  const calls = [];
  const server = http.createServer(async (req, res) => {
    const form = Object.fromEntries(new URLSearchParams((await readBody(req)).toString()));
    calls.push(form);
    let answer;
    if (form.secret !== secret) answer = { success: false, 'error-codes': ['invalid-input-secret'] };
    else if (String(form.response || '').startsWith('pass-')) answer = { success: true, action: 'signup', hostname: '127.0.0.1', 'error-codes': [], challenge_ts: new Date().toISOString() };
    else answer = { success: false, 'error-codes': ['invalid-input-response'] };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer));
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/siteverify`, calls, close: () => new Promise((r) => { server.close(r); server.closeAllConnections?.(); }) };
}

/** A cookie jar for one host: name → value, following Set-Cookie. */
export class Jar {
  constructor() { this.cookies = new Map(); }
  take(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
      if (gone) this.cookies.delete(name); else this.cookies.set(name, value);
    }
  }
  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
  get(name) { return this.cookies.get(name); }
}

function formOf(html) {
  const form = html.match(/<form[^>]*action="([^"]+)"[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/i);
  if (!form) return null;
  const fields = {};
  for (const m of form[2].matchAll(/<input[^>]*>/gi)) {
    const name = m[0].match(/name="([^"]+)"/);
    const value = m[0].match(/value="([^"]*)"/);
    if (name) fields[name[1]] = value ? value[1] : '';
  }
  return { action: form[1].replace(/&amp;/g, '&'), fields };
}

/**
 * Walks the provider's pages (login as `login`, then consent) from an
 * authorization URL until the provider redirects to `callbackPrefix`; returns
 * that callback URL (with `code` and `state`), not yet visited.
 */
export async function throughProvider(authorizationUrl, login, callbackPrefix, providerJar = new Jar()) {
  let url = authorizationUrl;
  let method = 'GET';
  let body;
  for (let step = 0; step < 20; step++) {
    const res = await fetch(url, {
      method,
      redirect: 'manual',
      headers: { cookie: providerJar.header(), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body,
    });
    providerJar.take(res);
    method = 'GET';
    body = undefined;
    if (res.status >= 300 && res.status < 400) {
      const next = new URL(res.headers.get('location'), url).href;
      await res.arrayBuffer();
      if (next.startsWith(callbackPrefix)) return next;
      url = next;
      continue;
    }
    const html = await res.text();
    const form = res.status === 200 && formOf(html);
    if (!form) throw new Error(`provider page without a form (HTTP ${res.status}): ${html.slice(0, 300)}`);
    if ('login' in form.fields) Object.assign(form.fields, { login, password: 'any-password' });
    url = new URL(form.action, url).href;
    method = 'POST';
    body = new URLSearchParams(form.fields).toString();
  }
  throw new Error('the provider did not send the browser back');
}
