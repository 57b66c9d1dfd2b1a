// A local stand-in for the part of Stripe this service uses, for tests and
// `wrangler dev`: POST /v1/checkout/sessions (form-encoded, Idempotency-Key
// honoured like Stripe: the same key answers the same session, and the same
// key with other parameters is refused), GET /v1/checkout/sessions?payment_intent=
// (the session a payment went through), GET /v1/balance, and a checkout page
// (GET /c/pay/<session>) whose "Pay" button sends the signed
// checkout.session.completed event to the Worker's webhook and returns the
// person to success_url, as Stripe would.
//
// Webhook signatures come from the official `stripe` library
// (webhooks.generateTestHeaderString), the same oracle the tests use.
//
//   node sim/stripe-sim.mjs --port 8791 --webhook http://127.0.0.1:8787/api/webhooks/stripe
//   (secret key and webhook secret from STRIPE_SECRET_KEY / STRIPE_WEBHOOK_SECRET, or --key / --secret)

import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import Stripe from 'stripe';

const stripe = new Stripe('sk_test_standin_signing_only');
const rid = (prefix) => `${prefix}_${randomBytes(12).toString('hex')}`;

/** The `Stripe-Signature` header for `payload`, made by the official library. */
export function signPayload(payload, secret, timestamp = Math.floor(Date.now() / 1000)) {
  return stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });
}

/** A Stripe event envelope around `object`. */
export function makeEvent(type, object, { id = rid('evt'), livemode = false } = {}) {
  return { id, object: 'event', api_version: '2024-06-20', created: Math.floor(Date.now() / 1000), livemode, type, data: { object }, pending_webhooks: 1, request: { id: null, idempotency_key: null } };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': rid('req'), ...headers });
  res.end(JSON.stringify(body));
}

const stripeError = (res, status, type, code, message) => json(res, status, { error: { type, code, message } });

/**
 * Starts the stand-in. Options: port (0 = any), host, apiKey (the secret key
 * it accepts), webhookSecret and webhookUrl (for the checkout page's "Pay").
 * Returns { url, state, configure(opts), session(id), completedSession(id, status), charge(id, fields), close() }.
 */
export async function startStripeSim({ port = 0, host = '127.0.0.1', apiKey, webhookSecret, webhookUrl } = {}) {
  const state = {
    calls: [], // every API call: { method, path, idempotencyKey, params }
    sessions: new Map(),
    idempotency: new Map(), // key -> { paramsText, status, body }
    fail: null, // null | HTTP status to answer | 'hang'
    delayMs: 0,
    webhookUrl,
    holdWebhooks: false, // keep the "Pay" page's events until release() (Stripe's webhook arriving after the person is back)
    held: [],
    deliveries: [], // { type, status } of each event the "Pay" page sent
  };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://standin');
    const text = await readBody(req);
    try {
      if (url.pathname.startsWith('/v1/')) return await api(req, res, url, text);
      if (url.pathname.startsWith('/c/pay/')) return await payPage(req, res, url, text);
      json(res, 404, { error: { type: 'invalid_request_error', message: 'Unrecognized request URL' } });
    } catch (e) {
      json(res, 500, { error: { type: 'api_error', message: String(e) } });
    }
  });

  async function api(req, res, url, text) {
    const params = new URLSearchParams(text);
    const idempotencyKey = req.headers['idempotency-key'] || null;
    state.calls.push({ method: req.method, path: url.pathname, idempotencyKey, params: Object.fromEntries(params), contentType: req.headers['content-type'] || '' });
    if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
    if (state.fail === 'hang') return; // never answers
    if (state.fail) return stripeError(res, state.fail, 'api_error', 'standin_failure', 'Injected failure');
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      return stripeError(res, 401, 'invalid_request_error', 'api_key_invalid', 'Invalid API Key provided');
    }
    if (req.method === 'GET' && url.pathname === '/v1/balance') {
      return json(res, 200, { object: 'balance', livemode: false, available: [{ amount: 0, currency: 'usd' }], pending: [] });
    }
    if (req.method === 'GET' && url.pathname === '/v1/checkout/sessions') {
      // Stripe's list, filtered by the payment: the session whose PaymentIntent it is.
      const pi = url.searchParams.get('payment_intent');
      const data = [...state.sessions.values()].filter((x) => pi && x.pi === pi).map((x) => completedSession(x.id));
      return json(res, 200, { object: 'list', url: '/v1/checkout/sessions', has_more: false, data: data.slice(0, Number(url.searchParams.get('limit') || 10)) });
    }
    if (req.method === 'POST' && url.pathname === '/v1/checkout/sessions') {
      if (!String(req.headers['content-type'] || '').startsWith('application/x-www-form-urlencoded')) {
        return stripeError(res, 400, 'invalid_request_error', 'parameter_missing', 'Send form-encoded parameters');
      }
      if (idempotencyKey && state.idempotency.has(idempotencyKey)) {
        const saved = state.idempotency.get(idempotencyKey);
        if (saved.paramsText !== text) {
          return stripeError(res, 400, 'idempotency_error', 'idempotency_key_in_use', 'Keys for idempotent requests can only be used with the same parameters they were first used with.');
        }
        return json(res, saved.status, saved.body, { 'idempotent-replayed': 'true' });
      }
      const [status, body] = createSession(params);
      if (idempotencyKey) state.idempotency.set(idempotencyKey, { paramsText: text, status, body });
      return json(res, status, body);
    }
    return stripeError(res, 404, 'invalid_request_error', 'resource_missing', 'Unrecognized request URL');
  }

  function createSession(p) {
    const missing = ['mode', 'success_url', 'line_items[0][price_data][currency]', 'line_items[0][price_data][unit_amount]', 'line_items[0][quantity]']
      .find((k) => !p.get(k));
    if (missing) return [400, { error: { type: 'invalid_request_error', code: 'parameter_missing', param: missing, message: `Missing required param: ${missing}.` } }];
    if (p.get('mode') !== 'payment') return [400, { error: { type: 'invalid_request_error', code: 'parameter_invalid', param: 'mode' } }];
    const amount = Number(p.get('line_items[0][price_data][unit_amount]'));
    if (!Number.isInteger(amount) || amount < 1) return [400, { error: { type: 'invalid_request_error', code: 'parameter_invalid_integer', param: 'unit_amount' } }];
    const now = Math.floor(Date.now() / 1000);
    const expiresAt = p.get('expires_at') ? Number(p.get('expires_at')) : now + 86400;
    if (!(expiresAt >= now + 1800 - 5 && expiresAt <= now + 86400)) {
      return [400, { error: { type: 'invalid_request_error', code: 'parameter_invalid_integer', param: 'expires_at' } }];
    }
    const id = `cs_test_${randomBytes(16).toString('hex')}`;
    const metadata = {};
    for (const [k, v] of p) {
      const m = /^metadata\[(.+)\]$/.exec(k);
      if (m) metadata[m[1]] = v;
    }
    const session = {
      id,
      object: 'checkout.session',
      mode: 'payment',
      status: 'open',
      payment_status: 'unpaid',
      amount_total: amount * Number(p.get('line_items[0][quantity]')),
      currency: p.get('line_items[0][price_data][currency]'),
      client_reference_id: p.get('client_reference_id'),
      metadata,
      success_url: p.get('success_url'),
      cancel_url: p.get('cancel_url'),
      expires_at: expiresAt,
      livemode: false,
      payment_intent: null,
      url: `${self.url}/c/pay/${id}`,
      product_name: p.get('line_items[0][price_data][product_data][name]'),
      pi: rid('pi'),
      charge: rid('ch'),
    };
    state.sessions.set(id, session);
    const { pi, charge, product_name, ...visible } = session;
    return [200, visible];
  }

  // The person "pays": the completed event goes to the webhook, then back to success_url.
  async function payPage(req, res, url, text) {
    const id = url.pathname.slice('/c/pay/'.length);
    const s = state.sessions.get(id);
    if (!s) return json(res, 404, { error: { message: 'No such checkout session' } });
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(`<!doctype html><title>Stripe stand-in checkout</title><h1>${s.product_name}: ${(s.amount_total / 100).toFixed(2)} ${s.currency.toUpperCase()}</h1>
<form method="post"><button name="pay" value="1" data-testid="standin-pay">Pay</button> <a href="${s.cancel_url}" data-testid="standin-cancel">Cancel</a></form>`);
    }
    const event = makeEvent('checkout.session.completed', completedSession(id, 'paid'));
    const send = async () => {
      if (!state.webhookUrl || !webhookSecret) return;
      const r = await deliver(state.webhookUrl, webhookSecret, event).catch((e) => ({ status: String(e) }));
      state.deliveries.push({ type: event.type, status: r.status });
    };
    if (state.holdWebhooks) state.held.push(send);
    else await send();
    res.writeHead(303, { location: s.success_url });
    res.end();
  }

  /** The session as a checkout.session.* event carries it once the person went through. */
  function completedSession(id, paymentStatus = 'paid') {
    const s = state.sessions.get(id);
    if (!s) throw new Error(`no session ${id}`);
    const { pi, charge, product_name, ...visible } = s;
    return { ...visible, status: 'complete', payment_status: paymentStatus, payment_intent: pi };
  }

  /** A charge object of the session's payment (for charge.refunded / disputes). */
  function charge(id, fields = {}) {
    const s = state.sessions.get(id);
    return { id: s.charge, object: 'charge', amount: s.amount_total, currency: s.currency, payment_intent: s.pi, refunded: false, amount_refunded: 0, ...fields };
  }

  const self = {
    url: '',
    state,
    configure({ fail, delayMs, webhookUrl: hook, holdWebhooks } = {}) {
      if (fail !== undefined) state.fail = fail;
      if (delayMs !== undefined) state.delayMs = delayMs;
      if (hook !== undefined) state.webhookUrl = hook;
      if (holdWebhooks !== undefined) state.holdWebhooks = holdWebhooks;
    },
    /** Sends the held webhook events now. */
    async release() {
      const held = state.held.splice(0);
      for (const send of held) await send();
      return held.length;
    },
    completedSession,
    charge,
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
  await new Promise((resolve) => server.listen(port, host, resolve));
  self.url = `http://${host}:${server.address().port}`;
  return self;
}

/** Posts `event` to `url` signed with `secret` (at `timestamp`, default now). */
export async function deliver(url, secret, event, { timestamp, signature } = {}) {
  const payload = typeof event === 'string' ? event : JSON.stringify(event);
  const header = signature ?? signPayload(payload, secret, timestamp);
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': header }, body: payload });
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch {}
  return { status: res.status, body, text, requestId: res.headers.get('x-request-id') };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const sim = await startStripeSim({
    port: Number(arg('port', 8791)),
    apiKey: arg('key', process.env.STRIPE_SECRET_KEY),
    webhookSecret: arg('secret', process.env.STRIPE_WEBHOOK_SECRET),
    webhookUrl: arg('webhook', 'http://127.0.0.1:8787/api/webhooks/stripe'),
  });
  console.log(`Stripe stand-in on ${sim.url}`);
}
