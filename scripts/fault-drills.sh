#!/usr/bin/env bash
# Fault drills that disturb the whole machine (they restart the Docker daemon), so they run
# alone, after the suite: `cargo test --test faults -- --ignored`. The other fault drills
# (database outage, crash and restart, full disk, gateway drop, 429s) are in the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export CODEBOX_TEST_MONGODB_URI="${CODEBOX_TEST_MONGODB_URI:-mongodb://127.0.0.1:27017}"
cargo test --quiet --test faults -- --ignored --nocapture --test-threads 1 2>&1 | grep -v "^$"
bash scripts/check-no-leaks.sh "the drills"
echo "==> fault drills passed"
