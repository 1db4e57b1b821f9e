#!/usr/bin/env bash
# Small-request throughput of two settee binaries (e.g. before and after a change to the
# request path), alternating rounds in the same run so machine noise hits both alike:
#   bash benches/request-cost.sh OLD_BINARY NEW_BINARY [ROUNDS]
# Each round: a fresh store, one document, `wrk -t1 -c16 -d8s` on GET /db/doc. Needs wrk.
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
run() { # binary -> requests/s
  local d p port
  d=$(mktemp -d)
  "$1" serve --data "$d" --bind 127.0.0.1:0 > "$d/out" 2>/dev/null &
  p=$!
  for _ in $(seq 50); do [ -s "$d/out" ] && break; sleep 0.1; done
  port=$(head -1 "$d/out" | sed 's#.*127.0.0.1:\([0-9]*\)/.*#\1#')
  curl -s -X PUT "http://127.0.0.1:$port/db" > /dev/null
  curl -s -X PUT "http://127.0.0.1:$port/db/doc" -H 'content-type: application/json' -d '{"a":1}' > /dev/null
  wrk -t1 -c16 -d8s "http://127.0.0.1:$port/db/doc" | awk '/Requests\/sec/ {print $2}'
  kill "$p"; wait "$p" 2>/dev/null || true; rm -rf "$d"
}
echo "| round | old req/s | new req/s | new/old |"
echo "|---|---|---|---|"
for i in $(seq "$rounds"); do
  o=$(run "$old"); n=$(run "$new")
  echo "| $i | $o | $n | $(python3 -c "print(f'{$n/$o:.2f}')") |"
done
