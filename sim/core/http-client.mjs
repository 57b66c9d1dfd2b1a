// Outbound HTTP: input-image fetches, URL uploads and callback deliveries all go through here.

import http from 'node:http';
import https from 'node:https';
import { MB } from './constants.mjs';

/**
 * Plain http(s) request with an overall deadline, optional redirects and a byte cap.
 * Resolves { status, headers, body, url, redirects, truncated }; rejects on network error / timeout.
 */
export function httpRequest({ method = 'GET', url, headers = {}, body = null, timeoutMs = 10000, maxRedirects = 0, maxBytes = 64 * MB, track }) {
  return new Promise((resolve, reject) => {
    let redirects = 0;
    let done = false;
    let current = null;
    const finish = (err, val) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (track) track.delete(handle);
      if (err) reject(err);
      else resolve(val);
    };
    const handle = {
      abort: (why) => {
        if (current) current.destroy();
        finish(new Error(why || 'aborted'));
      },
    };
    if (track) track.add(handle);
    const timer = setTimeout(() => handle.abort('timeout'), timeoutMs);
    const go = (target, m, b) => {
      let u;
      try {
        u = new URL(target);
      } catch {
        return finish(new Error(`invalid URL: ${target}`));
      }
      const lib = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null;
      if (!lib) return finish(new Error(`unsupported protocol ${u.protocol}`));
      const h = { ...headers };
      if (b) h['Content-Length'] = Buffer.byteLength(b);
      const req = lib.request(u, { method: m, headers: h, agent: false }, (res) => {
        const status = res.statusCode;
        if ([301, 302, 303, 307, 308].includes(status) && res.headers.location && redirects < maxRedirects) {
          res.resume();
          redirects++;
          const next = new URL(res.headers.location, u).href;
          const keep = status === 307 || status === 308;
          return go(next, keep ? m : 'GET', keep ? b : null);
        }
        const chunks = [];
        let size = 0;
        let truncated = false;
        res.on('data', (c) => {
          if (truncated) return;
          size += c.length;
          if (size > maxBytes) {
            truncated = true;
            chunks.push(c.subarray(0, Math.max(0, c.length - (size - maxBytes))));
            res.destroy();
            finish(null, { status, headers: res.headers, body: Buffer.concat(chunks), url: u.href, redirects, truncated: true });
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => finish(null, { status, headers: res.headers, body: Buffer.concat(chunks), url: u.href, redirects, truncated }));
        res.on('error', (e) => finish(e));
        res.on('aborted', () => finish(new Error('response aborted')));
      });
      current = req;
      req.on('error', (e) => finish(e));
      if (b) req.write(b);
      req.end();
    };
    go(url, method, body);
  });
}
