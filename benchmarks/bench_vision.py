"""Vision benchmark (issue 20): DLIF's bilinear convolution and a spiking ResNet-18, in one run each.

    python benchmarks/bench_vision.py                  # CPU, the issue's sizes
    python benchmarks/bench_vision.py --device cuda    # on a GPU
    python benchmarks/bench_vision.py --quick          # small smoke run (not for ratios)

1. ``DLIFConv2d(64→128, 3×3)`` on 32×32 maps, T = 4, B = 8, input spikes at 10 % and 20 %, forward+backward, against
   ``Conv2d + LIF`` (the same soma) and against the authors' dense formulation of the bilinear convolution
   (``conv(s) + Σ_cd K_o,cd s_c s_d`` with a dense K [out, C, C], written here as a plain torch einsum), measured
   interleaved in the same run (issue target: ≤ 1.5× Conv2d+LIF, faster than the dense formulation).
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

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Measurement, format_table, machine_line, measure  # noqa: E402

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


def interleaved(cases: dict, rounds: int, device) -> list[Measurement]:
    """Each case measured once per round, rounds interleaved; the median over rounds per column."""
    runs: dict[str, list[Measurement]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (forward, params) in cases.items():
            runs[name].append(measure(name, forward, params, repeat=1, warmup=1, device=device))
    return [Measurement(name, statistics.median(m.fwd_ms for m in ms), statistics.median(m.fwd_bwd_ms for m in ms),
                        ms[0].saved_mb, ms[0].peak_mb) for name, ms in runs.items()]


def bench_conv(device, quick: bool, rounds: int) -> None:
    T, B, C, O, H = (2, 2, 16, 32, 16) if quick else (4, 8, 64, 128, 32)
    for rate in (0.1, 0.2):
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand(T, B, C, H, H, generator=gen) < rate).float().to(device)
        dlif = DLIFConv2d(C, O, 3, sparsity=0.0, seed=0).to(device)
        ref = ConvLIF(C, O).to(device)
        dense = DenseBilinearConv(C, O).to(device)
        cases = {"Conv2d+LIF": (lambda: ref(x), list(ref.parameters())),
                 "DLIFConv2d (dense K)": (lambda: dlif(x), list(dlif.parameters())),
                 "dense Conv2d_bilinear (torch)": (lambda: dense(x), list(dense.parameters()))}
        print(f"\n### DLIFConv2d {C}->{O} 3x3, {H}x{H}, T={T}, B={B}, input rate {rate:.0%}\n")
        print(format_table(interleaved(cases, rounds, device), "Conv2d+LIF"))


def spikingjelly_resnet(model: SpikingResNet) -> SpikingResNet:
    from spikingjelly.activation_based import neuron as sj_neuron  # optional: --no-deps install

    for mod in model.modules():
        if isinstance(mod, FeatureMapNeuron):
            mod.neuron = sj_neuron.LIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True,
                                           step_mode="m")
            mod.channel_last = False
    return model


def bench_resnet(device, quick: bool, rounds: int) -> None:
    T, B, width = (2, 2, 0.25) if quick else (4, 16, 1.0)
    x = torch.rand(T, B, 3, 32, 32, device=device)
    ours = SpikingResNet(3, 10, depth=18, width=width, kind="lif", neuron_kw={"tau": 2.0}).to(device)
    cases = {"ResNet-18 dendrix LIF": (lambda: ours(x), list(ours.parameters()))}
    try:
        theirs = spikingjelly_resnet(SpikingResNet(3, 10, depth=18, width=width).to(device))
        theirs.load_state_dict(ours.state_dict())

        def sj_forward():
            from spikingjelly.activation_based import functional
            functional.reset_net(theirs)
            return theirs(x)
        cases["ResNet-18 SpikingJelly LIFNode"] = (sj_forward, list(theirs.parameters()))
    except ImportError:
        print("SpikingJelly is not installed (pip install --no-deps spikingjelly==2.0.0): dendrix row only")
    print(f"\n### CIFAR ResNet-18 fwd+bwd, T={T}, B={B}, width {width}\n")
    print(format_table(interleaved(cases, rounds, device), "ResNet-18 SpikingJelly LIFNode"
                       if len(cases) > 1 else "ResNet-18 dendrix LIF"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(machine_line())
    bench_conv(device, args.quick, 2 if args.quick else args.rounds)
    bench_resnet(device, args.quick, 2 if args.quick else args.rounds)


if __name__ == "__main__":
    main()
