#!/usr/bin/env bash
# Downloads Ceph (radosgw, ceph-mon, ceph-osd and their dependencies) from Debian's package
# archive WITHOUT installing anything, and unpacks it into a cache directory:
#   $OFFCHANNEL_CEPH_CACHE (default ~/.cache/offchannel/ceph)/<version>/root
# Runs only what is missing, so repeated CI runs on one machine reuse the download.
# Prints the unpacked root directory on its last line.
set -euo pipefail
CACHE=${OFFCHANNEL_CEPH_CACHE:-$HOME/.cache/offchannel/ceph}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "fetch.sh: apt-get is not available; Ceph for the S3 tests comes from Debian's packages (Debian/Ubuntu only). Set OFFCHANNEL_S3_ENDPOINT to test against another S3 server." >&2
  exit 1
fi
version=$(apt-cache policy radosgw 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  $SUDO apt-get update -qq >&2
  version=$(apt-cache policy radosgw | awk '/Candidate:/ {print $2}')
fi
[ -n "$version" ] && [ "$version" != "(none)" ] || { echo "fetch.sh: no radosgw package in the configured Debian archive" >&2; exit 1; }
dir="$CACHE/$version"
if [ ! -f "$dir/root/.unpacked" ]; then
  mkdir -p "$dir/debs/partial" "$dir/root"
  # A download-only install needs root for apt's lock; it installs nothing.
  $SUDO apt-get install --download-only --no-install-recommends -y -q -o Dir::Cache::archives="$dir/debs" radosgw ceph-mon ceph-osd >&2
  for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
  touch "$dir/root/.unpacked"
fi
echo "$dir/root"
