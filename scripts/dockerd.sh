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

# Where systemd runs the daemon (a usual Debian host), it is asked; here (no init system)
# the daemon of /var/run/docker.pid is signalled, never another one (a drill's second daemon).
systemd_owns_docker() {
  [ -d /run/systemd/system ] && systemctl is-enabled docker >/dev/null 2>&1
}

stop() {
  local pid
  pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  as_root kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  echo "dockerd did not stop within 60 s" >&2
  exit 1
}

case "${1:-start}" in
  start)
    if systemd_owns_docker && ! docker_ok; then as_root systemctl start docker; fi
    start ;;
  restart)
    if systemd_owns_docker; then as_root systemctl restart docker; else stop; fi
    start ;;
  *) echo "usage: $0 start|restart" >&2; exit 2 ;;
esac
