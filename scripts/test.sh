#!/usr/bin/env bash
# The test command: sets up everything on a fresh Debian machine (scripts/setup.sh), then
# formatting, lints and the whole test suite against the real Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

# The MongoDB-compatible server the store tests use (no real mongod can be installed here).
mongo_port="${CODEBOX_TEST_MONGODB_PORT:-27017}"
port_open() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" 2>/dev/null; }
if ! port_open "$mongo_port"; then
  bash scripts/install-secantusd.sh
  echo "==> starting secantusd-py on port $mongo_port"
  mongo_dir="$(mktemp -d /var/tmp/codebox-test-mongo.XXXXXX)"
  nohup secantusd-py --host 127.0.0.1 --port "$mongo_port" --storage-path "$mongo_dir" \
    >"$mongo_dir.log" 2>&1 &
  for _ in $(seq 1 60); do port_open "$mongo_port" && break; sleep 0.5; done
  port_open "$mongo_port" || { echo "secantusd-py did not start:" >&2; tail -n 20 "$mongo_dir.log" >&2; exit 1; }
fi
export CODEBOX_TEST_MONGODB_URI="mongodb://127.0.0.1:$mongo_port"

echo "==> runner tests (pytest)"
bash scripts/runner-tests.sh
echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test"
cargo test --quiet -- --test-threads "${TEST_THREADS:-4}"

bash scripts/check-no-leaks.sh "the suite"
echo "==> all checks passed"
