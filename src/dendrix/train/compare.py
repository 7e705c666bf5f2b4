"""Train several neuron kinds on one task (same config, ``model.kind`` swapped) and collect one table.

Each kind trains in ``OUT/runs/KIND`` (a normal run folder, loadable with ``load_run``). A kind that fails
(bad keywords, a numerical error, a bug in its module) does not stop the others: its row carries the error and
the full traceback goes to ``OUT/errors/KIND.txt``.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..recording import record
from .batches import Batches
from .config import load_config, parse_overrides, resolve_config, deep_merge
from .distributed import DistContext, resolve_device
from .report import make_row, plot_raster

__all__ = ["compare_kinds", "first_layer_raster", "kind_config"]


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


def compare_kinds(source, kinds: Sequence[str], out_dir: str | Path, overrides: Sequence[str] | None = None, *,
                  log: Callable[[str], None] | None = print, rasters: bool = True,
                  progress: bool | None = None) -> tuple[list[dict[str, Any]], dict[str, list[dict]]]:
    """Train every kind in ``kinds`` with the config ``source``; returns (rows, histories per kind)."""
    from .trainer import Trainer

    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    histories: dict[str, list[dict]] = {}
    for i, kind in enumerate(kinds):
        start = time.perf_counter()
        if log:
            log(f"[{i + 1}/{len(kinds)}] {kind}")
        try:
            cfg = kind_config(source, kind, overrides)
            if progress is not None:
                cfg["train"]["progress"] = progress
            ctx = DistContext(device=resolve_device(cfg["device"]))
            trainer = Trainer(cfg, out_dir / "runs" / kind, ctx=ctx, log=(lambda s: log("    " + s)) if log else None)
            result = trainer.fit()
            histories[kind] = list(trainer.history)
            if rasters:
                raster = first_layer_raster(trainer.model, trainer.test_data)
                if raster is not None:
                    plot_raster(out_dir / f"raster_{kind}.png", raster, f"{kind}: first hidden layer")
            row = make_row(kind, result, wall_seconds=time.perf_counter() - start)
            if log:
                log(f"    {kind}: test accuracy {100 * row['test_accuracy']:.1f}% "
                    f"({row['wall_seconds']:.0f} s)")
        except KeyboardInterrupt:
            raise
        except Exception as err:  # one kind failing must not stop the comparison; keep it visible
            line = _one_line(err)
            (out_dir / "errors").mkdir(parents=True, exist_ok=True)
            (out_dir / "errors" / f"{kind}.txt").write_text(traceback.format_exc())
            print(f"  {kind} FAILED: {line} (traceback in {out_dir / 'errors' / (kind + '.txt')})", file=sys.stderr)
            row = make_row(kind, error=line, wall_seconds=time.perf_counter() - start)
            histories[kind] = []
        rows.append(row)
    return rows, histories
