"""MMDEND vs fused LIF over sequence length (the analogue of the MMDEND paper's Table 5).

Both neurons get the same input current ``[T, B, channels]`` (requires grad) and are timed forward and
forward+backward in one run, interleaved per T, so the ratios are comparable under machine noise.

    .venv/bin/python benchmarks/bench_mmdend.py            # channels 128, B 32, T = 128 … 4096
    .venv/bin/python benchmarks/bench_mmdend.py --quick    # small smoke run

Targets (issue 7): MMDEND fwd+bwd at T = 1024 ≤ 1.5× fused LIF; MMDEND's growth from T = 128 to 4096 no worse
than T·log T (a factor 4096·log 4096 / (128·log 128) = 54.9).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Measurement, machine_line, measure  # noqa: E402

from dendrix.neurons import LIF, MMDEND, PMSN  # noqa: E402


def run(lengths, batch, channels, repeat, device, with_pmsn, with_fft=False):
    """Per T: ``repeat`` rounds, each timing every model once (forward, then forward+backward), so that load
    swings of the shared machine hit all models alike; the medians over rounds are reported."""
    rows: list[tuple[int, dict[str, Measurement]]] = []
    for T in lengths:
        torch.manual_seed(0)
        x = (torch.randn(T, batch, channels, device=device) * 1.5).requires_grad_()
        models = {"LIF (fused)": LIF().to(device), "MMDEND": MMDEND(channels).to(device)}
        if with_fft:
            models["MMDEND (fft)"] = MMDEND(channels, method="fft").to(device)
        if with_pmsn:
            models["PMSN"] = PMSN(channels).to(device)
        rounds: dict[str, list[Measurement]] = {name: [] for name in models}
        for r in range(repeat):
            for name, model in models.items():
                params = [x, *model.parameters()]
                rounds[name].append(measure(f"{name} T={T}", lambda m=model: m(x), params, repeat=1,
                                            warmup=1 if r == 0 else 0, device=device))
        res = {name: Measurement(name, statistics.median(m.fwd_ms for m in ms),
                                 statistics.median(m.fwd_bwd_ms for m in ms), ms[0].saved_mb)
               for name, ms in rounds.items()}
        rows.append((T, res))
        print(f"T={T}: " + ", ".join(f"{k} {v.fwd_ms:.1f}/{v.fwd_bwd_ms:.1f} ms" for k, v in res.items()),
              file=sys.stderr, flush=True)
    return rows


def table(rows, others) -> str:
    head = "| T | LIF fwd ms | LIF fwd+bwd ms |"
    sep = "|---|---|---|"
    for name in others:
        head += f" {name} fwd ms | {name} fwd+bwd ms | {name}/LIF fwd | {name}/LIF fwd+bwd |"
        sep += "---|---|---|---|"
    out = [head, sep]
    for T, res in rows:
        lif = res["LIF (fused)"]
        line = f"| {T} | {lif.fwd_ms:.1f} | {lif.fwd_bwd_ms:.1f} |"
        for name in others:
            r = res[name]
            line += (f" {r.fwd_ms:.1f} | {r.fwd_bwd_ms:.1f} | {r.fwd_ms / lif.fwd_ms:.2f}× | "
                     f"{r.fwd_bwd_ms / lif.fwd_bwd_ms:.2f}× |")
        out.append(line)
    return "\n".join(out)


def growth(rows, name) -> str:
    (T0, r0), (T1, r1) = rows[0], rows[-1]
    tlogt = (T1 * math.log(T1)) / (T0 * math.log(T0))
    g_f = r1[name].fwd_ms / r0[name].fwd_ms
    g_fb = r1[name].fwd_bwd_ms / r0[name].fwd_bwd_ms
    return (f"{name} growth T={T0}→{T1}: fwd {g_f:.1f}×, fwd+bwd {g_fb:.1f}× (linear {T1 / T0:.0f}×, "
            f"T·log T {tlogt:.1f}×)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 4096])
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds per T (median reported)")
    ap.add_argument("--pmsn", action="store_true", help="add PMSN rows")
    ap.add_argument("--fft", action="store_true", help="add MMDEND with method='fft' (the default is 'chunked')")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    if args.quick:
        args.lengths, args.batch, args.channels, args.repeat = [32, 64], 4, 16, 2
    rows = run(args.lengths, args.batch, args.channels, args.repeat, args.device, args.pmsn, args.fft)
    others = ["MMDEND"] + (["MMDEND (fft)"] if args.fft else []) + (["PMSN"] if args.pmsn else [])
    print(f"channels {args.channels}, batch {args.batch}, device {args.device}, median of {args.repeat} "
          f"interleaved rounds")
    print(machine_line())
    print()
    print(table(rows, others))
    print()
    for name in ["LIF (fused)"] + others:
        print(growth(rows, name))


if __name__ == "__main__":
    main()
