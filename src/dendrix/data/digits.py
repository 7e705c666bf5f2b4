"""scikit-learn's bundled 8×8 handwritten digits (1,797 real images, UCI) as sequences; offline.

``mode="rows"``: one image row per step (T=8, C=8); ``mode="pixel"``: one pixel per step (T=64, C=1). Pixel
values 0..16 are scaled to [0, 1] (``input_kind="analog"``). The set has no official split: the test part is a
fixed stratified 20 % (independent of ``seed``); ``val`` is a stratified ``val_fraction`` of the rest chosen by
``seed``.
"""

from __future__ import annotations

import numpy as np
import torch

from .._optional import require
from .base import ArrayDataset, DatasetError, DatasetInfo, check_split, select_split, stratified_holdout

__all__ = ["digits_dataset", "digits_images_dataset"]

_TEST_FRACTION = 0.2
_TEST_SEED = 20260  # fixes the test part once and for all


def digits_dataset(split: str = "train", root=None, seed: int = 0, mode: str = "rows",
                   val_fraction: float = 0.1) -> ArrayDataset:
    """Digits as sequences (see the module docstring)."""
    load_digits = require("sklearn.datasets", needed_by="dendrix.data.digits").load_digits

    check_split(split)
    if mode not in ("rows", "pixel"):
        raise DatasetError(f"mode must be 'rows' or 'pixel', got {mode!r}")
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0          # [N, 8, 8]
    labels = bunch.target.astype(np.int64)
    train_full, test = stratified_holdout(labels, _TEST_FRACTION, _TEST_SEED)
    sel = select_split(labels, train_full, test, split, seed, val_fraction)
    seq = images[sel] if mode == "rows" else images[sel].reshape(-1, 64, 1)
    info = DatasetInfo("digits", num_inputs=int(seq.shape[2]), num_classes=10, time_steps=int(seq.shape[1]),
                       input_kind="analog")
    return ArrayDataset(torch.from_numpy(np.ascontiguousarray(seq)), labels[sel], info)


def digits_images_dataset(split: str = "train", root=None, seed: int = 0, size: int = 8,
                          interpolation: str = "nearest", encoding: str = "direct", time_steps: int = 4,
                          encoder_seed: int = 0, val_fraction: float = 0.1, subset: int | None = None):
    """Digits as images ``x [T, 1, size, size]`` for convolutional networks (``[T, B, 1, size, size]`` batched).

    Same images, scaling and splits as :func:`digits_dataset` (fixed stratified 20 % test part; ``val`` a
    stratified ``val_fraction`` of the rest chosen by ``seed``). ``size``: 8 (native) or larger, upsampled with
    ``interpolation`` ``"nearest"`` or ``"bilinear"``. ``encoding``: ``"direct"`` (the image at every one of the
    ``time_steps``) or ``"rate"`` (Bernoulli spikes drawn once from ``encoder_seed``); see
    :mod:`dendrix.data.vision`.
    """
    from sklearn.datasets import load_digits

    from .vision import StaticImageDataset, resize_images

    check_split(split)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise DatasetError(f"size must be an integer >= 8 (the images are 8x8), got {size!r}")
    bunch = load_digits()
    labels = bunch.target.astype(np.int64)
    train_full, test = stratified_holdout(labels, _TEST_FRACTION, _TEST_SEED)
    sel = select_split(labels, train_full, test, split, seed, val_fraction)
    if subset is not None:  # the first `subset` images of the split (quick checks, tests)
        if isinstance(subset, bool) or not isinstance(subset, int) or subset < 1:
            raise DatasetError(f"subset must be null or an integer >= 1, got {subset!r}")
        sel = sel[:subset]
    images = torch.from_numpy(bunch.images[sel].astype(np.float32) / 16.0).unsqueeze(1)   # [N, 1, 8, 8]
    images = resize_images(images, size, interpolation).clamp(0.0, 1.0)
    return StaticImageDataset(images, labels[sel], "digits_images", 10, time_steps, encoding, encoder_seed)
