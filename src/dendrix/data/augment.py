"""Augmentation of time-first spike batches for training: time shift, channel jitter, spike drop and insertion,
mixup. Applied to training batches only (``data.augment`` in a config); every draw comes from a generator seeded
by ``(seed, epoch, batch)``, so an augmented run is reproducible and a resumed run sees the same batches.

```python
aug = SpikeAugment(time_shift=5, channel_jitter=2, drop=0.1, insert=0.001, mixup=0.2, num_classes=10)
x_aug, y_aug = aug(x, y, seed=0, epoch=3, batch=17)   # x [T, B, C] (or [T, B, C, H, W]); y [B] or [B, classes]
```

* ``time_shift`` S: each sample moves by an integer in [-S, S] steps (zeros fill the gap; nothing wraps around).
* ``channel_jitter`` J: each sample's channels move by an integer in [-J, J] (zeros fill), like a small shift of
  the cochlear frequency axis. Only for ``[T, B, C]`` data (not images or event frames).
* ``drop`` p: each input event (non-zero entry) is removed with probability p.
* ``insert`` q: each empty entry receives one event with probability q (binary data stays binary).
* ``mixup`` α: a batch is mixed with a shuffled copy of itself with λ ~ Beta(α, α); the targets become
  ``λ·onehot(y) + (1 − λ)·onehot(y[perm])`` (``[B, classes]`` probabilities). Spike inputs are mixed by a
  Bernoulli mask (each entry from the first sample with probability λ, else from the second) so they stay
  spikes; analog inputs are mixed linearly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import DatasetError

__all__ = ["AUGMENT_OPTIONS", "SpikeAugment", "check_augment"]

# option -> (type, default, allowed range as text)
AUGMENT_OPTIONS: dict[str, tuple[type, Any, str]] = {
    "time_shift": (int, 0, "an integer >= 0 (steps)"),
    "channel_jitter": (int, 0, "an integer >= 0 (channels)"),
    "drop": (float, 0.0, "a probability in [0, 1)"),
    "insert": (float, 0.0, "a probability in [0, 1)"),
    "mixup": (float, 0.0, "a number >= 0 (Beta(alpha, alpha); 0 disables)"),
}


def check_augment(options: dict | None) -> dict:
    """``options`` (the config's ``data.augment``) with defaults filled in, or a :class:`DatasetError` naming the
    bad key or value."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise DatasetError(f"data.augment must be a mapping of option -> value, got {options!r}")
    unknown = sorted(set(options) - set(AUGMENT_OPTIONS))
    if unknown:
        raise DatasetError(f"data.augment has no option {unknown[0]!r}; options: {', '.join(AUGMENT_OPTIONS)}")
    out = {}
    for key, (kind, default, allowed) in AUGMENT_OPTIONS.items():
        value = options.get(key, default)
        ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int)
        if ok and kind is int:
            ok = value >= 0
        elif ok and key in ("drop", "insert"):
            ok = 0.0 <= value < 1.0
        elif ok:
            ok = value >= 0.0
        if not ok:
            raise DatasetError(f"data.augment.{key} must be {allowed}, got {value!r}")
        out[key] = kind(value)
    return out


def _shift(x: Tensor, shifts: Tensor, dim: int) -> Tensor:
    """Move sample ``b`` of ``x [T, B, ...]`` by ``shifts[b]`` along ``dim`` (0 = time, 2 = channels), zero fill."""
    size = x.shape[dim]
    src = torch.arange(size, device=x.device).unsqueeze(1) - shifts.unsqueeze(0)  # [size, B]: index read from
    valid = (src >= 0) & (src < size)
    src = src.clamp(0, size - 1)
    if dim == 0:
        index = src.view(size, -1, *([1] * (x.dim() - 2))).expand_as(x)
        mask = valid.view(size, -1, *([1] * (x.dim() - 2)))
        return torch.gather(x, 0, index) * mask
    # channels of [T, B, C]: index [T, B, C] with index[t, b, c] = src[c, b]
    index = src.t().unsqueeze(0).expand_as(x)
    return torch.gather(x, 2, index) * valid.t().unsqueeze(0)


class SpikeAugment:
    """Training-batch augmentation (see the module docstring). ``num_classes`` is needed for mixup targets.
    ``spikes``: True for event data (drop/insert/mixup keep events integer), False for analog inputs."""

    def __init__(self, time_shift: int = 0, channel_jitter: int = 0, drop: float = 0.0, insert: float = 0.0,
                 mixup: float = 0.0, num_classes: int | None = None, spikes: bool = True):
        opts = check_augment(dict(time_shift=time_shift, channel_jitter=channel_jitter, drop=drop, insert=insert,
                                  mixup=mixup))
        self.time_shift, self.channel_jitter = opts["time_shift"], opts["channel_jitter"]
        self.drop, self.insert, self.mixup = opts["drop"], opts["insert"], opts["mixup"]
        if self.mixup > 0 and (num_classes is None or int(num_classes) < 2):
            raise DatasetError(f"data.augment.mixup needs the number of classes (>= 2), got {num_classes!r}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.spikes = bool(spikes)

    @classmethod
    def from_config(cls, options: dict | None, info) -> "SpikeAugment | None":
        """The augmentation of a config's ``data.augment`` for a data set described by ``info``; None when off."""
        opts = check_augment(options)
        if not any(opts.values()):
            return None
        return cls(**opts, num_classes=getattr(info, "num_classes", None),
                   spikes=getattr(info, "input_kind", "spikes") == "spikes")

    @property
    def active(self) -> bool:
        return bool(self.time_shift or self.channel_jitter or self.drop or self.insert or self.mixup)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in AUGMENT_OPTIONS}

    def __repr__(self) -> str:
        return f"SpikeAugment({', '.join(f'{k}={v}' for k, v in self.to_dict().items())})"

    def __call__(self, x: Tensor, y: Tensor, *, seed: int = 0, epoch: int = 0, batch: int = 0
                 ) -> tuple[Tensor, Tensor]:
        """Augmented copies of ``x [T, B, ...]`` float and ``y [B]`` int64 (``[B, classes]`` float with mixup)."""
        if x.dim() < 3:
            raise ValueError(f"augmentation needs time-first batches [T, B, ...], got shape {tuple(x.shape)}")
        if self.channel_jitter and x.dim() != 3:
            raise DatasetError(f"data.augment.channel_jitter works on [T, B, C] sequences; this data set gives "
                               f"batches of shape {tuple(x.shape)} (set channel_jitter: 0)")
        # mixed so that the streams differ from torch.manual_seed(small integer), which a caller may use itself
        key = ((int(seed) * 1_000_003 + int(epoch) * 10_007 + int(batch)) * 0x9E3779B1 + 0xA06A06) % (2**62)
        gen = torch.Generator(device=x.device)
        gen.manual_seed(key)
        batch_size = x.shape[1]
        if self.time_shift:
            s = torch.randint(-self.time_shift, self.time_shift + 1, (batch_size,), generator=gen, device=x.device)
            x = _shift(x, s, 0)
        if self.channel_jitter:
            s = torch.randint(-self.channel_jitter, self.channel_jitter + 1, (batch_size,), generator=gen,
                              device=x.device)
            x = _shift(x, s, 2)
        if self.drop:
            x = x * (torch.rand(x.shape, generator=gen, device=x.device) >= self.drop)
        if self.insert:
            new = (torch.rand(x.shape, generator=gen, device=x.device) < self.insert) & (x == 0)
            x = x + new.to(x.dtype)
        if self.mixup:
            x, y = self._mixup(x, y, gen, key)
        return x, y

    def _mixup(self, x: Tensor, y: Tensor, gen: torch.Generator, key: int) -> tuple[Tensor, Tensor]:
        # lambda from numpy's Beta sampler, seeded by the same key (torch's Beta takes no generator)
        lam = float(np.random.default_rng([key, 0x3141]).beta(self.mixup, self.mixup))
        perm = torch.randperm(x.shape[1], generator=gen, device=x.device)
        if self.spikes:
            take_first = torch.rand(x.shape, generator=gen, device=x.device) < lam
            x = torch.where(take_first, x, x[:, perm])
        else:
            x = lam * x + (1.0 - lam) * x[:, perm]
        classes = self.num_classes
        target = y if y.dim() == 2 else torch.nn.functional.one_hot(y, classes).to(x.dtype)
        return x, lam * target + (1.0 - lam) * target[perm]
