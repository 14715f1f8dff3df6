#!/usr/bin/env bash
# The in-container runner's own tests (images/sandbox/tests): pytest on the host, without
# Docker and without the image's data stack. pytest lives in a venv of its own, made once
# and reused (CODEBOX_PYTEST_VENV to put it elsewhere), with the image's joblib (Debian's
# 1.2), whose vendored cloudpickle the session's save uses for what the code defined.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CODEBOX_PYTEST_VENV:-/var/tmp/codebox-pytest}"
if ! "$venv/bin/python" -c "import pytest, joblib.externals.cloudpickle" 2>/dev/null; then
  echo "==> creating the pytest venv at $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest "joblib==1.2.0"
fi

# No bytecode or cache in the work tree.
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider images/sandbox/tests "$@"
