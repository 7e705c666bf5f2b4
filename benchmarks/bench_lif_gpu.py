"""LIF on a CUDA GPU: dendrix's Triton kernels against the fused torch engine, the per-step reference and
SpikingJelly 2.0's LIFNode.

For each shape (T, B, N) the neuron alone (tau = 2, hard reset, atan surrogate, input current ``[T, B, N]``
requiring grad) is timed: forward under ``no_grad`` and forward + ``spikes.sum().backward()``, median of
``--repeat`` runs after warm-up (which also compiles the Triton kernels), synchronising the GPU around each run
(``benchmarks/harness.py``). Every case of a shape is measured in the same process, one after the other, and the
ratios are against dendrix's Triton path measured in that run.

Cases: ``dendrix triton`` (``backend="triton"``: one kernel for the forward, one for the backward),
``dendrix fused`` (``backend="fused"``: 2-3 torch operators per time step), ``dendrix reference`` (plain
autograd step loop) and, when importable, SpikingJelly 2.0 ``LIFNode(step_mode="m")``, which picks its CUDA
implementation by itself (native CUDA extension if built, else its Triton kernels; the environment variable
``SJ_LIF_CUDA_IMPLEMENTATION=cuda|triton|torch`` forces one).

    PYTHONPATH=src python3 benchmarks/bench_lif_gpu.py            # (250,32,128), (1024,32,128), (1024,64,1024)
    PYTHONPATH=src python3 benchmarks/bench_lif_gpu.py --quick    # smoke run, one small shape
    ... --sj-path DIR    # extra import path for SpikingJelly (e.g. a copied site-packages folder)
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Measurement, machine_line, measure  # noqa: E402

SHAPES = [(250, 32, 128), (1024, 32, 128), (1024, 64, 1024)]
QUICK_SHAPES = [(64, 8, 128)]
OURS = "dendrix triton"


def _require_gpu_and_triton() -> str:
    if not torch.cuda.is_available():
        sys.exit("bench_lif_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); "
                 "the CPU benchmark of the LIF engines is benchmarks/bench_neurons.py")
    try:
        import triton
    except ImportError as err:
        sys.exit(f"bench_lif_gpu.py needs the 'triton' package ({err}); pip install triton (or dendrix[gpu])")
    return triton.__version__


def _spikingjelly_lif() -> tuple[Callable[[], torch.nn.Module] | None, str]:
    """A factory of SpikingJelly multi-step LIFNodes (tau 2, ATan), or None and the reason."""
    try:
        import spikingjelly
        from spikingjelly.activation_based import neuron, surrogate
    except Exception as err:  # noqa: BLE001 - any import failure: report and skip the row
        return None, f"SpikingJelly not importable ({type(err).__name__}: {err})"
    version = getattr(spikingjelly, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version
            version = dist_version("spikingjelly")
        except Exception:  # noqa: BLE001 - a copied package folder has no metadata
            version = "(version unknown)"

    def make():
        return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")

    return make, f"SpikingJelly {version}, LIF CUDA implementation: " \
                 f"{os.environ.get('SJ_LIF_CUDA_IMPLEMENTATION', 'auto')}"


def build_cases(shape, device) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    from dendrix.ops.lif import lif_sequence

    _, b, n = shape
    v0 = torch.zeros(b, n, device=device)
    cases: dict[str, Callable] = {}
    for backend in ("triton", "fused", "reference"):
        cases[f"dendrix {backend}"] = (lambda x, backend=backend: lif_sequence(x, v0, 0.5, backend=backend)[0])
    make_sj, _ = _spikingjelly_lif()
    if make_sj is not None:
        node = make_sj().to(device)

        def sj_forward(x):
            node.reset()
            return node(x)

        cases["SpikingJelly LIFNode"] = sj_forward
    return cases


def check_agreement(cases, x) -> None:
    """Every case fires the same spikes as the Triton path on this input (else its timing means nothing)."""
    with torch.no_grad():
        ours = cases[OURS](x)
        for name, fn in cases.items():
            mismatch = (fn(x).float() != ours.float()).float().mean().item()
            if mismatch > 1e-4:
                raise RuntimeError(f"{name} disagrees with {OURS} on {100 * mismatch:.3f}% of spikes")


def run_shape(shape, repeat: int, warmup: int, device) -> list[Measurement]:
    torch.manual_seed(0)
    x = (1.5 * torch.randn(*shape, device=device) + 0.6).requires_grad_()
    cases = build_cases(shape, device)
    check_agreement(cases, x)
    rows = []
    for name, fn in cases.items():
        slow = name == "dendrix reference" and shape[0] * shape[1] * shape[2] > 2**24
        rows.append(measure(name, lambda fn=fn: fn(x), [x], repeat=max(3, repeat // 2) if slow else repeat,
                            warmup=warmup, device=device))
        torch.cuda.empty_cache()
    return rows


def format_rows(shape, rows: list[Measurement]) -> list[str]:
    ref = next(r for r in rows if r.name == OURS)
    lines = []
    for r in rows:
        lines.append(f"| {shape} | {r.name} | {r.fwd_ms:.3f} | {r.fwd_bwd_ms:.3f} | {r.fwd_ms / ref.fwd_ms:.2f}× | "
                     f"{r.fwd_bwd_ms / ref.fwd_bwd_ms:.2f}× | {r.peak_mb:.0f} |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small shape, few repeats (smoke run)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per case (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (Triton compiles on the first)")
    parser.add_argument("--sj-path", default=None, help="folder appended to sys.path to import SpikingJelly")
    args = parser.parse_args(argv)
    triton_version = _require_gpu_and_triton()
    if args.sj_path:
        sys.path.append(str(Path(args.sj_path).resolve()))
    device = torch.device("cuda")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeat = 3 if args.quick else args.repeat

    _, sj_note = _spikingjelly_lif()
    print(f"GPU {torch.cuda.get_device_name(device)} · torch {torch.__version__} · triton {triton_version} · "
          f"{datetime.date.today().isoformat()}")
    print(machine_line())
    print(sj_note)
    print()
    print("| (T, B, N) | case | fwd ms | fwd+bwd ms | fwd vs triton | fwd+bwd vs triton | peak MB (fwd+bwd) |")
    print("|---|---|---|---|---|---|---|")
    for shape in shapes:
        for line in format_rows(shape, run_shape(shape, repeat, args.warmup, device)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
