"""Spiking Free Spoken Digit Dataset (FSDD): the embedded default data set.

The 3,000 FSDD recordings (6 speakers × 10 digits × 50 repetitions, 8 kHz; CC BY-SA 4.0, Jakobovski/
free-spoken-digit-dataset) are encoded by :class:`~dendrix.data.audio.CochleaEncoder` into binary spikes
``[100 steps of 10 ms, 64 channels]`` and shipped bit-packed in ``dendrix/data/embedded/fsdd_spikes.npz``.
:func:`build_fsdd` (``dendrix data build-fsdd``) rebuilds that file, bit for bit, from the raw recordings.

Splits: ``split_mode="official"`` tests on recording indices 0–4 and trains on 5–49; ``split_mode="speaker"``
tests on every recording of ``test_speaker`` and trains on the other five speakers. ``val`` is a stratified
``val_fraction`` of the training part chosen by ``seed``; ``train`` is the rest and ``train_full`` both.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from .._optional import require
from ..files import atomic_write
from .audio import CochleaEncoder
from .base import ArrayDataset, DatasetError, DatasetInfo, check_split, select_split

__all__ = ["EMBEDDED_FSDD", "FSDD_ENCODER", "build_fsdd", "encode_recordings", "load_fsdd", "fsdd_dataset",
           "parse_recording_name"]

EMBEDDED_FSDD = Path(__file__).resolve().parent / "embedded" / "fsdd_spikes.npz"
FSDD_ENCODER = CochleaEncoder()  # the parameters of the shipped copy
FSDD_SOURCE = "Jakobovski/free-spoken-digit-dataset@26eb9aaf76e81b692f806f9140c2d2777410d7a1 recordings/"
FSDD_LICENSE = "CC BY-SA 4.0 (derived from the Free Spoken Digit Dataset)"
# digit _ speaker _ index .wav; a speaker name may hold letters, digits, "-" and "_" (the index is the last part)
_NAME = re.compile(r"^(\d)_([A-Za-z0-9][A-Za-z0-9_-]*)_(\d+)\.wav$")
_FORMAT_VERSION = 1


def parse_recording_name(name: str) -> tuple[int, str, int]:
    """``"7_jackson_32.wav"`` → ``(7, "jackson", 32)``; ``"7_user1_3.wav"`` → ``(7, "user1", 3)``."""
    m = _NAME.match(name)
    if not m:
        raise DatasetError(f"{name!r} is not an FSDD recording name ({{digit}}_{{speaker}}_{{index}}.wav, the speaker made of letters, digits, \"-\" or \"_\")")
    return int(m.group(1)), m.group(2), int(m.group(3))


def _find_recordings(source: str | Path) -> list[Path]:
    source = Path(source).expanduser()
    if not source.is_dir():
        raise DatasetError(f"FSDD source folder {str(source)!r} does not exist; point --source at the FSDD "
                           f"'recordings' folder (files like 7_jackson_32.wav)")
    for folder in (source, source / "recordings"):
        wavs = sorted(p for p in folder.glob("*.wav") if p.is_file())
        if wavs:
            return wavs
    raise DatasetError(f"no .wav recordings in {str(source)!r} or its 'recordings' subfolder")


def _read_wav(path: Path) -> tuple[int, np.ndarray]:
    wavfile = require("scipy.io.wavfile", needed_by="dendrix.data.fsdd (reading WAV files)")

    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError) as err:
        raise DatasetError(f"cannot read {str(path)!r} as a WAV file: {err}") from None
    if data.ndim != 1:
        raise DatasetError(f"{str(path)!r}: expected a mono recording, got {data.shape[1]} channels")
    if data.dtype.kind in "iu":
        info = np.iinfo(data.dtype)
        data = (data.astype(np.float64) - (info.max + 1 + info.min) / 2) / (info.max + 1)
    return int(rate), data.astype(np.float64)


def encode_recordings(paths: Iterable[str | Path], encoder: CochleaEncoder = FSDD_ENCODER,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Encode FSDD recordings (in the canonical order: digit, speaker, index).

    Returns arrays ``spikes`` uint8 ``[N, T, C]``, ``labels``, ``speakers`` (names), ``indices`` and ``lengths``
    (bins in the recording before padding/cropping)."""
    entries = []
    for p in paths:
        p = Path(p)
        digit, speaker, index = parse_recording_name(p.name)
        entries.append((digit, speaker, index, p))
    if not entries:
        raise DatasetError("no FSDD recordings to encode")
    entries.sort(key=lambda e: e[:3])
    n = len(entries)
    spikes = np.zeros((n, encoder.time_steps, encoder.channels), dtype=np.uint8)
    lengths = np.zeros(n, dtype=np.int64)
    for i, (_, _, _, p) in enumerate(entries):
        rate, wave = _read_wav(p)
        if rate != encoder.sample_rate:
            raise DatasetError(f"{str(p)!r} has sample rate {rate} Hz; the encoder expects {encoder.sample_rate} Hz")
        q = encoder.intensity(encoder.envelope(wave))
        spikes[i] = encoder.spikes_from_intensity(q)
        lengths[i] = q.shape[0]
        if progress is not None:
            progress(i + 1, n)
    return {
        "spikes": spikes,
        "labels": np.array([e[0] for e in entries], dtype=np.int64),
        "speakers": np.array([e[1] for e in entries]),
        "indices": np.array([e[2] for e in entries], dtype=np.int64),
        "lengths": lengths,
    }


def _write_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps, so equal content gives equal bytes."""
    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue(), compresslevel=9)
    atomic_write(path, write)


def build_fsdd(source: str | Path, out: str | Path, encoder: CochleaEncoder = FSDD_ENCODER,
               progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Encode every recording under ``source`` and write the bit-packed copy to ``out`` (deterministic bytes).

    Returns the unpacked arrays (see :func:`encode_recordings`)."""
    enc = encode_recordings(_find_recordings(source), encoder, progress)
    speaker_names = np.array(sorted(set(enc["speakers"].tolist())))
    speaker_idx = np.searchsorted(speaker_names, enc["speakers"])
    meta = {"format_version": _FORMAT_VERSION, "encoder": encoder.to_dict(), "source": FSDD_SOURCE,
            "license": FSDD_LICENSE, "shape": list(enc["spikes"].shape)}
    _write_npz_deterministic(Path(out), {
        "spikes": np.packbits(enc["spikes"], axis=-1),
        "labels": enc["labels"].astype(np.uint8),
        "speaker": speaker_idx.astype(np.uint8),
        "speaker_names": speaker_names,
        "index": enc["indices"].astype(np.uint8),
        "length": enc["lengths"].astype(np.uint16),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    })
    return enc


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"].reshape(-1)[0]))
            shape = tuple(meta["shape"])
            spikes = np.unpackbits(z["spikes"], axis=-1, count=shape[-1])
            out = {
                "spikes": torch.from_numpy(np.ascontiguousarray(spikes)),
                "labels": z["labels"].astype(np.int64),
                "speakers": z["speaker_names"][z["speaker"]],
                "indices": z["index"].astype(np.int64),
                "lengths": z["length"].astype(np.int64),
                "meta": meta,
            }
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise DatasetError(f"{path!r} is not a valid spiking-FSDD file ({type(err).__name__}: {err}); rebuild it "
                           f"with `dendrix data build-fsdd --source DIR --out FILE`") from None
    if tuple(out["spikes"].shape) != shape:
        raise DatasetError(f"{path!r}: spikes have shape {tuple(out['spikes'].shape)}, metadata says {shape}")
    return out


def load_fsdd(path: str | Path | None = None) -> dict:
    """The encoded FSDD arrays (unpacked): ``spikes`` uint8 tensor ``[N, T, C]``, ``labels``, ``speakers``,
    ``indices``, ``lengths`` and ``meta`` (encoder parameters, source, licence). Default: the embedded copy."""
    p = Path(path).expanduser() if path is not None else EMBEDDED_FSDD
    if not p.is_file():
        hint = ("the package is missing its embedded data; reinstall dendrix" if path is None
                else "build it with `dendrix data build-fsdd --source DIR --out FILE`")
        raise DatasetError(f"spiking-FSDD file {str(p)!r} not found; {hint}")
    return _load_cached(str(p), p.stat().st_mtime_ns)


def fsdd_dataset(split: str = "train", root=None, seed: int = 0, split_mode: str = "official",
                 test_speaker: str | None = None, val_fraction: float = 0.1, path: str | Path | None = None
                 ) -> ArrayDataset:
    """Spiking FSDD split (see the module docstring). ``path`` reads a rebuilt file instead of the embedded one;
    ``root`` is accepted for a uniform signature (a ``fsdd_spikes.npz`` inside it is used if present)."""
    check_split(split)
    if path is None and root is not None and (Path(root).expanduser() / "fsdd_spikes.npz").is_file():
        path = Path(root).expanduser() / "fsdd_spikes.npz"
    d = load_fsdd(path)
    labels, speakers, indices = d["labels"], d["speakers"], d["indices"]
    if split_mode == "official":
        if test_speaker is not None:
            raise DatasetError("test_speaker is only used with split_mode='speaker'")
        test, train_full = np.flatnonzero(indices <= 4), np.flatnonzero(indices >= 5)
    elif split_mode == "speaker":
        names = sorted(set(speakers.tolist()))
        if test_speaker not in names:
            raise DatasetError(f"split_mode='speaker' needs test_speaker= one of {names}, got {test_speaker!r}")
        test, train_full = np.flatnonzero(speakers == test_speaker), np.flatnonzero(speakers != test_speaker)
    else:
        raise DatasetError(f"split_mode must be 'official' or 'speaker', got {split_mode!r}")
    sel = select_split(labels, train_full, test, split, seed, val_fraction)
    spikes = d["spikes"]
    info = DatasetInfo("fsdd", num_inputs=int(spikes.shape[2]), num_classes=10, time_steps=int(spikes.shape[1]),
                       input_kind="spikes")
    meta = {"speaker": speakers[sel], "index": indices[sel], "length": d["lengths"][sel]}
    return ArrayDataset(spikes.index_select(0, torch.from_numpy(sel)), labels[sel], info, meta=meta)
