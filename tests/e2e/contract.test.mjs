// The OpenAPI description in docs/ stays in step with the Worker's routes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startStack, requireBuild, ROOT } from './harness.mjs';

let s;
before(async () => {
  requireBuild();
  s = await startStack({ name: 'contract', vars: { PRICE_GPT_4O: '9', MAX_UPLOAD_BYTES: '2000000' } });
});
after(async () => s && s.close());

const spec = JSON.parse(readFileSync(path.join(ROOT, 'docs/openapi.json'), 'utf8'));
const METHODS = ['get', 'post', 'head', 'put', 'patch', 'delete'];

test('every documented path and method is routed; undocumented methods are 405', async () => {
  for (const [p, ops] of Object.entries(spec.paths)) {
    const concrete = p.replace('{id}', p.includes('users') ? 'usr_x' : 'tsk_x').replace('{key}', 'out/x.png');
    for (const m of METHODS) {
      const r = await s.api(m.toUpperCase(), concrete, { json: m === 'post' ? {} : undefined });
      if (ops[m]) {
        assert.notEqual(r.status, 405, `${m} ${p} is documented but not routed`);
        if (m !== 'head') assert.notEqual(r.body?.error?.message, 'There is no such route.', `${m} ${p}`);
      } else {
        assert.equal(r.status, 405, `${m} ${p} is not documented but answered ${r.status}`);
      }
    }
  }
});

test('every error code the Worker can send is in the contract', () => {
  const source = readFileSync(path.join(ROOT, 'src/domain/error.rs'), 'utf8');
  const codes = [...source.matchAll(/=> "([a-z_]+)",/g)].map((m) => m[1]);
  assert.ok(codes.length >= 16);
  assert.deepEqual([...codes].sort(), [...spec.components.schemas.Error.properties.error.properties.code.enum].sort());
});

test('/api/models tells clients this deployment\'s prices and limits, and create charges that price', async () => {
  const r = await s.api('GET', '/api/models');
  assert.equal(r.status, 200);
  const byName = Object.fromEntries(r.body.models.map((m) => [m.name, m]));
  assert.deepEqual(Object.keys(byName).sort(), spec.paths['/api/create/ai-image'] && ['flux-kontext-max', 'flux-kontext-pro', 'gpt-4o', 'nano-banana', 'nano-banana-2', 'nano-banana-edit', 'nano-banana-pro']);
  assert.equal(byName['gpt-4o'].price, 9);
  assert.equal(byName['nano-banana'].price, 2);
  assert.equal(byName['nano-banana-pro'].max_image_bytes, 2000000, 'capped by MAX_UPLOAD_BYTES');
  assert.deepEqual(byName['gpt-4o'].aspect_ratios, ['1:1', '3:2', '2:3']);
  assert.equal(byName['nano-banana-edit'].min_images, 1);
  const u = await s.createUser(20);
  const t = await s.api('POST', '/api/create/ai-image', { key: u.key, json: { model: 'gpt-4o', prompt: 'priced' } });
  assert.equal(t.body.task.credits, 9);
  assert.equal((await s.api('GET', '/api/me', { key: u.key })).body.user.credits, 11);
});
