"""DLIF benchmark: DLIFLinear / DLIFConv2d against Linear / Conv2d + the same LIF soma, in one run.

    python benchmarks/bench_dlif.py            # full: 700->128 at rates 1/5/20 %, conv 64->128
    python benchmarks/bench_dlif.py --quick    # small smoke run
    python benchmarks/bench_dlif.py --device cuda   # on a GPU ("auto": the Triton engine when Triton imports)
    python benchmarks/bench_dlif.py --device cuda --backend torch   # a given bilinear engine
    python benchmarks/bench_dlif.py --rates 0.05 --repeat 3 --skip-conv   # one shape only

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, one repeat")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--backend", default="auto", choices=[b for b in BACKENDS if b != "reference"],
                    help="bilinear engine of the DLIF layers (auto: numba on CPU, triton on CUDA when available)")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.01, 0.20], help="input rates (full run)")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds (full run)")
    ap.add_argument("--skip-conv", action="store_true", help="no DLIFConv2d table")
    args = ap.parse_args(argv)
    global DEVICE, BACKEND
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    BACKEND = args.backend
    engine = resolve_backend(BACKEND, DEVICE)  # raises if a forced engine cannot run here
    print(machine_line())
    print(f"bilinear engine: {engine} (--backend {BACKEND}, device {DEVICE})")
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
