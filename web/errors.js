'use strict';
// Reports this page's uncaught errors and failed API calls to the server
// (POST /api/client-errors), where each becomes a `client.error` log line next
// to the server's own. Only an error's message and stack, the page's path and,
// for an API call, its method, path, status, error code and request id are
// sent: never a prompt, a key, a body or a query string.
(() => {
  const MAX_PER_PAGE = 10;
  let sent = 0, stopped = false;
  const seen = new Set();
  const cut = (s, n) => String(s == null ? '' : s).slice(0, n);

  function send(message, stack, requestId) {
    const key = message + '|' + (requestId || '');
    if (stopped || sent >= MAX_PER_PAGE || seen.has(key)) return;
    seen.add(key);
    sent += 1;
    const body = { message: cut(message, 500), url: location.pathname };
    if (stack) body.stack = cut(stack, 1500);
    if (requestId) body.request_id = cut(requestId, 64);
    try {
      fetch('/api/client-errors', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
        keepalive: true, cache: 'no-store', credentials: 'same-origin',
      }).then((r) => { if (r.status === 429) stopped = true; }, () => { /* offline: nothing to do */ });
    } catch { /* the reporter never throws */ }
  }

  addEventListener('error', (e) => {
    if (!e.message && !e.error) return;
    const err = e.error;
    send(e.message || String(err), (err && err.stack) || `${e.filename || ''}:${e.lineno || 0}:${e.colno || 0}`);
  });
  addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    send('Unhandled rejection: ' + (r && r.message ? r.message : cut(r, 200)), r && r.stack);
  });

  /** A failed API call: a network error (status 0) or an answer of 500 or more. */
  window.reportApiFailure = (method, path, status, requestId, code) => {
    const what = status ? 'HTTP ' + status + (code ? ' ' + code : '') : 'network error';
    send(`${method} ${String(path).split(/[?#]/)[0]} failed: ${what}`, '', requestId);
  };
})();
