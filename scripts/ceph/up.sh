#!/usr/bin/env bash
# Starts a throwaway single-node Ceph on 127.0.0.1 — one monitor, one in-memory (memstore) OSD
# and radosgw — from the packages fetch.sh unpacked, with no root services and no systemd.
# Usage: up.sh <run-dir> [rgw-port]   (the run dir is created fresh; everything lives in it)
# Writes <run-dir>/env (S3 endpoint, access key, secret) and prints the endpoint.
# Stop it with down.sh <run-dir>, which kills exactly the processes recorded here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
run=${1:?usage: up.sh <run-dir> [rgw-port]}
port=${2:-7480}
root=$("$here/fetch.sh" | tail -n 1)
[ ! -e "$run" ] || { echo "up.sh: $run already exists; choose a new run directory" >&2; exit 1; }
mkdir -p "$run"/{mon,osd,run,log}
run=$(cd "$run" && pwd)
export LD_LIBRARY_PATH=$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/ceph:$root/usr/lib
export PYTHONPATH=$root/usr/lib/python3/dist-packages
export PATH=$root/usr/bin:$PATH
python=/usr/bin/python3   # Debian's interpreter: the ceph CLI's compiled modules are built for it
fsid=$(cat /proc/sys/kernel/random/uuid)
mon_port=$((port + 10))   # v2 monitor port; keeps several clusters on one host apart
cat > "$run/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
plugin dir = $root/usr/lib/x86_64-linux-gnu/ceph
erasure code dir = $root/usr/lib/x86_64-linux-gnu/ceph/erasure-code
osd class dir = $root/usr/lib/x86_64-linux-gnu/rados-classes
run dir = $run/run
log file = $run/log/\$name.log
admin socket = $run/run/\$name.asok
pid file = $run/run/\$name.pid
mon data = $run/mon/\$cluster-\$id
osd data = $run/osd
osd objectstore = memstore
memstore device bytes = 4294967296
osd max object name len = 460
osd max object namespace len = 64
ms bind ipv6 = false
# radosgw asks the monitor for a secure-only connection by default, impossible with auth = none
ms mon client mode = crc secure
[client.rgw.a]
# tcp_nodelay: without it small responses (object listings) wait ~40 ms for a delayed ACK.
rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1
rgw dns name = localhost
CONF
conf=(-c "$run/ceph.conf")
monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$run/monmap" >/dev/null
ceph-mon "${conf[@]}" --mkfs -i a --monmap "$run/monmap"
ceph-mon "${conf[@]}" -i a
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
id=$($python "$root/usr/bin/ceph" "${conf[@]}" osd new "$osd_uuid")
ceph-osd "${conf[@]}" -i "$id" --mkfs --osd-uuid "$osd_uuid" 2>>"$run/log/mkfs.log"
ceph-osd "${conf[@]}" -i "$id" 2>>"$run/log/osd-start.log"
for _ in $(seq 60); do $python "$root/usr/bin/ceph" "${conf[@]}" osd stat 2>/dev/null | grep -q '1 up' && break; sleep 0.5; done
radosgw "${conf[@]}" -n client.rgw.a
for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.5; done
curl -s -o /dev/null "http://127.0.0.1:$port/" || { echo "up.sh: radosgw did not come up; see $run/log" >&2; exit 1; }
access=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
radosgw-admin "${conf[@]}" user create --uid=offchannel-test --display-name=offchannel-test --access-key="$access" --secret="$secret" >/dev/null
printf 'OFFCHANNEL_S3_ENDPOINT=http://127.0.0.1:%s\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nAWS_REGION=us-east-1\n' "$port" "$access" "$secret" > "$run/env"
chmod 600 "$run/env"
echo "http://127.0.0.1:$port"
