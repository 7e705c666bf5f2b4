"""torch.compile of the demo MLP (64 -> 128 -> 10): compile time, and compiled against eager fwd+bwd (issue 16).

For each kind: the model of ``build_model({"arch": "mlp", "kind": kind, "hidden": [128]})`` on ``[T, B, 64]``
spikes; the compile time is the wall time of the first compiled forward + backward (Dynamo capture,
AOTAutograd, and the backend's code generation); then eager and compiled forward + backward are timed in
interleaved rounds (the median over rounds is reported, and the ratio of the fastest steps, which a shared
machine's load disturbs least), so their ratio comes from one run on one machine state.

    .venv/bin/python benchmarks/bench_compile.py                    # lif and dgn, inductor, CPU
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

from dendrix.data import DatasetInfo  # noqa: E402
from dendrix.models import build_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """One forward + backward; its wall time in ms."""
    for p in model.parameters():
        p.grad = None
    _sync(device)
    start = time.perf_counter()
    F.cross_entropy(model(x), y).backward()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


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
    compile_s = _step(compiled, x, y, device) / 1e3
    _step(eager, x, y, device)  # warm-up
    eager_ms, compiled_ms = [], []
    for _ in range(args.rounds):
        eager_ms.append([_step(eager, x, y, device) for _ in range(args.repeat)])
        compiled_ms.append([_step(compiled, x, y, device) for _ in range(args.repeat)])
    e = statistics.median(statistics.median(r) for r in eager_ms)
    c = statistics.median(statistics.median(r) for r in compiled_ms)
    best = min(map(min, eager_ms)) / min(map(min, compiled_ms))
    return {"kind": kind, "compile_s": compile_s, "eager_ms": e, "compiled_ms": c, "speedup": e / c,
            "best_speedup": best}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["lif", "dgn"])
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
    device = torch.device(args.device)
    rows = [bench_kind(kind, args, device) for kind in args.kinds]
    print(f"demo MLP 64-128-10, T={args.T}, B={args.B}, backend={args.backend}, mode={args.mode}, "
          f"device={device}, threads={torch.get_num_threads()}")
    print(f"{'kind':<10} {'compile s':>10} {'eager ms':>10} {'compiled ms':>12} {'eager/compiled':>15} "
          f"{'fastest e/c':>12}")
    for r in rows:
        print(f"{r['kind']:<10} {r['compile_s']:>10.1f} {r['eager_ms']:>10.2f} {r['compiled_ms']:>12.2f} "
              f"{r['speedup']:>15.2f} {r['best_speedup']:>12.2f}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"{machine_line()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
