"""Readers for the raw files of three event-camera data sets, written from the published byte layouts.

Every reader returns a numpy structured array of :data:`EVENT_DTYPE` (fields ``t`` µs int64, ``x``, ``y``
int16, ``p`` uint8 with 1 = ON / brightness increase, 0 = OFF), in file order, and raises
:class:`~dendrix.data.base.DatasetError` with one line naming the file and what is wrong for a missing,
truncated or malformed file.

Layouts (checked against the publishers' descriptions and read beside the readers of tonic ``tonic/io.py``,
``tonic/datasets/nmnist.py`` and SpikingJelly ``spikingjelly/datasets/utils.py`` (``load_aedat_v3``),
``cifar10_dvs.py``, ``dvs128_gesture.py``; no code taken from them):

* **N-MNIST** ``.bin`` (Orchard et al. 2015, "Converting static image datasets to spiking neuromorphic
  datasets using saccades"): 5 bytes = 40 bits per event, big-endian bit order: bits 39–32 x, 31–24 y, bit 23
  polarity (1 = ON), bits 22–0 timestamp in µs. A record with y = 240 is not an event but a timestamp overflow
  marker that adds 2**13 µs to every later timestamp (the N-Caltech101 convention, handled by the published
  MATLAB reader's successors); N-MNIST's 34×34 sensor never produces y = 240.
* **DVS128 Gesture** AEDAT 3.1 (Amir et al. 2017; iniVation's AEDAT 3.1 specification): ASCII header lines
  starting with ``#`` (the first is ``#!AER-DAT3.1``) up to ``#!END-HEADER\\r\\n``, then packets. Each packet
  has a 28-byte little-endian header: ``int16 eventType, int16 eventSource, int32 eventSize, int32
  eventTSOffset, int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid``, followed by
  ``eventCapacity × eventSize`` bytes. Polarity events (eventType 1) are 8 bytes: ``uint32 data`` (bit 0 valid,
  bit 1 polarity, bits 2–16 y, bits 17–31 x) and ``int32 timestamp``; the full time is
  ``eventTSOverflow << 31 | timestamp``. Other event types (special, frame, IMU) are skipped; invalid events
  (bit 0 clear) are dropped.
* **CIFAR10-DVS** AEDAT 2.0 as published on figshare (Li et al. 2017): header lines starting with ``#`` (the
  first is ``#!AER-DAT2.0``), then 8 bytes per event, big-endian ``uint32 address, uint32 timestamp`` (µs). The
  address has the DVS128 sensor's jAER layout: bit 0 polarity (1 = OFF), bits 1–7 x, bits 8–14 y, bit 15 the
  external-event flag (such records are dropped). The recordings were made of a monitor seen by a mirrored
  sensor; as in SpikingJelly, the image is ``x = 127 − y_raw``, ``y = 127 − x_raw`` and ON = ``1 − bit 0``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .base import DatasetError

__all__ = ["EVENT_DTYPE", "make_events", "read_nmnist_bin", "read_aedat31", "read_aedat2_dvs128",
           "read_gesture_labels", "read_trials", "NMNIST_SIZE", "DVS128_SIZE"]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
NMNIST_SIZE = (34, 34)     # (H, W)
DVS128_SIZE = (128, 128)

_NMNIST_OVERFLOW_Y = 240
_NMNIST_OVERFLOW_US = 1 << 13
_AEDAT31_MAGIC = b"#!AER-DAT3.1"
_AEDAT2_MAGIC = b"#!AER-DAT2.0"
_END_HEADER = b"#!END-HEADER"
_PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                           ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
_POLARITY_EVENT = 1


def make_events(t, x, y, p) -> np.ndarray:
    """A structured event array of :data:`EVENT_DTYPE` from four equal-length sequences."""
    t = np.asarray(t)
    out = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    out["t"], out["x"], out["y"], out["p"] = t, x, y, p
    return out


def _read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read event file {str(path)!r}: {err.strerror or err}") from None


def read_nmnist_bin(path: str | Path) -> np.ndarray:
    """Events of one N-MNIST (or N-Caltech101) ``.bin`` file (layout in the module docstring)."""
    raw = _read_bytes(path)
    if len(raw) % 5:
        raise DatasetError(f"{str(path)!r} is not an N-MNIST .bin file: {len(raw)} bytes is not a whole number of "
                           f"5-byte events (truncated or corrupt); delete it and extract the archive again")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    y = rec[:, 1]
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    overflow = y == _NMNIST_OVERFLOW_Y
    if overflow.any():
        t = t + _NMNIST_OVERFLOW_US * np.cumsum(overflow)
    keep = ~overflow
    return make_events(t[keep], rec[keep, 0], y[keep], rec[keep, 2] >> 7)


def _header_end(raw: bytes, path, magic: bytes, end_marker: bytes | None) -> int:
    """Byte offset just past the ASCII header (lines starting with ``#``); checks the first line is ``magic``."""
    if not raw.startswith(magic):
        raise DatasetError(f"{str(path)!r} is not an {magic[3:].decode()} file: it does not start with "
                           f"{magic.decode()!r}")
    pos = 0
    # binary data cannot be mistaken for a header line: AEDAT 2.0 DVS128 addresses are < 2**16, so their first
    # (big-endian) byte is 0, and AEDAT 3.1 headers end at an explicit marker
    while pos < len(raw) and raw[pos:pos + 1] == b"#":
        nl = raw.find(b"\n", pos)
        if nl < 0:
            raise DatasetError(f"{str(path)!r}: the header never ends (truncated file)")
        line, pos = raw[pos:nl].rstrip(b"\r"), nl + 1
        if end_marker is not None and line == end_marker:
            return pos
    if end_marker is not None:
        raise DatasetError(f"{str(path)!r}: no {end_marker.decode()!r} line after the header (truncated or corrupt)")
    return pos


def read_aedat31(path: str | Path) -> np.ndarray:
    """Polarity events of one AEDAT 3.1 file (DVS128 Gesture; layout in the module docstring)."""
    raw = _read_bytes(path)
    pos = _header_end(raw, path, _AEDAT31_MAGIC, _END_HEADER)
    parts = []
    while pos < len(raw):
        if len(raw) - pos < _PACKET_HEADER.itemsize:
            raise DatasetError(f"{str(path)!r}: truncated packet header at byte {pos} (file cut short?)")
        head = np.frombuffer(raw, dtype=_PACKET_HEADER, count=1, offset=pos)[0]
        size, capacity, number = int(head["size"]), int(head["capacity"]), int(head["number"])
        if size <= 0 or capacity < 0 or not 0 <= number <= capacity:
            raise DatasetError(f"{str(path)!r}: corrupt packet header at byte {pos} (eventSize={size}, "
                               f"eventCapacity={capacity}, eventNumber={number})")
        start = pos + _PACKET_HEADER.itemsize
        pos = start + size * capacity
        if pos > len(raw):
            raise DatasetError(f"{str(path)!r}: packet at byte {start - _PACKET_HEADER.itemsize} holds "
                               f"{size * capacity} bytes of events but the file ends after {len(raw) - start}")
        if int(head["type"]) != _POLARITY_EVENT:
            continue
        if size != 8:
            raise DatasetError(f"{str(path)!r}: polarity packet with eventSize={size}, expected 8")
        words = np.frombuffer(raw, dtype="<u4", count=2 * number, offset=start).reshape(-1, 2)
        data, stamp = words[:, 0].astype(np.int64), words[:, 1].view("<i4").astype(np.int64)
        ok = (data & 1) == 1
        t = (int(head["ts_overflow"]) << 31) | stamp[ok]
        parts.append(make_events(t, (data[ok] >> 17) & 0x7FFF, (data[ok] >> 2) & 0x7FFF, (data[ok] >> 1) & 1))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=EVENT_DTYPE)


def read_aedat2_dvs128(path: str | Path) -> np.ndarray:
    """Events of one AEDAT 2.0 file with DVS128 addresses (CIFAR10-DVS; layout in the module docstring)."""
    raw = _read_bytes(path)
    pos = _header_end(raw, path, _AEDAT2_MAGIC, None)
    if (len(raw) - pos) % 8:
        raise DatasetError(f"{str(path)!r}: {len(raw) - pos} bytes after the header is not a whole number of 8-byte "
                           f"events (truncated or corrupt); delete it and extract the archive again")
    words = np.frombuffer(raw, dtype=">u4", offset=pos).reshape(-1, 2).astype(np.int64)
    addr, t = words[:, 0], words[:, 1]
    keep = (addr & 0x8000) == 0
    addr, t = addr[keep], t[keep]
    x_raw, y_raw = (addr >> 1) & 0x7F, (addr >> 8) & 0x7F
    return make_events(t, 127 - y_raw, 127 - x_raw, 1 - (addr & 1))


def read_gesture_labels(path: str | Path) -> np.ndarray:
    """``[n, 3]`` int64 rows ``(label 0..10, start µs, end µs)`` from a DVS128 Gesture ``<name>_labels.csv``
    (header ``class,startTime_usec,endTime_usec``; classes 1..11 in the file)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise DatasetError(f"cannot read label file {str(path)!r}: {err.strerror or err}") from None
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if not rows or [c.strip() for c in rows[0]] != ["class", "startTime_usec", "endTime_usec"]:
        raise DatasetError(f"{str(path)!r}: expected the header 'class,startTime_usec,endTime_usec'")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        try:
            cls, start, end = (int(c) for c in row)
        except ValueError:
            raise DatasetError(f"{str(path)!r} line {i}: expected three integers, got {','.join(row)!r}") from None
        if not 1 <= cls <= 11 or end <= start:
            raise DatasetError(f"{str(path)!r} line {i}: class must be 1..11 and end > start, got {row!r}")
        out.append((cls - 1, start, end))
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


def read_trials(path: str | Path) -> list[str]:
    """The ``.aedat`` file names listed in ``trials_to_train.txt`` / ``trials_to_test.txt``."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DatasetError(f"cannot read trial list {str(path)!r}: {err.strerror or err}") from None
    names = [ln.strip() for ln in lines if ln.strip()]
    bad = [n for n in names if not n.endswith(".aedat")]
    if bad:
        raise DatasetError(f"{str(path)!r}: expected one .aedat file name per line, got {bad[0]!r}")
    return names
