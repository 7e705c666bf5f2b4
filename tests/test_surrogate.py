import pytest
import torch

from dendrix.surrogate import SURROGATES, Surrogate, get_surrogate, heaviside, spike


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_derivative_matches_finite_difference_of_primitive(name):
    sg = get_surrogate(name)
    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)
    # Keep away from kinks of the piecewise surrogates, where the one-sided slopes differ.
    kinks = {"triangle": [-sg.value, 0.0, sg.value], "rectangular": [-sg.value / 2, sg.value / 2],
             "fast_sigmoid": [0.0]}.get(name, [])
    for k in kinks:
        x = x[(x - k).abs() > 1e-3]
    h = 1e-6
    fd = (sg.primitive(x + h) - sg.primitive(x - h)) / (2 * h)
    torch.testing.assert_close(sg.derivative(x), fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_forward_is_heaviside_and_backward_is_derivative(name):
    sg = get_surrogate(name)
    x = torch.randn(100, dtype=torch.float64, requires_grad=True)
    y = sg(x)
    assert torch.equal(y, heaviside(x.detach()))
    y.sum().backward()
    torch.testing.assert_close(x.grad, sg.derivative(x.detach()))


def test_heaviside_at_zero_is_one():
    assert heaviside(torch.tensor([0.0, -1e-12, 1e-12])).tolist() == [1.0, 0.0, 1.0]


def test_lookup_by_name_object_and_parameter():
    assert get_surrogate("atan", alpha=4.0).value == 4.0
    obj = get_surrogate("triangle")
    assert get_surrogate(obj) is obj
    assert isinstance(get_surrogate("rect"), Surrogate)
    assert spike(torch.tensor([0.5]), "sigmoid").item() == 1.0


@pytest.mark.parametrize("bad, err", [("nope", ValueError), (3, TypeError)])
def test_bad_names_raise(bad, err):
    with pytest.raises(err, match="surrogate"):
        get_surrogate(bad)


def test_non_positive_width_raises():
    with pytest.raises(ValueError, match="width must be a positive"):
        get_surrogate("triangle", width=0)
    with pytest.raises(TypeError, match="atan"):
        get_surrogate("atan", width=1.0)
