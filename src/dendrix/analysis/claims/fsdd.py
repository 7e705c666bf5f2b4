"""Short, seeded trainings of the spiking MLP on the embedded spiking FSDD, for the claims that train.

The model is the demo's (``SpikingMLP`` 64-hidden-10 with the kind's registry defaults, mean readout, weight
gain 3, AdamW, cosine schedule); only what a claim is about is changed through ``neuron`` (constructor keywords
over the registry defaults). The loop is deliberately plain (no checkpoints, no validation selection: the last
epoch is evaluated) so that five seeds of several kinds fit a few minutes on a loaded CPU.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data.fsdd import fsdd_dataset
from ...models import SpikingMLP, neuron_kwargs
from ...validation import check_int, check_positive

__all__ = ["FSDDRun", "fsdd_arrays", "rebin", "train_fsdd_mlp", "accuracy"]

log = logging.getLogger(__name__)


def fsdd_arrays(split: str, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(x [T, N, 64] float32, y [N])`` of the embedded FSDD: ``"train"`` is the whole official training part,
    ``"test"`` the official test split."""
    ds = fsdd_dataset({"train": "train_full", "test": "test"}[split], seed=seed)
    return ds.data.float().transpose(0, 1).contiguous(), torch.as_tensor(ds.labels)


def rebin(x: Tensor, time_steps: int) -> Tensor:
    """``x [T, B, C]`` spikes pooled into ``time_steps`` equal bins (a bin spikes if any step in it spikes):
    the same recording seen with fewer, coarser time steps."""
    T = x.shape[0]
    time_steps = check_int("time_steps", time_steps, minimum=1)
    if time_steps > T:
        raise ValueError(f"time_steps must be <= the sequence length {T}, got {time_steps}")
    width = math.ceil(T / time_steps)
    pad = width * time_steps - T
    if pad:
        x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])], 0)
    return x.reshape(time_steps, width, *x.shape[1:]).amax(1)


@dataclass
class FSDDRun:
    kind: str
    seed: int
    epochs: int
    test_accuracy: float
    model: nn.Module


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 300) -> float:
    """Fraction of ``y`` that ``model`` (in eval mode, restored afterwards) classifies right on ``x [T, N, C]``."""
    was = model.training
    model.eval()
    correct = sum(int((model(x[:, i:i + batch]).argmax(-1) == y[i:i + batch]).sum()) for i in range(0, len(y), batch))
    model.train(was)
    return correct / len(y)


def train_fsdd_mlp(kind: str, seed: int, *, epochs: int = 3, hidden: int = 128, lr: float = 0.02,
                   batch_size: int = 32, neuron: dict | None = None, time_steps: int | None = None,
                   data: tuple[Tensor, Tensor, Tensor, Tensor] | None = None, weight_gain: float = 3.0,
                   max_train: int | None = None) -> FSDDRun:
    """Train the demo MLP of ``kind`` for ``epochs`` on the FSDD training part and test it on the official test
    split. ``time_steps`` rebins the recordings (:func:`rebin`); ``data`` passes ``(x_train, y_train, x_test,
    y_test)`` already loaded (time-first); ``max_train`` uses only the first training samples (tests)."""
    check_int("epochs", epochs, minimum=1)
    check_positive("lr", lr)
    xtr, ytr, xte, yte = data if data is not None else (*fsdd_arrays("train"), *fsdd_arrays("test"))
    if max_train is not None:
        xtr, ytr = xtr[:, :max_train], ytr[:max_train]
    if time_steps is not None:
        xtr, xte = rebin(xtr, time_steps), rebin(xte, time_steps)
    torch.manual_seed(seed)
    model = SpikingMLP(xtr.shape[-1], 10, hidden=(hidden,), kind=kind, neuron_kw=neuron_kwargs(kind, neuron),
                       time_steps=xtr.shape[0], weight_gain=weight_gain)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(ytr) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(ytr), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[:, idx]), ytr[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        log.debug("%s seed %d epoch %d loss %.3f", kind, seed, epoch + 1, float(loss.detach()))
    return FSDDRun(kind, seed, epochs, accuracy(model, xte, yte), model)
