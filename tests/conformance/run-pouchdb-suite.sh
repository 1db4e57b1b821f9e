#!/usr/bin/env bash
# Run PouchDB's own node test suites (tests/integration and tests/find) against settee.
#
# Usage: tests/conformance/run-pouchdb-suite.sh /path/to/pouchdb-checkout [settee-binary]
#
#   pouchdb-checkout  a checkout (or unpacked snapshot) of github.com/pouchdb/pouchdb
#   settee-binary     defaults to $CARGO_TARGET_DIR/release/settee, else target/release/settee
#                     under the repository root
#
# What it does, in order:
#   1. installs and builds the checkout unless it is already built
#      (`npm install --ignore-scripts`, `BUILD_NODE=1 npm run build-modules`; skipped when
#      packages/node_modules/pouchdb/lib exists)
#   2. starts settee on a free loopback port with its own temporary data folder and the server
#      admin admin:pass, and PouchDB's down-server (answers 500 to everything) on port 3010
#   3. runs every tests/integration/test.*.js file, then every tests/find/*/test.*.js file,
#      each as its own mocha process, so one file that hangs or aborts cannot stop the others
#   4. prints the totals (passing / pending / failing per suite) and every failing test with its
#      file and the first line of its error, to stdout and to $RESULTS_DIR/results.txt
#   5. stops settee and the down-server (also on Ctrl-C or error) and removes settee's data
#
# Settings (environment):
#   RESULTS_DIR    where logs and results go (default: <repo>/target/pouchdb-suite)
#   FILE_TIMEOUT   seconds one test file may run before it is killed (default 1200)
#   TEST_TIMEOUT   mocha's per-test timeout in ms (default 10000, as PouchDB's CI)
#   SEED           seed of the suite's random generator (default 12345)
#   ONLY           a regular expression; run only the test files whose path matches it
#   POUCHDB_COMMIT the commit to report when the checkout has no .git (an unpacked snapshot)
#   SERVER_URL     run against this already running server instead of starting settee, e.g.
#                  http://admin:pass@127.0.0.1:15984 for an Apache CouchDB baseline (the URL
#                  must carry server-admin credentials; the settee binary is then not needed)
#   UPSTREAM_GLOBAL_HOOKS=1
#                  use PouchDB's tests/integration/test.setup_global_hooks.js (see below)
#
# Unhandled promise rejections: PouchDB's test.setup_global_hooks.js fails an "after each" hook
# when a test leaves an unhandled rejection, and a failed root hook makes mocha skip every test
# that is left in the run. By default this script instead loads pouchdb-unhandled-rejection.js
# (next to this script), which hands such a rejection to mocha as an uncaught error: the test
# that was running fails with that error and the run goes on. The test counts are then complete.
#
# The find files run as upstream runs them, without either hooks file (PouchDB's CI does not
# load test.setup_global_hooks.js for tests/find). Other variables PouchDB's tests read (for
# example VIEW_ADAPTERS) pass through from the environment.
#
# Exit status: 0 when the run completed, whatever the test results (read results.txt or
# results.json); non-zero when it could not run (bad arguments, build failure, server down).
#
# Requirements: node (20 was used) with npm, curl, flock, timeout; a checkout whose mocha
# supports --dry-run and the json reporter's output option (mocha 10, as pinned by PouchDB 9).
# The settee server is started with its default limits (--max-body 64 MiB); the suite needs
# nothing bigger.
#
# Never run two of these (or any two mocha processes) in one checkout at the same time: the
# suite's node.setup.js deletes ./tmp when it exits. A lock file in the checkout enforces this.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)

usage() {
  sed -n '4,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "run-pouchdb-suite: $*" >&2; exit 1; }
without_password() { sed -E 's|//[^/@]*@|//|' <<<"$1"; }

[ $# -ge 1 ] && [ $# -le 2 ] || usage
checkout=$(cd "$1" 2>/dev/null && pwd) || die "no such folder: $1"
settee=${2:-${CARGO_TARGET_DIR:-$repo_root/target}/release/settee}
case "$settee" in /*) ;; *) settee="$PWD/$settee" ;; esac

[ -f "$checkout/bin/test-node.sh" ] && [ -d "$checkout/tests/integration" ] \
  || die "$checkout does not look like a pouchdb/pouchdb checkout"
SERVER_URL=${SERVER_URL:-}
if [ -z "$SERVER_URL" ]; then
  [ -x "$settee" ] || die "settee binary not found or not executable: $settee"
fi
for tool in node npm curl flock timeout; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

RESULTS_DIR=${RESULTS_DIR:-$repo_root/target/pouchdb-suite}
FILE_TIMEOUT=${FILE_TIMEOUT:-1200}
TEST_TIMEOUT=${TEST_TIMEOUT:-10000}
SEED=${SEED:-12345}
ONLY=${ONLY:-}
UPSTREAM_GLOBAL_HOOKS=${UPSTREAM_GLOBAL_HOOKS:-0}
mkdir -p "$RESULTS_DIR"
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)

# One run per checkout at a time (fd 9 stays open, and the lock held, until this script exits).
exec 9>"$checkout/.run-pouchdb-suite.lock"
flock -n 9 || die "another run is using $checkout"

# ---------------------------------------------------------------------------------------------
# 1. Install and build the checkout (once).
# ---------------------------------------------------------------------------------------------
cd "$checkout"
if [ ! -x node_modules/.bin/mocha ]; then
  echo "== npm install --ignore-scripts (log: $RESULTS_DIR/npm-install.log)"
  npm install --ignore-scripts >"$RESULTS_DIR/npm-install.log" 2>&1 \
    || die "npm install failed, see $RESULTS_DIR/npm-install.log"
fi
if [ ! -d packages/node_modules/pouchdb/lib ]; then
  echo "== BUILD_NODE=1 npm run build-modules (log: $RESULTS_DIR/build.log)"
  BUILD_NODE=1 npm run build-modules >"$RESULTS_DIR/build.log" 2>&1 \
    || die "build failed, see $RESULTS_DIR/build.log"
fi

# ---------------------------------------------------------------------------------------------
# 2. Start settee and the down-server; stop both whatever happens.
# ---------------------------------------------------------------------------------------------
settee_pid=
down_pid=
mocha_pid=
data_dir=$(mktemp -d "${TMPDIR:-/tmp}/settee-pouchdb-suite.XXXXXX")

cleanup() {
  local pid
  # mocha_pid is `timeout`, which passes the signal on to the mocha it runs.
  for pid in $mocha_pid $settee_pid $down_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $mocha_pid $settee_pid $down_pid; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$data_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "$SERVER_URL" ]; then
  "$settee" serve --bind 127.0.0.1:0 --data "$data_dir" --admin admin:pass \
    >"$RESULTS_DIR/settee.log" 2>&1 &
  settee_pid=$!

  # Its first line is "settee listening on http://127.0.0.1:PORT/ (data in …)".
  port=
  for _ in $(seq 100); do
    port=$(sed -n '1s|.*listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$RESULTS_DIR/settee.log")
    [ -n "$port" ] && break
    kill -0 "$settee_pid" 2>/dev/null || die "settee exited, see $RESULTS_DIR/settee.log"
    sleep 0.1
  done
  [ -n "$port" ] || die "settee did not say where it listens, see $RESULTS_DIR/settee.log"
  couch_host="http://admin:pass@127.0.0.1:$port"
  server_info="settee:   $("$settee" --version 2>/dev/null || echo settee) ($settee) at http://127.0.0.1:$port"
else
  couch_host=${SERVER_URL%/}
  server_info="server:   $(without_password "$couch_host") ($(curl -s "$couch_host/" | tr -d '\n'))"
fi
curl -sf "$couch_host/_up" >/dev/null || die "the server does not answer /_up at $(without_password "$couch_host")"

# Some tests (replication to an unreachable or failing server) expect a server on port 3010
# that answers 500 to everything: PouchDB's bin/down-server.js.
if (: </dev/tcp/127.0.0.1/3010) 2>/dev/null; then
  echo "warning: port 3010 is already in use; assuming it is a down-server" >&2
else
  node bin/down-server.js 3010 >"$RESULTS_DIR/down-server.log" 2>&1 &
  down_pid=$!
fi

pouchdb_commit=${POUCHDB_COMMIT:-$(git -C "$checkout" rev-parse HEAD 2>/dev/null || echo "unknown: not a git checkout")}
{
  echo "$server_info"
  echo "pouchdb:  $checkout (commit $pouchdb_commit, version $(node -p "require('./packages/node_modules/pouchdb/package.json').version"))"
  echo "node:     $(node --version)"
  echo "started:  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$RESULTS_DIR/run-info.txt"
cat "$RESULTS_DIR/run-info.txt"

# ---------------------------------------------------------------------------------------------
# 3. Run the test files, one mocha process each.
# ---------------------------------------------------------------------------------------------
# The variables PouchDB's CI sets for its CouchDB jobs. SERVER=couchdb-master switches on the
# CouchDB-only checks; SKIP_MIGRATION skips the leveldb migration tests.
export COUCH_HOST=$couch_host SERVER=couchdb-master SKIP_MIGRATION=1 SEED

if [ "$UPSTREAM_GLOBAL_HOOKS" = 1 ]; then
  integration_hooks=(tests/integration/test.setup_global_hooks.js)
else
  integration_hooks=(--require "$here/pouchdb-unhandled-rejection.js")
fi

# run_file SUITE FILE [EXTRA_MOCHA_ARGS...]
# Runs one test file. Leaves in $RESULTS_DIR/SUITE/:
#   NAME.json     mocha's json report (absent if mocha died before the end of the run)
#   NAME.planned  the json report of a --dry-run: how many tests the file defines
#   NAME.log      everything the run printed
# and appends "FILE<TAB>EXIT_CODE<TAB>SECONDS" to $RESULTS_DIR/SUITE/index.tsv.
run_file() {
  local suite=$1 file=$2
  shift 2
  local name out rc start
  name=$(echo "${file#tests/}" | tr '/' '_')
  name=${name%.js}
  out="$RESULTS_DIR/$suite/$name"
  rm -f "$out.json" "$out.planned" "$out.log"

  # Count the tests first (nothing runs; tests are defined when the file loads).
  ./node_modules/.bin/mocha --dry-run --require=./tests/integration/node.setup.js \
    --reporter=json --reporter-option "output=$out.planned" "$@" "$file" >/dev/null 2>&1 || true

  # In the background plus `wait`, so that Ctrl-C or a TERM reaches this script's trap at once
  # (bash runs traps only after a foreground command ends); the trap then stops this mocha.
  start=$(date +%s)
  rc=0
  timeout --kill-after=30 "$FILE_TIMEOUT" ./node_modules/.bin/mocha --exit \
    --timeout "$TEST_TIMEOUT" --require=./tests/integration/node.setup.js \
    --reporter=json --reporter-option "output=$out.json" "$@" "$file" \
    >"$out.log" 2>&1 </dev/null &
  mocha_pid=$!
  wait "$mocha_pid" || rc=$?
  mocha_pid=
  printf '%s\t%s\t%s\n' "$file" "$rc" "$(($(date +%s) - start))" >>"$RESULTS_DIR/$suite/index.tsv"

  if [ -f "$out.json" ]; then
    node -e '
      const s = require(process.argv[1]).stats;
      console.log(`  ${s.passes} passing, ${s.pending} pending, ${s.failures} failing`);
    ' "$out.json" | sed "s|^|$(printf '%-55s' "$file")|"
  else
    printf '%-55s  no report (exit code %s%s)\n' "$file" "$rc" \
      "$([ "$rc" = 124 ] && echo ", killed after ${FILE_TIMEOUT}s")"
  fi
  if [ -n "$settee_pid" ] && ! kill -0 "$settee_pid" 2>/dev/null; then
    die "settee is no longer running after $file, see $RESULTS_DIR/settee.log"
  fi
}

selected() { [ -z "$ONLY" ] || [[ $1 =~ $ONLY ]]; }

# Integration suite: tests/integration/test.*.js in name order, as bin/test-node.sh runs them
# (without the global hooks file, see the top of this script).
rm -rf "$RESULTS_DIR/integration" "$RESULTS_DIR/find"
mkdir -p "$RESULTS_DIR/integration" "$RESULTS_DIR/find"
: >"$RESULTS_DIR/integration/index.tsv"
: >"$RESULTS_DIR/find/index.tsv"

echo "== integration suite"
for file in tests/integration/test.*.js; do
  [ "$file" = tests/integration/test.setup_global_hooks.js ] && continue
  selected "$file" || continue
  run_file integration "$file" "${integration_hooks[@]}"
done

# Find suite: tests/find/*/test.*.js with the pouchdb-find plugin over http only. Its
# test-suite-1/test.aaa-setup.js holds the root hooks that create and destroy context.db for
# every test of every find file, so it is loaded with each of them.
echo "== find suite"
find_setup=tests/find/test-suite-1/test.aaa-setup.js
for file in tests/find/*/test.*.js; do
  [ "$file" = "$find_setup" ] && continue
  selected "$file" || continue
  PLUGINS=pouchdb-find ADAPTERS=http run_file find "$file" "$find_setup"
done

# ---------------------------------------------------------------------------------------------
# 4. Totals and failures, to stdout and results.txt (results.json for scripts).
# ---------------------------------------------------------------------------------------------
echo
node "$here/summarize-mocha-json.js" "$RESULTS_DIR" | tee "$RESULTS_DIR/results.txt"
echo "(logs and reports in $RESULTS_DIR)"
