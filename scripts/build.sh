#!/usr/bin/env bash
# Builds the Worker (wasm + JS shim) into build/ with worker-build, using the
# locally installed wasm-bindgen / esbuild / wasm-opt when they exist (no
# downloads), and skipping the build when nothing changed since the last one.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=build/.stamp
if [ -f "$stamp" ] && [ -f build/index.js ] && [ -z "${FORCE_BUILD:-}" ]; then
  # A new commit counts too: /api/health reports the commit the wasm was built from.
  newer=$(find src web migrations Cargo.toml Cargo.lock build.rs .git/HEAD .git/refs/heads -newer "$stamp" -print -quit 2>/dev/null || true)
  if [ -z "$newer" ]; then
    echo "build: up to date ($(wc -c < build/index_bg.wasm 2>/dev/null || echo ?) bytes of wasm)" >&2
    exit 0
  fi
fi

if command -v wasm-bindgen >/dev/null 2>&1; then export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"; fi
if [ -x node_modules/.bin/esbuild ]; then export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"; fi
if [ -x node_modules/.bin/wasm-opt ]; then export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"; fi

worker-build --release >&2

# Optimise for size and drop the function-name section: the Worker may not
# panic (clippy denies it), so names in panic stacks buy nothing, and they are
# ~15% of the gzip bundle. The feature set is the one workerd supports (the
# same worker-build passes), so no newer encoding is emitted.
wasm_opt=${WASM_OPT_BIN:-$(command -v wasm-opt || true)}
if [ -n "$wasm_opt" ]; then
  "$wasm_opt" build/index_bg.wasm -Oz --strip-debug --strip-producers \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
    --enable-multivalue --enable-reference-types --enable-exception-handling \
    -o build/index_bg.wasm
else
  echo "build: wasm-opt not found; the bundle is not size-optimised (npm ci installs binaryen)" >&2
fi
touch "$stamp"
