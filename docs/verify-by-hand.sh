#!/usr/bin/env bash
# Verify an offchannel file-system archive with nothing but bash, coreutils, sha256sum and jq
# (and openssl, to check signed checkpoints and host attestations) — no offchannel code. This is the procedure of
# docs/storage-format.md and docs/verification.md, runnable. It is slow (several processes per
# record): use it to convince yourself, and `offchannel verify` for large archives.
# Exit 0 when intact, 1 at the first failure (printed with stream and seq).
#
#   docs/verify-by-hand.sh ./demo-archive [<verifier key>|<file holding it> [<witness key> …]]
#
# With witness verifier keys (offchannel keygen --witness) after the log's key, step 7 also
# requires each stream's newest checkpoint to carry a valid cosignature (c2sp.org/tlog-cosignature)
# from every witness named — or, with an archive log, to be an entry of its newest checkpoint,
# which every witness named cosigned (step 0) — and to cover every record.
set -euo pipefail
archive=${1:?usage: verify-by-hand.sh <archive-dir> [verifier-key [witness-key …]]}
vkey=${2:-}
if [ -n "$vkey" ] && [ -f "$vkey" ]; then vkey=$(head -n1 "$vkey"); fi
witnesses=()
for wkey in "${@:3}"; do
  if [ -f "$wkey" ]; then wkey=$(head -n1 "$wkey"); fi
  witnesses+=("$wkey")
done
cd "$archive"
zero=0000000000000000000000000000000000000000000000000000000000000000
fail() { echo "FAIL $*"; exit 1; }
# The c2sp.org/tlog-tiles path of tile index $1 (below a level): groups of three digits, every
# group but the last prefixed with "x" — 67 → 067, 1234067 → x001/x234/067.
tile_path() {
  local n=$1 path
  path=$(printf '%03d' $((n % 1000)))
  n=$((n / 1000))
  while [ "$n" -gt 0 ]; do
    path=$(printf 'x%03d' $((n % 1000)))/$path
    n=$((n / 1000))
  done
  printf '%s' "$path"
}

# 1. Every blob is named by the SHA-256 of its bytes.
for blob in blobs/sha256/*; do
  [ -e "$blob" ] || continue
  [ "$(sha256sum < "$blob" | cut -d' ' -f1)" = "$(basename "$blob")" ] || fail "blob $blob: content does not hash to its name"
done

# Hex of SHA-256(0x00 ‖ line): a record's Merkle leaf hash (RFC 9162).
leaf() { { printf '\x00'; printf '%s' "$1"; } | sha256sum | cut -d' ' -f1; }
# Hex of SHA-256(0x01 ‖ left ‖ right), from two hex hashes.
node() { printf "\\x01$(printf '%s%s' "$1" "$2" | sed 's/../\\x&/g')" | sha256sum | cut -d' ' -f1; }
# MTH of leaves[$1..$2): split at the largest power of two below the size (RFC 9162 §2.1.1).
mth() {
  local start=$1 end=$2 n=$(($2 - $1)) k=1
  if [ "$n" -eq 1 ]; then echo "${leaves[$start]}"; return; fi
  while [ $((k * 2)) -lt "$n" ]; do k=$((k * 2)); done
  node "$(mth "$start" $((start + k)))" "$(mth $((start + k)) "$end")"
}

# Checks that witness key $1 cosigned the checkpoint note $2 (its first three lines: $3): the
# copy <size>.cosigned-<witness key id> holds the same lines and a cosignature line
# "— <witness> base64(key id ‖ 8-byte big-endian time ‖ Ed25519 signature)" over
# "cosignature/v1\ntime <time>\n" followed by those lines. Prints the time. $4 names it in failures.
cosigned() {
  local wkey=$1 note=$2 text=$3 what=$4 wname wrest wid copy time dir
  wname=${wkey%%+*}; wrest=${wkey#*+}; wid=${wrest%%+*}; dir=$(mktemp -d)
  { printf '\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00'; printf '%s' "${wrest#*+}" | base64 -d | tail -c 32; } > "$dir/wkey.der"
  copy="${note%.note}.cosigned-$wid"
  [ -e "$copy" ] || fail "$what has no cosignature by witness $wname"
  cmp -s <(head -n 3 "$copy") "$text" || fail "$what: witness $wname cosigned another checkpoint at this size (a fork)"
  grep -F "— $wname " "$copy" | head -n1 | cut -d' ' -f3 | base64 -d > "$dir/cosignature"
  [ "$(head -c 4 "$dir/cosignature" | od -An -tx1 | tr -d ' \n')" = "$wid" ] || fail "$what: the cosignature of $wname names another key id"
  time=$(head -c 12 "$dir/cosignature" | tail -c 8 | od -An -tu8 --endian=big | tr -d ' ')
  { printf 'cosignature/v1\ntime %s\n' "$time"; cat "$text"; } > "$dir/cosigned"
  tail -c 64 "$dir/cosignature" > "$dir/wsig"
  openssl pkeyutl -verify -pubin -inkey "$dir/wkey.der" -keyform DER -rawin -in "$dir/cosigned" -sigfile "$dir/wsig" > /dev/null 2>&1 || fail "$what: the cosignature of witness $wname does not verify"
  rm -rf "$dir"
  date -u -d "@$time" +%Y-%m-%dT%H:%M:%SZ
}

# 0. With witness keys and an archive log (signing.archiveLog, docs/witnessing.md): its newest
#    checkpoint is signed by the key with the key's name as origin, its entries (the level-0
#    tiles) hash to its root, and every witness cosigned it. Step 7 then asks, per stream, that
#    the newest checkpoint be one of its entries: SHA-256(0x00 ‖ the .note file). Tile paths
#    past index 999 (logs over 256,000 entries) have "x" segments: see tile_path.
archive_entries=""
if [ -n "$vkey" ] && [ "${#witnesses[@]}" -gt 0 ] && [ -d checkpoints/archive-log ]; then
  name=${vkey%%+*}; rest=${vkey#*+}; id=${rest%%+*}
  work=$(mktemp -d)
  { printf '\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00'; printf '%s' "${rest#*+}" | base64 -d | tail -c 32; } > "$work/key.der"
  anote=$(ls checkpoints/archive-log/*.note | sort | tail -n1)
  head -n 3 "$anote" > "$work/atext"
  [ "$(sed -n 1p "$work/atext")" = "$name" ] || fail "archive log: its newest checkpoint's origin is not $name"
  asize=$(sed -n 2p "$work/atext"); aroot=$(sed -n 3p "$work/atext" | base64 -d | od -An -tx1 | tr -d ' \n')
  grep -F "— $name " "$anote" | head -n1 | cut -d' ' -f3 | base64 -d > "$work/signature"
  [ "$(head -c 4 "$work/signature" | od -An -tx1 | tr -d ' \n')" = "$id" ] || fail "archive log size $asize: not signed by $name"
  tail -c 64 "$work/signature" > "$work/sig"
  openssl pkeyutl -verify -pubin -inkey "$work/key.der" -keyform DER -rawin -in "$work/atext" -sigfile "$work/sig" > /dev/null 2>&1 || fail "archive log size $asize: the signature does not verify"
  leaves=()
  full=$((asize / 256)); part=$((asize % 256))
  for ((t = 0; t < full; t++)); do mapfile -t -O "${#leaves[@]}" leaves < <(xxd -p -c 32 "tiles/archive-log/0/$(tile_path "$t")"); done
  [ "$part" -eq 0 ] || mapfile -t -O "${#leaves[@]}" leaves < <(xxd -p -c 32 "tiles/archive-log/0/$(tile_path "$full").p/$part")
  [ "${#leaves[@]}" -eq "$asize" ] && [ "$(mth 0 "$asize")" = "$aroot" ] || fail "archive log size $asize: its entries do not hash to its signed root"
  for wkey in "${witnesses[@]}"; do
    echo "ok archive log: checkpoint at size $asize cosigned by ${wkey%%+*} at $(cosigned "$wkey" "$anote" "$work/atext" "archive log size $asize")"
  done
  archive_entries=$(printf '%s\n' "${leaves[@]}")
  rm -rf "$work"
fi

records=0
for dir in streams/*/; do
  [ -d "$dir" ] || continue
  stream=$(basename "$dir")
  expected=1
  prev=$zero
  leaves=()
  for segment in "$dir"*.jsonl; do
    # 2. Segments are named by the seq of their first record (16 digits) and follow on.
    first=$((10#$(basename "$segment" .jsonl)))
    [ "$first" -eq "$expected" ] || fail "$stream seq $expected: segment $(basename "$segment") starts at seq $first"
    # 3. A sealed segment still has exactly the bytes its seal recorded.
    seal="${segment%.jsonl}.seal.json"
    if [ -e "$seal" ]; then
      [ "$(sha256sum < "$segment" | cut -d' ' -f1)" = "$(jq -r .sha256 "$seal")" ] ||
        fail "$stream: $(basename "$segment") does not match the sha256 in its seal (truncated or altered)"
    fi
    # 4. Each line is one record: seq counts up by one, prev is the SHA-256 of the previous
    #    line's bytes (without its newline), and every blob it names exists with its size.
    while IFS= read -r line; do
      fields=$(jq -r '[.seq, .prev, .stream] | @tsv' <<<"$line") || fail "$stream seq $expected: line is not JSON"
      IFS=$'\t' read -r seq record_prev record_stream <<<"$fields"
      [ "$record_stream" = "$stream" ] || fail "$stream seq $expected: record belongs to stream $record_stream"
      [ "$seq" = "$expected" ] || fail "$stream seq $expected: found seq $seq"
      [ "$record_prev" = "$prev" ] || fail "$stream seq $((expected - 1)): its hash is not the prev of seq $expected (one of the two was altered)"
      while IFS=$'\t' read -r sha size; do
        [ -n "$sha" ] || continue
        [ -e "blobs/sha256/$sha" ] || fail "$stream seq $seq: blob $sha is missing"
        [ "$(wc -c < "blobs/sha256/$sha")" -eq "$size" ] || fail "$stream seq $seq: blob $sha has the wrong size"
      done < <(jq -r '[.raw, .textBlob, ((.attachments // [])[] | select(.status == "stored"))] | map(select(. != null)) | .[] | [.sha256, .size] | @tsv' <<<"$line")
      prev=$(printf '%s' "$line" | sha256sum | cut -d' ' -f1)
      [ -z "$vkey" ] || leaves+=("$(leaf "$line")")
      expected=$((expected + 1))
      records=$((records + 1))
    done < "$segment"
  done
  echo "ok $stream: $((expected - 1)) records, head $prev"

  # 5. With a verifier key: every checkpoint note carries a valid Ed25519 signature by that key
  #    (C2SP signed note) and signs the Merkle root of the stream's first <size> records.
  [ -n "$vkey" ] || continue
  name=${vkey%%+*}
  rest=${vkey#*+}
  id=${rest%%+*}
  work=$(mktemp -d)
  { printf '\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00'; printf '%s' "${rest#*+}" | base64 -d | tail -c 32; } > "$work/key.der"
  count=0
  for note in checkpoints/"$stream"/*.note; do
    [ -e "$note" ] || continue
    head -n 3 "$note" > "$work/text"
    origin=$(sed -n 1p "$work/text"); size=$(sed -n 2p "$work/text"); root=$(sed -n 3p "$work/text" | base64 -d | od -An -tx1 | tr -d ' \n')
    [ "$origin" = "$name/$stream" ] || fail "$stream: checkpoint $(basename "$note") has origin $origin"
    signature=$(grep -F "— $name " "$note" | head -n1 | cut -d' ' -f3)
    [ -n "$signature" ] || fail "$stream: checkpoint at size $size is not signed by $name"
    printf '%s' "$signature" | base64 -d > "$work/signature"
    [ "$(head -c 4 "$work/signature" | od -An -tx1 | tr -d ' \n')" = "$id" ] || fail "$stream: checkpoint at size $size names another key id"
    tail -c 64 "$work/signature" > "$work/sig"
    openssl pkeyutl -verify -pubin -inkey "$work/key.der" -keyform DER -rawin -in "$work/text" -sigfile "$work/sig" > /dev/null 2>&1 || fail "$stream seq $size: the checkpoint signature does not verify"
    [ "$size" -le "${#leaves[@]}" ] || fail "$stream seq $((${#leaves[@]} + 1)): a checkpoint was signed at size $size but only ${#leaves[@]} records remain"
    [ "$(mth 0 "$size")" = "$root" ] || fail "$stream seq $size: records 1–$size do not hash to the root signed at size $size"
    count=$((count + 1))
  done
  [ "$count" -gt 0 ] || [ "${#leaves[@]}" -eq 0 ] || fail "$stream: records but no checkpoint"
  echo "ok $stream: $count checkpoints signed by $name match the records"

  # 6. Every head a host attested for this stream (attestations/<host>/<day>/<seq>.note, the
  #    lines "<stream> <size> <base64 root> <state>" of the signed text) is the Merkle root of
  #    its first <size> records. Each distinct head is checked once.
  heads=0
  while read -r size aroot; do
    [ -n "$size" ] || continue
    root=$(printf '%s' "$aroot" | base64 -d | od -An -tx1 | tr -d ' \n')
    [ "$size" -le "${#leaves[@]}" ] || fail "$stream seq $((${#leaves[@]} + 1)): an attestation states $size records but only ${#leaves[@]} remain"
    if [ "$size" -eq 0 ]; then expected_root=$(printf '' | sha256sum | cut -d' ' -f1); else expected_root=$(mth 0 "$size"); fi
    [ "$expected_root" = "$root" ] || fail "$stream seq $size: records 1–$size do not hash to the root attested at size $size"
    heads=$((heads + 1))
  done < <(if [ -d attestations ]; then find attestations -name '*.note' -type f -exec awk -v s="$stream" 'FNR == 1 { t = 1 } NF == 0 { t = 0 } t && $1 == s { print $2, $3 }' {} + | sort -u; fi)
  [ "$heads" -eq 0 ] || echo "ok $stream: $heads attested heads match the records"
  # 7. With witness keys: the newest checkpoint covers every record, and each witness's copy of
  #    it (<size>.cosigned-<witness key id>) holds the same three lines and a cosignature line
  #    "— <witness> base64(key id ‖ 8-byte big-endian time ‖ Ed25519 signature)" over
  #    "cosignature/v1\ntime <time>\n" followed by those lines.
  [ "${#witnesses[@]}" -gt 0 ] || { rm -rf "$work"; continue; }
  newest=$(ls checkpoints/"$stream"/*.note | sort | tail -n1)
  head -n 3 "$newest" > "$work/text"
  size=$(sed -n 2p "$work/text")
  [ "$size" -eq "${#leaves[@]}" ] || fail "$stream seq $((size + 1)): records after the newest checkpoint (size $size) are not witnessed"
  if [ -n "$archive_entries" ]; then
    entry=$( { printf '\x00'; cat "$newest"; } | sha256sum | cut -d' ' -f1)
    grep -qx "$entry" <<<"$archive_entries" || fail "$stream seq $size: the newest checkpoint is not in the witnessed archive log"
    echo "ok $stream: checkpoint at size $size is an entry of the witnessed archive log"
    rm -rf "$work"
    continue
  fi
  for wkey in "${witnesses[@]}"; do
    wname=${wkey%%+*}; wrest=${wkey#*+}; wid=${wrest%%+*}
    { printf '\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00'; printf '%s' "${wrest#*+}" | base64 -d | tail -c 32; } > "$work/wkey.der"
    copy="${newest%.note}.cosigned-$wid"
    [ -e "$copy" ] || fail "$stream seq $size: the newest checkpoint has no cosignature by witness $wname"
    cmp -s <(head -n 3 "$copy") "$work/text" || fail "$stream seq $size: witness $wname cosigned another checkpoint at this size (a fork)"
    grep -F "— $wname " "$copy" | head -n1 | cut -d' ' -f3 | base64 -d > "$work/cosignature"
    [ "$(head -c 4 "$work/cosignature" | od -An -tx1 | tr -d ' \n')" = "$wid" ] || fail "$stream seq $size: the cosignature of $wname names another key id"
    time=$(head -c 12 "$work/cosignature" | tail -c 8 | od -An -tu8 --endian=big | tr -d ' ')
    { printf 'cosignature/v1\ntime %s\n' "$time"; cat "$work/text"; } > "$work/cosigned"
    tail -c 64 "$work/cosignature" > "$work/wsig"
    openssl pkeyutl -verify -pubin -inkey "$work/wkey.der" -keyform DER -rawin -in "$work/cosigned" -sigfile "$work/wsig" > /dev/null 2>&1 || fail "$stream seq $size: the cosignature of witness $wname does not verify"
    echo "ok $stream: checkpoint at size $size cosigned by $wname at $(date -u -d "@$time" +%Y-%m-%dT%H:%M:%SZ)"
  done
  rm -rf "$work"
done

# 6b. With a verifier key: each host's attestations are signed by that key, numbered 1, 2, 3…
#     without a hole, and each names the SHA-256 of the file before it; a stream they attest
#     with records still exists.
if [ -n "$vkey" ] && [ -d attestations ]; then
  name=${vkey%%+*}
  rest=${vkey#*+}
  id=${rest%%+*}
  work=$(mktemp -d)
  { printf '\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00'; printf '%s' "${rest#*+}" | base64 -d | tail -c 32; } > "$work/key.der"
  for hostdir in attestations/*/; do
    [ -d "$hostdir" ] || continue
    host=$(basename "$hostdir")
    n=0
    prevhash=$zero
    # In seq order (the file name), whatever day a clock set back filed one under.
    while read -r note; do
      [ -e "$note" ] || continue
      n=$((n + 1))
      awk 'NF == 0 { exit } { print }' "$note" > "$work/text"
      [ "$(sed -n 1p "$work/text")" = "$name/attestations/$host" ] || fail "attestation $note: its origin is not $name/attestations/$host"
      [ "$(sed -n 2p "$work/text")" = "seq $n" ] && [ "$(basename "$note" .note)" = "$(printf '%016d' "$n")" ] || fail "attestations of $host: #$n is missing or out of place (found $note)"
      [ "$(sed -n 4p "$work/text")" = "prev $prevhash" ] || fail "attestation $host #$n does not name the SHA-256 of #$((n - 1)): one of them was altered or replaced"
      signature=$(grep -F "— $name " "$note" | head -n1 | cut -d' ' -f3)
      [ -n "$signature" ] || fail "attestation $host #$n is not signed by $name"
      printf '%s' "$signature" | base64 -d > "$work/signature"
      [ "$(head -c 4 "$work/signature" | od -An -tx1 | tr -d ' \n')" = "$id" ] || fail "attestation $host #$n names another key id"
      tail -c 64 "$work/signature" > "$work/sig"
      openssl pkeyutl -verify -pubin -inkey "$work/key.der" -keyform DER -rawin -in "$work/text" -sigfile "$work/sig" > /dev/null 2>&1 || fail "attestation $host #$n: the signature does not verify"
      while read -r attested size; do
        [ "$size" = 0 ] || [ -d "streams/$attested" ] || fail "$attested: attestation $host #$n states $size records, but the stream is gone"
      done < <(tail -n +5 "$work/text" | cut -d' ' -f1,2)
      prevhash=$(sha256sum < "$note" | cut -d' ' -f1)
    done < <(printf '%s\n' "$hostdir"*/*.note | sort -t/ -k4,4)
    echo "ok attestations of $host: $n signed by $name, chained"
  done
  rm -rf "$work"
fi
echo "OK: $records records verified by hand"
