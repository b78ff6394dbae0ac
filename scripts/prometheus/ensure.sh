#!/usr/bin/env bash
# Makes sure a Prometheus server is installed for the metrics test (Debian's `prometheus`
# package; nothing is downloaded from anywhere but the Debian archive). The package's own system
# service is never started or configured here: the test runs a throwaway server on loopback
# with its own config and a temporary storage directory.
# Prints the path of the prometheus command on its last line. $OFFCHANNEL_PROMETHEUS, when set, is used as is.
set -euo pipefail
if [ -n "${OFFCHANNEL_PROMETHEUS:-}" ]; then echo "$OFFCHANNEL_PROMETHEUS"; exit 0; fi
if [ -x /usr/bin/prometheus ]; then echo /usr/bin/prometheus; exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure.sh: no prometheus found and apt-get is not available; install Prometheus and set OFFCHANNEL_PROMETHEUS=/path/to/prometheus" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "ensure.sh: installing Debian's prometheus for the metrics test (apt-get)" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >&2
echo /usr/bin/prometheus
