"""Readouts: turn the per-step outputs of a non-spiking linear layer ``[T, B, classes]`` into logits ``[B, classes]``.

* ``"mean"``: logits = (1/T) Σ_t o[t] — the time average of the output current (equivalently a linear map of the
  firing rates). Trained with cross-entropy on these logits.
* ``"ce_sum"``: the loss is the cross-entropy of every step's output, averaged over steps,
  L = (1/T) Σ_t CE(o[t], y) (the sum over steps divided by the constant T, so learning rates stay comparable);
  logits for prediction are the time average as in ``"mean"``.
* ``"max"``: logits = max_t o[t] (the output that peaks highest wins; common for speech such as SHD).

``"ce_sum"`` needs the per-step outputs during training, so models that use it set ``per_step_loss = True`` and
return ``[T, B, classes]`` when called with ``per_step=True``; the trainer then applies :func:`per_step_loss`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..validation import check_choice

__all__ = ["READOUTS", "apply_readout", "per_step_loss"]

READOUTS = ("mean", "ce_sum", "max")


def apply_readout(out: Tensor, readout: str) -> Tensor:
    """``out`` [T, B, classes] -> logits [B, classes]."""
    check_choice("readout", readout, READOUTS)
    if readout == "max":
        return out.amax(dim=0)
    return out.mean(dim=0)


def per_step_loss(out: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of every step's output ``out`` [T, B, classes] against ``target`` [B] (class indices) or
    [B, classes] (probabilities, e.g. mixup targets), averaged over steps."""
    steps, batch = out.shape[0], out.shape[1]
    repeated = target.repeat(steps, 1) if target.dim() == 2 else target.repeat(steps)
    return F.cross_entropy(out.reshape(steps * batch, -1), repeated, label_smoothing=label_smoothing)

