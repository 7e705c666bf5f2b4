"""Analysis of trained models: energy accounting, robustness to noise and attacks (``docs/evaluation.md``).

Submodules load on first use (``dendrix.analysis.energy_report`` imports the ``analysis/energy/`` package
then), so ``import dendrix`` stays cheap.
"""

from __future__ import annotations

from .._lazy import lazy_exports
_LAZY = {
    "energy_report": "energy", "count_operations": "energy", "EnergyReport": "energy",
    "robustness_report": "robustness", "RobustnessReport": "robustness", "evaluate_accuracy": "robustness",
    "fgsm": "attacks", "bim": "attacks", "pgd": "attacks", "attack": "attacks",
    "spike_noise": "noise", "gaussian_noise": "noise", "current_noise": "noise",
    "quick_evaluation": "summary",
    "run_claim": "claims", "claim_names": "claims",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, ())
