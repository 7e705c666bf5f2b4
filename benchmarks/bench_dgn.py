"""DGN / S-DGN layer cost against Linear + LIF (issue 5).

Shape: 700 -> 128, T = 250, B = 32, 5 % input spikes, forward + backward (gradients for all parameters).
Every case is measured in each round, rounds interleaved, and the median over rounds is reported, so the ratios
come from one run on one machine state. Targets: ≤ 2.5× the time and ≤ 2.5× the saved-for-backward memory
of Linear + LIF, for the feed-forward and the recurrent layer.

    .venv/bin/python benchmarks/bench_dgn.py            # full
    .venv/bin/python benchmarks/bench_dgn.py --quick    # smoke run (small shape, one round)
    python benchmarks/bench_dgn.py --device cuda         # on the GPU (synchronised timing, CUDA peak memory)

The table names the engine each case ran ("auto" picks the Triton kernels for CUDA tensors when Triton is
installed); on CUDA the feed-forward and recurrent DGN are also timed with the fused engine forced, for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Measurement, format_table, machine_line, measure  # noqa: E402

from dendrix.layers import SpikingLinear  # noqa: E402
from dendrix.layers.dgn import DGNLinear  # noqa: E402


def build_cases(n_in: int, n_out: int, with_reference: bool, device: torch.device | str = "cpu"
                ) -> dict[str, torch.nn.Module]:
    from dendrix.neurons import LIF

    device = torch.device(device)

    torch.manual_seed(0)
    cases = {
        "Linear+LIF": SpikingLinear(n_in, n_out, LIF(), bias=False),
        "DGN": DGNLinear(n_in, n_out),
        "S-DGN": DGNLinear(n_in, n_out, shared_reversal=True),
        "DGN recurrent": DGNLinear(n_in, n_out, recurrent=True),
        "S-DGN recurrent": DGNLinear(n_in, n_out, recurrent=True, shared_reversal=True),
    }
    if device.type == "cuda":  # the CPU engine on the GPU, against whatever "auto" picked
        cases["DGN (fused forced)"] = DGNLinear(n_in, n_out, backend="fused")
        cases["DGN recurrent (fused forced)"] = DGNLinear(n_in, n_out, recurrent=True, backend="fused")
    if with_reference:
        cases["DGN (reference loop)"] = DGNLinear(n_in, n_out, backend="reference")
        cases["DGN recurrent (reference loop)"] = DGNLinear(n_in, n_out, recurrent=True, backend="reference")
    return {name: layer.to(device) for name, layer in cases.items()}


def engine_name(layer: torch.nn.Module, device: torch.device) -> str:
    """The engine that ``layer`` runs on ``device`` (what its ``backend`` resolves to)."""
    probe = torch.zeros(1, 1, 1, device=device)
    if isinstance(layer, DGNLinear):
        from dendrix.ops.dgn import resolve_backend

        return resolve_backend(layer.backend, {"conductance": probe.to(layer.conductance.dtype)}, layer.surrogate,
                               layer.out_features if layer.recurrent else None)
    neuron = getattr(layer, "neuron", None)
    if neuron is not None and hasattr(neuron, "backend"):
        from dendrix.ops.lif import resolve_backend as lif_backend

        return "lif " + lif_backend(neuron.backend, probe, probe[0], neuron.surrogate)
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shape, one round (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time the per-step reference backends")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's default); 1 is steadier on a shared machine")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    T, B, n_in, n_out = (20, 4, 70, 16) if args.quick else (250, 32, 700, 128)
    rounds, repeat = (1, 2) if args.quick else (args.rounds, args.repeat)

    cases = build_cases(n_in, n_out, args.reference, device)
    x = (torch.rand(T, B, n_in, generator=torch.Generator().manual_seed(1)) < 0.05).float().to(device)
    runs: dict[str, list[Measurement]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, layer in cases.items():
            reps = 1 if "reference" in name else repeat
            runs[name].append(measure(name, lambda layer=layer: layer(x), list(layer.parameters()), repeat=reps,
                                      device=device))
    rows = []
    for name, ms in runs.items():
        params = sum(p.numel() for p in cases[name].parameters())
        rows.append(Measurement(name, statistics.median(m.fwd_ms for m in ms),
                                statistics.median(m.fwd_bwd_ms for m in ms), ms[0].saved_mb, ms[0].peak_mb,
                                extra={"params": params, "engine": engine_name(cases[name], device)}))
    print(f"DGN layer benchmark: {n_in}->{n_out}, T={T}, B={B}, 5% input spikes, fwd+bwd; "
          f"median of {rounds} interleaved rounds × {repeat} repeats" + ("" if device.type == "cpu" else
                                                                           f"; device {device}"))
    print(machine_line())
    print()
    print(format_table(rows, reference="Linear+LIF"))
    print()
    print("| case | engine | parameters |\n|---|---|---|")
    for r in rows:
        print(f"| {r.name} | {r.extra['engine']} | {r.extra['params']:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
