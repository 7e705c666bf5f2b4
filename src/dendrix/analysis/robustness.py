"""Robustness report: accuracy under input noise and gradient attacks, for a model trained on clean data.

Protocol (the DGN paper's, extended; ``docs/evaluation.md``): evaluate the trained model on the clean split, then
on each perturbation at each severity of a grid:

* spike noise (binary spike inputs only): additive, subtractive and mixed, probability ``p``;
* Gaussian noise on the input (analogue inputs: input noise; spike inputs: current noise into the first layer),
  standard deviation ``sigma``; optionally on every neuron's input current (``current_sigma``);
* FGSM, PGD and BIM with strength ``eps`` (L∞ radius for analogue inputs; fraction of flipped bits for spikes).

"Overall robustness" is the mean ± standard deviation of the accuracies over all settings with severity > 0.
Everything is deterministic under ``seed``: each (setting, batch) pair draws its noise from its own generator.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .._optional import require
from ..files import atomic_write, write_text
from ..validation import check_choice, check_int, check_nonnegative, check_range
from .attacks import ATTACKS, attack, resolve_input_kind
from .noise import SPIKE_NOISE_MODES, current_noise, gaussian_noise, spike_noise

__all__ = [
    "RobustnessReport", "robustness_report", "evaluate_accuracy",
    "DEFAULT_SPIKE_P", "DEFAULT_SIGMA", "DEFAULT_EPS_SPIKES", "DEFAULT_EPS_ANALOG",
]

DEFAULT_SPIKE_P = (0.0, 0.01, 0.02, 0.05, 0.1)        # probability per input element
DEFAULT_SIGMA = (0.0, 0.1, 0.2, 0.5)                  # std of Gaussian input noise (input units)
DEFAULT_EPS_SPIKES = (0.0, 0.002, 0.005, 0.01, 0.02)  # fraction of input bits flipped
DEFAULT_EPS_ANALOG = (0.0, 0.01, 0.03, 0.1)           # L∞ radius (input units)


@dataclass
class RobustnessReport:
    """Accuracy per perturbation and severity, and the overall robustness (fractions in [0, 1])."""

    clean_accuracy: float
    rows: list[dict]                 # {"perturbation", "family", "severity", "accuracy"}
    overall_robustness: float        # mean accuracy over settings with severity > 0
    overall_std: float               # their standard deviation (population)
    settings: int
    samples: int
    input_kind: str
    seed: int
    attack_steps: int
    notes: list[str] = field(default_factory=list)

    def accuracy(self, perturbation: str, severity: float) -> float:
        for row in self.rows:
            if row["perturbation"] == perturbation and math.isclose(row["severity"], severity, abs_tol=1e-12):
                return row["accuracy"]
        raise KeyError(f"no setting {perturbation!r} at severity {severity!r}")

    def perturbations(self) -> list[str]:
        return list(dict.fromkeys(r["perturbation"] for r in self.rows))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            "# Robustness report",
            "",
            f"Trained on clean data; evaluated on {self.samples} samples "
            f"({_KIND_WORD.get(self.input_kind, self.input_kind)} inputs), seed {self.seed}, "
            f"{self.attack_steps} steps for BIM/PGD.",
            "",
            f"- Clean accuracy: **{self.clean_accuracy:.4f}**",
            f"- Overall robustness (mean ± std over {self.settings} perturbed settings): "
            f"**{self.overall_robustness:.4f} ± {self.overall_std:.4f}**",
            "",
        ]
        for name in self.perturbations():
            rows = [r for r in self.rows if r["perturbation"] == name]
            unit = _SEVERITY_NAME.get(rows[0]["family"], "severity")
            lines += [f"## {name}", "", f"| {unit} | accuracy |", "|---:|---:|"]
            lines += [f"| {r['severity']:g} | {r['accuracy']:.4f} |" for r in rows]
            lines.append("")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        matplotlib = require("matplotlib", needed_by="RobustnessReport.plot")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        families = list(dict.fromkeys(r["family"] for r in self.rows))
        fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.4), squeeze=False)
        for ax, family in zip(axes[0], families):
            for name in self.perturbations():
                rows = [r for r in self.rows if r["perturbation"] == name and r["family"] == family]
                if rows:
                    ax.plot([r["severity"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=name)
            ax.axhline(self.clean_accuracy, color="grey", linestyle="--", linewidth=1, label="clean")
            label = _SEVERITY_NAME.get(family, "severity")
            if family == "attack":
                label += " (fraction of input bits flipped)" if self.input_kind == "spikes" else " (L∞ radius)"
            ax.set_xlabel(label)
            ax.set_ylabel("accuracy")
            ax.set_ylim(0, 1.02)
            ax.set_title(family)
            ax.legend(fontsize=7)
        fig.suptitle(f"overall robustness {self.overall_robustness:.3f} ± {self.overall_std:.3f}")
        fig.tight_layout()
        path = Path(path)
        try:
            atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        finally:
            plt.close(fig)
        return path

    def save(self, folder: str | Path, stem: str = "robustness") -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": folder / f"{stem}.json", "md": folder / f"{stem}.md", "png": folder / f"{stem}.png"}
        write_text(paths["json"], json.dumps(self.to_dict(), indent=2))
        write_text(paths["md"], self.to_markdown())
        self.plot(paths["png"])
        return paths


_KIND_WORD = {"spikes": "spike", "analog": "analogue"}
_SEVERITY_NAME = {"spike noise": "p", "gaussian noise": "σ", "current noise": "σ", "attack": "ε"}


def _generator(seed: int, setting: str, batch: int) -> torch.Generator:
    """A generator per (seed, setting, batch); the setting enters by name, so a smaller grid repeats exactly
    the noise of the same settings in a larger one."""
    key = zlib.crc32(setting.encode())
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + key * 10_007 + batch) % (2**63 - 1))


def _batches(loader: Iterable, device: torch.device, max_batches: int | None) -> list[tuple[Tensor, Tensor]]:
    out = []
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("loader must yield (x [T, B, C], y [B]) batches")
        out.append((batch[0].to(device), batch[1].to(device)))
    if not out:
        raise ValueError("loader yielded no batches")
    return out


def _correct(model: nn.Module, x: Tensor, y: Tensor) -> int:
    with torch.no_grad():
        return int((model(x).argmax(dim=-1) == y).sum())


def evaluate_accuracy(model: nn.Module, loader: Iterable, *, max_batches: int | None = None,
                      device: str | torch.device | None = None) -> float:
    """Clean accuracy (fraction) of ``model`` (in eval mode) over a time-first loader."""
    device = torch.device(device) if device is not None else _model_device(model)
    batches = _batches(loader, device, max_batches)
    with _eval_mode(model):
        correct = sum(_correct(model, x, y) for x, y in batches)
    return correct / sum(int(y.numel()) for _, y in batches)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class _eval_mode:
    def __init__(self, model: nn.Module):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)


def _check_grid(name: str, values: Sequence[float], high: float | None = None) -> tuple[float, ...]:
    out = []
    for v in values:
        out.append(check_range(name, v, 0.0, high) if high is not None else check_nonnegative(name, v))
    return tuple(out)


def robustness_report(model: nn.Module, loader: Iterable, *,
                      spike_p: Sequence[float] = DEFAULT_SPIKE_P,
                      noise_modes: Sequence[str] = SPIKE_NOISE_MODES,
                      gaussian_sigma: Sequence[float] = DEFAULT_SIGMA,
                      current_sigma: Sequence[float] = (),
                      attacks: Sequence[str] = ATTACKS,
                      epsilons: Sequence[float] | None = None,
                      attack_steps: int = 10,
                      input_kind: str = "auto",
                      clamp: tuple[float, float] | None = None,
                      seed: int = 0,
                      max_batches: int | None = None,
                      device: str | torch.device | None = None) -> RobustnessReport:
    """Accuracy of ``model`` on ``loader`` under each perturbation and severity (module docstring).

    Args:
        model: maps ``x [T, B, C]`` to logits ``[B, classes]``; evaluated in eval mode (restored afterwards).
        loader: yields ``(x, y)`` time-first batches (e.g. the test split). Batches are held in memory.
        spike_p, noise_modes: spike-noise grid (skipped for analogue inputs).
        gaussian_sigma: Gaussian input-noise grid. current_sigma: Gaussian noise on every activation-style
            neuron's input current (empty by default: layer-type neurons such as DLIF/DGN have no separable current).
        attacks, epsilons: attacks and their strengths (default grid depends on the input kind).
        attack_steps: iterations of BIM and PGD.
        input_kind: ``"auto"`` | ``"spikes"`` | ``"analog"``.
        clamp: valid range of analogue inputs for the attacks (None: unbounded).
        seed: makes noise and PGD starts reproducible.
        max_batches: evaluate only the first batches.
    """
    for mode in noise_modes:
        check_choice("noise mode", mode, SPIKE_NOISE_MODES)
    for name in attacks:
        check_choice("attack", name, ATTACKS)
    attack_steps = check_int("attack_steps", attack_steps, 1)
    spike_p = _check_grid("spike_p", spike_p, 1.0)
    gaussian_sigma = _check_grid("gaussian_sigma", gaussian_sigma)
    current_sigma = _check_grid("current_sigma", current_sigma)
    device = torch.device(device) if device is not None else _model_device(model)
    batches = _batches(loader, device, max_batches)
    kind = resolve_input_kind(batches[0][0], input_kind)
    if kind == "spikes" and any(resolve_input_kind(x) != "spikes" for x, _ in batches):
        raise ValueError("input_kind is 'spikes' but some batches hold non-binary values")
    if epsilons is None:
        epsilons = DEFAULT_EPS_SPIKES if kind == "spikes" else DEFAULT_EPS_ANALOG
    epsilons = _check_grid("epsilons", epsilons, 1.0 if kind == "spikes" else None)
    total = sum(int(y.numel()) for _, y in batches)
    notes: list[str] = []
    rows: list[dict] = []

    settings: list[tuple[str, str, float]] = []  # (perturbation, family, severity)
    if kind == "spikes":
        settings += [(f"spike noise ({mode})", "spike noise", p) for mode in noise_modes for p in spike_p]
    elif spike_p and noise_modes:
        notes.append("Spike noise skipped: the inputs are analogue.")
    settings += [("gaussian input noise", "gaussian noise", s) for s in gaussian_sigma]
    settings += [("gaussian current noise", "current noise", s) for s in current_sigma]
    settings += [(name.upper(), "attack", e) for name in attacks for e in epsilons]

    with _eval_mode(model):
        clean = sum(_correct(model, x, y) for x, y in batches) / total
        for name, family, severity in settings:
            correct = 0
            for b, (x, y) in enumerate(batches):
                gen = _generator(seed, f"{name}@{severity!r}", b)
                if family == "spike noise":
                    mode = name[name.index("(") + 1:-1]
                    correct += _correct(model, spike_noise(x, severity, mode, generator=gen), y)
                elif family == "gaussian noise":
                    correct += _correct(model, gaussian_noise(x, severity, generator=gen), y)
                elif family == "current noise":
                    with current_noise(model, severity, generator=gen) as perturbed:
                        correct += _correct(model, x, y)
                    if b == 0 and not perturbed and severity > 0:
                        notes.append("Current noise had no activation-style neuron to perturb.")
                else:
                    adv = attack(name.lower(), model, x, y, severity, steps=attack_steps, generator=gen,
                                 input_kind=kind, clamp=clamp)
                    correct += _correct(model, adv, y)
            rows.append({"perturbation": name, "family": family, "severity": severity, "accuracy": correct / total})

    perturbed = [r["accuracy"] for r in rows if r["severity"] > 0]
    mean = sum(perturbed) / len(perturbed) if perturbed else clean
    std = math.sqrt(sum((a - mean) ** 2 for a in perturbed) / len(perturbed)) if perturbed else 0.0
    if kind == "spikes":
        notes.append("Spike attacks: eps is the fraction of input bits each sample may flip; the attack ascends in "
                     "the convex relaxation of the flip budget and is projected back to binary spikes.")
    else:
        notes.append("Attacks: eps is the L∞ radius in input units.")
    if kind == "spikes" and gaussian_sigma:
        notes.append("Gaussian noise on spike inputs is current noise into the first synaptic layer "
                     "(the perturbed input is not binary).")
    return RobustnessReport(clean_accuracy=clean, rows=rows, overall_robustness=mean, overall_std=std,
                            settings=len(perturbed), samples=total, input_kind=kind, seed=int(seed),
                            attack_steps=attack_steps, notes=notes)
