"""Open a finished (or interrupted) run folder: ``run = load_run(run_dir, device)``.

``run.model`` is the trained model in eval mode (the best validation weights when the run selected on the
validation split, else the newest checkpoint), ``run.config`` the resolved config, ``run.info`` the data set
description, and ``run.loader(split, batch_size=None)`` yields time-first batches ``(x [T, B, C], y [B])``.

A folder that is not a run, or whose files are missing, corrupt or do not fit each other, raises
:class:`~dendrix.train.checkpoint.CheckpointError` with one line naming the file (nothing is unpickled).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import read_json_mapping
from ..models import build_model
from .batches import Batches, open_dataset
from .checkpoint import CheckpointError, intact_checkpoint, load_weights

__all__ = ["Run", "RunInfo", "load_run"]


@dataclass(frozen=True)
class RunInfo:
    """The data set description saved with a run (same fields as ``dendrix.data.DatasetInfo``)."""
    name: str
    num_inputs: int
    num_classes: int
    time_steps: int | None = None
    input_kind: str = "spikes"


@dataclass
class Run:
    run_dir: Path
    model: nn.Module
    config: dict
    info: Any
    device: torch.device
    weights: Path
    result: dict | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def dataset(self, split: str = "test"):
        """The run's data set for ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        if split not in self._cache:
            self._cache[split] = open_dataset(self.config["data"], split, seed=self.config.get("seed", 0))
        return self._cache[split]

    def loader(self, split: str = "test", batch_size: int | None = None) -> Batches:
        """Time-first batches of ``split`` on the run's device (iterate it: ``for x, y in run.loader("test")``)."""
        size = batch_size or self.config["data"].get("eval_batch_size", 256)
        return Batches(self.dataset(split), size, self.device, self.config["data"].get("in_memory", "auto"))


def _read_json(path: Path, what: str) -> dict:
    return read_json_mapping(path, CheckpointError, f"the {what} cannot be read")


def _info(run_dir: Path, config: dict):
    path = run_dir / "info.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a dendrix run folder (info.json missing)")
    data = _read_json(path, "data set description")
    known = {k: data[k] for k in ("name", "num_inputs", "num_classes", "time_steps", "input_kind") if k in data}
    try:
        from ..data import DatasetInfo

        return DatasetInfo(**{k: v for k, v in data.items()})
    except (ImportError, TypeError):
        try:
            return RunInfo(**known)
        except TypeError:
            raise CheckpointError(f"{path} lacks the fields name, num_inputs, num_classes") from None


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", weights: str = "best") -> Run:
    """Load a run folder. ``weights``: ``"best"`` (best validation epoch, falling back to the newest
    checkpoint) or ``"last"`` (the newest checkpoint)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a dendrix run folder (config.json missing)")
    if weights not in ("best", "last"):
        raise ValueError(f"weights must be 'best' or 'last', got {weights!r}")
    config = _read_json(cfg_path, "run config")
    from .config import import_plugins

    import_plugins(config.get("plugins"))  # user data sets / architectures the run was trained with
    info = _info(run_dir, config)
    device = torch.device(device)
    try:
        model = build_model(config["model"], info).to(device)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{cfg_path} does not describe a model that can be built "
                              f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    path = run_dir / "best.safetensors"
    if weights == "last" or not path.exists():
        found = intact_checkpoint(run_dir)
        if found is None:
            raise FileNotFoundError(f"{run_dir} has no trained weights yet (no best.safetensors or intact "
                                    "checkpoint)")
        path = found[1] / "model.safetensors"
    load_weights(path, model, device)
    model.eval()
    result_path = run_dir / "result.json"
    result = _read_json(result_path, "result") if result_path.exists() else None
    return Run(run_dir=run_dir, model=model, config=config, info=info, device=device, weights=path, result=result)
