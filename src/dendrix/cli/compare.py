"""``dendrix compare --config X --kinds a,b,c [--seeds N] [--match params|time --reference lif]
[--splits official,speaker [--speaker-kinds a,b]]``: train several neuron kinds on one task (N seeds each,
optionally at a matched budget, optionally once per split) and report them with statistics.

Progress and the final table go to the ``dendrix.cli.compare`` logger (shown by the command's console handler)."""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

from . import UserError, interrupt_name, sigterm_as_interrupt

logger = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--config", "-c", required=True, help="YAML config (path or packaged name)")
    parser.add_argument("--kinds", "-k", required=True, help="comma-separated neuron kinds, or 'all'")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every kind")
    parser.add_argument("--out", "-o", help="report folder (default: runs/compare-TIMESTAMP)")
    parser.add_argument("--epochs", type=int, help="shortcut for train.epochs=N")
    parser.add_argument("--workers", "-j", type=int, default=1,
                        help="kinds trained at a time, in separate processes (default 1)")
    add_statistics_arguments(parser, default_seeds=1)
    add_split_arguments(parser, default_splits=None, default_speaker_kinds=None)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the report and runs already in --out (default: refuse such a folder)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def add_statistics_arguments(parser, default_seeds: int) -> None:
    """``--seeds``, ``--match`` and ``--reference`` (shared by ``compare`` and ``demo``)."""
    parser.add_argument("--seeds", "-s", type=int, default=default_seeds,
                        help=f"train every kind with N seeds (config seed, +1, ...; default {default_seeds}); the "
                             "report gives mean, std, 95%% intervals and pairwise tests")
    parser.add_argument("--match", choices=("params", "time"),
                        help="size each kind's hidden width to the reference kind's parameter count or training "
                             "time per batch (timing probe)")
    parser.add_argument("--reference", default="lif", help="reference kind of --match (default lif)")


def add_split_arguments(parser, default_splits: str | None, default_speaker_kinds: str | None) -> None:
    """``--splits`` and ``--speaker-kinds`` (shared by ``compare`` and ``demo``)."""
    parser.add_argument("--splits", default=default_splits,
                        help="comma-separated data splits, each kind trained separately on each (official, "
                             "speaker: a speaker held out of training); the report puts the accuracies side by "
                             "side with the gap" + (f" (default {default_splits})" if default_splits
                                                    else " (default: the config's data.split)"))
    parser.add_argument("--speaker-kinds", default=None,
                        help="kinds trained on the speaker split ('all': every compared kind; default "
                             + (default_speaker_kinds or "all") + ")")


SPLITS = ("official", "speaker")


def parse_splits(text: str | None, kinds: list[str], speaker_kinds: str | None
                 ) -> tuple[list[str] | None, dict[str, list[str]] | None]:
    """``--splits``/``--speaker-kinds`` -> (splits or None, {split: kinds} or None), checked."""
    if text is None:
        if speaker_kinds is not None:
            raise UserError("--speaker-kinds needs --splits with speaker in it")
        return None, None
    splits = list(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    if not splits:
        raise UserError("--splits is empty; give comma-separated splits such as official,speaker")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise UserError(f"unknown split {unknown[0]!r} in --splits; allowed: {', '.join(SPLITS)}")
    if speaker_kinds is None or speaker_kinds.strip().lower() == "all":
        return splits, None
    if "speaker" not in splits:
        raise UserError("--speaker-kinds needs --splits with speaker in it")
    chosen = [k for k in parse_kinds(speaker_kinds) if k in kinds]
    if not chosen:
        raise UserError(f"--speaker-kinds {speaker_kinds!r} names none of the compared kinds ({', '.join(kinds)})")
    return splits, {"speaker": chosen}


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


def check_first_config(config, kinds, overrides, splits: list[str] | None = None) -> None:
    """Fail fast with one line on a bad config instead of once per kind (and on a split the data lacks)."""
    from ..train.compare import kind_config
    from ..train.config import ConfigError

    try:
        for kind in kinds:
            cfg = kind_config(config, kind, overrides)
    except ConfigError as err:
        raise UserError(str(err)) from None
    from ..train.batches import open_dataset

    for split in splits or [None]:
        data = dict(cfg["data"]) if split is None else {**cfg["data"], "split": split}
        try:  # a data problem is the same for every kind: report it once
            open_dataset(data, "train", seed=cfg["seed"])
        except (ValueError, FileNotFoundError, ImportError) as err:
            where = "" if split is None else f" with --splits {split}"
            raise UserError(f"cannot open data set {cfg['data']['name']!r}{where}: {err}") from None


def seed_list(config, kinds, overrides, count: int) -> list[int]:
    """``count`` consecutive seeds from the config's seed (of the first kind, after the overrides)."""
    from ..train.compare import kind_config

    if count < 1:
        raise UserError(f"--seeds must be >= 1, got {count}")
    base = kind_config(config, kinds[0], overrides)["seed"]
    return list(range(base, base + count))


def matched_budget(config, kinds, overrides, match: str | None, reference: str) -> dict | None:
    """The ``--match`` budget (see :func:`dendrix.train.budget.match_budget`), or None without ``--match``."""
    if match is None:
        return None
    from ..registry import available
    from ..train.budget import match_budget
    from ..train.compare import kind_config

    if reference not in available():
        raise UserError(f"unknown --reference kind {reference!r}; available: {', '.join(available())}")
    configs = {k: kind_config(config, k, overrides) for k in dict.fromkeys([reference, *kinds])}
    logger.info("matching the %s budget of %s ...", match, reference)
    budget = match_budget(configs, reference, match)
    if reference not in kinds:
        budget["widths"].pop(reference), budget["values"].pop(reference)
    return budget


def run_comparison(config, kinds, out_dir: Path, overrides, title: str, quiet: bool, workers: int = 1,
                   seeds: int = 1, match: str | None = None, reference: str = "lif",
                   overwrite: bool = False, splits: list[str] | None = None,
                   split_kinds: dict[str, list[str]] | None = None) -> list[dict]:
    """Check the input, train every kind (``seeds`` times, at the ``match`` budget), write and log the report."""
    from ..train.compare import ComparisonInterrupted, compare_kinds
    from ..train.report import write_report
    from ..train.runfolder import RunFolderError, RunLock

    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    check_first_config(config, kinds, overrides, splits)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder")
    try:
        RunLock.check_free(out_dir)
    except RunFolderError as err:
        raise UserError(str(err)) from None
    if not overwrite and ((out_dir / "report.json").exists() or (out_dir / "runs").exists()):
        raise UserError(f"{out_dir} already holds a comparison; choose another --out or add --overwrite")
    seed_values = seed_list(config, kinds, overrides, seeds)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    budget = matched_budget(config, kinds, overrides, match, reference)
    kind_overrides = ({k: [f"model.hidden=[{','.join(map(str, w))}]"] for k, w in budget["widths"].items()}
                      if budget else None)
    try:
        rows, histories = compare_kinds(config, kinds, out_dir, overrides, progress=False if quiet else None,
                                        workers=workers, seeds=seed_values, kind_overrides=kind_overrides,
                                        overwrite=overwrite, splits=splits, split_kinds=split_kinds)
    except ComparisonInterrupted as stop:
        _save_interrupted(stop, out_dir, title, budget, time.perf_counter() - start, workers)
        raise
    wall = time.perf_counter() - start
    grid = (f"{len(kinds)} kind(s) × {seeds} seed(s)" if not splits else
            " + ".join(f"{len((split_kinds or {}).get(s, kinds))} kind(s) × {seeds} seed(s) on {s}" for s in splits))
    notes = [_machine_note(grid, wall, workers)]
    if splits and "speaker" in splits:
        from ..train.batches import dataset_options_for

        held = dataset_options_for({**kind_config_data(config, kinds[0], overrides), "split": "speaker"})
        notes.append(f"Speaker split: trained on the other speakers, tested on every recording of the held-out "
                     f"speaker {held.get('test_speaker')!r} (data.options.test_speaker).")
    table = write_report(out_dir, rows, histories, title, command=_command(), notes=notes, budget=budget)
    logger.info("\n%s", table)
    logger.info("\n%s in %.0f s; report: %s", grid, wall, out_dir / "report.md")
    failed = [r["neuron"] + (f" (seed {r['seed']})" if r.get("seed") is not None else "")
              + (f" ({r['split']} split)" if r.get("split") else "") for r in rows if r.get("error")]
    if failed:
        logger.warning("failed: %s (see %s)", ", ".join(failed), out_dir / "errors")
    return rows


def kind_config_data(config, kind: str, overrides) -> dict:
    """The resolved ``data`` section of ``kind``'s config."""
    from ..train.compare import kind_config

    return dict(kind_config(config, kind, overrides)["data"])


def _command() -> str:
    return "dendrix " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _machine_note(what: str, wall: float, workers: int) -> str:
    import platform

    import torch

    return (f"{what} in {wall:.0f} s wall time, {workers} run(s) at a time; {platform.machine()} "
            f"{os.cpu_count()} CPU(s), torch {torch.__version__}, {datetime.now():%Y-%m-%d %H:%M}.")


class ComparisonStopped(KeyboardInterrupt):
    """A comparison stopped by Ctrl-C/SIGTERM after saving what was done; ``line`` says what and how to go on."""

    def __init__(self, line: str, cause: KeyboardInterrupt):
        super().__init__(line)
        self.line, self.cause = line, cause


def _save_interrupted(stop, out_dir: Path, title: str, budget, wall: float, workers: int) -> None:
    """Write the report of the finished runs (if any) and raise the one line that says how to go on."""
    from ..train.checkpoint import checkpoint_folders
    from ..train.report import write_report

    done = f"{len(stop.rows)} of {stop.total} run(s) finished"
    parts = [f"{interrupt_name(stop.cause)} with {done}"]
    if stop.rows:
        write_report(out_dir, stop.rows, stop.histories, f"{title} (interrupted: {done})", command=_command(),
                     notes=[_machine_note(f"interrupted: {done}", wall, workers)], budget=budget)
        parts.append(f"their report is {out_dir / 'report.md'}")
    resumable = [d for d in stop.unfinished if d.is_dir() and checkpoint_folders(d)]
    if resumable:
        parts.append("resume the unfinished run with: " + "; ".join(f"dendrix train --resume {d}" for d in resumable))
    parts.append(f"or start the comparison again with --out {out_dir} --overwrite")
    raise ComparisonStopped("; ".join(parts), stop.cause) from None


def main(args) -> int:
    """SIGTERM is handled like Ctrl-C: the finished runs are reported, one line says how to go on (143/130)."""
    with sigterm_as_interrupt():
        return _main(args)


def _main(args) -> int:
    kinds = parse_kinds(args.kinds)
    splits, split_kinds = parse_splits(args.splits, kinds, args.speaker_kinds)
    overrides = list(args.overrides)
    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {args.epochs}")
        overrides.append(f"train.epochs={args.epochs}")
    out = Path(args.out) if args.out else Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
    rows = run_comparison(args.config, kinds, out, overrides, f"dendrix compare: {args.config}", args.quiet,
                          args.workers, seeds=args.seeds, match=args.match, reference=args.reference,
                          overwrite=args.overwrite, splits=splits, split_kinds=split_kinds)
    return 0 if any(not r.get("error") for r in rows) else 1
