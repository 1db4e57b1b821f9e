#!/usr/bin/env bash
# Recovery after peer outages (issue 16): settee's continuous replication, a 10 s and a
# 5-minute outage of the source and of the target, median of 3 (REPEAT); OUTAGES=10 for a
# quick run. Prints one markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
python3 benches/recovery.py "$target/release/settee" "${OUTAGES:-10,300}"
