#!/usr/bin/env bash
# W1/W2/W3: codebox (pool off, pool on) against plain docker run, in one run.
# Usage: bash bench/pool.sh [RUNS]   (default 30; run scripts/setup.sh first on a new machine)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
exec cargo bench --bench pool -- "${1:-30}"
