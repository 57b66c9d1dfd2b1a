// src/entry.mjs, the Worker's JavaScript entry point, against a stand-in for
// wasm-bindgen's glue: a trap in one invocation is rethrown and logged, and
// the next invocation runs on a fresh instance (the glue's reset function),
// exactly once. The real glue runs under every end-to-end test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, copyFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from '../e2e/harness.mjs';

const GLUE = `
export const calls = { resets: 0, fetches: [], scheduled: [] };
const state = { criticalError: false, instanceId: 0 };
let trapNext = null;
export function trapOnNextCall(kind) { trapNext = kind; }
export function __worker_init_state() { return state; }
export function __wbg_reset_state() { calls.resets++; }
export function fetch(request, env, ctx, respond) {
  calls.fetches.push([request, env, ctx]);
  const kind = trapNext;
  trapNext = null;
  if (kind === 'sync') throw new WebAssembly.RuntimeError('unreachable');
  // A trap after an await: the abort handler marks the instance and the request is never answered.
  if (kind === 'later') { state.criticalError = true; return; }
  if (kind === 'error') throw new TypeError('not a trap');
  respond('response for ' + request);
}
export function scheduled(event, env, ctx) { calls.scheduled.push([event, env, ctx]); return Promise.resolve(); }
`;

async function loadEntry() {
  const dir = mkdtempSync(path.join(tmpdir(), 'entry-'));
  copyFileSync(path.join(ROOT, 'src/entry.mjs'), path.join(dir, 'entry.mjs'));
  writeFileSync(path.join(dir, 'index.js'), GLUE);
  const listeners = [];
  globalThis.addEventListener = (type, fn) => listeners.push([type, fn]);
  const lines = [];
  const origError = console.error;
  console.error = (line) => lines.push(JSON.parse(line));
  try {
    const entry = (await import(pathToFileURL(path.join(dir, 'entry.mjs')))).default;
    const glue = await import(pathToFileURL(path.join(dir, 'index.js')));
    return { entry, glue, lines, listeners, restore: () => { console.error = origError; delete globalThis.addEventListener; rmSync(dir, { recursive: true, force: true }); } };
  } catch (e) {
    console.error = origError;
    throw e;
  }
}

/** Runs `body` with a freshly loaded entry, and puts the globals back after. */
async function withEntry(body) {
  const t = await loadEntry();
  try {
    await body(t);
  } finally {
    t.restore();
  }
}

test('the entry hands fetch and scheduled to the wasm with env and ctx', () =>
  withEntry(async (t) => {
    assert.equal(await t.entry.fetch('req', 'env', 'ctx'), 'response for req');
    await t.entry.scheduled('event', 'env2', 'ctx2');
    assert.deepEqual(t.glue.calls.fetches, [['req', 'env', 'ctx']]);
    assert.deepEqual(t.glue.calls.scheduled, [['event', 'env2', 'ctx2']]);
    assert.equal(t.glue.calls.resets, 0);
    assert.deepEqual(t.lines, []);
  }));

test('after a trap the next invocation gets a fresh instance, once', () =>
  withEntry(async (t) => {
    const unhandled = t.listeners.find(([type]) => type === 'unhandledrejection')?.[1];
    assert.ok(unhandled, 'the entry listens for unhandled rejections');
    for (const kind of ['sync', 'later']) {
      const resetsBefore = t.glue.calls.resets;
      t.glue.trapOnNextCall(kind);
      if (kind === 'sync') {
        await assert.rejects(t.entry.fetch('a', 'env', 'ctx'), WebAssembly.RuntimeError);
      } else {
        // Never answered; the trap surfaces as an unhandled rejection.
        void t.entry.fetch('a', 'env', 'ctx');
        unhandled({ reason: new WebAssembly.RuntimeError('unreachable') });
      }
      assert.equal(t.glue.calls.resets, resetsBefore, 'no reset before the next invocation');
      assert.equal(await t.entry.fetch('b', 'env', 'ctx'), 'response for b');
      assert.equal(t.glue.calls.resets, resetsBefore + 1);
      await t.entry.fetch('c', 'env', 'ctx');
      assert.equal(t.glue.calls.resets, resetsBefore + 1, 'a healthy instance is kept');
    }
    assert.deepEqual(t.lines.map((l) => l.event), ['worker.trap', 'worker.reinitialized', 'worker.trap', 'worker.reinitialized']);
    assert.ok(t.lines.every((l) => l.level === 'error' && l.ts && l.msg));
    assert.match(t.lines[0].error, /RuntimeError: unreachable/);
  }));

test('an ordinary error is passed on without replacing the instance', () =>
  withEntry(async (t) => {
    t.glue.trapOnNextCall('error');
    await assert.rejects(t.entry.fetch('a', 'env', 'ctx'), TypeError);
    await t.entry.fetch('b', 'env', 'ctx');
    assert.equal(t.glue.calls.resets, 0);
    assert.deepEqual(t.lines, []);
  }));

test('a trap reported to the global error handler also marks the instance', () =>
  withEntry(async (t) => {
    const onError = t.listeners.find(([type]) => type === 'error')?.[1];
    assert.ok(onError, 'the entry listens for uncaught errors');
    onError({ error: new TypeError('not a trap') });
    await t.entry.fetch('a', 'env', 'ctx');
    assert.equal(t.glue.calls.resets, 0);
    onError({ error: new WebAssembly.RuntimeError('unreachable') });
    await t.entry.fetch('b', 'env', 'ctx');
    assert.equal(t.glue.calls.resets, 1);
  }));
