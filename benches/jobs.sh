#!/usr/bin/env bash
# Many idle continuous replications on one settee (release): for each JOBS count, a fresh
# server gets that many source/target pairs and a continuous `_replicator` document per pair
# (HTTP URLs back to itself). Reports RSS per idle job, idle CPU, and write-to-target latency
# under a steady write load (tests/node/bench-jobs.js). Prints one markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-"200 1000"}
RATE=${RATE:-20}
target=${CARGO_TARGET_DIR:-target}
bin="$target/release/settee"
data=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT

results=()
for n in $JOBS; do
  # max_jobs above n: every job runs (CouchDB's default of 500 would rotate the rest).
  "$bin" serve --bind 127.0.0.1:0 --data "$data/$n" --max-jobs $((n + 1)) > "$data/$n.out" 2>&1 &
  pid=$!
  for _ in $(seq 50); do [ -s "$data/$n.out" ] && break; sleep 0.2; done
  url=$(head -1 "$data/$n.out" | awk '{print $4}' | sed 's:/$::')
  results+=("$(cd tests/node && node bench-jobs.js --server "$url" --pid "$pid" --jobs "$n" --rate "$RATE" --duration 15 --idle 10)")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done

python3 - "${results[@]}" <<'PY'
import json, sys
print(f"| Idle continuous jobs on one settee (HTTP endpoints) | RSS before jobs, MiB | RSS with jobs, MiB | RSS per job, KiB | idle CPU, % of a core | write-to-target p50 / p99 / max, ms |")
print("|---|---|---|---|---|---|")
for r in map(json.loads, sys.argv[1:]):
    l = r["latency_ms"]
    print(f"| {r['jobs']} jobs, {r['writes']} writes at a steady rate | {r['rss_base_mib']} | {r['rss_jobs_mib']} | {r['per_job_kib']} | {r['idle_cpu_pct']} | {l['p50']} / {l['p99']} / {l['max']} |")
PY
