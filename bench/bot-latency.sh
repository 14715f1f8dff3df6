#!/usr/bin/env bash
# Where a message's time goes through the real bot (fake Discord, instantly answering fake
# model): the median of each phase for W1 with the warm pool on and off and W2 with it on,
# and plain docker run of W1 in the same run for the ratio.
# Usage: bash bench/bot-latency.sh [RUNS]   (default 8; run scripts/setup.sh first on a new machine)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
exec cargo bench --bench bot_latency -- "${1:-8}"
