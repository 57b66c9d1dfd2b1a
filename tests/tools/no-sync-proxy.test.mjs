// Tests and the benchmark reach workerd over async HTTP only. Miniflare's
// binding proxies answer synchronous calls through Atomics.wait, which loses
// replies under load (see tests/e2e/harness.mjs): none of them may come back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const PROXY = /\.(getBindings|getD1Database|getKVNamespace|getR2Bucket|getWorker|getCaches|getDurableObjectNamespace|getQueueProducer|getSecretsStoreSecretAPI|getImagesBinding)\s*\(|getPlatformProxy/;

function files(dir) {
  return readdirSync(path.join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.m?js$/.test(e.name))
    .map((e) => path.relative(root, path.join(e.parentPath ?? e.path, e.name)));
}

test("no test, simulator or benchmark uses Miniflare's synchronous binding proxy", () => {
  const offenders = [];
  const self = path.relative(root, import.meta.filename);
  for (const file of [...files('tests'), ...files('sim'), 'scripts/bench.mjs'].filter((f) => f !== self)) {
    readFileSync(path.join(root, file), 'utf8').split('\n').forEach((line, i) => {
      if (PROXY.test(line) && !line.trim().startsWith('//')) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(offenders, []);
});
