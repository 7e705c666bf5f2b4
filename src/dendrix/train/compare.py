"""Train several neuron kinds on one task (same config, ``model.kind`` swapped) and collect one table.

Each kind trains in ``OUT/runs/KIND`` (a normal run folder, loadable with ``load_run``). A kind that fails
(bad keywords, a numerical error, a bug in its module) does not stop the others: its row carries the error, a
line goes to stderr and the full traceback to ``OUT/errors/KIND.txt``.

``workers=N`` trains N kinds at a time in separate processes (each with the config's ``threads``, typically 1):
small spiking MLPs use one core poorly with two intra-op threads, so two single-threaded processes finish a
comparison on two cores sooner than one two-threaded process.
"""

from __future__ import annotations

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

from ..recording import record
from .batches import Batches
from .config import deep_merge, load_config, parse_overrides, resolve_config
from .distributed import DistContext, resolve_device
from .report import make_row, plot_raster
from .runfolder import RunLock

__all__ = ["compare_kinds", "train_kind", "first_layer_raster", "kind_config"]


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


def _record_failure(out_dir: Path, kind: str, err: BaseException, details: str) -> str:
    line = _one_line(err)
    (out_dir / "errors").mkdir(parents=True, exist_ok=True)
    path = out_dir / "errors" / f"{kind}.txt"
    path.write_text(details)
    print(f"  {kind} FAILED: {line} (traceback in {path})", file=sys.stderr, flush=True)
    return line


def train_kind(source, kind: str, out_dir: str | Path, overrides: Sequence[str] | None = None, *,
               verbose: bool = True, rasters: bool = True, progress: bool | None = None, evaluation: bool = True,
               overwrite: bool = False) -> tuple[dict[str, Any], list[dict]]:
    """Train one kind of a comparison; returns (report row, per-epoch history). Never raises for a failing
    kind (the row carries the error) except on KeyboardInterrupt.

    ``evaluation`` adds the headline energy (μJ per test sample) and small-grid overall robustness of
    :func:`dendrix.analysis.summary.quick_evaluation` to the row (keys ``energy_uj``, ``overall_robustness``)."""
    from .trainer import Trainer

    out_dir = Path(out_dir)
    start, cpu_start = time.perf_counter(), time.process_time()

    def log(text: str) -> None:
        if verbose:
            print(f"    {kind}: {text}", flush=True)

    try:
        cfg = kind_config(source, kind, overrides)
        if progress is not None:
            cfg["train"]["progress"] = progress
        ctx = DistContext(device=resolve_device(cfg["device"]))
        trainer = Trainer(cfg, out_dir / "runs" / kind, ctx=ctx, log=log, overwrite=overwrite)
        result = trainer.fit()
        history = list(trainer.history)
        if rasters:
            raster = first_layer_raster(trainer.model, trainer.test_data)
            if raster is not None:
                plot_raster(out_dir / f"raster_{kind}.png", raster, f"{kind}: first hidden layer, one test sample")
        extra: dict[str, Any] = {}
        if evaluation:
            from ..analysis.summary import quick_evaluation

            quick = quick_evaluation(trainer.model, trainer.test_data, seed=cfg["seed"])
            extra = {"energy_uj": quick["energy_uj"], "overall_robustness": quick["overall_robustness"]}
        # cpu_seconds: this process's CPU time (with threads=1, about the wall time on an idle core)
        row = make_row(kind, result, wall_seconds=time.perf_counter() - start,
                       cpu_seconds=time.process_time() - cpu_start, **extra)
        log(f"test accuracy {100 * row['test_accuracy']:.1f}% ({row['wall_seconds']:.0f} s)")
        return row, history
    except KeyboardInterrupt:
        raise
    except Exception as err:  # one kind failing must not stop the comparison; keep it visible
        line = _record_failure(out_dir, kind, err, traceback.format_exc())
        return make_row(kind, error=line, wall_seconds=time.perf_counter() - start), []


def compare_kinds(source, kinds: Sequence[str], out_dir: str | Path, overrides: Sequence[str] | None = None, *,
                  log: Callable[[str], None] | None = print, rasters: bool = True, progress: bool | None = None,
                  workers: int = 1, evaluation: bool = True, overwrite: bool = False
                  ) -> tuple[list[dict[str, Any]], dict[str, list[dict]]]:
    """Train every kind in ``kinds`` with the config ``source``; returns (rows in ``kinds`` order, histories).

    A kind listed twice is trained once (two trainings into one ``runs/KIND`` folder would corrupt it), and
    ``out_dir`` is locked for the whole comparison; ``overwrite`` replaces runs already in ``out_dir/runs``."""
    kinds = list(dict.fromkeys(kinds))
    out_dir = Path(out_dir)
    with RunLock(out_dir):
        return _compare(source, kinds, out_dir, overrides, log=log, rasters=rasters, progress=progress,
                        workers=workers, evaluation=evaluation, overwrite=overwrite)


def _compare(source, kinds, out_dir: Path, overrides, *, log, rasters, progress, workers, evaluation, overwrite):
    results: dict[str, tuple[dict, list]] = {}
    verbose = log is not None
    if workers <= 1 or len(kinds) <= 1:
        for i, kind in enumerate(kinds):
            if log:
                log(f"[{i + 1}/{len(kinds)}] {kind}")
            results[kind] = train_kind(source, kind, out_dir, overrides, verbose=verbose, rasters=rasters,
                                       progress=progress, evaluation=evaluation, overwrite=overwrite)
    else:
        # spawn: a fresh interpreter per worker (fork would copy this process's thread pools and locks)
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(kinds)), mp_context=context)
        try:
            futures = {kind: pool.submit(train_kind, str(source) if isinstance(source, Path) else source, kind,
                                         str(out_dir), list(overrides or []), verbose=verbose, rasters=rasters,
                                         progress=False, evaluation=evaluation, overwrite=overwrite)
                       for kind in kinds}
            for i, kind in enumerate(kinds):
                try:
                    results[kind] = futures[kind].result()
                except BrokenProcessPool as err:  # the worker died (killed, out of memory, crash in C code)
                    line = _record_failure(out_dir, kind, err, "the worker process training this kind died\n")
                    results[kind] = (make_row(kind, error=line), [])
                if log:
                    row = results[kind][0]
                    status = (f"failed ({row['error']})" if row.get("error")
                              else f"test accuracy {100 * row['test_accuracy']:.1f}%")
                    log(f"[{i + 1}/{len(kinds)}] {kind}: {status}")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    rows = [results[k][0] for k in kinds]
    histories = {k: results[k][1] for k in kinds}
    return rows, histories
