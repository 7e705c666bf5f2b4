"""Synthetic spike tasks with known answers, deterministic by seed.

Each generator returns ``(x, y)``: ``x`` float32 ``[n, T, C]`` of 0/1 spikes (batch-first, like data set items;
``x.transpose(0, 1)`` gives time-first) and ``y`` int64 ``[n]``. Classes are balanced (``n`` split as evenly
as possible, in random order). Every step of every channel is an independent Bernoulli draw unless stated.

- :func:`xor_spikes`: two input groups, each "on" (``rate``) or "off" (``background``); label = on_A XOR on_B.
  Not linearly separable in the spike counts, so a single point neuron without nonlinear dendrites fails.
- :func:`correlation_spikes`: every channel fires with the same rate ``rate`` in both classes; class 1 has
  pairwise correlation ``correlation`` between channels, class 0 none. Rates carry no information.
- :func:`delayed_recall`: a class cue in the first ``cue_steps``, a silent (noisy) delay, then a recall signal
  on a separate channel; the label is the cue class. Needs memory over the delay.
- :func:`frequency_spikes`: trains whose rate is modulated sinusoidally at one of several frequencies, with a
  random phase and the same mean rate in every class; label = the frequency index (a task for resonators).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import ArrayDataset, DatasetError, DatasetInfo, check_split, select_split

__all__ = ["xor_spikes", "correlation_spikes", "delayed_recall", "frequency_spikes", "xor_dataset",
           "correlation_dataset", "delayed_recall_dataset", "frequency_dataset"]


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *stream]))


def _balanced_labels(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes).astype(np.int64)


def _check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DatasetError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_prob(name: str, value, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise DatasetError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _out(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))


def xor_spikes(n: int, T: int = 50, rate: float = 0.3, seed: int = 0, channels_per_input: int = 1,
               background: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """XOR of two spike trains. Inputs: ``2 * channels_per_input`` channels (group A first). Each group is
    "on" (Bernoulli ``rate`` per step) or "off" (``background``); label ``on_A XOR on_B`` (4 combinations,
    balanced)."""
    n, T = _check_count("n", n), _check_count("T", T)
    k = _check_count("channels_per_input", channels_per_input)
    rate, background = _check_prob("rate", rate), _check_prob("background", background)
    rng = _rng(seed, 1)
    combo = _balanced_labels(rng, n, 4)
    on = np.stack([combo // 2, combo % 2], axis=1)                            # [n, 2]
    p = np.where(np.repeat(on, k, axis=1) == 1, rate, background)             # [n, 2k]
    x = rng.random((n, T, 2 * k)) < p[:, None, :]
    return _out(x, on[:, 0] ^ on[:, 1])


def correlation_spikes(n: int, T: int = 100, channels: int = 10, rate: float = 0.1, correlation: float = 0.5,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-rate correlation discrimination. Class 0: independent Bernoulli(``rate``) trains. Class 1: each
    channel copies the spikes of a shared mother train (Bernoulli ``rate / a``) with probability
    ``a = correlation * (1 - rate) + rate``, which gives every channel the rate ``rate`` and every pair the
    correlation coefficient ``correlation``, exactly, per time step."""
    n, T, C = _check_count("n", n), _check_count("T", T), _check_count("channels", channels, 2)
    rate = _check_prob("rate", rate, 1e-6, 1.0 - 1e-6)
    correlation = _check_prob("correlation", correlation, 0.0, 1.0)
    rng = _rng(seed, 2)
    y = _balanced_labels(rng, n, 2)
    keep = correlation * (1.0 - rate) + rate
    mother = rng.random((n, T, 1)) < rate / keep
    correlated = mother & (rng.random((n, T, C)) < keep)
    independent = rng.random((n, T, C)) < rate
    x = np.where(y[:, None, None] == 1, correlated, independent)
    return _out(x, y)


def delayed_recall(n: int, T: int = 100, classes: int = 4, channels_per_class: int = 4, cue_steps: int = 10,
                   recall_steps: int = 5, rate: float = 0.5, noise: float = 0.01, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Delayed recall. Channels: ``classes * channels_per_class`` cue channels, then one recall channel.
    Steps ``[0, cue_steps)``: the cue group of the label fires at ``rate``; the last ``recall_steps`` steps the
    recall channel fires every step; all other steps/channels fire at ``noise``. The delay between cue and
    recall is ``T - cue_steps - recall_steps`` steps."""
    n, T = _check_count("n", n), _check_count("T", T)
    K, k = _check_count("classes", classes, 2), _check_count("channels_per_class", channels_per_class)
    cue, recall = _check_count("cue_steps", cue_steps), _check_count("recall_steps", recall_steps)
    if cue + recall > T:
        raise DatasetError(f"cue_steps + recall_steps must be <= T, got {cue} + {recall} > {T}")
    rate, noise = _check_prob("rate", rate), _check_prob("noise", noise)
    rng = _rng(seed, 3)
    y = _balanced_labels(rng, n, K)
    C = K * k + 1
    p = np.full((n, T, C), noise)
    group = np.arange(K * k) // k                                           # cue channel -> class
    p[:, :cue, :K * k] = np.where(group[None, None, :] == y[:, None, None], rate, noise)
    p[:, T - recall:, K * k] = 1.0
    return _out(rng.random((n, T, C)) < p, y)


def frequency_spikes(n: int, T: int = 100, channels: int = 8, rate: float = 0.2,
                     frequencies: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2), depth: float = 1.0, seed: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequency discrimination at equal mean rate. Every channel of sample ``i`` fires with probability
    ``rate * (1 + depth * sin(2 pi f_y t + phi_i))`` at step ``t`` (``f`` in cycles per step, ``phi_i`` uniform
    random); label ``y`` = index into ``frequencies``. Needs ``rate * (1 + depth) <= 1``."""
    n, T, C = _check_count("n", n), _check_count("T", T), _check_count("channels", channels)
    rate, depth = _check_prob("rate", rate), _check_prob("depth", depth)
    freqs = np.asarray(frequencies, dtype=np.float64)
    if freqs.ndim != 1 or freqs.size < 2 or np.any(freqs <= 0) or np.any(freqs > 0.5) or np.unique(freqs).size != freqs.size:
        raise DatasetError(f"frequencies must be >= 2 distinct values in (0, 0.5] cycles per step, got {frequencies!r}")
    if rate * (1 + depth) > 1:
        raise DatasetError(f"rate * (1 + depth) must be <= 1, got {rate} * (1 + {depth})")
    rng = _rng(seed, 4)
    y = _balanced_labels(rng, n, freqs.size)
    phase = rng.uniform(0.0, 2.0 * math.pi, size=n)
    t = np.arange(T)
    p = rate * (1.0 + depth * np.sin(2.0 * math.pi * freqs[y][:, None] * t[None, :] + phase[:, None]))
    return _out(rng.random((n, T, C)) < p[:, :, None], y)


# --- data sets (get_dataset names "xor", "correlation", "delayed_recall", "frequency") ----------------------

def _synthetic_dataset(name: str, generate, num_classes: int, split: str, seed: int, data_seed: int, size: int,
                       test_size: int, val_fraction: float) -> ArrayDataset:
    """Train+val (``size`` items) and test (``test_size``) come from separate streams of ``data_seed``, so the
    test set never depends on ``seed`` (which only picks the validation part)."""
    check_split(split)
    size, test_size = _check_count("size", size, 2), _check_count("test_size", test_size)
    if split == "test":
        x, y = generate(test_size, int(data_seed) * 2 + 1)
    else:
        x, y = generate(size, int(data_seed) * 2)
        sel = select_split(y.numpy(), np.arange(size), np.zeros(0, dtype=np.int64), split, seed, val_fraction)
        x, y = x[torch.from_numpy(sel)], y[torch.from_numpy(sel)]
    info = DatasetInfo(name, num_inputs=int(x.shape[2]), num_classes=num_classes, time_steps=int(x.shape[1]),
                       input_kind="spikes")
    return ArrayDataset(x.to(torch.uint8), y, info)


def xor_dataset(split: str = "train", root=None, seed: int = 0, data_seed: int = 0, size: int = 2000,
                test_size: int = 1000, val_fraction: float = 0.1, time_steps: int = 50, rate: float = 0.3,
                channels_per_input: int = 1, background: float = 0.02) -> ArrayDataset:
    """XOR task as a data set (see :func:`xor_spikes`)."""
    gen = lambda n, s: xor_spikes(n, time_steps, rate, s, channels_per_input, background)  # noqa: E731
    return _synthetic_dataset("xor", gen, 2, split, seed, data_seed, size, test_size, val_fraction)


def correlation_dataset(split: str = "train", root=None, seed: int = 0, data_seed: int = 0, size: int = 2000,
                        test_size: int = 1000, val_fraction: float = 0.1, time_steps: int = 100, channels: int = 10,
                        rate: float = 0.1, correlation: float = 0.5) -> ArrayDataset:
    """Equal-rate correlation discrimination as a data set (see :func:`correlation_spikes`)."""
    gen = lambda n, s: correlation_spikes(n, time_steps, channels, rate, correlation, s)  # noqa: E731
    return _synthetic_dataset("correlation", gen, 2, split, seed, data_seed, size, test_size, val_fraction)


def delayed_recall_dataset(split: str = "train", root=None, seed: int = 0, data_seed: int = 0, size: int = 2000,
                           test_size: int = 1000, val_fraction: float = 0.1, time_steps: int = 100,
                           classes: int = 4, channels_per_class: int = 4, cue_steps: int = 10,
                           recall_steps: int = 5, rate: float = 0.5, noise: float = 0.01) -> ArrayDataset:
    """Delayed recall as a data set (see :func:`delayed_recall`)."""
    gen = lambda n, s: delayed_recall(n, time_steps, classes, channels_per_class, cue_steps,  # noqa: E731
                                      recall_steps, rate, noise, s)
    return _synthetic_dataset("delayed_recall", gen, int(classes), split, seed, data_seed, size, test_size,
                              val_fraction)


def frequency_dataset(split: str = "train", root=None, seed: int = 0, data_seed: int = 0, size: int = 2000,
                      test_size: int = 1000, val_fraction: float = 0.1, time_steps: int = 100, channels: int = 8,
                      rate: float = 0.2, frequencies: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2),
                      depth: float = 1.0) -> ArrayDataset:
    """Frequency discrimination as a data set (see :func:`frequency_spikes`)."""
    gen = lambda n, s: frequency_spikes(n, time_steps, channels, rate, tuple(frequencies), depth, s)  # noqa: E731
    return _synthetic_dataset("frequency", gen, len(tuple(frequencies)), split, seed, data_seed, size, test_size,
                              val_fraction)
