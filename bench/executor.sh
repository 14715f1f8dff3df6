#!/usr/bin/env bash
# The HTTP hop: W1 through `codebox executor` against the same run in process, and plain
# docker run, in one run. Usage: bash bench/executor.sh [RUNS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
exec cargo bench --bench executor -- "${1:-30}"
