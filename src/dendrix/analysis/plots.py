"""Comparison figures over seeds (matplotlib, Agg backend; the ``plot`` extra).

``summary`` is ``{kind: {metric: summarize(...)}}`` (:func:`dendrix.analysis.statistics.summarize`: ``mean``,
``std``, ``ci_low``, ``ci_high``, ``half_width``, ``n``); error bars are the 95 % Student-t interval of the mean
over seeds (none with a single seed). Metrics in fractions (accuracy, robustness) are drawn in percent.

* :func:`plot_tradeoff`: accuracy against a cost (energy) or a second merit (robustness), with the Pareto front.
* :func:`plot_accuracy_intervals`: accuracy per kind, sorted, on an axis zoomed to the differences, every seed
  drawn as a dot beside its interval.
* :func:`plot_robustness_curves`: accuracy against perturbation severity per kind, one panel per perturbation.
* :func:`plot_split_accuracy`: accuracy per kind on each split (official vs unseen speakers) side by side.
* :func:`plot_seed_learning_curves`: training loss and validation accuracy per epoch, mean with a ±1 std band.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .._optional import require
from ..files import atomic_write

__all__ = ["pareto_front", "plot_tradeoff", "plot_accuracy_intervals", "plot_robustness_curves",
           "plot_seed_learning_curves", "plot_split_accuracy"]

PERCENT = {"test_accuracy", "val_accuracy", "overall_robustness"}


def _pyplot():
    matplotlib = require("matplotlib", needed_by="dendrix.analysis.plots")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", needed_by="dendrix.analysis.plots")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))  # a reader never sees half a PNG
    return path


def _colors(plt, n: int) -> list:
    base = plt.get_cmap("tab10" if n <= 10 else "tab20").colors
    return [base[i % len(base)] for i in range(n)]


def _point(stats: Mapping | None, scale: float) -> tuple[float, float]:
    """(mean, interval half width) scaled; NaN mean when missing, 0 half width when not estimable."""
    if not stats or not math.isfinite(stats.get("mean", math.nan)):
        return math.nan, 0.0
    half = stats.get("half_width", math.nan)
    return scale * stats["mean"], scale * half if math.isfinite(half) else 0.0


def pareto_front(x: Sequence[float], y: Sequence[float], minimize_x: bool = True) -> list[int]:
    """Indices of the points no other point beats in both coordinates (higher ``y`` is better; lower ``x`` if
    ``minimize_x`` else higher), sorted by ``x``."""
    pts = [(xi if minimize_x else -xi, -yi, i) for i, (xi, yi) in enumerate(zip(x, y))
           if math.isfinite(xi) and math.isfinite(yi)]
    front, best = [], math.inf
    for cx, cy, i in sorted(pts):
        if cy < best:
            front.append(i)
            best = cy
    return sorted(front, key=lambda i: x[i])


def plot_tradeoff(path: str | Path, summary: Mapping[str, Mapping], x_metric: str, x_label: str, *,
                  minimize_x: bool = True, y_metric: str = "test_accuracy", y_label: str = "test accuracy (%)",
                  title: str | None = None) -> Path | None:
    """Scatter of ``y_metric`` against ``x_metric`` per kind with interval error bars and the Pareto front (dashed).
    Returns the path, or None when fewer than one kind has both metrics."""
    plt = _pyplot()
    xs_scale = 100.0 if x_metric in PERCENT else 1.0
    ys_scale = 100.0 if y_metric in PERCENT else 1.0
    kinds, xs, xe, ys, ye = [], [], [], [], []
    for kind, stats in summary.items():
        x, dx = _point(stats.get(x_metric), xs_scale)
        y, dy = _point(stats.get(y_metric), ys_scale)
        if math.isfinite(x) and math.isfinite(y):
            kinds.append(kind), xs.append(x), xe.append(dx), ys.append(y), ye.append(dy)
    if not kinds:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for kind, x, dx, y, dy, color in zip(kinds, xs, xe, ys, ye, _colors(plt, len(kinds))):
        ax.errorbar(x, y, xerr=dx, yerr=dy, fmt="o", ms=6, capsize=3, color=color, label=kind)
        ax.annotate(kind, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=9)
    front = pareto_front(xs, ys, minimize_x)
    if len(front) > 1:
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "k--", lw=1, alpha=0.6, label="Pareto front")
    ax.set(xlabel=x_label, ylabel=y_label,
           title=title or f"{y_label} vs {x_label} (mean, 95 % interval over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_accuracy_intervals(path: str | Path, summary: Mapping[str, Mapping],
                            per_seed: Mapping[str, Sequence[float]] | None = None,
                            metric: str = "test_accuracy", label: str = "test accuracy (%)") -> Path | None:
    """Horizontal intervals of ``metric`` per kind, best on top; the axis spans the data (not from 0) so the
    differences show. ``per_seed``: ``{kind: [value per seed]}`` drawn as small dots."""
    plt = _pyplot()
    scale = 100.0 if metric in PERCENT else 1.0
    items = [(k, *_point(s.get(metric), scale)) for k, s in summary.items()]
    items = [it for it in items if math.isfinite(it[1])]
    if not items:
        return None
    items.sort(key=lambda it: it[1])
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.45 * len(items) + 1.2)))
    for pos, (kind, mean, half) in enumerate(items):
        ax.errorbar(mean, pos, xerr=half, fmt="o", color="tab:blue", capsize=4, ms=6)
        if per_seed and per_seed.get(kind):
            vals = [scale * v for v in per_seed[kind] if v is not None]
            ax.scatter(vals, [pos + 0.22] * len(vals), s=12, color="tab:gray", zorder=3)
        ax.annotate(f"{mean:.1f}" + (f" ± {half:.1f}" if half else ""), (mean, pos), textcoords="offset points",
                    xytext=(0, -13), ha="center", fontsize=8)
    ax.set_yticks(range(len(items)), [it[0] for it in items])
    ax.set_ylim(-0.7, len(items) - 0.3)
    lows = [m - h for _, m, h in items] + [scale * v for k, *_ in items for v in (per_seed or {}).get(k, []) or []
                                           if v is not None]
    highs = [m + h for _, m, h in items] + [scale * v for k, *_ in items
                                            for v in (per_seed or {}).get(k, []) or [] if v is not None]
    pad = max(0.5, 0.08 * (max(highs) - min(lows)))
    ax.set_xlim(min(lows) - pad, max(highs) + pad)
    ax.set(xlabel=label + " — mean and 95 % interval over seeds; dots: single seeds",
           title=f"{label} per neuron kind")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_robustness_curves(path: str | Path, settings: Mapping[str, Sequence[Sequence[Mapping]]],
                           clean: Mapping[str, Sequence[float]] | None = None) -> Path | None:
    """Accuracy against severity per kind, one panel per perturbation (mean over seeds, ±1 std error bars).

    ``settings``: ``{kind: [rows of one seed]}``, each row ``{"perturbation", "severity", "accuracy"}`` (the
    ``robustness_settings`` of :func:`dendrix.analysis.summary.quick_evaluation`); ``clean``: ``{kind: [clean
    accuracy per seed]}``, drawn at severity 0 when the grid has no severity-0 row."""
    plt = _pyplot()
    perturbations = list(dict.fromkeys(r["perturbation"] for runs in settings.values() for rows in runs
                                       for r in rows))
    if not perturbations:
        return None
    fig, axes = plt.subplots(1, len(perturbations), figsize=(5.2 * len(perturbations), 4.4), squeeze=False)
    kinds = list(settings)
    for ax, name in zip(axes[0], perturbations):
        for kind, color in zip(kinds, _colors(plt, len(kinds))):
            by_severity: dict[float, list[float]] = {}
            for rows in settings[kind]:
                for r in rows:
                    if r["perturbation"] == name:
                        by_severity.setdefault(float(r["severity"]), []).append(100 * r["accuracy"])
            if not by_severity:
                continue
            if 0.0 not in by_severity and clean and clean.get(kind):
                by_severity[0.0] = [100 * v for v in clean[kind] if v is not None]
            sev = sorted(by_severity)
            mean = [float(np.mean(by_severity[s])) for s in sev]
            std = [float(np.std(by_severity[s], ddof=1)) if len(by_severity[s]) > 1 else 0.0 for s in sev]
            ax.errorbar(sev, mean, yerr=std, marker="o", ms=4, capsize=3, color=color, label=kind)
        ax.set(xlabel="severity", ylabel="accuracy (%)", title=name)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, ncol=2, loc="best")
    fig.suptitle("robustness per kind (mean over seeds, ±1 std)")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_split_accuracy(path: str | Path, by_split: Mapping[str, Mapping[str, Mapping]],
                        per_seed: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
                        metric: str = "test_accuracy") -> Path | None:
    """``metric`` per kind on every split, one row per kind with one interval per split (offset vertically).

    ``by_split``: ``{split: {kind: summary entry}}`` (summary entries as in the module docstring); ``per_seed``:
    ``{split: {kind: [value per seed]}}`` drawn as small dots. Kinds sorted by their first-split mean, best on top."""
    plt = _pyplot()
    scale = 100.0 if metric in PERCENT else 1.0
    splits = list(by_split)
    kinds = list(dict.fromkeys(k for entries in by_split.values() for k in entries))
    first = {k: _point(by_split[splits[0]].get(k, {}).get(metric), scale)[0] for k in kinds}
    kinds.sort(key=lambda k: first[k] if math.isfinite(first[k]) else -math.inf)
    fig, ax = plt.subplots(figsize=(8, max(2.8, 0.7 * len(kinds) + 1.4)))
    offsets = np.linspace(-0.2, 0.2, len(splits)) if len(splits) > 1 else [0.0]
    values: list[float] = []
    for split, color, offset in zip(splits, _colors(plt, len(splits)), offsets):
        drawn = False
        for pos, kind in enumerate(kinds):
            mean, half = _point(by_split[split].get(kind, {}).get(metric), scale)
            if not math.isfinite(mean):
                continue
            ax.errorbar(mean, pos + offset, xerr=half, fmt="o", color=color, capsize=3, ms=5,
                        label=None if drawn else split)
            drawn = True
            values += [mean - half, mean + half]
            seeds = [scale * v for v in ((per_seed or {}).get(split, {}).get(kind) or []) if v is not None]
            ax.scatter(seeds, [pos + offset] * len(seeds), s=9, color="tab:gray", zorder=3)
            values += seeds
    if not values:
        plt.close(fig)
        return None
    pad = max(0.5, 0.08 * (max(values) - min(values)))
    ax.set_xlim(min(values) - pad, max(values) + pad)
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_ylim(-0.7, len(kinds) - 0.3)
    ax.set(xlabel="test accuracy (%) — mean and 95 % interval over seeds; dots: single seeds",
           title="test accuracy per split (" + " vs ".join(splits) + ")")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _band(ax, epochs, runs: list[list[float]], color, label, scale: float = 1.0) -> None:
    length = min(len(r) for r in runs)
    values = scale * np.asarray([r[:length] for r in runs], dtype=np.float64)
    mean = values.mean(axis=0)
    ax.plot(epochs[:length], mean, color=color, label=label, lw=1.5, marker="o", ms=3)  # markers: 1 epoch shows
    if len(runs) > 1:
        std = values.std(axis=0, ddof=1)
        if length > 1:
            ax.fill_between(epochs[:length], mean - std, mean + std, color=color, alpha=0.2, lw=0)
        else:
            ax.errorbar(epochs[:length], mean, yerr=std, color=color, capsize=3)


def plot_seed_learning_curves(path: str | Path, histories: Mapping[str, Mapping[object, Sequence[Mapping]]]
                              ) -> Path:
    """Training loss and validation accuracy per epoch and kind: the mean over seeds, a ±1 std band.
    ``histories``: ``{kind: {seed: [per-epoch rows with "epoch", "train_loss", optional "val_accuracy"]}}``."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    kinds = list(histories)
    for kind, color in zip(kinds, _colors(plt, len(kinds))):
        runs = [list(h) for h in histories[kind].values() if h]
        if not runs:
            continue
        epochs = np.asarray([r["epoch"] for r in max(runs, key=len)])
        _band(ax_loss, epochs, [[r["train_loss"] for r in h] for h in runs], color, kind)
        if all("val_accuracy" in h[0] for h in runs):
            _band(ax_acc, epochs, [[r["val_accuracy"] for r in h] for h in runs], color, kind, scale=100.0)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss (mean over seeds, ±1 std)")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)",
               title="validation accuracy (mean over seeds, ±1 std)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    if ax_acc.lines:
        ax_acc.legend(fontsize=8, ncol=2)
    elif ax_loss.lines:
        ax_loss.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out
