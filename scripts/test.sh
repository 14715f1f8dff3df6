#!/usr/bin/env bash
# The test command: sets up everything on a fresh Debian machine (scripts/setup.sh), then
# formatting, lints and the whole test suite against the real Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test"
cargo test --quiet -- --test-threads "${TEST_THREADS:-4}"

# A leaked container is a failed run even when every test passed.
leaked="$(docker ps -aq --filter label=codebox.managed=true)"
if [ -n "$leaked" ]; then
  echo "containers with label codebox.managed=true remain after the suite:" >&2
  docker ps -a --filter label=codebox.managed=true >&2
  exit 1
fi
echo "==> all checks passed"
