#!/usr/bin/env bash
# Two-node Swarm drill on one machine: a second Docker daemon in its own network namespace
# (veth 10.213.0.1 <-> 10.213.0.2, its own --data-root, --exec-root, socket, bridge and
# hostname), joined to this machine's daemon in one Swarm; deploy/stack.yml deployed with an
# executor on each node, the bot as a Swarm task finding them through tasks.executor, and
# MongoDB (a MongoDB-compatible server on 10.213.0.1:27018) for records and file bytes
# (GridFS). Then:
#   1. a file uploaded from a client loads on either node;
#   2. the ignored test tests/swarm.rs drives the bot through a fake Discord and model on
#      10.213.0.1: bursts of RUNS messages (W1, W2) with two executor nodes and with one
#      (node 2 taken out by its label), each burst of two spread over both nodes, figures
#      printed; then node 2's daemon stopped mid-burst: every message answered with its
#      result or a clear error;
#   3. node 2 started again: its executor is back and no sandbox container is left on
#      either node.
# Each node has its own CPU, so that two nodes can show twice the work of one: node 1's
# daemon and containerd (and so its executor, sandboxes and the bot) are pinned to CPU 0,
# node 2's daemon to CPU 1; what a daemon starts inherits its CPU. Pinning is undone at the
# end. (SANDBOX_CPUSET does the same for an operator's sandboxes through their cgroups.)
# Everything it set up is removed at the end (KEEP=1 keeps it for a look).
# Usage: bash scripts/multinode-drill.sh [RUNS]   (default 20; CI runs 6)
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
all_cpus="0-$(( $(nproc) - 1 ))"
node1_cpu=0
node2_cpu=$(( $(nproc) > 1 ? 1 : 0 ))
# Every thread of this machine's daemon and containerd (and the shims they started).
pin_node1() {
  local cpus="$1" pid
  for pid in $(pgrep -x dockerd) $(pgrep -x containerd) $(pgrep -f containerd-shim); do
    # Node 2's daemon keeps its own CPU.
    [ "$pid" = "$(cat /var/run/docker-node2.pid 2>/dev/null)" ] && continue
    grep -q docker-node2 "/proc/$pid/cmdline" 2>/dev/null && continue
    taskset -a -cp "$cpus" "$pid" >/dev/null 2>&1 || true
  done
}
fail() { echo "DRILL FAILED: $*" >&2; exit 1; }

bash scripts/setup.sh >/dev/null
bash scripts/install-secantusd.sh
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
    # Its own CPU: what it starts (containerd, shims, containers) inherits it.
    taskset -a -cp $node2_cpu \$! >/dev/null
    daemon=\$!
    for _ in \$(seq 1 600); do [ -S $n2sock ] && break; sleep 0.2; done
    mount --bind $n2sock /run/docker.sock
    # Its own disk for the executor's DATA_DIR, as a real node has.
    mount --bind /var/lib/codebox-node2 /var/lib/codebox
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
mkdir -p /var/lib/docker-node2 /var/run/docker-node2 /var/lib/codebox /var/lib/codebox-node2
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

log "node 1 on CPU $node1_cpu, node 2 on CPU $node2_cpu"
pin_node1 "$node1_cpu"

mongo_dir="$(mktemp -d /var/tmp/codebox-drill-mongo.XXXXXX)"
secantusd-py --host 10.213.0.1 --port $mongo_port --storage-path "$mongo_dir" >"$mongo_dir.log" 2>&1 &
mongo_pid=$!
uri="mongodb://10.213.0.1:$mongo_port"
database="codebox_drill_$(date +%s)"

cleanup() {
  pin_node1 "$all_cpus"
  [ "${KEEP:-0}" = 1 ] && return
  docker stack rm codebox >/dev/null 2>&1 || true
  sleep 5
  for s in codebox_executor_token codebox_mongodb_uri codebox_discord_token codebox_openai_api_key; do
    docker secret rm "$s" >/dev/null 2>&1 || true
  done
  $N2 swarm leave --force >/dev/null 2>&1 || true
  [ "$created_swarm" = 1 ] && docker swarm leave --force >/dev/null 2>&1 || true
  # A Swarm that was here before keeps running: node 2's entry goes from it.
  if [ "$created_swarm" = 0 ]; then
    for id in $(docker node ls -q --filter name=node2 2>/dev/null); do
      docker node rm --force "$id" >/dev/null 2>&1 || true
    done
  fi
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
      WARM_POOL_MAX: "2"
    ports:
      - target: 8090
        published: $port
        mode: host
  bot:
    environment:
      MONGODB_DATABASE: $database
      RATE_LIMIT_PER_MINUTE: "1000"
      MAX_QUEUED_MESSAGES: "500"
    deploy:
      # Started by the test once its fake Discord listens; on node 1, whose daemon stays up.
      replicas: 0
      placement:
        constraints: [node.role == manager]
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
printf 'n\n1\n2\n3\n' >"$client_data/numbers.csv"
id=$(client "$one" files upload --user drill --no-summary --json "$client_data/numbers.csv" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['file_id'])")
for url in "$one" "$two"; do
  client "$url" run --user drill --json -c "print(int(load_file('$id').n.sum()))" | grep -q '"stdout":"6\\n"' \
    || fail "load_file of an uploaded file failed on $url"
done
log "a file uploaded from the client loads on both nodes (bytes in GridFS)"

log "the bot in the Swarm: bursts over one and two executor nodes, then node 2 stopped mid-burst"
CODEBOX_DRILL_FAKE_ADDR=10.213.0.1:0 CODEBOX_DRILL_EXECUTORS="$one,$two" CODEBOX_DRILL_TOKEN="$token" \
  CODEBOX_DRILL_RUNS="$runs" CODEBOX_DRILL_NODE2=node2 CODEBOX_DRILL_NODE2_PID_FILE=/var/run/docker-node2.pid \
  CODEBOX_DRILL_BOT_SERVICE=codebox_bot \
  cargo test --quiet --test swarm -- --ignored --nocapture --test-threads 1 2>&1 | grep -v "^$" \
  || fail "the bot's bursts (tests/swarm.rs)"
stop_node2
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
# Each node's pool is fixed at 2 (WARM_POOL_MAX=2): more is a container left behind.
[ "$runs1" -le 2 ] && [ "$runs2" -le 2 ] || fail "containers left behind: node 1 $runs1, node 2 $runs2"
client "$two" run --user drill --json -c "print('back')" | grep -q '"stdout":"back\\n"' || fail "no run on node 2 after its restart"
log "drill passed"
