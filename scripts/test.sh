#!/usr/bin/env bash
# The whole test suite, from a fresh clone: setup (idempotent), native unit
# tests of the pure core, the simulator's own tests, one wasm build, then the
# end-to-end tests against the real Worker in workerd (+ the browser test).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian's chromium for the browser test (once)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

echo "== formatting (rustfmt.toml)" >&2
cargo fmt --check

echo "== unit tests (native, pure core)" >&2
cargo test --quiet

echo "== lints (the Worker may not unwrap, expect, panic or index)" >&2
cargo clippy --quiet --target wasm32-unknown-unknown -- -D warnings

echo "== build the Worker once" >&2
bash scripts/build.sh

echo "== simulator + end-to-end tests (workerd via Miniflare, local D1/KV/R2)" >&2
rm -rf test-artifacts
# A file's time limit is only a safety net: every wait inside the tests
# (requests, workerd start, migrations, tasks) has its own, shorter one.
node --test --test-concurrency=2 --test-timeout=300000 sim/ tests/tools/ tests/e2e/
