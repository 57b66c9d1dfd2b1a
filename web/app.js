'use strict';
(() => {
const $ = (id) => document.getElementById(id);
const MB = 1048576;
const POLL_MS = 1500;
// The deployment's models, prices and limits: filled from GET /api/models only.
let MODELS = [], BODY_LIMIT = Infinity;

// Every text the page shows: [English, 中文].
const T = {
  title: ['Banana images', 'Banana 图像'],
  signout: ['Sign out', '退出登录'],
  reqid: ['Request id', '请求 ID'],
  dismiss: ['Dismiss', '关闭'],
  'signin.title': ['Sign in', '登录'],
  'signin.label': ['API key', 'API 密钥'],
  'signin.btn': ['Sign in', '登录'],
  'signin.hint': ['Your key starts with nbk_. It is kept only in this browser.', '密钥以 nbk_ 开头，仅保存在此浏览器中。'],
  'signin.with': ['Sign in with {p}', '使用 {p} 登录'],
  'signin.or': ['Or, for scripts and operator-made accounts, an API key:', '或者（用于脚本和管理员创建的账户）使用 API 密钥：'],
  'oidc.hint': ['New here? Your account is made when you first sign in, with free credits to start.', '第一次登录时自动创建账户，并赠送免费积分。'],
  'signup.title': ['One more step', '还差一步'],
  'signup.who': ['Welcome, {name}.', '欢迎，{name}。'],
  'signup.hint': ['Confirm you are a person, and your account is ready.', '请完成人机验证，账户即可创建。'],
  'signup.unavailable': ['The human check could not load. Reload the page to try again.', '人机验证无法加载。请刷新页面重试。'],
  account: ['Account', '账户'],
  'signout.all': ['Sign out everywhere', '在所有设备上退出'],
  'keys.title': ['API keys', 'API 密钥'],
  'keys.hint': ['For scripts: send a key as Authorization: Bearer …', '用于脚本：以 Authorization: Bearer … 发送密钥'],
  'keys.name': ['Key name', '密钥名称'],
  'keys.create': ['Create key', '创建密钥'],
  'keys.once': ['Copy this key now: it is not shown again.', '请立即复制此密钥：它不会再次显示。'],
  'keys.none': ['No keys yet.', '还没有密钥。'],
  'keys.revoke': ['Revoke', '撤销'],
  credits: ['{n} credits', '{n} 积分'],
  credit1: ['{n} credit', '{n} 积分'],
  create: ['Create', '创作'],
  model: ['Model', '模型'],
  prompt: ['Prompt', '提示词'],
  'prompt.ph': ['Describe the image you want… (Ctrl+Enter to generate)', '描述你想要的图像…（Ctrl+Enter 生成）'],
  ratio: ['Aspect ratio', '宽高比'],
  'ratio.default': ['Model default', '模型默认'],
  res: ['Resolution', '分辨率'],
  fmt: ['Output format', '输出格式'],
  images: ['Images', '图片'],
  drop: ['Drop images here, paste, or click to choose', '拖放、粘贴图片，或点击选择'],
  'img.hint': ['{types}, up to {mb} MB each; {range}.', '{types}，每张不超过 {mb} MB；{range}。'],
  or: [' or ', ' 或 '],
  sep: [', ', '、'],
  textonly: ['This model generates from text only.', '此模型仅根据文字生成图像。'],
  'm.text': ['text only', '仅文字'],
  'm.imgs': ['{min}–{max} images', '{min}–{max} 张图片'],
  'm.chars': ['up to {n} characters', '最多 {n} 个字符'],
  'm.loading': ['Loading the models and prices…', '正在加载模型和价格…'],
  'm.failed': ['Could not load the models and prices from the server; retrying in {s} s…', '无法从服务器加载模型和价格，{s} 秒后重试…'],
  'm.offline': ['You are offline; the models and prices load when the connection is back.', '网络已断开，恢复后将加载模型和价格。'],
  'm.retry': ['Try again now', '立即重试'],
  remove: ['Remove image {n}', '移除图片 {n}'],
  generate: ['Generate · {n} credits', '生成 · {n} 积分'],
  sending: ['Sending…', '发送中…'],
  watch: ['Progress', '进度'],
  'watch.empty': ['Generate an image or pick one from your history.', '生成一张图像，或从历史记录中选择。'],
  'st.queued': ['Queued', '排队中'],
  'st.submitted': ['Submitted', '已提交'],
  'st.generating': ['Generating', '生成中'],
  'st.succeeded': ['Done', '完成'],
  'st.failed': ['Failed', '失败'],
  elapsed: ['Elapsed {t}', '已用时 {t}'],
  download: ['Download', '下载'],
  open: ['Open in new tab', '在新标签页打开'],
  history: ['History', '历史记录'],
  more: ['Load more', '加载更多'],
  'hist.empty': ['No images yet.', '还没有图像。'],
  retrying: ['Connection problem; retrying in {s} s…', '连接出现问题，{s} 秒后重试…'],
  offline: ['You are offline; waiting for the connection…', '网络已断开，正在等待恢复…'],
  'v.prompt': ['Write a prompt describing the image.', '请输入描述图像的提示词。'],
  'v.long': ['The prompt has {n} characters; {model} accepts at most {max}.', '提示词有 {n} 个字符；{model} 最多接受 {max} 个。'],
  'v.type': ['“{name}” is not a {types} image.', '“{name}” 不是 {types} 图片。'],
  'v.size': ['“{name}” is {size} MB; the limit is {max} MB.', '“{name}” 大小为 {size} MB，上限为 {max} MB。'],
  'v.count': ['{model} takes at most {max} image(s).', '{model} 最多接受 {max} 张图片。'],
  'v.min': ['{model} needs at least {min} image(s).', '{model} 至少需要 {min} 张图片。'],
  'v.total': ['The images together are over {max} MB.', '图片总大小超过 {max} MB。'],
  'e.network': ['Could not reach the server. Check your connection and try again.', '无法连接服务器。请检查网络后重试。'],
  'e.invalid_json': ['The server could not read the request. Reload the page and try again.', '服务器无法读取该请求。请刷新页面后重试。'],
  'e.invalid_request': ['The request was not in the expected form. Reload the page and try again.', '请求格式不正确。请刷新页面后重试。'],
  'e.unauthorized': ['This API key is not valid (it may have been replaced). Sign in with a current key.', 'API 密钥无效（可能已被更换）。请使用当前有效的密钥登录。'],
  'e.session': ['Your session has ended. Please sign in again.', '登录已过期，请重新登录。'],
  'e.insufficient_credits': ['Not enough credits: this needs {needed}, you have {balance}.', '积分不足：需要 {needed} 积分，您只有 {balance} 积分。'],
  'e.forbidden': ['This key is not allowed to do that.', '此密钥无权执行该操作。'],
  'e.not_found': ['Not found: the task does not exist or is not yours.', '未找到：该任务不存在或不属于您。'],
  'e.method_not_allowed': ['The server does not accept this kind of request here.', '服务器在此处不接受这种请求。'],
  'e.idempotency_conflict': ['This request clashes with an earlier one. Click Generate again to send it as a new request.', '此请求与之前的请求冲突。请再次点击“生成”，作为新请求发送。'],
  'e.payload_too_large': ['The upload is too large{max}.', '上传内容过大{max}。'],
  'e.max': [' (limit {n} MB per image)', '（每张图片上限 {n} MB）'],
  'e.unsupported_media_type': ['Only JPEG, PNG and WebP images are accepted.', '仅接受 JPEG、PNG 和 WebP 图片。'],
  'e.validation_failed': ['Check “{field}”: the chosen model does not accept this value.', '请检查“{field}”：所选模型不接受该值。'],
  allowed: [' Allowed: {list}.', '可选值：{list}。'],
  'e.rate_limited': ['Too many requests right now; please wait a moment and try again.', '请求过于频繁，请稍候再试。'],
  'e.upstream_error': ['The image service refused the task. Your credits were returned.', '图像服务拒绝了该任务。积分已退还。'],
  'e.config_error': ['The service is not set up correctly. Please tell its operator.', '服务配置有误。请联系服务管理员。'],
  'e.upstream_unavailable': ['The image service is unavailable right now. Try again in a few minutes.', '图像服务暂时不可用。请几分钟后重试。'],
  'e.internal_error': ['Something went wrong on our side. Please try again.', '服务器内部出错。请重试。'],
  'e.bad_key': ['An API key starts with nbk_.', 'API 密钥以 nbk_ 开头。'],
  'e.retry_in': [' Try again in {s} s.', '请在 {s} 秒后重试。'],
  'x.content_policy': ['The model refused this request under its content policy. Try rewording the prompt or using other images. Your credits were returned.', '模型依据内容政策拒绝了此请求。请修改提示词或更换图片。积分已退还。'],
  'x.input_unreachable': ['The image service could not download one of your input images. Upload the file again. Your credits were returned.', '图像服务无法下载您的某张输入图片。请重新上传。积分已退还。'],
  'x.input_invalid': ['The image service could not use one of your input images (too large or an unsupported format). Your credits were returned.', '图像服务无法使用您的某张输入图片（过大或格式不支持）。积分已退还。'],
  'x.provider_failed': ['The image service failed to generate this image. Your credits were returned; please try again.', '图像服务未能生成此图像。积分已退还，请重试。'],
  'x.provider_timeout': ['The image service did not finish in time. Your credits were returned; please try again.', '图像服务未能按时完成。积分已退还，请重试。'],
  'x.submission_failed': ['We could not hand this task to the image service. Your credits were returned; please try again.', '无法将任务提交给图像服务。积分已退还，请重试。'],
  'x.result_invalid': ['The image service returned no usable image. Your credits were returned; please try again.', '图像服务没有返回可用的图像。积分已退还，请重试。'],
};
const FIELD = { prompt: 'prompt', model: 'model', image: 'images', images: 'images', aspect_ratio: 'ratio', resolution: 'res', output_format: 'fmt' };

// ---- storage -------------------------------------------------------------
const ls = (k, v) => {
  try {
    if (v === undefined) return localStorage.getItem(k);
    if (v === null) localStorage.removeItem(k); else localStorage.setItem(k, v);
  } catch { /* storage unavailable */ }
  return null;
};

// ---- state ---------------------------------------------------------------
const pickLang = (s) => (String(s || '').toLowerCase().startsWith('zh') ? 'zh' : 'en');
let lang = pickLang(ls('nb.lang') || navigator.language || (navigator.languages || [])[0]);
// mode: 'key' (an API key kept in this browser) or 'session' (the sign-in cookie).
let key = null, mode = null, me = null, files = [], intent = null, sending = false;
let watchTask = null, pollTimer = 0, tickTimer = 0, pollFails = 0, pollSeq = 0, shownKey = '';
let hist = [], cursor = null, histLoaded = false;
let lastErr = null, notice = null, imgErrs = [], formErr = null;
let modelsFails = 0, modelsTimer = 0, modelsBusy = false, modelsRetryS = 0, optsFor = null;

const t = (k, v) => {
  if (k === 'credits' && v && v.n === 1) k = 'credit1';
  let s = T[k] ? T[k][lang === 'zh' ? 1 : 0] : k;
  if (v) s = s.replace(/\{(\w+)\}/g, (m, n) => (v[n] ?? m));
  return s;
};
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat()) if (c != null) el.append(c);
  return el;
}
const show = (el, on) => { (typeof el === 'string' ? $(el) : el).hidden = !on; };
// The chosen model; undefined until the table has loaded.
const model = () => MODELS.find((m) => m.name === $('model').value) || MODELS[0];
// 'image/webp' → WebP; a list as "A, B or C".
const typeName = (s) => { const n = s.replace(/^image\//, ''); return n === 'webp' ? 'WebP' : n.toUpperCase(); };
const orList = (a) => (a.length > 1 ? a.slice(0, -1).join(t('sep')) + t('or') + a[a.length - 1] : a.join(''));
const typesText = (m) => orList(m.types.map(typeName));
const chars = (s) => [...s].length;
const terminal = (s) => s === 'succeeded' || s === 'failed';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const newKey = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
const mb = (n) => (n / MB).toFixed(n < MB ? 2 : 1).replace(/\.0+$/, '');

// ---- HTTP ----------------------------------------------------------------
async function api(path, opts = {}) {
  const headers = { ...(key ? { Authorization: 'Bearer ' + key } : {}), ...(opts.headers || {}) };
  let res;
  try {
    res = await fetch(path, { method: opts.method || 'GET', headers, body: opts.body, cache: 'no-store' });
  } catch {
    if (window.reportApiFailure) window.reportApiFailure(opts.method || 'GET', path, 0);
    throw Object.assign(new Error('network'), { net: true });
  }
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (res.ok && body) return { status: res.status, body };
  const e = (body && body.error) || null;
  const err = new Error(e ? e.code : 'http ' + res.status);
  err.status = res.status;
  err.api = e || { code: res.status === 429 ? 'rate_limited' : res.status >= 500 ? 'internal_error' : 'invalid_request' };
  if (!err.api.request_id) err.api.request_id = res.headers.get('X-Request-Id');
  if (res.status >= 500 && window.reportApiFailure) window.reportApiFailure(opts.method || 'GET', path, res.status, err.api.request_id, err.api.code);
  err.retryAfter = Number(res.headers.get('Retry-After')) || 0;
  err.net = !e && res.status >= 500;
  throw err;
}
const retryable = (e) => e.net || e.status === 429 || !!(e.api && e.api.retryable);

// Retries network loss, 429 and retryable errors with backoff (honouring Retry-After).
async function withRetry(fn, tries = 6) {
  for (let i = 0; ; i++) {
    try {
      const r = await fn();
      setNotice(null);
      return r;
    } catch (e) {
      if (!retryable(e) || i >= tries - 1) { setNotice(null); throw e; }
      await backoff(e, i);
    }
  }
}
async function backoff(e, i) {
  const ms = e.retryAfter ? e.retryAfter * 1000 : Math.min(30000, 1000 * 2 ** i) + Math.random() * 500;
  if (!navigator.onLine) {
    setNotice({ k: 'offline' });
    await new Promise((r) => { addEventListener('online', r, { once: true }); setTimeout(r, 60000); });
    return;
  }
  setNotice({ k: 'retrying', v: { s: Math.ceil(ms / 1000) } });
  await sleep(ms);
}

// ---- messages ------------------------------------------------------------
function errText(e) {
  if (e.net && !e.api) return t('e.network');
  const a = e.api, d = a.details || {};
  switch (a.code) {
    case 'insufficient_credits':
      if (d.needed != null) return t('e.insufficient_credits', { needed: d.needed, balance: d.balance ?? 0 });
      break;
    case 'validation_failed': {
      const f = d.field ? (FIELD[d.field] ? t(FIELD[d.field]) : d.field) : t('prompt');
      let s = t('e.validation_failed', { field: f });
      if (Array.isArray(d.allowed) && d.allowed.length) s += t('allowed', { list: d.allowed.join(', ') });
      return s;
    }
    case 'payload_too_large':
      return t('e.payload_too_large', { max: d.max_bytes && d.field === 'image' ? t('e.max', { n: mb(d.max_bytes) }) : '' });
    case 'rate_limited':
      return t('e.rate_limited') + (e.retryAfter ? t('e.retry_in', { s: e.retryAfter }) : '');
  }
  if (a.code === 'unauthorized' && mode === 'session') return t('e.session');
  return T['e.' + a.code] ? t('e.' + a.code) : (a.message || t('e.internal_error'));
}
const taskErrText = (err) => (!err ? '' : lang === 'en' && err.message ? err.message : T['x.' + err.code] ? t('x.' + err.code) : err.message || err.code);

function showErr(e) { lastErr = e; renderErr(); }
function renderErr() {
  const e = lastErr;
  show('alert', !!e);
  if (!e) return;
  $('alert-msg').textContent = errText(e);
  const rid = e.api && e.api.request_id;
  $('alert-rid').textContent = rid || '';
  show('alert-rid-row', !!rid);
}
function setNotice(n) {
  notice = n;
  show('notice', !!n);
  $('notice').textContent = n ? t(n.k, n.v) : '';
}
function renderInline() {
  show('img-err', imgErrs.length > 0);
  const m = model();
  $('img-err').textContent = imgErrs.map(([k, v]) => t(k, { types: m && typesText(m), ...v })).join(' ');
  show('form-err', !!formErr);
  $('form-err').textContent = formErr ? t(formErr[0], formErr[1]) : '';
}

// ---- language ------------------------------------------------------------
function applyLang() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-ph]')) el.placeholder = t(el.dataset.i18nPh);
  const other = lang === 'zh' ? 'en' : 'zh';
  $('lang').textContent = other === 'zh' ? '中文' : 'English';
  $('lang').lang = other;
  renderModels();
  renderUser();
  renderErr();
  setNotice(notice);
  renderInline();
  renderThumbs();
  shownKey = '';
  renderWatch();
  renderHistory();
}

// ---- account -------------------------------------------------------------
function renderUser() {
  show('who', !!me);
  if (!me) return;
  $('user-name').textContent = me.name;
  $('credits').textContent = t('credits', { n: me.credits });
}
async function refreshMe() {
  try {
    me = (await api('/api/me')).body.user;
    renderUser();
  } catch (e) {
    if (e.api && e.api.code === 'unauthorized') { signOut(); showErr(e); }
  }
}
async function signIn(k, fromStorage) {
  key = k;
  mode = 'key';
  $('signin-form').querySelector('button').disabled = true;
  try {
    me = (await withRetry(() => api('/api/me'))).body.user;
    ls('nb.key', k);
    $('key').value = '';
    lastErr = null;
    renderErr();
    show('signin', false);
    show('app', true);
    renderUser();
    resume();
  } catch (e) {
    key = mode = null;
    if (fromStorage && e.api && e.api.code === 'unauthorized') ls('nb.key', null);
    showErr(e);
    show('signin', true);
  } finally {
    $('signin-form').querySelector('button').disabled = false;
  }
}
function signOut() {
  key = mode = me = watchTask = null;
  $('acct').open = false;
  $('keys').replaceChildren();
  show('key-new', false);
  for (const k of ['nb.key', 'nb.task', 'nb.pending', 'nb.draft']) ls(k, null);
  $('prompt').value = '';
  renderCount();
  clearTimeout(pollTimer);
  clearInterval(tickTimer);
  hist = []; cursor = null; histLoaded = false;
  for (const f of files) URL.revokeObjectURL(f.url);
  files = []; intent = null; imgErrs = []; formErr = null;
  lastErr = null;
  setNotice(null);
  show('app', false);
  show('signin', true);
  renderUser(); renderErr(); renderThumbs(); renderInline(); renderWatch(); renderHistory();
  $('key').focus();
}

// Signed in by the session cookie (after the provider sent the browser back).
async function startSession() {
  try {
    me = (await withRetry(() => api('/api/me'))).body.user;
    mode = 'session';
    show('signin', false);
    show('app', true);
    renderUser();
    resume();
  } catch (e) {
    show('signin', true);
    if (!(e.api && e.api.code === 'unauthorized')) showErr(e);
  }
}
// The Sign out button: a session is ended on the server too.
async function leave() {
  if (mode === 'session') {
    try { await api('/auth/logout', { method: 'POST' }); } catch { /* the cookie is cleared below anyway */ }
  }
  signOut();
}
async function leaveEverywhere() {
  try { await api('/api/me/sessions', { method: 'DELETE' }); } catch (e) { showErr(e); return; }
  signOut();
}
// What the server says about signing in: the provider button, a waiting sign-up, a live session.
// `decide`: no key is stored, so the status also decides what the page shows.
async function authStatus(decide) {
  let st = null;
  try {
    const res = await fetch('/auth/status', { cache: 'no-store' });
    if (res.ok) st = await res.json();
  } catch { /* offline: the API-key form still works */ }
  if (st && st.oidc) {
    $('oidc-btn').textContent = t('signin.with', { p: st.oidc.provider });
    $('oidc-btn').href = st.oidc.login_url;
    show('oidc', true);
  }
  if (!decide) return;
  if (st && st.signup && st.turnstile_site_key) return humanCheck(st);
  if (st && st.signed_in) return startSession();
  show('signin', true);
}
// A new person passes Turnstile before the account is made.
function humanCheck(st) {
  show('signin', false);
  show('signup', true);
  $('signup-who').textContent = t('signup.who', { name: st.signup.name });
  const failed = () => { $('signup-err').textContent = t('signup.unavailable'); show('signup-err', true); };
  const s = h('script', { src: 'https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit' });
  s.addEventListener('error', failed);
  s.addEventListener('load', () => {
    if (!window.turnstile) return failed();
    window.turnstile.render('#turnstile', { sitekey: st.turnstile_site_key, action: 'signup', callback: finishSignup, 'error-callback': failed });
  });
  document.head.append(s);
}
async function finishSignup(token) {
  try {
    await api('/auth/signup', { method: 'POST', body: JSON.stringify({ turnstile_token: token }), headers: { 'Content-Type': 'application/json' } });
  } catch (e) {
    showErr(e);
    if (window.turnstile) window.turnstile.reset('#turnstile');
    return;
  }
  show('signup', false);
  history.replaceState(null, '', '/');
  startSession();
}

// ---- account menu: keys --------------------------------------------------
async function loadKeys() {
  try {
    const list = (await api('/api/me/keys')).body.keys;
    $('keys').replaceChildren(...(list.length ? list.map((k) => h('li', { 'data-testid': 'key-item', 'data-key-id': k.id },
      h('span', { class: 'kn', text: k.name }), k.hint ? h('code', { text: k.hint }) : null,
      h('button', { type: 'button', class: 'ghost', 'data-testid': 'key-revoke', text: t('keys.revoke'), onclick: () => revokeKey(k.id) })))
      : [h('li', { class: 'hint', text: t('keys.none') })]));
  } catch (e) { showErr(e); }
}
async function createKey(ev) {
  ev.preventDefault();
  try {
    const r = await api('/api/me/keys', { method: 'POST', body: JSON.stringify({ name: $('key-name').value.trim() || undefined }), headers: { 'Content-Type': 'application/json' } });
    $('key-new-value').textContent = r.body.api_key;
    show('key-new', true);
    $('key-name').value = '';
    loadKeys();
  } catch (e) { showErr(e); }
}
async function revokeKey(id) {
  try { await api('/api/me/keys/' + encodeURIComponent(id), { method: 'DELETE' }); } catch (e) { showErr(e); }
  show('key-new', false);
  loadKeys();
}

// ---- create form ---------------------------------------------------------
// An empty value is the model's own default ("Model default").
function fill(sel, values, keep, def) {
  sel.replaceChildren(...values.map((v) => h('option', { value: v, text: v || t('ratio.default') })));
  sel.value = values.includes(keep) ? keep : def;
}
function renderModels() {
  const ready = MODELS.length > 0;
  show('create', ready);
  show('models-wait', !ready);
  if (!ready) { renderModelsWait(); return; }
  const sel = $('model'), cur = sel.value || draft().model;
  sel.replaceChildren(...MODELS.map((m) => h('option', { value: m.name, text: `${m.name} — ${t('credits', { n: m.price })}` })));
  sel.value = MODELS.some((m) => m.name === cur) ? cur : MODELS[0].name;
  renderOptions();
}
function renderModelsWait() {
  const failed = modelsFails > 0 && !modelsBusy;
  $('models-msg').textContent = !failed ? t('m.loading') : navigator.onLine ? t('m.failed', { s: modelsRetryS }) : t('m.offline');
  show('models-bar', !failed);
  show('models-retry', failed);
}
function renderOptions() {
  const m = model(), d = draft(), prev = optsFor;
  optsFor = m;
  // First fill: the draft's values. Another model: the values chosen, but not
  // one that was only the previous model's default.
  const keep = (id, prevDef) => (!$(id).options.length ? d[id] : prev !== m && $(id).value === prevDef ? null : $(id).value);
  fill($('ratio'), m.ratio == null ? ['', ...m.ratios] : m.ratios, keep('ratio', prev && (prev.ratio ?? '')), m.ratio ?? '');
  fill($('res'), m.res, keep('res', prev && prev.res[0]), m.res[0]);
  fill($('fmt'), m.fmts, keep('fmt', prev && prev.fmt), m.fmt);
  $('file').accept = m.types.join(',');
  show('f-res', m.res.length > 0);
  show('f-images', m.max > 0);
  show('textonly', m.max === 0);
  const range = m.max === 0 ? t('m.text') : t('m.imgs', { min: m.min, max: m.max });
  $('model-hint').textContent = `${range} · ${t('m.chars', { n: m.chars })}`;
  $('img-hint').textContent = t('img.hint', { types: typesText(m), mb: mb(m.bytes), range });
  renderCount();
  renderGo();
}
function renderCount() {
  const m = model(), n = chars($('prompt').value.trim());
  if (!m) return;
  $('count').textContent = `${n} / ${m.chars}`;
  $('count').classList.toggle('over', n > m.chars);
}
function renderGo() {
  const b = $('go');
  const m = model();
  b.disabled = sending || !m;
  b.textContent = sending ? t('sending') : m ? t('generate', { n: m.price }) : t('m.loading');
}
function draft() {
  try { return JSON.parse(ls('nb.draft') || '{}') || {}; } catch { return {}; }
}
function saveDraft() {
  ls('nb.draft', JSON.stringify({ model: $('model').value, prompt: $('prompt').value, ratio: $('ratio').value, res: $('res').value, fmt: $('fmt').value }));
}

// Images: checked by magic bytes, size and count, like the server does.
async function sniff(file) {
  const b = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const at = (i, s) => [...s].every((c, j) => b[i + j] === c.charCodeAt(0));
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b[0] === 0x89 && at(1, 'PNG\r\n\x1a\n')) return 'png';
  if (at(0, 'RIFF') && at(8, 'WEBP')) return 'webp';
  return null;
}
async function addFiles(list) {
  const m = model(), errs = [];
  if (!m) return;
  formErr = null;
  for (const f of Array.from(list || [])) {
    if (files.length >= m.max) { errs.push(['v.count', { model: m.name, max: m.max }]); break; }
    let kind = null;
    try { kind = await sniff(f); } catch { /* unreadable */ }
    if (!kind || !m.types.includes('image/' + kind)) { errs.push(['v.type', { name: f.name }]); continue; }
    if (f.size > m.bytes) { errs.push(['v.size', { name: f.name, size: mb(f.size), max: mb(m.bytes) }]); continue; }
    files.push({ file: f, url: URL.createObjectURL(f), id: [f.name, f.size, f.lastModified].join(':') });
  }
  imgErrs = errs;
  renderThumbs();
  renderInline();
}
function removeFile(i) {
  const [f] = files.splice(i, 1);
  if (f) URL.revokeObjectURL(f.url);
  imgErrs = [];
  renderThumbs();
  renderInline();
  $('drop').focus();
}
function renderThumbs() {
  $('thumbs').replaceChildren(...files.map((f, i) => h('li', { 'data-testid': 'preview' },
    h('img', { src: f.url, alt: f.file.name }),
    h('button', { type: 'button', class: 'x', 'aria-label': t('remove', { n: i + 1 }), title: t('remove', { n: i + 1 }), onclick: () => removeFile(i), text: '×' }))));
}

function check(m, prompt, sendFiles) {
  const n = chars(prompt);
  if (!n) return ['v.prompt'];
  if (n > m.chars) return ['v.long', { n, model: m.name, max: m.chars }];
  if (sendFiles.length < m.min) return ['v.min', { model: m.name, min: m.min }];
  if (sendFiles.length > m.max) return ['v.count', { model: m.name, max: m.max }];
  const big = sendFiles.find((f) => f.file.size > m.bytes);
  if (big) return ['v.size', { name: big.file.name, size: mb(big.file.size), max: mb(m.bytes) }];
  if (sendFiles.reduce((s, f) => s + f.file.size, 0) > BODY_LIMIT - MB) return ['v.total', { max: mb(BODY_LIMIT) }];
  return null;
}

async function generate(ev) {
  ev.preventDefault();
  if (sending || !me || !model()) return;
  const m = model(), prompt = $('prompt').value.trim();
  const sendFiles = m.max ? files : [];
  formErr = check(m, prompt, sendFiles);
  renderInline();
  if (formErr) { (formErr[0] === 'v.prompt' || formErr[0] === 'v.long' ? $('prompt') : $('drop')).focus(); return; }
  lastErr = null;
  renderErr();
  const fields = { prompt, model: m.name, aspect_ratio: $('ratio').value, resolution: m.res.length ? $('res').value : '', output_format: $('fmt').value };
  // One Idempotency-Key per generate intent: reused while the request is the same and not yet accepted.
  const fp = JSON.stringify([fields, sendFiles.map((f) => f.id)]);
  if (!intent || intent.fp !== fp) intent = { fp, key: newKey() };
  const idem = intent.key;
  sending = true;
  renderGo();
  ls('nb.pending', String(Date.now()));
  try {
    const r = await withRetry(() => {
      const fd = new FormData();
      for (const [k, v] of Object.entries(fields)) if (v) fd.append(k, v);
      for (const f of sendFiles) fd.append('image', f.file, f.file.name);
      return api('/api/create/ai-image', { method: 'POST', body: fd, headers: { 'Idempotency-Key': idem } });
    }, 5);
    intent = null;
    upsert(r.body.task);
    watch(r.body.task);
    refreshMe();
  } catch (e) {
    const code = e.api && e.api.code, d = (e.api && e.api.details) || {};
    if (code === 'idempotency_conflict' || code === 'upstream_error') intent = null;
    if (code === 'upstream_error' && d.task) { upsert(d.task); watch(d.task); }
    if (code === 'insufficient_credits' && me && d.balance != null) { me.credits = d.balance; renderUser(); }
    if (code === 'unauthorized') signOut();
    showErr(e);
  } finally {
    sending = false;
    ls('nb.pending', null);
    renderGo();
  }
}

// ---- watch ---------------------------------------------------------------
const STEPS = ['queued', 'submitted', 'generating', 'succeeded'];
function watch(task, now) {
  watchTask = task;
  pollSeq++;
  clearTimeout(pollTimer);
  clearInterval(tickTimer);
  pollFails = 0;
  if (terminal(task.state)) {
    if (ls('nb.task') === task.id) ls('nb.task', null);
  } else {
    ls('nb.task', task.id);
    pollTimer = setTimeout(poll, now ? 0 : POLL_MS);
    tickTimer = setInterval(renderElapsed, 1000);
  }
  renderWatch();
  renderHistory();
}
async function poll() {
  const task = watchTask, seq = ++pollSeq;
  clearTimeout(pollTimer);
  if (!task || !me) return;
  try {
    const fresh = (await api('/api/tasks/' + encodeURIComponent(task.id))).body.task;
    if (watchTask !== task || seq !== pollSeq) return;
    pollFails = 0;
    setNotice(null);
    upsert(fresh);
    watchTask = fresh;
    if (terminal(fresh.state)) {
      ls('nb.task', null);
      clearInterval(tickTimer);
      refreshMe();
    } else {
      pollTimer = setTimeout(poll, POLL_MS);
    }
    renderWatch();
  } catch (e) {
    if (watchTask !== task || seq !== pollSeq) return;
    if (retryable(e)) {
      const ms = e.retryAfter ? e.retryAfter * 1000 : Math.min(30000, POLL_MS * 2 ** ++pollFails);
      setNotice(navigator.onLine ? { k: 'retrying', v: { s: Math.ceil(ms / 1000) } } : { k: 'offline' });
      pollTimer = setTimeout(poll, ms);
      return;
    }
    ls('nb.task', null);
    clearInterval(tickTimer);
    if (e.api && e.api.code === 'unauthorized') signOut();
    else { watchTask = null; renderWatch(); }
    showErr(e);
  }
}
function fmtDur(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
function renderElapsed() {
  const w = watchTask;
  if (!w) return;
  const start = Date.parse(w.created_at), end = w.completed_at ? Date.parse(w.completed_at) : Date.now();
  $('elapsed').textContent = t('elapsed', { t: fmtDur(end - start) });
}
function renderWatch() {
  const w = watchTask;
  show('watch', !!w);
  show('watch-empty', !w);
  if (!w) { shownKey = ''; return; }
  const done = terminal(w.state), idx = done ? 3 : Math.max(0, STEPS.indexOf(w.state));
  $('steps').replaceChildren(...STEPS.map((s, i) => {
    const label = i === 3 && w.state === 'failed' ? t('st.failed') : t('st.' + s);
    const cls = i < idx || (i === 3 && w.state === 'succeeded') ? 'done' : i === idx ? (w.state === 'failed' ? 'fail' : 'cur') : '';
    return h('li', { class: cls, 'aria-current': i === idx ? 'step' : null }, h('span', { class: 'dot', 'aria-hidden': 'true', text: String(i + 1) }), ' ', label);
  }));
  show('bar', !done);
  $('state').textContent = t('st.' + w.state);
  $('state').className = 's-' + w.state;
  $('watch').dataset.state = w.state;
  $('watch').dataset.taskId = w.id;
  renderElapsed();
  $('w-prompt').textContent = w.prompt;
  $('w-meta').textContent = [w.model, w.aspect_ratio, w.resolution, w.output_format, t('credits', { n: w.credits }), w.id].filter(Boolean).join(' · ');
  show('w-err', w.state === 'failed');
  $('w-err').textContent = w.state === 'failed' ? taskErrText(w.error) : '';
  const k = w.id + w.state + lang;
  if (k === shownKey) return;
  shownKey = k;
  const ext = w.output_format === 'jpeg' ? 'jpg' : w.output_format || 'png';
  $('results').replaceChildren(...(w.results || []).map((r, i) => h('figure', { class: 'result' },
    h('a', { href: r.url, target: '_blank', rel: 'noopener' }, h('img', { src: r.url, alt: w.prompt, 'data-testid': 'result-image' })),
    h('figcaption', null,
      h('a', { class: 'btn', href: r.url, download: `${w.id}${i ? '-' + (i + 1) : ''}.${ext}`, 'data-testid': 'download', text: t('download') }),
      h('a', { class: 'btn ghost', href: r.url, target: '_blank', rel: 'noopener', 'data-testid': 'open', text: t('open') })))));
}

// ---- history -------------------------------------------------------------
const newest = (a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : a.id < b.id ? 1 : -1);
function upsert(task) {
  const i = hist.findIndex((x) => x.id === task.id);
  if (i < 0) hist.push(task);
  else if (hist[i].state !== task.state) hist[i] = task;
  else return;
  hist.sort(newest);
  renderHistory();
}
async function loadHistory() {
  $('more').disabled = true;
  try {
    const r = await withRetry(() => api('/api/tasks?limit=12' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '')));
    cursor = r.body.next_cursor || null;
    histLoaded = true;
    for (const task of r.body.tasks) {
      if (!hist.some((x) => x.id === task.id)) hist.push(task);
    }
    hist.sort(newest);
    renderHistory();
    return r.body.tasks;
  } catch (e) {
    if (e.api && e.api.code === 'unauthorized') signOut();
    showErr(e);
    return [];
  } finally {
    $('more').disabled = false;
  }
}
function renderHistory() {
  const loc = lang === 'zh' ? 'zh-CN' : 'en';
  show('hist-empty', histLoaded && !hist.length);
  show('more', !!cursor);
  $('gallery').replaceChildren(...hist.map((task) => {
    const r = task.results && task.results[0];
    const date = new Date(task.created_at).toLocaleString(loc, { dateStyle: 'medium', timeStyle: 'short' });
    return h('li', null, h('button', {
      type: 'button', class: 'tile', 'data-testid': 'history-item', 'data-task-id': task.id, 'data-state': task.state,
      'aria-current': watchTask && watchTask.id === task.id ? 'true' : null,
      onclick: () => { watch(task, true); $('h-watch').scrollIntoView({ block: 'nearest' }); },
    },
    h('span', { class: 'thumb' }, r ? h('img', { src: r.url, alt: task.prompt, loading: 'lazy' }) : null),
    h('span', { class: 'badge s-' + task.state, text: t('st.' + task.state) }),
    h('span', { class: 'p', text: task.prompt }),
    h('span', { class: 'm', text: `${task.model} · ${date}` }),
    task.state === 'failed' ? h('span', { class: 'err', text: taskErrText(task.error) }) : null));
  }));
}

// ---- resume after reload ---------------------------------------------------
async function resume() {
  const running = ls('nb.task'), pending = Number(ls('nb.pending')) || 0;
  const tasks = await loadHistory();
  if (running) {
    try {
      const task = (await withRetry(() => api('/api/tasks/' + encodeURIComponent(running)))).body.task;
      upsert(task);
      watch(task);
    } catch (e) {
      ls('nb.task', null);
      if (!(e.api && e.api.code === 'not_found')) showErr(e);
    }
  } else if (pending) {
    // The page was closed while a create was on its way: pick up the task it made, if any.
    ls('nb.pending', null);
    const t0 = tasks[0];
    if (t0 && Date.parse(t0.created_at) >= pending - 60000) watch(t0);
  }
}

// The create form renders only from the deployment's own table: it waits until
// the table loads, and a failed load is retried with backoff.
async function loadModels() {
  if (modelsBusy || MODELS.length) return;
  clearTimeout(modelsTimer);
  modelsBusy = true;
  renderModelsWait();
  let list = null, body = null;
  try {
    const res = await fetch('/api/models').catch((e) => {
      if (window.reportApiFailure) window.reportApiFailure('GET', '/api/models', 0);
      throw e;
    });
    if (!res.ok && res.status >= 500 && window.reportApiFailure) window.reportApiFailure('GET', '/api/models', res.status, res.headers.get('X-Request-Id'));
    if (!res.ok) throw new Error('http ' + res.status);
    body = await res.json();
    list = body.models.map((m) => ({
      name: m.name, price: m.price, chars: m.max_prompt_chars, min: m.min_images, max: m.max_images, bytes: m.max_image_bytes,
      ratios: m.aspect_ratios, ratio: m.default_aspect_ratio, res: m.resolutions, fmts: m.output_formats, fmt: m.default_output_format,
      types: m.image_types,
    }));
  } catch { list = null; }
  modelsBusy = false;
  if (!list || !list.length) {
    const ms = Math.min(30000, 1000 * 2 ** modelsFails++) + Math.random() * 500;
    modelsRetryS = Math.ceil(ms / 1000);
    modelsTimer = setTimeout(loadModels, ms);
    document.body.dataset.models = 'error';
    renderModelsWait();
    return;
  }
  MODELS = list;
  BODY_LIMIT = body.max_body_bytes || Infinity;
  document.body.dataset.models = 'ready';
  renderModels();
}

// ---- wiring --------------------------------------------------------------
function init() {
  const d = draft();
  $('prompt').value = d.prompt || '';
  applyLang();
  $('lang').addEventListener('click', () => {
    lang = lang === 'zh' ? 'en' : 'zh';
    ls('nb.lang', lang);
    applyLang();
  });
  $('alert-close').addEventListener('click', () => { lastErr = null; renderErr(); });
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const k = $('key').value.trim();
    if (!/^nbk_\S+$/.test(k)) { showErr({ api: { code: 'bad_key' } }); $('key').focus(); return; }
    signIn(k);
  });
  $('signout').addEventListener('click', leave);
  $('signout-all').addEventListener('click', leaveEverywhere);
  $('acct').addEventListener('toggle', () => { if ($('acct').open) loadKeys(); else show('key-new', false); });
  $('key-form').addEventListener('submit', createKey);
  $('model').addEventListener('change', () => {
    const m = model();
    formErr = null;
    imgErrs = m.max && files.length > m.max ? [['v.count', { model: m.name, max: m.max }]] : [];
    renderOptions(); renderInline(); saveDraft();
  });
  for (const id of ['ratio', 'res', 'fmt']) $(id).addEventListener('change', saveDraft);
  $('prompt').addEventListener('input', () => { renderCount(); saveDraft(); });
  $('prompt').addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) $('create').requestSubmit(); });
  $('create').addEventListener('submit', generate);
  $('drop').addEventListener('click', () => $('file').click());
  $('file').addEventListener('change', async () => { await addFiles($('file').files); $('file').value = ''; });
  const zone = $('create');
  zone.addEventListener('dragover', (ev) => { if (ev.dataTransfer && [...ev.dataTransfer.types].includes('Files')) { ev.preventDefault(); $('drop').classList.add('over'); } });
  zone.addEventListener('dragleave', (ev) => { if (!zone.contains(ev.relatedTarget)) $('drop').classList.remove('over'); });
  zone.addEventListener('drop', (ev) => { ev.preventDefault(); $('drop').classList.remove('over'); if (model()?.max) addFiles(ev.dataTransfer.files); });
  document.addEventListener('dragover', (ev) => ev.preventDefault());
  document.addEventListener('drop', (ev) => ev.preventDefault());
  document.addEventListener('paste', (ev) => {
    const list = ev.clipboardData && ev.clipboardData.files;
    if (!me || !list || !list.length || !model()?.max) return;
    ev.preventDefault();
    addFiles(list);
  });
  $('more').addEventListener('click', loadHistory);
  $('models-retry').addEventListener('click', loadModels);
  addEventListener('online', () => { loadModels(); if (watchTask && !terminal(watchTask.state)) poll(); });
  const stored = ls('nb.key');
  if (stored) signIn(stored, true);
  authStatus(!stored);
  loadModels();
}
init();
})();
