#!/usr/bin/env bash
# Replication benchmark: two settee servers (release) on loopback; the same 1 KiB seed-shaped
# docs replicated source -> target by settee's replicator (`settee replicate`) and by PouchDB's
# replicator (npm, tests/node/bench-replicate.js) in the same run; one-shot, and with the
# sharing seed's selector (about 1 doc in 10). Then the continuous write-to-target latency,
# and the replicator's peak RSS for DOCS and BIG_DOCS docs. Prints one markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS=${DOCS:-100000}
BIG_DOCS=${BIG_DOCS:-1000000}
target=${CARGO_TARGET_DIR:-target}
bin="$target/release/settee"
data=$(mktemp -d)
cleanup() { kill "${apid:-}" "${bpid:-}" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

start() { # name -> url
  "$bin" serve --bind 127.0.0.1:0 --data "$data/$1" > "$data/$1.out" 2>&1 &
  echo $! > "$data/$1.pid"
  for _ in $(seq 50); do [ -s "$data/$1.out" ] && break; sleep 0.2; done
  head -1 "$data/$1.out" | awk '{print $4}' | sed 's:/$::'
}
a=$(start a); apid=$(cat "$data/a.pid")
b=$(start b); bpid=$(cat "$data/b.pid")
node_=(node --stack-size=4000)
selector=$(cd tests/node && node -e 'console.log(JSON.stringify(require("./lib/seed-docs").generate(20,{seed:42}).selector))')

settee_rep() { # src dst [extra args] -> "docs_written seconds peak_rss_kib"
  local out
  out=$( { /usr/bin/time -f 'RSS %M' "$bin" replicate --quiet --create-target "$@" ; } 2>&1 )
  echo "$out" | awk '/docs_written/ {for (i=1;i<=NF;i++) {if ($i=="docs_written") w=$(i+1); if ($i=="seconds") s=$(i+1)}} /^RSS/ {r=$2} END {print w, s, r}'
}

# PouchDB first (it also populates the source with the seed docs).
p_all=$(cd tests/node && "${node_[@]}" bench-replicate.js --source "$a/src" --target "$b/pouch" --populate "$DOCS" --fresh-target)
p_sel=$(cd tests/node && "${node_[@]}" bench-replicate.js --source "$a/src" --target "$b/pouchsel" --seed-selector --fresh-target)
read -r s_all_w s_all_t s_all_rss <<< "$(settee_rep "$a/src" "$b/settee")"
read -r s_sel_w s_sel_t _ <<< "$(settee_rep "$a/src" "$b/setteesel" --selector "$selector")"
# settee's own options on the same selector: `unmatched` makes the reader follow every change
# with its body (the cost of seeing what stops matching); `fields` projects and maps revisions.
read -r s_um_w s_um_t _ <<< "$(settee_rep "$a/src" "$b/setteeum" --selector "$selector" --unmatched delete)"
read -r s_f_w s_f_t _ <<< "$(settee_rep "$a/src" "$b/setteef" --selector "$selector" --fields type,title,data)"

# Continuous latency: a continuous job on b from a/live to b/live.
curl -fsS -X PUT "$a/live" > /dev/null
curl -fsS -X PUT "$b/_replicator/lat" -H 'content-type: application/json' \
  -d "{\"source\":\"$a/live\",\"target\":\"$b/live\",\"create_target\":true,\"continuous\":true}" > /dev/null
lat=$(cd tests/node && node bench-latency.js --source "$a/live" --target "$b/live" --writes 300 --pause-ms 10)

# Peak RSS with a much larger source: memory must follow batch size, not database size.
if [ "$BIG_DOCS" -gt 0 ]; then
  (cd tests/node && node bench-replicate.js --source "$a/big" --target "$b/bigpouch" --populate 20 --fresh-target > /dev/null)
  python3 - "$a/big" "$BIG_DOCS" <<'PY'
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
pad = "x" * 900
for start in range(0, n, 5000):
    docs = [{"_id": f"big-{i:08d}", "type": "item", "n": i, "pad": pad} for i in range(start, min(n, start + 5000))]
    req = urllib.request.Request(url + "/_bulk_docs", data=json.dumps({"docs": docs}).encode(), headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
PY
  read -r b_w b_t b_rss <<< "$(settee_rep "$a/big" "$b/bigsettee")"
else
  b_w=0; b_t=0; b_rss=0
fi

python3 - "$p_all" "$p_sel" "$s_all_w $s_all_t $s_all_rss" "$s_sel_w $s_sel_t" "$lat" "$b_w $b_t $b_rss" "$DOCS" "$s_um_w $s_um_t" "$s_f_w $s_f_t" <<'PY'
import json, sys
p_all, p_sel = json.loads(sys.argv[1]), json.loads(sys.argv[2])
s_all = sys.argv[3].split(); s_sel = sys.argv[4].split(); lat = json.loads(sys.argv[5]); big = sys.argv[6].split(); n = sys.argv[7]
s_um = sys.argv[8].split(); s_f = sys.argv[9].split()
sa = int(s_all[0]) / float(s_all[1]); ss = int(s_sel[0]) / float(s_sel[1])
assert int(s_all[0]) == p_all["docs_written"], f"settee wrote {s_all[0]}, PouchDB {p_all['docs_written']}"
assert int(s_sel[0]) == p_sel["docs_written"], f"selector: settee wrote {s_sel[0]}, PouchDB {p_sel['docs_written']}"
print(f"| Replication settee -> settee over loopback HTTP ({n} docs of ~1 KiB) | settee replicator | PouchDB replicator | ratio |")
print("|---|---|---|---|")
print(f"| one-shot, all docs, docs/s | {sa:.0f} | {p_all['docs_per_s']} | {sa / p_all['docs_per_s']:.1f}x |")
print(f"| one-shot, seed selector ({s_sel[0]} docs match), docs/s | {ss:.0f} | {p_sel['docs_per_s']} | {ss / p_sel['docs_per_s']:.1f}x |")
for label, (w, t) in [("+ `unmatched: delete` (reads every change with its body)", s_um), ("+ `fields` (projected, mapped revisions)", s_f)]:
    assert int(w) == int(s_sel[0]), f"{label}: wrote {w}, plain selector {s_sel[0]}"
    r = int(w) / float(t)
    print(f"| one-shot, seed selector {label}, docs/s | {r:.0f} | | {r / ss:.2f}x the plain selector run |")
print(f"| continuous write-to-target p50 / p99, ms | {lat['latency_ms']['p50']:.1f} / {lat['latency_ms']['p99']:.1f} | | |")
print(f"| replicator peak RSS, {n} docs, MiB | {int(s_all[2]) / 1024:.1f} | | |")
if int(big[0]) > 0:
    print(f"| replicator peak RSS, {big[0]} docs, MiB ({int(big[0]) / float(big[1]):.0f} docs/s) | {int(big[2]) / 1024:.1f} | | |")
PY
