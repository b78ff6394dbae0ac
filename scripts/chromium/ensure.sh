#!/usr/bin/env bash
# Makes sure headless Chromium is available for the HTML transcript tests (Debian's `chromium`
# package, driven by playwright-core; nothing is downloaded from anywhere but the Debian archive).
# Prints the browser's path on its last line. $OFFCHANNEL_CHROMIUM, when set, is used as is.
set -euo pipefail
if [ -n "${OFFCHANNEL_CHROMIUM:-}" ]; then echo "$OFFCHANNEL_CHROMIUM"; exit 0; fi
for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure.sh: no chromium found and apt-get is not available; install Chromium and set OFFCHANNEL_CHROMIUM=/path/to/chromium" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "ensure.sh: installing Debian's chromium for the HTML transcript tests (apt-get)" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-color-emoji >&2
echo /usr/bin/chromium
