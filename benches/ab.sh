#!/usr/bin/env bash
# Two settee builds side by side, same minute, same keep-alive client (not part of `make bench`):
#   bash benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]
# Build the old one with `git worktree add /tmp/old <commit> && cargo build --release` there.
# Prints, per round and binary, the best of 4 runs of (a) ingest: 20 `_bulk_docs` of 1000 new
# ~1 KiB docs into a fresh database, and (b) scattered updates: on 64,000 docs, five
# `_bulk_docs` of 1000 updates whose ids lie 64 apart (each in a different by-sequence run).
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
start() { # binary name -> url on stdout
  "$1" serve --bind 127.0.0.1:0 --data "$work/$2" > "$work/$2.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$work/$2.out" ] && break; sleep 0.1; done
  head -1 "$work/$2.out" | awk '{print $4}' | sed 's:/$::'
}
old_url=$(start "$old" old)
new_url=$(start "$new" new)
python3 - "$old_url" "$new_url" "$rounds" <<'PY'
import http.client, json, sys, time, urllib.parse
def client(url):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port)
    def req(method, path, body=None):
        c.request(method, path, body=None if body is None else json.dumps(body).encode(),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    return req
def ingest(req, name):
    best = 0
    for run in range(4):
        db = f"/{name}-ingest-{run}"
        req("PUT", db)
        t = time.perf_counter()
        for b in range(20):
            docs = [{"_id": "d%05d" % (b * 1000 + i), "type": "item", "n": i, "pad": "x" * 940} for i in range(1000)]
            st, _ = req("POST", db + "/_bulk_docs", {"docs": docs})
            assert st == 201, st
        best = max(best, 20000 / (time.perf_counter() - t))
    return best
def scattered(req, name):
    db = f"/{name}-upd"
    req("PUT", db)
    revs = {}
    for b in range(64):
        docs = [{"_id": "d%06d" % (b * 1000 + i), "pad": "x" * 900} for i in range(1000)]
        for o in req("POST", db + "/_bulk_docs", {"docs": docs})[1]:
            revs[o["id"]] = o["rev"]
    ids, best = sorted(revs), 0
    for rnd in range(5):
        docs = [{"_id": i, "_rev": revs[i], "pad": "y" * 900} for i in ids[rnd::64][:1000]]
        t = time.perf_counter()
        st, out = req("POST", db + "/_bulk_docs", {"docs": docs})
        best = max(best, 1000 / (time.perf_counter() - t))
        for o in out:
            revs[o["id"]] = o["rev"]
    return best
old, new = client(sys.argv[1]), client(sys.argv[2])
print("| round | ingest old | ingest new | scattered updates old | scattered updates new |")
print("|---|---|---|---|---|")
for r in range(int(sys.argv[3])):
    io, inew = ingest(old, f"r{r}"), ingest(new, f"r{r}")
    so, snew = scattered(old, f"r{r}"), scattered(new, f"r{r}")
    print(f"| {r + 1} | {io:.0f} | {inew:.0f} | {so:.0f} | {snew:.0f} |")
PY
