"""Sequential image tasks: S-MNIST, PS-MNIST (from the idx files) and S-CIFAR10/100 (from the python batches).

Modes: ``"pixel"`` feeds one pixel per step (MNIST T=784, C=1; CIFAR T=1024, C=3 colour values), ``"column"``
one image column per step (MNIST T=28, C=28; CIFAR T=32, C=96 = 3 colours × 32 rows). Values are scaled to
[0, 1] (``input_kind="analog"``). PS-MNIST applies one fixed pixel permutation drawn from ``permutation_seed``
before the sequence is formed. ``val`` is a stratified ``val_fraction`` of the official training set.

Expected files (in ``root``, ``root/<name>`` or the usual sub-folders; ``.gz`` accepted for MNIST):
MNIST ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``; CIFAR-10 ``cifar-10-batches-py/data_batch_1..5``, ``test_batch``;
CIFAR-100 ``cifar-100-python/train``, ``test``.
"""

from __future__ import annotations

import gzip
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .base import ArrayDataset, DatasetError, DatasetInfo, check_split, data_root, select_split

__all__ = ["read_idx", "load_mnist", "load_cifar", "image_sequences", "smnist_dataset", "psmnist_dataset",
           "scifar10_dataset", "scifar100_dataset", "cifar10_dataset", "cifar100_dataset"]

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # one public mirror of the idx files
CIFAR_URLS = {10: "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
              100: "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (the MNIST format; gzip-compressed if its name ends in ``.gz``)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DatasetError(f"cannot read idx file {str(path)!r}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{str(path)!r} is not an idx file (bad magic number)")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{str(path)!r}: truncated idx header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(f"{str(path)!r}: idx header says shape {shape} ({expected} bytes) but the file holds "
                           f"{len(raw) - header} bytes of data; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root: Path, folders: tuple[str, ...], name: str, gz: bool = True) -> Path | None:
    for folder in folders:
        for candidate in (name, name + ".gz") if gz else (name,):
            p = root / folder / candidate
            if p.is_file():
                return p
    return None


@lru_cache(maxsize=2)
def _load_mnist_cached(root: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    base = Path(root)
    folders = (".", "mnist", "MNIST", "MNIST/raw", "mnist/raw")
    out = {}
    for part, (img_name, lab_name) in MNIST_FILES.items():
        img_path, lab_path = _find(base, folders, img_name), _find(base, folders, lab_name)
        missing = [n for n, p in ((img_name, img_path), (lab_name, lab_path)) if p is None]
        if missing:
            raise DatasetError(f"MNIST file {missing[0]} (or .gz) not found in {str(base)!r} or its mnist/ subfolder; "
                               f"download the four idx files (e.g. from {MNIST_URL}) into {str(base / 'mnist')!r}")
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise DatasetError(f"{str(img_path)!r}: expected uint8 images [N, 28, 28], got {images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DatasetError(f"{str(lab_path)!r}: expected {images.shape[0]} labels, got shape {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DatasetError(f"{str(lab_path)!r}: MNIST labels must be 0..9")
        out[part] = (images, labels.astype(np.int64))
    return out


def load_mnist(root=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images uint8 [N, 28, 28], labels), "test": (...)}`` from the idx files under ``root``."""
    return _load_mnist_cached(str(data_root(root).resolve()))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of bytes, lists and numpy arrays) and refuses any other object,
    so a tampered file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _RestrictedUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as err:
        raise DatasetError(f"cannot read CIFAR batch {str(path)!r}: {err}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{str(path)!r}: expected a dict batch, got {type(batch).__name__}")
    batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    if b"data" not in batch or label_key not in batch:
        raise DatasetError(f"{str(path)!r}: batch lacks {label_key.decode()!r} or 'data'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise DatasetError(f"{str(path)!r}: expected data [N, 3072] and N labels, got {data.shape} and {labels.shape}")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels


@lru_cache(maxsize=2)
def _load_cifar_cached(root: str, classes: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    base = Path(root)
    if classes == 10:
        folder, parts, key = "cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)],
                                                     "test": ["test_batch"]}, b"labels"
    else:
        folder, parts, key = "cifar-100-python", {"train": ["train"], "test": ["test"]}, b"fine_labels"
    out = {}
    for part, names in parts.items():
        arrays = []
        for name in names:
            p = _find(base, (folder, f"cifar{classes}/{folder}", "."), name, gz=False)
            if p is None:
                raise DatasetError(f"CIFAR-{classes} batch {folder}/{name} not found under {str(base)!r}; download "
                                   f"{CIFAR_URLS[classes]} and extract it there")
            arrays.append(_read_cifar_batch(p, key))
        images = np.concatenate([a[0] for a in arrays])
        labels = np.concatenate([a[1] for a in arrays])
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise DatasetError(f"CIFAR-{classes} {part} labels must be in 0..{classes - 1}")
        out[part] = (images, labels)
    return out


def load_cifar(classes: int = 10, root=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images uint8 [N, 3, 32, 32], labels), "test": (...)}`` from the python batches."""
    if classes not in (10, 100):
        raise DatasetError(f"classes must be 10 or 100, got {classes!r}")
    return _load_cifar_cached(str(data_root(root).resolve()), classes)


def image_sequences(images: np.ndarray, mode: str, permutation: np.ndarray | None = None) -> torch.Tensor:
    """uint8 images ``[N, H, W]`` or ``[N, 3, H, W]`` → uint8 sequences ``[N, T, C]``.

    ``pixel``: raster order (row by row), ``C`` = colour channels; ``column``: one column per step, features =
    (colour, row). ``permutation`` (over the H·W pixel positions) is applied before either mode."""
    if images.ndim == 3:
        images = images[:, None]
    n, ch, h, w = images.shape
    flat = images.reshape(n, ch, h * w)
    if permutation is not None:
        flat = flat[:, :, permutation]
    if mode == "pixel":
        seq = flat.transpose(0, 2, 1)                                     # [N, H*W, ch]
    elif mode == "column":
        seq = flat.reshape(n, ch, h, w).transpose(0, 3, 1, 2).reshape(n, w, ch * h)  # [N, W, ch*H]
    else:
        raise DatasetError(f"mode must be 'pixel' or 'column', got {mode!r}")
    return torch.from_numpy(np.ascontiguousarray(seq))


class _ScaledDataset(ArrayDataset):
    """uint8 pixels kept in memory, scaled to [0, 1] float32 per batch."""

    def get_batch(self, indices):
        x, y = super().get_batch(indices)
        return x.div_(255.0), y


def _image_dataset(name: str, parts: dict, classes: int, split: str, seed: int, mode: str, val_fraction: float,
                   permutation: np.ndarray | None) -> ArrayDataset:
    check_split(split)
    train_images, train_labels = parts["train"]
    test_images, test_labels = parts["test"]
    if split == "test":
        images, labels = test_images, test_labels
    else:
        sel = select_split(train_labels, np.arange(train_labels.size), np.zeros(0, dtype=np.int64), split, seed,
                           val_fraction)
        images, labels = train_images[sel], train_labels[sel]
    seq = image_sequences(images, mode, permutation)
    info = DatasetInfo(name, num_inputs=int(seq.shape[2]), num_classes=classes, time_steps=int(seq.shape[1]),
                       input_kind="analog")
    return _ScaledDataset(seq, labels, info)


def mnist_permutation(permutation_seed: int = 0) -> np.ndarray:
    """The fixed PS-MNIST pixel permutation for ``permutation_seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(permutation_seed), 0x95])).permutation(784)


def smnist_dataset(split: str = "train", root=None, seed: int = 0, mode: str = "pixel",
                   val_fraction: float = 0.1) -> ArrayDataset:
    """Sequential MNIST: ``mode="pixel"`` (T=784, C=1) or ``"column"`` (T=28, C=28)."""
    return _image_dataset("smnist", load_mnist(root), 10, split, seed, mode, val_fraction, None)


def psmnist_dataset(split: str = "train", root=None, seed: int = 0, mode: str = "pixel",
                    val_fraction: float = 0.1, permutation_seed: int = 0) -> ArrayDataset:
    """Permuted sequential MNIST: the 784 pixels reordered by a permutation fixed by ``permutation_seed``."""
    return _image_dataset("psmnist", load_mnist(root), 10, split, seed, mode, val_fraction,
                          mnist_permutation(permutation_seed))


def scifar10_dataset(split: str = "train", root=None, seed: int = 0, mode: str = "pixel",
                     val_fraction: float = 0.1) -> ArrayDataset:
    """Sequential CIFAR-10: ``mode="pixel"`` (T=1024, C=3) or ``"column"`` (T=32, C=96)."""
    return _image_dataset("scifar10", load_cifar(10, root), 10, split, seed, mode, val_fraction, None)


def scifar100_dataset(split: str = "train", root=None, seed: int = 0, mode: str = "pixel",
                      val_fraction: float = 0.1) -> ArrayDataset:
    """Sequential CIFAR-100 (fine labels): ``mode="pixel"`` (T=1024, C=3) or ``"column"`` (T=32, C=96)."""
    return _image_dataset("scifar100", load_cifar(100, root), 100, split, seed, mode, val_fraction, None)


def _cifar_images(name: str, classes: int, split: str, root, seed: int, time_steps: int, augment: bool,
                  val_fraction: float, encoder_seed: int):
    from .vision import StaticImageDataset

    check_split(split)
    parts = load_cifar(classes, root)
    if split == "test":
        images, labels = parts["test"]
    else:
        train_images, train_labels = parts["train"]
        sel = select_split(train_labels, np.arange(train_labels.size), np.zeros(0, dtype=np.int64), split, seed,
                           val_fraction)
        images, labels = train_images[sel], train_labels[sel]
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return StaticImageDataset(x, labels, name, classes, time_steps, "direct", encoder_seed,
                              augment=bool(augment) and split in ("train", "train_full"))


def cifar10_dataset(split: str = "train", root=None, seed: int = 0, time_steps: int = 4, augment: bool = True,
                    val_fraction: float = 0.1, encoder_seed: int = 0):
    """CIFAR-10 as images ``x [T, 3, 32, 32]`` in [0, 1], direct-encoded over ``time_steps``; ``augment``: random
    crop (padding 4) and horizontal flip on the training splits."""
    return _cifar_images("cifar10", 10, split, root, seed, time_steps, augment, val_fraction, encoder_seed)


def cifar100_dataset(split: str = "train", root=None, seed: int = 0, time_steps: int = 4, augment: bool = True,
                     val_fraction: float = 0.1, encoder_seed: int = 0):
    """CIFAR-100 (fine labels) as images ``x [T, 3, 32, 32]``, as :func:`cifar10_dataset`."""
    return _cifar_images("cifar100", 100, split, root, seed, time_steps, augment, val_fraction, encoder_seed)
