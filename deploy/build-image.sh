#!/usr/bin/env bash
# Builds the codebox image (bot, executor, CLI) from a release binary of this checkout.
# Usage: deploy/build-image.sh [TAG]   (default codebox:latest)
# BASE_IMAGE overrides the base (default: codebox-base:bookworm when present, which machines
# without a registry build with deploy/build-base-image.sh; else debian:bookworm-slim).
# In a multi-node Swarm without a registry, load the image on every node:
#   docker save codebox:latest | ssh node docker load
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-codebox:latest}"
base="${BASE_IMAGE:-}"
if [ -z "$base" ]; then
  if docker image inspect codebox-base:bookworm >/dev/null 2>&1; then
    base=codebox-base:bookworm
  else
    base=debian:bookworm-slim
  fi
fi
cargo build --quiet --release --bin codebox
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp target/release/codebox deploy/Dockerfile "$context/"
docker build --quiet --build-arg BASE_IMAGE="$base" --tag "$tag" "$context" >/dev/null
echo "built $tag from $base"
