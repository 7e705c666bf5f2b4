"""``torch.compile(..., fullgraph=True)`` against eager for one module: shared by test_compile.py and test_cuda.py.

``fullgraph=True`` turns any graph break into an error, so a passing check means Dynamo captured the whole
forward in one graph and AOTAutograd built its backward. The compiled module is a deep copy of the eager one
(same weights), both run the same input; spikes must be equal and every gradient close.
"""

from __future__ import annotations

import copy

import torch

import dendrix

T, B, IN, OUT = 6, 2, 16, 8


def layer_for(kind: str, in_features: int = IN, out_features: int = OUT) -> torch.nn.Module:
    reg = dendrix.describe(kind)
    kw = {"time_steps": T} if reg.needs_time_steps else {}
    torch.manual_seed(0)
    layer = dendrix.spiking_layer(kind, in_features, out_features, **kw)
    # Synaptic weights 12x their default: every kind fires within 6 steps (the resonators included), so equal
    # spikes are not equal silences.
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if p.dim() == 2 or name.endswith("linear.bias"):
                p.mul_(12.0)
    return layer


def spike_input(device, dtype=torch.float32, shape=(T, B, IN), seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.5).to(dtype).to(device)


def _forward_backward(module: torch.nn.Module, x: torch.Tensor, call=None):
    """Output, parameter gradients (by name) and input gradient; ``call`` runs the forward (default ``module``)."""
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = (module if call is None else call)(x)
    out = y[0] if isinstance(y, tuple) else y
    # A loss that weighs every output differently, so that a wrong gradient cannot cancel out.
    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).view_as(out)
    (out * weights).sum().backward()
    grads = {n: p.grad for n, p in module.named_parameters() if p.requires_grad}
    return out.detach(), grads, x.grad


def check_compiled_matches_eager(module: torch.nn.Module, x: torch.Tensor, backend: str = "aot_eager",
                                 spike_equal: bool = True, **tolerance) -> torch.Tensor:
    """Compile a copy of ``module`` with ``fullgraph=True`` and compare output and gradients with eager.

    Returns the eager output. ``spike_equal``: outputs must be equal (spikes); else close like the gradients.
    """
    torch._dynamo.reset()  # each kind compiles from scratch (no cache hits, no recompile limit across kinds)
    twin = copy.deepcopy(module)
    compiled = torch.compile(twin, fullgraph=True, backend=backend)
    y, grads, gx = _forward_backward(module, x)
    yc, grads_c, gx_c = _forward_backward(twin, x, call=compiled)
    name = type(module).__name__
    if spike_equal:
        assert torch.equal(yc, y), f"{name}: compiled ({backend}) output differs from eager"
    else:
        torch.testing.assert_close(yc, y, **tolerance)
    assert grads_c.keys() == grads.keys()
    for key, g in grads.items():
        assert (g is None) == (grads_c[key] is None), f"{name}.{key}: gradient present in one mode only"
        if g is not None:
            torch.testing.assert_close(grads_c[key], g, **tolerance, msg=lambda m: f"{name}.{key}: {m}")
    torch.testing.assert_close(gx_c, gx, **tolerance)
    return y
