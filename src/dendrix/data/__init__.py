"""Data sets for dendrix: the embedded spiking FSDD (default), SHD/SSC, sequential images, digits and synthetic
tasks with known answers.

```python
from dendrix.data import get_dataset, make_loader
ds = get_dataset("fsdd", split="train")          # items (x [T, C] float32, label int); ds.info: DatasetInfo
for x, y in make_loader(ds, 64, shuffle=True):    # x [T, B, C] float32 (time-first), y [B] int64
    ...
```
Image and event-camera data sets (``digits_images``, ``nmnist``, ``dvsgesture``, ``cifar10dvs``) give items
``x [T, C, H, W]`` and batches ``[T, B, C, H, W]``; their ``info.input_shape`` is ``(C, H, W)``.
Every loader accepts ``split`` in ``"train" | "val" | "test" | "train_full"`` (train + val), ``root`` (folder of
downloaded files; default ``$DENDRIX_DATA`` or ``~/.cache/dendrix``) and ``seed`` (chooses the validation part;
the test part never depends on it), plus its own options (see :func:`list_datasets`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from .base import (SPLITS, ArrayDataset, DatasetError, DatasetInfo, SequenceDataset, SequenceLoader, data_root,
                   make_loader)

__all__ = ["get_dataset", "make_loader", "list_datasets", "dataset_options", "DatasetInfo", "DatasetError",
           "SequenceDataset", "ArrayDataset", "SequenceLoader", "SPLITS", "data_root"]

# name -> (module, function, one-line description); modules are imported on first use
_DATASETS: dict[str, tuple[str, str, str]] = {
    "fsdd": ("fsdd", "fsdd_dataset", "spiking Free Spoken Digit Dataset, embedded (64 channels x 100 steps of 10 ms)"),
    "shd": ("shd", "shd_dataset", "Spiking Heidelberg Digits (HDF5, 700 channels, 20 classes)"),
    "ssc": ("shd", "ssc_dataset", "Spiking Speech Commands (HDF5, 700 channels, 35 classes)"),
    "smnist": ("images", "smnist_dataset", "sequential MNIST from the idx files (pixel T=784 or column T=28)"),
    "psmnist": ("images", "psmnist_dataset", "permuted sequential MNIST (fixed-seed pixel permutation)"),
    "scifar10": ("images", "scifar10_dataset", "sequential CIFAR-10 from the python batches (pixel T=1024 or column T=32)"),
    "scifar100": ("images", "scifar100_dataset", "sequential CIFAR-100 from the python batches"),
    "cifar10": ("images", "cifar10_dataset", "CIFAR-10 as images [T, 3, 32, 32], direct encoded, crop+flip"),
    "cifar100": ("images", "cifar100_dataset", "CIFAR-100 as images [T, 3, 32, 32], direct encoded, crop+flip"),
    "digits": ("digits", "digits_dataset", "scikit-learn 8x8 digits as sequences (rows T=8 or pixels T=64)"),
    "digits_images": ("digits", "digits_images_dataset",
                      "scikit-learn digits as images [T, 1, 8, 8] (or upsampled), direct or rate encoded"),
    "nmnist": ("neuromorphic", "nmnist_dataset", "N-MNIST event camera (.bin files) as frames [T, 2, 34, 34]"),
    "dvsgesture": ("neuromorphic", "dvsgesture_dataset",
                   "DVS128 Gesture (AEDAT 3.1 + label CSVs) as frames [T, 2, 128, 128], 11 classes"),
    "cifar10dvs": ("neuromorphic", "cifar10dvs_dataset", "CIFAR10-DVS (AEDAT 2.0) as frames [T, 2, 128, 128]"),
    "xor": ("synthetic", "xor_dataset", "synthetic: XOR of the activity of two spike trains"),
    "correlation": ("synthetic", "correlation_dataset", "synthetic: equal rates, independent vs correlated trains"),
    "delayed_recall": ("synthetic", "delayed_recall_dataset", "synthetic: recall a cue after a delay (memory)"),
    "frequency": ("synthetic", "frequency_dataset", "synthetic: equal-rate trains modulated at different frequencies"),
}


def _loader(name: str) -> Callable:
    if name not in _DATASETS:
        raise DatasetError(f"unknown data set {name!r}; available: {', '.join(_DATASETS)}")
    module, func, _ = _DATASETS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), func)


def list_datasets() -> dict[str, str]:
    """Names of the data sets and a one-line description of each."""
    return {name: desc for name, (_, _, desc) in _DATASETS.items()}


def dataset_options(name: str) -> dict[str, object]:
    """The options of data set ``name`` (beyond split/root/seed) and their defaults."""
    sig = inspect.signature(_loader(name))
    return {k: p.default for k, p in sig.parameters.items() if k not in ("split", "root", "seed")}


def get_dataset(name: str = "fsdd", split: str = "train", root=None, seed: int = 0, **options) -> SequenceDataset:
    """Build data set ``name``'s ``split`` as a torch Dataset of ``(x [T, C] float32, label int)`` (``x [T, C, H, W]``
    for image and event-camera data sets) with ``.info``.

    Raises :class:`DatasetError` (a ``ValueError`` with a one-line message) for an unknown name, split or
    option, or for missing/corrupt files (saying where to put them or how to fetch them).
    """
    fn = _loader(name)
    allowed = dataset_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DatasetError(f"data set {name!r} has no option {', '.join(map(repr, unknown))}; "
                           f"options: {', '.join(allowed) or 'none'}")
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return fn(split=split, root=root, seed=seed, **options)
