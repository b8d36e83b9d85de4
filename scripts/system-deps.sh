#!/usr/bin/env bash
# Install the Debian packages the test suite uses, when they are missing.
#
#   espeak-ng              regenerating and checking the sample calls (tests/test_synth.py, ...)
#   chromium,
#   chromium-driver        the browser tests of the notebooks and the app (tests/test_browser.py)
#   sip-tester (sipp)      an independent SIPREC client (SBC) against `mgsim serve`
#   tshark                 decoding every capture a test makes (SIP, RTP, WebSocket)
#   ffmpeg (ffprobe)       reading the Kinesis MKV fragments mgsim serves
#
# This script never fails `make test`: when a package cannot be installed (not root, no
# apt-get, no registry), it says so and the tests that need it are skipped, each naming the
# missing program. When another process holds the apt lock, it waits for it (up to
# MGSIM_APT_LOCK_WAIT seconds, default 300) instead of giving up at once.
set -uo pipefail

declare -A wants=(
  [espeak-ng]="command -v espeak-ng"
  [chromium]="test -x /usr/bin/chromium"
  [chromium-driver]="test -x /usr/bin/chromedriver"
  [sip-tester]="command -v sipp"
  [tshark]="command -v tshark"
  [ffmpeg]="command -v ffprobe"
)
missing=()
for pkg in espeak-ng chromium chromium-driver sip-tester tshark ffmpeg; do
  eval "${wants[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

say() { echo "system-deps: $*" >&2; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "missing ${missing[*]}; install them with your package manager (the tests that need them are skipped, each saying why)"
  exit 0
fi

say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
wait_s=${MGSIM_APT_LOCK_WAIT:-300}
apt_opts=(-o "DPkg::Lock::Timeout=${wait_s}")
if ! apt-get "${apt_opts[@]}" update -qq >/dev/null; then
  say "apt-get update failed; trying to install from the lists already on this machine"
fi
# wireshark-common asks whether non-root users may capture; the answer does not matter here.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
if ! apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  # One package that cannot be had must not cost the others: try them one at a time.
  for pkg in "${missing[@]}"; do
    apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 \
      || say "could not install $pkg; the tests that need it are skipped"
  done
fi
exit 0
