"""Static images as time-first spike or analog sequences for convolutional networks.

:class:`StaticImageDataset` holds images ``[N, C, H, W]`` in [0, 1] and yields items ``(x [T, C, H, W], label)``
(``make_loader``: ``[T, B, C, H, W]``), encoded over ``T`` steps by

* ``encoding="direct"``: the image repeated at every step (analog input; the first layer encodes), or
* ``encoding="rate"``: Bernoulli spikes with probability equal to the pixel value, drawn once per data set from
  ``encoder_seed`` (every pass sees the same spikes, so evaluation is reproducible).

:func:`resize_images` upsamples by ``torch.nn.functional.interpolate`` (``"nearest"`` or ``"bilinear"``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DatasetError, DatasetInfo, SequenceDataset
from .encoders import direct_encode, rate_encode

__all__ = ["IMAGE_ENCODINGS", "INTERPOLATIONS", "resize_images", "crop_flip", "StaticImageDataset"]

IMAGE_ENCODINGS = ("direct", "rate")
INTERPOLATIONS = ("nearest", "bilinear")


def resize_images(images: Tensor, size: int, interpolation: str = "nearest") -> Tensor:
    """``[N, C, h, w]`` → ``[N, C, size, size]``; values stay in the input's range."""
    if interpolation not in INTERPOLATIONS:
        raise DatasetError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DatasetError(f"size must be an integer >= 1, got {size!r}")
    if tuple(images.shape[-2:]) == (size, size):
        return images.clone()
    if interpolation == "nearest":
        return F.interpolate(images, size=(size, size), mode="nearest")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def crop_flip(images: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Random crop of ``[N, C, H, W]`` after ``padding`` zero pixels on each side, and a horizontal flip with
    probability 1/2, independently per image (drawn from ``generator``)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, images.shape[1], h, w + 2 * padding)
    out = padded.gather(2, rows)
    cols = dx[:, None] + torch.arange(w)[None]
    cols = torch.where(flip[:, None], cols.flip(1), cols).view(n, 1, 1, w).expand(n, images.shape[1], h, w)
    return out.gather(3, cols)


class StaticImageDataset(SequenceDataset):
    """Images ``[N, C, H, W]`` (float in [0, 1]) encoded over ``time_steps`` (see the module docstring)."""

    def __init__(self, images: Tensor, labels: np.ndarray, name: str, num_classes: int, time_steps: int,
                 encoding: str = "direct", encoder_seed: int = 0, augment: bool = False):
        images = torch.as_tensor(images, dtype=torch.float32)
        if images.dim() != 4:
            raise DatasetError(f"{name}: images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if encoding not in IMAGE_ENCODINGS:
            raise DatasetError(f"encoding must be one of {list(IMAGE_ENCODINGS)}, got {encoding!r}")
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise DatasetError(f"time_steps must be an integer >= 1, got {time_steps!r}")
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.shape[0] != images.shape[0]:
            raise DatasetError(f"{name}: {images.shape[0]} images but {self.labels.shape[0]} labels")
        self._labels_t = torch.from_numpy(self.labels)
        self.images, self.encoding, self.time_steps = images.contiguous(), encoding, int(time_steps)
        if not isinstance(augment, bool):
            raise DatasetError(f"augment must be true or false, got {augment!r}")
        if augment and encoding != "direct":
            raise DatasetError("augment=True needs encoding='direct' (rate spikes are drawn once, before any crop)")
        # random crop (4 pixels of zero padding) and horizontal flip per batch, the CIFAR augmentation of the
        # papers; drawn from its own generator so that a run is reproducible from encoder_seed
        self.augment = augment
        self._augment_gen = torch.Generator().manual_seed(int(encoder_seed) + 1) if augment else None
        self.spikes: Tensor | None = None  # [N, T, C, H, W] uint8 for the rate code
        if encoding == "rate":
            gen = torch.Generator().manual_seed(int(encoder_seed))
            self.spikes = rate_encode(self.images, self.time_steps, generator=gen).to(torch.uint8).transpose(0, 1)
        c, h, w = (int(s) for s in images.shape[1:])
        self.info = DatasetInfo(name, num_inputs=c, num_classes=int(num_classes), time_steps=self.time_steps,
                                input_kind="analog" if encoding == "direct" else "spikes", input_shape=(c, h, w))

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if self.spikes is not None:
            x = self.spikes.index_select(0, idx).to(torch.float32)
        else:
            images = self.images.index_select(0, idx)
            if self.augment:
                images = crop_flip(images, self._augment_gen)
            x = direct_encode(images, self.time_steps).transpose(0, 1)
        return x.contiguous(), self._labels_t.index_select(0, idx)
