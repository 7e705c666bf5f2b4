"""``dendrix compare --config X --kinds a,b,c``: train several neuron kinds on one task, one table."""

from __future__ import annotations

import os
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

from . import UserError


def add_arguments(parser) -> None:
    parser.add_argument("--config", "-c", required=True, help="YAML config (path or packaged name)")
    parser.add_argument("--kinds", "-k", required=True, help="comma-separated neuron kinds, or 'all'")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every kind")
    parser.add_argument("--out", "-o", help="report folder (default: runs/compare-TIMESTAMP)")
    parser.add_argument("--epochs", type=int, help="shortcut for train.epochs=N")
    parser.add_argument("--workers", "-j", type=int, default=1,
                        help="kinds trained at a time, in separate processes (default 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the report and runs already in --out (default: refuse such a folder)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def parse_kinds(text: str | None) -> list[str]:
    """``"lif,alif"`` -> checked kind names; ``None``/``"all"`` -> every registered kind."""
    from ..registry import available

    try:
        known = available()
    except ImportError as err:
        raise UserError(f"cannot list neuron kinds: {err}") from None
    if text is None or text.strip().lower() == "all":
        return known
    kinds = list(dict.fromkeys(k.strip().lower() for k in text.split(",") if k.strip()))  # each kind once
    if not kinds:
        raise UserError("--kinds is empty; give comma-separated kinds such as lif,alif")
    unknown = [k for k in kinds if k not in known]
    if unknown:
        raise UserError(f"unknown neuron kind {unknown[0]!r}; available: {', '.join(known)}")
    return kinds


def check_first_config(config, kinds, overrides) -> None:
    """Fail fast with one line on a bad config instead of once per kind."""
    from ..train.compare import kind_config
    from ..train.config import ConfigError

    try:
        for kind in kinds:
            cfg = kind_config(config, kind, overrides)
    except ConfigError as err:
        raise UserError(str(err)) from None
    from ..train.batches import open_dataset

    try:  # a data problem is the same for every kind: report it once
        open_dataset(cfg["data"], "train", seed=cfg["seed"])
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise UserError(f"cannot open data set {cfg['data']['name']!r}: {err}") from None


def run_comparison(config, kinds, out_dir: Path, overrides, title: str, quiet: bool, workers: int = 1,
                   overwrite: bool = False) -> list[dict]:
    from ..train.compare import compare_kinds
    from ..train.report import write_report
    from ..train.runfolder import RunFolderError, RunLock

    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    check_first_config(config, kinds, overrides)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder")
    try:
        RunLock.check_free(out_dir)
    except RunFolderError as err:
        raise UserError(str(err)) from None
    if not overwrite and ((out_dir / "report.json").exists() or (out_dir / "runs").exists()):
        raise UserError(f"{out_dir} already holds a comparison; choose another --out or add --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows, histories = compare_kinds(config, kinds, out_dir, overrides, progress=False if quiet else None,
                                    workers=workers, overwrite=overwrite)
    wall = time.perf_counter() - start
    command = "dendrix " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    import platform

    import torch

    notes = [f"{len(kinds)} kind(s) in {wall:.0f} s wall time, {workers} at a time; "
             f"{platform.machine()} {os.cpu_count()} CPU(s), torch {torch.__version__}, "
             f"{datetime.now():%Y-%m-%d %H:%M}."]
    table = write_report(out_dir, rows, histories, title, command=command, notes=notes)
    print()
    print(table)
    print(f"\n{len(kinds)} kind(s) in {wall:.0f} s; report: {out_dir / 'report.md'}")
    failed = [r["neuron"] for r in rows if r.get("error")]
    if failed:
        print(f"failed: {', '.join(failed)} (see {out_dir / 'errors'})", file=sys.stderr)
    return rows


def main(args) -> int:
    kinds = parse_kinds(args.kinds)
    overrides = list(args.overrides)
    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {args.epochs}")
        overrides.append(f"train.epochs={args.epochs}")
    out = Path(args.out) if args.out else Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
    rows = run_comparison(args.config, kinds, out, overrides, f"dendrix compare: {args.config}", args.quiet,
                          args.workers, overwrite=args.overwrite)
    return 0 if any(not r.get("error") for r in rows) else 1
