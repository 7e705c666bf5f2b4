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

Your own data: ``register_dataset("mine", factory)`` with ``factory(split, root=None, seed=0, **options)``
returning any Dataset of ``(x [T, C...], label)`` (or a tonic data set through :func:`from_tonic`); the name then
works in ``get_dataset``, configs (``data.name: mine``) and the CLI (a config's ``plugins:`` imports the module
that registers it). ``make_loader(..., num_workers=4, pin_memory=True)`` gives a real ``DataLoader``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from .augment import SpikeAugment
from .base import (SPLITS, ArrayDataset, DatasetError, DatasetInfo, SequenceDataset, SequenceLoader,
                   TimeFirstDataLoader, data_root, make_loader)
from .user import UserDataset, from_tonic
from ..validation import check_registration

__all__ = ["get_dataset", "make_loader", "list_datasets", "dataset_options", "DatasetInfo", "DatasetError",
           "SequenceDataset", "ArrayDataset", "SequenceLoader", "TimeFirstDataLoader", "SPLITS", "data_root",
           "register_dataset", "unregister_dataset", "dataset_factory", "UserDataset", "from_tonic", "SpikeAugment"]

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


# name -> (factory, description, num_classes, input_kind): data sets registered by users (register_dataset)
_USER_DATASETS: dict[str, tuple[Callable, str, int | None, str | None]] = {}


def register_dataset(name: str, factory: Callable, *, description: str = "", num_classes: int | None = None,
                     input_kind: str | None = None, overwrite: bool = False) -> None:
    """Make ``factory`` available as data set ``name`` (in :func:`get_dataset`, configs and the CLI).

    Args:
        name: letters, digits, ``_ . -``, starting with a letter; not a built-in name.
        factory: called as ``factory(split=..., root=..., seed=..., **options)`` (``root``/``seed`` only if it
            takes them; its other keyword parameters are the data set's options, ``data.options`` in a config);
            returns any Dataset of ``(x [T, C...], label)``. One without a :class:`DatasetInfo` ``.info`` is
            wrapped in :class:`UserDataset`, which reads the shape from the first item.
        num_classes: needed when the data set does not say (no ``num_classes`` or ``classes`` attribute).
        input_kind: ``"spikes"`` or ``"analog"``; default: read from the first item (non-negative integers =
            spikes).
        overwrite: replace an earlier registration of ``name``.
    """
    check_registration("register_dataset", name, "data set", builtin=_DATASETS, registered=_USER_DATASETS,
                       overwrite=overwrite, error=DatasetError)
    if not callable(factory):
        raise DatasetError(f"register_dataset: factory must be callable, got {type(factory).__name__}")
    if "split" not in inspect.signature(factory).parameters and not _takes_kwargs(factory):
        raise DatasetError(f"register_dataset: factory {getattr(factory, '__name__', factory)!r} must take a "
                           f"'split' keyword (train | val | test | train_full)")
    if input_kind not in (None, "spikes", "analog"):
        raise DatasetError(f"register_dataset: input_kind must be None, 'spikes' or 'analog', got {input_kind!r}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise DatasetError(f"register_dataset: num_classes must be a positive integer, got {num_classes!r}")
    _USER_DATASETS[name] = (factory, description or f"user data set ({getattr(factory, '__module__', '?')})",
                            num_classes, input_kind)


def unregister_dataset(name: str) -> None:
    """Remove a data set added by :func:`register_dataset` (no error if it is not registered)."""
    _USER_DATASETS.pop(name, None)


def _takes_kwargs(fn: Callable) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def _loader(name: str) -> Callable:
    if name in _USER_DATASETS:
        return _USER_DATASETS[name][0]
    if name not in _DATASETS:
        raise DatasetError(f"unknown data set {name!r}; available: {', '.join(list(_DATASETS) + list(_USER_DATASETS))}")
    module, func, _ = _DATASETS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), func)


def dataset_factory(name: str) -> Callable:
    """The function that builds data set ``name`` (a built-in loader or a registered factory)."""
    return _loader(name)


def list_datasets() -> dict[str, str]:
    """Names of the data sets (built-in, then registered ones) and a one-line description of each."""
    out = {name: desc for name, (_, _, desc) in _DATASETS.items()}
    out.update({name: entry[1] for name, entry in _USER_DATASETS.items()})
    return out


def dataset_options(name: str) -> dict[str, object]:
    """The options of data set ``name`` (beyond split/root/seed) and their defaults."""
    sig = inspect.signature(_loader(name))
    return {k: p.default for k, p in sig.parameters.items() if k not in ("split", "root", "seed")
            and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}


def get_dataset(name: str = "fsdd", split: str = "train", root=None, seed: int = 0, **options) -> SequenceDataset:
    """Build data set ``name``'s ``split`` as a torch Dataset of ``(x [T, C] float32, label int)`` (``x [T, C, H, W]``
    for image and event-camera data sets) with ``.info``.

    Raises :class:`DatasetError` (a ``ValueError`` with a one-line message) for an unknown name, split or
    option, or for missing/corrupt files (saying where to put them or how to fetch them).
    """
    fn = _loader(name)
    allowed = dataset_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown and not _takes_kwargs(fn):
        raise DatasetError(f"data set {name!r} has no option {', '.join(map(repr, unknown))}; "
                           f"options: {', '.join(allowed) or 'none'}")
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if name not in _USER_DATASETS:
        return fn(split=split, root=root, seed=seed, **options)
    params = inspect.signature(fn).parameters
    extra = {k: v for k, v in (("root", root), ("seed", seed)) if k in params or _takes_kwargs(fn)}
    _, _, num_classes, input_kind = _USER_DATASETS[name]
    from .user import as_dendrix_dataset

    return as_dendrix_dataset(fn(split=split, **extra, **options), name, num_classes, input_kind)
