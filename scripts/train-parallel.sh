#!/usr/bin/env bash
# Train several configs side by side on one GPU from one saved pool (model.training.pool), each sized to MINUTES of
# wall time. A 64 px MobileFaceNet leaves most of an H100 idle, so parallel runs cost little more than one.
#   scripts/train-parallel.sh OUT_DIR MINUTES POOL CONFIG...
# Each run writes OUT_DIR/<config name>/{checkpoint.pt,log.jsonl}, and its console log to
# LOG_DIR/<config name>.log (LOG_DIR defaults to OUT_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1" minutes="$2" pool="$3"
shift 3
python="${PYTHON:-python3}"
logs="${LOG_DIR:-$out}"
mkdir -p "$out" "$logs"
pids=()
for config in "$@"; do
    name="$(basename "$config" .toml)"
    PYTHONUNBUFFERED=1 "$python" -m model.training "$config" --pool "$pool" --minutes "$minutes" \
        --device cuda --out-root "$out" > "$logs/$name.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
