#!/usr/bin/env bash
# Fault drills that disturb the whole machine (they restart the Docker daemon), so they run
# alone, after the suite: `cargo test --test faults -- --ignored`. The other fault drills
# (database outage, crash and restart, full disk, gateway drop, 429s) are in the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export CODEBOX_TEST_MONGODB_URI="${CODEBOX_TEST_MONGODB_URI:-mongodb://127.0.0.1:27017}"
cargo test --quiet --test faults -- --ignored --nocapture --test-threads 1 2>&1 | grep -v "^$"
leaked="$(docker ps -aq --filter label=codebox.managed=true)"
if [ -n "$leaked" ]; then
  echo "containers with label codebox.managed=true remain after the drills:" >&2
  docker ps -a --filter label=codebox.managed=true >&2
  exit 1
fi
echo "==> fault drills passed"
