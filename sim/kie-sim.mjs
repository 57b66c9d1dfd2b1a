// Kie AI simulator: an in-process / standalone HTTP server that behaves like api.kie.ai,
// the Kie upload host and the Kie tempfile CDN, following Kie's documented and observed behaviour (docs.kie.ai).
// Zero dependencies: node built-ins only.
//
//   import { startKieSim } from './sim/kie-sim.mjs';
//   const sim = await startKieSim({ port: 0, apiKey: 'sim-key', hmacKey: null, credits: 10000, stepMs: 150 });
//   sim.url; sim.state; await sim.close();
//
// CLI: node sim/kie-sim.mjs --port 8790 [--host 127.0.0.1] [--api-key KEY] [--hmac-key KEY] [--step-ms N]
//      [--credits N] [--public-url URL] [--quiet]
//
// Layout: this file is the entry point and public API. The shared core is in core/ (context.mjs state
// and timers, server.mjs routing, tasks.mjs lifecycle, callbacks.mjs delivery, faults.mjs, control.mjs
// the /_sim API, api.mjs handler helpers, images.mjs, tempfile.mjs, uploads.mjs); each Kie API family
// is one module in families/ (jobs.mjs, gpt4o.mjs, flux.mjs; the interface is described in families/index.mjs).

import { pathToFileURL } from 'node:url';
import { UPSTREAM_TIMEOUT_MSG } from './core/constants.mjs';
import { createCore, terminal } from './core/context.mjs';
import { listen } from './core/server.mjs';
import { configure, reset, taskView } from './core/control.mjs';
import { addFault } from './core/faults.mjs';
import { signWebhook } from './core/callbacks.mjs';
import { FAMILIES } from './families/index.mjs';
import { MSG as JOBS_MSG } from './families/jobs.mjs';
import { MSG as GPT4O_MSG } from './families/gpt4o.mjs';
import { MSG as FLUX_MSG } from './families/flux.mjs';

export { crc32, makePng, makeJpeg, sniffImage, imageSize } from './core/images.mjs';
export { signWebhook } from './core/callbacks.mjs';
export { JOB_MODELS } from './families/jobs.mjs';

/** Every failure and callback message the simulator uses, by name. */
export const MSG = { ...JOBS_MSG, upstreamTimeout: UPSTREAM_TIMEOUT_MSG, ...GPT4O_MSG, ...FLUX_MSG };

// ---------------------------------------------------------------------------------------------
// The simulator
// ---------------------------------------------------------------------------------------------

export async function startKieSim(opts = {}) {
  const host = opts.host ?? '127.0.0.1';
  const core = createCore(opts, FAMILIES);
  const { state } = core;
  const server = await listen(core, { port: opts.port, host });
  const addr = server.address();
  const urlHost = addr.family === 'IPv6' || host.includes(':') ? `[${addr.address}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  core.url = `http://${urlHost}:${addr.port}`;

  return {
    url: core.url,
    port: addr.port,
    state,
    server,
    get config() {
      return state.config;
    },
    reset: () => reset(core),
    configure: (patch) => configure(core, patch),
    addFault: (rule) => addFault(core, rule),
    clearFaults() {
      state.faults = [];
    },
    getTask(id) {
      return state.tasks.get(id);
    },
    taskView(id) {
      const t = state.tasks.get(id);
      return t ? taskView(t) : null;
    },
    /** Resolve once the task is terminal and its callback deliveries (if any) have settled. */
    async waitForTask(id, { timeoutMs = 10000, callbacks = false } = {}) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const t = state.tasks.get(id);
        if (t && terminal(t.state) && (!callbacks || !t.callBackUrl || t.callbacks.length > 0)) return t;
        if (Date.now() > deadline) throw new Error(`task ${id} not terminal after ${timeoutMs} ms (state ${t?.state})`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    signWebhook,
    async close() {
      if (core.closed) return;
      core.closed = true;
      state.epoch++;
      for (const t of core.timers) clearTimeout(t);
      core.timers.clear();
      for (const h of [...core.outbound]) h.abort('closed');
      for (const r of core.hanging) r.destroy();
      core.hanging.clear();
      await new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const [k, inline] = a.slice(2).split(/=(.*)/s, 2);
    if (k === 'quiet') {
      out.quiet = true;
      continue;
    }
    out[k] = inline !== undefined ? inline : argv[++i];
  }
  return out;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const env = process.env;
  const num = (v) => (v === undefined || v === null || v === '' ? undefined : Number(v));
  const sim = await startKieSim({
    port: num(a.port ?? env.KIE_SIM_PORT) ?? 8790,
    host: a.host ?? env.KIE_SIM_HOST ?? '127.0.0.1',
    apiKey: a['api-key'] ?? env.KIE_SIM_API_KEY ?? 'sim-key',
    hmacKey: a['hmac-key'] ?? env.KIE_SIM_HMAC_KEY ?? null,
    stepMs: num(a['step-ms'] ?? env.KIE_SIM_STEP_MS),
    credits: num(a.credits ?? env.KIE_SIM_CREDITS),
    publicUrl: a['public-url'] ?? env.KIE_SIM_PUBLIC_URL ?? null,
    log: !a.quiet,
  });
  process.stdout.write(`${JSON.stringify({ msg: 'kie simulator listening', url: sim.url })}\n`);
  const stop = () => sim.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`${JSON.stringify({ msg: 'kie simulator failed to start', error: String(e?.message || e) })}\n`);
    process.exit(1);
  });
}
