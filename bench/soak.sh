#!/usr/bin/env bash
# Soak: SECONDS of mixed traffic through the bot against the local fakes (4 users: uploads,
# W1/W2 runs, an installed and an absent package, timeouts, /stop, /reset), then a report.
# Usage: bash bench/soak.sh [SECONDS]   (default 1800; CI runs 120)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
exec cargo bench --bench soak -- "${1:-1800}"
