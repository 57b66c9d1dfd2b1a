// Where a Worker isolate's time goes: a V8 CPU profile taken through workerd's
// inspector while requests run, summed per kind of code. Used by
// `node scripts/bench.mjs --profile` for ours and the JavaScript reference.
// Function names of our wasm need a build that keeps them:
//   PROFILE_NAMES=1 FORCE_BUILD=1 bash scripts/build.sh

export const SAMPLING_US = 50;

/** The kinds, in the order the benchmark prints them, with a short column name. */
export const KINDS = [
  ['wasm', 'wasm'],
  ['wasm-bindgen glue (JS)', 'glue'],
  ["the Worker's JS", 'JS code'],
  ['runtime JS: D1 client', 'D1 JS'],
  ['runtime JS: other', 'rt JS'],
  ['builtins (Response, Headers, crypto, text…)', 'builtins'],
  ['native (workerd, outside JS)', 'native'],
  ['gc', 'gc'],
];

/** A Chrome DevTools Protocol session with the stack's Worker isolate. */
async function inspect(port) {
  const { default: WebSocket } = await import('ws'); // miniflare's own dependency
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets.find((t) => String(t.title).includes('core:user:banana-worker'));
  if (!target) throw new Error(`no inspector target for the Worker among: ${targets.map((t) => t.title).join(', ')}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let id = 0;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data);
    const done = pending.get(msg.id);
    if (!done) return;
    pending.delete(msg.id);
    if (msg.error) done.reject(new Error(`${msg.error.message} (inspector)`));
    else done.resolve(msg.result);
  });
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      pending.set(++id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: SAMPLING_US });
  return { send, close: () => ws.close() };
}

/** What kind of code a profile node is, from its call frame. */
function kindOf({ functionName: fn, url }) {
  if (fn === '(idle)') return null;
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(program)') return 'native (workerd, outside JS)';
  if (url.includes('.wasm') || fn.startsWith('wasm-function') || fn === 'js-to-wasm' || fn === 'wasm-to-js') return 'wasm';
  if (url.endsWith('index.js')) return 'wasm-bindgen glue (JS)';
  if (url.includes('reference-worker')) return "the Worker's JS";
  if (url.startsWith('cloudflare-internal:d1')) return 'runtime JS: D1 client';
  if (url.startsWith('cloudflare-internal:') || url.startsWith('node-internal:')) return 'runtime JS: other';
  return 'builtins (Response, Headers, crypto, text…)';
}

/** Sums a profile's samples per kind and per function, per request. */
export function summarize(profile, requests) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const byKind = {};
  const byFunction = {};
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = nodes.get(profile.samples[i])?.callFrame;
    const us = profile.timeDeltas[i] || 0;
    const kind = frame && kindOf(frame);
    if (!kind) continue;
    byKind[kind] = (byKind[kind] || 0) + us;
    const name = `${frame.functionName || '(anonymous)'} ${frame.url.split('/').pop()}`.trim();
    byFunction[name] = (byFunction[name] || 0) + us;
  }
  const perReq = (us) => Math.round((us / requests / 1000) * 1000) / 1000;
  const sorted = (o) => Object.entries(o).sort((a, b) => b[1] - a[1]);
  const busy = Object.values(byKind).reduce((a, b) => a + b, 0);
  return {
    requests,
    busy_ms_per_req: perReq(busy),
    kinds: Object.fromEntries(sorted(byKind).map(([k, v]) => [k, perReq(v)])),
    top: sorted(byFunction).slice(0, 10).map(([k, v]) => [k.slice(0, 100), perReq(v)]),
    wasm_names: Object.keys(byFunction).some((k) => k.includes('banana_worker::')),
  };
}

/** Profiles `run()` (which sends `requests` requests) in the stack's Worker isolate. */
export async function profileIsolate(stack, requests, run) {
  stack.inspector ??= await inspect(stack.inspectorPort);
  await stack.inspector.send('Profiler.start');
  let profile;
  try {
    await run();
  } finally {
    ({ profile } = await stack.inspector.send('Profiler.stop'));
  }
  return summarize(profile, requests);
}
