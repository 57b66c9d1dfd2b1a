#!/usr/bin/env bash
# Builds the Worker into build/: index_bg.wasm and index.js (src/entry.mjs
# bundled with wasm-bindgen's glue). Four steps, each a pinned tool that
# scripts/setup.sh installs: cargo, the wasm-bindgen CLI (its version equals
# Cargo.lock's), wasm-opt (npm binaryen), esbuild (npm). Skips the build when
# nothing changed since the last one.
#
# These are worker-build's steps, with our own entry point instead of its
# Proxy-wrapped WorkerEntrypoint (see src/entry.mjs and README "Benchmark").
# PROFILE_NAMES=1 keeps the function names, for CPU profiles.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=build/.stamp
if [ -f "$stamp" ] && [ -f build/index.js ] && [ -z "${FORCE_BUILD:-}" ]; then
  # A new commit counts too: /api/health reports the commit the wasm was built from.
  newer=$(find src web migrations Cargo.toml Cargo.lock build.rs scripts/build.sh .git/HEAD .git/refs/heads -newer "$stamp" -print -quit 2>/dev/null || true)
  if [ -z "$newer" ]; then
    echo "build: up to date ($(wc -c < build/index_bg.wasm 2>/dev/null || echo ?) bytes of wasm)" >&2
    exit 0
  fi
fi

bindgen=${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen || true)}
wasm_opt=${WASM_OPT_BIN:-node_modules/.bin/wasm-opt}
esbuild=${ESBUILD_BIN:-node_modules/.bin/esbuild}
for tool in "$bindgen" "$wasm_opt" "$esbuild"; do
  if [ -z "$tool" ] || ! [ -x "$tool" ]; then
    echo "build: ${tool:-wasm-bindgen} is missing; run bash scripts/setup.sh" >&2
    exit 1
  fi
done

# 1. The crate, as wasm. WASM_BINDGEN_USE_JS_SYS=1: wasm-bindgen's macros use
#    js_sys' futures, as workers-rs expects (worker-build sets the same).
WASM_BINDGEN_USE_JS_SYS=1 cargo build --lib --release --target wasm32-unknown-unknown >&2

# 2. JS glue. The reset-state function and the abort handler are what
#    src/entry.mjs uses to start a fresh instance after a trap.
gen=build/.gen
rm -rf "$gen"
"$bindgen" target/wasm32-unknown-unknown/release/banana_worker.wasm --out-dir "$gen" --out-name index \
  --target module --no-typescript --experimental-reset-state-function --force-enable-abort-handler

# 3. Optimise for size and drop the function-name section: the Worker may not
#    panic (clippy denies it), so names in panic stacks buy nothing, and they
#    are ~15% of the gzip bundle. The feature set is the one workerd supports,
#    so no newer encoding is emitted.
strip="--strip-debug --strip-producers"
if [ -n "${PROFILE_NAMES:-}" ]; then strip="--debuginfo"; fi
# shellcheck disable=SC2086
"$wasm_opt" "$gen/index_bg.wasm" -Oz $strip \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
  --enable-multivalue --enable-reference-types --enable-exception-handling \
  -o build/index_bg.wasm

# 4. One ES module: our entry point and the glue; the wasm stays a separate
#    module that workerd compiles (`import wasm from "./index_bg.wasm"`).
cp src/entry.mjs "$gen/entry.mjs"
"$esbuild" "$gen/entry.mjs" --bundle --format=esm --minify --log-level=warning \
  --external:./index_bg.wasm '--external:cloudflare:*' --outfile="$gen/bundle.js"
sed 's/import source /import /' "$gen/bundle.js" > build/index.js
rm -rf "$gen" build/worker build/package.json
touch "$stamp"
echo "build: $(wc -c < build/index_bg.wasm) bytes of wasm, $(wc -c < build/index.js) bytes of JS" >&2
