"""Analysis of trained models: energy accounting, robustness to noise and attacks (``docs/evaluation.md``).

Submodules load on first use (``dendrix.analysis.energy_report`` imports ``analysis/energy.py`` then), so
``import dendrix`` stays cheap.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "energy_report": "energy", "count_operations": "energy", "EnergyReport": "energy",
    "robustness_report": "robustness", "RobustnessReport": "robustness", "evaluate_accuracy": "robustness",
    "fgsm": "attacks", "bim": "attacks", "pgd": "attacks", "attack": "attacks",
    "spike_noise": "noise", "gaussian_noise": "noise", "current_noise": "noise",
    "quick_evaluation": "summary",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
