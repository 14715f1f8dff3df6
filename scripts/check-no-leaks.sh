#!/usr/bin/env bash
# A leaked sandbox container fails the run even when every test passed.
# Usage: bash scripts/check-no-leaks.sh WHAT   (WHAT ran before: "the suite", "the drills")
set -euo pipefail
leaked="$(docker ps -aq --filter label=codebox.managed=true)"
if [ -n "$leaked" ]; then
  echo "containers with label codebox.managed=true remain after ${1:-the run}:" >&2
  docker ps -a --filter label=codebox.managed=true >&2
  exit 1
fi
