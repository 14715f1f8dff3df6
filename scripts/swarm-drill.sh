#!/usr/bin/env bash
# Swarm drill on this machine, one node: builds the codebox image, deploys deploy/stack.yml
# (executor only; the bot is scaled to 0 because Discord is unreachable here), then
#   1. a burst of RUNS concurrent runs from the CLI through the executor (EXECUTOR_URLS),
#   2. the executor's container killed mid-run: the run in flight reports a clear error,
#      Swarm restarts the executor, the new one removes the sandbox its predecessor left,
#   3. a run works again; no sandbox container is left.
# The stack, its secrets and (if this script created it) the Swarm are removed at the end.
# Usage: bash scripts/swarm-drill.sh [RUNS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
port=18090
data=/var/lib/codebox
token="drill-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
log() { printf '==> %s\n' "$*"; }
fail() { echo "DRILL FAILED: $*" >&2; exit 1; }

bash scripts/setup.sh >/dev/null
log "building the codebox image"
deploy/build-image.sh codebox:latest

created_swarm=0
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  addr="$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)"
  log "initialising a one-node Swarm on $addr"
  docker swarm init --advertise-addr "$addr" >/dev/null
  created_swarm=1
fi
cleanup() {
  docker stack rm codebox >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do
    [ -z "$(docker ps -aq --filter label=com.docker.stack.namespace=codebox)" ] && break
    sleep 1
  done
  for s in codebox_executor_token codebox_mongodb_uri codebox_discord_token codebox_openai_api_key; do
    docker secret rm "$s" >/dev/null 2>&1 || true
  done
  if [ "$created_swarm" = 1 ]; then docker swarm leave --force >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
docker node update --label-add codebox.executor=true "$(docker info --format '{{.Swarm.NodeID}}')" >/dev/null
printf %s "$token" | docker secret create codebox_executor_token - >/dev/null
for s in codebox_mongodb_uri codebox_discord_token codebox_openai_api_key; do
  printf unused | docker secret create "$s" - >/dev/null
done
mkdir -p "$data"
override="$(mktemp --suffix=.yml)"
cat >"$override" <<YML
version: "3.8"
services:
  executor:
    environment:
      # The drill's store is the embedded one, shared with the CLI on this host.
      MONGODB_URI_FILE: /dev/null
      # No warm pool: every sandbox on the host is then a run's, easy to account for.
      WARM_POOL_SIZE: "0"
    ports:
      - target: 8090
        published: $port
        mode: host
  bot:
    deploy:
      replicas: 0
YML
log "deploying the stack"
docker stack deploy -c deploy/stack.yml -c "$override" codebox >/dev/null
healthy() {
  python3 - "$port" "$token" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/healthz", headers={"Authorization": "Bearer " + sys.argv[2]})
try:
    print(json.load(urllib.request.urlopen(req, timeout=2)).get("ready") is True)
except Exception:
    print(False)
PY
}
for _ in $(seq 1 120); do [ "$(healthy)" = True ] && break; sleep 1; done
[ "$(healthy)" = True ] || fail "the executor did not become healthy"

client() {
  DATA_DIR="$data" EXECUTOR_URLS="http://127.0.0.1:$port" EXECUTOR_TOKEN="$token" \
    target/release/codebox run --user drill --json -c "$1"
}
log "burst of $runs concurrent runs"
started=$(date +%s.%N)
pids=()
for n in $(seq 1 "$runs"); do
  client "print($n * 2)" >"/tmp/drill-$n.json" 2>&1 &
  pids+=($!)
done
ok=0
for n in $(seq 1 "$runs"); do
  wait "${pids[$((n-1))]}" || true
  grep -q "\"stdout\":\"$((n * 2))\\\\n\"" "/tmp/drill-$n.json" && ok=$((ok + 1))
done
elapsed=$(python3 -c "import time; print(round(time.time() - $started, 2))")
log "burst: $ok/$runs ok in ${elapsed}s"
[ "$ok" = "$runs" ] || fail "runs of the burst failed: $(cat /tmp/drill-*.json | head -5)"

log "killing the executor's container mid-run"
client "import time; print('up', flush=True); time.sleep(60)" >/tmp/drill-killed.json 2>&1 &
victim=$!
for _ in $(seq 1 120); do
  [ -n "$(docker ps -q --filter label=codebox.managed=true)" ] && break
  sleep 0.5
done
[ -n "$(docker ps -q --filter label=codebox.managed=true)" ] || fail "the long run did not start"
sleep 2
executor="$(docker ps -q --filter label=com.docker.swarm.service.name=codebox_executor)"
docker kill "$executor" >/dev/null
if wait "$victim"; then fail "the run in flight did not report the failure"; fi
grep -q "failed after the code started" /tmp/drill-killed.json \
  || fail "unclear error for the run in flight: $(cat /tmp/drill-killed.json)"
log "the run in flight said: $(tail -1 /tmp/drill-killed.json)"
for _ in $(seq 1 120); do
  new="$(docker ps -q --filter label=com.docker.swarm.service.name=codebox_executor)"
  [ -n "$new" ] && [ "$new" != "$executor" ] && [ "$(healthy)" = True ] && break
  sleep 1
done
[ "$(healthy)" = True ] || fail "Swarm did not bring the executor back"
for _ in $(seq 1 30); do
  sandboxes="$(docker ps -aq --filter label=codebox.managed=true | wc -l)"
  [ "$sandboxes" = 0 ] && break
  sleep 1
done
[ "$sandboxes" = 0 ] || fail "$sandboxes sandbox containers of the killed executor are left"
log "the restarted executor removed what its predecessor left"
grep -q '"stdout":"again\\n"' <(client "print('again')") || fail "no run after the restart"
log "a run works again"
log "drill passed"
