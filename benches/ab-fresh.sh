#!/usr/bin/env bash
# Settee builds side by side, each run on a fresh server (not part of `make bench`):
#   bash benches/ab-fresh.sh ROUNDS BINARY...
# Per round and binary: a new server on an empty data folder, 20 `_bulk_docs` of 1000 new ~1 KiB
# docs over one kept-alive curl. Prints per binary the median and best ingest (docs/s) and the
# server's CPU time for the ingest (utime+stime from /proc, ms; lower is better). CPU time is
# steadier than wall time on this noisy machine, and a fresh process includes the cost of
# growing memory, which a long-running server (benches/ab.sh) hides.
set -euo pipefail
rounds=$1; shift
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
python3 "$(dirname "$0")/batches.py" "$work"
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    rm -rf "$work/data"
    "$bin" serve --bind 127.0.0.1:0 --data "$work/data" > "$work/out" 2>&1 &
    pid=$!
    for _ in $(seq 50); do [ -s "$work/out" ] && break; sleep 0.1; done
    url=$(head -1 "$work/out" | awk '{print $4}' | sed 's:/$::')
    curl -sf -X PUT "$url/b" > /dev/null
    post=()
    for b in $(seq 0 19); do
      [ "$b" -gt 0 ] && post+=(--next)
      post+=(-sf -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$work/batch$b.json" "$url/b/_bulk_docs")
    done
    c0=$(awk '{print $14+$15}' "/proc/$pid/stat"); s=$(date +%s.%N)
    curl "${post[@]}"
    e=$(date +%s.%N); c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    echo "$bin $(python3 -c "print(round(20000/($e-$s)))") $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) ))" >> "$work/results"
  done
done
python3 - "$work/results" <<'PY'
import collections, sys
rate, cpu = collections.defaultdict(list), collections.defaultdict(list)
for line in open(sys.argv[1]):
    b, r, c = line.split(); rate[b].append(int(r)); cpu[b].append(int(c))
print("| build | ingest median / best, docs/s | server CPU median / least, ms |\n|---|---|---|")
for b in rate:
    r, c = sorted(rate[b]), sorted(cpu[b])
    print(f"| {b} | {r[len(r)//2]} / {r[-1]} | {c[len(c)//2]} / {c[0]} |")
PY
