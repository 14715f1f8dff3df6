#!/usr/bin/env bash
# Wall time of `codebox run -c 'print(1)'` against plain `docker run --rm IMAGE python3 -c
# 'print(1)'`, interleaved in the same session; prints each median of N runs and the ratio.
# Usage: bench/run-vs-docker.sh [N]   (default 10; needs scripts/setup.sh done)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10}"
image="${SANDBOX_IMAGE:-codebox-sandbox:latest}"
cargo build --quiet --release --bin codebox
bin=target/release/codebox
data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT

now_ms() { date +%s%N | awk '{printf "%.1f", $1 / 1e6}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2] + a[NR/2+1]) / 2}'; }

# One warm-up each so image layers and the binary are in the page cache.
DATA_DIR="$data" "$bin" run -c 'print(1)' >/dev/null
docker run --rm "$image" python3 -c 'print(1)' >/dev/null

codebox_times=(); docker_times=()
for _ in $(seq "$n"); do
  t0=$(now_ms); DATA_DIR="$data" "$bin" run -c 'print(1)' >/dev/null; t1=$(now_ms)
  codebox_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')")
  t0=$(now_ms); docker run --rm "$image" python3 -c 'print(1)' >/dev/null; t1=$(now_ms)
  docker_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')")
done
c=$(printf '%s\n' "${codebox_times[@]}" | median)
d=$(printf '%s\n' "${docker_times[@]}" | median)
echo "runs: $n (interleaved), image $image, docker client $(docker version --format '{{.Client.Version}}' 2>/dev/null), server $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
echo "codebox run -c 'print(1)'            median ${c} ms   (all: ${codebox_times[*]})"
echo "docker run --rm IMAGE python3 -c ... median ${d} ms   (all: ${docker_times[*]})"
awk -v c="$c" -v d="$d" 'BEGIN{printf "ratio docker/codebox: %.2fx\n", d/c}'
