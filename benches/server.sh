#!/usr/bin/env bash
# The servers' HTTP paths without the node client, which caps benches/http.sh's changes figure:
# 20 `_bulk_docs` batches of 1000 ~1 KiB docs posted with curl, then
# `_changes?include_docs=true` read 3 times, each phase over one kept-alive connection; settee (release, on disk) and pouchdb-server
# (in memory) in the same run, a fresh server per run, best of 3. One markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
python3 benches/batches.py "$work"

start() { # settee|pouchdb-server -> sets pid, url
  rm -rf "$work/data" "$work/out"
  if [ "$1" = settee ]; then
    "$target/release/settee" serve --bind 127.0.0.1:0 --data "$work/data" > "$work/out" 2>&1 &
    pid=$!
    for _ in $(seq 50); do [ -s "$work/out" ] && break; sleep 0.1; done
    url=$(head -1 "$work/out" | awk '{print $4}' | sed 's:/$::')
  else
    (cd tests/node && exec node start-pouchdb-server.js > "$work/out" 2>/dev/null) &
    pid=$!
    for _ in $(seq 100); do [ -s "$work/out" ] && break; sleep 0.1; done
    url=$(head -1 "$work/out" | sed 's/.*"url":"\([^"]*\)".*/\1/' | sed 's:/$::')
  fi
  case "$url" in http://*) ;; *) echo "$1 did not start: $(cat "$work/out")" >&2; exit 1 ;; esac
}

measure() { # settee|pouchdb-server -> "ingest changes" best of 3, docs/s
  local best_i=0 best_c=0 s m e
  for _ in 1 2 3; do
    start "$1"
    curl -sf -X PUT "$url/b" > /dev/null
    # One curl process per phase, one kept-alive connection: starting a curl per request
    # costs ~10 ms here, which would be timed as server work.
    local post=() read=()
    for b in $(seq 0 19); do
      [ "$b" -gt 0 ] && post+=(--next)
      post+=(-sf -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$work/batch$b.json" "$url/b/_bulk_docs")
    done
    for r in 1 2 3; do
      [ "$r" -gt 1 ] && read+=(--next)
      read+=(-sf -o /dev/null "$url/b/_changes?include_docs=true")
    done
    s=$(date +%s.%N)
    curl "${post[@]}"
    m=$(date +%s.%N)
    curl "${read[@]}"
    e=$(date +%s.%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    best_i=$(python3 -c "print(max($best_i, 20000/($m-$s)))")
    best_c=$(python3 -c "print(max($best_c, 60000/($e-$m)))")
  done
  echo "$best_i $best_c"
}

res=$(measure settee); read -r si sc <<< "$res"
res=$(measure pouchdb-server); read -r pi pc <<< "$res"
printf '| HTTP paths alone (curl, 20000 docs of 1 KiB, best of 3) | settee | pouchdb-server | ratio |\n|---|---|---|---|\n'
python3 -c "print('| _bulk_docs ingest, docs/s | %.0f | %.0f | %.1fx |' % ($si, $pi, $si/$pi))"
python3 -c "print('| _changes?include_docs=true, docs/s | %.0f | %.0f | %.1fx |' % ($sc, $pc, $sc/$pc))"
