"""Bring your own data: any ``torch.utils.data.Dataset`` of ``(x [T, C...], label)`` as a dendrix data set, and a
tonic data set through an adapter that imports tonic only when it is used.

:func:`dendrix.data.register_dataset` wraps what a user factory returns with :func:`as_dendrix_dataset`, so the
trainer, ``dendrix train/compare/eval`` and configs (``data.name``) see it like a built-in data set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .._optional import require
from .base import DatasetError, DatasetInfo

__all__ = ["UserDataset", "as_dendrix_dataset", "TonicFrames", "from_tonic"]


def _as_tensor(x: Any, where: str) -> Tensor:
    try:
        return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).to(torch.float32)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{where}: x must be an array or tensor [T, C...], got {type(x).__name__} ({err})") from None


def _num_classes(dataset, given: int | None) -> int:
    if given is not None:
        return int(given)
    for attr in ("num_classes", "n_classes"):
        if isinstance(getattr(dataset, attr, None), int):
            return int(getattr(dataset, attr))
    classes = getattr(dataset, "classes", None)
    if isinstance(classes, (list, tuple)) and classes:
        return len(classes)
    raise DatasetError(f"cannot tell the number of classes of {type(dataset).__name__}; pass num_classes= to "
                       f"register_dataset (or give the data set a num_classes attribute)")


class UserDataset(Dataset):
    """A Dataset of ``(x [T, C...], label)`` with a :class:`DatasetInfo` read from its first item.

    Every item is checked against that shape (fixed-length sequences: pad or crop in your data set), and labels
    against ``0..num_classes-1``. Items come back as ``(float32 tensor, int)``.
    """

    def __init__(self, dataset: Dataset, name: str, num_classes: int | None = None, input_kind: str | None = None):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise DatasetError(f"data set {name!r}: the factory must return a Dataset with __len__ and __getitem__, "
                               f"got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise DatasetError(f"data set {name!r}: the factory returned an empty data set")
        self.dataset, self.name = dataset, name
        x0, _ = self._item(0, check=False)
        if x0.dim() < 2:
            raise DatasetError(f"data set {name!r}: items must be (x [T, C...], label) with x time-first, got x of "
                               f"shape {tuple(x0.shape)}")
        if input_kind is None:
            integral = bool(((x0 == x0.round()) & (x0 >= 0)).all())
            input_kind = "spikes" if integral else "analog"
        classes = _num_classes(dataset, num_classes)
        shape = tuple(int(s) for s in x0.shape[1:])
        self.info = DatasetInfo(name, num_inputs=shape[0], num_classes=classes, time_steps=int(x0.shape[0]),
                                input_kind=input_kind, input_shape=shape if len(shape) > 1 else None)
        self._shape = tuple(x0.shape)

    def _item(self, index: int, check: bool = True) -> tuple[Tensor, int]:
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DatasetError(f"data set {self.name!r}: item {index} must be a pair (x, label), got "
                               f"{type(item).__name__}")
        x = _as_tensor(item[0], f"data set {self.name!r}, item {index}")
        label = item[1]
        label = int(label.item() if hasattr(label, "item") else label)
        if check:
            if tuple(x.shape) != self._shape:
                raise DatasetError(f"data set {self.name!r}: item {index} has shape {tuple(x.shape)}, the first "
                                   f"item {self._shape}; every sequence must have the same shape [T, C...]")
            if not 0 <= label < self.info.num_classes:
                raise DatasetError(f"data set {self.name!r}: item {index} has label {label}, outside "
                                   f"0..{self.info.num_classes - 1}")
        return x, label

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self._item(int(index))

    def __repr__(self) -> str:
        i = self.info
        return (f"UserDataset({i.name!r}, items={len(self)}, time_steps={i.time_steps}, inputs={i.num_inputs}, "
                f"classes={i.num_classes}, kind={i.input_kind!r})")


def as_dendrix_dataset(dataset: Dataset, name: str, num_classes: int | None = None,
                       input_kind: str | None = None) -> Dataset:
    """``dataset`` itself if it already has a :class:`DatasetInfo` as ``.info``, else a :class:`UserDataset`."""
    if isinstance(getattr(dataset, "info", None), DatasetInfo):
        return dataset
    return UserDataset(dataset, name, num_classes=num_classes, input_kind=input_kind)


class TonicFrames(Dataset):
    """A tonic data set (items ``(events, target)``) as event frames ``x [T, P, H, W]`` (``[T, P·W]`` for a
    one-row sensor such as tonic's SHD, ``sensor_size = (700, 1, 1)``) with ``T = time_steps`` equal time bins,
    made by ``tonic.transforms.ToFrame``. Needs tonic (``pip install dendrix[tonic]``) only when built."""

    def __init__(self, dataset, time_steps: int, sensor_size: tuple[int, ...] | None = None):
        transforms = require("tonic.transforms", needed_by="dendrix.data.from_tonic")
        from ..validation import check_int

        self.dataset = dataset
        self.time_steps = check_int("time_steps", time_steps, minimum=1)
        size = sensor_size if sensor_size is not None else getattr(dataset, "sensor_size", None)
        if size is None or len(tuple(size)) != 3:
            raise DatasetError(f"from_tonic needs sensor_size (W, H, P); {type(dataset).__name__} has none, pass "
                               f"sensor_size=")
        self.sensor_size = tuple(int(s) for s in size)
        self._to_frame = transforms.ToFrame(sensor_size=self.sensor_size, n_time_bins=self.time_steps)
        classes = getattr(dataset, "classes", None)
        if isinstance(classes, (list, tuple)) and classes:
            self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        events, target = self.dataset[index][:2]
        frames = torch.as_tensor(np.asarray(self._to_frame(events)), dtype=torch.float32)  # [T, P, H, W]
        if frames.dim() == 4 and frames.shape[2] == 1:  # one-row sensor: [T, P, 1, W] -> [T, P*W]
            frames = frames.reshape(frames.shape[0], -1)
        return frames, int(target)


def from_tonic(dataset, time_steps: int, sensor_size: tuple[int, ...] | None = None,
               num_classes: int | None = None, name: str = "tonic") -> UserDataset:
    """A tonic data set as a dendrix data set of event frames (see :class:`TonicFrames`)."""
    frames = TonicFrames(dataset, time_steps, sensor_size)
    return UserDataset(frames, name, num_classes=num_classes, input_kind="spikes")
