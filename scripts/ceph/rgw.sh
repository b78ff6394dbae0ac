#!/usr/bin/env bash
# Starts or stops one extra radosgw of the cluster in <run-dir> (made by up.sh), on its own
# port: the outage tests stop and restart it while the cluster (and its main radosgw) keep running.
# Usage: rgw.sh <run-dir> start <name> <port>
#        rgw.sh <run-dir> stop <name>
set -euo pipefail
run=${1:?usage: rgw.sh <run-dir> start|stop <name> [port]}
action=${2:?usage: rgw.sh <run-dir> start|stop <name> [port]}
name=${3:?usage: rgw.sh <run-dir> start|stop <name> [port]}
[[ "$name" =~ ^[a-z][a-z0-9]*$ ]] || { echo "rgw.sh: name must be lowercase letters and digits" >&2; exit 2; }
pidfile="$run/run/client.rgw.$name.pid"
case "$action" in
  start)
    port=${4:?usage: rgw.sh <run-dir> start <name> <port>}
    here=$(cd "$(dirname "$0")" && pwd)
    root=$("$here/fetch.sh" | tail -n 1)
    export LD_LIBRARY_PATH=$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/ceph:$root/usr/lib
    "$root/usr/bin/radosgw" -c "$run/ceph.conf" -n "client.rgw.$name" --rgw-frontends "beast endpoint=127.0.0.1:$port tcp_nodelay=1"
    for _ in $(seq 240); do curl -s -o /dev/null "http://127.0.0.1:$port/" && exit 0; sleep 0.25; done
    echo "rgw.sh: radosgw $name did not come up on port $port; see $run/log" >&2
    exit 1
    ;;
  stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$run/ceph.conf" || { rm -f "$pidfile"; exit 0; }
    kill "$pid"
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; exit 0; }; sleep 0.25; done
    kill -9 "$pid"
    rm -f "$pidfile"
    ;;
  *) echo "rgw.sh: action must be start or stop" >&2; exit 2 ;;
esac
