#!/usr/bin/env bash
# Install the Node.js tools the test suite compares mgsim with, when they are missing:
#
#   Stoplight Prism   (npm, pinned in benchmarks/package-lock.json) an independent OpenAPI
#                     mock with its own validator (tests/test_prism_agreement.py, and the
#                     control-plane benchmark); `npm ci` puts it in benchmarks/node_modules.
#
# This script never fails `make test`: without npm, or when the install fails (no registry,
# a timeout), it says so and the Prism tests are skipped, saying why. A stamp newer than the
# lock file means the install is current, so a second `make test` costs nothing.
# MGSIM_NPM_TIMEOUT (seconds, default 600) bounds the install.
set -uo pipefail
cd "$(dirname "$0")/.."

say() { echo "node-deps: $*" >&2; }
lock=benchmarks/package-lock.json
stamp=benchmarks/node_modules/.mgsim-installed
if [ -x benchmarks/node_modules/.bin/prism ] && [ "$stamp" -nt "$lock" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  say "Node.js and npm are missing, so Stoplight Prism is not installed; install them (apt-get install nodejs npm) and the Prism tests run instead of skipping"
  exit 0
fi
say "installing Stoplight Prism into benchmarks/node_modules (npm ci --prefix benchmarks)"
log=$(mktemp)
if timeout "${MGSIM_NPM_TIMEOUT:-600}" npm ci --prefix benchmarks --no-audit --no-fund \
    --loglevel=error >"$log" 2>&1 && [ -x benchmarks/node_modules/.bin/prism ]; then
  touch "$stamp"
else
  say "npm ci failed, so the Prism tests are skipped; its last lines:"
  tail -n 5 "$log" >&2
fi
rm -f "$log"
exit 0
