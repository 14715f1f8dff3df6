#!/usr/bin/env bash
# Idempotent machine set-up for codebox on Debian: Docker engine (installed and started when
# no daemon answers), gVisor's runsc registered as a runtime, the local base image and the
# sandbox image. Safe to run again: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

register_runsc() {
  # dockerd reads runtimes from daemon.json; runsc gets its own --network=none so that even a
  # misconfigured container cannot reach a network under gVisor.
  as_root mkdir -p /etc/docker
  as_root python3 - <<'PY'
import json, os
path = "/etc/docker/daemon.json"
conf = {}
if os.path.exists(path):
    with open(path) as f:
        text = f.read().strip()
        conf = json.loads(text) if text else {}
want = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}
if conf.get("runtimes", {}).get("runsc") != want:
    conf.setdefault("runtimes", {})["runsc"] = want
    with open(path, "w") as f:
        json.dump(conf, f, indent=2)
    print("registered runsc in", path)
PY
}

docker_ok() { docker info >/dev/null 2>&1; }

start_dockerd() {
  if docker_ok; then
    # Picks up a runtime registered after the daemon started; harmless otherwise.
    if ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q runsc; then
      as_root pkill -HUP -x dockerd || true
      sleep 1
    fi
    return 0
  fi
  bash scripts/dockerd.sh start
}

apt_install docker.io runsc debootstrap ca-certificates python3 python3-pip python3-venv
register_runsc
start_dockerd

base_image="${CODEBOX_BASE_IMAGE:-codebox-base:bookworm}"
sandbox_image="${SANDBOX_IMAGE:-codebox-sandbox:latest}"

# The script checks the image itself (present, with the whole stack) and returns at once
# when it is; a missing or older base is built by debootstrap (a few minutes).
log "local base image $base_image"
as_root deploy/build-base-image.sh "$base_image"

log "building codebox"
cargo build --quiet --bin codebox

# Rebuilt whenever the image is missing or its inputs changed: the image carries a label with
# the hash of its build context, so an unchanged context is a no-op.
log "sandbox image $sandbox_image"
target/debug/codebox image build --base "$base_image" --tag "$sandbox_image" --if-changed
