// The benchmark keeps running: its quick mode starts both Workers (ours and
// the JavaScript reference), checks that they answer alike, and reports the
// three ratios, each isolate's CPU profile and the bundle size. Figures are
// not judged here, only present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');

function run(args, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(root, 'scripts/bench.mjs'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('bench --quick --profile reports the three ratios against the JS reference Worker, where each isolate spends its time, and the bundle size', { skip: !existsSync(path.join(root, 'build/index.js')) && 'no build' }, async () => {
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'bench-')), 'bench.json');
  const r = await run(['--quick', '--profile', '--out', out], 120_000);
  assert.equal(r.code, 0, `bench failed (${r.code}):\n${r.stderr.slice(-2000)}\n${r.stdout.slice(-2000)}`);

  assert.match(r.stdout, /total gzip KiB \(goal ≤ 220\): \d+\.\d/);
  assert.match(r.stdout, /vs JavaScript reference Worker/);
  for (const name of ['status', 'callback', 'static']) {
    assert.match(r.stdout, new RegExp(`^${name} .* \\d+\\.\\d\\d  \\d+\\.\\d\\d-\\d+\\.\\d\\d +\\d+  ≥ \\d\\.\\d`, 'm'), `no ratio line for ${name}`);
  }

  const report = JSON.parse(readFileSync(out, 'utf8'));
  assert.ok(report.bundle_total.gzip_kib > 0);
  assert.equal(report.bundle_total.goal_gzip_kib, 220);
  const goals = { status: 1, callback: 1, static: 0.9 };
  for (const [name, goal] of Object.entries(goals)) {
    const v = report.vs_js.routes[name];
    assert.ok(v, `no ${name} in vs_js`);
    assert.ok(v.ratio > 0 && Number.isFinite(v.ratio), `${name} ratio ${v.ratio}`);
    assert.equal(v.goal, goal);
    assert.ok(v.rounds.length >= 2 && v.rounds.length <= report.options.rounds);
    for (const side of ['ours', 'js']) {
      assert.ok(v[side].rps > 0, `${name} ${side} req/s`);
      assert.equal(v[side].log_lines, v[side].requests, `${name} ${side}: one log line per request`);
    }
  }
  // The CPU profiles: ours spends time in wasm and its glue, the reference in its own JS.
  assert.match(r.stdout, /Where each isolate's time goes \(V8 CPU profile/);
  for (const name of ['status', 'callback', 'static']) {
    const { ours, js } = report.vs_js.routes[name].profile;
    assert.ok(ours.busy_ms_per_req > 0 && js.busy_ms_per_req > 0, `${name}: ${ours.busy_ms_per_req} / ${js.busy_ms_per_req}`);
    assert.ok(ours.kinds.wasm > 0 && !("the Worker's JS" in ours.kinds), `${name} ours: ${JSON.stringify(ours.kinds)}`);
    assert.ok(js.kinds["the Worker's JS"] > 0 && !('wasm' in js.kinds), `${name} JS: ${JSON.stringify(js.kinds)}`);
    assert.ok(ours.top.length > 0 && ours.top.every(([f, ms]) => typeof f === 'string' && ms >= 0));
  }
  // Both Workers did the same D1 work per request (checked before measuring).
  for (const name of ['status', 'callback']) {
    const p = report.vs_js.routes[name].parity;
    assert.ok(p.d1_queries >= 1 && Number.isInteger(p.d1_rows_read) && p.log_lines_per_request >= 1, JSON.stringify(p));
  }
});
