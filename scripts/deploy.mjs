#!/usr/bin/env node
// Deploys one environment, refusing when it would silently go wrong:
//   node scripts/deploy.mjs --env production [--dry-run] [--config wrangler.toml]
// Checks, before anything is uploaded:
//   - an explicit environment (plain `wrangler deploy` deploys a *different* Worker);
//   - that environment's section exists, names its own Worker, sets ENVIRONMENT to
//     itself, has https PUBLIC_BASE_URL and real D1/KV ids (no placeholders);
//   - every required secret is set *for that environment* (wrangler secret list --env).
// Then applies D1 migrations, deploys, and runs the diagnose report against the
// deployed Worker as the post-deploy check (needs ADMIN_TOKEN in the environment).
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const REQUIRED_SECRETS = ['KIEAI_APIKEY', 'ADMIN_TOKEN', 'FILE_URL_SECRET'];

/** A small TOML reader for wrangler.toml: tables, arrays of tables, strings, numbers, booleans, string arrays. */
export function parseToml(text) {
  const root = {};
  let cur = root;
  const at = (path, isArray) => {
    let node = root;
    path.forEach((key, i) => {
      const last = i === path.length - 1;
      if (last && isArray) {
        node[key] ??= [];
        const item = {};
        node[key].push(item);
        node = item;
      } else {
        node[key] ??= {};
        node = Array.isArray(node[key]) ? node[key][node[key].length - 1] : node[key];
      }
    });
    return node;
  };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s+#.*$/, '').trim();
    if (!line || line.startsWith('#')) continue;
    let m;
    if ((m = line.match(/^\[\[([^\]]+)\]\]$/))) cur = at(m[1].split('.').map((s) => s.trim()), true);
    else if ((m = line.match(/^\[([^\]]+)\]$/))) cur = at(m[1].split('.').map((s) => s.trim()), false);
    else if ((m = line.match(/^([A-Za-z0-9_-]+)\s*=\s*'([^']*)'\s*$/))) cur[m[1]] = m[2]; // a literal string, as written
    else if ((m = line.match(/^([A-Za-z0-9_-]+)\s*=\s*(.+)$/))) cur[m[1]] = JSON.parse(m[2].replace(/'/g, '"'));
  }
  return root;
}

/** Everything wrong with an environment's configuration, as sentences. */
export function configProblems(config, env) {
  const section = config.env?.[env];
  if (!section) return [`wrangler.toml has no [env.${env}] section`];
  const problems = [];
  const vars = section.vars || {};
  if (!section.name || section.name === config.name) problems.push(`[env.${env}] must set its own name (not "${config.name}")`);
  if (vars.ENVIRONMENT !== env) problems.push(`[env.${env}.vars] ENVIRONMENT must be "${env}"`);
  if (!/^https:\/\/[^/]+$/.test(vars.PUBLIC_BASE_URL || '')) problems.push(`[env.${env}.vars] PUBLIC_BASE_URL must be this Worker's https origin (it is "${vars.PUBLIC_BASE_URL ?? ''}")`);
  const d1 = (section.d1_databases || []).find((d) => d.binding === 'DB');
  if (!d1 || !d1.database_id || /REPLACE|^0+(-0+)*$/.test(d1.database_id)) problems.push(`[[env.${env}.d1_databases]] DB needs the real database_id (wrangler d1 create)`);
  const kv = (section.kv_namespaces || []).find((k) => k.binding === 'CACHE');
  if (!kv || !kv.id || /REPLACE|^0+$/.test(kv.id)) problems.push(`[[env.${env}.kv_namespaces]] CACHE needs the real id (wrangler kv namespace create CACHE --env ${env})`);
  if (!(section.r2_buckets || []).some((b) => b.binding === 'FILES')) problems.push(`[[env.${env}.r2_buckets]] FILES is missing`);
  if (!(section.triggers?.crons || []).length) problems.push(`[env.${env}.triggers] crons is missing (deferred tasks would never be resubmitted)`);
  return problems;
}

// Buying credits needs all three settings or none (a partial set is a config_error for every request).
const BILLING_SECRETS = ['STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET'];

/** Required secrets not set; sign-in (OIDC_CLIENT_ID in vars) needs its client secret too, buying credits (CREDIT_PACKS) both Stripe secrets. */
export function missingSecrets(names, vars = {}) {
  const billing = vars.CREDIT_PACKS || BILLING_SECRETS.some((s) => names.includes(s));
  const required = [...REQUIRED_SECRETS, ...(vars.OIDC_CLIENT_ID ? ['OIDC_CLIENT_SECRET'] : []), ...(billing ? BILLING_SECRETS : [])];
  return required.filter((s) => !names.includes(s));
}

function wrangler(args, opts = {}) {
  const bin = process.env.WRANGLER_BIN || 'npx';
  const full = process.env.WRANGLER_BIN ? args : ['wrangler', ...args];
  return spawnSync(bin, full, { encoding: 'utf8', stdio: opts.inherit ? 'inherit' : 'pipe' });
}

function fail(lines) {
  console.error(['deploy refused:', ...lines.map((l) => `  - ${l}`)].join('\n'));
  process.exit(2);
}

async function main() {
  const args = process.argv.slice(2);
  const flag = (n) => {
    const i = args.indexOf(n);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const env = flag('--env');
  const dryRun = args.includes('--dry-run');
  if (!env) fail(['say which environment: --env production (plain `wrangler deploy` would deploy the top-level Worker, whose secrets and bindings are different)']);
  const config = parseToml(readFileSync(flag('--config') || 'wrangler.toml', 'utf8'));
  const problems = configProblems(config, env);
  if (problems.length) fail(problems);

  const listed = wrangler(['secret', 'list', '--env', env, '--format', 'json']);
  if (listed.status !== 0) fail([`could not list the secrets of env ${env}: ${(listed.stderr || listed.stdout || '').trim().split('\n').pop()}`]);
  let names;
  try {
    names = JSON.parse(listed.stdout).map((s) => s.name);
  } catch {
    fail([`unexpected answer from wrangler secret list: ${listed.stdout.slice(0, 200)}`]);
  }
  const vars = config.env[env].vars || {};
  const secretProblems = missingSecrets(names, vars).map((m) => `secret ${m} is not set for env ${env}: run \`npx wrangler secret put ${m} --env ${env}\``);
  if (names.includes('TURNSTILE_SECRET_KEY') && !vars.TURNSTILE_SITE_KEY) secretProblems.push(`TURNSTILE_SECRET_KEY is set but [env.${env}.vars] has no TURNSTILE_SITE_KEY (the page needs it)`);
  if (BILLING_SECRETS.some((s) => names.includes(s)) && !vars.CREDIT_PACKS) secretProblems.push(`the Stripe secrets are set for env ${env} but [env.${env}.vars] has no CREDIT_PACKS (buying credits needs all three)`);
  if (secretProblems.length) fail(secretProblems);
  if (!names.includes('KIE_WEBHOOK_HMAC_KEY')) console.warn(`note: KIE_WEBHOOK_HMAC_KEY is not set for env ${env}; callbacks are authenticated by their per-task token only`);

  const base = config.env[env].vars.PUBLIC_BASE_URL;
  if (dryRun) {
    console.log(`ok: env ${env} is ready to deploy to ${base} (dry run: nothing uploaded)`);
    return;
  }
  for (const step of [['d1', 'migrations', 'apply', 'DB', '--remote', '--env', env], ['deploy', '--env', env]]) {
    const r = wrangler(step, { inherit: true });
    if (r.status !== 0) fail([`wrangler ${step.join(' ')} failed`]);
  }
  if (!process.env.ADMIN_TOKEN) {
    console.warn(`deployed. Now run the post-deploy check: ADMIN_TOKEN=… node scripts/ops.mjs diagnose --url ${base}`);
    return;
  }
  const r = spawnSync(process.execPath, ['scripts/ops.mjs', 'diagnose', '--url', base], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
