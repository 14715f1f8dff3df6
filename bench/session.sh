#!/usr/bin/env bash
# What keeping a conversation's variables costs: W1 with and without a session through the
# warm pool (and plain docker run), save/restore of 1 MB, 100 MB and 500 MB DataFrames.
# Usage: bash bench/session.sh [RUNS]   (default 30; run scripts/setup.sh first on a new machine)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
exec cargo bench --bench session -- "${1:-30}"
