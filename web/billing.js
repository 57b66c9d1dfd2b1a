'use strict';
// Buying credits on the page: the packs on sale, "Buy credits" (to Stripe
// Checkout and back), the "payment received" state while the webhook lands
// (polling /api/me), and the order history. Self-contained: it shows itself
// when the signed-in part of the page (#app) is shown, authenticates like the
// page (the stored API key, or the session cookie), and follows the page's
// language (<html lang>). No inline code (CSP script-src 'self').
(() => {
const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const POLL_LIMIT_MS = 3 * 60 * 1000;

const T = {
  title: ['Credits', '积分'],
  packs: ['Buy credits', '购买积分'],
  buy: ['Buy {credits} credits · {price}', '购买 {credits} 积分 · {price}'],
  opening: ['Opening the secure checkout…', '正在打开安全结账页面…'],
  received: ['Payment received. Your credits appear as soon as the payment is confirmed…', '已收到付款。付款确认后积分将立即到账…'],
  added: ['{credits} credits added. Balance: {balance} credits.', '已到账 {credits} 积分。余额：{balance} 积分。'],
  slow: ['The payment is still being confirmed. The credits will appear here; you can leave this page.', '付款仍在确认中。积分到账后会显示在这里，您可以离开此页面。'],
  pending: ['Your bank is still processing the payment; the credits appear when it clears.', '银行仍在处理付款，完成后积分将到账。'],
  failed: ['The payment did not go through. Nothing was charged.', '付款未成功，未产生任何费用。'],
  cancelled: ['Checkout cancelled; nothing was charged.', '已取消结账，未产生任何费用。'],
  resume: ['Continue checkout', '继续结账'],
  owed: ['Your account owes {n} credits from a purchase that was refunded or disputed after the credits were used. Creating and buying are paused; please contact us.', '您的账户欠 {n} 积分（某笔购买在积分使用后被退款或争议）。创作和购买已暂停，请联系我们。'],
  orders: ['Orders', '订单'],
  none: ['No orders yet.', '还没有订单。'],
  credits: ['{n} credits', '{n} 积分'],
  credit1: ['{n} credit', '{n} 积分'],
  refunded: ['refunded {amount}', '已退款 {amount}'],
  disputed: ['disputed', '有争议'],
  'st.pending': ['Starting', '创建中'],
  'st.open': ['Awaiting payment', '待付款'],
  'st.processing': ['Payment processing', '付款处理中'],
  'st.paid': ['Paid', '已付款'],
  'st.failed': ['Failed', '失败'],
  'st.expired': ['Expired', '已过期'],
  'e.network': ['Could not reach the server. Check your connection and try again.', '无法连接服务器。请检查网络后重试。'],
  'e.credits_owed': ['Buying is paused while your account owes credits.', '账户欠积分期间无法购买。'],
  'e.upstream_unavailable': ['The payment provider cannot be reached right now. Nothing was charged; please try again in a moment.', '暂时无法连接支付服务。未产生任何费用，请稍后重试。'],
  'e.upstream_error': ['The payment provider refused to start the checkout. Nothing was charged.', '支付服务拒绝了本次结账。未产生任何费用。'],
  'e.other': ['Something went wrong (request {rid}). Nothing was charged.', '出现问题（请求 {rid}）。未产生任何费用。'],
};
const zh = () => (document.documentElement.lang || '').toLowerCase().startsWith('zh');
const t = (k, v = {}) => (T[k] ? T[k][zh() ? 1 : 0] : k).replace(/\{(\w+)\}/g, (_, n) => (v[n] ?? ''));
const money = (amount, currency) => {
  try {
    return new Intl.NumberFormat(zh() ? 'zh-CN' : 'en', { style: 'currency', currency: currency.toUpperCase() }).format(amount / 100);
  } catch {
    return `${(amount / 100).toFixed(2)} ${currency.toUpperCase()}`;
  }
};
const when = (iso) => new Date(iso).toLocaleString(zh() ? 'zh-CN' : 'en', { dateStyle: 'medium', timeStyle: 'short' });
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...kids);
  return el;
}

// The page keeps a user's API key in localStorage ('nb.key'); with sign-in the
// session cookie goes along by itself (same origin).
function authHeaders() {
  let key = null;
  try { key = localStorage.getItem('nb.key'); } catch {}
  return key ? { Authorization: 'Bearer ' + key } : {};
}
async function api(path, opts = {}) {
  let res;
  try {
    res = await fetch(path, { ...opts, credentials: 'same-origin', headers: { ...authHeaders(), ...(opts.headers || {}) } });
  } catch {
    throw { net: true };
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) throw { status: res.status, api: (body && body.error) || { request_id: res.headers.get('X-Request-Id') } };
  return body;
}
const errText = (e) => {
  if (e.net) return t('e.network');
  const code = e.api && e.api.code;
  return T['e.' + code] ? t('e.' + code) : t('e.other', { rid: (e.api && e.api.request_id) || '?' });
};

let packs = [], orders = [], owed = 0, busy = false, status = null, watching = null, pollTimer = 0, active = false;

function setStatus(kind, key, vars, order) {
  status = kind ? { kind, key, vars, order } : null;
  render();
}

function render() {
  const section = $('billing');
  if (!section) return;
  section.hidden = !active || !packs.length;
  if (section.hidden) return;
  $('billing-title').textContent = t('title');
  $('billing-packs-title').textContent = t('packs');
  $('billing-orders-title').textContent = t('orders');
  const owedEl = $('billing-owed');
  owedEl.hidden = owed <= 0;
  owedEl.textContent = owed > 0 ? t('owed', { n: owed }) : '';
  $('billing-packs').replaceChildren(...packs.map((p) => h('li', {}, h('button', {
    type: 'button', class: 'primary', 'data-testid': 'buy-' + p.id, disabled: busy || owed > 0,
    text: t('buy', { credits: p.credits, price: money(p.amount, p.currency) }),
    onclick: () => buy(p.id),
  }))));
  const st = $('billing-status');
  st.hidden = !status;
  st.className = status ? 'billing-status ' + status.kind : 'billing-status';
  st.replaceChildren();
  if (status) {
    st.append(h('span', { text: status.error ? errText(status.error) : t(status.key, status.vars) }));
    if (status.order && status.order.url) st.append(' ', h('a', { href: status.order.url, 'data-testid': 'billing-resume', text: t('resume') }));
  }
  $('billing-none').hidden = orders.length > 0;
  $('billing-orders').replaceChildren(...orders.map((o) => {
    const notes = [];
    if (o.refunded_amount > 0) notes.push(t('refunded', { amount: money(o.refunded_amount, o.currency) }));
    if (o.disputed_amount > 0) notes.push(t('disputed'));
    return h('tr', { 'data-testid': 'order-row', 'data-state': o.state },
      h('td', { text: when(o.created_at) }),
      h('td', { text: t('credits', { n: o.credits }) }),
      h('td', { text: money(o.amount, o.currency) }),
      h('td', { text: [t('st.' + o.state), ...notes].join(' · ') }),
      h('td', {}, o.state === 'open' && o.url ? h('a', { href: o.url, text: t('resume') }) : ''));
  }));
}

async function loadOrders() {
  const r = await api('/api/billing/orders?limit=20');
  orders = r.orders || [];
  owed = r.owed || 0;
}

async function buy(pack) {
  if (busy) return;
  busy = true;
  setStatus('info', 'opening');
  try {
    const r = await api('/api/billing/checkout', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ pack }) });
    location.assign(r.url);
  } catch (e) {
    busy = false;
    if (e.api && e.api.code === 'credits_owed') await loadOrders().catch(() => {});
    status = { kind: 'err', error: e };
    render();
  }
}

// Back from Stripe: ?checkout=success|cancel&order=ord_…
function arrival() {
  const q = new URLSearchParams(location.search);
  const kind = q.get('checkout'), order = q.get('order');
  if (!kind || !/^ord_[a-z2-7]{26}$/.test(order || '')) return null;
  q.delete('checkout');
  q.delete('order');
  const rest = q.toString();
  history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
  return { kind, order };
}

// The credits arrive with Stripe's webhook: poll /api/me (and the order) until they do.
function watch(orderId) {
  watching = { id: orderId, since: Date.now() };
  setStatus('info', 'received');
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, 0);
}
async function poll() {
  if (!watching || !active) return;
  try {
    const me = (await api('/api/me')).user;
    await loadOrders();
    const o = orders.find((x) => x.id === watching.id);
    const credits = $('credits');
    if (credits && me) credits.textContent = t(me.credits === 1 ? 'credit1' : 'credits', { n: me.credits });
    window.dispatchEvent(new CustomEvent('billing:credits', { detail: { credits: me && me.credits } }));
    if (o && o.state === 'paid') {
      watching = null;
      setStatus('ok', 'added', { credits: o.credits, balance: me.credits });
      return;
    }
    if (o && (o.state === 'failed' || o.state === 'expired')) {
      watching = null;
      setStatus('err', 'failed');
      return;
    }
    if (Date.now() - watching.since > POLL_LIMIT_MS) {
      watching = null;
      setStatus('info', o && o.state === 'processing' ? 'pending' : 'slow');
      return;
    }
    render();
  } catch {
    // A passing network problem: keep polling.
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

let arrived = arrival();
async function start() {
  if (active) return;
  active = true;
  try {
    packs = (await api('/api/billing/packs')).packs || [];
    if (!packs.length) return render();
    await loadOrders();
  } catch {
    return render();
  }
  if (arrived && arrived.kind === 'success') watch(arrived.order);
  else if (arrived && arrived.kind === 'cancel') setStatus('info', 'cancelled', {}, orders.find((o) => o.id === arrived.order && o.state === 'open'));
  else render();
  arrived = null;
}
function stop() {
  active = false;
  watching = null;
  clearTimeout(pollTimer);
  packs = [];
  orders = [];
  owed = 0;
  status = null;
  render();
}

function init() {
  const app = $('app');
  if (!app || !$('billing')) return;
  const follow = () => (app.hidden ? stop() : start());
  new MutationObserver(follow).observe(app, { attributes: true, attributeFilter: ['hidden'] });
  new MutationObserver(render).observe(document.documentElement, { attributes: true, attributeFilter: ['lang'] });
  follow();
}
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
})();
