#!/usr/bin/env bash
# One idempotent setup path: installs what this machine lacks and skips what is
# already there. Safe to run any number of times.
#   - the wasm32 Rust target
#   - the wasm-bindgen CLI of exactly the version in Cargo.lock (scripts/build.sh runs it)
#   - npm packages from package-lock.json (wrangler, esbuild, binaryen, miniflare, playwright-core)
#   - .dev.vars with random local secrets (from .dev.vars.example)
#   - local D1 migrations
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $BINDGEN_VERSION (a few minutes, once)"
  # Without --locked: the registry mirror lags and --locked fails on webpki-roots.
  cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION" --force
fi

if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages from package-lock.json"
  npm ci --no-audit --no-fund
fi

if [ ! -f .dev.vars ]; then
  say "writing .dev.vars with random local secrets"
  rand() { node -e 'process.stdout.write(require("crypto").randomBytes(24).toString("base64url"))'; }
  sed -e "s|^ADMIN_TOKEN=.*|ADMIN_TOKEN=$(rand)|" -e "s|^FILE_URL_SECRET=.*|FILE_URL_SECRET=$(rand)|" .dev.vars.example > .dev.vars
fi

export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
say "applying D1 migrations to the local database"
# CI=true: apply without the interactive confirmation (a local database only).
CI=true npx wrangler d1 migrations apply DB --local --persist-to .wrangler/state >/dev/null
say "ready"
