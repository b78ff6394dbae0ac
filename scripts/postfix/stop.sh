#!/usr/bin/env bash
# Stops a Postfix instance started with start.sh <dir> (waits for it; harmless if not running).
set -uo pipefail
DIR="$1"
POSTFIX="${OFFCHANNEL_POSTFIX:-/usr/sbin/postfix}"
[ -f "$DIR/etc/main.cf" ] || exit 0
"$POSTFIX" -c "$DIR/etc" stop >/dev/null 2>&1 || true
for _ in $(seq 1 50); do
  [ -f "$DIR/spool/pid/master.pid" ] || exit 0
  PID="$(tr -d ' ' < "$DIR/spool/pid/master.pid")"
  kill -0 "$PID" 2>/dev/null || exit 0
  sleep 0.1
done
"$POSTFIX" -c "$DIR/etc" abort >/dev/null 2>&1 || true
