"""``dendrix demo``: compare every registered neuron kind on the embedded spiking FSDD (spoken digits).

Model selection on the validation part of the training set, final accuracy on the official test split
(recordings 0-4 of every speaker and digit). Writes report.md, report.json, learning curves, an accuracy chart
and one spike raster per neuron into ``--out``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from . import UserError
from .compare import parse_kinds, run_comparison

DEMO_CONFIG = "demo"


def add_arguments(parser) -> None:
    parser.add_argument("--out", "-o", help="report folder (default: runs/demo-TIMESTAMP)")
    parser.add_argument("--epochs", type=int, help="epochs per neuron kind (default: from the demo config)")
    parser.add_argument("--kinds", "-k", help="comma-separated neuron kinds (default: every registered kind)")
    parser.add_argument("--workers", "-j", type=int, default=min(2, os.cpu_count() or 1),
                        help="kinds trained at a time, one single-threaded process each (default: 2, or 1 on "
                             "a one-core machine)")
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def main(args) -> int:
    from ..train.config import packaged_config

    kinds = parse_kinds(args.kinds)
    overrides = []
    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {args.epochs}")
        overrides.append(f"train.epochs={args.epochs}")
    out = Path(args.out) if args.out else Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    print(f"dendrix demo: {len(kinds)} neuron kind(s) on spiking FSDD -> {out}")
    rows = run_comparison(str(packaged_config(DEMO_CONFIG)), kinds, out, overrides,
                          "dendrix demo: spiking FSDD (official split)", args.quiet, args.workers,
                          overwrite=args.overwrite)
    return 0 if any(not r.get("error") for r in rows) else 1
