"""Comparison reports: per-seed rows -> a summary over seeds, pairwise tests, report.md, report.json, PNG figures.

Rows are built only by :func:`make_row` (one per kind and seed), so columns added later are added in one place.
:func:`summarize_rows` gives mean, std and the 95 % Student-t interval per kind and metric;
:func:`pairwise_significance` tests every pair of kinds (paired t-test over seeds, Holm-corrected; for test
accuracy also a paired bootstrap over test samples). :func:`write_report` writes it all.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._optional import require
from ..analysis import plots
from ..analysis.statistics import (BOOTSTRAP_METHOD, PAIRED_T_METHOD, paired_bootstrap, holm, pairwise_tests,
                                   summarize)
from .checkpoint import atomic_write, write_json

__all__ = ["make_row", "markdown_table", "summarize_rows", "pairwise_significance", "summary_table",
           "pairwise_table", "write_report", "plot_raster", "SUMMARY_METRICS", "pairwise_sections"]

logger = logging.getLogger(__name__)

# (key, header, format) of the per-seed table columns, in order.
COLUMNS = [
    ("neuron", "neuron", "{}"),
    ("seed", "seed", "{}"),
    ("test_accuracy", "test acc (%)", "pct"),
    ("val_accuracy", "val acc (%)", "pct"),
    ("params", "params", "{:,}"),
    ("spike_rate", "spike rate", "{:.4f}"),
    ("sec_per_epoch", "s/epoch", "{:.1f}"),
    ("energy_uj", "energy (μJ/sample)", "{:.3f}"),
    ("overall_robustness", "robustness (%)", "pct"),
    ("best_epoch", "best epoch", "{}"),
]

# Metrics summarised over seeds and tested pairwise: (key, header, format).
SUMMARY_METRICS = [
    ("test_accuracy", "test acc (%)", "pct"),
    ("spike_rate", "spike rate", "{:.4f}"),
    ("energy_uj", "energy (μJ/sample)", "{:.3f}"),
    ("overall_robustness", "robustness (%)", "pct"),
]
# Also summarised (reported in the summary, not tested).
_DESCRIPTIVE = ["val_accuracy", "params", "sec_per_epoch", "wall_seconds"]


def make_row(kind: str, result: dict | None = None, error: str | None = None, **extra: Any) -> dict[str, Any]:
    """One report row. ``result`` is a trainer result (``Trainer.finish``); ``error`` a one-line failure."""
    result = result or {}
    row = {
        "neuron": kind,
        "seed": None,
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


def _cells(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def markdown_table(rows: Sequence[dict], extra_columns: Sequence[tuple[str, str, str]] = ()) -> str:
    """The per-seed table: one line per row (a failed run shows its error)."""
    columns = list(COLUMNS) + list(extra_columns)
    lines = [_cells([h for _, h, _ in columns]),
             "|" + "|".join("---" if k == "neuron" else "---:" for k, _, _ in columns) + "|"]
    for row in rows:
        if row.get("error"):
            cells = [row["neuron"], _fmt(row.get("seed"), "{}"), f"failed: {row['error']}"] + [""] * (len(columns) - 3)
        else:
            cells = [_fmt(row.get(k), f) for k, _, f in columns]
        lines.append(_cells(cells))
    return "\n".join(lines)


def _kinds(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(r["neuron"] for r in rows))


def _ok(rows: Sequence[dict], kind: str) -> list[dict]:
    return [r for r in rows if r["neuron"] == kind and not r.get("error")]


def summarize_rows(rows: Sequence[dict], confidence: float = 0.95) -> dict[str, dict]:
    """``{kind: {"seeds": [...], "failed": n, "hidden": ..., metric: summarize(values over seeds)}}`` for the
    metrics of :data:`SUMMARY_METRICS` and val accuracy, parameters, seconds per epoch and wall seconds."""
    summary = {}
    for kind in _kinds(rows):
        ok = _ok(rows, kind)
        entry: dict[str, Any] = {"seeds": [r.get("seed") for r in ok],
                                 "failed": sum(1 for r in rows if r["neuron"] == kind and r.get("error")),
                                 "hidden": ok[0].get("hidden") if ok else None}
        for key in [k for k, _, _ in SUMMARY_METRICS] + _DESCRIPTIVE:
            entry[key] = summarize([r.get(key) for r in ok], confidence)
        summary[kind] = entry
    return summary


def _per_seed(rows: Sequence[dict], key: str) -> dict[str, dict[Any, float]]:
    out: dict[str, dict[Any, float]] = {}
    for kind in _kinds(rows):
        values = {r.get("seed"): r[key] for r in _ok(rows, kind) if r.get(key) is not None}
        if values:
            out[kind] = values
    return out


def pairwise_significance(rows: Sequence[dict], alpha: float = 0.05, resamples: int = 10_000) -> dict:
    """Every pair of kinds, for every metric of :data:`SUMMARY_METRICS`: a paired t-test over the seeds both
    kinds have (Holm-corrected over the pairs of that metric), and for test accuracy a paired bootstrap over
    test samples (needs the rows' ``test_correct``; Holm-corrected too). ``{"alpha", "methods", metric: [...],
    "test_accuracy_bootstrap": [...]}``."""
    result: dict[str, Any] = {"alpha": alpha, "methods": {"t_test": PAIRED_T_METHOD, "bootstrap": BOOTSTRAP_METHOD}}
    for key, _, _ in SUMMARY_METRICS:
        result[key] = pairwise_tests(_per_seed(rows, key), alpha)
    correct = _per_seed(rows, "test_correct")
    boot = []
    kinds = list(correct)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            seeds = [s for s in correct[a] if s in correct[b] and len(correct[a][s]) == len(correct[b][s])]
            if not seeds:
                continue
            test = paired_bootstrap([correct[a][s] for s in seeds], [correct[b][s] for s in seeds],
                                    resamples=resamples)
            boot.append({"a": a, "b": b, **test})
    for res, adj in zip(boot, holm([r["p"] for r in boot])):
        res["p_holm"] = adj
        res["significant"] = bool(adj < alpha)
    result["test_accuracy_bootstrap"] = boot
    return result


def _mean_cell(stats: Mapping | None, fmt: str) -> str:
    if not stats or not math.isfinite(stats.get("mean", math.nan)):
        return "–"
    scale = 100.0 if fmt == "pct" else 1.0
    show = (lambda v: f"{scale * v:.1f}") if fmt == "pct" else (lambda v: fmt.format(v))
    if not math.isfinite(stats.get("std", math.nan)):
        return show(stats["mean"])
    return f"{show(stats['mean'])} ± {show(stats['std'])} [{show(stats['ci_low'])}, {show(stats['ci_high'])}]"


def summary_table(summary: Mapping[str, Mapping]) -> str:
    """One line per kind: seeds, width, params, each metric as ``mean ± std [95 % interval]``."""
    header = ["neuron", "seeds", "hidden", "params"] + [h for _, h, _ in SUMMARY_METRICS] + ["s/epoch"]
    lines = [_cells(header), "|---|" + "---:|" * (len(header) - 1)]
    for kind, entry in summary.items():
        if not entry["seeds"]:
            lines.append(_cells([kind, f"0 ({entry['failed']} failed)", "", "", "failed:"] + [""] * (len(header) - 5)))
            continue
        seeds = str(len(entry["seeds"])) + (f" ({entry['failed']} failed)" if entry["failed"] else "")
        params = entry["params"]["mean"]
        cells = [kind, seeds, ",".join(str(h) for h in entry.get("hidden") or []) or "–",
                 f"{params:,.0f}" if math.isfinite(params) else "–"]
        cells += [_mean_cell(entry[k], f) for k, _, f in SUMMARY_METRICS]
        cells.append(_mean_cell(entry["sec_per_epoch"], "{:.1f}"))
        lines.append(_cells(cells))
    return "\n".join(lines)


def pairwise_table(tests: Sequence[Mapping], fmt: str, label: str) -> str:
    """Markdown table of pairwise tests (difference a − b, raw and Holm-adjusted p, significant or not)."""
    scale, unit = (100.0, " (points)") if fmt == "pct" else (1.0, "")
    lines = [_cells(["a", "b", f"{label}: a − b{unit}", "p", "p (Holm)", "significant"]), "|---|---|---:|---:|---:|:---:|"]
    for t in tests:
        if not math.isfinite(t.get("p", math.nan)):
            continue
        diff = scale * t["mean_diff"]
        lines.append(_cells([t["a"], t["b"], f"{diff:+.2f}" if fmt == "pct" else f"{diff:+.4g}", f"{t['p']:.3g}", f"{t['p_holm']:.3g}",
                             "yes" if t["significant"] else "no"]))
    return "\n".join(lines) if len(lines) > 2 else ""


def _pyplot():
    matplotlib = require("matplotlib", needed_by="dendrix.train.report")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", needed_by="dendrix.train.report")


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


def _histories(histories: Mapping[str, Any]) -> dict[str, dict]:
    """Accept ``{kind: {seed: history}}`` or the one-seed ``{kind: history}``."""
    return {k: (dict(h) if isinstance(h, Mapping) else {None: list(h)}) for k, h in histories.items()}


def _figures(out_dir: Path, rows: Sequence[dict], summary: dict, histories: dict,
             suffix: str = "") -> list[tuple[str, str]]:
    """Draw every figure (file names end in ``suffix``, e.g. ``_speaker``); returns (caption, file name) of those
    drawn."""
    drawn = []
    name = lambda stem: f"{stem}{suffix}.png"  # noqa: E731
    per_seed_acc = {k: [r["test_accuracy"] for r in _ok(rows, k)] for k in summary}
    if plots.plot_accuracy_intervals(out_dir / name("accuracy"), summary, per_seed_acc):
        drawn.append(("test accuracy per kind (95 % interval over seeds)", name("accuracy")))
    if plots.plot_tradeoff(out_dir / name("accuracy_vs_energy"), summary, "energy_uj", "energy (μJ per sample)"):
        drawn.append(("accuracy vs energy, Pareto front dashed", name("accuracy_vs_energy")))
    if plots.plot_tradeoff(out_dir / name("accuracy_vs_robustness"), summary, "overall_robustness",
                           "overall robustness (%)", minimize_x=False):
        drawn.append(("accuracy vs robustness, Pareto front dashed", name("accuracy_vs_robustness")))
    settings = {k: [r["robustness_settings"] for r in _ok(rows, k) if r.get("robustness_settings")] for k in summary}
    clean = {k: [r["test_accuracy"] for r in _ok(rows, k)] for k in summary}
    if any(settings.values()) and plots.plot_robustness_curves(out_dir / name("robustness_curves"),
                                                                {k: v for k, v in settings.items() if v}, clean):
        drawn.append(("robustness curves per kind", name("robustness_curves")))
    plots.plot_seed_learning_curves(out_dir / name("learning_curves"), histories)
    drawn.append(("learning curves (mean over seeds, ±1 std band)", name("learning_curves")))
    return drawn


def write_report(out_dir: Path, rows: Sequence[dict], histories: Mapping[str, Any], title: str,
                 command: str | None = None, extra_columns: Sequence[tuple[str, str, str]] = (),
                 notes: Sequence[str] = (), budget: Mapping | None = None, alpha: float = 0.05) -> str:
    """Write report.md, report.json (``{"rows": per-seed rows, "summary", "pairwise", "budget"}``) and the
    figures (accuracy, accuracy vs energy / robustness, robustness curves, learning curves); returns the
    summary table."""
    out_dir = Path(out_dir)
    splits = list(dict.fromkeys(r.get("split") for r in rows))
    if len(splits) > 1:
        from .report_splits import write_split_report

        return write_split_report(out_dir, rows, histories, title, command=command, extra_columns=extra_columns,
                                  notes=notes, budget=budget, alpha=alpha)
    if splits and splits[0] is not None and splits[0] in histories:  # one split of compare_kinds(splits=[...])
        histories = histories[splits[0]]
        extra_columns = [("split", "split", "{}"), *extra_columns]
    histories = _histories(histories)
    summary = summarize_rows(rows)
    pairwise = pairwise_significance(rows, alpha)
    table = summary_table(summary)
    seeds = sorted({r.get("seed") for r in rows if r.get("seed") is not None})
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Seeds: {', '.join(map(str, seeds)) or 'the config seed'}. Cells: mean ± sample std "
              "[95 % Student-t interval of the mean over seeds]; one seed gives the value alone.", ""]
    if budget:
        lines += [_budget_text(budget), ""]
    lines += [table, ""] + [f"{n}  " for n in notes] + [""]
    drawn = _figures(out_dir, rows, summary, histories)
    lines += [f"![{caption}]({name})\n" for caption, name in drawn]
    lines += ["## Pairwise differences", "",
              f"Significance at α = {alpha}. Per metric: {PAIRED_T_METHOD} (needs ≥ 2 seeds). For test accuracy "
              f"also: {BOOTSTRAP_METHOD}.", ""]
    lines += pairwise_sections(pairwise)
    lines += ["## Per-seed rows", "", markdown_table(rows, extra_columns), ""]
    rasters = [k for k in summary if (out_dir / f"raster_{k}.png").exists()]
    if rasters:
        lines += ["## Spike rasters (first hidden layer, first test sample, first seed)", ""]
        lines += [f"![{k}](raster_{k}.png)" for k in rasters] + [""]
    atomic_write(out_dir / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines)))
    write_json(out_dir / "report.json", {"title": title, "command": command, "seeds": seeds, "rows": list(rows),
                                         "summary": summary, "pairwise": pairwise, "budget": dict(budget or {})})
    logger.debug("report written to %s", out_dir / "report.md")
    return table


def pairwise_sections(pairwise: Mapping, level: str = "###") -> list[str]:
    """Markdown lines of the pairwise tables of :func:`pairwise_significance` (tables with no test left out)."""
    lines: list[str] = []
    for key, header, fmt in SUMMARY_METRICS:
        text = pairwise_table(pairwise[key], fmt, header)
        if text:
            lines += [f"{level} {header}: paired t-test over seeds", "", text, ""]
    boot = pairwise_table(pairwise["test_accuracy_bootstrap"], "pct", "test acc")
    if boot:
        lines += [f"{level} test accuracy: paired bootstrap over test samples", "", boot, ""]
    return lines


def _budget_text(budget: Mapping) -> str:
    what = {"params": "parameter count", "time": "time per training batch (timing probe)"}[budget["match"]]
    unit = "" if budget["match"] == "params" else " s"
    widths = ", ".join(f"{k} {','.join(map(str, w))} ({_num(budget['values'][k])}{unit})"
                       for k, w in budget["widths"].items())
    return (f"Matched budget: {what} of `{budget['reference']}` at hidden {budget['reference_hidden']}: "
            f"{_num(budget['target'])}{unit}. Hidden width per kind (measured {budget['match']}): {widths}.")


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.4g}"
