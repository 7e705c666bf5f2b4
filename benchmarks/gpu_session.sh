#!/usr/bin/env bash
# One device lease (docs/benchmarks.md, "GPU suite"): the peers benchmark on CUDA (issue 21), then the GPU suite
# with a budget that fits the lease. At most 8 log files in $OUT (what the device tool brings back).
set -u
OUT=${OUT:-runs/gpu_session}
mkdir -p "$OUT"
PEERS="$OUT/bench_peers_cuda.log"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl > "$PEERS" 2>&1
export PYTHONUNBUFFERED=1
PYTHONPATH="$PWD/src:/tmp/site" timeout "${PEERS_TIMEOUT:-110}" python3 benchmarks/bench_peers.py --device cuda \
    --rounds 5 --T 1024 4096 >> "$PEERS" 2>&1
echo "bench_peers rc=$?" >> "$PEERS"
SUITE=/tmp/gpu_suite
OUT=$SUITE SUITE_BUDGET=${SUITE_BUDGET:-390} \
    SUITE_SKIP=${SUITE_SKIP:-"train bench_drf bench_mmdend bench_dlif bench_recurrences bench_dgn"} \
    bash benchmarks/gpu_suite.sh
for f in summary env tests bench_neurons bench_other; do cp "$SUITE/$f.log" "$OUT/"; done
