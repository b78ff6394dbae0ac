#!/usr/bin/env bash
# Makes sure Postfix is installed for the delivery tests (Debian's `postfix` package; nothing is
# downloaded from anywhere but the Debian archive). The package's own system instance is never
# started or configured here: the tests run throwaway instances with start.sh.
# Prints the path of the postfix command on its last line. $OFFCHANNEL_POSTFIX, when set, is used as is.
set -euo pipefail
if [ -n "${OFFCHANNEL_POSTFIX:-}" ]; then echo "$OFFCHANNEL_POSTFIX"; exit 0; fi
if [ -x /usr/sbin/postfix ]; then echo /usr/sbin/postfix; exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure.sh: no postfix found and apt-get is not available; install Postfix and set OFFCHANNEL_POSTFIX=/path/to/postfix" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "ensure.sh: installing Debian's postfix for the delivery tests (apt-get)" >&2
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postfix openssl >&2
echo /usr/sbin/postfix
