"""Spiking Heidelberg Digits (SHD, 20 classes) and Spiking Speech Commands (SSC, 35 classes), Cramer et al.
(2020), "The Heidelberg Spiking Data Sets for the Systematic Evaluation of Spiking Neural Networks", IEEE TNNLS.

Files (HDF5): ``spikes/times`` (per sample, spike times in seconds), ``spikes/units`` (per sample, channel
0..699), ``labels``. SHD ships ``shd_train.h5`` and ``shd_test.h5``; SSC ``ssc_train.h5``, ``ssc_valid.h5``,
``ssc_test.h5``. They are looked for in ``root``, ``root/shd`` (``root/ssc``); a ``.h5.gz`` alone is
decompressed in place (CRC checked). ``dendrix data download shd`` fetches them with checksum verification.

Binning (``binning``): ``"4ms"`` binary 4 ms bins × 250 (1 s); ``"1ms"`` binary 1 ms × 1000; ``"counts"`` spike
counts in ``time_steps`` (default 100) bins covering 1.4 s. ``dt``, ``time_steps`` and ``binary`` override the
preset. ``pool`` sums ``pool`` neighbouring channels (700 → ceil(700 / pool) inputs; binary output stays 0/1).
Spikes after the last bin are dropped. Splits: SHD ``val`` is a stratified ``val_fraction`` of its training file;
SSC uses its own validation file (``train_full`` = train + valid).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .._optional import require
from .base import DatasetError, DatasetInfo, SequenceDataset, check_split, data_root, select_split
from .download import SHD_BASE_URL, gunzip_verified

__all__ = ["SHD_UNITS", "BINNINGS", "read_spike_h5", "find_h5", "SpikeEventDataset", "shd_dataset", "ssc_dataset"]

SHD_UNITS = 700
BINNINGS = {
    "4ms": {"dt": 0.004, "time_steps": 250, "binary": True},
    "1ms": {"dt": 0.001, "time_steps": 1000, "binary": True},
    "counts": {"duration": 1.4, "time_steps": 100, "binary": False},
}
_CLASSES = {"shd": 20, "ssc": 35}


def find_h5(name: str, part: str, root=None) -> Path:
    """Path of ``{name}_{part}.h5`` under ``root`` (decompressing a lone ``.h5.gz``), or a clear error."""
    base = data_root(root)
    fname = f"{name}_{part}.h5"
    folders = [base, base / name, base / name.upper()]
    for folder in folders:
        if (folder / fname).is_file():
            return folder / fname
    for folder in folders:
        if (folder / (fname + ".gz")).is_file():
            return gunzip_verified(folder / (fname + ".gz"))
    raise DatasetError(f"{name.upper()} file {fname} not found in {str(base)!r} or {str(base / name)!r}; run "
                       f"`dendrix data download {name} --root {base}` or put {SHD_BASE_URL}{fname}.gz there")


@lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    h5py = require("h5py", needed_by="dendrix.data.shd")

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("spikes/times", "spikes/units", "labels") if k not in f]
            if missing:
                raise DatasetError(f"{path!r} lacks the dataset {missing[0]!r}; expected an SHD/SSC HDF5 file "
                                   f"with spikes/times, spikes/units and labels")
            times = list(f["spikes/times"][:])
            units = list(f["spikes/units"][:])
            labels = np.asarray(f["labels"][:], dtype=np.int64)
    except OSError as err:
        raise DatasetError(f"cannot read {path!r} as HDF5 ({err}); the file is corrupt or incomplete, delete it "
                           f"and download it again") from None
    if not (len(times) == len(units) == labels.shape[0]):
        raise DatasetError(f"{path!r}: {len(times)} time arrays, {len(units)} unit arrays, {labels.shape[0]} labels")
    for i, (t, u) in enumerate(zip(times, units)):
        if np.shape(t) != np.shape(u):
            raise DatasetError(f"{path!r}: sample {i} has {np.size(t)} spike times but {np.size(u)} units")
    return times, units, labels


def read_spike_h5(path: str | Path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """``(times, units, labels)`` of an SHD/SSC file: per-sample arrays of spike times (s) and channels."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"HDF5 file {str(p)!r} not found")
    return _read_cached(str(p), p.stat().st_mtime_ns)


class SpikeEventDataset(SequenceDataset):
    """Event lists binned on demand: sample ``i`` has events ``(bin, channel)`` in
    ``bins[offsets[i]:offsets[i+1]]``, ``channels[...]``; a batch is a dense ``[B, T, C]`` tensor of counts
    (clipped to 1 when ``binary``)."""

    def __init__(self, bins: np.ndarray, channels: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
                 info: DatasetInfo, binary: bool):
        self.bins = torch.from_numpy(np.asarray(bins, dtype=np.int64))
        self.channels = torch.from_numpy(np.asarray(channels, dtype=np.int64))
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.info = info
        self.binary = bool(binary)

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        T, C = self.info.time_steps, self.info.num_inputs
        starts, stops = self.offsets[idx], self.offsets[idx + 1]
        counts = stops - starts
        if counts.sum():
            pos = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])
            pos_t = torch.from_numpy(pos)
            row = torch.from_numpy(np.repeat(np.arange(idx.size), counts))
            flat = (row * T + self.bins[pos_t]) * C + self.channels[pos_t]
            x = torch.bincount(flat, minlength=idx.size * T * C).to(torch.float32).view(idx.size, T, C)
        else:
            x = torch.zeros(idx.size, T, C)
        if self.binary:
            x.clamp_(max=1.0)
        return x, torch.from_numpy(self.labels[idx])


def _resolve_binning(binning: str, dt, time_steps, binary, duration) -> tuple[float, int, bool]:
    if binning not in BINNINGS:
        raise DatasetError(f"binning must be one of {list(BINNINGS)}, got {binning!r}")
    preset = dict(BINNINGS[binning])
    steps = int(time_steps if time_steps is not None else preset["time_steps"])
    if steps < 1:
        raise DatasetError(f"time_steps must be >= 1, got {steps}")
    if dt is None:
        total = duration if duration is not None else preset.get("duration")
        dt = total / steps if total is not None else preset["dt"]
    elif duration is not None:
        raise DatasetError("give dt or duration, not both")
    if not dt > 0:
        raise DatasetError(f"dt must be > 0 seconds, got {dt!r}")
    return float(dt), steps, bool(preset["binary"] if binary is None else binary)


def _events(times, units, dt: float, steps: int, pool: int):
    bins, chans, offsets = [], [], [0]
    for t, u in zip(times, units):
        b = np.floor(np.asarray(t, dtype=np.float64) / dt).astype(np.int64)
        c = np.asarray(u, dtype=np.int64)
        if c.size and (c.min() < 0 or c.max() >= SHD_UNITS):
            raise DatasetError(f"spike units must be in 0..{SHD_UNITS - 1}, got {c.min()}..{c.max()}")
        keep = (b >= 0) & (b < steps)
        bins.append(b[keep])
        chans.append(c[keep] // pool)
        offsets.append(offsets[-1] + int(keep.sum()))
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(bins) if bins else empty, np.concatenate(chans) if chans else empty,
            np.asarray(offsets, dtype=np.int64))


def _spike_dataset(name: str, split: str, root, seed: int, binning: str, dt, time_steps, binary, duration,
                   pool: int, val_fraction: float) -> SpikeEventDataset:
    check_split(split)
    dt, steps, binary = _resolve_binning(binning, dt, time_steps, binary, duration)
    if isinstance(pool, bool) or not isinstance(pool, int) or not 1 <= pool <= SHD_UNITS:
        raise DatasetError(f"pool must be an integer in 1..{SHD_UNITS}, got {pool!r}")
    classes = _CLASSES[name]
    if name == "ssc":
        parts = {"train": ["train"], "val": ["valid"], "train_full": ["train", "valid"], "test": ["test"]}[split]
        loaded = [read_spike_h5(find_h5(name, p, root)) for p in parts]
        times = [t for ld in loaded for t in ld[0]]
        units = [u for ld in loaded for u in ld[1]]
        labels = np.concatenate([ld[2] for ld in loaded])
    else:
        part = "test" if split == "test" else "train"
        times, units, labels = read_spike_h5(find_h5(name, part, root))
        if split != "test":
            sel = select_split(labels, np.arange(labels.size), np.zeros(0, dtype=np.int64), split, seed, val_fraction)
            times, units, labels = [times[i] for i in sel], [units[i] for i in sel], labels[sel]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DatasetError(f"{name.upper()} labels must be in 0..{classes - 1}, got {labels.min()}..{labels.max()}")
    bins, chans, offsets = _events(times, units, dt, steps, pool)
    info = DatasetInfo(name, num_inputs=-(-SHD_UNITS // pool), num_classes=classes, time_steps=steps,
                       input_kind="spikes")
    return SpikeEventDataset(bins, chans, offsets, labels, info, binary)


def shd_dataset(split: str = "train", root=None, seed: int = 0, binning: str = "4ms", dt: float | None = None,
                time_steps: int | None = None, binary: bool | None = None, duration: float | None = None,
                pool: int = 1, val_fraction: float = 0.1) -> SpikeEventDataset:
    """Spiking Heidelberg Digits (20 classes, 700 channels). See the module docstring for the options."""
    return _spike_dataset("shd", split, root, seed, binning, dt, time_steps, binary, duration, pool, val_fraction)


def ssc_dataset(split: str = "train", root=None, seed: int = 0, binning: str = "4ms", dt: float | None = None,
                time_steps: int | None = None, binary: bool | None = None, duration: float | None = None,
                pool: int = 1, val_fraction: float = 0.1) -> SpikeEventDataset:
    """Spiking Speech Commands (35 classes, 700 channels); ``val`` is the official validation file
    (``val_fraction`` is unused)."""
    return _spike_dataset("ssc", split, root, seed, binning, dt, time_steps, binary, duration, pool, val_fraction)
