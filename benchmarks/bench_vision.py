"""Vision benchmark (issue 20): DLIF's bilinear convolution and a spiking ResNet-18, in one run each.

    python benchmarks/bench_vision.py --threads 1          # CPU, the issue's sizes, one thread, CPU time
    python benchmarks/bench_vision.py --threads 2 --clock wall
    python benchmarks/bench_vision.py --device cuda        # on a GPU (wall clock)
    python benchmarks/bench_vision.py --quick              # small smoke run (not for ratios)

1. ``DLIFConv2d(64→128, 3×3)`` on 32×32 maps, T = 4, B = 8, input spikes at 10 % and 20 %, forward+backward with
   the input requiring grad (a hidden layer), against ``Conv2d + LIF`` (the same soma) and against the authors'
   dense formulation of the bilinear convolution (``conv(s) + Σ_cd K_o,cd s_c s_d`` with a dense K [out, C, C],
   written here as a plain torch einsum), K dense (sparsity 0, the ResNet default) and sparsity 0.9 (the layer's
   default), measured in interleaved rounds in the same run (issue target: ≤ 1.5× Conv2d+LIF, faster than the
   dense formulation). ``--clock cpu`` (default on CPU) times with ``time.process_time`` (all threads' CPU time,
   less disturbed by other jobs than the wall clock).
2. CIFAR ResNet-18 (``dendrix.models.vision.SpikingResNet``), T = 4, B = 16, forward+backward, with dendrix's LIF
   against the same network whose neurons are SpikingJelly 2.0 ``LIFNode`` (multi-step, same tau, threshold,
   hard reset; installed with ``pip install --no-deps spikingjelly==2.0.0``) (issue target: within 1.3×).

Run it on a quiet machine: ratios measured while other jobs share the cores are not meaningful.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import machine_line  # noqa: E402

from dendrix.layers import DLIFConv2d  # noqa: E402
from dendrix.models.vision import SpikingResNet  # noqa: E402
from dendrix.models.vision.blocks import FeatureMapNeuron  # noqa: E402
from dendrix.neurons import LIF  # noqa: E402


class DenseBilinearConv(nn.Module):
    """The dense formulation: ``conv(s) + einsum(s, K, s)`` with K [out, C, C] upper-triangular (each pair once)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.K = nn.Parameter(torch.triu(torch.randn(c_out, c_in, c_in) / c_in, diagonal=1))
        self.soma = LIF(tau=2.0, v_reset=None)

    def forward(self, x):
        T, B = x.shape[:2]
        flat = x.reshape(T * B, *x.shape[2:])
        cur = self.conv(flat) + torch.einsum("nchw,ocd,ndhw->nohw", flat, self.K, flat)
        return self.soma(cur.view(T, B, *cur.shape[1:]))


class ConvLIF(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.soma = LIF(tau=2.0, v_reset=None)

    def forward(self, x):
        T, B = x.shape[:2]
        cur = self.conv(x.reshape(T * B, *x.shape[2:]))
        return self.soma(cur.view(T, B, *cur.shape[1:]))


def _clock(kind: str, device) -> Callable[[], float]:
    if kind == "cpu" and device.type == "cpu":
        return time.process_time
    return time.perf_counter


def interleaved_fwd_bwd(cases: dict, rounds: int, device, clock: Callable[[], float]) -> str:
    """Forward+backward of every case once per round, rounds interleaved (one warm-up round first); a table of
    the median ms, min–max and the median ratio to the first case."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds + 1):
        for name, step in cases.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = clock()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if r:  # round 0 warms up (numba compilation, allocator)
                times[name].append(1e3 * (clock() - t0))
    base = next(iter(cases))
    lines = ["| case | fwd+bwd ms (median) | min–max | × " + base + " |", "|---|---:|---:|---:|"]
    for name, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, times[base]))
        lines.append(f"| {name} | {statistics.median(ts):.1f} | {min(ts):.1f}–{max(ts):.1f} | {ratio:.2f} |")
    return "\n".join(lines)


def _fwd_bwd(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step():
        x.grad = None
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()
    return step


def bench_conv(device, quick: bool, rounds: int, clock) -> None:
    T, B, C, O, H = (2, 2, 16, 32, 16) if quick else (4, 8, 64, 128, 32)
    for rate in (0.1, 0.2):
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand(T, B, C, H, H, generator=gen) < rate).float().to(device).requires_grad_(True)
        cases = {"Conv2d+LIF": ConvLIF(C, O),
                 "DLIFConv2d (dense K)": DLIFConv2d(C, O, 3, sparsity=0.0, seed=0),
                 "DLIFConv2d (sparsity 0.9)": DLIFConv2d(C, O, 3, sparsity=0.9, seed=0),
                 "dense Conv2d_bilinear (torch)": DenseBilinearConv(C, O)}
        steps = {name: _fwd_bwd(m.to(device), x) for name, m in cases.items()}
        print(f"\n### DLIFConv2d {C}->{O} 3x3, {H}x{H}, T={T}, B={B}, input rate {rate:.0%}, fwd+bwd "
              f"(input requires grad)\n")
        print(interleaved_fwd_bwd(steps, rounds, device, clock))


def spikingjelly_resnet(model: SpikingResNet) -> SpikingResNet:
    from spikingjelly.activation_based import neuron as sj_neuron  # optional: --no-deps install

    for mod in model.modules():
        if isinstance(mod, FeatureMapNeuron):
            mod.neuron = sj_neuron.LIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True,
                                           step_mode="m")
            mod.channel_last = False
    return model


def bench_resnet(device, quick: bool, rounds: int, clock) -> None:
    T, B, width = (2, 2, 0.25) if quick else (4, 16, 1.0)
    x = torch.rand(T, B, 3, 32, 32, device=device)
    ours = SpikingResNet(3, 10, depth=18, width=width, kind="lif", neuron_kw={"tau": 2.0}).to(device)
    cases = {}
    try:
        theirs = spikingjelly_resnet(SpikingResNet(3, 10, depth=18, width=width).to(device))
        theirs.load_state_dict(ours.state_dict())
        from spikingjelly.activation_based import functional

        def sj_step():
            functional.reset_net(theirs)
            theirs.zero_grad(set_to_none=True)
            theirs(x).sum().backward()
        cases["ResNet-18 SpikingJelly LIFNode"] = sj_step
    except ImportError:
        print("SpikingJelly is not installed (pip install --no-deps spikingjelly==2.0.0): dendrix row only")
    cases["ResNet-18 dendrix LIF"] = _fwd_bwd(ours, x)
    print(f"\n### CIFAR ResNet-18 fwd+bwd, T={T}, B={B}, width {width}\n")
    print(interleaved_fwd_bwd(cases, rounds, device, clock))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: as set)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: time.process_time on CPU devices (default); wall: time.perf_counter")
    parser.add_argument("--only", choices=("conv", "resnet"), default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        try:
            import numba
            numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:
            pass
    print(machine_line(), f"· clock {args.clock}")
    if args.only != "resnet":
        bench_conv(device, args.quick, 2 if args.quick else args.rounds, _clock(args.clock, device))
    if args.only == "conv":
        return
    bench_resnet(device, args.quick, 2 if args.quick else args.rounds, _clock(args.clock, device))


if __name__ == "__main__":
    main()
