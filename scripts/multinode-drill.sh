#!/usr/bin/env bash
# Two-node Swarm drill on one machine: a second Docker daemon in its own network namespace
# (veth 10.213.0.1 <-> 10.213.0.2, its own --data-root, --exec-root, socket, bridge and
# hostname), joined to this machine's daemon in one Swarm; the stack deployed with an executor
# on each node and MongoDB (a MongoDB-compatible server on 10.213.0.1:27018) for records and
# file bytes (GridFS). Then:
#   1. bursts of RUNS W1 runs from the CLI (a client like the bot) through one executor and
#      through both: throughput of each, and runs per node (each must have run some);
#   2. a file uploaded from the client is loaded on either node;
#   3. node 2's daemon stopped mid-burst: every run completes on node 1 or reports a clear
#      error; after node 2 is back, no sandbox container is left on either node.
# Everything it set up is removed at the end (KEEP=1 keeps it for a look).
# Usage: bash scripts/multinode-drill.sh [RUNS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
port=18090
ns=cbx2
n2sock=/var/run/docker-node2.sock
N2="docker -H unix://$n2sock"
token="drill-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mongo_port=27018
log() { printf '==> %s\n' "$*"; }
fail() { echo "DRILL FAILED: $*" >&2; exit 1; }

bash scripts/setup.sh >/dev/null
log "building the codebox image"
deploy/build-image.sh codebox:latest

start_node2() {
  # Its own network, hostname and mount namespace. In the latter /run/docker.sock is node 2's
  # own socket: the executor there mounts /var/run/docker.sock, which on a real node is that
  # node's daemon, and here must not be this machine's.
  nsenter --net=/var/run/netns/$ns unshare --uts --mount sh -c "
    hostname node2
    rm -f $n2sock
    dockerd --data-root /var/lib/docker-node2 --exec-root /var/run/docker-node2 \
      -H unix://$n2sock --pidfile /var/run/docker-node2.pid &
    daemon=\$!
    for _ in \$(seq 1 600); do [ -S $n2sock ] && break; sleep 0.2; done
    mount --bind $n2sock /run/docker.sock
    wait \$daemon" \
    >>/var/log/dockerd-node2.log 2>&1 &
  for _ in $(seq 1 360); do $N2 info >/dev/null 2>&1 && return 0; sleep 0.5; done
  fail "node 2's daemon did not start: $(tail -3 /var/log/dockerd-node2.log)"
}
stop_node2() {
  local pid
  pid="$(cat /var/run/docker-node2.pid 2>/dev/null || true)"
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  # Gone for good, its containerd too: a new daemon cannot start beside them.
  for _ in $(seq 1 120); do
    { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || break
    sleep 0.5
  done
  for _ in $(seq 1 60); do
    pgrep -f "docker-node2/containerd/containerd.toml" >/dev/null || return 0
    sleep 0.5
  done
  pkill -9 -f "docker-node2/containerd/containerd.toml" || true
}

if ! ip netns list | grep -qw $ns; then
  log "network namespace $ns for node 2"
  ip netns add $ns
  ip link add veth-cbx0 type veth peer name veth-cbx1
  ip link set veth-cbx1 netns $ns
  ip addr add 10.213.0.1/24 dev veth-cbx0
  ip link set veth-cbx0 up
  ip netns exec $ns ip addr add 10.213.0.2/24 dev veth-cbx1
  ip netns exec $ns ip link set veth-cbx1 up
  ip netns exec $ns ip link set lo up
  ip netns exec $ns ip route add default via 10.213.0.1
fi
mkdir -p /var/lib/docker-node2 /var/run/docker-node2
if ! $N2 info >/dev/null 2>&1; then
  log "starting node 2's daemon"
  # A membership left by an earlier, interrupted drill would refuse the join.
  rm -rf /var/lib/docker-node2/swarm
  start_node2
fi
log "loading the images on node 2 (no registry)"
docker save codebox:latest codebox-sandbox:latest | $N2 load >/dev/null

created_swarm=0
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  docker swarm init --advertise-addr 10.213.0.1 >/dev/null
  created_swarm=1
fi
if [ "$($N2 info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  $N2 swarm leave --force >/dev/null 2>&1 || true
  $N2 swarm join --token "$(docker swarm join-token -q worker)" --advertise-addr 10.213.0.2 10.213.0.1:2377 >/dev/null
fi
for node in $(docker node ls --format '{{.ID}}'); do
  docker node update --label-add codebox.executor=true "$node" >/dev/null
done
log "swarm: $(docker node ls --format '{{.Hostname}}/{{.Status}}' | tr '\n' ' ')"

mongo_dir="$(mktemp -d /var/tmp/codebox-drill-mongo.XXXXXX)"
secantusd-py --host 10.213.0.1 --port $mongo_port --storage-path "$mongo_dir" >"$mongo_dir.log" 2>&1 &
mongo_pid=$!
uri="mongodb://10.213.0.1:$mongo_port"
database="codebox_drill_$(date +%s)"

cleanup() {
  [ "${KEEP:-0}" = 1 ] && return
  docker stack rm codebox >/dev/null 2>&1 || true
  sleep 5
  for s in codebox_executor_token codebox_mongodb_uri codebox_discord_token codebox_openai_api_key; do
    docker secret rm "$s" >/dev/null 2>&1 || true
  done
  $N2 swarm leave --force >/dev/null 2>&1 || true
  [ "$created_swarm" = 1 ] && docker swarm leave --force >/dev/null 2>&1 || true
  stop_node2
  ip netns del $ns 2>/dev/null || true
  ip link del veth-cbx0 2>/dev/null || true
  kill "$mongo_pid" 2>/dev/null || true
}
trap cleanup EXIT
printf %s "$token" | docker secret create codebox_executor_token - >/dev/null
printf %s "$uri/$database" | docker secret create codebox_mongodb_uri - >/dev/null
for s in codebox_discord_token codebox_openai_api_key; do
  printf unused | docker secret create "$s" - >/dev/null
done
override="$(mktemp --suffix=.yml)"
cat >"$override" <<YML
version: "3.8"
services:
  executor:
    environment:
      MONGODB_DATABASE: $database
      WARM_POOL_SIZE: "2"
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
one="http://127.0.0.1:$port"
two="http://10.213.0.2:$port"
health() {
  python3 - "$1" "$token" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/healthz", headers={"Authorization": "Bearer " + sys.argv[2]})
try:
    h = json.load(urllib.request.urlopen(req, timeout=2))
    print("ready" if h.get("ready") and h.get("pool_idle") == h.get("pool_target") else "warming")
except Exception:
    print("down")
PY
}
runs_on() {
  python3 - "$1" "$token" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/metrics", headers={"Authorization": "Bearer " + sys.argv[2]})
text = urllib.request.urlopen(req, timeout=5).read().decode()
print(int(sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("codebox_runs_total{"))))
PY
}
for url in "$one" "$two"; do
  for _ in $(seq 1 180); do [ "$(health "$url")" = ready ] && break; sleep 1; done
  [ "$(health "$url")" = ready ] || fail "the executor at $url is not ready"
done
log "both executors ready (warm pools full)"

client_data="$(mktemp -d)"
client() {
  DATA_DIR="$client_data" MONGODB_URI="$uri" MONGODB_DATABASE="$database" \
    EXECUTOR_URLS="$1" EXECUTOR_TOKEN="$token" target/release/codebox "${@:2}"
}
W2='import pandas as pd, numpy as np, matplotlib.pyplot as plt
df = pd.DataFrame({"x": np.arange(20000), "y": np.random.rand(20000)})
df["y"].head(500).plot(); plt.savefig("plot.png")
print(len(df.describe()) and N)'
burst() { # URLS TAG [W2] -> seconds; every run must print its number
  local urls="$1" tag="$2" code started pids=() ok=0
  started=$(date +%s.%N)
  for n in $(seq 1 "$runs"); do
    if [ "${3:-}" = W2 ]; then code="${W2//N/$n}"; else code="print($n)"; fi
    client "$urls" run --user drill --json -c "$code" >"/tmp/mdrill-$tag-$n.json" 2>&1 &
    pids+=($!)
  done
  for n in $(seq 1 "$runs"); do
    wait "${pids[$((n-1))]}" || true
    grep -q "\"stdout\":\"$n\\\\n\"" "/tmp/mdrill-$tag-$n.json" && ok=$((ok + 1))
  done
  [ "$ok" = "$runs" ] || fail "$tag: $ok/$runs ok: $(grep -L '"status":"ok"' /tmp/mdrill-$tag-*.json | head -1 | xargs cat)"
  python3 -c "import time; print(round(time.time() - $started, 2))"
}
settle() { for url in "$@"; do for _ in $(seq 1 120); do [ "$(health "$url")" = ready ] && break; sleep 0.5; done; done; }

before1=$(runs_on "$one"); before2=$(runs_on "$two")
t1=$(burst "$one" one)
settle "$one"
after1=$(runs_on "$one")
t2=$(burst "$one,$two" both)
settle "$one" "$two"
on1=$(( $(runs_on "$one") - after1 )); on2=$(( $(runs_on "$two") - before2 ))
log "W1 burst of $runs: one executor ${t1}s ($(python3 -c "print(round($runs/$t1,1))") runs/s); two executors ${t2}s ($(python3 -c "print(round($runs/$t2,1))") runs/s), ratio $(python3 -c "print(round($t1/$t2,2))")x; node 1 ran $on1, node 2 ran $on2"
[ "$on1" -gt 0 ] && [ "$on2" -gt 0 ] || fail "the burst was not spread over both nodes"
w1=$(burst "$one" w2one W2)
settle "$one"
w2=$(burst "$one,$two" w2both W2)
settle "$one" "$two"
log "W2 (pandas + a PNG) burst of $runs: one executor ${w1}s, two executors ${w2}s, ratio $(python3 -c "print(round($w1/$w2,2))")x"

printf 'n\n1\n2\n3\n' >"$client_data/numbers.csv"
id=$(client "$one" files upload --user drill --no-summary --json "$client_data/numbers.csv" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['file_id'])")
for url in "$one" "$two"; do
  client "$url" run --user drill --json -c "print(int(load_file('$id').n.sum()))" | grep -q '"stdout":"6\\n"' \
    || fail "load_file of an uploaded file failed on $url"
done
log "a file uploaded from the client loads on both nodes (bytes in GridFS)"

log "stopping node 2's daemon mid-burst"
pids=()
for n in $(seq 1 "$runs"); do
  client "$one,$two" run --user drill --json -c "import time; time.sleep(2); print($n)" >"/tmp/mdrill-fault-$n.json" 2>"/tmp/mdrill-fault-$n.err" &
  pids+=($!)
done
sleep 1
stop_node2
completed=0; failed_clearly=0; other=0
for n in $(seq 1 "$runs"); do
  wait "${pids[$((n-1))]}" || true
  if grep -q "\"stdout\":\"$n\\\\n\"" "/tmp/mdrill-fault-$n.json"; then completed=$((completed + 1))
  elif grep -q "failed after the code started\|the connection broke\|no executor" "/tmp/mdrill-fault-$n.err"; then failed_clearly=$((failed_clearly + 1))
  else other=$((other + 1)); fi
done
log "with node 2 stopped: $completed completed, $failed_clearly reported a clear error, $other otherwise"
[ "$other" = 0 ] || fail "runs ended without a result or a clear error: $(cat /tmp/mdrill-fault-*.err | head -5)"
log "starting node 2 again"
start_node2
for _ in $(seq 1 180); do [ "$(health "$two")" = ready ] && break; sleep 1; done
[ "$(health "$two")" = ready ] || fail "node 2's executor did not come back"
# Used containers are removed in the background; warm pools refill to 2 each.
for _ in $(seq 1 60); do
  runs1=$(docker ps -aq --filter label=codebox.managed=true | wc -l)
  runs2=$($N2 ps -aq --filter label=codebox.managed=true | wc -l)
  [ "$runs1" -le 2 ] && [ "$runs2" -le 2 ] && break
  sleep 1
done
log "managed containers now: node 1 $runs1 (warm pool), node 2 $runs2 (warm pool)"
[ "$runs1" -le 2 ] && [ "$runs2" -le 2 ] || fail "containers left behind: node 1 $runs1, node 2 $runs2"
client "$two" run --user drill --json -c "print('back')" | grep -q '"stdout":"back\\n"' || fail "no run on node 2 after its restart"
log "drill passed"
