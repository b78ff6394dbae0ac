#!/usr/bin/env bash
# Verify an offchannel file-system archive with nothing but bash, sha256sum and jq — no
# offchannel code. This is the procedure of docs/storage-format.md, runnable. It is slow
# (several processes per record): use it to convince yourself, and `offchannel verify` for
# large archives. Exit 0 when intact, 1 at the first failure (printed with stream and seq).
#
#   docs/verify-by-hand.sh ./demo-archive
set -euo pipefail
archive=${1:?usage: verify-by-hand.sh <archive-dir>}
cd "$archive"
zero=0000000000000000000000000000000000000000000000000000000000000000
fail() { echo "FAIL $*"; exit 1; }

# 1. Every blob is named by the SHA-256 of its bytes.
for blob in blobs/sha256/*; do
  [ -e "$blob" ] || continue
  [ "$(sha256sum < "$blob" | cut -d' ' -f1)" = "$(basename "$blob")" ] || fail "blob $blob: content does not hash to its name"
done

records=0
for dir in streams/*/; do
  [ -d "$dir" ] || continue
  stream=$(basename "$dir")
  expected=1
  prev=$zero
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
      expected=$((expected + 1))
      records=$((records + 1))
    done < "$segment"
  done
  echo "ok $stream: $((expected - 1)) records, head $prev"
done
echo "OK: $records records verified by hand"
