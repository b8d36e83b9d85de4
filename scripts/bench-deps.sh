#!/usr/bin/env bash
# Install what the benchmarks need beyond the virtualenv, when it is missing:
#   wrk    (Debian package): the HTTP load generator of the control-plane benchmark;
#   Prism  (npm, pinned in benchmarks/package-lock.json): the mock it is compared with,
#          installed into benchmarks/node_modules by `npm ci`; needs Node.js and npm.
# Without root or apt-get it only says what is missing; the benchmark then reports it.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "bench-deps: missing ${missing[*]}; install them with your package manager" >&2
  else
    echo "bench-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

bash scripts/node-deps.sh
