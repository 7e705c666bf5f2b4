"""torch.compile of the demo MLP (64 -> 128 -> 10): compile time, and compiled against eager fwd+bwd (issue 16).

For each kind: the model of ``build_model({"arch": "mlp", "kind": kind, "hidden": [128]})`` on ``[T, B, 64]``
spikes; the compile time is the wall time of the first compiled forward + backward (Dynamo capture,
AOTAutograd, and the backend's code generation); then eager and compiled forward + backward are timed in
interleaved rounds (each round: the median of ``--repeat`` steps of each mode), so their ratio comes from one run
on one machine state: the table gives the median over rounds and the range of the per-round ratios.

    .venv/bin/python benchmarks/bench_compile.py                    # every kind, inductor, CPU
    TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 .venv/bin/python benchmarks/bench_compile.py --threads 1 --cpu-time
    .venv/bin/python benchmarks/bench_compile.py --kinds lif plif dalif alif dgn --threads 1 --cpu-time
    .venv/bin/python benchmarks/bench_compile.py --kinds lif plif dgn dlif --backend aot_eager
    .venv/bin/python benchmarks/bench_compile.py --quick            # smoke run (T=8, one round)
    python benchmarks/bench_compile.py --device cuda

The last line prints the machine and its load average: figures from a loaded machine say little.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_line  # noqa: E402

from dendrix import available  # noqa: E402
from dendrix.data import DatasetInfo  # noqa: E402
from dendrix.models import build_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, clock=time.perf_counter
          ) -> float:
    """One forward + backward; its time in ms on ``clock``."""
    for p in model.parameters():
        p.grad = None
    _sync(device)
    start = clock()
    F.cross_entropy(model(x), y).backward()
    _sync(device)
    return (clock() - start) * 1e3


def bench_kind(kind: str, args, device: torch.device) -> dict:
    info = DatasetInfo("synthetic", 64, 10, args.T)
    torch.manual_seed(0)
    eager = build_model({"arch": "mlp", "kind": kind, "hidden": [128]}, info).to(device)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.T, args.B, 64, generator=g) < 0.1).float().to(device)
    y = torch.randint(0, 10, (args.B,), generator=g).to(device)
    torch._dynamo.reset()
    mode = None if args.mode == "default" else args.mode
    compiled = torch.compile(eager, backend=args.backend, mode=mode if args.backend == "inductor" else None)
    compile_s = _step(compiled, x, y, device) / 1e3      # wall time: compiling runs worker processes too
    clock = time.process_time if args.cpu_time else time.perf_counter
    _step(eager, x, y, device)  # warm-up
    _step(compiled, x, y, device)
    eager_ms, compiled_ms = [], []
    for _ in range(args.rounds):   # interleaved: both modes see the same machine state in every round
        eager_ms.append(statistics.median(_step(eager, x, y, device, clock) for _ in range(args.repeat)))
        compiled_ms.append(statistics.median(_step(compiled, x, y, device, clock) for _ in range(args.repeat)))
    ratios = sorted(e / c for e, c in zip(eager_ms, compiled_ms))
    e, c = statistics.median(eager_ms), statistics.median(compiled_ms)
    return {"kind": kind, "compile_s": compile_s, "eager_ms": e, "compiled_ms": c, "speedup": e / c,
            "ratio_lo": ratios[0], "ratio_hi": ratios[-1]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=None, help="default: every registered kind")
    parser.add_argument("--threads", type=int, help="torch (and numba) threads (default: torch's)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time steps in process CPU time (time.process_time), less disturbed by other jobs "
                             "than the wall clock; with --threads 1 it is the step's own work")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (inductor, aot_eager, ...)")
    parser.add_argument("--mode", default="default", help="inductor mode: default, max-autotune, ...")
    parser.add_argument("--T", type=int, default=25)
    parser.add_argument("--B", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="T=8, one round of two repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.T, args.rounds, args.repeat = 8, 1, 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        try:
            import numba
            numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:
            pass
    device = torch.device(args.device)
    kinds = args.kinds or available()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    rows = []
    for kind in kinds:
        rows.append(bench_kind(kind, args, device))
        r = rows[-1]
        print(f"  {kind}: compile {r['compile_s']:.1f} s, eager/compiled {r['speedup']:.2f}", file=sys.stderr,
              flush=True)
    clock = "CPU ms" if args.cpu_time else "ms"
    print(f"demo MLP 64-128-10, T={args.T}, B={args.B}, backend={args.backend}, mode={args.mode}, "
          f"device={device}, threads={torch.get_num_threads()}, {args.rounds} interleaved rounds x "
          f"{args.repeat} steps, step time in {'process CPU time' if args.cpu_time else 'wall time'}")
    print(f"{'kind':<12} {'compile s':>10} {'eager ' + clock:>13} {'compiled ' + clock:>15} "
          f"{'eager/compiled':>15} {'round range':>13}")
    for r in rows:
        print(f"{r['kind']:<12} {r['compile_s']:>10.1f} {r['eager_ms']:>13.2f} {r['compiled_ms']:>15.2f} "
              f"{r['speedup']:>15.2f} {r['ratio_lo']:>6.2f}-{r['ratio_hi']:<6.2f}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"{machine_line()}; load average {load_before[0]:.2f} before, {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} after")


if __name__ == "__main__":
    main()
