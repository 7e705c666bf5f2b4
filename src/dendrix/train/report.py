"""Comparison reports: one row per neuron kind -> report.md (Markdown table), report.json, PNG figures.

Rows are built only by :func:`make_row`, so columns added later (energy, robustness) are added in one place.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .checkpoint import atomic_write, write_json

__all__ = ["make_row", "markdown_table", "write_report", "plot_learning_curves", "plot_accuracy", "plot_raster"]

# (key, header, format) of the table columns, in order.
COLUMNS = [
    ("neuron", "neuron", "{}"),
    ("test_accuracy", "test acc (%)", "pct"),
    ("val_accuracy", "val acc (%)", "pct"),
    ("params", "params", "{:,}"),
    ("spike_rate", "spike rate", "{:.4f}"),
    ("sec_per_epoch", "s/epoch", "{:.1f}"),
    ("energy_uj", "energy (μJ/sample)", "{:.3f}"),
    ("overall_robustness", "robustness (%)", "pct"),
    ("best_epoch", "best epoch", "{}"),
]


def make_row(kind: str, result: dict | None = None, error: str | None = None, **extra: Any) -> dict[str, Any]:
    """One report row. ``result`` is a trainer result (``Trainer.finish``); ``error`` a one-line failure."""
    result = result or {}
    row = {
        "neuron": kind,
        "test_accuracy": result.get("test_accuracy"),
        "params": result.get("params"),
        "spike_rate": result.get("spike_rate"),
        "sec_per_epoch": result.get("sec_per_epoch"),
        "val_accuracy": result.get("val_accuracy"),
        "best_epoch": result.get("best_epoch"),
        "epochs": result.get("epochs"),
        "run_dir": result.get("run_dir"),
        "error": error,
    }
    row.update(extra)
    return row


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt == "pct":
        return f"{100 * value:.1f}"
    return fmt.format(value)


def markdown_table(rows: Sequence[dict], extra_columns: Sequence[tuple[str, str, str]] = ()) -> str:
    """The comparison table in Markdown: one row per kind, the standard columns plus ``extra_columns``."""
    columns = list(COLUMNS) + list(extra_columns)
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" if k == "neuron" else "---:" for k, _, _ in columns) + "|"]
    for row in rows:
        if row.get("error"):
            cells = [row["neuron"], f"failed: {row['error']}"] + [""] * (len(columns) - 2)
        else:
            cells = [_fmt(row.get(k), f) for k, _, f in columns]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(path: Path, histories: dict[str, list[dict]]) -> None:
    """Training loss and validation accuracy per epoch of every kind, written as a PNG to ``path``."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.get_cmap("tab20").colors
    for i, (kind, history) in enumerate(histories.items()):
        if not history:
            continue
        style = {"color": colors[i % len(colors)], "linestyle": ("-", "--", ":")[(i // len(colors)) % 3]}
        epochs = [r["epoch"] for r in history]
        ax_loss.plot(epochs, [r["train_loss"] for r in history], label=kind, **style)
        if "val_accuracy" in history[0]:
            ax_acc.plot(epochs, [100 * r["val_accuracy"] for r in history], marker="o", ms=3, label=kind, **style)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy")
    if ax_acc.lines:
        ax_acc.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def plot_accuracy(path: Path, rows: Sequence[dict]) -> None:
    """Test accuracy of every kind as a bar chart, written as a PNG to ``path``."""
    plt = _pyplot()
    ok = [r for r in rows if r.get("test_accuracy") is not None]
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(ok) + 2), 4))
    names = [r["neuron"] for r in ok]
    values = [100 * r["test_accuracy"] for r in ok]
    bars = ax.bar(names, values, color="tab:blue")
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.5, f"{v:.1f}", ha="center", fontsize=7)
    ax.set(ylabel="test accuracy (%)", ylim=(0, 105), title="test accuracy per neuron kind")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def plot_raster(path: Path, spikes: np.ndarray, title: str) -> None:
    """``spikes`` [T, N] of one sample (one hidden layer)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    t, n = np.nonzero(spikes)
    ax.scatter(t, n, s=1.5, c="k", marker="|")
    ax.set(xlabel="time step", ylabel="neuron", title=title, xlim=(-0.5, spikes.shape[0] - 0.5),
           ylim=(-0.5, spikes.shape[1] - 0.5))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def write_report(out_dir: Path, rows: Sequence[dict], histories: dict[str, list[dict]], title: str,
                 command: str | None = None, extra_columns: Sequence[tuple[str, str, str]] = (),
                 notes: Sequence[str] = ()) -> str:
    """Write report.md, report.json, learning_curves.png and accuracy.png; returns the Markdown table."""
    out_dir = Path(out_dir)
    table = markdown_table(rows, extra_columns)
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [table, ""] + [f"{n}  " for n in notes] + ["", "![learning curves](learning_curves.png)", "", "![test accuracy](accuracy.png)", ""]
    rasters = [r["neuron"] for r in rows if (out_dir / f"raster_{r['neuron']}.png").exists()]
    if rasters:
        lines += ["## Spike rasters (first hidden layer, first test sample)", ""]
        lines += [f"![{k}](raster_{k}.png)" for k in rasters] + [""]
    atomic_write(out_dir / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines)))
    write_json(out_dir / "report.json", list(rows))
    plot_learning_curves(out_dir / "learning_curves.png", histories)
    plot_accuracy(out_dir / "accuracy.png", rows)
    return table
