#!/usr/bin/env bash
# Starts this machine's Docker daemon when none answers (no systemd here), or restarts it:
#   bash scripts/dockerd.sh start      (what scripts/setup.sh uses)
#   bash scripts/dockerd.sh restart    (the daemon-restart fault drill)
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
docker_ok() { docker info >/dev/null 2>&1; }

start() {
  docker_ok && return 0
  printf '==> %s\n' "starting dockerd"
  as_root sh -c 'nohup dockerd >>/var/log/dockerd.log 2>&1 &'
  for _ in $(seq 1 120); do
    docker_ok && return 0
    sleep 0.5
  done
  echo "dockerd did not come up; last log lines:" >&2
  tail -n 20 /var/log/dockerd.log >&2 || true
  exit 1
}

stop() {
  as_root pkill -TERM -x dockerd || true
  for _ in $(seq 1 120); do
    pgrep -x dockerd >/dev/null || return 0
    sleep 0.5
  done
  echo "dockerd did not stop within 60 s" >&2
  exit 1
}

case "${1:-start}" in
  start) start ;;
  restart) stop; start ;;
  *) echo "usage: $0 start|restart" >&2; exit 2 ;;
esac
