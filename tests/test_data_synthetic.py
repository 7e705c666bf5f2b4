"""Synthetic tasks: determinism, and that each sample carries exactly the answer it claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dendrix.data import DatasetError, get_dataset
from dendrix.data.synthetic import correlation_spikes, delayed_recall, frequency_spikes, xor_spikes


def test_generators_are_deterministic_by_seed():
    for gen in (xor_spikes, correlation_spikes, delayed_recall, frequency_spikes):
        x1, y1 = gen(40, seed=3)
        x2, y2 = gen(40, seed=3)
        x3, _ = gen(40, seed=4)
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
        assert x1.dtype == torch.float32 and y1.dtype == torch.int64 and set(x1.unique().tolist()) <= {0.0, 1.0}
        assert (torch.bincount(y1).max() - torch.bincount(y1).min()) <= 1  # balanced


def test_xor_labels_follow_group_activity():
    x, y = xor_spikes(200, T=400, rate=0.3, seed=0, channels_per_input=2, background=0.02)
    counts = x.sum(dim=1)  # [n, 4]
    on_a, on_b = counts[:, :2].sum(1) > 100, counts[:, 2:].sum(1) > 100  # 240 expected when on, 16 when off
    assert torch.equal((on_a ^ on_b).long(), y)


def test_correlation_classes_have_equal_rates_and_the_set_correlation():
    x, y = correlation_spikes(2000, T=100, channels=6, rate=0.1, correlation=0.4, seed=1)
    r0, r1 = x[y == 0].mean().item(), x[y == 1].mean().item()
    assert abs(r0 - 0.1) < 0.005 and abs(r1 - 0.1) < 0.005
    for cls, target in ((0, 0.0), (1, 0.4)):
        flat = x[y == cls].reshape(-1, 6).numpy()
        c = np.corrcoef(flat.T)[np.triu_indices(6, 1)]
        assert abs(c.mean() - target) < 0.02


def test_delayed_recall_cue_and_recall():
    x, y = delayed_recall(100, T=60, classes=3, channels_per_class=4, cue_steps=8, recall_steps=4, rate=0.6,
                          noise=0.0, seed=2)
    cue = x[:, :8, :12].sum(dim=1).view(100, 3, 4).sum(-1)
    assert torch.equal(cue.argmax(dim=1), y)
    assert (x[:, -4:, 12] == 1).all() and x[:, 8:-4].sum() == 0 and x[:, :-4, 12].sum() == 0
    with pytest.raises(DatasetError, match="cue_steps"):
        delayed_recall(4, T=10, cue_steps=8, recall_steps=4)


def test_frequency_classes_share_the_rate_and_differ_in_spectrum():
    freqs = (0.05, 0.1, 0.2)
    x, y = frequency_spikes(300, T=200, channels=16, rate=0.2, frequencies=freqs, seed=5)
    rates = [x[y == k].mean().item() for k in range(3)]
    assert max(rates) - min(rates) < 0.01
    spectrum = torch.fft.rfft(x.sum(-1) - x.sum(-1).mean(1, keepdim=True), dim=1).abs()  # [n, 101]
    peak = spectrum[:, 1:].argmax(dim=1) + 1
    assert torch.equal(peak, torch.tensor([round(freqs[k] * 200) for k in y.tolist()]))
    with pytest.raises(DatasetError, match="rate"):
        frequency_spikes(4, rate=0.6, depth=1.0)


def test_synthetic_datasets_splits():
    for name in ("xor", "correlation", "delayed_recall", "frequency"):
        train, val, test = (get_dataset(name, split=s, size=200, test_size=50) for s in ("train", "val", "test"))
        assert (len(train), len(val), len(test)) == (180, 20, 50)
        assert train.info.input_kind == "spikes" and train.info.num_inputs == train[0][0].shape[1]
        other_seed = get_dataset(name, split="test", size=200, test_size=50, seed=7)
        assert torch.equal(test.data, other_seed.data)
    assert get_dataset("delayed_recall", split="test", classes=5, test_size=10).info.num_classes == 5
