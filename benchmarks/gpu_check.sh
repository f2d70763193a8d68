#!/usr/bin/env bash
# Every CUDA figure of the project in one call (under 5 minutes on one GPU):
#   1. the CUDA tests (pytest -k cuda: results on the GPU equal the CPU's, results stay on it);
#   2. the benchmark suite's goals preset with --device cuda (linear_cka against the device's
#      GEMM rate, StreamingCKA.update, peak memory, compare_models against its floors and
#      pytorch-cka when that is importable).
#
# Usage, from anywhere:
#   benchmarks/gpu_check.sh [OUT_DIR]        (default: $GPU_CHECK_OUT, else $OUT, else
#                                             benchmarks/results/gpu)
# OUT_DIR receives env.txt (GPU, driver, torch), tests.txt, suite.txt, the suite's JSON, Markdown
# table and plot, and status.txt (the exit code of each step). Each step has a time limit; a
# failing step is recorded and the next still runs. Exit status: non-zero when any step failed.
#
# Dry run of the same steps on a CPU (checks the script, not the figures):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_PRESET=tiny benchmarks/gpu_check.sh /tmp/gpu-check-dry
# Peer libraries (pytorch-cka, ckatorch) are used when importable; a machine without network can
# get them from a folder made elsewhere with
#   pip install --no-deps --target DIR -c benchmarks/constraints.txt -r benchmarks/requirements.txt
# and GPU_CHECK_PEERS=DIR.
set -u
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-${GPU_CHECK_OUT:-${OUT:-$repo/benchmarks/results/gpu}}}"
device="${GPU_CHECK_DEVICE:-cuda}"
preset="${GPU_CHECK_PRESET:-goals}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export PYTHONPATH="$repo${GPU_CHECK_PEERS:+:$GPU_CHECK_PEERS}${PYTHONPATH:+:$PYTHONPATH}"
cd "$repo"
status=0
: >"$out/status.txt"

step() {  # step NAME LIMIT_S LOG COMMAND...: run with a time limit, record the exit code
    local name=$1 limit=$2 log=$3
    shift 3
    local start=$SECONDS
    timeout "$limit" "$@" >"$log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$out/status.txt"
    [ "$rc" -eq 0 ] || status=1
}

{
    date -u
    command -v nvidia-smi >/dev/null && nvidia-smi
    python -c "import sys, numpy, torch; print(sys.version); print('numpy', numpy.__version__); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} >"$out/env.txt" 2>&1

if [ "$device" != "cpu" ] && ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "no CUDA device visible to torch (see $out/env.txt)" | tee -a "$out/status.txt"
    exit 1
fi

step tests 150 "$out/tests.txt" \
    python -m pytest -q -p no:cacheprovider -k cuda -rs \
    tests/test_torch_core.py tests/test_torch_adapters.py tests/test_benchmarks.py
step suite 270 "$out/suite.txt" \
    python -m benchmarks --preset "$preset" --device "$device" --out "$out"
tail -n 3 "$out/tests.txt"
cat "$out/status.txt"
exit $status
