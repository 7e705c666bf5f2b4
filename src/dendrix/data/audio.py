"""Audio-to-spikes encoder in the spirit of the Spiking Heidelberg Digits (a cochlea-like front end).

Pipeline for one mono recording ``x`` sampled at ``sample_rate``:

1. **Filterbank.** ``channels`` 4th-order gammatone band-pass filters (the standard linear model of basilar
   membrane tuning; Patterson et al. 1992) with centre frequencies spaced evenly on the ERB-rate scale
   (Glasberg & Moore 1990) between ``f_min`` and ``f_max``. Each filter has unit gain at its centre.
2. **Rectification.** Half-wave rectification ``max(y, 0)`` (inner hair cells respond to one direction).
3. **Envelope per bin.** The mean of the rectified signal over each ``bin_ms`` bin.
4. **Compression.** Level in dB relative to the loudest (bin, channel) of the recording, mapped linearly to
   an intensity in [0, 1] over ``dynamic_range_db`` (quieter bins give 0). Relative levels make the code
   independent of the recording gain, like the adaptation of the auditory nerve.
5. **Spikes.** Each channel is an integrate-and-fire rate coder fed with the intensity quantised to
   ``levels`` steps: ``acc += q[t]``; a spike when ``acc >= levels``, then ``acc -= levels``. Intensity 1
   fires every bin, intensity 1/2 every other bin. Integer arithmetic makes the code reproducible bit for bit.
6. **Fixed length.** The first ``time_steps`` bins are kept; shorter recordings are padded with silence.

The result is a binary ``uint8`` array ``[time_steps, channels]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from .._optional import require

__all__ = ["CochleaEncoder", "erb_space"]


def _erb_rate(f_hz: np.ndarray | float) -> np.ndarray:
    """ERB-rate (number of ERBs below f), Glasberg & Moore (1990)."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f_hz, dtype=np.float64))


def _erb_rate_inverse(e: np.ndarray) -> np.ndarray:
    return (10.0 ** (np.asarray(e, dtype=np.float64) / 21.4) - 1.0) / 0.00437


def erb_space(f_min: float, f_max: float, channels: int) -> np.ndarray:
    """``channels`` centre frequencies (Hz) spaced evenly on the ERB-rate scale, ascending."""
    return _erb_rate_inverse(np.linspace(_erb_rate(f_min), _erb_rate(f_max), channels))


@lru_cache(maxsize=8)
def _gammatone_bank(centres: tuple[float, ...], sample_rate: int) -> tuple[np.ndarray, ...]:
    # second-order sections: robust for the poles near the unit circle of low centre frequencies
    signal = require("scipy.signal", needed_by="dendrix.data.audio")
    return tuple(signal.tf2sos(*signal.gammatone(f, "iir", fs=sample_rate)) for f in centres)


@dataclass(frozen=True)
class CochleaEncoder:
    """Gammatone filterbank → half-wave rectification → dB compression → integrate-and-fire spikes.

    Args:
        sample_rate: sampling rate of the input (Hz). Default 8000 (FSDD).
        channels: number of filterbank channels (= spike channels). Default 64.
        f_min, f_max: lowest and highest centre frequency (Hz); ``f_max`` below Nyquist. Default 100, 3600.
        bin_ms: width of a time bin (ms). Default 10.
        time_steps: bins kept per recording (pad or crop). Default 100 (1.0 s).
        dynamic_range_db: levels this far below the recording's loudest bin map to intensity 0. Default 45.
        levels: quantisation steps of the intensity for the integer spike coder. Default 64.
    """

    sample_rate: int = 8000
    channels: int = 64
    f_min: float = 100.0
    f_max: float = 3600.0
    bin_ms: float = 10.0
    time_steps: int = 100
    dynamic_range_db: float = 45.0
    levels: int = 64

    def __post_init__(self) -> None:
        from ..validation import check_int, check_positive

        check_int("sample_rate", self.sample_rate, minimum=1)
        check_int("channels", self.channels, minimum=1)
        check_int("time_steps", self.time_steps, minimum=1)
        check_int("levels", self.levels, minimum=1)
        check_positive("f_min", self.f_min)
        check_positive("bin_ms", self.bin_ms)
        check_positive("dynamic_range_db", self.dynamic_range_db)
        if not self.f_min < self.f_max < self.sample_rate / 2:
            raise ValueError(f"need 0 < f_min < f_max < sample_rate/2, got f_min={self.f_min}, "
                             f"f_max={self.f_max}, sample_rate={self.sample_rate}")
        if self.bin_samples < 1 or abs(self.bin_samples - self.bin_ms * self.sample_rate / 1000) > 1e-9:
            raise ValueError(f"bin_ms={self.bin_ms} must be a whole number of samples at {self.sample_rate} Hz")

    @property
    def bin_samples(self) -> int:
        return int(round(self.bin_ms * self.sample_rate / 1000))

    @property
    def centre_frequencies(self) -> np.ndarray:
        return erb_space(self.f_min, self.f_max, self.channels)

    def to_dict(self) -> dict:
        return asdict(self)

    def _filters(self) -> tuple[np.ndarray, ...]:
        return _gammatone_bank(tuple(float(f) for f in self.centre_frequencies), self.sample_rate)

    def envelope(self, waveform: np.ndarray) -> np.ndarray:
        """Mean half-wave-rectified filter output per bin: float64 ``[bins, channels]`` (all bins, uncropped)."""
        x = np.asarray(waveform, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"waveform must be mono (1-D), got shape {x.shape}")
        if x.size == 0:
            raise ValueError("waveform is empty")
        x = x - x.mean()
        n = self.bin_samples
        bins = -(-x.size // n)
        pad = bins * n - x.size
        out = np.empty((bins, self.channels), dtype=np.float64)
        counts = np.full(bins, n, dtype=np.float64)
        counts[-1] = n - pad
        sosfilt = require("scipy.signal", needed_by="dendrix.data.audio").sosfilt
        for c, sos in enumerate(self._filters()):
            y = np.maximum(sosfilt(sos, x), 0.0)
            y = np.concatenate([y, np.zeros(pad)]).reshape(bins, n)
            out[:, c] = y.sum(axis=1) / counts
        return out

    def intensity(self, envelope: np.ndarray) -> np.ndarray:
        """Quantised intensity in ``0..levels`` (int64) from an envelope ``[bins, channels]``."""
        peak = float(envelope.max())
        if peak <= 0.0:
            return np.zeros(envelope.shape, dtype=np.int64)
        with np.errstate(divide="ignore"):
            level_db = 20.0 * np.log10(envelope / peak)
        rel = np.clip(1.0 + level_db / self.dynamic_range_db, 0.0, 1.0)
        return np.rint(rel * self.levels).astype(np.int64)

    def spikes_from_intensity(self, q: np.ndarray) -> np.ndarray:
        """Integrate-and-fire rate coding of quantised intensities ``[bins, channels]`` → uint8 spikes."""
        spikes = np.zeros((self.time_steps, q.shape[1]), dtype=np.uint8)
        acc = np.zeros(q.shape[1], dtype=np.int64)
        for t in range(min(self.time_steps, q.shape[0])):
            acc += q[t]
            fired = acc >= self.levels
            spikes[t] = fired
            acc -= self.levels * fired
        return spikes

    def encode(self, waveform: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """Encode one recording into binary spikes ``uint8 [time_steps, channels]``."""
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise ValueError(f"recording has sample rate {sample_rate} Hz, the encoder expects {self.sample_rate} Hz")
        return self.spikes_from_intensity(self.intensity(self.envelope(waveform)))
