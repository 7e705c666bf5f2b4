"""Event-camera data sets as frames: N-MNIST, DVS128 Gesture and CIFAR10-DVS.

Items are ``(x [T, 2, H, W] float32 event counts (channel 0 OFF, 1 ON), label int)``; ``make_loader`` gives
``[T, B, 2, H, W]``. Options (all three): ``frames`` (T), ``split_by="time"|"count"`` (see
:mod:`dendrix.data.frames`), ``downsample`` (integer factor on x and y), ``cache`` (keep frames on disk in
``<root>/cache/frames``), ``val_fraction`` (stratified part of the training set, chosen by ``seed``).

Expected files (in ``root/<name>`` or ``root``; raw files are read by :mod:`dendrix.data.events`):

* ``nmnist``: ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin`` (the two published archives, extracted).
  60,000 / 10,000 samples, 34×34.
* ``dvsgesture``: ``DvsGesture/`` with ``userNN_<lighting>.aedat``, ``userNN_<lighting>_labels.csv``,
  ``trials_to_train.txt`` and ``trials_to_test.txt``. Each labelled interval ``start <= t < end`` of a
  recording is one sample (class 1..11 in the file → 0..10); the trial lists give the official
  train (users 1–23) / test (users 24–29) split. 128×128.
* ``cifar10dvs``: ``<class>/cifar10_<class>_<i>.aedat`` for the ten CIFAR-10 classes (the published zips,
  extracted). There is no official split; the test part is samples ``i = 0..99`` of every class and the
  training part ``i >= 100`` (the split of Duan et al. 2022, TEBN, used by most later papers). 128×128.

A missing folder or file raises one :class:`~dendrix.data.base.DatasetError` line saying what is expected and
how to get it (``dendrix data download NAME``, or by hand where the publisher requires it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .base import DatasetError, DatasetInfo, SequenceDataset, check_split, data_root, select_split
from .events import (DVS128_SIZE, NMNIST_SIZE, read_aedat2_dvs128, read_aedat31, read_gesture_labels,
                     read_nmnist_bin, read_trials)
from .frames import cached_frames, check_frame_options, events_to_frames, frame_size

__all__ = ["EventFrameDataset", "nmnist_dataset", "dvsgesture_dataset", "cifar10dvs_dataset", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_GESTURE_CLASSES = 11
_CIFAR10DVS_TEST_PER_CLASS = 100


class EventFrameDataset(SequenceDataset):
    """Samples of event recordings, turned into frames on first use (and cached on disk).

    ``samples[i] = (file, start_us, end_us)`` (``start/end`` ``None`` for a whole file); ``reader(file)`` gives
    the file's events. Items ``(x [T, 2, H, W] float32, label)``; :meth:`get_batch` gives ``[B, T, 2, H, W]``.
    """

    def __init__(self, samples: Sequence[tuple[Path, int | None, int | None]], labels: np.ndarray,
                 reader: Callable[[Path], np.ndarray], sensor: tuple[int, int], info: DatasetInfo, frames: int,
                 split_by: str, downsample: int, root=None, cache: bool = True):
        self.samples = list(samples)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._labels_t = torch.from_numpy(self.labels)
        self.reader, self.sensor, self.info = reader, tuple(sensor), info
        self.frames, self.split_by, self.downsample = int(frames), split_by, int(downsample)
        self.root, self.cache = root, bool(cache)
        self._last: tuple[Path, np.ndarray] | None = None  # the last file read (DVS Gesture: ~12 samples a file)
        self._siblings: dict[Path, list[int]] | None = None  # recording -> its sample indices

    def _events(self, path: Path) -> np.ndarray:
        if self._last is None or self._last[0] != path:
            self._last = (path, self.reader(path))
        return self._last[1]

    def _params(self, index: int) -> dict:
        _, start, end = self.samples[index]
        return {"frames": self.frames, "split_by": self.split_by, "downsample": self.downsample,
                "sensor": list(self.sensor), "start": start, "end": end, "format": self.info.name}

    def _compute(self, index: int) -> np.ndarray:
        path, start, end = self.samples[index]
        ev = self._events(path)
        if start is not None:
            ev = ev[(ev["t"] >= start) & (ev["t"] < end)]
        return events_to_frames(ev, self.frames, self.sensor, self.split_by, self.downsample)

    def sample_frames(self, index: int) -> np.ndarray:
        """Frames ``[T, 2, H, W]`` int32 of sample ``index``. When a recording has to be read, the frames of
        all its samples in this data set are computed and cached at once (a DVS Gesture file holds ~12)."""
        path = self.samples[index][0]
        missed = []

        def compute() -> np.ndarray:
            missed.append(index)
            return self._compute(index)

        out = cached_frames(path, self._params(index), compute, root=self.root, enabled=self.cache)
        if missed and self.cache and self.samples[index][1] is not None:
            if self._siblings is None:
                self._siblings = {}
                for i, (p, _, _) in enumerate(self.samples):
                    self._siblings.setdefault(p, []).append(i)
            for j in self._siblings[path]:
                if j != index:
                    cached_frames(path, self._params(j), lambda j=j: self._compute(j), root=self.root)
        return out

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = [int(i) for i in indices]
        x = np.stack([self.sample_frames(i) for i in idx]) if idx else np.zeros(
            (0, self.frames, 2, *frame_size(self.sensor, self.downsample)), dtype=np.int32)
        return torch.from_numpy(x.astype(np.float32)), self._labels_t[torch.as_tensor(idx, dtype=torch.int64)]


def _folder(root, name: str, marker: str, hint: str) -> Path:
    base = data_root(root)
    for candidate in (base / name, base):
        if (candidate / marker).exists():
            return candidate
    raise DatasetError(f"{name}: {marker!r} not found in {str(base / name)!r} or {str(base)!r}; {hint}")


def _make(name: str, samples, labels, train_full, test, split, seed, val_fraction, reader, sensor, classes,
          frames, split_by, downsample, root, cache) -> EventFrameDataset:
    labels = np.asarray(labels, dtype=np.int64)
    sel = select_split(labels, np.asarray(train_full, dtype=np.int64), np.asarray(test, dtype=np.int64), split,
                       seed, val_fraction)
    h, w = frame_size(sensor, downsample)
    info = DatasetInfo(name, num_inputs=2, num_classes=classes, time_steps=int(frames), input_kind="spikes",
                       input_shape=(2, h, w))
    return EventFrameDataset([samples[i] for i in sel], labels[sel], reader, sensor, info, frames, split_by,
                             downsample, root=root, cache=cache)


def nmnist_dataset(split: str = "train", root=None, seed: int = 0, frames: int = 10, split_by: str = "count",
                   downsample: int = 1, val_fraction: float = 0.1, cache: bool = True) -> EventFrameDataset:
    """N-MNIST as ``[frames, 2, 34, 34]`` frames (see the module docstring)."""
    check_split(split)
    check_frame_options(frames, split_by, downsample)
    base = _folder(root, "nmnist", "Train", "run `dendrix data download nmnist` or extract Train.zip and Test.zip "
                   "of https://www.garrickorchard.com/datasets/n-mnist there")
    samples, labels, part = [], [], []
    for part_name in ("Train", "Test"):
        for digit in range(10):
            folder = base / part_name / str(digit)
            if not folder.is_dir():
                raise DatasetError(f"nmnist: folder {str(folder)!r} is missing; the extracted archive is incomplete")
            files = sorted(folder.glob("*.bin"))
            samples += [(f, None, None) for f in files]
            labels += [digit] * len(files)
            part += [part_name] * len(files)
    part = np.asarray(part)
    return _make("nmnist", samples, labels, np.flatnonzero(part == "Train"), np.flatnonzero(part == "Test"),
                 split, seed, val_fraction, read_nmnist_bin, NMNIST_SIZE, 10, frames, split_by, downsample, root,
                 cache)


def dvsgesture_dataset(split: str = "train", root=None, seed: int = 0, frames: int = 16, split_by: str = "count",
                       downsample: int = 1, val_fraction: float = 0.1, cache: bool = True) -> EventFrameDataset:
    """DVS128 Gesture as ``[frames, 2, 128/downsample, 128/downsample]`` frames (see the module docstring)."""
    check_split(split)
    check_frame_options(frames, split_by, downsample)
    hint = ("download DvsGesture.tar.gz by hand from https://research.ibm.com/interactive/dvsgesture/ (IBM's "
            "download page needs a browser), then run `dendrix data download dvsgesture` to verify and extract it")
    base = _folder(root, "dvsgesture", "DvsGesture", hint) / "DvsGesture"
    samples, labels, part = [], [], []
    for part_name in ("train", "test"):
        trials = base / f"trials_to_{part_name}.txt"
        if not trials.is_file():
            raise DatasetError(f"dvsgesture: {str(trials)!r} is missing; {hint}")
        for name in read_trials(trials):
            recording = base / name
            if not recording.is_file():
                raise DatasetError(f"dvsgesture: {str(recording)!r} (listed in {trials.name}) is missing; {hint}")
            for label, start, end in read_gesture_labels(base / f"{name[:-len('.aedat')]}_labels.csv"):
                samples.append((recording, int(start), int(end)))
                labels.append(int(label))
                part.append(part_name)
    part = np.asarray(part)
    return _make("dvsgesture", samples, labels, np.flatnonzero(part == "train"), np.flatnonzero(part == "test"),
                 split, seed, val_fraction, read_aedat31, DVS128_SIZE, _GESTURE_CLASSES, frames, split_by,
                 downsample, root, cache)


def _sample_number(path: Path) -> int:
    match = re.search(r"(\d+)$", path.stem)
    if match is None:
        raise DatasetError(f"cifar10dvs: cannot read the sample number of {path.name!r} "
                           f"(expected cifar10_<class>_<i>.aedat)")
    return int(match.group(1))


def cifar10dvs_dataset(split: str = "train", root=None, seed: int = 0, frames: int = 10, split_by: str = "count",
                       downsample: int = 1, val_fraction: float = 0.1, cache: bool = True) -> EventFrameDataset:
    """CIFAR10-DVS as ``[frames, 2, 128/downsample, 128/downsample]`` frames (see the module docstring)."""
    check_split(split)
    check_frame_options(frames, split_by, downsample)
    base = _folder(root, "cifar10dvs", CIFAR10_CLASSES[0], "run `dendrix data download cifar10dvs` or extract the "
                   "ten class zips of https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 there")
    samples, labels, is_test = [], [], []
    for label, cls in enumerate(CIFAR10_CLASSES):
        folder = base / cls
        if not folder.is_dir():
            raise DatasetError(f"cifar10dvs: folder {str(folder)!r} is missing; the extracted archives are incomplete")
        files = sorted(folder.glob("*.aedat"), key=_sample_number)
        samples += [(f, None, None) for f in files]
        labels += [label] * len(files)
        is_test += [_sample_number(f) < _CIFAR10DVS_TEST_PER_CLASS for f in files]
    is_test = np.asarray(is_test, dtype=bool)
    return _make("cifar10dvs", samples, labels, np.flatnonzero(~is_test), np.flatnonzero(is_test), split, seed,
                 val_fraction, read_aedat2_dvs128, DVS128_SIZE, 10, frames, split_by, downsample, root, cache)
