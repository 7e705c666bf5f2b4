"""Spike encoders: statistics of the rate codes, order of the latency code, reconstruction by the delta code,
the direct code, seeding and argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from dendrix.data.encoders import delta_encode, direct_encode, latency_encode, rate_encode

LEVELS = torch.linspace(0.0, 1.0, 11).repeat(3, 1)  # [B=3, 11]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_bernoulli_rate_mean_within_binomial_tolerance():
    T = 4000
    s = rate_encode(LEVELS, T, generator=_gen(0))
    assert s.shape == (T, 3, 11) and set(s.unique().tolist()) <= {0.0, 1.0}
    mean = s.mean(0)
    tol = 5 * torch.sqrt(LEVELS * (1 - LEVELS) / T) + 1e-6
    assert bool(((mean - LEVELS).abs() <= tol).all())
    assert float(s[:, :, 0].sum()) == 0.0 and float(s[:, :, -1].mean()) == 1.0
    half = rate_encode(LEVELS, T, gain=0.5, generator=_gen(1)).mean(0)
    assert bool(((half - 0.5 * LEVELS).abs() <= 5 * math.sqrt(0.25 / T)).all())


def test_poisson_rate_mean_and_variance():
    T = 4000
    counts = rate_encode(LEVELS, T, mode="poisson", gain=2.0, generator=_gen(2))
    lam = 2.0 * LEVELS
    tol = 5 * torch.sqrt(lam / T) + 1e-6
    assert bool(((counts.mean(0) - lam).abs() <= tol).all())
    assert float(counts.max()) > 1.0                          # counts, not capped at one spike
    var = counts[:, :, -1].var(0)                             # Poisson: variance = mean = 2
    assert bool(((var - 2.0).abs() < 0.3).all())


def test_rate_is_seeded():
    a = rate_encode(LEVELS, 50, generator=_gen(7))
    b = rate_encode(LEVELS, 50, generator=_gen(7))
    c = rate_encode(LEVELS, 50, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_latency_linear_one_spike_earlier_for_larger_input():
    T = 11
    x = torch.linspace(0.0, 1.0, 101).unsqueeze(0)            # [1, 101]
    s = latency_encode(x, T)
    assert s.shape == (T, 1, 101)
    counts = s.sum(0)[0]
    assert float(counts[0]) == 0.0 and bool((counts[1:] == 1).all())   # x = 0 (<= threshold) never fires
    first = s.argmax(0)[0, 1:]
    assert bool((first[1:] <= first[:-1]).all())              # monotone: larger x, earlier spike
    assert int(first[-1]) == 0 and int(first[0]) == T - 1
    torch.testing.assert_close(first.float(), torch.round((1 - x[0, 1:]) * (T - 1)))
    assert float(latency_encode(x, T, threshold=0.5).sum()) == float((x > 0.5).sum())


def test_latency_log_is_the_rc_firing_time():
    T, tau, theta = 40, 5.0, 0.2
    x = torch.linspace(0.0, 1.0, 201).unsqueeze(0)
    s = latency_encode(x, T, mode="log", tau=tau, theta=theta)
    fired = s.sum(0)[0] == 1
    assert bool((s.sum(0) <= 1).all())
    assert not bool(fired[x[0] <= theta].any())
    first = s.argmax(0)[0][fired]
    assert bool((first[1:] <= first[:-1]).all())
    xs = x[0][fired]
    torch.testing.assert_close(first.float(), torch.round(tau * torch.log(xs / (xs - theta))))


def test_delta_reconstructs_within_threshold():
    t = torch.linspace(0, 4 * math.pi, 200)
    x = torch.stack([torch.sin(t), 0.5 * torch.cos(3 * t) + 0.2], dim=1).unsqueeze(-1)   # [T, B=2, 1]
    thr = 0.05
    s = delta_encode(x, thr)
    assert s.shape == (200, 2, 2, 1) and bool((s >= 0).all())
    recon = thr * torch.cumsum(s[:, :, 0] - s[:, :, 1], dim=0)
    assert float((recon - x).abs().max()) < thr + 1e-6
    assert not bool(((s[:, :, 0] > 0) & (s[:, :, 1] > 0)).any())   # never ON and OFF at once
    # one spike per step at most: exact within the threshold while the input moves less than it per step
    # (sin starts at 0 and moves <= 0.064 per step); a jump (0.7 at t=0) is followed one threshold per step
    binary = delta_encode(x, 0.2, max_spikes=1)
    assert float(binary.max()) <= 1.0
    slow = 0.2 * torch.cumsum(binary[:, :, 0] - binary[:, :, 1], dim=0)
    assert float((slow[:, 0] - x[:, 0]).abs().max()) < 0.2 + 1e-6
    torch.testing.assert_close(slow[:3, 1, 0], torch.tensor([0.2, 0.4, 0.6]))


def test_direct_equals_repeat():
    x = torch.rand(4, 1, 8, 8, generator=_gen(3))
    d = direct_encode(x, 5)
    assert d.shape == (5, 4, 1, 8, 8)
    assert torch.equal(d, x.unsqueeze(0).repeat(5, 1, 1, 1, 1))
    d[0].zero_()
    assert float(x.sum()) > 0                                 # a copy, not a view of the input


@pytest.mark.parametrize("call, match", [
    (lambda: rate_encode(LEVELS, 0), "time_steps"),
    (lambda: rate_encode(LEVELS * 2, 5), r"\[0, 1\]"),
    (lambda: rate_encode(LEVELS, 5, mode="binomial"), "mode"),
    (lambda: rate_encode(LEVELS, 5, gain=0), "gain"),
    (lambda: rate_encode(LEVELS, 5, generator=3), "generator"),
    (lambda: rate_encode([0.5], 5), "torch.Tensor"),
    (lambda: latency_encode(LEVELS, 5, mode="exp"), "mode"),
    (lambda: latency_encode(LEVELS, 5, threshold=1.0), "threshold"),
    (lambda: latency_encode(LEVELS, 5, mode="log", theta=1.5), "theta"),
    (lambda: delta_encode(LEVELS[0], 0.1), r"\[T, B"),
    (lambda: delta_encode(LEVELS, -0.1), "threshold"),
    (lambda: delta_encode(LEVELS, 0.1, max_spikes=0), "max_spikes"),
    (lambda: direct_encode(LEVELS, 2.5), "time_steps"),
])
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
