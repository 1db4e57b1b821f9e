#!/usr/bin/env bash
# settee side by side with Apache CouchDB 3.5.0 in the same run (benches/couchdb.py): ingest,
# `_changes`, one-shot replication (all and the sharing seed's selector; each replicator
# between servers of its own product and pulling from the other), continuous latency.
# Needs the CouchDB release in ../shared/peers (or SETTEE_COUCHDB_TARBALL); says so and
# skips without it. DOCS (default 100000) sets the size.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS=${DOCS:-100000}
target=${CARGO_TARGET_DIR:-target}
bin="$target/release/settee"
tarball=${SETTEE_COUCHDB_TARBALL:-$(ls ../shared/peers/couchdb-3*.tar.gz 2>/dev/null | head -1 || true)}
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
  echo "benches/couchdb.sh: skipped, no CouchDB release in ../shared/peers"
  exit 0
fi
data=$(mktemp -d)
cleanup() { kill "${cpid:-}" "${apid:-}" "${bpid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

# CouchDB on a free port, its own folder and admin, stock settings otherwise.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tar xzf "$tarball" -C "$data"
cat > "$data/couchdb/etc/local.ini" <<INI
[couchdb]
single_node = true
database_dir = $data/couch-data
view_index_dir = $data/couch-data
[chttpd]
bind_address = 127.0.0.1
port = $port
[admins]
admin = pass
[log]
level = warning
INI
sed -i "s/^-name couchdb@127.0.0.1/-name bench$port@127.0.0.1/" "$data/couchdb/etc/vm.args"
"$data/couchdb/bin/couchdb" > "$data/couch.log" 2>&1 &
cpid=$!
couch="http://admin:pass@127.0.0.1:$port"
for _ in $(seq 300); do curl -fsS "$couch/_up" >/dev/null 2>&1 && break; sleep 0.2; done
for _ in $(seq 100); do curl -fsS "$couch/_replicator" >/dev/null 2>&1 && break; sleep 0.2; done

start() { # name -> url
  "$bin" serve --bind 127.0.0.1:0 --data "$data/$1" > "$data/$1.out" 2>&1 &
  echo $! > "$data/$1.pid"
  for _ in $(seq 50); do [ -s "$data/$1.out" ] && break; sleep 0.2; done
  head -1 "$data/$1.out" | awk '{print $4}' | sed 's:/$::'
}
a=$(start a); apid=$(cat "$data/a.pid")
b=$(start b); bpid=$(cat "$data/b.pid")

echo "### settee and Apache CouchDB 3.5.0, same machine, same run ($DOCS docs of ~1 KiB)"
echo
python3 benches/couchdb.py --couch "$couch" --settee-a "$a" --settee-b "$b" --docs "$DOCS"
