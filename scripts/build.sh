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
touch "$stamp"
