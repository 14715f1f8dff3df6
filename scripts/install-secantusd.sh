#!/usr/bin/env bash
# Installs SecantusDB, the MongoDB wire-compatible server of the tests and drills (no real
# mongod can be installed on these machines), when `secantusd-py` is missing.
set -euo pipefail
command -v secantusd-py >/dev/null && exit 0
echo "==> installing SecantusDB (MongoDB wire-compatible test server)"
# Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
python3 -m pip install --quiet SecantusDB==0.7.0b3 \
  || python3 -m pip install --quiet --break-system-packages SecantusDB==0.7.0b3
command -v pyenv >/dev/null && pyenv rehash || true
