"""Writers of small event files in the exact published byte layouts, for the reader tests. Written with
``struct`` one event at a time, independently of the numpy readers in ``dendrix.data.events``."""

from __future__ import annotations

import struct
from pathlib import Path


def write_nmnist_bin(path: Path, events, overflow_after: int | None = None) -> None:
    """``events``: (x, y, p, t) with t < 2**23 µs. ``overflow_after=i`` inserts a timestamp-overflow record
    (y = 240) after event i; the t of later events must then be given *without* the 2**13 µs it adds."""
    out = bytearray()
    for i, (x, y, p, t) in enumerate(events):
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
        if overflow_after == i:
            out += bytes([0, 240, 0, 0, 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))


AEDAT31_HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
                  b"#Start-Time: 2017-01-01 12:00:00 (TZ+0000)\r\n#!END-HEADER\r\n")


def aedat31_packet(events, overflow: int = 0, event_type: int = 1, invalid: frozenset = frozenset()) -> bytes:
    """One packet: 28-byte header (eventType, eventSource, eventSize, eventTSOffset, eventTSOverflow,
    eventCapacity, eventNumber, eventValid) and 8-byte polarity events (uint32 data, int32 timestamp)."""
    body = bytearray()
    for i, (x, y, p, t) in enumerate(events):
        data = (x << 17) | (y << 2) | (p << 1) | (0 if i in invalid else 1)
        body += struct.pack("<Ii", data, t)
    n = len(events)
    return struct.pack("<hhiiiiii", event_type, 1, 8, 4, overflow, n, n, n - len(invalid)) + bytes(body)


def write_aedat31(path: Path, packets: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(AEDAT31_HEADER + b"".join(packets))


AEDAT2_HEADER = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                 b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
                 b"# Timestamps tick is 1 us\r\n# created Thu Jan 01 12:00:00 CST 2016\r\n")


def dvs128_address(x: int, y: int, p: int) -> int:
    """The jAER DVS128 address whose decoded image event (SpikingJelly orientation) is (x, y, p)."""
    x_raw, y_raw = 127 - y, 127 - x
    return (y_raw << 8) | (x_raw << 1) | (1 - p)


def write_aedat2(path: Path, events, external: int = 0) -> None:
    """Big-endian (uint32 address, uint32 timestamp) per event; ``external`` extra records with bit 15 set."""
    body = bytearray()
    for x, y, p, t in events:
        body += struct.pack(">II", dvs128_address(x, y, p), t)
    for k in range(external):
        body += struct.pack(">II", 0x8000 | k, 10 + k)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(AEDAT2_HEADER + bytes(body))


def random_events(rng, n: int, width: int, height: int, t_max: int, t_min: int = 0):
    """n events (x, y, p, t) with increasing timestamps."""
    ts = sorted(int(v) for v in rng.integers(t_min, t_max, size=n))
    return [(int(rng.integers(width)), int(rng.integers(height)), int(rng.integers(2)), t) for t in ts]
