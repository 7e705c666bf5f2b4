"""Train several neuron kinds on one task (same config, ``model.kind`` swapped) and collect one table.

Each kind trains in ``OUT/runs/KIND`` (one seed) or once per seed in ``OUT/runs/KIND/seed-S`` (``seeds=[...]``,
several), normal run folders loadable with ``load_run``. A run that fails (bad keywords, a numerical error, a bug
in its module) does not stop the others: its row carries the error, a warning is logged and the full traceback
goes to ``OUT/errors/KIND.txt`` (``KIND-seedS.txt`` with several seeds).

``splits=["official", "speaker"]`` trains every kind once per split (``data.split=SPLIT``, each model trained
on that split's training part only: a speaker-held-out model never sees the held-out speaker) into
``OUT/runs/SPLIT/KIND[/seed-S]``; each row then carries its ``split``. ``split_kinds={split: kinds}`` trains only
those kinds on that split (e.g. the speaker split for a subset when the whole grid does not fit the time).

Rows are per (kind, seed), in ``kinds`` order then seed order (with splits: split order first); ``kind_overrides`` adds overrides for one kind
(e.g. the hidden width a matched budget chose, see :mod:`dendrix.train.budget`). Progress goes to the
``dendrix.train.compare`` logger (INFO), failures as warnings.

``workers=N`` trains N runs at a time in separate processes (each with the config's ``threads``, typically 1):
small spiking MLPs use one core poorly with two intra-op threads, so two single-threaded processes finish a
comparison on two cores sooner than one two-threaded process.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..files import write_text
from ..recording import record
from .batches import Batches
from .config import deep_merge, load_config, parse_overrides, resolve_config
from .distributed import DistContext, resolve_device
from .report import make_row, plot_raster
from .runfolder import RunLock

__all__ = ["compare_kinds", "train_kind", "first_layer_raster", "kind_config", "test_correctness",
           "ComparisonInterrupted"]


class ComparisonInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during :func:`compare_kinds`: what was finished, so the caller can save it.

    ``rows``/``histories`` as :func:`compare_kinds` returns them, for the finished runs only; ``unfinished``: the
    run folders of the runs that were started but not finished (their last finished epoch is checkpointed);
    ``total``: how many runs the comparison has; ``cause``: the original KeyboardInterrupt (or subclass)."""

    def __init__(self, cause: KeyboardInterrupt, rows: list, histories: dict, unfinished: list[Path], total: int):
        super().__init__(str(cause))
        self.cause, self.rows, self.histories, self.unfinished, self.total = cause, rows, histories, unfinished, total


logger = logging.getLogger(__name__)


def kind_config(source, kind: str, overrides: Sequence[str] | dict | None = None) -> dict:
    """The resolved config of ``kind`` for a comparison: file <- per_kind[kind] <- overrides <- model.kind."""
    raw = load_config(source)
    over = parse_overrides(list(overrides)) if isinstance(overrides, (list, tuple)) else dict(overrides or {})
    over = deep_merge(over, {"model": {"kind": kind}})
    return resolve_config(raw, over)


@torch.no_grad()
def first_layer_raster(model: nn.Module, batches: Batches, sample: int = 0) -> np.ndarray | None:
    """Spikes ``[T, N]`` of the first spiking layer for one sample of ``batches``."""
    x, _ = next(iter(batches.iterate()))
    was_training = model.training
    model.eval()
    with record(model, states=False) as rec:
        model(x[:, sample:sample + 1])
    model.train(was_training)
    spikes = rec.spikes
    if not spikes:
        return None
    first = next(iter(spikes.values()))
    return first[:, 0].reshape(first.shape[0], -1).float().numpy()


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def _run_name(kind: str, seed: int | None, split: str | None = None) -> str:
    name = kind if seed is None else f"{kind}-seed{seed}"
    return name if split is None else f"{split}-{name}"


def _record_failure(out_dir: Path, name: str, err: BaseException, details: str) -> str:
    line = _one_line(err)
    path = out_dir / "errors" / f"{name}.txt"
    write_text(path, details)
    logger.warning("  %s FAILED: %s (traceback in %s)", name, line, path)
    return line


@torch.no_grad()
def test_correctness(model: nn.Module, batches: Batches) -> list[int]:
    """1/0 per test sample (in the loader's fixed order): was it classified correctly? For paired tests over
    test samples (:func:`dendrix.analysis.statistics.paired_bootstrap`)."""
    was_training = model.training
    model.eval()
    correct: list[int] = []
    for x, y in batches.iterate():
        correct += (model(x).argmax(-1) == y).int().tolist()
    model.train(was_training)
    return correct


def train_kind(source, kind: str, out_dir: str | Path, overrides: Sequence[str] | None = None, *,
               verbose: bool = True, rasters: bool = True, progress: bool | None = None, evaluation: bool = True,
               seed: int | None = None, overwrite: bool = False, split: str | None = None
               ) -> tuple[dict[str, Any], list[dict]]:
    """Train one kind of a comparison; returns (report row, per-epoch history). Never raises for a failing
    kind (the row carries the error) except on KeyboardInterrupt.

    ``seed``: train with this ``seed`` in ``OUT/runs/KIND/seed-SEED`` (None: the config's seed, in
    ``OUT/runs/KIND``). ``split``: train with ``data.split=SPLIT`` in ``OUT/runs/SPLIT/...`` (the row gets
    ``split``; None: the config's split, no ``split`` key). ``evaluation`` adds the headline energy (μJ per test sample) and small-grid robustness
    of :func:`dendrix.analysis.summary.quick_evaluation` to the row (keys ``energy_uj``, ``overall_robustness``,
    ``robustness_settings``). The row also carries ``seed``, ``hidden`` and ``test_correct`` (1/0 per test sample).
    """
    from .trainer import Trainer

    out_dir = Path(out_dir)
    name = _run_name(kind, seed, split)
    split_extra = {} if split is None else {"split": split}
    start, cpu_start = time.perf_counter(), time.process_time()

    def log(text: str) -> None:
        if verbose:
            logger.info("    %s: %s", name, text)

    try:
        over = (list(overrides or []) + ([f"seed={seed}"] if seed is not None else [])
                + ([f"data.split={split}"] if split is not None else []))
        cfg = kind_config(source, kind, over)
        if progress is not None:
            cfg["train"]["progress"] = progress
        ctx = DistContext(device=resolve_device(cfg["device"]))
        run_dir = out_dir / "runs" / (split or "") / kind
        run_dir = run_dir / f"seed-{seed}" if seed is not None else run_dir
        trainer = Trainer(cfg, run_dir, ctx=ctx, log=log, overwrite=overwrite)
        result = trainer.fit()
        history = list(trainer.history)
        if rasters:
            raster = first_layer_raster(trainer.model, trainer.test_data)
            if raster is not None:
                plot_raster(out_dir / f"raster_{kind}.png", raster, f"{kind}: first hidden layer, one test sample")
        extra: dict[str, Any] = {**split_extra, "seed": cfg["seed"], "hidden": cfg["model"].get("hidden"),
                                 "test_correct": test_correctness(trainer.model, trainer.test_data)}
        if evaluation:
            from ..analysis.summary import quick_evaluation

            quick = quick_evaluation(trainer.model, trainer.test_data, seed=cfg["seed"])
            extra.update(energy_uj=quick["energy_uj"], overall_robustness=quick["overall_robustness"],
                         robustness_settings=quick["robustness_settings"])
        # cpu_seconds: this process's CPU time (with threads=1, about the wall time on an idle core)
        row = make_row(kind, result, wall_seconds=time.perf_counter() - start,
                       cpu_seconds=time.process_time() - cpu_start, **extra)
        log(f"test accuracy {100 * row['test_accuracy']:.1f}% ({row['wall_seconds']:.0f} s)")
        return row, history
    except KeyboardInterrupt:
        raise
    except Exception as err:  # one kind failing must not stop the comparison; keep it visible
        line = _record_failure(out_dir, name, err, traceback.format_exc())
        return make_row(kind, error=line, seed=seed, wall_seconds=time.perf_counter() - start, **split_extra), []


class _WorkerConsole(logging.Handler):
    """In a spawned worker: INFO to stdout, warnings to stderr (the parent's handlers do not cross processes)."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        stream.write(self.format(record) + "\n")
        stream.flush()


def _worker_train_kind(level: int, *args, **kwargs):
    root = logging.getLogger("dendrix")
    if not any(isinstance(h, _WorkerConsole) for h in root.handlers):
        root.addHandler(_WorkerConsole())
    root.setLevel(level)
    return train_kind(*args, **kwargs)


def _log_info(text: str) -> None:
    logger.info("%s", text)


def compare_kinds(source, kinds: Sequence[str], out_dir: str | Path, overrides: Sequence[str] | None = None, *,
                  log: Callable[[str], None] | None = _log_info, rasters: bool = True, progress: bool | None = None,
                  workers: int = 1, evaluation: bool = True, seeds: Sequence[int] | None = None,
                  kind_overrides: dict[str, Sequence[str]] | None = None, overwrite: bool = False,
                  splits: Sequence[str] | None = None, split_kinds: dict[str, Sequence[str]] | None = None
                  ) -> tuple[list[dict[str, Any]], dict]:
    """Train every kind in ``kinds`` (once per seed of ``seeds``) with the config ``source``.

    Returns (rows in ``kinds`` then ``seeds`` order, ``{kind: {seed: history}}``). ``seeds=None`` trains once
    with the config's seed (history key None). With ``splits`` the histories are ``{split: {kind: {seed:
    history}}}`` and ``split_kinds`` may name the kinds of a split (a subset of ``kinds``; default all). ``log`` takes one-line progress messages (default: INFO
    records of this module's logger; None silences them and the per-epoch lines).

    A kind listed twice is trained once (two trainings into one run folder would corrupt it), and ``out_dir`` is
    locked for the whole comparison; ``overwrite`` replaces runs already in ``out_dir/runs``.
    """
    kinds = list(dict.fromkeys(kinds))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_list: list[int | None] = [None] if seeds is None else [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be distinct and not empty, got {list(seeds or [])}")
    split_jobs = _split_jobs(kinds, splits, split_kinds)
    with RunLock(out_dir):
        rows, histories = _compare(source, split_jobs, out_dir, overrides, seed_list, log=log, rasters=rasters,
                                   progress=progress, workers=workers, evaluation=evaluation,
                                   kind_overrides=kind_overrides, overwrite=overwrite)
    if splits is None:
        return rows, histories[None]
    return rows, histories


def _split_jobs(kinds: list[str], splits: Sequence[str] | None,
                split_kinds: dict[str, Sequence[str]] | None) -> list[tuple[str | None, list[str]]]:
    """``[(split, kinds of that split)]``; ``[(None, kinds)]`` without splits."""
    if splits is None:
        if split_kinds:
            raise ValueError("split_kinds needs splits")
        return [(None, kinds)]
    split_list = list(dict.fromkeys(splits))
    if not split_list:
        raise ValueError("splits must not be empty (leave it None for the config's split)")
    unknown = [s for s in split_kinds or {} if s not in split_list]
    if unknown:
        raise ValueError(f"split_kinds names split {unknown[0]!r}, which is not in splits {split_list}")
    out = []
    for split in split_list:
        chosen = list(dict.fromkeys((split_kinds or {}).get(split, kinds)))
        stray = [k for k in chosen if k not in kinds]
        if stray:
            raise ValueError(f"split_kinds[{split!r}] names kind {stray[0]!r}, which is not compared; kinds: "
                             f"{', '.join(kinds)}")
        out.append((split, chosen))
    return out


def _compare(source, split_jobs, out_dir: Path, overrides, seed_list, *, log, rasters, progress, workers,
             evaluation, kind_overrides, overwrite):
    per_seed_dirs = len(seed_list) > 1
    jobs = [(kind, seed, split) for split, kinds in split_jobs for kind in kinds for seed in seed_list]
    first_split = split_jobs[0][0]

    def job_kwargs(kind: str, seed: int | None, split: str | None) -> dict:
        return dict(rasters=rasters and seed == seed_list[0] and split == first_split, evaluation=evaluation,
                    seed=seed if per_seed_dirs else None, overwrite=overwrite, split=split)

    def job_overrides(kind: str, seed: int | None, split: str | None) -> list[str]:
        over = list(overrides or []) + list((kind_overrides or {}).get(kind, []))
        if seed is not None and not per_seed_dirs:
            over.append(f"seed={seed}")
        return over

    results: dict[tuple[str, int | None, str | None], tuple[dict, list]] = {}
    verbose = log is not None

    def run_dir(job) -> Path:
        kind, seed, split = job
        folder = out_dir / "runs" / (split or "") / kind
        return folder / f"seed-{seed}" if per_seed_dirs else folder

    def interrupted(err: KeyboardInterrupt, started) -> ComparisonInterrupted:
        done = [job for job in jobs if job in results]
        histories: dict = {split: {k: {} for k in kinds} for split, kinds in split_jobs}
        for kind, seed, split in done:
            histories[split][kind][seed] = results[kind, seed, split][1]
        return ComparisonInterrupted(err, [results[job][0] for job in done],
                                     histories[None] if first_split is None else histories,
                                     [run_dir(job) for job in started if job not in results], len(jobs))

    if workers <= 1 or len(jobs) <= 1:
        for i, (kind, seed, split) in enumerate(jobs):
            if log:
                log(f"[{i + 1}/{len(jobs)}] {_run_name(kind, seed if per_seed_dirs else None, split)}")
            try:
                results[kind, seed, split] = train_kind(source, kind, out_dir, job_overrides(kind, seed, split),
                                                        verbose=verbose, progress=progress,
                                                        **job_kwargs(kind, seed, split))
            except KeyboardInterrupt as err:
                raise interrupted(err, [(kind, seed, split)]) from err
    else:
        # spawn: a fresh interpreter per worker (fork would copy this process's thread pools and locks)
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context)
        level = logging.getLogger("dendrix").getEffectiveLevel()
        futures: dict = {}
        try:
            futures = {job: pool.submit(_worker_train_kind, level, str(source) if isinstance(source, Path)
                                        else source, job[0], str(out_dir), job_overrides(*job), verbose=verbose,
                                        progress=False, **job_kwargs(*job))
                       for job in jobs}
            for i, job in enumerate(jobs):
                name = _run_name(job[0], job[1] if per_seed_dirs else None, job[2])
                try:
                    results[job] = futures[job].result()
                except BrokenProcessPool as err:  # the worker died (killed, out of memory, crash in C code)
                    line = _record_failure(out_dir, name, err, "the worker process training this kind died\n")
                    results[job] = (make_row(job[0], error=line, seed=job[1],
                                             **({} if job[2] is None else {"split": job[2]})), [])
                if log:
                    row = results[job][0]
                    status = (f"failed ({row['error']})" if row.get("error")
                              else f"test accuracy {100 * row['test_accuracy']:.1f}%")
                    log(f"[{i + 1}/{len(jobs)}] {name}: {status}")
        except KeyboardInterrupt as err:
            pool.shutdown(wait=False, cancel_futures=True)
            started = [job for job in jobs if job not in results and job in futures and futures[job].running()]
            raise interrupted(err, started) from err
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    rows = [results[job][0] for job in jobs]
    histories: dict[str | None, dict[str, dict[int | None, list[dict]]]] = {
        split: {k: {} for k in kinds} for split, kinds in split_jobs}
    for (kind, seed, split), (_, history) in results.items():
        histories[split][kind][seed] = history
    return rows, histories
