"""DLIF benchmark: DLIFLinear / DLIFConv2d against Linear / Conv2d + the same LIF soma, in one run.

    python benchmarks/bench_dlif.py            # full: 700->128 at rates 1/5/20 %, conv 64->128
    python benchmarks/bench_dlif.py --quick    # small smoke run
    python benchmarks/bench_dlif.py --device cuda   # on a GPU ("auto": the Triton engine when Triton imports)
    python benchmarks/bench_dlif.py --device cuda --backend torch   # a given bilinear engine
    python benchmarks/bench_dlif.py --rates 0.05 --repeat 3 --skip-conv   # one shape only
    python benchmarks/bench_dlif.py --targets --threads 1 --clock cpu --rounds 7   # issue 18's two ratios

``--targets`` measures the two DLIFLinear(700 -> 128, sparsity 0.9) targets at T = 250, B = 32, 5 % input
spikes, for both masks: as an OUTPUT layer (input needs no grad) against Linear+LIF, and as a HIDDEN layer
(input requires grad) against Linear+LIF with the same input gradient. Forward+backward only; every round times
each case once (interleaved) and forms the ratios of that round; the table gives the median ratio and its
min–max over rounds, with the 1-minute load average before and after.

Every DLIF row is measured with both masks, ``mask="independent"`` (the default) and ``mask="cyclic"``.

Times are medians of forward and forward+backward (``.sum().backward()``); memory is the harness's
saved-for-backward count (parameters saved by the graph included). The input spikes do not require a gradient
(a first layer, as for SHD's 700 channels) unless the row says "input grad".

The cases of one table are measured interleaved (round r times every case once, then round r + 1), and each
column is the median over rounds: on a shared machine the load changes within seconds, and timing all repeats of
the reference before all repeats of DLIF measured ratios between 3.5x and 5.2x for the same code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Measurement, format_table, machine_line, measure  # noqa: E402

from dendrix.layers import DLIFConv2d, DLIFLinear, SpikingLinear  # noqa: E402
from dendrix.ops.bilinear import BACKENDS, resolve_backend  # noqa: E402
from dendrix.neurons.lif import LIF  # noqa: E402


def spikes(shape, rate, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < rate).float()


DEVICE = torch.device("cpu")
BACKEND = "auto"  # bilinear engine of the DLIF layers (--backend)


def interleaved(cases, rounds):
    """``cases``: (name, forward, params). Every round measures each case once (after one warm-up in the first
    round); returns per case the medians over rounds, and the saved-for-backward size."""
    runs = {name: [] for name, _, _ in cases}
    for r in range(rounds):
        for name, fn, params in cases:
            runs[name].append(measure(name, fn, params, repeat=1, warmup=1 if r == 0 else 0, device=DEVICE))
    return [Measurement(name, statistics.median(m.fwd_ms for m in ms), statistics.median(m.fwd_bwd_ms for m in ms),
                        ms[0].saved_mb) for name, ms in runs.items()]


def linear_case(n_in, n_out, T, B, rate, repeat, sparsity, with_input_grad):
    torch.manual_seed(0)
    x = spikes((T, B, n_in), rate).to(DEVICE)
    ref = SpikingLinear(n_in, n_out, LIF(v_reset=None)).to(DEVICE)
    layers = {mask: DLIFLinear(n_in, n_out, sparsity=sparsity, backend=BACKEND, mask=mask).to(DEVICE)
              for mask in ("independent", "cyclic")}
    rows = interleaved([("Linear+LIF", lambda: ref(x), list(ref.parameters()))]
                       + [(f"DLIF s={sparsity:g} {mask}", (lambda d=d: d(x)), list(d.parameters()))
                          for mask, d in layers.items()], repeat)
    if with_input_grad:
        xg = x.clone().requires_grad_(True)
        rows += interleaved([("Linear+LIF, input grad", lambda: ref(xg), list(ref.parameters()) + [xg])]
                            + [(f"DLIF s={sparsity:g} {mask}, input grad", (lambda d=d: d(xg)),
                                list(d.parameters()) + [xg]) for mask, d in layers.items()],
                            max(1, repeat // 2))
    return rows


def conv_case(c_in, c_out, T, B, hw, rate, repeat, sparsity):
    torch.manual_seed(0)
    x = spikes((T, B, c_in, hw, hw), rate).to(DEVICE)
    conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1).to(DEVICE)
    lif = LIF(v_reset=None).to(DEVICE)

    def ref():
        y = conv(x.reshape(T * B, c_in, hw, hw))
        return lif(y.view(T, B, *y.shape[1:]))

    layers = {mask: DLIFConv2d(c_in, c_out, 3, sparsity=sparsity, backend=BACKEND, mask=mask).to(DEVICE)
              for mask in ("independent", "cyclic")}
    return interleaved([("Conv2d+LIF", ref, list(conv.parameters()))]
                       + [(f"DLIFConv2d s={sparsity:g} {mask}", (lambda d=d: d(x)), list(d.parameters()))
                          for mask, d in layers.items()], repeat)


def _fwd_bwd_once(fn, params, clock):
    for p in params:
        p.grad = None
    t0 = clock()
    fn().float().sum().backward()
    return (clock() - t0) * 1e3


def targets(rounds, clock, clock_name, T=250, B=32, n_in=700, n_out=128, rate=0.05, sparsity=0.9):
    """Issue 18's ratios: DLIFLinear as an output layer / Linear+LIF, and as a hidden layer / Linear+LIF with the
    input gradient, both masks, interleaved rounds; prints a markdown table."""
    torch.manual_seed(0)
    x = spikes((T, B, n_in), rate).to(DEVICE)
    xg = x.clone().requires_grad_(True)
    ref = SpikingLinear(n_in, n_out, LIF(v_reset=None)).to(DEVICE)
    layers = {mask: DLIFLinear(n_in, n_out, sparsity=sparsity, backend=BACKEND, mask=mask).to(DEVICE)
              for mask in ("independent", "cyclic")}
    cases = {("output", "Linear+LIF"): (lambda: ref(x), list(ref.parameters())),
             ("hidden", "Linear+LIF"): (lambda: ref(xg), list(ref.parameters()) + [xg])}
    for mask, d in layers.items():
        cases[("output", mask)] = ((lambda d=d: d(x)), list(d.parameters()))
        cases[("hidden", mask)] = ((lambda d=d: d(xg)), list(d.parameters()) + [xg])
    for fn, params in cases.values():  # warm-up: compilation, caches
        _fwd_bwd_once(fn, params, clock)
    load0 = os.getloadavg()[0]
    times = {key: [] for key in cases}
    for _ in range(rounds):
        for key, (fn, params) in cases.items():
            times[key].append(_fwd_bwd_once(fn, params, clock))
    load1 = os.getloadavg()[0]
    print(f"DLIFLinear({n_in} -> {n_out}, sparsity {sparsity:g}), T={T}, B={B}, input rate {100 * rate:g} %; "
          f"forward+backward, {clock_name} clock, {torch.get_num_threads()} torch threads, {rounds} interleaved "
          f"rounds; load (1 min) {load0:.2f} before, {load1:.2f} after\n")
    print("| layer | mask | Linear+LIF ms (median) | DLIF ms (median) | ratio median | ratio min–max | target |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for role, target in (("output", 2.5), ("hidden", 4.0)):
        base = times[(role, "Linear+LIF")]
        for mask in layers:
            mine = times[(role, mask)]
            ratios = [a / b for a, b in zip(mine, base)]
            print(f"| {role} | {mask} | {statistics.median(base):.1f} | {statistics.median(mine):.1f} | "
                  f"{statistics.median(ratios):.2f}× | {min(ratios):.2f}–{max(ratios):.2f}× | ≤ {target:g}× |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, one repeat")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--backend", default="auto", choices=[b for b in BACKENDS if b != "reference"],
                    help="bilinear engine of the DLIF layers (auto: numba on CPU, triton on CUDA when available)")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.01, 0.20], help="input rates (full run)")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds (full run)")
    ap.add_argument("--skip-conv", action="store_true", help="no DLIFConv2d table")
    ap.add_argument("--targets", action="store_true",
                    help="only issue 18's output-layer and hidden-layer ratios, both masks (see the docstring)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds of --targets")
    ap.add_argument("--threads", type=int, default=None, help="torch (and numba) threads (default: theirs)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="--targets clock: wall (time.perf_counter) or cpu (time.process_time, CPU seconds of this "
                         "process: with --threads 1 far less disturbed by other processes on a loaded machine)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            import numba
            numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:
            pass
    global DEVICE, BACKEND
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    BACKEND = args.backend
    engine = resolve_backend(BACKEND, DEVICE)  # raises if a forced engine cannot run here
    print(machine_line())
    print(f"bilinear engine: {engine} (--backend {BACKEND}, device {DEVICE})")
    if args.targets:
        if args.clock == "cpu" and DEVICE.type == "cuda":
            ap.error("--clock cpu measures CPU time; use --clock wall on a GPU")
        targets(args.rounds, time.process_time if args.clock == "cpu" else time.perf_counter, args.clock)
        return
    if args.quick:
        settings = [dict(n_in=100, n_out=32, T=20, B=4, rate=0.05)]
        conv = dict(c_in=8, c_out=16, T=2, B=2, hw=8, rate=0.05)
        repeat = 1
    else:
        settings = [dict(n_in=700, n_out=128, T=250, B=32, rate=r) for r in args.rates]
        conv = dict(c_in=64, c_out=128, T=4, B=8, hw=32, rate=0.05)
        repeat = args.repeat
    for i, st in enumerate(settings):
        print(f"\n### DLIFLinear({st['n_in']} -> {st['n_out']}), T={st['T']}, B={st['B']}, "
              f"input rate {100 * st['rate']:g} %\n")
        rows = linear_case(**st, repeat=repeat, sparsity=0.9, with_input_grad=(i == 0))
        print(format_table(rows, "Linear+LIF"))
    if args.skip_conv:
        return
    print(f"\n### DLIFConv2d({conv['c_in']} -> {conv['c_out']}, 3x3), {conv['hw']}x{conv['hw']} maps, T={conv['T']}, "
          f"B={conv['B']}, input rate {100 * conv['rate']:g} %\n")
    print(format_table(conv_case(**conv, repeat=repeat, sparsity=0.9), "Conv2d+LIF"))


if __name__ == "__main__":
    main()
