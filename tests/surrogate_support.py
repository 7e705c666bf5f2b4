"""Test surrogates shared by the gradient tests."""

from __future__ import annotations

import torch

from dendrix.surrogate import Surrogate


class ZeroSurrogate(Surrogate):
    """Θ'(x) = 0 away from the threshold: the backward is then the exact derivative of the (piecewise smooth)
    forward, which gradcheck can verify by finite differences. No numba form: ``backend="auto"`` keeps it on the
    fused engines."""

    name, param_name = "zero", "scale"

    def __init__(self):
        super().__init__(1.0)

    def primitive(self, x):
        return torch.zeros_like(x)

    def derivative(self, x):
        return torch.zeros_like(x)


class ZeroNumbaSurrogate(ZeroSurrogate):
    """:class:`ZeroSurrogate` with a numba form (the rectangular branch of width 0), for the numba engines."""

    numba_kind = 4

    def numba_constants(self):
        return [0.0, 0.0]
