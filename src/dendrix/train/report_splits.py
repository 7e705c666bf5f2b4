"""The comparison report when every kind was trained on several splits (``compare --splits official,speaker``).

The first split is the reference (normally ``official``: test recordings 0-4 of every speaker). For every kind
trained on it and on another split (``speaker``: all recordings of a speaker held out of training), the report
puts the two accuracies side by side, each as mean ± std [95 % Student-t interval over seeds], with the gap
(reference − other) and Welch's interval and test of that gap: the two models of one seed are trained separately
on different data, so the gap is a difference of independent means, not a paired one. Each split also gets its
own summary table, figures and pairwise tests between kinds (as a one-split report).

``report.json``: ``{"splits", "rows" (each with its "split"), "summary": {split: ...}, "pairwise": {split: ...},
"generalisation": {"reference", "method", "kinds": {kind: {"accuracy": {split: stats}, "gap": {split: welch}}}}}``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..analysis import plots
from ..analysis.statistics import BOOTSTRAP_METHOD, PAIRED_T_METHOD, WELCH_METHOD, welch_difference
from .checkpoint import atomic_write, write_json
from .report import (_budget_text, _cells, _figures, _histories, _mean_cell, _ok, markdown_table,
                     pairwise_sections, pairwise_significance, summarize_rows, summary_table)

__all__ = ["write_split_report", "generalisation", "generalisation_table", "SPLIT_LABELS"]

#: how the report names a split
SPLIT_LABELS = {"official": "official split", "speaker": "unseen speaker"}


def _label(split: str) -> str:
    return SPLIT_LABELS.get(split, f"split {split}")


def generalisation(rows: Sequence[dict], splits: Sequence[str], confidence: float = 0.95) -> dict[str, Any]:
    """Per kind: test accuracy over seeds on every split it was trained on, and the gap from the first split to
    each other split (:func:`~dendrix.analysis.statistics.welch_difference`, reference minus other)."""
    reference = splits[0]
    kinds = list(dict.fromkeys(r["neuron"] for r in rows))
    out: dict[str, Any] = {"reference": reference, "method": WELCH_METHOD, "confidence": confidence, "kinds": {}}
    for kind in kinds:
        values = {s: [r["test_accuracy"] for r in _ok(rows, kind) if r.get("split") == s] for s in splits}
        trained = [s for s in splits if values[s]]
        if not trained:
            continue
        accuracy = {s: summarize_rows([r for r in rows if r["neuron"] == kind and r.get("split") == s],
                                      confidence)[kind]["test_accuracy"] for s in trained}
        gap = {s: welch_difference(values[reference], values[s], confidence)
               for s in trained if s != reference and values[reference]}
        out["kinds"][kind] = {"accuracy": accuracy, "gap": gap}
    return out


def generalisation_table(gen: Mapping[str, Any], splits: Sequence[str]) -> str:
    """One line per kind: accuracy on every split and the gap to each other split, in points."""
    reference, others = splits[0], list(splits[1:])
    header = (["neuron"] + [f"{_label(s)} acc (%)" for s in splits]
              + [f"gap {reference} − {s} (points) [95 % Welch interval]" for s in others]
              + [f"p (Welch, {s})" for s in others])
    lines = [_cells(header), "|---|" + "---:|" * (len(header) - 1)]
    for kind, entry in gen["kinds"].items():
        cells = [kind] + [_mean_cell(entry["accuracy"].get(s), "pct") if s in entry["accuracy"] else "not trained"
                          for s in splits]
        for s in others:
            g = entry["gap"].get(s)
            if not g or not math.isfinite(g["mean_diff"]):
                cells.append("–")
            elif math.isfinite(g["ci_low"]):
                cells.append(f"{100 * g['mean_diff']:+.1f} [{100 * g['ci_low']:+.1f}, {100 * g['ci_high']:+.1f}]")
            else:
                cells.append(f"{100 * g['mean_diff']:+.1f}")
        for s in others:
            g = entry["gap"].get(s)
            cells.append(f"{g['p']:.3g}" if g and math.isfinite(g["p"]) else "–")
        lines.append(_cells(cells))
    return "\n".join(lines)


def write_split_report(out_dir: Path, rows: Sequence[dict], histories: Mapping[str, Any], title: str, *,
                       command: str | None = None, extra_columns: Sequence[tuple[str, str, str]] = (),
                       notes: Sequence[str] = (), budget: Mapping | None = None, alpha: float = 0.05) -> str:
    """report.md, report.json and the figures of a comparison over several splits (module docstring); returns
    the generalisation table. ``histories``: ``{split: {kind: {seed: history}}}`` as ``compare_kinds`` returns."""
    out_dir = Path(out_dir)
    splits = list(dict.fromkeys(r["split"] for r in rows))
    by_split_rows = {s: [r for r in rows if r["split"] == s] for s in splits}
    summary = {s: summarize_rows(by_split_rows[s]) for s in splits}
    pairwise = {s: pairwise_significance(by_split_rows[s], alpha) for s in splits}
    gen = generalisation(rows, splits)
    table = generalisation_table(gen, splits)
    seeds = sorted({r.get("seed") for r in rows if r.get("seed") is not None})
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Splits: {', '.join(f'{s} ({_label(s)})' for s in splits)}; every kind is trained separately on "
              "each split's training part (a speaker-held-out model never sees the held-out speaker, not even "
              "for model selection). Seeds: " + (", ".join(map(str, seeds)) or "the config seed") + ". Cells: "
              "mean ± sample std [95 % Student-t interval of the mean over seeds].", ""]
    if budget:
        lines += [_budget_text(budget), ""]
    lines += [f"## {_label(splits[0])} vs " + ", ".join(_label(s) for s in splits[1:]), "",
              f"Gap: accuracy on the {_label(splits[0])} minus accuracy on the other split, in points; interval "
              f"and p: {WELCH_METHOD}. A kind not trained on a split shows 'not trained'.", "", table, ""]
    lines += [f"{n}  " for n in notes] + [""]
    per_seed = {s: {k: [r["test_accuracy"] for r in _ok(by_split_rows[s], k)] for k in summary[s]} for s in splits}
    if plots.plot_split_accuracy(out_dir / "accuracy_by_split.png", summary, per_seed):
        lines += ["![test accuracy per kind on every split (95 % interval over seeds)](accuracy_by_split.png)", ""]
    for i, split in enumerate(splits):
        suffix = "" if i == 0 else f"_{split}"
        split_hist = _histories((histories or {}).get(split, {}))
        lines += [f"## Split {split} ({_label(split)})", "", summary_table(summary[split]), ""]
        drawn = _figures(out_dir, by_split_rows[split], summary[split], split_hist, suffix=suffix)
        lines += [f"![{caption} — {split}]({name})\n" for caption, name in drawn]
        lines += [f"### Pairwise differences on {split}", "",
                  f"Significance at α = {alpha}. Per metric: {PAIRED_T_METHOD} (needs ≥ 2 seeds). For test "
                  f"accuracy also: {BOOTSTRAP_METHOD}.", ""]
        lines += pairwise_sections(pairwise[split], level="####")
    lines += ["## Per-seed rows", "", markdown_table(rows, [("split", "split", "{}"), *extra_columns]), ""]
    rasters = [k for k in summary[splits[0]] if (out_dir / f"raster_{k}.png").exists()]
    if rasters:
        lines += [f"## Spike rasters (first hidden layer, first test sample, first seed, {splits[0]} split)", ""]
        lines += [f"![{k}](raster_{k}.png)" for k in rasters] + [""]
    atomic_write(out_dir / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines)))
    write_json(out_dir / "report.json", {"title": title, "command": command, "seeds": seeds, "splits": splits,
                                         "rows": list(rows), "summary": summary, "pairwise": pairwise,
                                         "generalisation": gen, "budget": dict(budget or {})})
    return table
