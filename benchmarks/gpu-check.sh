#!/usr/bin/env bash
# The GPU figures of issue #10 as one command, for a lent GPU machine (a few minutes once it is up):
#   here:            scripts/device-kit.sh
#   device tool run: carry [".device"], command "benchmarks/gpu-check.sh", timeout_s 600
# It prints, and writes to $OUT/gpu-check.log where $OUT is set:
# - benchmarks.gpu: embedding throughput, batch 1 to 256, fp16;
# - benchmarks.http (micro-batching on): /verify and /identify at c=1, 16 and 64, with one server process and
#   with WORKERS processes, each cell with the server's and the clients' CPU per request, the busy cores and the
#   GPU's utilisation; the 8-process cells twice, with the clients in one process (as the figures in the README
#   were measured) and in CLIENTS processes, so that a ceiling of the load generator shows as one.
# Where torch sees no GPU (PYTHON=.venv/bin/python benchmarks/gpu-check.sh, to try the script), the same
# cells run on the CPU and benchmarks.gpu is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
workers="${WORKERS:-8}"
clients="${CLIENTS:-4}"
requests="${REQUESTS:-384}"
. scripts/device-env.sh
photos=.device/testfaces/lfw  # scripts/device-kit.sh copies them there; here they are in ../shared
[ -d "$photos" ] || photos=../shared/data/testfaces/lfw
log="${OUT:-/tmp}/gpu-check.log"
export PYTHONUNBUFFERED=1
device="$("$python" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')"
http() {  # WORKERS CLIENT_PROCESSES CONCURRENCY...
    local n="$1" c="$2"
    shift 2
    echo "== benchmarks.http: $n server process(es), clients in $c process(es), FACEGATE_DEVICE=$device"
    WEB_CONCURRENCY="$n" FACEGATE_DEVICE="$device" FACEGATE_MICRO_BATCH=on "$python" -m benchmarks.http \
        --no-reference --photos "$photos" --requests "$requests" --client-processes "$c" --concurrency "$@"
}
{
    git log -1 --format='commit %h %s' 2>/dev/null || true
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    if [ "$device" = cuda ]; then
        echo "== benchmarks.gpu"
        "$python" -m benchmarks.gpu --repeats 30
    fi
    http 1 "$clients" 1 16 64
    http "$workers" 1 16 64
    http "$workers" "$clients" 16 64
} 2>&1 | grep --line-buffered -v -E " INFO |SAWarning|next\(self.gen\)" | tee "$log"
