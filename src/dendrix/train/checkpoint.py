"""Run-folder files: checkpoints (safetensors + JSON, never pickle), and the atomic writer every report uses.

Layout of a run folder::

    config.json             resolved config            info.json      data set description (DatasetInfo)
    metrics.csv             one row per finished epoch  result.json    final numbers (test accuracy, ...)
    best.safetensors        weights of the best validation epoch (model selection)
    .lock                   pid of the process training into the folder (see :mod:`dendrix.train.runfolder`)
    checkpoints/last.json   pointer {"epoch": N, "dir": "epoch-000N"} to the newest checkpoint
    checkpoints/epoch-000N/ model.safetensors, trainer.safetensors (optimiser tensors, RNG states) and
                            state.json (epoch, scheduler, history, config, the SHA-256 of both tensor files)

Every file goes to a temporary name in the same folder, is flushed with ``fsync`` and moved into place with
``os.replace``; ``state.json`` is written last, so a checkpoint folder whose hashes match is complete. Nothing
here unpickles: the trainer state is JSON plus tensors (see :func:`pack` / :func:`unpack`), and every folder
name read from a file must be ``epoch-NNNN`` inside ``checkpoints/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .._optional import require
from ..files import atomic_write, write_csv, write_json, write_text

_safetensors = require("safetensors.torch", needed_by="dendrix.train (checkpoints)")
load_file, save_file = _safetensors.load_file, _safetensors.save_file

__all__ = ["CheckpointError", "atomic_write", "write_json", "write_text", "write_csv", "save_weights",
           "load_weights", "save_checkpoint", "read_checkpoint", "latest_checkpoint", "intact_checkpoint",
           "checkpoint_folders", "prune_checkpoints", "pack", "unpack", "CHECKPOINT_DIR"]

_logger = logging.getLogger(__name__)

CHECKPOINT_DIR = re.compile(r"^epoch-(\d{4,9})$")
STATE_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint or weights file that is missing, truncated, corrupt or does not fit the model (one line)."""


# -- atomic files: dendrix.files (atomic_write, write_text, write_json, write_csv are re-exported here)


# -- weights --------------------------------------------------------------------------------------------------

def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied weights).
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def save_weights(path: str | Path, model: nn.Module, metadata: dict | None = None) -> None:
    """Save ``model``'s tensors to ``path`` (safetensors, atomically) with ``metadata`` as string key/values."""
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    atomic_write(path, lambda tmp: save_file(_tensors(model), tmp, metadata=meta))


def _load_tensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return load_file(str(path), device=device)
    except Exception as err:  # safetensors raises its own error type (and OSError/ValueError) for bad files
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path} is not a readable safetensors file ({first})") from None


def load_weights(path: str | Path, model: nn.Module, device: torch.device | str = "cpu") -> None:
    """Load the safetensors file ``path`` into ``model`` (strict); :class:`CheckpointError` names the file when it
    is missing, corrupt or holds tensors of other names or shapes."""
    path = Path(path)
    state = _load_tensors(path, str(device))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise CheckpointError(f"{path} does not fit the model: {detail[:300]}") from None


# -- trainer state as JSON + tensors --------------------------------------------------------------------------

def pack(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """JSON-able form of ``obj`` (dicts, lists, tuples, numbers, strings, tensors, numpy arrays); tensors go into
    ``tensors`` under generated names. :func:`unpack` inverts it exactly."""
    if isinstance(obj, torch.Tensor):
        name = f"{prefix}{len(tensors)}"
        tensors[name] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, tensors, prefix) for v in obj]}
    if isinstance(obj, list):
        return [pack(v, tensors, prefix) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: pack(v, tensors, prefix) for k, v in obj.items()}
        return {"__items__": [[pack(k, tensors, prefix), pack(v, tensors, prefix)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def unpack(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`pack` (plain data only: nothing is imported or called)."""
    if isinstance(data, list):
        return [unpack(v, tensors) for v in data]
    if isinstance(data, dict):
        if "__tensor__" in data:
            return tensors[data["__tensor__"]]
        if "__ndarray__" in data:
            return np.asarray(data["__ndarray__"], dtype=np.dtype(data["dtype"]))
        if "__tuple__" in data:
            return tuple(unpack(v, tensors) for v in data["__tuple__"])
        if "__items__" in data:
            return {_hashable(unpack(k, tensors)): unpack(v, tensors) for k, v in data["__items__"]}
        return {k: unpack(v, tensors) for k, v in data.items()}
    return data


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- checkpoints ----------------------------------------------------------------------------------------------

def save_checkpoint(run_dir: str | Path, epoch: int, model: nn.Module, trainer_state: dict, keep: int = 2) -> Path:
    """Write checkpoint ``epoch`` (number of finished epochs), point ``checkpoints/last.json`` at it and keep the
    newest ``keep`` checkpoints."""
    root = Path(run_dir) / "checkpoints"
    name = f"epoch-{epoch:04d}"
    folder = root / name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise CheckpointError(f"{folder} exists and is not a checkpoint folder")
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / "model.safetensors", model, {"epoch": epoch})
    tensors: dict[str, torch.Tensor] = {}
    meta = pack(trainer_state, tensors)
    atomic_write(folder / "trainer.safetensors", lambda tmp: save_file(tensors, tmp))
    files = {f: _sha256(folder / f) for f in ("model.safetensors", "trainer.safetensors")}
    write_json(folder / "state.json", {"format": STATE_FORMAT, "epoch": epoch, "files": files, "trainer": meta})
    write_json(root / "last.json", {"epoch": epoch, "dir": name})
    prune_checkpoints(run_dir, keep=keep)
    return folder


def _epoch_of(name: str) -> int | None:
    match = CHECKPOINT_DIR.match(name)
    return int(match.group(1)) if match else None


def checkpoint_folders(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(epoch, folder)`` of every folder named ``epoch-NNNN`` directly in ``checkpoints/`` (no symlinks), newest
    first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        epoch = _epoch_of(p.name)
        if epoch is not None and p.is_dir() and not p.is_symlink():
            found.append((epoch, p))
    return sorted(found, reverse=True)


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    """``(epoch, folder)`` named by ``checkpoints/last.json``, or None when there is no valid pointer.

    The pointer's ``dir`` must be ``epoch-NNNN`` (matching its ``epoch``) and an existing folder inside
    ``checkpoints/``; anything else (``../elsewhere``, an absolute path, a symlink) is ignored with a warning."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "last.json"
    if not pointer.is_file():
        return None
    try:
        info = json.loads(pointer.read_text(encoding="utf-8"))
        name, epoch = info["dir"], info["epoch"]
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError):
        _logger.warning("ignoring %s: not a checkpoint pointer", pointer)
        return None
    if not isinstance(name, str) or _epoch_of(name) is None or _epoch_of(name) != epoch:
        _logger.warning("ignoring %s: dir %r is not epoch-NNNN of epoch %r", pointer, name, epoch)
        return None
    folder = root / name
    if folder.is_symlink() or not folder.is_dir() or folder.resolve().parent != root.resolve():
        _logger.warning("ignoring %s: %s is not a checkpoint folder inside %s", pointer, name, root)
        return None
    return int(epoch), folder


def read_checkpoint(folder: str | Path, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """``(model tensors, trainer state)`` of a checkpoint folder, after checking both files against the hashes in
    ``state.json``. :class:`CheckpointError` (naming the bad file) when anything is missing or altered."""
    folder = Path(folder)
    state_path = folder / "state.json"
    if not state_path.is_file():
        if (folder / "trainer.pt").exists():
            raise CheckpointError(f"{folder / 'trainer.pt'} is an old pickle checkpoint, which dendrix no longer "
                                  "loads (unpickling can run code); start the run again")
        raise CheckpointError(f"{state_path} is missing (checkpoint incomplete)")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        files, meta = state["files"], state["trainer"]
        if state.get("format") != STATE_FORMAT or not isinstance(files, dict):
            raise ValueError("unknown format")
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{state_path} is corrupt ({type(err).__name__})") from None
    for name in ("model.safetensors", "trainer.safetensors"):
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing")
        if _sha256(path) != files.get(name):
            raise CheckpointError(f"{path} is corrupt or truncated (its SHA-256 does not match state.json)")
    weights = _load_tensors(folder / "model.safetensors", device)
    tensors = _load_tensors(folder / "trainer.safetensors")
    try:
        trainer_state = unpack(meta, tensors)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{state_path} does not match trainer.safetensors ({err})") from None
    return weights, trainer_state


def intact_checkpoint(run_dir: str | Path, device: str = "cpu", warn: Callable[[str], None] | None = None
                      ) -> tuple[int, Path, dict[str, torch.Tensor], dict] | None:
    """The newest checkpoint that reads back intact: ``(epoch, folder, model tensors, trainer state)``, or None.

    Newer folders that are corrupt or incomplete are skipped with one ``warn`` line each (default: a logging
    warning) naming the bad file."""
    warn = warn or _logger.warning
    latest_checkpoint(run_dir)  # validates the pointer (and warns about a bad one)
    for epoch, folder in checkpoint_folders(run_dir):
        try:
            weights, state = read_checkpoint(folder, device)
        except CheckpointError as err:
            warn(f"skipping checkpoint epoch {epoch}: {err}")
            continue
        return epoch, folder, weights, state
    return None


def prune_checkpoints(run_dir: str | Path, keep: int = 2) -> None:
    """Delete all but the newest ``keep`` checkpoint folders (never the one ``last.json`` points to)."""
    latest = latest_checkpoint(run_dir)
    protected = {latest[1].name} if latest else set()
    folders = checkpoint_folders(run_dir)
    for _, old in folders[max(keep, 1):]:
        if old.name not in protected:
            shutil.rmtree(old, ignore_errors=True)
