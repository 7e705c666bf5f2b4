"""Events to frames, and the on-disk cache of the frames.

:func:`events_to_frames` integrates events into a fixed number ``T`` of frames ``[T, 2, H, W]`` of event
counts (channel 0 OFF, channel 1 ON), splitting the recording either

* by **time** (``split_by="time"``): frame ``k`` holds the events with ``t0 + k·D/T <= t < t0 + (k+1)·D/T``,
  where ``t0`` is the first event's time and ``D = t_last − t0 + 1`` µs, so every frame spans the same duration; or
* by **count** (``split_by="count"``): frame ``k`` holds events ``floor(k·N/T) .. floor((k+1)·N/T) − 1`` in file
  order, so the frames hold ``N // T`` or ``N // T + 1`` events each.

Every event lands in exactly one frame, so the frames sum to the number of events. ``downsample=f`` divides the
coordinates by ``f`` (integer division; the frame is ``ceil(H/f) × ceil(W/f)``), summing the counts of each
``f × f`` block. Events outside the sensor raise an error rather than being dropped silently.

:func:`cached_frames` keeps computed frames in ``<data root>/cache/frames/`` as compressed ``.npz`` files, one per
sample, keyed by the source file (absolute path, size, modification time), the sample's segment and every
integration parameter; a changed source file or parameter gives a new key, and an unreadable cache file is
recomputed.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..files import atomic_write
from .base import DatasetError, data_root

__all__ = ["SPLIT_BY", "events_to_frames", "frame_size", "cache_key", "cached_frames"]

SPLIT_BY = ("time", "count")


def frame_size(sensor: tuple[int, int], downsample: int) -> tuple[int, int]:
    """``(H, W)`` of the frames of a ``sensor = (H, W)`` after ``downsample``."""
    return -(-sensor[0] // downsample), -(-sensor[1] // downsample)


def check_frame_options(frames: int, split_by: str, downsample: int) -> None:
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise DatasetError(f"frames must be an integer >= 1, got {frames!r}")
    if split_by not in SPLIT_BY:
        raise DatasetError(f"split_by must be one of {list(SPLIT_BY)}, got {split_by!r}")
    if isinstance(downsample, bool) or not isinstance(downsample, (int, np.integer)) or downsample < 1:
        raise DatasetError(f"downsample must be an integer >= 1, got {downsample!r}")


def events_to_frames(events: np.ndarray, frames: int, sensor: tuple[int, int], split_by: str = "time",
                     downsample: int = 1) -> np.ndarray:
    """Event counts ``[frames, 2, H, W]`` int32 from a structured event array (fields ``t, x, y, p``), with
    ``sensor = (H, W)`` the sensor size before ``downsample``. See the module docstring for the two splits."""
    check_frame_options(frames, split_by, downsample)
    height, width = frame_size(sensor, downsample)
    out = np.zeros((frames, 2, height, width), dtype=np.int32)
    n = int(events.shape[0])
    if n == 0:
        return out
    x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    bad = (x < 0) | (x >= sensor[1]) | (y < 0) | (y >= sensor[0]) | (p > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"event {i} (x={x[i]}, y={y[i]}, p={p[i]}) lies outside the {sensor[1]}x{sensor[0]} "
                           f"sensor; wrong data set or corrupt file")
    if split_by == "time":
        t = events["t"].astype(np.int64)
        t0 = int(t.min())
        span = int(t.max()) - t0 + 1
        index = ((t - t0) * frames) // span
    else:
        bounds = (np.arange(frames + 1, dtype=np.int64) * n) // frames   # frame k: bounds[k] <= i < bounds[k+1]
        index = np.searchsorted(bounds, np.arange(n, dtype=np.int64), side="right") - 1
    flat = ((index * 2 + p) * height + y // downsample) * width + x // downsample
    out.reshape(-1)[:] = np.bincount(flat, minlength=out.size).astype(np.int32)
    return out


def cache_key(source: str | Path, params: dict) -> str:
    """A hex key for the frames of ``source`` under ``params`` (changes when the file or a parameter does)."""
    path = Path(source).resolve()
    stat = path.stat()
    blob = json.dumps({"file": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **params},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _smallest_uint(frames: np.ndarray) -> np.ndarray:
    top = int(frames.max()) if frames.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return frames.astype(dtype)
    return frames


def cached_frames(source: str | Path, params: dict, compute: Callable[[], np.ndarray], root=None,
                  enabled: bool = True) -> np.ndarray:
    """The frames of ``source`` under ``params``: read from the cache, or ``compute()``-d and written there
    (atomically: a temporary file renamed). ``enabled=False`` always computes and writes nothing."""
    if not enabled:
        return compute()
    folder = data_root(root) / "cache" / "frames"
    path = folder / f"{cache_key(source, params)}.npz"
    if path.is_file():
        try:
            with np.load(path) as stored:
                return stored["frames"].astype(np.int32)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    frames = compute()
    stored = _smallest_uint(frames)
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, frames=stored))
    return frames
