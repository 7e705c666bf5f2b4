"""Heaviside spike function with surrogate gradients.

The forward pass is always the Heaviside step Θ(x) = 1 for x ≥ 0 (SpikingJelly's convention). The backward
pass replaces Θ'(x) by the derivative of a smooth *primitive* g(x) that approximates Θ. Each surrogate class
owns every form of its derivative, so a new surrogate is one class (see :class:`Surrogate`):

* ``primitive(x)`` and ``derivative(x)``: the definition (autograd's backward and the reference loops use
  ``derivative``; tests compare it with a finite difference of ``primitive``);
* ``derivative_(buf)``: the same values computed in place in a scratch buffer (the fused CPU engines call it on
  every chunk of their backward; the default computes ``derivative`` out of place);
* ``triton_kind`` and ``triton_constants()``: which branch of the Triton kernels' σ' it uses
  (``dendrix.ops.triton_common.surrogate_derivative``) and the constants that branch reads. ``None`` (the
  default) means no Triton kernel: ``backend="auto"`` then runs the fused engine, a forced ``"triton"`` refuses.
* ``numba_kind`` and ``numba_constants()``: the same for the numba CPU kernels
  (``dendrix.ops.numba_common.SURROGATE_FUNCTIONS``; by default the constants of the Triton branch). ``None``
  means no numba kernel: ``backend="auto"`` then runs the fused engine, a forced ``"numba"`` refuses.

A subclass that redefines ``derivative`` without redefining ``derivative_`` / ``triton_kind`` / ``numba_kind`` does not inherit
its parent's fast forms (they would compute the parent's derivative): it gets the generic ones.

Surrogates and their parameter (defaults follow the libraries users know):

==================  ===========  =================================================================
name                parameter    derivative g'(x)
==================  ===========  =================================================================
``atan``            alpha=2.0    alpha/2 / (1 + (π/2·alpha·x)²)            (SpikingJelly ATan)
``sigmoid``         alpha=4.0    alpha·σ(alpha·x)(1 − σ(alpha·x))          (SpikingJelly Sigmoid)
``triangle``        width=1.0    max(0, 1 − |x|/width)/width               (piecewise linear)
``double_gaussian`` sigma=0.5    (1+h)N(x;0,σ) − hN(x;σ,sσ) − hN(x;−σ,sσ), h=0.15, s=6 (Yin et al. 2021)
``rectangular``     width=1.0    1/width for |x| < width/2                 (boxcar)
``fast_sigmoid``    slope=25.0   1 / (1 + slope·|x|)²                      (SuperSpike / snnTorch)
==================  ===========  =================================================================
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Union

import torch
from torch import Tensor

__all__ = [
    "Surrogate",
    "ATan",
    "Sigmoid",
    "Triangle",
    "DoubleGaussian",
    "Rectangular",
    "FastSigmoid",
    "get_surrogate",
    "heaviside",
    "spike",
    "SURROGATES",
]


def heaviside(x: Tensor) -> Tensor:
    """Θ(x) = 1 for x ≥ 0, else 0, in the dtype of ``x``; NaN where ``x`` is NaN or -Inf.

    A NaN or -Inf potential gives a visible NaN spike rather than silence (a -Inf potential never recovers: it
    would silence the neuron for the rest of the sequence); +Inf is above every threshold and fires. Every
    fused, numba and Triton engine follows the same rule (docs/reliability.md, "Non-finite values")."""
    return torch.where(x > -math.inf, (x >= 0).to(x.dtype), math.nan)


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: "Surrogate") -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(x), None


class Surrogate:
    """A Heaviside forward with the gradient of a smooth primitive.

    Subclasses define :meth:`primitive` (a smooth step-like function) and :meth:`derivative` (its exact
    derivative); optionally :meth:`derivative_` (in place, for the fused engines) and ``triton_kind`` with
    :meth:`triton_constants` (for the Triton engines). Calling the object on a tensor returns spikes with that
    surrogate gradient.
    """

    name: str = "surrogate"
    param_name: str = "alpha"
    #: Branch of the Triton kernels' σ' (``dendrix.ops.triton_common.surrogate_derivative``); None = no kernel.
    triton_kind: ClassVar[int | None] = None
    #: Index of the numba kernels' σ' (``dendrix.ops.numba_common.SURROGATE_FUNCTIONS``); None = no kernel.
    numba_kind: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A redefined derivative invalidates the inherited fast forms unless the class redefines them too.
        if "derivative" in cls.__dict__:
            if "derivative_" not in cls.__dict__:
                cls.derivative_ = Surrogate.derivative_
            if "triton_kind" not in cls.__dict__:
                cls.triton_kind = None
            if "numba_kind" not in cls.__dict__:
                cls.numba_kind = None

    def __init__(self, value: float):
        value = float(value)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"surrogate {self.name!r}: {self.param_name} must be a positive finite number, got {value!r}")
        self.value = value

    def primitive(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def derivative(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def derivative_(self, buf: Tensor) -> Tensor:
        """``derivative(buf)`` computed in place where the class knows how (no temporaries); ``buf`` is scratch.

        Returns the tensor holding the result: ``buf`` itself, or a new tensor (this generic form)."""
        return self.derivative(buf)

    def numba_constants(self) -> list[float]:
        """The constants the ``numba_kind`` branch reads (up to five, in double precision): by default those of
        the Triton branch, whose formulas the numba kernels share."""
        return self.triton_constants()

    def triton_constants(self) -> list[float]:
        """The constants the ``triton_kind`` branch reads, computed on the host in double precision."""
        raise NotImplementedError(f"surrogate {self!r} has no Triton kernel")

    def __call__(self, x: Tensor) -> Tensor:
        return _SpikeFunction.apply(x, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.param_name}={self.value:g})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.value == self.value  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.value))


class ATan(Surrogate):
    """Arctangent surrogate (SpikingJelly's ``ATan``): σ(x) = atan(π/2·α·x)/π + ½, σ'(x) = (α/2)/(1 + (π/2·α·x)²)."""
    name, param_name = "atan", "alpha"

    def __init__(self, alpha: float = 2.0):
        super().__init__(alpha)

    def primitive(self, x):
        return torch.atan(math.pi / 2 * self.value * x) / math.pi + 0.5

    def derivative(self, x):
        a = self.value
        return (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)

    def derivative_(self, buf):
        p = self.value
        return buf.mul_(math.pi / 2 * p).square_().add_(1.0).reciprocal_().mul_(p / 2)

    triton_kind = 0
    numba_kind = 0

    def triton_constants(self):
        return [math.pi / 2 * self.value, self.value / 2]     # c1 / (1 + (c0 u)²)


class Sigmoid(Surrogate):
    """Sigmoid surrogate: σ(x) = sigmoid(α·x), σ'(x) = α·s·(1 − s)."""
    name, param_name = "sigmoid", "alpha"

    def __init__(self, alpha: float = 4.0):
        super().__init__(alpha)

    def primitive(self, x):
        return torch.sigmoid(self.value * x)

    def derivative(self, x):
        s = torch.sigmoid(self.value * x)
        return self.value * s * (1 - s)

    def derivative_(self, buf):
        p = self.value
        s = buf.mul_(p).sigmoid_()
        return torch.addcmul(s, s, s, value=-1.0, out=s).mul_(p)  # p * s * (1 - s)

    triton_kind = 1
    numba_kind = 1

    def triton_constants(self):
        return [self.value]                                    # c0 s (1 - s), s = 1 / (1 + exp(-c0 u))


class Triangle(Surrogate):
    """Triangle surrogate of half-width w: σ'(x) = max(0, 1 − |x|/w)/w (its primitive is piecewise quadratic)."""
    name, param_name = "triangle", "width"

    def __init__(self, width: float = 1.0):
        super().__init__(width)

    def primitive(self, x):
        # Integral of the triangle: 0 below -w, quadratic pieces, 1 above w.
        w = self.value
        u = (x / w).clamp(-1.0, 1.0)
        return torch.where(u < 0, 0.5 * (1 + u) ** 2, 1 - 0.5 * (1 - u) ** 2)

    def derivative(self, x):
        w = self.value
        return (1 - x.abs() / w).clamp_min(0) / w

    def derivative_(self, buf):
        p = self.value
        return buf.abs_().mul_(-1.0 / p).add_(1.0).clamp_min_(0.0).mul_(1.0 / p)

    triton_kind = 2
    numba_kind = 2

    def triton_constants(self):
        return [1.0 / self.value]                              # max(0, 1 - c0 |u|) c0


_SQRT2 = math.sqrt(2.0)


def _normal_pdf(x: Tensor, mu: float, sigma: float) -> Tensor:
    return torch.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def _normal_cdf(x: Tensor, mu: float, sigma: float) -> Tensor:
    return 0.5 * (1 + torch.erf((x - mu) / (sigma * _SQRT2)))


def _normal_pdf_without_exp(x: Tensor, mu: float, sigma: float) -> Tensor:
    """Normal density N(x; mu, sigma) without ``torch.exp`` (for the in-place derivative of the fused engines).

    ATen runs ``exp`` (and other VML functions) multi-threaded above 2048 elements, and on a loaded machine
    each such call on a chunk costs a thread hand-off that dwarfs the arithmetic (figures in
    ``docs/benchmarks.md``, "Measurements behind the kernels"). ``sigmoid`` stays single-threaded at this
    size, and exp(-q) = sigmoid(-q) / sigmoid(q) exactly, with a few ulp of rounding.
    """
    q = torch.sub(x, mu).div_(sigma).square_().mul_(0.5)
    e = torch.neg(q).sigmoid_().div_(q.sigmoid_())
    return e.mul_(1.0 / (sigma * math.sqrt(2.0 * math.pi)))


class DoubleGaussian(Surrogate):
    """Multi-Gaussian surrogate of Yin et al. (2021), used by ALIF and D-RF: a narrow positive Gaussian
    minus two wide side lobes (height ``h`` = 0.15, width ratio ``s`` = 6)."""

    name, param_name = "double_gaussian", "sigma"

    def __init__(self, sigma: float = 0.5, h: float = 0.15, s: float = 6.0):
        super().__init__(sigma)
        if h < 0 or s <= 0:
            raise ValueError(f"surrogate 'double_gaussian': need h >= 0 and s > 0, got h={h!r}, s={s!r}")
        self.h, self.s = float(h), float(s)

    def primitive(self, x):
        sig, h, s = self.value, self.h, self.s
        return (1 + h) * _normal_cdf(x, 0.0, sig) - h * _normal_cdf(x, sig, s * sig) - h * _normal_cdf(x, -sig, s * sig)

    def derivative(self, x):
        sig, h, s = self.value, self.h, self.s
        return (1 + h) * _normal_pdf(x, 0.0, sig) - h * _normal_pdf(x, sig, s * sig) - h * _normal_pdf(x, -sig, s * sig)

    def derivative_(self, buf):
        p, h, s = self.value, self.h, self.s
        out = _normal_pdf_without_exp(buf, 0.0, p).mul_(1.0 + h)
        out.sub_(_normal_pdf_without_exp(buf, p, s * p), alpha=h).sub_(_normal_pdf_without_exp(buf, -p, s * p), alpha=h)
        return out

    triton_kind = 5
    numba_kind = 5

    def triton_constants(self):
        p, h, s = self.value, self.h, self.s
        norm = math.sqrt(2.0 * math.pi)
        # c3 exp(-½ (c1 u)²) - c4 [exp(-½ (c2 (u - c0))²) + exp(-½ (c2 (u + c0))²)]
        return [p, 1.0 / p, 1.0 / (s * p), (1.0 + h) / (p * norm), h / (s * p * norm)]

    def __repr__(self):
        return f"DoubleGaussian(sigma={self.value:g}, h={self.h:g}, s={self.s:g})"


class Rectangular(Surrogate):
    """Rectangular (boxcar) surrogate of width w: σ'(x) = 1/w for |x| < w/2, else 0."""
    name, param_name = "rectangular", "width"

    def __init__(self, width: float = 1.0):
        super().__init__(width)

    def primitive(self, x):
        return (x / self.value + 0.5).clamp(0.0, 1.0)

    def derivative(self, x):
        return (x.abs() < self.value / 2).to(x.dtype) / self.value

    def derivative_(self, buf):
        p = self.value
        return torch.lt(buf.abs_(), p / 2, out=buf).mul_(1.0 / p)

    triton_kind = 4
    numba_kind = 4

    def triton_constants(self):
        return [self.value / 2, 1.0 / self.value]              # c1 if |u| < c0


class FastSigmoid(Surrogate):
    """Fast-sigmoid surrogate (SuperSpike, Zenke & Ganguli 2018): σ'(x) = 1/(1 + k·|x|)²."""
    name, param_name = "fast_sigmoid", "slope"

    def __init__(self, slope: float = 25.0):
        super().__init__(slope)

    def primitive(self, x):
        return x / (1 + self.value * x.abs())

    def derivative(self, x):
        return 1.0 / (1 + self.value * x.abs()) ** 2

    def derivative_(self, buf):
        return buf.abs_().mul_(self.value).add_(1.0).square_().reciprocal_()

    triton_kind = 3
    numba_kind = 3

    def triton_constants(self):
        return [self.value]                                    # 1 / (1 + c0 |u|)²


SURROGATES: dict[str, Callable[..., Surrogate]] = {
    cls.name: cls for cls in (ATan, Sigmoid, Triangle, DoubleGaussian, Rectangular, FastSigmoid)
}
_ALIASES = {"rect": "rectangular", "piecewise_linear": "triangle", "superspike": "fast_sigmoid", "multi_gaussian": "double_gaussian"}

SurrogateLike = Union[str, Surrogate]


def get_surrogate(spec: SurrogateLike, **params) -> Surrogate:
    """Return a :class:`Surrogate` from a name (``"atan"``, ``"triangle"``, ...) or pass one through.

    ``params`` set the width/slope parameter by its name, e.g. ``get_surrogate("atan", alpha=4)``.
    """
    if isinstance(spec, Surrogate):
        if params:
            raise TypeError("get_surrogate: parameters can only be given with a surrogate name, not an instance")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"surrogate must be a name or a dendrix.surrogate.Surrogate, got {type(spec).__name__}")
    key = _ALIASES.get(spec.lower(), spec.lower())
    if key not in SURROGATES:
        raise ValueError(f"unknown surrogate {spec!r}; choose one of {sorted(SURROGATES)}")
    try:
        return SURROGATES[key](**params)
    except TypeError as err:
        raise TypeError(f"surrogate {key!r}: {err}") from None


def spike(x: Tensor, surrogate: SurrogateLike = "atan") -> Tensor:
    """Θ(x) with the gradient of ``surrogate``."""
    return get_surrogate(surrogate)(x)
