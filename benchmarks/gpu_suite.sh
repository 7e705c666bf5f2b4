#!/usr/bin/env bash
# dendrix on a CUDA GPU in one scripted run: environment, CUDA tests, a short training run, the benchmarks.
#
# Run from the repository root on the GPU machine (no network; dendrix is used from src/, not installed):
#
#     bash benchmarks/gpu_suite.sh                  # logs go to $OUT/ (or runs/gpu_suite/ when OUT is unset)
#
# Wheels in .whl/ (SpikingJelly 2.0 and loguru, pure Python; prepared with `pip download`, see the end of this
# header) are installed with --no-deps into /tmp/site so that the neuron benchmark can compare against
# SpikingJelly's CUDA implementation. Without .whl/ the SpikingJelly rows are simply absent.
#
# SUITE_SKIP="bench_drf train" skips every step whose name contains one of the words.
# The whole script stays inside SUITE_BUDGET seconds (default 510 = 8.5 min): every step has its own `timeout`,
# cut further to what is left of the budget, and a step that would start with less than 20 s left is skipped.
# A failing step does not stop the others. At most 8 log files are written:
#   summary.log  env.log  tests.log  bench_neurons.log  bench_dgn.log  bench_drf.log  bench_mmdend.log  bench_other.log
#
# Local dry run of the same steps on the CPU (small benchmark shapes):
#     SUITE_DEVICE=cpu SUITE_QUICK=1 PYTHON=.venv/bin/python OUT=/tmp/gpu_suite bash benchmarks/gpu_suite.sh
#
# Preparing the wheels (on a machine with PyPI access; .whl/ is git-ignored through .git/info/exclude, so it
# must be carried explicitly to the GPU machine):
#     python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux2014_x86_64 -d .whl spikingjelly==2.0.0 loguru

set -u

PYTHON=${PYTHON:-python3}
DEVICE=${SUITE_DEVICE:-cuda}
BUDGET=${SUITE_BUDGET:-510}
QUICK=()
EXTRA_SHAPE=(--shape 1024,64,1024)   # a GPU-sized neuron shape after the two default ones
if [ "${SUITE_QUICK:-0}" = "1" ]; then QUICK=(--quick); EXTRA_SHAPE=(); fi
OUT=${OUT:-runs/gpu_suite}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY="$OUT/summary.log"
: > "$SUMMARY"
for f in env tests bench_neurons bench_dgn bench_drf bench_mmdend bench_other; do : > "$OUT/$f.log"; done

SITE=/tmp/dendrix_gpu_site
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export MPLBACKEND=Agg
SECONDS=0

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LOG TIMEOUT CMD...: run CMD with a timeout cut to the remaining budget, append its output to LOG and
# its status to summary.log. SIGINT first (Python prints where it was, pytest its results so far), KILL 15 s later.
step() {
    local name=$1 log=$2 limit=$3
    shift 3
    local skip
    for skip in ${SUITE_SKIP:-}; do
        case "$name" in *"$skip"*) note "SKIPPED  $name (SUITE_SKIP)"; return 0 ;; esac
    done
    local left=$((BUDGET - SECONDS - 15))
    if [ "$left" -lt 20 ]; then
        note "SKIPPED  $name (budget: ${SECONDS}s of ${BUDGET}s used)"
        return 0
    fi
    if [ "$limit" -gt "$left" ]; then limit=$left; fi
    local start=$SECONDS
    {
        echo
        echo "================================================================================"
        echo "== $name   (timeout ${limit}s, started at ${start}s)"
        echo "== $*"
        echo "================================================================================"
    } >> "$log"
    timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    local took=$((SECONDS - start))
    if [ "$rc" -eq 0 ]; then
        note "ok       $name (${took}s)"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        note "TIMEOUT  $name after ${took}s (limit ${limit}s; partial output in $(basename "$log"))"
    else
        note "FAILED   $name rc=$rc (${took}s; see $(basename "$log"))"
    fi
    return 0
}

# -- 1. environment -------------------------------------------------------------------------------------------
ENV_LOG="$OUT/env.log"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')   host: $(hostname)   cwd: $PWD"
    echo "device under test: $DEVICE   budget: ${BUDGET}s"
    if command -v nvidia-smi > /dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
} >> "$ENV_LOG" 2>&1

shopt -s nullglob
WHEELS=(.whl/*.whl)
shopt -u nullglob
if [ "${#WHEELS[@]}" -gt 0 ]; then
    mkdir -p "$SITE"
    {
        echo "installing ${#WHEELS[@]} wheel(s) into $SITE: ${WHEELS[*]}"
        if ! "$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" "${WHEELS[@]}"; then
            echo "pip failed; unpacking the (pure-Python) wheels with zipfile instead"
            for w in "${WHEELS[@]}"; do "$PYTHON" -m zipfile -e "$w" "$SITE"; done
        fi
    } >> "$ENV_LOG" 2>&1
    export PYTHONPATH="$SITE:$PYTHONPATH"
else
    echo "no .whl/ wheels: SpikingJelly comparisons are skipped" >> "$ENV_LOG"
fi

step "versions" "$ENV_LOG" 120 "$PYTHON" - "$DEVICE" <<'PY'
import importlib, platform, sys
import torch
device = torch.device(sys.argv[1])
print(f"python {platform.python_version()}  torch {torch.__version__}  CUDA build {torch.version.cuda}  "
      f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}")
print(f"cuda available: {torch.cuda.is_available()}  devices: {torch.cuda.device_count()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU 0: {p.name}, {p.total_memory / 2**30:.1f} GiB, capability {p.major}.{p.minor}, {p.multi_processor_count} SMs")
    print(f"TF32 matmul allowed: {torch.backends.cuda.matmul.allow_tf32}, cuDNN TF32: {torch.backends.cudnn.allow_tf32}")
for name in ("numpy", "scipy", "numba", "triton", "pytest", "h5py", "sklearn", "safetensors", "yaml", "tqdm",
             "matplotlib", "loguru", "spikingjelly", "snntorch"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:12s} {getattr(mod, '__version__', '?')}")
    except Exception as err:
        print(f"{name:12s} not importable ({type(err).__name__}: {err})")
import dendrix
print(f"dendrix from {dendrix.__file__}; kinds: {', '.join(dendrix.available())}")
from dendrix.ops.bilinear import HAVE_NUMBA
print(f"dendrix bilinear numba engine available: {HAVE_NUMBA}")
if device.type == "cuda":
    try:
        from spikingjelly.activation_based.functional import neuron_implementation
        print("SpikingJelly LIF on CUDA:", neuron_implementation("lif", device))
    except Exception as err:
        print(f"SpikingJelly LIF on CUDA: unavailable ({type(err).__name__}: {err})")
    x = torch.randn(1024, 1024, device=device)
    torch.cuda.synchronize()
    print(f"CUDA matmul smoke test: {float((x @ x).abs().mean()):.3f}")
PY

# -- 2. tests and a short training run ----------------------------------------------------------------------------
TESTS_LOG="$OUT/tests.log"
# No -x: one run on a borrowed GPU should report every failure, not only the first.
step "pytest contract + cuda ($DEVICE)" "$TESTS_LOG" 240 \
    env DENDRIX_TEST_DEVICE="$DEVICE" "$PYTHON" -m pytest -q -rfEs -p no:cacheprovider \
    tests/test_contract.py tests/test_cuda.py
shopt -s nullglob
TRITON_TESTS=(tests/test_*triton*.py)
shopt -u nullglob
if [ "${#TRITON_TESTS[@]}" -gt 0 ]; then
    step "pytest triton kernels" "$TESTS_LOG" 240 \
        env DENDRIX_TEST_DEVICE="$DEVICE" "$PYTHON" -m pytest -q -rfEs -p no:cacheprovider "${TRITON_TESTS[@]}"
fi
TRAIN_DIR=$(mktemp -d /tmp/dendrix_gpu_train.XXXXXX)
for kind in lif dgn; do
    # the demo config (FSDD, embedded) cut to 2 epochs of 2 optimiser steps (2187 training samples, batches of 1100)
    step "dendrix train ($kind, $DEVICE)" "$TESTS_LOG" 120 \
        env CUBLAS_WORKSPACE_CONFIG=:4096:8 "$PYTHON" -m dendrix train --config demo "device=$DEVICE" "model.kind=$kind" \
        train.epochs=2 data.batch_size=1100 data.eval_batch_size=1000 train.progress=false \
        --out "$TRAIN_DIR/$kind"
done

# -- 3. benchmarks ------------------------------------------------------------------------------------------------
step "bench_neurons" "$OUT/bench_neurons.log" 150 \
    "$PYTHON" benchmarks/bench_neurons.py --device "$DEVICE" ${EXTRA_SHAPE[@]+"${EXTRA_SHAPE[@]}"} ${QUICK[@]+"${QUICK[@]}"}
step "bench_dgn" "$OUT/bench_dgn.log" 90 \
    "$PYTHON" benchmarks/bench_dgn.py --device "$DEVICE" --reference ${QUICK[@]+"${QUICK[@]}"}
step "bench_mmdend" "$OUT/bench_mmdend.log" 120 \
    "$PYTHON" benchmarks/bench_mmdend.py --device "$DEVICE" --pmsn --fft ${QUICK[@]+"${QUICK[@]}"}
step "bench_drf" "$OUT/bench_drf.log" 150 \
    "$PYTHON" benchmarks/bench_drf.py --device "$DEVICE" --gpu-sweep ${QUICK[@]+"${QUICK[@]}"}
if grep -q -- "--device" benchmarks/bench_dlif.py; then
    step "bench_dlif (auto)" "$OUT/bench_other.log" 120 \
        "$PYTHON" benchmarks/bench_dlif.py --device "$DEVICE" ${QUICK[@]+"${QUICK[@]}"}
    if [ "$DEVICE" = "cuda" ]; then
        step "bench_dlif (torch engine)" "$OUT/bench_other.log" 120 \
            "$PYTHON" benchmarks/bench_dlif.py --device "$DEVICE" --backend torch ${QUICK[@]+"${QUICK[@]}"}
    fi
else
    note "SKIPPED  bench_dlif (it has no --device option yet)"
fi
if [ -f benchmarks/bench_lif_gpu.py ]; then
    step "bench_lif_gpu" "$OUT/bench_other.log" 120 "$PYTHON" benchmarks/bench_lif_gpu.py ${QUICK[@]+"${QUICK[@]}"}
fi
if [ -f benchmarks/bench_recurrences_gpu.py ]; then
    step "bench_recurrences_gpu" "$OUT/bench_other.log" 120 \
        "$PYTHON" benchmarks/bench_recurrences_gpu.py ${QUICK[@]+"${QUICK[@]}"}
fi

# -- summary ------------------------------------------------------------------------------------------------------
{
    echo
    echo "pytest result lines:"
    grep -E "^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error).* =+$|^(FAILED|ERROR) " "$TESTS_LOG" || echo "  (none found)"
    echo
    echo "training results:"
    grep -E "^(test accuracy|training into|dendrix train: error)" "$TESTS_LOG" || echo "  (none found)"
    echo
    echo "total ${SECONDS}s of ${BUDGET}s budget; logs: $(cd "$OUT" && ls *.log | tr '\n' ' ')"
} | tee -a "$SUMMARY"
rm -rf "$TRAIN_DIR"
