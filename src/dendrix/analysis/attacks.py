"""Gradient attacks (FGSM, BIM, PGD) on spiking networks, through their surrogate gradients.

Every model maps ``x [T, B, C]`` to logits ``[B, classes]``; the attacks differentiate the summed cross-entropy
with respect to ``x`` (spike non-linearities pass the surrogate gradient), so they work for every neuron kind.
The model is used as it is (call ``model.eval()`` first; :func:`dendrix.analysis.robustness.robustness_report`
does). Parameters receive no gradients (``torch.autograd.grad`` on the input only).

**Analogue inputs** (``input_kind="analog"``): the usual L∞ threat model of radius ``eps`` in input units.
FGSM: ``x + eps·sign(∇)``. BIM (Kurakin et al. 2017): ``steps`` sign steps of ``eps/steps``, projected on the
ε-ball. PGD (Madry et al. 2018): a uniform random start in the ball, then ``steps`` sign steps of
``2.5·eps/steps`` with projection. ``clamp=(lo, hi)`` optionally keeps inputs in a valid range.

**Spike inputs** (``input_kind="spikes"``, binary ``x``): the adversary may flip at most ``k = round(eps·n)`` of
the ``n = T·C`` bits of each sample (``eps`` is a *fraction of flipped bits*). Relaxation: the convex hull of
the allowed spike trains, ``{x̃ ∈ [0,1]^n : ‖x̃ − x‖₁ ≤ k}``, parameterised by how far each bit has moved
towards its flip, ``u = (x̃ − x)(1 − 2x) ∈ [0,1]^n`` with ``Σu ≤ k``. The first-order loss change of moving
bit i is ``gain_i = ∇_i (1 − 2x_i)``.

* FGSM maximises the linearised loss over the hull; the maximiser is a vertex: flip the k bits with the
  largest positive gain. It is already a valid spike train.
* BIM / PGD ascend in the relaxation, ``u ← Π(u + α·gain/max|gain|)`` where Π is the exact Euclidean
  projection on the capped simplex ``{u ∈ [0,1]^n : Σu ≤ k}``, with forward passes on the relaxed input
  ``x̃`` (a real-valued input current; the surrogate gradient is defined there), α = 2.5/steps. PGD starts
  from a random point of the relaxation (uniform, projected), BIM from ``x``.
* Projection back to valid spikes: flip the (at most) k bits with the largest ``u > 0``. The returned input is
  binary and within the flip budget, and it is what the evaluation feeds the network.

Determinism: FGSM and BIM are deterministic; PGD's random start is drawn from ``torch.Generator`` seeded with
``seed`` (on the CPU, so the start does not depend on the device). ``eps = 0`` returns ``x`` exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import check_choice, check_int, check_nonnegative, check_range
from .noise import is_binary

__all__ = ["ATTACKS", "fgsm", "bim", "pgd", "attack", "resolve_input_kind", "flip_budget"]

ATTACKS = ("fgsm", "bim", "pgd")
INPUT_KINDS = ("auto", "spikes", "analog")

LossFn = Callable[[Tensor, Tensor], Tensor]


def _default_loss(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits, target, reduction="sum")


def resolve_input_kind(x: Tensor, input_kind: str = "auto") -> str:
    """``"spikes"`` or ``"analog"``; ``"auto"`` picks spikes when every element of ``x`` is 0 or 1."""
    check_choice("input_kind", input_kind, INPUT_KINDS)
    if input_kind == "auto":
        return "spikes" if is_binary(x) else "analog"
    if input_kind == "spikes" and not is_binary(x):
        raise ValueError("input_kind='spikes' needs binary inputs in {0, 1}; use input_kind='analog'")
    return input_kind


def flip_budget(x: Tensor, eps: float) -> int:
    """Bits each sample of ``x [T, B, ...]`` may flip: ``round(eps · T · C)``."""
    per_sample = x.numel() // x.shape[1]
    return int(round(eps * per_sample))


def _input_gradient(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn) -> Tensor:
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
    return grad.detach()


def _check_common(x: Tensor, y: Tensor, eps: float) -> float:
    if not isinstance(x, Tensor) or x.dim() < 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be time-first [T, B, ...], got {shape}")
    if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != x.shape[1]:
        raise ValueError(f"y must hold one label per sample, shape [{x.shape[1]}], got "
                         f"{tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__}")
    return check_nonnegative("eps", eps)


# -- spike relaxation helpers --------------------------------------------------------------------------------------

def _per_sample(t: Tensor) -> Tensor:
    """[T, B, ...] -> [B, T·C] (sample-major view used for budgets)."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


def _from_per_sample(flat: Tensor, like: Tensor) -> Tensor:
    shape = (like.shape[1], like.shape[0], *like.shape[2:])
    return flat.reshape(shape).transpose(0, 1)


def _project_capped_simplex(v: Tensor, budget: int, iters: int = 60) -> Tensor:
    """Per row of ``v [B, n]``: the Euclidean projection on {u ∈ [0,1]^n : Σu ≤ budget}.

    The projection is clip(v − λ, 0, 1) with λ = 0 if that already fits the budget, else the λ > 0 where the
    sum equals the budget (found by bisection; the sum is monotone in λ).
    """
    clipped = v.clamp(0, 1)
    over = clipped.sum(dim=1) > budget
    if not bool(over.any()):
        return clipped
    lo = torch.zeros(v.shape[0], 1, dtype=v.dtype, device=v.device)
    hi = v.amax(dim=1, keepdim=True).clamp_min(0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        too_big = (v - mid).clamp(0, 1).sum(dim=1, keepdim=True) > budget
        lo = torch.where(too_big, mid, lo)
        hi = torch.where(too_big, hi, mid)
    projected = (v - hi).clamp(0, 1)
    return torch.where(over.unsqueeze(1), projected, clipped)


def _flip_top(x_flat: Tensor, score: Tensor, budget: int) -> Tensor:
    """Flip, per row, the (at most) ``budget`` bits with the largest positive ``score``."""
    if budget <= 0:
        return x_flat.clone()
    k = min(budget, score.shape[1])
    values, index = score.topk(k, dim=1)
    chosen = torch.zeros_like(score, dtype=torch.bool).scatter(1, index, values > 0)
    return torch.where(chosen, 1 - x_flat, x_flat)


def _spike_fgsm(model, x, y, eps, loss_fn) -> Tensor:
    budget = flip_budget(x, eps)
    if budget == 0:
        return x.clone()
    grad = _input_gradient(model, x, y, loss_fn)
    xf = _per_sample(x)
    gain = _per_sample(grad) * (1 - 2 * xf)
    return _from_per_sample(_flip_top(xf, gain, budget), x)


def _spike_iterative(model, x, y, eps, steps, step_size, loss_fn, generator) -> Tensor:
    budget = flip_budget(x, eps)
    if budget == 0:
        return x.clone()
    xf = _per_sample(x)
    direction = 1 - 2 * xf  # +1 where a flip adds a spike, -1 where it removes one
    if generator is not None:  # PGD: random start inside the relaxation
        start = torch.rand(xf.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
        u = _project_capped_simplex(start, budget)
    else:
        u = torch.zeros_like(xf)
    for _ in range(steps):
        relaxed = _from_per_sample(xf + u * direction, x)
        gain = _per_sample(_input_gradient(model, relaxed, y, loss_fn)) * direction
        scale = gain.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(gain.dtype).tiny)
        u = _project_capped_simplex(u + step_size * gain / scale, budget)
    return _from_per_sample(_flip_top(xf, u, budget), x)


# -- analogue helpers -------------------------------------------------------------------------------------------

def _clamp(x: Tensor, clamp: tuple[float, float] | None) -> Tensor:
    return x if clamp is None else x.clamp(clamp[0], clamp[1])


def _analog_iterative(model, x, y, eps, steps, step_size, loss_fn, generator, clamp) -> Tensor:
    if generator is not None:
        noise = torch.rand(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
        adv = _clamp(x + (2 * noise - 1) * eps, clamp)
    else:
        adv = x.clone()
    for _ in range(steps):
        grad = _input_gradient(model, adv, y, loss_fn)
        adv = adv + step_size * grad.sign()
        adv = _clamp(torch.max(torch.min(adv, x + eps), x - eps), clamp)
    return adv.detach()


# -- public attacks ----------------------------------------------------------------------------------------------

def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, input_kind: str = "auto",
         loss_fn: LossFn | None = None, clamp: tuple[float, float] | None = None) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015). Returns the adversarial ``x`` (module docstring)."""
    eps = _check_common(x, y, eps)
    loss_fn = loss_fn or _default_loss
    if resolve_input_kind(x, input_kind) == "spikes":
        check_range("eps (fraction of flipped spike bits)", eps, 0.0, 1.0)
        return _spike_fgsm(model, x, y, eps, loss_fn)
    if eps == 0:
        return x.clone()
    grad = _input_gradient(model, x, y, loss_fn)
    return _clamp(x + eps * grad.sign(), clamp).detach()


def bim(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, steps: int = 10, step_size: float | None = None,
        input_kind: str = "auto", loss_fn: LossFn | None = None,
        clamp: tuple[float, float] | None = None) -> Tensor:
    """Basic iterative method (Kurakin et al. 2017): iterated FGSM from ``x``, projected on the threat set.

    ``step_size`` defaults to ``eps/steps`` (analogue) or 2.5/steps in the spike relaxation.
    """
    eps = _check_common(x, y, eps)
    steps = check_int("steps", steps, 1)
    loss_fn = loss_fn or _default_loss
    if resolve_input_kind(x, input_kind) == "spikes":
        check_range("eps (fraction of flipped spike bits)", eps, 0.0, 1.0)
        alpha = 2.5 / steps if step_size is None else check_nonnegative("step_size", step_size)
        return _spike_iterative(model, x, y, eps, steps, alpha, loss_fn, None)
    alpha = eps / steps if step_size is None else check_nonnegative("step_size", step_size)
    return _analog_iterative(model, x, y, eps, steps, alpha, loss_fn, None, clamp)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, steps: int = 10, step_size: float | None = None,
        seed: int = 0, generator: torch.Generator | None = None, input_kind: str = "auto",
        loss_fn: LossFn | None = None, clamp: tuple[float, float] | None = None) -> Tensor:
    """Projected gradient descent with a random start (Madry et al. 2018).

    ``step_size`` defaults to ``2.5·eps/steps`` (analogue) or 2.5/steps in the spike relaxation. The random
    start comes from ``generator`` if given, else from a CPU generator seeded with ``seed``.
    """
    eps = _check_common(x, y, eps)
    steps = check_int("steps", steps, 1)
    loss_fn = loss_fn or _default_loss
    generator = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    if resolve_input_kind(x, input_kind) == "spikes":
        check_range("eps (fraction of flipped spike bits)", eps, 0.0, 1.0)
        alpha = 2.5 / steps if step_size is None else check_nonnegative("step_size", step_size)
        return _spike_iterative(model, x, y, eps, steps, alpha, loss_fn, generator)
    alpha = 2.5 * eps / steps if step_size is None else check_nonnegative("step_size", step_size)
    return _analog_iterative(model, x, y, eps, steps, alpha, loss_fn, generator, clamp)


def attack(name: str, model: nn.Module, x: Tensor, y: Tensor, eps: float, **kw) -> Tensor:
    """Run attack ``name`` (``"fgsm"``, ``"bim"`` or ``"pgd"``); ``steps``/``seed`` are ignored by FGSM."""
    check_choice("attack", name, ATTACKS)
    if name == "fgsm":
        kw.pop("steps", None), kw.pop("seed", None), kw.pop("generator", None), kw.pop("step_size", None)
        return fgsm(model, x, y, eps, **kw)
    if name == "bim":
        kw.pop("seed", None), kw.pop("generator", None)
        return bim(model, x, y, eps, **kw)
    return pgd(model, x, y, eps, **kw)
