"""D-RF: parallel training path (kernel + FFT causal convolution) against the sequential step loop.

DRF(128 channels, 4 branches), batch 32, forward and forward+backward at several sequence lengths. Rows in one
run, interleaved per length, so the ratios compare like with like on a shared machine:

* ``fft``   — ``DRF.forward`` (the default training path),
* ``scan``  — ``DRF(method="scan")``: the parallel associative scan over the branch states,
* ``sequential`` — ``DRF(method="sequential", backend="reference")``: the branch recurrence as a Python loop
  over t with autograd,
  parameters transformed once (the sequential baseline the ratios refer to),
* ``step``  — ``DRF.step`` looped over t with autograd (the streaming API; recomputes e^{dtλ}, B̄ every step).

The loops are slow at long T; ``--step-max-T`` (default 4096) and ``--sequential-max-T`` (default 1024) cap the
lengths where they run; at larger T their time is extrapolated linearly from the largest measured T and
labelled as an estimate. ``--scan-max-T`` caps
the scan, whose [T, B, C, n] complex branch states take about 2 GB at T = 16,384.

    .venv/bin/python benchmarks/bench_drf.py            # T = 1024, 4096, 16384
    .venv/bin/python benchmarks/bench_drf.py --quick    # T = 256, 1024, smaller model, 1 repeat
    .venv/bin/python benchmarks/bench_drf.py --device cuda --gpu-sweep   # forward time T = 128 .. 4096
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Measurement, format_table, machine_line, measure  # noqa: E402

from dendrix.neurons import DRF  # noqa: E402


def _model(channels: int, branches: int, method: str, device: str) -> DRF:
    torch.manual_seed(0)
    backend = "reference" if method == "sequential" else "auto"  # the sequential row is the autograd baseline
    return DRF(channels, branches=branches, method=method, backend=backend).to(device)


def _parallel(model: DRF, x: torch.Tensor):
    return lambda: model(x)


def _step_loop(model: DRF, x: torch.Tensor):
    def run():
        state, out = model.init_state(x[0]), []
        for t in range(x.shape[0]):
            y, state = model.step(x[t], state)
            out.append(y)
        return torch.stack(out)
    return run


def bench_length(T, channels, branches, batch, repeat, step_max_T, sequential_max_T, scan_max_T,
                 device) -> list[Measurement]:
    """fft, scan, sequential and step rows for one length (the slow loops once, the parallel paths median of
    ``repeat`` after a warm-up)."""
    x = torch.randn(T, batch, channels, device=device).requires_grad_()
    rows = []
    for method in ("fft", "scan", "sequential"):
        if (method == "scan" and T > scan_max_T) or (method == "sequential" and T > sequential_max_T):
            continue
        model = _model(channels, branches, method, device)
        slow = method == "sequential"
        rows.append(measure(method, _parallel(model, x), [x, *model.parameters()],
                            repeat=1 if slow else repeat, warmup=0 if slow else 1, device=device, extra={"T": T}))
    if T <= step_max_T:
        model = _model(channels, branches, "fft", device)
        rows.append(measure("step", _step_loop(model, x), [x, *model.parameters()], repeat=1, warmup=0,
                            device=device, extra={"T": T}))
    return rows


def growth_lines(results) -> list[str]:
    """fwd+bwd time of each path relative to the shortest T, next to T and T·log T ratios."""
    base_T, base_rows = results[0]
    lines = ["| path | T | fwd+bwd ms | time / time(T0) | T / T0 | T log T / (T0 log T0) | saved MB / saved(T0) |",
             "|---|---|---|---|---|---|---|"]
    for name in ("fft", "scan", "sequential", "step"):
        base = next((r for r in base_rows if r.name == name), None)
        if base is None:
            continue
        for T, rows in results:
            r = next((r for r in rows if r.name == name), None)
            if r is None:
                continue
            tlogt = (T * math.log(T)) / (base_T * math.log(base_T))
            mem = f"{r.saved_mb / base.saved_mb:.2f}" if base.saved_mb > 0 else "–"
            lines.append(f"| {name} | {T} | {r.fwd_bwd_ms:.1f} | {r.fwd_bwd_ms / base.fwd_bwd_ms:.2f} | "
                         f"{T / base_T:.0f} | {tlogt:.2f} | {mem} |")
    return lines


def gpu_sweep(channels, branches, batch, device) -> list[str]:
    lines = ["| T | DRF fwd ms (fft) |", "|---|---|"]
    model = _model(channels, branches, "fft", device)
    for T in (128, 256, 512, 1024, 2048, 4096):
        x = torch.randn(T, batch, channels, device=device)
        m = measure("fft", _parallel(model, x), [], repeat=20, warmup=3, device=device)
        lines.append(f"| {T} | {m.fwd_ms:.3f} |")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--lengths", type=int, nargs="*", default=None)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--branches", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--step-max-T", type=int, default=4096)
    ap.add_argument("--scan-max-T", type=int, default=4096)
    ap.add_argument("--sequential-max-T", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpu-sweep", action="store_true", help="also time the forward pass for T = 128..4096")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        lengths, channels, batch, repeat = args.lengths or [256, 1024], 32, 8, 1
    else:
        lengths, channels, batch, repeat = args.lengths or [1024, 4096, 16384], args.channels, args.batch, args.repeat

    print(f"# D-RF benchmark ({channels} channels, {args.branches} branches, batch {batch})\n")
    print(machine_line() + "\n")
    results = []
    for T in lengths:  # each table is printed as soon as its length is done
        rows = bench_length(T, channels, args.branches, batch, repeat, args.step_max_T, args.sequential_max_T,
                            args.scan_max_T, args.device)
        results.append((T, rows))
        ref = "step" if any(r.name == "step" for r in rows) else "fft"
        print(f"\n## T = {T}\n")
        print(format_table(rows, ref))
        fft = next(r for r in rows if r.name == "fft")
        for name in ("step", "sequential"):
            loop = next((r for r in rows if r.name == name), None)
            if loop is not None:
                print(f"\nspeed-up of the parallel (fft) path over the {name} loop: fwd+bwd "
                      f"{loop.fwd_bwd_ms / fft.fwd_bwd_ms:.1f}×, forward only {loop.fwd_ms / fft.fwd_ms:.1f}×")
                continue
            measured = [(t, r) for t, rs in results for r in rs if r.name == name and t < T]
            if measured:
                t0, r0 = measured[-1]
                est = r0.fwd_bwd_ms * T / t0
                print(f"\n{name} loop not run at T={T}; linear extrapolation from T={t0}: ~{est:.0f} ms fwd+bwd "
                      f"(~{est / fft.fwd_bwd_ms:.0f}× the fft path) — an estimate, not a measurement")
        sys.stdout.flush()
    print("\n## Growth with T\n")
    print("\n".join(growth_lines(results)))
    if args.gpu_sweep:
        print("\n## Forward time on the device, T = 128 .. 4096\n")
        print("\n".join(gpu_sweep(channels, args.branches, batch, args.device)))


if __name__ == "__main__":
    main()
