// The deploy command refuses the deploys that went wrong before.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseToml, configProblems } from '../../scripts/deploy.mjs';

const root = path.resolve(import.meta.dirname, '../..');
const committed = readFileSync(path.join(root, 'wrangler.toml'), 'utf8');
const ready = committed
  .replace('PUBLIC_BASE_URL = ""', 'PUBLIC_BASE_URL = "https://banana-worker-production.example.workers.dev"')
  .replace('REPLACE_WITH_PRODUCTION_D1_ID', '6f1c2c9e-1111-4a4a-9b9b-123456789abc')
  .replace('REPLACE_WITH_PRODUCTION_KV_ID', '3c5e7a9b1d3f5a7c9e1b3d5f7a9c1e3b');

function run(args, { toml = ready, secrets = ['KIEAI_APIKEY', 'ADMIN_TOKEN', 'FILE_URL_SECRET'] } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'deploy-'));
  writeFileSync(path.join(dir, 'wrangler.toml'), toml);
  const fake = path.join(dir, 'fake-wrangler.sh');
  writeFileSync(fake, `#!/bin/sh\necho '${JSON.stringify(secrets.map((name) => ({ name, type: 'secret_text' })))}'\n`, { mode: 0o755 });
  return spawnSync(process.execPath, [path.join(root, 'scripts/deploy.mjs'), ...args, '--config', path.join(dir, 'wrangler.toml')], {
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_BIN: fake },
  });
}

test('wrangler.toml is read the way wrangler reads it', () => {
  const c = parseToml(committed);
  assert.equal(c.name, 'banana-worker');
  assert.deepEqual(c.triggers.crons, ['* * * * *']);
  assert.equal(c.d1_databases[0].binding, 'DB');
  assert.equal(c.env.production.vars.ENVIRONMENT, 'production');
  assert.equal(c.env.production.r2_buckets[0].binding, 'FILES');
  assert.deepEqual(configProblems(parseToml(ready), 'production'), []);
});

test('no explicit environment: refused (the --env trap)', () => {
  const r = run([]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--env production/);
});

test('the committed production section is refused until its placeholders are filled', () => {
  const r = run(['--env', 'production', '--dry-run'], { toml: committed });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /PUBLIC_BASE_URL/);
  assert.match(r.stderr, /database_id/);
  assert.match(r.stderr, /CACHE needs the real id/);
  assert.equal(run(['--env', 'staging', '--dry-run']).status, 2);
});

test('a missing secret in that environment is refused, naming it and the command that sets it', () => {
  const r = run(['--env', 'production', '--dry-run'], { secrets: ['ADMIN_TOKEN'] });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /secret KIEAI_APIKEY is not set for env production: run `npx wrangler secret put KIEAI_APIKEY --env production`/);
  assert.match(r.stderr, /FILE_URL_SECRET/);
  assert.doesNotMatch(r.stderr, /secret ADMIN_TOKEN is not set/);
});

test('sign-in turned on (OIDC_CLIENT_ID) without its client secret is refused; Turnstile needs its site key', () => {
  const signIn = ready.replace('ENVIRONMENT = "production"', 'ENVIRONMENT = "production"\nOIDC_CLIENT_ID = "1234-abc.apps.googleusercontent.com"');
  const base = ['KIEAI_APIKEY', 'ADMIN_TOKEN', 'FILE_URL_SECRET'];
  let r = run(['--env', 'production', '--dry-run'], { toml: signIn });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /secret OIDC_CLIENT_SECRET is not set for env production: run `npx wrangler secret put OIDC_CLIENT_SECRET --env production`/);
  assert.equal(run(['--env', 'production', '--dry-run'], { toml: signIn, secrets: [...base, 'OIDC_CLIENT_SECRET'] }).status, 0);
  r = run(['--env', 'production', '--dry-run'], { toml: signIn, secrets: [...base, 'OIDC_CLIENT_SECRET', 'TURNSTILE_SECRET_KEY'] });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no TURNSTILE_SITE_KEY/);
});

test('a ready environment passes the checks', () => {
  const r = run(['--env', 'production', '--dry-run']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ready to deploy to https:\/\/banana-worker-production/);
  assert.match(r.stderr, /KIE_WEBHOOK_HMAC_KEY is not set/);
});

test('wrangler itself accepts the production section (deploy --dry-run, offline)', { timeout: 180000 }, () => {
  const r = spawnSync('npx', ['wrangler', 'deploy', '--dry-run', '--env', 'production', '--outdir', mkdtempSync(path.join(tmpdir(), 'dist-'))], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
  });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  for (const binding of ['env.DB', 'env.CACHE', 'env.FILES', 'env.ENVIRONMENT ("production")']) assert.ok(r.stdout.includes(binding), binding);
  assert.match(r.stdout, /Total Upload: [\d.]+ KiB \/ gzip: [\d.]+ KiB/);
});

test('buying credits is all or nothing: CREDIT_PACKS without the Stripe secrets (or the reverse) is refused', () => {
  const packs = `CREDIT_PACKS = '[{"id":"starter","credits":100,"amount":500,"currency":"usd"}]'`;
  const withPacks = ready.replace('ENVIRONMENT = "production"', `ENVIRONMENT = "production"\n${packs}`);
  assert.deepEqual(JSON.parse(parseToml(withPacks).env.production.vars.CREDIT_PACKS)[0].id, 'starter', 'a TOML literal string is read as written');
  let r = run(['--env', 'production', '--dry-run'], { toml: withPacks });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /secret STRIPE_SECRET_KEY is not set for env production/);
  assert.match(r.stderr, /STRIPE_WEBHOOK_SECRET/);
  const all = ['KIEAI_APIKEY', 'ADMIN_TOKEN', 'FILE_URL_SECRET', 'STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET'];
  r = run(['--env', 'production', '--dry-run'], { secrets: all });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no CREDIT_PACKS/);
  r = run(['--env', 'production', '--dry-run'], { toml: withPacks, secrets: all });
  assert.equal(r.status, 0, r.stderr);
});
