#!/usr/bin/env bash
# Benchmark: setup (idempotent), build (skipped when up to date), then the
# local-stack benchmark. Options are passed to scripts/bench.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
node scripts/bench.mjs "$@"
