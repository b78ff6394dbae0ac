#!/usr/bin/env bash
# Stops the Ceph started by up.sh in <run-dir>: kills exactly the daemons whose pid files it
# wrote there, waits for them to exit, and removes the run directory.
set -uo pipefail
run=${1:?usage: down.sh <run-dir>}
[ -d "$run/run" ] || exit 0
pids=()
for file in "$run"/run/*.pid; do
  [ -f "$file" ] || continue
  pid=$(cat "$file")
  # Only kill a process that is a Ceph daemon started with this run's config.
  if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$run/ceph.conf"; then
    kill "$pid" 2>/dev/null && pids+=("$pid")
  fi
done
for _ in $(seq 40); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 0.25
done
for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
rm -rf "$run"
