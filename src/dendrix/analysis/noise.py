"""Input perturbations for robustness tests: spike noise on binary spike trains and Gaussian noise.

All functions are deterministic given a ``torch.Generator`` (random numbers are drawn on the CPU and moved to the
input's device, so results do not depend on the device).

* :func:`spike_noise` — on binary spikes ``x ∈ {0,1}`` with probability ``p`` per element:
  ``"additive"`` turns each 0 into a 1 with probability p (spurious spikes), ``"subtractive"`` turns each 1 into
  a 0 with probability p (lost spikes), ``"mixed"`` does both at once (each bit flips with probability p).
  The result is still binary; p = 0 returns the input unchanged.
* :func:`gaussian_noise` — ``x + σ ξ``, ξ ~ N(0, 1) per element. On analogue inputs this is input noise; on spike
  inputs it is Gaussian current noise on the first synaptic layer (the perturbed input is no longer binary).
* :func:`current_noise` — a context manager that adds ``σ ξ`` to the input current of every activation-style
  neuron of a model (the current after the synaptic layer, e.g. inside ``SpikingLinear``). Layer-type neurons
  whose input is presynaptic spikes (DLIF, DGN) have no separable current and are left unperturbed; the
  names of the perturbed neurons are returned so a report can say which.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from ..contract import Neuron
from ..validation import check_choice, check_nonnegative, check_range
from .energy import is_known_neuron, is_synaptic_layer

__all__ = ["SPIKE_NOISE_MODES", "spike_noise", "gaussian_noise", "current_noise", "is_binary"]

SPIKE_NOISE_MODES = ("additive", "subtractive", "mixed")


def is_binary(x: Tensor) -> bool:
    """Whether every element of ``x`` is 0 or 1."""
    return bool(((x == 0) | (x == 1)).all())


def _uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(x.shape, generator=generator, dtype=torch.float32).to(x.device)


def _normal(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)


def spike_noise(x: Tensor, p: float, mode: str = "mixed", *, generator: torch.Generator | None = None) -> Tensor:
    """Binary spike train ``x`` with spikes added and/or removed independently with probability ``p``.

    Args:
        x: spikes in {0, 1}, any shape (time-first ``[T, B, C]`` in practice).
        p: probability per element, in [0, 1].
        mode: ``"additive"`` (0 → 1), ``"subtractive"`` (1 → 0) or ``"mixed"`` (both).
        generator: CPU ``torch.Generator`` for reproducible noise.
    """
    p = check_range("p", p, 0.0, 1.0)
    check_choice("mode", mode, SPIKE_NOISE_MODES)
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not is_binary(x):
        raise ValueError("spike_noise needs binary spikes in {0, 1}; use gaussian_noise for analogue inputs")
    hit = _uniform(x, generator) < p
    spike = x == 1
    if mode == "additive":
        flip = hit & ~spike
    elif mode == "subtractive":
        flip = hit & spike
    else:
        flip = hit
    return torch.where(flip, 1 - x, x)


def gaussian_noise(x: Tensor, sigma: float, *, generator: torch.Generator | None = None) -> Tensor:
    """``x + sigma·ξ`` with ξ ~ N(0, 1) per element (``sigma = 0`` returns ``x`` unchanged)."""
    sigma = check_nonnegative("sigma", sigma)
    if sigma == 0:
        return x
    return x + sigma * _normal(x, generator)


def _current_driven_neurons(model: nn.Module) -> list[tuple[str, Neuron]]:
    """Outermost activation-style neurons (input = a current): known neuron kinds, or Neuron modules without
    synaptic or neuron children. Synaptic layers (DLIF, DGN) and the insides of a neuron are skipped."""
    found: list[tuple[str, Neuron]] = []
    taken: list[str] = []
    for name, mod in model.named_modules():
        if not isinstance(mod, Neuron) or any(name.startswith(t + ".") for t in taken):
            continue
        if is_synaptic_layer(mod):
            taken.append(name)  # its input is presynaptic spikes
            continue
        children = [c for c in mod.modules() if c is not mod]
        wrapper = any(isinstance(c, (Neuron, nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) for c in children)
        if is_known_neuron(mod) or not wrapper:
            found.append((name, mod))
            taken.append(name)
    return found


@contextmanager
def current_noise(model: nn.Module, sigma: float, *, generator: torch.Generator | None = None) -> Iterator[list[str]]:
    """Add Gaussian noise ``sigma·ξ`` to the input current of every activation-style neuron while active.

    Yields the names of the perturbed neurons. Works for ``forward`` calls and for ``run``/``step`` calls (which
    recurrent wrappers use), each call drawing fresh noise.
    """
    sigma = check_nonnegative("sigma", sigma)
    targets = _current_driven_neurons(model)
    handles, patched = [], []
    for _, mod in targets:
        depth = {"n": 0}

        def pre_hook(m, args, _depth=depth):
            _depth["n"] += 1
            if sigma == 0:
                return None
            return (gaussian_noise(args[0], sigma, generator=generator), *args[1:])

        def post_hook(m, args, output, _depth=depth):
            _depth["n"] -= 1

        handles += [mod.register_forward_pre_hook(pre_hook), mod.register_forward_hook(post_hook)]
        original = type(mod).run.__get__(mod)

        def noisy_run(x, state=None, *a, _orig=original, _depth=depth, **kw):
            if _depth["n"] == 0 and sigma > 0:  # a direct run/step call, not one inside forward
                x = gaussian_noise(x, sigma, generator=generator)
            return _orig(x, state, *a, **kw)

        if "run" not in mod.__dict__:
            mod.run = noisy_run
            patched.append(mod)
    try:
        yield [name for name, _ in targets]
    finally:
        for h in handles:
            h.remove()
        for mod in patched:
            mod.__dict__.pop("run", None)
