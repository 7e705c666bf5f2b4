"""Issue 18's two margin targets, as ratios measured in one process: five consecutive runs, median and spread.

* MMDEND(128, 2 branches × 4 compartments) at T = 1024, B = 32, forward+backward (input requires grad)
  ≤ 1.2× the fused LIF engine (``LIF(backend="fused")``) on the same input current.
* Recurrent DGN 700 → 128 (``DGNLinear(700, 128, recurrent=True)``) at T = 250, B = 32, 5 % input spikes,
  forward+backward (gradients for all parameters) ≤ 2× Linear + LIF (``SpikingLinear(700, 128, LIF)``, no bias).

Each run times every case ``--rounds`` times, interleaved (so load swings hit all cases alike), and reports the
ratio of the medians; the runs follow one another in the same process. ``--clock cpu`` (default) times with
``time.process_time`` (CPU time of the whole process, so other jobs on a shared machine distort it less than the
wall clock), ``--clock wall`` with ``time.perf_counter``. A target is met when all runs meet it.

    PYTHONPATH=src python benchmarks/bench_margins.py --threads 1
    PYTHONPATH=src python benchmarks/bench_margins.py --threads 2 --clock wall
    PYTHONPATH=src python benchmarks/bench_margins.py --quick          # small shapes, a smoke run

The LIF reference runs the fused engine by default (``--lif-backend``): the numba engine's OpenMP workers
keep spinning after each call, and with ``--clock cpu`` that spinning is charged to whatever runs next.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import machine_line  # noqa: E402

from dendrix.layers import SpikingLinear  # noqa: E402
from dendrix.layers.dgn import DGNLinear  # noqa: E402
from dendrix.neurons import LIF, MMDEND  # noqa: E402

TARGETS = {"MMDEND / fused LIF": ("MMDEND", "LIF (fused)", 1.2),
           "recurrent DGN / Linear+LIF": ("DGN recurrent", "Linear+LIF", 2.0)}


def build(quick: bool, lif_backend: str):
    """name -> (module, input); the inputs of MMDEND and LIF require grad, the DGN's are spikes."""
    T_m, B, C = (64, 4, 32) if quick else (1024, 32, 128)
    T_d, n_in, n_out = (40, 70, 16) if quick else (250, 700, 128)
    torch.manual_seed(0)
    current = (torch.randn(T_m, B, C) * 1.5).requires_grad_()
    spikes = (torch.rand(T_d, B, n_in, generator=torch.Generator().manual_seed(1)) < 0.05).float()
    return {"LIF (fused)": (LIF(backend=lif_backend), current),
            "MMDEND": (MMDEND(C), current),
            "Linear+LIF": (SpikingLinear(n_in, n_out, LIF(backend=lif_backend), bias=False), spikes),
            "DGN recurrent": (DGNLinear(n_in, n_out, recurrent=True), spikes)}


def fwd_bwd(module, x) -> None:
    if x.grad is not None:
        x.grad = None
    module.zero_grad(set_to_none=True)
    module(x).sum().backward()


def one_run(cases, rounds: int, clock) -> dict[str, float]:
    """Median seconds of forward+backward per case over ``rounds`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (module, x) in cases.items():
            t0 = clock()
            fwd_bwd(module, x)
            times[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, choices=(1, 2), default=1, help="torch intra-op threads")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--runs", type=int, default=5, help="consecutive runs (each gives one ratio per target)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per run (median)")
    ap.add_argument("--lif-backend", default="fused", help="engine of the LIF references (default fused)")
    ap.add_argument("--quick", action="store_true", help="small shapes, 2 runs of 2 rounds (smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.rounds = 2, 2
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    cases = build(args.quick, args.lif_backend)
    for module, x in cases.values():  # warm-up: numba compilation, first-touch allocations
        fwd_bwd(module, x)
    load_before = os.getloadavg()[0]
    ratios: dict[str, list[float]] = {name: [] for name in TARGETS}
    print(f"{args.runs} runs × {args.rounds} interleaved rounds, forward+backward, {args.threads} thread(s), "
          f"{args.clock} clock, LIF backend {args.lif_backend!r}")
    for run in range(args.runs):
        med = one_run(cases, args.rounds, clock)
        for name, (case, ref, _) in TARGETS.items():
            ratios[name].append(med[case] / med[ref])
        print(f"run {run + 1}: " + ", ".join(f"{n} {1e3 * t:.1f} ms" for n, t in med.items()) + " | "
              + ", ".join(f"{n} {r[-1]:.2f}×" for n, r in ratios.items()), flush=True)
    print(machine_line())
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    print("| target | runs | median | min – max | limit | met in all runs |")
    print("|---|---|---|---|---|---|")
    for name, rs in ratios.items():
        limit = TARGETS[name][2]
        print(f"| {name} | {', '.join(f'{r:.2f}' for r in rs)} | {statistics.median(rs):.2f}× | "
              f"{min(rs):.2f} – {max(rs):.2f} | ≤ {limit}× | {'yes' if max(rs) <= limit else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
