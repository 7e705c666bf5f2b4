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

__all__ = ["digits_dataset"]

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
