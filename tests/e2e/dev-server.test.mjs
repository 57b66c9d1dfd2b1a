// The README's first command: scripts/dev.sh brings up the simulator and the
// Worker under `wrangler dev` (local D1/KV/R2), and the walk-through produces a
// succeeded task whose result URL returns an image.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT, requireBuild, waitFor, quietPort } from './harness.mjs';
import { readDevVars } from '../../scripts/dev-vars.mjs';

let child;
let output = '';
after(() => {
  if (child && child.exitCode === null) process.kill(-child.pid, 'SIGTERM');
  mkdirSync(path.join(ROOT, 'test-artifacts', 'logs'), { recursive: true });
  writeFileSync(path.join(ROOT, 'test-artifacts', 'logs', 'dev-server.log'), output);
});

test('scripts/dev.sh serves the walk-through end to end', { timeout: 240000 }, async () => {
  requireBuild();
  const [port, simPort] = [await quietPort(), await quietPort()];
  child = spawn('bash', ['scripts/dev.sh'], { cwd: ROOT, detached: true, env: { ...process.env, PORT: String(port), KIE_SIM_PORT: String(simPort) } });
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const w = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`dev.sh exited ${child.exitCode}: ${output.slice(-2000)}`);
    try {
      return (await fetch(`${w}/api/health`)).status === 200;
    } catch {
      return false;
    }
  }, { timeoutMs: 200000, intervalMs: 500, what: 'wrangler dev to answer' });

  // As wrangler read it (quotes, comments, export).
  const admin = readDevVars(path.join(ROOT, '.dev.vars')).ADMIN_TOKEN;
  const json = { 'content-type': 'application/json' };
  const user = await (await fetch(`${w}/api/admin/users`, { method: 'POST', headers: { ...json, authorization: `Bearer ${admin}` }, body: JSON.stringify({ name: 'Ada', credits: 10 }) })).json();
  const key = user.api_key;
  const created = await fetch(`${w}/api/create/ai-image`, { method: 'POST', headers: { ...json, authorization: `Bearer ${key}` }, body: JSON.stringify({ model: 'nano-banana', prompt: 'a banana on the moon' }) });
  assert.equal(created.status, 202);
  const id = (await created.json()).task.id;
  const task = await waitFor(async () => {
    const t = (await (await fetch(`${w}/api/tasks/${id}`, { headers: { authorization: `Bearer ${key}` } })).json()).task;
    return t.state === 'succeeded' || t.state === 'failed' ? t : null;
  }, { what: 'the walk-through task' });
  assert.equal(task.state, 'succeeded', `${JSON.stringify(task.error)}\n${output.split('\n').filter((l) => l.includes(id)).join('\n').slice(-4000)}`);
  const img = await fetch(task.results[0].url);
  assert.equal(img.status, 200);
  const bytes = Buffer.from(await img.arrayBuffer());
  assert.deepEqual([...bytes.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  // wrangler dev shows the Worker's JSON log lines as they are.
  await waitFor(() => output.includes('"event":"http.request"') && output.includes(id), { what: 'JSON log lines in the wrangler dev output' });
  const page = await fetch(`${w}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-security-policy'), /default-src 'none'/);
});
