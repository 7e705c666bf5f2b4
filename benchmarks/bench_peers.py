"""dendrix beside the peers' own formulations, in one process: PMSN, D-RF and sliding PSN (issue 21).

Peers (plain-torch ports written here from reading the released code; none of their text is copied):

* ``pmsn``: the PMSN authors' SHD neuron (xychen-comp/PMSN, ``SHD/PMSN.py``): eigenbasis kernel as
  ``exp(dtλ·l)`` of a complex product, ``rfft``/``irfft`` with n = 2T on a ``[B, H, T]`` view of the
  time-first input, ``y + D u``, then the cumulative-sum soma in the input dtype (float32) with its own
  backward (``max(0, γ − |δ − V_th|)/γ²``).
* ``drf``: the D-RF released ``BiRFModel`` (S4D-style kernel with complex C, ``rfft`` n = 2L on ``[B, H, L]``,
  ``Θ(y − 1)`` with the triangle surrogate). Its adaptive threshold is off, like the released training code:
  ours runs with ``adaptive_threshold=False, complex_weights=True, surrogate="triangle", gamma_init=1``.
* ``sliding_psn``: SpikingJelly 2.0's ``SlidingPSN`` (multi-step: a T×T banded GEMM), imported as is.

Each pair gets the same parameters (copied into the port) and the same input; the benchmark first checks
that both give the same spikes, then times them interleaved in the same rounds (ours, peer, peer, ours, ...)
so a loaded machine slows both alike. It prints median and spread (min–max over rounds) and the ratio
dendrix / peer (below 1: dendrix is faster), with the load average before and after.

    PYTHONPATH=src python benchmarks/bench_peers.py                     # T = 1024 and 4096, B = 32, N = 128
    PYTHONPATH=src python benchmarks/bench_peers.py --T 1024 --rounds 5 --kinds pmsn
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
from torch import Tensor, nn

from dendrix.neurons.drf import DRF
from dendrix.neurons.pmsn import PMSN
from dendrix.neurons.psn import SlidingPSN

__all__ = ["AuthorsPMSN", "authors_pmsn_soma", "ReleasedBiRF", "make_pair", "main"]


# -- PMSN, the authors' formulation -----------------------------------------------------------------------
class _CumsumSoma(torch.autograd.Function):
    """The authors' soma on ``drive [..., T]`` (time last), computed in the drive's own dtype."""

    @staticmethod
    def forward(ctx, drive: Tensor, th: float, gamma: float, burst: bool):
        total = drive.cumsum(-1)
        before = torch.zeros_like(total)
        before[..., 1:] = total[..., :-1]
        fired_before = torch.floor(before / th).clamp(min=0)
        delta = total - fired_before * th
        count = torch.floor(delta / th).clamp(min=0)
        if not burst:
            count = count.clamp(max=1)
        ctx.save_for_backward(delta)
        ctx.th, ctx.gamma, ctx.burst = th, gamma, burst
        return count

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (delta,) = ctx.saved_tensors
        gap = (delta - ctx.th).abs()
        if ctx.burst:
            gap = gap % ctx.th
        return grad_out * (ctx.gamma - gap).clamp(min=0) / (ctx.gamma * ctx.gamma), None, None, None


def authors_pmsn_soma(drive: Tensor, th: float = 1.0, gamma: float = 1.0, burst: bool = False) -> Tensor:
    """The PMSN authors' cumulative-sum soma on ``drive = ReLU(y)`` ``[..., T]`` (time last)."""
    return _CumsumSoma.apply(drive, th, gamma, burst)


class AuthorsPMSN(nn.Module):
    """The PMSN authors' SHD neuron: time-first input ``[T, B, H]`` -> spikes ``[T, B, H]``."""

    def __init__(self, ours: PMSN):
        super().__init__()
        names = ("log_dt", "log_A_real", "A_imag", "B_real", "B_imag", "C_real", "C_imag", "D")
        for name in names:
            self.register_parameter(name, nn.Parameter(getattr(ours, name).detach().clone()))
        self.th, self.gamma, self.burst = ours.v_threshold, ours.surrogate_width, ours.burst

    def kernel(self, T: int) -> Tensor:
        lam = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dt = torch.exp(self.log_dt).unsqueeze(-1)
        gain = (torch.exp(lam * dt) - 1) * (self.B_real + 1j * self.B_imag) / lam
        powers = torch.exp((lam * dt).unsqueeze(-1) * torch.arange(T, device=lam.device))  # [H, N, T]
        return torch.einsum("hn,hnt->ht", (self.C_real + 1j * self.C_imag) * gain, powers).real

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[0]
        u = x.permute(1, 2, 0)  # [B, H, T], a view as in the authors' code
        k_f = torch.fft.rfft(self.kernel(T), n=2 * T)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * T) * k_f, n=2 * T)[..., :T]
        y = y + u * self.D.unsqueeze(-1)
        return authors_pmsn_soma(y.relu(), self.th, self.gamma, self.burst).permute(2, 0, 1)


# -- D-RF, the released BiRFModel --------------------------------------------------------------------------
class _Triangle(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: Tensor):
        ctx.save_for_backward(v)
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (v,) = ctx.saved_tensors
        return grad_out * (1.0 - v.abs()).clamp(min=0)


class ReleasedBiRF(nn.Module):
    """The released D-RF ``BiRFModel`` (no adaptive threshold): ``[B, H, L]`` -> spikes ``[B, H, L]``."""

    def __init__(self, ours: DRF):
        super().__init__()
        if ours.adaptive_threshold or not ours.complex_weights:
            raise ValueError("ReleasedBiRF mirrors a DRF with adaptive_threshold=False and complex_weights=True")
        lam = ours.eigenvalues().detach()
        gain = ours.gamma.detach().to(lam.dtype)  # γ is folded into C (the release has no input gain)
        self.log_dt = nn.Parameter(ours.log_dt.detach().clone())
        self.log_A_real = nn.Parameter(torch.log(-lam.real).clone())
        self.A_imag = nn.Parameter(lam.imag.clone())
        self.C = nn.Parameter(torch.view_as_real(ours.branch_weights().detach() * gain).clone())

    def kernel(self, L: int) -> Tensor:
        dt = torch.exp(self.log_dt)
        lam = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtlam = lam * dt.unsqueeze(-1)
        c = torch.view_as_complex(self.C) * (torch.exp(dtlam) - 1.0) / lam
        return torch.einsum("hn,hnl->hl", c, torch.exp(dtlam.unsqueeze(-1) * torch.arange(L, device=dtlam.device))).real

    def forward(self, u: Tensor) -> Tensor:
        L = u.shape[-1]
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(self.kernel(L), n=2 * L), n=2 * L)[..., :L]
        return _Triangle.apply(y - 1.0)


# -- pairs ---------------------------------------------------------------------------------------------------
def make_pair(kind: str, T: int, B: int, N: int, seed: int = 0, device: str = "cpu"):
    """(ours, peer, x_ours, x_peer, to_ours_layout) on ``device``: modules with equal parameters and inputs in
    each one's native layout; ``to_ours_layout`` maps the peer's output to ours ``[T, B, N]``."""
    ours, peer, x_ours, x_peer, to_ours = _make_pair(kind, T, B, N, seed)
    return ours.to(device), peer.to(device), x_ours.to(device), x_peer.to(device), to_ours


def _make_pair(kind: str, T: int, B: int, N: int, seed: int):
    torch.manual_seed(seed)
    x = torch.randn(T, B, N)
    if kind == "pmsn":
        ours = PMSN(N)
        return ours, AuthorsPMSN(ours), x, x.clone(), lambda s: s
    if kind == "drf":
        ours = DRF(N, adaptive_threshold=False, complex_weights=True, surrogate="triangle", gamma_init=1.0)
        return ours, ReleasedBiRF(ours), x, x.permute(1, 2, 0).contiguous(), lambda s: s.permute(2, 0, 1)
    if kind == "sliding_psn":
        from spikingjelly.activation_based.neuron import SlidingPSN as PeerSlidingPSN
        ours = SlidingPSN(4)
        peer = PeerSlidingPSN(4, step_mode="m")
        with torch.no_grad():
            peer.weight.copy_(ours.weight)
            peer.bias.copy_(ours.bias)
        return ours, peer, x, x.clone(), lambda s: s
    raise ValueError(f"kind must be one of ['pmsn', 'drf', 'sliding_psn'], got {kind!r}")


def _agreement(ours, peer, x_ours, x_peer, to_ours) -> float:
    with torch.no_grad():
        a, b = ours(x_ours), to_ours(peer(x_peer))
    return float((a != b).sum()) / a.numel()


def _task(module, x: Tensor, backward: bool):
    if not backward:
        def fwd():
            with torch.no_grad():
                module(x)
        return fwd
    leaf = x.clone().requires_grad_(True)
    weights = torch.randn_like(x)

    def fwd_bwd():
        module.zero_grad(set_to_none=True)
        leaf.grad = None
        (module(leaf) * weights).sum().backward()
    return fwd_bwd


def _time_interleaved(fn_a, fn_b, rounds: int, warmup: int = 1, clock=time.perf_counter,
                      sync=lambda: None) -> tuple[list[float], list[float]]:
    """Times of ``fn_a`` and ``fn_b`` in ms, alternating which runs first; ``sync`` waits for the device."""
    for _ in range(warmup):
        fn_a(), fn_b()
    ta, tb = [], []
    for r in range(rounds):
        order = ((fn_a, ta), (fn_b, tb)) if r % 2 == 0 else ((fn_b, tb), (fn_a, ta))
        for fn, out in order:
            sync()
            t0 = clock()
            fn()
            sync()
            out.append(1e3 * (clock() - t0))
    return ta, tb


def _fmt(times: list[float]) -> str:
    return f"{statistics.median(times):8.1f} ({min(times):.1f}–{max(times):.1f})"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--B", type=int, default=32)
    p.add_argument("--N", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--kinds", nargs="+", default=["pmsn", "drf", "sliding_psn"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (timed after torch.cuda.synchronize)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: time.perf_counter; cpu: time.process_time (CPU seconds of this process: with "
                        "--threads 1, far less disturbed by other processes on a loaded machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(f"# torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, B={args.B}, N={args.N}, "
          f"rounds={args.rounds}, {args.clock} clock; times in ms, median (min–max); ratio = dendrix / peer")
    print("| kind | T | pass | dendrix ms | peer ms | ratio | spikes differing | load 1 min before/after |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for kind in args.kinds:
        for T in args.T:
            ours, peer, x_ours, x_peer, to_ours = make_pair(kind, T, args.B, args.N, device=args.device)
            differ = _agreement(ours, peer, x_ours, x_peer, to_ours)
            for backward in (False, True):
                load0 = os.getloadavg()[0]
                ta, tb = _time_interleaved(_task(ours, x_ours, backward), _task(peer, x_peer, backward),
                                           args.rounds, clock=clock, sync=sync)
                ratio = statistics.median(ta) / statistics.median(tb)
                print(f"| {kind} | {T} | {'fwd+bwd' if backward else 'fwd'} | {_fmt(ta)} | {_fmt(tb)} | "
                      f"{ratio:.2f} | {differ:.2e} | {load0:.1f}/{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
