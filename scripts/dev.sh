#!/usr/bin/env bash
# Sets everything up and runs the service locally: the Kie simulator on :8790
# and the Worker (wrangler dev, local D1/KV/R2, cron via /__scheduled) on :8787.
# No Kie key needed. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh

export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
SIM_PORT=${KIE_SIM_PORT:-8790}
PORT=${PORT:-8787}
# The key goes through the environment, never the command line (process lists).
# It is read with the rules wrangler applies to .dev.vars (quotes, `export`,
# comments): the simulator must expect exactly the key the Worker is given.
# (The trailing x keeps a value's final newlines, which $(...) would drop.)
export KIE_SIM_API_KEY
KIE_SIM_API_KEY=$(node scripts/dev-vars.mjs KIEAI_APIKEY .dev.vars && printf x)
KIE_SIM_API_KEY=${KIE_SIM_API_KEY%x}
node sim/kie-sim.mjs --port "$SIM_PORT" &
SIM_PID=$!
trap 'kill $SIM_PID 2>/dev/null || true' EXIT
# Make sure it is our simulator (it knows our key) that answers on that port.
if ! node -e '
  const [url, key] = [process.argv[1], process.env.KIE_SIM_API_KEY];
  const deadline = Date.now() + 10000;
  (async () => {
    while (Date.now() < deadline) {
      try {
        const r = await fetch(url, { headers: { authorization: `Bearer ${key}` } });
        if ((await r.json()).code === 200) process.exit(0);
      } catch {}
      await new Promise((r) => setTimeout(r, 100));
    }
    process.exit(1);
  })();' "http://127.0.0.1:$SIM_PORT/api/v1/chat/credit" || ! kill -0 "$SIM_PID" 2>/dev/null; then
  echo "The Kie simulator did not start on port $SIM_PORT (is the port in use? set KIE_SIM_PORT)" >&2
  exit 1
fi

echo "Kie simulator: http://127.0.0.1:$SIM_PORT   Worker: http://127.0.0.1:$PORT   (admin token: see .dev.vars)" >&2
npx wrangler dev --port "$PORT" --ip 127.0.0.1 --persist-to .wrangler/state --test-scheduled \
  --var "KIE_API_BASE:http://127.0.0.1:$SIM_PORT" --var "PUBLIC_BASE_URL:http://127.0.0.1:$PORT" "$@"
