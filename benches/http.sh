#!/usr/bin/env bash
# HTTP benchmark: settee (release) and pouchdb-server (in memory) on loopback, measured by the
# same client (tests/node/bench-http.js) in the same run. Prints one markdown table with ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS=${DOCS:-20000}
target=${CARGO_TARGET_DIR:-target}
data=$(mktemp -d)
cleanup() { kill "${spid:-}" "${ppid_:-}" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

"$target/release/settee" serve --bind 127.0.0.1:0 --data "$data" > "$data/out" 2>&1 &
spid=$!
(cd tests/node && exec node start-pouchdb-server.js > "$data/pout" 2>/dev/null) &
ppid_=$!
for _ in $(seq 50); do [ -s "$data/out" ] && [ -s "$data/pout" ] && break; sleep 0.2; done
surl=$(head -1 "$data/out" | awk '{print $4}' | sed 's:/$::')
purl=$(head -1 "$data/pout" | sed 's/.*"url":"\([^"]*\)".*/\1/')
case "$surl" in http://*) ;; *) echo "settee did not start: $(cat "$data/out")" >&2; exit 1 ;; esac
case "$purl" in http://*) ;; *) echo "pouchdb-server did not start" >&2; exit 1 ;; esac

s=$(cd tests/node && node bench-http.js --url "$surl/bench" --docs "$DOCS")
p=$(cd tests/node && node bench-http.js --url "$purl/bench" --docs "$DOCS")
python3 - "$s" "$p" "$DOCS" <<'PY'
import json, sys
s, p, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"| HTTP ({n} docs of 1 KiB, batches of 1000) | settee | pouchdb-server | ratio |")
print("|---|---|---|---|")
for k, label in [("ingest_docs_per_s", "_bulk_docs ingest, docs/s"), ("changes_docs_per_s", "_changes?include_docs=true, docs/s")]:
    print(f"| {label} | {s[k]:.0f} | {p[k]:.0f} | {s[k]/p[k]:.1f}x |")
for q in ("p50", "p99"):
    print(f"| continuous feed write-to-event {q}, ms | {s['latency_ms'][q]:.2f} | {p['latency_ms'][q]:.2f} | {p['latency_ms'][q]/s['latency_ms'][q]:.1f}x faster |")
PY
