"""ALIF and RF/BRF on a CUDA GPU: dendrix's Triton kernels against the fused torch engines.

For each shape (T, B, N) and model the sequence op alone is timed (``alif_sequence``: per-channel alpha and rho
requiring grad, double-Gaussian surrogate; ``rf_sequence``: per-channel ω and b0 requiring grad, RF and BRF,
dt = 0.01, θ = 1), with an input current ``[T, B, N]`` requiring grad: forward under ``no_grad`` and forward +
``spikes.sum().backward()``, median of ``--repeat`` runs after warm-up (which also compiles the Triton kernels),
synchronising the GPU around each run (``benchmarks/harness.py``). The two backends of a model and shape are
measured one after the other in the same process; ratios are against the Triton path measured in that run.
The spike rate and the fraction of spikes on which the fused engine disagrees with Triton (float32 roundings,
fused multiply-adds in the kernel) are printed so that a timing on a silent or diverging run is visible.

    PYTHONPATH=src python3 benchmarks/bench_recurrences_gpu.py            # (250,32,128), (1024,32,128), (1024,64,1024)
    PYTHONPATH=src python3 benchmarks/bench_recurrences_gpu.py --quick    # smoke run, one small shape
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Measurement, machine_line, measure  # noqa: E402

SHAPES = [(250, 32, 128), (1024, 32, 128), (1024, 64, 1024)]
QUICK_SHAPES = [(64, 8, 128)]
BACKENDS = ("triton", "fused")
MODELS = ("ALIF", "RF", "BRF")


def _require_gpu_and_triton() -> str:
    if not torch.cuda.is_available():
        sys.exit("bench_recurrences_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); "
                 "the CPU benchmark of the fused engines is benchmarks/bench_neurons.py")
    try:
        import triton
    except ImportError as err:
        sys.exit(f"bench_recurrences_gpu.py needs the 'triton' package ({err}); pip install triton (or dendrix[gpu])")
    return triton.__version__


def build_case(model: str, shape, device) -> tuple[torch.Tensor, list[torch.Tensor], Callable[[str], torch.Tensor]]:
    """(input, leaves requiring grad, backend -> spikes) for one model and shape."""
    from dendrix.ops.alif import alif_sequence
    from dendrix.ops.rf import divergence_boundary, rf_sequence

    _, b, n = shape
    g = torch.Generator(device="cpu").manual_seed(0)
    zeros = torch.zeros(b, n, device=device)
    if model == "ALIF":
        x = (0.6 * torch.randn(shape, generator=g) + 0.15).to(device).requires_grad_()
        alpha = torch.exp(-1.0 / torch.full((n,), 20.0, device=device)).requires_grad_()
        rho = torch.exp(-1.0 / torch.full((n,), 200.0, device=device)).requires_grad_()
        return x, [x, alpha, rho], lambda backend: alif_sequence(x, zeros, zeros, zeros, alpha, rho,
                                                                 backend=backend)[0]
    balanced = model == "BRF"
    x = (150.0 * torch.randn(shape, generator=g)).to(device).requires_grad_()
    omega = (5 + 5 * torch.rand(n, generator=g)).to(device).requires_grad_()
    offset = (2 + torch.rand(n, generator=g)).to(device)
    b0 = ((divergence_boundary(omega.detach(), 0.01) if balanced else 0) - offset).requires_grad_()
    return x, [x, omega, b0], lambda backend: rf_sequence(x, omega, b0, zeros, zeros, zeros, balanced=balanced,
                                                          backend=backend)[0]


def run_case(model: str, shape, repeat: int, warmup: int, device) -> list[tuple[Measurement, float, float]]:
    x, leaves, run = build_case(model, shape, device)
    with torch.no_grad():
        ours = run("triton")
        rate = ours.float().mean().item()
    rows = []
    for backend in BACKENDS:
        with torch.no_grad():
            mismatch = (run(backend) != ours).float().mean().item()
        slow = backend == "fused" and shape[0] * shape[1] * shape[2] > 2**24
        m = measure(f"{model} {backend}", lambda backend=backend: run(backend), leaves,
                    repeat=max(3, repeat // 2) if slow else repeat, warmup=warmup, device=device)
        rows.append((m, rate, mismatch))
        torch.cuda.empty_cache()
    return rows


def format_rows(shape, rows) -> list[str]:
    ref = rows[0][0]
    return [f"| {shape} | {m.name} | {m.fwd_ms:.3f} | {m.fwd_bwd_ms:.3f} | {m.fwd_ms / ref.fwd_ms:.2f}× | "
            f"{m.fwd_bwd_ms / ref.fwd_bwd_ms:.2f}× | {m.peak_mb:.0f} | {rate:.3f} | {mismatch:.1e} |"
            for m, rate, mismatch in rows]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small shape, few repeats (smoke run)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per case (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (Triton compiles on the first)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of ALIF,RF,BRF")
    args = parser.parse_args(argv)
    triton_version = _require_gpu_and_triton()
    models = [m.strip().upper() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    device = torch.device("cuda")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeat = 3 if args.quick else args.repeat

    print(f"GPU {torch.cuda.get_device_name(device)} · torch {torch.__version__} · triton {triton_version} · "
          f"{datetime.date.today().isoformat()}")
    print(machine_line())
    print()
    print("| (T, B, N) | case | fwd ms | fwd+bwd ms | fwd vs triton | fwd+bwd vs triton | peak MB (fwd+bwd) | "
          "spike rate | spikes ≠ triton |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in shapes:
        for model in models:
            for line in format_rows(shape, run_case(model, shape, repeat, args.warmup, device)):
                print(line, flush=True)


if __name__ == "__main__":
    main()
