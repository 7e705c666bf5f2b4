"""``dendrix demo-vision``: LIF, PLIF, DA-LIF and DLIF (bilinear conv) on the scikit-learn digits as images.

The small spiking CNN (``dendrix.models.vision.SpikingCNN``) on the 8×8 digits, direct-encoded over T = 4 steps;
model selection on val, test accuracy on the fixed 20 % test part, with the energy (μJ per test sample) and the
small-grid robustness of every kind. Writes report.md / report.json into ``--out``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from . import UserError
from .compare import parse_kinds, run_comparison

DEMO_CONFIG = "demo_vision"
DEFAULT_KINDS = "lif,plif,dalif,dlif"


def add_arguments(parser) -> None:
    parser.add_argument("--out", "-o", help="report folder (default: runs/demo-vision-TIMESTAMP)")
    parser.add_argument("--epochs", type=int, help="epochs per neuron kind (default: from the demo_vision config)")
    parser.add_argument("--kinds", "-k", default=DEFAULT_KINDS,
                        help=f"comma-separated neuron kinds (default: {DEFAULT_KINDS})")
    parser.add_argument("--subset", type=int, help="use only the first N training images (a quick check)")
    parser.add_argument("--workers", "-j", type=int, default=min(2, os.cpu_count() or 1),
                        help="kinds trained at a time, one single-threaded process each (default: 2)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def main(args) -> int:
    from ..train.config import packaged_config

    kinds = parse_kinds(args.kinds)
    overrides = []
    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {args.epochs}")
        overrides.append(f"train.epochs={args.epochs}")
    if args.subset is not None:
        if args.subset < 10:
            raise UserError(f"--subset must be >= 10 images, got {args.subset}")
        overrides.append(f"data.options.subset={args.subset}")
    out = Path(args.out) if args.out else Path("runs") / f"demo-vision-{datetime.now():%Y%m%d-%H%M%S}"
    print(f"dendrix demo-vision: {len(kinds)} neuron kind(s) on the digits images (spiking CNN) -> {out}")
    rows = run_comparison(str(packaged_config(DEMO_CONFIG)), kinds, out, overrides,
                          "dendrix demo-vision: scikit-learn digits 8x8, spiking CNN, T=4", args.quiet, args.workers)
    return 0 if any(not r.get("error") for r in rows) else 1
