#!/usr/bin/env bash
# settee's HTTP path alone, without the node client: 20 `_bulk_docs` batches of 1000 ~1 KiB docs
# posted with curl, then `_changes?include_docs=true` read 3 times. Best of 3 runs.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
trap 'kill "${spid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, sys
for b in range(20):
    docs = [{"_id": "d%05d" % (b * 1000 + i), "type": "item", "n": i, "pad": "x" * 940} for i in range(1000)]
    open(f"{sys.argv[1]}/batch{b}.json", "w").write(json.dumps({"docs": docs}))
PY
best_i=0; best_c=0
for run in 1 2 3; do
  rm -rf "$work/data"
  "$target/release/settee" serve --bind 127.0.0.1:0 --data "$work/data" > "$work/out" 2>&1 &
  spid=$!
  for _ in $(seq 50); do [ -s "$work/out" ] && break; sleep 0.1; done
  url=$(head -1 "$work/out" | awk '{print $4}' | sed 's:/$::')
  case "$url" in http://*) ;; *) echo "settee did not start: $(cat "$work/out")" >&2; exit 1 ;; esac
  curl -sf -X PUT "$url/b" > /dev/null
  s=$(date +%s.%N)
  for b in $(seq 0 19); do
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$work/batch$b.json" "$url/b/_bulk_docs"
  done
  m=$(date +%s.%N)
  for _ in 1 2 3; do curl -sf -o /dev/null "$url/b/_changes?include_docs=true"; done
  e=$(date +%s.%N)
  kill $spid; wait $spid 2>/dev/null || true
  best_i=$(python3 -c "print(max($best_i, 20000/($m-$s)))")
  best_c=$(python3 -c "print(max($best_c, 60000/($e-$m)))")
done
printf '| settee HTTP alone (curl, 20000 docs, best of 3) | docs/s |\n|---|---|\n'
printf '| _bulk_docs ingest | %.0f |\n| _changes?include_docs=true | %.0f |\n' "$best_i" "$best_c"
