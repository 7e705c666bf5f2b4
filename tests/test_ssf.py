"""SSF: shifted-scaled integer firing, its straight-through gradient and the exact binary expansion."""

import pytest
import torch

from dendrix.neurons import SSF
from dendrix.neurons.ssf import expand_integer_spikes


def test_integer_levels_match_the_formula():
    ssf = SSF(ssf_range=4)
    with torch.no_grad():
        ssf.shift.fill_(0.5)
        ssf.scale.fill_(2.0)
    v = torch.tensor([-100.0, -8.5, -3.0, -0.2, 0.0, 0.5, 2.49, 2.5, 4.6, 8.5, 9.0, 100.0]).view(-1, 1, 1)
    expected = torch.floor(torch.clamp((v - 0.5) / 2.0, -4, 4))
    out = ssf(v)
    assert torch.equal(out, expected)
    assert out.min() == -4 and out.max() == 4
    assert ssf.levels == 4 and ssf.emits == "integer"


def test_threshold_divides_the_range():
    ssf = SSF(ssf_range=4, v_threshold=2.0)
    assert ssf.levels == 2
    v = torch.linspace(-10, 10, 81).view(-1, 1, 1)
    out = ssf(v)
    assert torch.equal(out, torch.floor(v.clamp(-4, 4) / 2.0).clamp(-2, 2))
    assert set(out.unique().tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}


def test_non_multiple_threshold_stays_symmetric():
    ssf = SSF(ssf_range=3, v_threshold=2.0)  # floor(-3/2) = -2 would exceed Ū = 1
    out = ssf(torch.linspace(-10, 10, 41).view(-1, 1, 1))
    assert out.min() == -1 and out.max() == 1


def test_straight_through_gradient_inside_the_range_only():
    ssf = SSF(ssf_range=2)
    with torch.no_grad():
        ssf.scale.fill_(0.5)
    v = torch.tensor([-3.0, -0.6, 0.3, 0.9, 3.0]).view(-1, 1, 1).requires_grad_()
    ssf(v).sum().backward()
    # x = v / 0.5 -> [-6, -1.2, 0.6, 1.8, 6]; inside (-2, 2) the gradient is 1/(φ_s·V_th) = 2
    assert torch.allclose(v.grad.flatten(), torch.tensor([0.0, 2.0, 2.0, 2.0, 0.0]))
    assert ssf.shift.grad is not None and ssf.shift.grad.item() == pytest.approx(-6.0)
    assert ssf.scale.grad is not None and ssf.scale.grad.abs().item() > 0


def test_binary_spikes_sum_to_integer_spikes():
    torch.manual_seed(0)
    ssf = SSF(ssf_range=3)
    v = torch.randn(6, 4, 5) * 3
    s = ssf(v)
    sub = ssf.binary_spikes(v)
    assert sub.shape == (6, 3, 4, 5)
    assert set(sub.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.equal(sub.sum(1), s)
    # a neuron never fires both signs within one time step
    assert not ((sub > 0).any(1) & (sub < 0).any(1)).any()


def test_synaptic_sum_over_substeps_is_exact():
    torch.manual_seed(1)
    ssf = SSF(ssf_range=4)
    v = torch.randn(5, 3, 8, dtype=torch.float64) * 4
    s, sub = ssf.double()(v), ssf.binary_spikes(v)
    w_int = torch.randint(-50, 50, (8, 6)).double()   # integer weights: every partial sum is exact
    assert torch.equal(s @ w_int, (sub @ w_int).sum(1))
    w = torch.randn(8, 6, dtype=torch.float64)
    assert torch.allclose(s @ w, (sub @ w).sum(1), rtol=0, atol=1e-12)


def test_ternary_and_binary_ablation():
    v = torch.linspace(-3, 3, 25).view(-1, 1, 1)
    tern = SSF(ssf_range=1)
    assert set(tern(v).unique().tolist()) == {-1.0, 0.0, 1.0}
    binary = SSF(firing="binary")
    out = binary(v)
    assert binary.emits == "binary" and binary.levels == 1
    assert torch.equal(out, (v >= 1.0).float())
    assert torch.equal(binary.binary_spikes(v).sum(1), out)


def test_no_scale_shift_ablation_has_no_parameters():
    ssf = SSF(scale_shift=False)
    assert sum(p.numel() for p in ssf.parameters()) == 0
    assert sum(p.numel() for p in SSF().parameters()) == 2


def test_expand_rejects_bad_levels():
    with pytest.raises(ValueError, match="levels"):
        expand_integer_spikes(torch.zeros(2, 1, 1), 0)


@pytest.mark.parametrize("kw, match", [
    ({"ssf_range": 0}, "ssf_range"), ({"ssf_range": 2.5}, "ssf_range"), ({"v_threshold": 0.0}, "v_threshold"),
    ({"ssf_range": 1, "v_threshold": 2.0}, "ssf_range / v_threshold"), ({"firing": "ternary"}, "firing"),
])
def test_invalid_arguments(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SSF(**kw)


def test_contract_and_half_precision():
    ssf = SSF()
    v = torch.randn(7, 2, 3) * 3
    y, state = ssf.run(v[:3])
    y2, _ = ssf.run(v[3:], state)
    assert torch.equal(torch.cat([y, y2]), ssf(v))
    y_t, _ = ssf.step(v[0])
    assert torch.equal(y_t, ssf(v)[0])
    for dtype in (torch.float16, torch.bfloat16):
        out = ssf(v.to(dtype))
        assert out.dtype == dtype
        assert torch.equal(out.float(), ssf(v.to(dtype).float()))
