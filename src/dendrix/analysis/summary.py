"""Headline numbers for tables such as ``dendrix demo``: energy per sample and a small-grid overall robustness.

``quick_evaluation`` is meant to take seconds on a small FSDD MLP: the energy is counted on the loader (all of
it by default), the robustness on a deliberately small grid — mixed spike noise p ∈ {0.05, 0.1} and FGSM with
2% of the input bits flipped (spike inputs), or Gaussian input noise σ ∈ {0.1, 0.2} and FGSM with ε = 0.03
(analogue inputs). Its "overall robustness" is the mean accuracy over those three settings, so it is comparable
between neurons evaluated with this function, not with the full grid of :func:`robustness_report`.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..validation import check_int
from .attacks import resolve_input_kind
from .energy import energy_report
from .robustness import robustness_report

__all__ = ["quick_evaluation", "QUICK_SPIKE_P", "QUICK_FGSM_EPS_SPIKES", "QUICK_SIGMA", "QUICK_FGSM_EPS_ANALOG"]

QUICK_SPIKE_P = (0.05, 0.1)
QUICK_FGSM_EPS_SPIKES = 0.02
QUICK_SIGMA = (0.1, 0.2)
QUICK_FGSM_EPS_ANALOG = 0.03


def quick_evaluation(model: nn.Module, loader: Iterable, *, seed: int = 0, max_batches: int | None = None,
                     max_samples: int | None = None, device: str | torch.device | None = None) -> dict:
    """``{"energy_uj": μJ per sample, "overall_robustness": fraction, "clean_accuracy": fraction,
    "break_even_rate": float | None, "robustness_settings": [{"perturbation", "family", "severity", "accuracy"}]}``
    for ``model`` on ``loader`` (see the module docstring for the grid).

    ``max_batches`` / ``max_samples`` limit the evaluation to the first batches / samples (time-first batches
    are cut along dim 1), e.g. to bound the cost in a table over many neuron kinds.
    """
    if max_samples is not None:
        max_samples = check_int("max_samples", max_samples, 1)
    batches, taken = [], 0
    for i, (x, y) in enumerate(loader):
        if (max_batches is not None and i >= max_batches) or (max_samples is not None and taken >= max_samples):
            break
        if max_samples is not None and taken + len(y) > max_samples:
            keep = max_samples - taken
            x, y = x[:, :keep], y[:keep]
        batches.append((x, y))
        taken += len(y)
    if not batches:
        raise ValueError("loader yielded no batches")
    energy = energy_report(model, batches, device=device)
    kind = resolve_input_kind(batches[0][0])
    if kind == "spikes":
        grid = dict(spike_p=QUICK_SPIKE_P, noise_modes=("mixed",), gaussian_sigma=(),
                    epsilons=(QUICK_FGSM_EPS_SPIKES,))
    else:
        grid = dict(spike_p=(), gaussian_sigma=QUICK_SIGMA, epsilons=(QUICK_FGSM_EPS_ANALOG,))
    robust = robustness_report(model, batches, attacks=("fgsm",), input_kind=kind, seed=seed, device=device, **grid)
    return {
        "energy_uj": energy.energy_uj,
        "overall_robustness": robust.overall_robustness,
        "clean_accuracy": robust.clean_accuracy,
        "break_even_rate": energy.break_even_rate,
        "robustness_settings": [dict(r) for r in robust.rows],
    }
