#!/usr/bin/env bash
# Offline schema check of deploy/kubernetes/*.yaml (no cluster needed): kubernetes-validate
# from PyPI carries the Kubernetes JSON schemas.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m kubernetes_validate --version >/dev/null 2>&1 \
  || python3 -m pip install --quiet kubernetes-validate \
  || python3 -m pip install --quiet --break-system-packages kubernetes-validate
python3 -m kubernetes_validate --strict --kubernetes-version 1.30 deploy/kubernetes/*.yaml
