#!/usr/bin/env node
// Operator checks that work against a local or a deployed Worker alike:
//   node scripts/ops.mjs diagnose        --url BASE      the chain, link by link (exit 1 if a link fails)
//   node scripts/ops.mjs check-kie       --url BASE      Kie key valid + account balance (through the Worker)
//   node scripts/ops.mjs check-image-url --url IMAGE     can Kie fetch this image? (status, type by bytes, size)
//   node scripts/ops.mjs full-flow       --url BASE [--model nano-banana] [--yes]
//        creates a task as the `ops-smoke` user and follows it to a stored result
//        (against production this spends real Kie credits: pass --yes).
// The operator token comes from the ADMIN_TOKEN environment variable (never a flag,
// so it stays out of shell history and process lists).

const args = process.argv.slice(2);
const command = args[0];
const flag = (n, d) => {
  const i = args.indexOf(n);
  return i >= 0 ? args[i + 1] : d;
};
const base = (flag('--url') || '').replace(/\/$/, '');
const token = process.env.ADMIN_TOKEN;

function die(msg, code = 2) {
  console.error(msg);
  process.exit(code);
}

async function call(method, path, { key, json } = {}) {
  const headers = {};
  if (key) headers.authorization = `Bearer ${key}`;
  if (json) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body: json ? JSON.stringify(json) : undefined });
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, body, text, requestId: res.headers.get('x-request-id') };
}

function sniff(b) {
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b.subarray(0, 4).toString() === 'RIFF' && b.subarray(8, 12).toString() === 'WEBP') return 'webp';
  return null;
}

const needAdmin = () => token || die('set ADMIN_TOKEN in the environment');

async function diagnose() {
  needAdmin();
  const r = await call('GET', '/api/admin/diagnose', { key: token });
  if (r.status !== 200) die(`diagnose answered ${r.status}: ${r.text.slice(0, 300)}`, 1);
  for (const c of r.body.checks) console.log(`[${c.status.padEnd(4)}] ${c.name.padEnd(26)} ${c.hint}`);
  console.log(`diagnose: ${r.body.status.toUpperCase()} (${r.body.environment}, ${r.body.commit})`);
  process.exit(r.body.status === 'pass' ? 0 : 1);
}

async function checkKie() {
  needAdmin();
  const r = await call('GET', '/api/admin/diagnose', { key: token });
  if (r.status !== 200) die(`diagnose answered ${r.status}: ${r.text.slice(0, 300)}`, 1);
  const c = r.body.checks.find((x) => x.name === 'kie key');
  console.log(`kie key: ${c.status}: ${c.hint}`);
  process.exit(c.status === 'pass' ? 0 : 1);
}

async function checkImageUrl() {
  const url = flag('--url');
  if (!/^https?:\/\//.test(url || '')) die('give the image URL: --url https://…');
  const started = Date.now();
  try {
    const res = await fetch(url, { headers: { 'user-agent': 'Mozilla/5.0 (compatible; KieAI-Fetcher/1.0)' }, redirect: 'follow', signal: AbortSignal.timeout(30000) });
    const bytes = Buffer.from(await res.arrayBuffer());
    const kind = sniff(bytes);
    const problems = [];
    if (res.status !== 200) problems.push(`HTTP ${res.status}`);
    if (!kind) problems.push('not a jpeg/png/webp by its bytes');
    if (bytes.length > 10 * 1024 * 1024) problems.push(`${bytes.length} bytes is over 10 MB`);
    console.log(`${url}\n  status ${res.status}, content-type ${res.headers.get('content-type')}, ${bytes.length} bytes, kind ${kind ?? 'unknown'}, ${Date.now() - started} ms`);
    if (problems.length) die(`  Kie would fail this input (failCode 422): ${problems.join('; ')}`, 1);
    console.log('  ok: Kie can fetch this image');
  } catch (e) {
    die(`  unreachable: ${e.message}; Kie would fail this input (failCode 422)`, 1);
  }
}

async function fullFlow() {
  needAdmin();
  const model = flag('--model', 'nano-banana');
  const t0 = Date.now();
  const step = (msg) => console.log(`${String(Date.now() - t0).padStart(6)} ms  ${msg}`);
  const health = await call('GET', '/api/health');
  step(`health ${health.status} ${health.body?.status} (commit ${health.body?.commit})`);
  if (health.body?.environment === 'production' && !args.includes('--yes')) die('this spends real Kie credits in production: add --yes');
  const users = await call('GET', '/api/admin/users?limit=100', { key: token });
  let user = users.body?.users?.find((u) => u.name === 'ops-smoke');
  let key;
  if (!user) {
    const made = await call('POST', '/api/admin/users', { key: token, json: { name: 'ops-smoke', credits: 20 } });
    if (made.status !== 201) die(`could not create the ops-smoke user: ${made.status} ${made.text}`, 1);
    user = made.body.user;
    key = made.body.api_key;
    step(`created user ops-smoke ${user.id}`);
  } else {
    key = (await call('POST', `/api/admin/users/${user.id}/keys`, { key: token })).body.api_key;
    step(`reusing user ops-smoke ${user.id} (new key issued)`);
  }
  if (user.credits < 10) await call('POST', `/api/admin/users/${user.id}/credits`, { key: token, json: { amount: 10, reason: 'ops full-flow check' } });
  const created = await call('POST', '/api/create/ai-image', { key, json: { model, prompt: 'ops full-flow check: a small yellow banana on a white table' } });
  step(`create ${created.status} ${created.body?.task?.state ?? created.body?.error?.code} request ${created.requestId}`);
  if (created.status !== 202) die(`create failed: ${created.text.slice(0, 300)}`, 1);
  const id = created.body.task.id;
  let task = created.body.task;
  let last = task.state;
  const deadline = Date.now() + 5 * 60 * 1000;
  while (!['succeeded', 'failed'].includes(task.state) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1500));
    task = (await call('GET', `/api/tasks/${id}`, { key })).body.task;
    if (task.state !== last) step(`task ${id} ${last} -> ${task.state}`);
    last = task.state;
  }
  if (task.state !== 'succeeded') die(`task ${id} ended ${task.state}: ${JSON.stringify(task.error)}`, 1);
  const img = await fetch(task.results[0].url);
  const bytes = Buffer.from(await img.arrayBuffer());
  step(`result ${img.status} ${img.headers.get('content-type')} ${bytes.length} bytes (${sniff(bytes)})`);
  if (img.status !== 200 || !sniff(bytes)) die('the stored result is not an image', 1);
  step('full flow ok');
}

const commands = { diagnose, 'check-kie': checkKie, 'check-image-url': checkImageUrl, 'full-flow': fullFlow };
if (!commands[command]) die(`usage: node scripts/ops.mjs ${Object.keys(commands).join('|')} --url URL`);
if (command !== 'check-image-url' && !/^https?:\/\//.test(base)) die('give the Worker URL: --url https://…');
await commands[command]();
