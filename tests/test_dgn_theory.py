"""DGN vs LIF membrane noise: closed forms (dendrix.analysis.dgn_theory) against Euler–Maruyama simulation."""

import itertools

import pytest
import torch

from dendrix.analysis.dgn_theory import (NoiseInputs, dgn_steady_state, dgn_variance_exact, dgn_variance_lna,
                                         lif_variance, reduce_inputs, simulate_variance)

G_LEAK = 2.0


def _grid() -> tuple[NoiseInputs, list[str]]:
    """'shared': noise on every input (DGN damps it); 'opposed': the noise enters through an inhibitory synapse
    while an excitatory mean input sets V_ss > 0, so σ(W − C·V_ss) grows and DGN can be noisier than LIF."""
    rows, kinds = [], []
    for mu, sigma, c in itertools.product([0.5, 2.0], [0.2, 0.5], [0.0, 0.2, 0.5]):
        rows.append(([1.0, -0.5, 0.8], [c, c, c], [mu, 0.5 * mu, 1.5 * mu], [sigma, sigma, sigma]))
        kinds.append("shared")
    for mu, c in itertools.product([0.5, 2.0], [0.2, 0.6]):
        rows.append(([2.0, -1.0, 0.0], [c, c, 0.0], [mu, 0.0, 0.0], [0.0, 0.4, 0.0]))
        kinds.append("opposed")
    w, c, m, s = (torch.tensor([r[i] for r in rows], dtype=torch.float64) for i in range(4))
    return NoiseInputs(w, c, m, s, g_leak=G_LEAK), kinds


@pytest.fixture(scope="module")
def simulated():
    p, kinds = _grid()
    mean, var = simulate_variance(p, dt=4e-3, burn_in=4.0, duration=8.0, paths=1500, seed=0)
    return p, kinds, mean, var


def test_closed_forms_reduce_correctly():
    p = NoiseInputs(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]),
                    torch.tensor([0.5, 0.5]), g_leak=0.5)
    # C = 0: all three DGN forms are the LIF Ornstein–Uhlenbeck variance (1.5)² / (2·0.5)
    assert lif_variance(p).item() == pytest.approx(2.25)
    assert dgn_variance_lna(p).item() == pytest.approx(2.25)
    assert dgn_variance_exact(p).item() == pytest.approx(2.25)
    q = NoiseInputs(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([1.0]), g_leak=0.0)
    g0, v_ss = dgn_steady_state(q)  # G0 = 1, V_ss = 1, β − γ V_ss = 0: the noise cancels at the fixed point
    assert (g0.item(), v_ss.item()) == (1.0, 1.0)
    assert dgn_variance_exact(q).item() == 0.0
    r = NoiseInputs(torch.tensor([0.0]), torch.tensor([2.0]), torch.tensor([0.1]), torch.tensor([1.0]), g_leak=0.5)
    assert dgn_variance_exact(r).item() == float("inf")  # 2·G0 = 1.4 < γ² = 4: no stationary variance


def test_simulated_mean_is_the_steady_state(simulated):
    p, _, mean, var = simulated
    _, v_ss = dgn_steady_state(p)
    assert torch.all((mean - v_ss).abs() < 4 * var.sqrt() / 30 + 1e-3)


def test_simulated_variance_matches_exact_closed_form_within_5_percent(simulated):
    p, _, _, var = simulated
    rel = var / dgn_variance_exact(p) - 1
    assert rel.abs().max() < 0.05, rel


def test_lif_and_spec_linear_noise_formula_match_where_the_approximation_holds(simulated):
    p, _, _, var = simulated
    _, g0, _, gamma = reduce_inputs(p)
    lif_points = (p.conductance == 0).all(-1)
    assert lif_points.sum() >= 4
    rel_lif = var[lif_points] / lif_variance(p)[lif_points] - 1
    assert rel_lif.abs().max() < 0.05, rel_lif
    small = gamma ** 2 / (2 * g0) <= 0.02  # SPEC's (β − γV_ss)²/(2G0) drops this term
    assert small.sum() >= 10
    rel_lna = var[small] / dgn_variance_lna(p)[small] - 1
    assert rel_lna.abs().max() < 0.05, rel_lna
    # Where γ²/(2G0) is not small the linear-noise formula underestimates the variance; the exact one does not.
    big = gamma ** 2 / (2 * g0) > 0.04
    assert big.any() and (var[big] > 1.03 * dgn_variance_lna(p)[big]).all()


def test_dgn_is_quieter_than_lif_exactly_where_theory_says(simulated):
    p, kinds, _, var = simulated
    lif_sim = simulate_variance(NoiseInputs(p.weight, torch.zeros_like(p.conductance), p.mu, p.sigma, G_LEAK),
                                dt=4e-3, burn_in=4.0, duration=8.0, paths=1500, seed=1)[1]
    theory_ratio = dgn_variance_exact(p) / lif_variance(p)
    decided = (theory_ratio - 1).abs() > 0.15
    assert decided.sum() >= 10
    assert torch.equal((var < lif_sim)[decided], (theory_ratio < 1)[decided])
    shared = torch.tensor([k == "shared" for k in kinds])
    has_c = (p.conductance != 0).any(-1)
    assert (theory_ratio[shared & has_c] < 1).all()  # noise on all inputs: conductance always damps it here
    assert (theory_ratio[~shared] > 1).any()          # and the opposite case exists
