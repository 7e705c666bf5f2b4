"""Each neuron op as a multiple of the memory-bandwidth floor, measured in the same run (issue 18, item 4).

The floor of an op is the time the bytes it must move take at this machine's copy bandwidth:

* bandwidth: ``dst.copy_(src)`` of a large float32 tensor (``--copy-mb``), counted as read + write bytes;
* forward: input ``x``, output spikes, one saved ``[T, B, N]`` tensor (the membrane, an output): 3 × 4 B per
  element in float32;
* forward+backward: the forward, then the saved tensor and the spike gradient read and the input gradient
  written: 6 × 4 B per element; 7 × 4 B for the kinds whose parameter gradient needs the input ``x`` again
  (PLIF's and DA-LIF's gain, ALIF's alpha: ``dH/dgain = X``, ``dU/dalpha = U[t-1] - X``). Per-neuron parameters
  and states are one step and are left out, and so are the ALIF/RF state checkpoints (1/32 of a tensor).

Every kind of the compiled family runs through its op (``dendrix.ops``) on each engine asked for: ``lif``
(float decay), ``plif`` (learnable scalar decay), ``dalif`` (per-channel learnable leak and gain), ``alif``
(per-channel alpha, rho), ``rf``, ``brf`` (per-channel omega, b0; the input is scaled ×30 once, outside the
timed call). The backward starts from a dense spike
gradient (as from a next layer). Each round times every case (median of ``--repeat`` calls); the table gives
the median over rounds and the spread (min–max). The scaling sweep times forward+backward for
T = 256 … 4096 and reports the time per step, which is flat when the cost grows linearly with T.

    PYTHONPATH=src python benchmarks/bench_floor.py --threads 2 --rounds 5
    PYTHONPATH=src python benchmarks/bench_floor.py --threads 1 --kinds lif,alif --engines numba --no-sweep
    PYTHONPATH=src python benchmarks/bench_floor.py --threads 1 --clock cpu --engines numba --no-sweep

``--clock cpu`` times with ``time.process_time`` (this process's CPU time, all threads summed): on a machine
shared with other work it leaves out the time the process waits descheduled; with ``--threads 1`` it is the
op's own time. The default ``wall`` is what a user waits.

Do not record figures from a loaded machine as results (``uptime`` is printed with them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import machine_line  # noqa: E402

from dendrix.ops.alif import alif_sequence  # noqa: E402
from dendrix.ops.lif import leaky_sequence, lif_sequence  # noqa: E402
from dendrix.ops.rf import divergence_boundary, rf_sequence  # noqa: E402

KINDS = ("lif", "plif", "dalif", "alif", "rf", "brf")
BYTES_FORWARD = 3      # x, spikes, saved membrane (elements of 4 B in float32)
BYTES_BACKWARD = 3     # saved membrane, spike gradient, input gradient
X_IN_BACKWARD = {"plif", "dalif", "alif"}   # a parameter gradient reads x again in the backward
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def backward_elements(kind: str) -> int:
    """Tensors of [T, B, N] the backward of ``kind`` must move (see the module docstring)."""
    return BYTES_BACKWARD + (kind in X_IN_BACKWARD)


def build(kind: str, t: int, b: int, n: int, engine: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], list]:
    """``(run, leaves)``: ``run(x)`` returns the spikes of ``kind`` on ``engine``; ``leaves`` its parameters."""
    g = torch.Generator().manual_seed(0)
    step = torch.zeros(b, n)
    if kind == "lif":
        return (lambda x: lif_sequence(x, step, 0.5, backend=engine)[0]), []
    if kind == "plif":
        decay = torch.tensor(0.5, requires_grad=True)
        return (lambda x: lif_sequence(x, step, decay.sigmoid(), backend=engine)[0]), [decay]
    if kind == "dalif":
        leak = (0.5 + 0.4 * torch.rand(n, generator=g)).requires_grad_()
        gain = (0.5 + torch.rand(n, generator=g)).requires_grad_()
        return (lambda x: leaky_sequence(x, step, leak, gain, backend=engine)[0]), [leak, gain]
    if kind == "alif":
        alpha = (0.8 + 0.15 * torch.rand(n, generator=g)).requires_grad_()
        rho = (0.9 + 0.09 * torch.rand(n, generator=g)).requires_grad_()
        return (lambda x: alif_sequence(x, step, step, step, alpha, rho, backend=engine)[0]), [alpha, rho]
    if kind in ("rf", "brf"):
        omega = (5 + 20 * torch.rand(n, generator=g)).requires_grad_()
        offset = 0.5 * torch.rand(n, generator=g)
        balanced = kind == "brf"

        def run(x):  # x arrives scaled by 30 (time_case): a scaling here would be two more passes each way
            b0 = divergence_boundary(omega, 0.01) - offset if balanced else -1.0 - offset
            return rf_sequence(x, omega, b0, step, step, balanced=balanced, backend=engine)[0]
        return run, [omega]
    raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return 1e3 * statistics.median(times)


def copy_bandwidth(megabytes: int, repeat: int) -> float:
    """Bytes per second of a large float32 copy (read + write counted)."""
    src = torch.randn(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), repeat)
    return 2 * src.numel() * 4 / (ms / 1e3)


def time_case(kind: str, engine: str, t: int, b: int, n: int, repeat: int) -> tuple[float, float]:
    """(forward ms, forward+backward ms)."""
    run, leaves = build(kind, t, b, n, engine)
    x = 0.4 * torch.randn(t, b, n) + 0.3
    x = (30 * x if kind in ("rf", "brf") else x).requires_grad_()
    grad = torch.randn(t, b, n)
    x_nograd = x.detach()

    def forward():
        with torch.no_grad():
            run(x_nograd)

    def forward_backward():
        x.grad = None
        for p in leaves:
            p.grad = None
        torch.autograd.backward(run(x), grad)
    return median_ms(forward, repeat), median_ms(forward_backward, repeat)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, choices=(1, 2), default=2, help="torch (and numba) threads")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="calls per case and round (median taken)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from {','.join(KINDS)}")
    parser.add_argument("--engines", default="fused,numba", help="comma-separated backends (fused, numba, auto)")
    parser.add_argument("--shape", action="append", default=[], metavar="T,B,N",
                        help="shapes to time (default 1024,32,128 and 250,32,256)")
    parser.add_argument("--sweep", default="256,512,1024,2048,4096", help="T values of the scaling sweep (B=32, N=128)")
    parser.add_argument("--sweep-kinds", default="lif,alif,rf", help="kinds of the scaling sweep")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--copy-mb", type=int, default=256, help="size of the tensor whose copy gives the bandwidth")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall: perf_counter; cpu: process_time (CPU time of this process, all threads)")
    parser.add_argument("--quick", action="store_true", help="small shape, one round (a smoke run, not a result)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for k in kinds:
        if k not in KINDS:
            parser.error(f"--kinds: unknown kind {k!r}; choose from {', '.join(KINDS)}")
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape] or [(1024, 32, 128), (250, 32, 256)]
    sweep = [int(v) for v in args.sweep.split(",")]
    if args.quick:
        shapes, sweep, args.rounds, args.repeat, args.copy_mb = [(64, 4, 64)], [32, 64], 1, 1, 16
    load = os.getloadavg() if hasattr(os, "getloadavg") else None

    print(f"# bench_floor · {machine_line()}")
    print(f"clock: {args.clock} · threads: {args.threads}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in load) if load else 'n/a'} · {os.cpu_count()} CPUs")
    bandwidths = [copy_bandwidth(args.copy_mb, args.repeat) for _ in range(args.rounds)]
    bw = statistics.median(bandwidths)
    print(f"copy bandwidth: {spread([b / 1e9 for b in bandwidths])} GB/s (median, min–max over {args.rounds} rounds)")

    for t, b, n in shapes:
        elems = t * b * n
        floor_f = BYTES_FORWARD * 4 * elems / bw * 1e3
        print(f"\n## (T, B, N) = ({t}, {b}, {n}): floor forward {floor_f:.2f} ms, forward+backward "
              f"{(BYTES_FORWARD + BYTES_BACKWARD) * 4 * elems / bw * 1e3:.2f} ms (7 tensors: "
              f"{(BYTES_FORWARD + BYTES_BACKWARD + 1) * 4 * elems / bw * 1e3:.2f} ms)\n")
        print("| kind | engine | fwd ms | fwd × floor | fwd+bwd tensors | fwd+bwd ms | fwd+bwd × floor |")
        print("|---|---|---|---|---|---|---|")
        for kind in kinds:
            moved = BYTES_FORWARD + backward_elements(kind)
            floor_fb = moved * 4 * elems / bw * 1e3
            for engine in engines:
                fw, fb = [], []
                for _ in range(args.rounds):
                    f, fbw = time_case(kind, engine, t, b, n, args.repeat)
                    fw.append(f)
                    fb.append(fbw)
                print(f"| {kind} | {engine} | {spread(fw)} | {spread([v / floor_f for v in fw])} | {moved} | {spread(fb)} | "
                      f"{spread([v / floor_fb for v in fb])} |", flush=True)

    if not args.no_sweep:
        b, n = 32, 128
        print(f"\n## Scaling with T (B = {b}, N = {n}): forward+backward µs per step (flat = linear growth)\n")
        print("| kind | engine | " + " | ".join(f"T = {t}" for t in sweep) + " | last / first |")
        print("|---|---|" + "---|" * (len(sweep) + 1))
        for kind in [k.strip() for k in args.sweep_kinds.split(",") if k.strip()]:
            for engine in engines:
                per_step = []
                for t in sweep:
                    rounds = [time_case(kind, engine, t, b, n, args.repeat)[1] for _ in range(args.rounds)]
                    per_step.append(1e3 * statistics.median(rounds) / t)
                print(f"| {kind} | {engine} | " + " | ".join(f"{v:.1f}" for v in per_step) +
                      f" | {per_step[-1] / per_step[0]:.2f} |", flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in load) if load else 'n/a'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
