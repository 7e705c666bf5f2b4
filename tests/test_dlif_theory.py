"""DLIF theory (docs/dlif.md): one DLIF neuron computes XOR, one LIF cannot; Theorem 1 alignment of K."""

import pytest
import torch

from dendrix.analysis.dlif_theory import (correlation_data, lif_xor_grid_search, offdiag_cosine, train_correlation,
                                          train_xor)


def test_one_dlif_neuron_learns_xor_of_two_spike_trains():
    res = train_xor("dlif", steps=150, seed=0)
    assert res.accuracy == 1.0


def test_one_trained_lif_neuron_stays_at_or_below_three_quarters_on_xor():
    trained = train_xor("lif", steps=100, seed=0)
    # The bound is 75 % in expectation; 20,000 evaluation steps leave ~0.3 % sampling noise.
    assert trained.accuracy <= 0.76


@pytest.mark.slow
def test_best_lif_neuron_on_a_parameter_grid_stays_at_three_quarters_on_xor():
    best = lif_xor_grid_search(points=11, limit=4.0, seed=0)
    assert 0.70 <= best <= 0.76


def test_correlation_task_has_equal_rates_and_different_correlations():
    x, y = correlation_data(200, T=100, seed=3)
    r0, r1 = x[:, y == 0].mean(dim=(0, 1)), x[:, y == 1].mean(dim=(0, 1))
    assert float((r0 - r1).abs().max()) < 0.02
    c0 = torch.corrcoef(x[:, y == 0].reshape(-1, 8).t())
    c1 = torch.corrcoef(x[:, y == 1].reshape(-1, 8).t())
    assert float((c0 - c1).abs().max()) > 0.3


def test_theorem1_trained_k_aligns_with_correlation_difference_and_lif_is_at_chance():
    dlif = train_correlation("dlif", steps=60, trials=256, seed=0)
    assert dlif.accuracy >= 0.95
    assert dlif.cosine > 0.8
    assert abs(offdiag_cosine(dlif.K, dlif.C_diff) - dlif.cosine) < 1e-12
    lif = train_correlation("lif", steps=60, trials=256, seed=0)
    assert 0.38 <= lif.accuracy <= 0.62  # chance: 256 held-out trials, ±3.5 standard deviations
