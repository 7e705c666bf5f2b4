"""Measure one paper claim (or all) over seeds and write ``DIR/NAME.json`` and a Markdown row.

    python benchmarks/claims.py --claim dlif_xor --seeds 5 --out runs/claims
    python benchmarks/claims.py --claim all --seeds 5 --out runs/claims
    python benchmarks/claims.py --sweep "gate=sigmoid" "tau_s=2" --seeds 5 --out runs/claims   # DGN robustness

The table in ``docs/claims.md`` was produced by these commands (see there for the machine and date).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from dendrix.analysis.claims import claim_names, run_claim  # noqa: E402
from dendrix.analysis.claims.dgn import SWEEP, sweep  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claim", nargs="*", default=[], help=f"claim names or 'all': {', '.join(claim_names())}")
    ap.add_argument("--sweep", nargs="*", default=None, help=f"DGN robustness sweep settings: {', '.join(SWEEP)}")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3, help="training length of the sweep's base setting")
    ap.add_argument("--lif-from", default=None, help="a sweep JSON whose LIF runs (same seeds) are reused")
    ap.add_argument("--quick", action="store_true", help="tiny settings (checks the harness, not the claim)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/claims")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = claim_names() if args.claim == ["all"] else args.claim
    unknown = [n for n in names if n not in claim_names()]
    if unknown:
        ap.error(f"--claim must be among {claim_names()} or 'all', got {unknown}")
    stamp = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "host": platform.processor() or
             platform.machine(), "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
             "command": " ".join(["python benchmarks/claims.py", *(argv if argv is not None else sys.argv[1:])])}
    for name in names:
        start = time.perf_counter()
        result = run_claim(name, seeds=args.seeds, quick=args.quick)
        result.settings.update({"command": stamp["command"], "date": stamp["date"], "load_at_start": stamp["load"]})
        result.save(out)
        print(f"| {result.name} | {result.paper} | {result.measurement} | {result.holds} | "
              f"`{stamp['command']}` | {time.perf_counter() - start:.0f} s |", flush=True)
    if args.sweep is not None:
        settings = args.sweep or list(SWEEP)
        bad = [s for s in settings if s not in SWEEP]
        if bad:
            ap.error(f"--sweep settings must be among {list(SWEEP)}, got {bad}")
        lif_runs = None
        if args.lif_from:
            earlier = json.loads(Path(args.lif_from).read_text())["sweep"]
            lif_runs = {row["epochs"]: row["per_seed"]["lif"] for row in earlier.values()}
        res = sweep(settings, seeds=args.seeds, quick=args.quick, base_epochs=args.epochs, lif_runs=lif_runs)
        (out / f"dgn_sweep_{'_'.join(s.replace(' ', '').replace(',', '+') for s in settings)}.json").write_text(
            json.dumps({"stamp": stamp, "sweep": res}, indent=2, default=float))
        for name, row in res.items():
            d = row["paired_overall"]["difference"]
            print(f"sweep {name}: {row['kind']} − LIF overall Δ = {d['mean']:.3f} ± {d['std']:.3f} "
                  f"[{d['low']:.3f}, {d['high']:.3f}] p = {row['paired_overall']['p_value']:.3g}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
