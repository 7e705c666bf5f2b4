"""Noise, attacks and the robustness report on a tiny spiking MLP trained in a few seconds."""

import json
import math

import pytest
import torch
from torch import nn

from dendrix.analysis.attacks import _project_capped_simplex, bim, fgsm, flip_budget, pgd
from dendrix.analysis.noise import current_noise, gaussian_noise, spike_noise
from dendrix.analysis.robustness import evaluate_accuracy, robustness_report
from dendrix.analysis.summary import quick_evaluation
from dendrix.layers.spiking import SpikingLinear
from dendrix.neurons import LIF

T, C, K = 12, 16, 4


class TinySNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = SpikingLinear(C, 32, LIF())
        self.output = nn.Linear(32, K)

    def forward(self, x):
        return self.output(self.hidden(x)).mean(0)


def _patterns(n: int, seed: int):
    """Class k: channels 4k..4k+3 fire with probability 0.5, the others with 0.05 (an easy spike task)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    prob = torch.full((n, C), 0.05)
    for k in range(K):
        prob[y == k, 4 * k:4 * k + 4] = 0.5
    x = (torch.rand(T, n, C, generator=g) < prob).float()
    return x, y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = TinySNN()
    x, y = _patterns(192, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(8):  # full-batch steps: the task is easy, this reaches ~100% test accuracy
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    xt, yt = _patterns(96, seed=2)
    loader = [(xt[:, i:i + 48], yt[i:i + 48]) for i in range(0, 96, 48)]
    return model, loader


# -- noise -------------------------------------------------------------------------------------------------------

def test_spike_noise_modes_and_rates():
    x = (torch.rand(50, 40, 20, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(spike_noise(x, 0.0, "mixed", generator=g()), x)
    add = spike_noise(x, 0.2, "additive", generator=g())
    sub = spike_noise(x, 0.2, "subtractive", generator=g())
    mix = spike_noise(x, 0.2, "mixed", generator=g())
    for noisy in (add, sub, mix):
        assert ((noisy == 0) | (noisy == 1)).all()
    assert (add >= x).all() and (sub <= x).all()
    zeros, ones = (x == 0), (x == 1)
    assert abs(float(add[zeros].mean()) - 0.2) < 0.02       # added spikes on empty slots
    assert abs(float(1 - sub[ones].mean()) - 0.2) < 0.02    # removed spikes
    assert abs(float((mix != x).float().mean()) - 0.2) < 0.02
    assert torch.equal(spike_noise(x, 0.2, "mixed", generator=g()), mix)  # reproducible
    with pytest.raises(ValueError, match="binary"):
        spike_noise(x * 0.5, 0.1)
    with pytest.raises(ValueError, match="p"):
        spike_noise(x, 1.5)


def test_gaussian_and_current_noise(trained):
    model, loader = trained
    x = loader[0][0]
    assert gaussian_noise(x, 0.0) is x
    noisy = gaussian_noise(x, 0.3, generator=torch.Generator().manual_seed(0))
    assert abs(float((noisy - x).std()) - 0.3) < 0.03
    with torch.no_grad():
        clean = model(x)
        with current_noise(model, 0.0) as names:
            assert names == ["hidden.neuron"]
            assert torch.equal(model(x), clean)
        with current_noise(model, 2.0, generator=torch.Generator().manual_seed(0)):
            assert not torch.equal(model(x), clean)
        assert torch.equal(model(x), clean)  # hooks removed


# -- attacks ------------------------------------------------------------------------------------------------------

def test_capped_simplex_projection():
    v = torch.tensor([[0.9, 0.8, 0.1, -0.3, 1.4], [0.1, 0.2, 0.0, 0.0, 0.1]])
    u = _project_capped_simplex(v, budget=1)
    assert (u >= 0).all() and (u <= 1).all()
    assert math.isclose(float(u[0].sum()), 1.0, rel_tol=1e-5)
    assert torch.allclose(u[1], v[1])  # already feasible: unchanged
    # The projection is clip(v - λ): the ordering of kept entries is preserved.
    assert u[0, 4] >= u[0, 0] >= u[0, 1] >= u[0, 2]


def test_spike_attacks_are_valid_within_budget_and_deterministic(trained):
    model, loader = trained
    x, y = loader[0]
    eps = 0.02
    budget = flip_budget(x, eps)
    assert budget == round(eps * T * C)
    for name, run in (("fgsm", lambda s: fgsm(model, x, y, eps)),
                      ("bim", lambda s: bim(model, x, y, eps, steps=3)),
                      ("pgd", lambda s: pgd(model, x, y, eps, steps=3, seed=s))):
        adv = run(0)
        assert ((adv == 0) | (adv == 1)).all(), name
        flips = (adv != x).float().sum(dim=(0, 2))
        assert (flips <= budget).all() and flips.max() > 0, name
        assert torch.equal(run(0), adv), f"{name} is not deterministic"
    for attack_fn in (fgsm, bim, pgd):
        assert torch.equal(attack_fn(model, x, y, 0.0), x)


def test_analog_attacks_stay_in_the_linf_ball(trained):
    model, loader = trained
    x, y = loader[0]
    x = x * 0.8 + 0.1  # analogue values in [0.1, 0.9]
    eps = 0.05
    clamped = pgd(model, x, y, eps, steps=2, seed=1, clamp=(0.0, 0.85))
    for adv in (fgsm(model, x, y, eps), bim(model, x, y, eps, steps=2), pgd(model, x, y, eps, steps=2, seed=1),
                clamped):
        assert (adv - x).abs().max() <= eps + 1e-6
    assert (clamped <= 0.85).all()
    assert torch.equal(pgd(model, x, y, eps, steps=2, seed=3), pgd(model, x, y, eps, steps=2, seed=3))
    assert not torch.equal(pgd(model, x, y, eps, steps=2, seed=3), pgd(model, x, y, eps, steps=2, seed=4))
    assert torch.equal(fgsm(model, x, y, 0.0), x)


def test_attacks_lower_accuracy_and_leave_parameters_alone(trained):
    model, loader = trained
    x, y = loader[0]
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        clean = (model(x).argmax(-1) == y).float().mean()
        attacked = (model(pgd(model, x, y, 0.05, steps=3)).argmax(-1) == y).float().mean()
    assert attacked < clean
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# -- report -------------------------------------------------------------------------------------------------------

def test_robustness_report_protocol(trained, tmp_path):
    model, loader = trained
    clean = evaluate_accuracy(model, loader)
    assert clean >= 0.8, "the tiny model should learn the easy task"
    grid = dict(spike_p=(0.0, 0.4), gaussian_sigma=(0.0, 1.0), epsilons=(0.0, 0.05), attack_steps=3, seed=7)
    report = robustness_report(model, loader, **grid)
    assert report.clean_accuracy == clean and report.input_kind == "spikes"
    for name in report.perturbations():
        rows = [r for r in report.rows if r["perturbation"] == name]
        zero, largest = rows[0], rows[-1]
        assert zero["severity"] == 0 and zero["accuracy"] == clean, f"{name} at severity 0 must equal clean"
        assert largest["accuracy"] < clean, f"{name} at its largest severity should hurt a trained model"
    perturbed = [r["accuracy"] for r in report.rows if r["severity"] > 0]
    assert report.settings == len(perturbed) == 3 + 1 + 3
    assert math.isclose(report.overall_robustness, sum(perturbed) / len(perturbed))
    assert report.overall_std > 0
    # Deterministic under the seed: a report with the same seed repeats the stochastic settings exactly.
    again = robustness_report(model, loader, **{**grid, "spike_p": (0.4,), "noise_modes": ("mixed",),
                                                "gaussian_sigma": (1.0,), "attacks": ("pgd",), "epsilons": (0.05,)})
    assert again.rows == [r for r in report.rows if r["severity"] > 0 and r["perturbation"] in
                          ("spike noise (mixed)", "gaussian input noise", "PGD")]
    paths = report.save(tmp_path)
    assert paths["png"].stat().st_size > 0
    assert json.loads(paths["json"].read_text())["overall_robustness"] == report.overall_robustness
    assert "Overall robustness" in paths["md"].read_text()


def test_quick_evaluation_headline(trained):
    model, loader = trained
    out = quick_evaluation(model, loader, seed=0)
    assert set(out) >= {"energy_uj", "overall_robustness"}
    assert out["energy_uj"] > 0 and 0 <= out["overall_robustness"] <= 1
    assert quick_evaluation(model, loader, seed=0) == out
    head = quick_evaluation(model, loader, seed=0, max_samples=60)  # 48 + the first 12 of the second batch
    assert head == quick_evaluation(model, [loader[0], (loader[1][0][:, :12], loader[1][1][:12])], seed=0)


def test_report_argument_errors(trained):
    model, loader = trained
    with pytest.raises(ValueError, match="attack"):
        robustness_report(model, loader, attacks=("deepfool",))
    with pytest.raises(ValueError, match="spike_p"):
        robustness_report(model, loader, spike_p=(2.0,))
    with pytest.raises(ValueError, match="input_kind"):
        robustness_report(model, [(loader[0][0] * 0.5, loader[0][1])], input_kind="spikes")
