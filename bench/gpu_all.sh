#!/usr/bin/env bash
# Every GPU benchmark, one after another (never two at once: they share the GPU), each under its own time
# limit, each JSON line appended to ${1:-gpu_bench.jsonl} as soon as it is printed, so a run cut short keeps
# what finished. On a machine without a CUDA GPU each bench says "skipped" and exits 0. The checkout is put on
# PYTHONPATH, so a Python that has the dependencies but not this project installed (a GPU machine's own) runs it.
#   PYTHON=python3 bash bench/gpu_all.sh [OUTPUT.jsonl]
set -u
out=${1:-gpu_bench.jsonl}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python}
run() {
    local limit=$1
    shift
    echo "== $* (limit ${limit}s)" >&2
    local start=$SECONDS
    timeout "$limit" "$python" "$@" | tee -a "$out"
    echo "== exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" >&2
}
run "${LIMIT_LM:-200}" bench/gpu_lm.py
run "${LIMIT_IMAGES:-300}" bench/gpu_throughput.py
run "${LIMIT_SEQUENCE:-150}" bench/gpu_sequence_precision.py
run "${LIMIT_ATTENTION:-150}" bench/gpu_attention.py
run "${LIMIT_MOE:-60}" bench/moe.py --device cuda
run "${LIMIT_FLOPS:-60}" bench/gpu_flops.py
