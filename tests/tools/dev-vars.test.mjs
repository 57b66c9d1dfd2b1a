// scripts/dev.sh reads KIEAI_APIKEY from .dev.vars the way wrangler does, so
// the simulator expects exactly the key the Worker is given.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, symlinkSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseDotenv, DOTENV_LINE } from '../../scripts/dev-vars.mjs';

const root = path.resolve(import.meta.dirname, '../..');
const dirs = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir() {
  const d = mkdtempSync(path.join(tmpdir(), 'dev-vars-'));
  dirs.push(d);
  return d;
}

// Inputs covering dotenv's rules, with the values wrangler gives the Worker.
const CASES = [
  ['KIEAI_APIKEY=plain-key', { KIEAI_APIKEY: 'plain-key' }],
  ['KIEAI_APIKEY="double-quoted"', { KIEAI_APIKEY: 'double-quoted' }],
  ["KIEAI_APIKEY='single-quoted'", { KIEAI_APIKEY: 'single-quoted' }],
  ['KIEAI_APIKEY=`backtick-quoted`', { KIEAI_APIKEY: 'backtick-quoted' }],
  ['export KIEAI_APIKEY="exported"', { KIEAI_APIKEY: 'exported' }],
  ['KIEAI_APIKEY = spaced   ', { KIEAI_APIKEY: 'spaced' }],
  ['KIEAI_APIKEY: colon-form', { KIEAI_APIKEY: 'colon-form' }],
  ['KIEAI_APIKEY=key # a comment', { KIEAI_APIKEY: 'key' }],
  ['KIEAI_APIKEY="key#with-hash" # a comment', { KIEAI_APIKEY: 'key#with-hash' }],
  ["KIEAI_APIKEY='single #hash' # c", { KIEAI_APIKEY: 'single #hash' }],
  ['KIEAI_APIKEY=key#hash', { KIEAI_APIKEY: 'key' }],
  ['A="line\\nbreak"\nB=\'no\\nbreak\'', { A: 'line\nbreak', B: 'no\\nbreak' }],
  ['A="say \\"hi\\""', { A: 'say \\"hi\\"' }],
  ['A="first\nsecond"\nB=after', { A: 'first\nsecond', B: 'after' }],
  ['A=one\r\nB="two"\r\n', { A: 'one', B: 'two' }],
  ['A=\nB=""\nC=\'\'', { A: '', B: '', C: '' }],
  ['A=first\nA=second', { A: 'second' }],
  ['# only a comment\n\n  A=indented', { A: 'indented' }],
  ['A=${HOME}/x', { A: '${HOME}/x' }],
  ['A="unterminated\nB=b', { A: '"unterminated', B: 'b' }],
  ['KIEAI_APIKEY=" spaced inside "', { KIEAI_APIKEY: ' spaced inside ' }],
];

test('.dev.vars values: quotes, export, comments, escapes, multiline, CRLF', () => {
  for (const [src, want] of CASES) assert.deepEqual(parseDotenv(src), want, JSON.stringify(src));
});

// wrangler parses .dev.vars with the dotenv parse() bundled into its cli.js
// (not importable on its own). Take that very function out of the installed
// wrangler and compare: a wrangler upgrade that changes the rules fails here.
function wranglerDotenvParse() {
  const bundle = readFileSync(path.join(root, 'node_modules/wrangler/wrangler-dist/cli.js'), 'utf8');
  const start = bundle.indexOf('node_modules/dotenv/lib/main.js');
  assert.ok(start >= 0, 'wrangler no longer bundles dotenv: check how it reads .dev.vars and update scripts/dev-vars.mjs');
  const m = bundle.slice(start, start + 20000).match(/var LINE = (\/.*\/[a-z]*);\s*function (parse\w*)\(src\) \{([\s\S]*?)\n {4}\}\n {4}__name\(\2, "parse"\);/);
  assert.ok(m, "dotenv's parse() not found in wrangler's bundle: compare it with scripts/dev-vars.mjs by hand");
  assert.ok(/dev-vars\.ts[\s\S]{0,400}require_main\(\)/.test(bundle), 'wrangler reads .dev.vars with the bundled dotenv');
  return { line: m[1], parse: new Function(`const LINE = ${m[1]};\nreturn function parse(src) {${m[3]}\n};`)() };
}

test("parseDotenv is wrangler's own .dev.vars parser, rule for rule", () => {
  const wrangler = wranglerDotenvParse();
  assert.equal(wrangler.line, String(DOTENV_LINE).replace(/\/gm$/, '/mg'));
  const extra = ['', 'NOT A LINE', 'A=1 # c\nexport B = "2" # c\nC: `3`', 'A="x\\ry"', 'A=a=b=c', "A='it''s'", 'A.B-C=dots'];
  for (const src of [...CASES.map(([s]) => s), ...extra]) assert.deepEqual(parseDotenv(src), wrangler.parse(src), JSON.stringify(src));
});

function freePort() {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// The lines of scripts/dev.sh that set KIE_SIM_API_KEY, run as they are.
function devShKeyLines() {
  const lines = readFileSync(path.join(root, 'scripts/dev.sh'), 'utf8').split('\n').filter((l) => /^(export )?KIE_SIM_API_KEY\b/.test(l));
  assert.ok(lines.some((l) => l.includes('scripts/dev-vars.mjs')), 'dev.sh reads the key with scripts/dev-vars.mjs');
  return lines.join('\n');
}

test('a quoted KIEAI_APIKEY in .dev.vars reaches the simulator without its quotes', { timeout: 60000 }, async () => {
  const dir = tempDir();
  symlinkSync(path.join(root, 'scripts'), path.join(dir, 'scripts'));
  writeFileSync(path.join(dir, '.dev.vars'), 'ADMIN_TOKEN=a\nexport KIEAI_APIKEY="quoted-kie-key-123" # from kie.ai\nFILE_URL_SECRET=f\n');
  const port = await freePort();
  const sim = spawn('bash', ['-c', `set -euo pipefail\n${devShKeyLines()}\nexec node "$1" --port "$2" --quiet`, 'dev-sh', path.join(root, 'sim/kie-sim.mjs'), String(port)], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  sim.stderr.on('data', (d) => (stderr += d));
  try {
    const credit = async (key) => {
      for (let i = 0; i < 400; i++) {
        if (sim.exitCode !== null) throw new Error(`simulator exited ${sim.exitCode}: ${stderr}`);
        try {
          const r = await fetch(`http://127.0.0.1:${port}/api/v1/chat/credit`, { headers: { authorization: `Bearer ${key}` } });
          return (await r.json()).code;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      throw new Error('the simulator did not answer');
    };
    assert.equal(await credit('quoted-kie-key-123'), 200);
    assert.equal(await credit('"quoted-kie-key-123"'), 401);
  } finally {
    sim.kill();
  }
});

test('dev.sh stops with a clear message when .dev.vars has no KIEAI_APIKEY', () => {
  const dir = tempDir();
  symlinkSync(path.join(root, 'scripts'), path.join(dir, 'scripts'));
  writeFileSync(path.join(dir, '.dev.vars'), 'ADMIN_TOKEN=a\n# KIEAI_APIKEY=commented-out\n');
  const r = spawnSync('bash', ['-c', `set -euo pipefail\n${devShKeyLines()}\necho reached`], { cwd: dir, encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.doesNotMatch(r.stdout, /reached/);
  assert.match(r.stderr, /KIEAI_APIKEY is not set in \.dev\.vars/);
});
