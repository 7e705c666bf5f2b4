"""Data set contract shared by every loader: :class:`DatasetInfo`, :class:`DatasetError`, in-memory sequence data
sets with fast batch access, deterministic stratified validation splits, and the time-first loader.

Every data set yields items ``(x [T, C] float32, label int)``; :func:`make_loader` stacks them into time-first
batches ``x [T, B, C]`` (the one place where batch-first becomes time-first) and ``y [B]`` int64.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = [
    "DatasetError", "DatasetInfo", "SequenceDataset", "ArrayDataset", "SequenceLoader", "TimeFirstDataLoader",
    "make_loader",
    "SPLITS", "check_split", "stratified_holdout", "data_root",
]

SPLITS = ("train", "val", "test", "train_full")
INPUT_KINDS = ("spikes", "analog")


class DatasetError(ValueError):
    """A data set cannot be built from what is on disk or from the options given. One-line message, suitable
    for printing as a command-line error."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set.

    ``num_inputs`` channels per time step, ``num_classes`` labels ``0..num_classes-1``, ``time_steps`` per
    sequence, ``input_kind`` ``"spikes"`` (binary or count events) or ``"analog"`` (real values, e.g. pixels).
    ``input_shape``: the shape of one time step when it is not a flat vector, e.g. ``(C, H, W)`` for images and
    event frames (then ``num_inputs == C``, the input channels of a convolution); ``None`` for ``[T, C]`` data.
    """

    name: str
    num_inputs: int
    num_classes: int
    time_steps: int
    input_kind: str = "spikes"
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {list(INPUT_KINDS)}, got {self.input_kind!r}")
        if self.input_shape is not None:
            shape = tuple(int(s) for s in self.input_shape)  # a JSON round trip gives a list
            if not shape or min(shape) < 1 or shape[0] != self.num_inputs:
                raise ValueError(f"input_shape must be positive sizes starting with num_inputs={self.num_inputs}, "
                                 f"got {self.input_shape!r}")
            object.__setattr__(self, "input_shape", shape)

    def to_dict(self) -> dict:
        return asdict(self)

    def _asdict(self) -> dict:  # the name the trainer looks for when it writes info.json (all fields, not five)
        return asdict(self)


def check_split(split: str, allowed: Sequence[str] = SPLITS) -> str:
    """``split`` if it is one of ``allowed``, else a :class:`DatasetError` naming the allowed splits."""
    if split not in allowed:
        raise DatasetError(f"split must be one of {list(allowed)}, got {split!r}")
    return split


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..len(labels)-1`` into (kept, held out), holding out ``round(fraction * n_c)`` items of
    every class ``c`` (at least one when ``fraction > 0`` and the class has two or more), chosen by ``seed``.
    Both index arrays are sorted."""
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(round(fraction * members.size))
        if fraction > 0 and k == 0 and members.size >= 2:
            k = 1
        if k:
            held.append(rng.permutation(members)[:k])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(labels.size, dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def select_split(labels: np.ndarray, train_full: np.ndarray, test: np.ndarray, split: str, seed: int,
                 val_fraction: float) -> np.ndarray:
    """Positions for ``split`` given the positions of the full training part and of the test part; ``val`` is a
    stratified ``val_fraction`` of ``train_full`` chosen by ``seed`` and ``train`` the rest."""
    check_split(split)
    if split == "test":
        return np.asarray(test)
    if split == "train_full":
        return np.asarray(train_full)
    keep, held = stratified_holdout(np.asarray(labels)[train_full], val_fraction, seed)
    return np.asarray(train_full)[held if split == "val" else keep]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where data files live: ``root`` if given, else ``$DENDRIX_DATA``, else ``~/.cache/dendrix``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("DENDRIX_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dendrix"


class SequenceDataset(Dataset):
    """A data set of fixed-length sequences. Items are ``(x [T, C] float32, label int)``.

    Subclasses implement :meth:`get_batch` (``x [B, T, C]`` float32, ``y [B]`` int64), which :func:`make_loader`
    uses to build a batch in one call instead of stacking items one by one.
    """

    info: DatasetInfo
    labels: np.ndarray

    def __len__(self) -> int:
        return int(len(self.labels))

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        n = len(self)
        if not -n <= int(index) < n:
            raise IndexError(f"index {index} out of range for a data set of {n} items")
        x, y = self.get_batch([int(index) % n])
        return x[0], int(y[0])

    def __repr__(self) -> str:
        i = self.info
        return (f"{type(self).__name__}({i.name!r}, items={len(self)}, time_steps={i.time_steps}, "
                f"inputs={i.num_inputs}, classes={i.num_classes}, kind={i.input_kind!r})")


class ArrayDataset(SequenceDataset):
    """Sequences held in one tensor ``data [N, T, C]`` (any numeric dtype; converted to float32 per batch,
    so binary spikes can be held as uint8) with integer ``labels [N]``."""

    def __init__(self, data: Tensor | np.ndarray, labels: Tensor | np.ndarray, info: DatasetInfo,
                 meta: dict | None = None):
        data = torch.as_tensor(data)
        labels_np = np.asarray(labels, dtype=np.int64)
        if data.dim() != 3:
            raise DatasetError(f"{info.name}: data must be [N, T, C], got shape {tuple(data.shape)}")
        if data.shape[0] != labels_np.shape[0]:
            raise DatasetError(f"{info.name}: {data.shape[0]} sequences but {labels_np.shape[0]} labels")
        if tuple(data.shape[1:]) != (info.time_steps, info.num_inputs):
            raise DatasetError(f"{info.name}: data shape {tuple(data.shape)} does not match info "
                               f"(time_steps={info.time_steps}, num_inputs={info.num_inputs})")
        self.data = data
        self.labels = labels_np
        self._labels_t = torch.from_numpy(labels_np)
        self.info = info
        self.meta = dict(meta or {})  # per-item metadata arrays (e.g. speaker), aligned with labels

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return self.data.index_select(0, idx).to(torch.float32), self._labels_t.index_select(0, idx)


class SequenceLoader:
    """Iterates time-first batches ``(x [T, B, C] float32, y [B] int64)`` over a data set.

    Shuffling is deterministic: the order of epoch ``e`` is a permutation drawn from ``(seed, e)``. Each pass
    advances the epoch by one; :meth:`set_epoch` sets it (call it every epoch, or at least when resuming a run)
    and forwards it to a sampler that has ``set_epoch`` (e.g. ``DistributedSampler``, which otherwise repeats
    its order every epoch, as in PyTorch).
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, sampler: Sampler | None = None):
        from ..validation import check_int

        self.dataset = dataset
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        if sampler is not None and shuffle:
            raise ValueError("shuffle=True cannot be combined with a sampler (the sampler decides the order)")
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.sampler = sampler
        self.epoch = 0
        self.info = getattr(dataset, "info", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)

    def _order(self) -> list[int]:
        if self.sampler is not None:
            return [int(i) for i in self.sampler]
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
        return torch.randperm(n, generator=gen).tolist()

    def _num_items(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(self.dataset)

    def __len__(self) -> int:
        n = self._num_items()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _fetch(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        return _time_first(_fetch_batch(self.dataset, indices))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._order()
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                break
            yield self._fetch(chunk)


def _fetch_batch(dataset: Dataset, indices: list[int]) -> tuple[Tensor, Tensor]:
    """``x [B, T, ...]`` float32 and ``y [B]`` int64 of ``indices`` (one call for a :class:`SequenceDataset`)."""
    if hasattr(dataset, "get_batch"):
        x, y = dataset.get_batch(indices)
    else:
        items = [dataset[i] for i in indices]
        x = torch.stack([torch.as_tensor(xi, dtype=torch.float32) for xi, _ in items])
        y = torch.as_tensor([int(yi) for _, yi in items], dtype=torch.int64)
    return x.to(torch.float32), y.to(torch.int64)


class _BatchView(Dataset):
    """Indexable by a list of indices: ``view[[i, j, ...]]`` is one batch (for a DataLoader without automatic
    batching, so each worker builds whole batches, through ``get_batch`` where the data set has it)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        return _fetch_batch(self.dataset, list(indices))


def _time_first(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    x, y = batch
    return x.transpose(0, 1).contiguous(), y


class _EpochBatches(Sampler):
    """Lists of indices in the order :class:`SequenceLoader` would use (a permutation drawn from ``(seed, epoch)``
    or the given sampler's order); each pass advances the epoch."""

    def __init__(self, order_of: "SequenceLoader"):
        self.plan = order_of

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self):
        order = self.plan._order()
        self.plan.epoch += 1
        size = self.plan.batch_size
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            if self.plan.drop_last and len(chunk) < size:
                break
            yield chunk


class TimeFirstDataLoader(DataLoader):
    """A ``torch.utils.data.DataLoader`` (worker processes, pinned memory) of time-first batches
    ``(x [T, B, ...] float32, y [B] int64)`` in the same deterministic order as :class:`SequenceLoader`.

    Each worker builds whole batches (``get_batch`` of a :class:`SequenceDataset`, else stacked items).
    :meth:`set_epoch` sets the epoch of the next pass (and of a sampler that has ``set_epoch``).
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, sampler: Sampler | None = None, num_workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool = False, prefetch_factor: int | None = None):
        from ..validation import check_int

        self.plan = SequenceLoader(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                                   sampler=sampler)
        workers = check_int("num_workers", num_workers, minimum=0)
        if not isinstance(pin_memory, bool):
            raise TypeError(f"pin_memory must be True or False, got {pin_memory!r}")
        extra = {"prefetch_factor": prefetch_factor} if workers and prefetch_factor is not None else {}
        super().__init__(_BatchView(dataset), batch_size=None, sampler=_EpochBatches(self.plan),
                         num_workers=workers, pin_memory=pin_memory, collate_fn=_time_first,
                         persistent_workers=bool(persistent_workers and workers), **extra)
        self.info = getattr(dataset, "info", None)

    @property
    def epoch(self) -> int:
        return self.plan.epoch

    def set_epoch(self, epoch: int) -> None:
        self.plan.set_epoch(epoch)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                sampler: Sampler | None = None, num_workers: int = 0, pin_memory: bool = False,
                persistent_workers: bool = False, prefetch_factor: int | None = None
                ) -> SequenceLoader | TimeFirstDataLoader:
    """Time-first batches ``x [T, B, C]`` float32 and ``y [B]`` int64 from a data set of ``(x [T, C], label)``.

    Args:
        dataset: any data set of ``(x [T, C], label)`` items; :class:`SequenceDataset` batches are built in one call.
        batch_size: items per batch.
        shuffle: a new deterministic order each epoch, drawn from ``(seed, epoch)``.
        seed: seed of the shuffling.
        drop_last: drop the last incomplete batch.
        sampler: e.g. ``torch.utils.data.DistributedSampler`` for DDP (then ``shuffle`` must be False; the
            sampler shuffles, and :meth:`SequenceLoader.set_epoch` is forwarded to it).
        num_workers, pin_memory, persistent_workers, prefetch_factor: as in ``torch.utils.data.DataLoader``.
            With ``num_workers > 0`` or ``pin_memory=True`` the result is a :class:`TimeFirstDataLoader` (a real
            DataLoader, same batches in the same order); otherwise the in-process :class:`SequenceLoader`.
    """
    if num_workers or pin_memory:
        return TimeFirstDataLoader(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                                   sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                                   persistent_workers=persistent_workers, prefetch_factor=prefetch_factor)
    return SequenceLoader(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, sampler=sampler)
