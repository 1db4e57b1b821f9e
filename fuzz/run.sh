#!/usr/bin/env bash
# make fuzz: every target of settee::fuzz under AFL++ (cargo-afl, stable toolchain) for
# SECONDS each (default 60), from fuzz/corpus/<target>. A crash or hang found is copied to
# fuzz/regressions/<target>/, which tests/fuzz_corpus.rs replays in every `make test`, and
# the run fails. Findings of each run stay in target/fuzz/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
if ! cargo afl --version >/dev/null 2>&1; then
  echo "cargo-afl is missing: cargo install cargo-afl --locked && cargo afl config --build" >&2
  exit 1
fi
cargo afl build --release --features fuzz --bin settee-fuzz
bin="${CARGO_TARGET_DIR:-target}/release/settee-fuzz"
found=0
for t in $(sed -n 's/^    ("\([a-z_]*\)", .*/\1/p' src/fuzz.rs); do
  out="${CARGO_TARGET_DIR:-target}/fuzz/$t"
  rm -rf "$out"
  mkdir -p "$(dirname "$out")"
  echo "== $t: ${secs}s"
  AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_QUIET=1 \
    cargo afl fuzz -V "$secs" -m 1024 -t 2000 -i "fuzz/corpus/$t" -o "$out" -- "$bin" "$t" >"$out.log" 2>&1 ||
    { echo "afl-fuzz failed for $t (see $out.log)"; tail -20 "$out.log"; exit 1; }
  grep -E "execs_done|corpus_count|saved_crashes|saved_hangs" "$out/default/fuzzer_stats" | tr -s ' ' | paste -sd' '
  for kind in crashes hangs; do
    for f in "$out"/default/$kind/id:*; do
      [ -e "$f" ] || continue
      mkdir -p "fuzz/regressions/$t"
      cp "$f" "fuzz/regressions/$t/$kind-$(sha1sum "$f" | cut -c1-12)"
      found=$((found + 1))
    done
  done
done
if [ "$found" -gt 0 ]; then
  echo "$found crash(es) or hang(s) copied to fuzz/regressions/: fix them, keep the files" >&2
  exit 1
fi
echo "no crash, no hang"
