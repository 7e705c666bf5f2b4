"""Checks of the trainer: non-finite tensors, and what a resumed run may change in its config.

Resume rules (see docs/training.md): keys in :data:`RESUME_OPERATIONAL_KEYS` change how a run is carried out,
not what it computes, and are taken silently; :data:`RESUME_TUNABLE_KEYS` are optimisation settings applied
only with ``--allow-config-change``; any other change (model, data, seed, optimiser type, ...) is refused,
because the checkpoint cannot follow it.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from .runfolder import RunFolderError

__all__ = ["ResumeConfigError", "RESUME_OPERATIONAL_KEYS", "RESUME_TUNABLE_KEYS", "config_changes",
           "first_nonfinite", "jsonable"]


class ResumeConfigError(RunFolderError):
    """The config of a resumed run differs from the one its checkpoint was trained with."""


# Keys that change how a run is carried out, not what it computes: a resume takes them without asking.
RESUME_OPERATIONAL_KEYS = frozenset({
    "name", "device", "threads", "data.root", "data.in_memory", "data.eval_batch_size", "train.progress",
    "train.tensorboard", "train.keep_checkpoints", "train.nan_policy"})
# Optimisation settings a resume applies from the edited config with ``allow_config_change`` (the optimiser
# keeps its moments; the learning rates and the schedule follow the new values from the next step on).
RESUME_TUNABLE_KEYS = frozenset({
    "train.epochs", "train.lr", "train.neuron_lr", "train.weight_decay", "train.neuron_weight_decay",
    "train.momentum", "train.grad_clip", "train.label_smoothing", "train.min_lr_ratio", "train.warmup_epochs",
    "train.schedule"})


def _flatten(cfg: dict) -> dict[str, Any]:
    """Top-level keys and one level of the data/model/train sections as dotted keys."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and key in ("data", "model", "train"):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def config_changes(saved: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, current value)`` for every top-level or section key that differs
    (free-form mappings such as ``model.neuron`` compare as a whole)."""
    a, b = _flatten(jsonable(saved)), _flatten(jsonable(current))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def jsonable(data: Any) -> Any:
    """``data`` as plain JSON values (tuples become lists, other objects their str), for comparisons."""
    return json.loads(json.dumps(data, default=str))


def first_nonfinite(named: list[tuple[str, torch.Tensor | None]]) -> str | None:
    """Name of the first tensor in ``named`` holding a NaN/inf (one device sync for all of them), or None."""
    items = [(n, t) for n, t in named if t is not None and (t.is_floating_point() or t.is_complex())]
    if not items:
        return None
    flags = torch.stack([torch.isfinite(t.detach()).all() for _, t in items])
    if bool(flags.all()):
        return None
    return items[int((~flags).nonzero()[0, 0])][0]
