#!/usr/bin/env bash
# The real-model drill: the real bot (fake Discord, real Docker) against a real local model
# (scripts/real-model.sh). Prints per task PASS/FAIL, model requests, tool calls, tokens,
# seconds and the code the model wrote, then a SUMMARY line.
#
#   bash scripts/real-model-drill.sh                       # all tasks (20-40 min on 2 cores)
#   REAL_MODEL_TASKS=csv_sum_mean,no_code bash scripts/real-model-drill.sh   # a subset
#
# Tasks: csv_sum_mean excel_rows plot follow_up_variable package_install fix_failing_code
# file_by_id no_code (tests/real_model_drill.rs). Needs network once, for the install.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/real-model.sh install
started_here=0
if ! bash scripts/real-model.sh status >/dev/null 2>&1; then
  bash scripts/real-model.sh start
  started_here=1
fi
trap '[ "$started_here" = 1 ] && bash scripts/real-model.sh stop' EXIT

port="${REAL_MODEL_PORT:-8091}"
log="${REAL_MODEL_DRILL_LOG:-/tmp/codebox-real-model-drill.log}"
echo "==> drill (log: $log)"
REAL_MODEL_URL="http://127.0.0.1:$port/v1" \
  cargo test --quiet --test real_model_drill -- --ignored --nocapture 2>&1 | tee "$log" \
  | grep -E "^(TASK|SUMMARY|  code|    |  reply)" || true
grep -q "^SUMMARY" "$log" || { echo "the drill did not finish; see $log" >&2; exit 1; }
