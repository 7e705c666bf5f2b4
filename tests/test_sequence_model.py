"""The residual D-RF block and the sequence model."""

from types import SimpleNamespace

import pytest
import torch

import dendrix
from dendrix.models.sequence import ResidualBlock, SequenceModel


def test_shapes_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = SequenceModel(3, 5, d_model=16, depth=2)
    x = torch.randn(40, 4, 3)
    logits = model(x)
    assert logits.shape == (4, 5)
    torch.nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert isinstance(model.blocks[0].temporal, dendrix.neurons.DRF)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_block_is_causal_unless_bidirectional(bidirectional):
    torch.manual_seed(0)
    block = ResidualBlock(8, bidirectional=bidirectional, dropout=0.0).double()
    x = torch.randn(60, 2, 8, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone()
    x2[30:] += 5 * torch.randn(30, 2, 8, dtype=torch.float64)
    y = block(x)
    # outputs before step 30 never depend on later inputs: same values, and a zero (surrogate) gradient
    y[:30].sum().backward()
    future_grad = x.grad[30:].abs().sum()
    if bidirectional:
        assert future_grad > 0
    else:
        assert future_grad <= 1e-12 * x.grad[:30].abs().sum()  # zero up to FFT rounding
        assert torch.equal(block(x2)[:30], y[:30].detach())


@pytest.mark.parametrize("kind", ["lif", "mmdend", "psn", "brf"])
def test_other_kinds_fill_the_temporal_slot(kind):
    torch.manual_seed(0)
    model = SequenceModel(3, 4, d_model=8, depth=1, kind=kind, time_steps=20)
    assert model(torch.randn(20, 2, 3)).shape == (2, 4)


def test_build_model_uses_the_sequence_arch():
    from dendrix.models import build_model
    info = SimpleNamespace(num_inputs=3, num_classes=4, time_steps=25)
    model = build_model({"arch": "sequence", "kind": "drf", "d_model": 8, "depth": 1}, info)
    assert isinstance(model, SequenceModel)
    assert model(torch.randn(25, 2, 3)).shape == (2, 4)


def test_trains_on_a_small_task():
    """Class = sign of a faint constant offset buried in noise: a few Adam steps must lower the loss."""
    torch.manual_seed(0)
    model = SequenceModel(2, 2, d_model=16, depth=1, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (32,), generator=g)
    x = torch.randn(30, 32, 2, generator=g) + (2.0 * y - 1).view(1, 32, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="available"):
        SequenceModel(3, 2, kind="no_such_kind")
    with pytest.raises(ValueError, match="depth"):
        SequenceModel(3, 2, depth=0)
    with pytest.raises(ValueError, match="dropout"):
        SequenceModel(3, 2, dropout=1.0)
    with pytest.raises(ValueError, match="3"):
        SequenceModel(3, 2, d_model=8, depth=1)(torch.randn(10, 2, 4))
