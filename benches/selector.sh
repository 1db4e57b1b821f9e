#!/usr/bin/env bash
# Selector matching: settee's mango engine vs pouchdb-selector-core's matchesSelector, on the same
# 200k documents shaped like the sharing seed (tests/node/lib/seed-docs.js) with the seed's
# selector ($or of type + $in + $elemMatch). Prints one markdown table; fails if the two disagree
# on how many documents match.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS=${DOCS:-200000}
dump=$(mktemp)
trap 'rm -f "$dump"' EXIT
p=$(cd tests/node && node bench-selector.js --docs "$DOCS")
(cd tests/node && node bench-selector.js --docs "$DOCS" --dump "$DOCS") > "$dump"
s=$(SELECTOR_DOCS="$dump" cargo bench -q --bench selector 2>/dev/null | tail -1)
python3 - "$s" "$p" <<'PY'
import json, sys
s, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert s["matched"] == p["matched"], f"settee matched {s['matched']}, pouchdb-selector-core {p['matched']}"
print(f"| selector matching ({s['docs']} seed-shaped docs, {s['matched']} match) | evals/s | ratio |")
print("|---|---|---|")
print(f"| settee mango engine | {s['evals_per_s']:.0f} | {s['evals_per_s']/p['evals_per_s']:.1f}x |")
print(f"| pouchdb-selector-core matchesSelector (as PouchDB's replicator calls it) | {p['evals_per_s']:.0f} | 1x |")
print(f"| pouchdb-selector-core, selector massaged once | {p['premassaged_evals_per_s']:.0f} | {p['premassaged_evals_per_s']/p['evals_per_s']:.1f}x |")
PY

# _changes?filter=_selector vs the unfiltered feed, on 20k seed-shaped docs in a release settee.
target=${CARGO_TARGET_DIR:-target}
data=$(mktemp -d)
"$target/release/settee" serve --bind 127.0.0.1:0 --data "$data/db" > "$data/out" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null || true; rm -rf "$data" "$dump"' EXIT
for _ in $(seq 50); do [ -s "$data/out" ] && break; sleep 0.2; done
url=$(head -1 "$data/out" | awk '{print $4}' | sed 's:/$::')
case "$url" in http://*) ;; *) echo "settee did not start: $(cat "$data/out")" >&2; exit 1 ;; esac
python3 - "$url" <<'PY'
import json, random, sys, time, urllib.request
url = sys.argv[1] + "/feed"
def call(method, u, body=None):
    req = urllib.request.Request(u, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.read()
call("PUT", url)
random.seed(1)
types = ["collection", "item", "item_image", "image", "config", "post"]
for b in range(20):
    docs = []
    for i in range(1000):
        t, c = random.choice(types), "c%d" % random.randrange(8)
        docs.append({"_id": "%s-%06d" % (t, b * 1000 + i), "type": t, "pad": "x" * 800,
                     "data": {"collection_id": c, "_item_collection_id": c, "_item_collection_ids": ["c%d" % random.randrange(8)]}})
    call("POST", url + "/_bulk_docs", {"docs": docs})
sel = {"selector": {"$or": [
    {"type": "collection", "_id": {"$in": ["collection-000001"]}},
    {"type": "item", "data.collection_id": {"$in": ["c1"]}},
    {"type": "item_image", "data._item_collection_id": {"$in": ["c1"]}},
    {"type": "image", "data._item_collection_ids": {"$elemMatch": {"$in": ["c1"]}}}]}}
best_u = best_f = 0
for _ in range(5):
    t = time.perf_counter(); call("GET", url + "/_changes?style=all_docs"); u = 20000 / (time.perf_counter() - t)
    t = time.perf_counter(); out = json.loads(call("POST", url + "/_changes?style=all_docs&filter=_selector", sel))
    f = 20000 / (time.perf_counter() - t)
    best_u, best_f = max(best_u, u), max(best_f, f)
print()
print(f"| _changes over 20000 docs (best of 5) | docs scanned/s | ratio |")
print("|---|---|---|")
print(f"| unfiltered, style=all_docs | {best_u:.0f} | 1x |")
print(f"| filter=_selector, seed selector ({len(out['results'])} rows sent) | {best_f:.0f} | {best_f/best_u:.2f}x |")
PY
