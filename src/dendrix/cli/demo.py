"""``dendrix demo``: compare the papers' neurons and LIF on the embedded spiking FSDD (spoken digits), 3 seeds,
on the official split and on an unseen speaker.

By default the kinds of :data:`DEMO_KINDS` (DLIF, D-RF, MMDEND, DGN, S-DGN, DA-LIF and the LIF baseline), each
trained with :data:`DEMO_SEEDS` seeds on the official split (test: recordings 0-4 of every speaker and digit),
and the kinds of :data:`DEMO_SPEAKER_KINDS` trained again, separately, on the speaker split (one speaker held
out of training and validation, tested on all of that speaker's recordings), to fit ``make demo`` in 10 minutes
on two cores. ``--speaker-kinds all`` trains every kind on both splits, ``--splits official`` skips the speaker
split, ``--all`` trains every registered kind. Model selection on the validation part of each training set.
Writes report.md, report.json, the figures and one spike raster per neuron into ``--out``.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from . import UserError, sigterm_as_interrupt
from .compare import add_split_arguments, add_statistics_arguments, parse_kinds, parse_splits, run_comparison

logger = logging.getLogger(__name__)

DEMO_CONFIG = "demo"
# The neurons of the papers dendrix implements, and the LIF baseline they are measured against.
DEMO_KINDS = ("lif", "dlif", "drf", "mmdend", "dgn", "sdgn", "dalif")
DEMO_SEEDS = 3
DEMO_SPLITS = "official,speaker"
# The speaker split for the baseline and three paper neurons (the cheaper ones per epoch and DLIF): the whole
# grid on both splits would about double the training time of make demo (docs/training.md).
DEMO_SPEAKER_KINDS = ("lif", "dlif", "dgn", "dalif")


def add_arguments(parser) -> None:
    parser.add_argument("--out", "-o", help="report folder (default: runs/demo-TIMESTAMP)")
    parser.add_argument("--epochs", type=int, help="epochs per neuron kind (default: from the demo config)")
    parser.add_argument("--kinds", "-k", help=f"comma-separated neuron kinds (default: {','.join(DEMO_KINDS)})")
    parser.add_argument("--all", action="store_true", help="every registered neuron kind")
    add_statistics_arguments(parser, default_seeds=DEMO_SEEDS)
    add_split_arguments(parser, default_splits=DEMO_SPLITS,
                        default_speaker_kinds=f"{','.join(DEMO_SPEAKER_KINDS)}; with --kinds or --all: all of them")
    parser.add_argument("--workers", "-j", type=int, default=min(2, os.cpu_count() or 1),
                        help="kinds trained at a time, one single-threaded process each (default: 2, or 1 on "
                             "a one-core machine)")
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def main(args) -> int:
    """SIGTERM is handled like Ctrl-C (see ``dendrix compare``): finished runs reported, one line, 143/130."""
    with sigterm_as_interrupt():
        return _main(args)


def _main(args) -> int:
    from ..train.config import packaged_config

    if args.all and args.kinds:
        raise UserError("--all and --kinds exclude each other")
    kinds = parse_kinds("all" if args.all else args.kinds or ",".join(DEMO_KINDS))
    speaker_kinds = args.speaker_kinds
    if speaker_kinds is None and not (args.all or args.kinds) and "speaker" in (args.splits or ""):
        speaker_kinds = ",".join(DEMO_SPEAKER_KINDS)  # the default grid: the speaker split for a subset
    splits, split_kinds = parse_splits(args.splits, kinds, speaker_kinds)
    overrides = []
    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {args.epochs}")
        overrides.append(f"train.epochs={args.epochs}")
    out = Path(args.out) if args.out else Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    logger.info("dendrix demo: %d neuron kind(s) × %d seed(s) on spiking FSDD (%s) -> %s", len(kinds), args.seeds,
                ", ".join(splits or ["official"]), out)
    title = ("dendrix demo: spiking FSDD (official split)" if not splits or splits == ["official"]
             else f"dendrix demo: spiking FSDD ({' and '.join(splits)} splits)")
    rows = run_comparison(str(packaged_config(DEMO_CONFIG)), kinds, out, overrides, title, args.quiet,
                          args.workers, seeds=args.seeds, match=args.match, reference=args.reference,
                          overwrite=args.overwrite, splits=splits, split_kinds=split_kinds)
    return 0 if any(not r.get("error") for r in rows) else 1
