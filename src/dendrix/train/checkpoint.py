"""Atomic run-folder files: checkpoints (safetensors weights + trainer state), JSON, CSV.

Layout of a run folder::

    config.json             resolved config            info.json      data set description (DatasetInfo)
    metrics.csv             one row per finished epoch  result.json    final numbers (test accuracy, ...)
    best.safetensors        weights of the best validation epoch (model selection)
    checkpoints/last.json   pointer {"epoch": N, "dir": "epoch-000N"} to the newest complete checkpoint
    checkpoints/epoch-000N/ model.safetensors + trainer.pt (optimizer, scheduler, RNG states, history)

Every file is written to a temporary name in the same folder and moved into place with ``os.replace``; a new
checkpoint becomes visible only when ``last.json`` is replaced after its files are complete, so an interruption
at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .._optional import require

_safetensors = require("safetensors.torch", needed_by="dendrix.train (checkpoints)")
load_file, save_file = _safetensors.load_file, _safetensors.save_file

__all__ = ["atomic_write", "write_json", "write_csv", "save_weights", "load_weights", "save_checkpoint",
           "latest_checkpoint", "prune_checkpoints"]


def atomic_write(path: str | Path, writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp_path)``, then move ``tmp_path`` onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (non-JSON values as their ``str``)."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts; the union of their keys in first-seen order as columns) to ``path`` as CSV, atomically."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied weights).
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def save_weights(path: str | Path, model: nn.Module, metadata: dict | None = None) -> None:
    """Save ``model``'s tensors to ``path`` (safetensors, atomically) with ``metadata`` as string key/values."""
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    atomic_write(path, lambda tmp: save_file(_tensors(model), tmp, metadata=meta))


def load_weights(path: str | Path, model: nn.Module, device: torch.device | str = "cpu") -> None:
    """Load the safetensors file ``path`` into ``model`` (strict ``load_state_dict``), tensors on ``device``."""
    state = load_file(str(path), device=str(device))
    model.load_state_dict(state)


def save_checkpoint(run_dir: str | Path, epoch: int, model: nn.Module, trainer_state: dict, keep: int = 1) -> Path:
    """Write checkpoint ``epoch`` (number of finished epochs) and point ``checkpoints/last.json`` at it."""
    root = Path(run_dir) / "checkpoints"
    name = f"epoch-{epoch:04d}"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / "model.safetensors", model, {"epoch": epoch})
    atomic_write(folder / "trainer.pt", lambda tmp: torch.save(trainer_state, tmp))
    write_json(root / "last.json", {"epoch": epoch, "dir": name})
    prune_checkpoints(run_dir, keep=keep)
    return folder


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    """``(epoch, folder)`` of the newest complete checkpoint of ``run_dir``, or None if there is none yet."""
    pointer = Path(run_dir) / "checkpoints" / "last.json"
    if not pointer.exists():
        return None
    info = json.loads(pointer.read_text())
    return int(info["epoch"]), pointer.parent / info["dir"]


def prune_checkpoints(run_dir: str | Path, keep: int = 1) -> None:
    """Delete all but the newest ``keep`` checkpoint folders (never the one ``last.json`` points to)."""
    latest = latest_checkpoint(run_dir)
    root = Path(run_dir) / "checkpoints"
    folders = sorted(p for p in root.glob("epoch-*") if p.is_dir())
    protected = {latest[1].name} if latest else set()
    for old in folders[:-keep] if keep > 0 else folders:
        if old.name not in protected:
            shutil.rmtree(old, ignore_errors=True)
