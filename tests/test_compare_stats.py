"""Comparisons over seeds: the statistics against scipy.stats, matched budgets, and `compare --seeds` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dendrix.analysis import statistics as S

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 29, 150.5])
def test_student_t_matches_scipy(df):
    for t in (-12.0, -2.5, -0.3, 0.0, 0.7, 1.96, 4.3, 60.0):
        assert S.t_sf(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-9, abs=1e-14)
        assert S.t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-9, abs=1e-14)
    for p in (1e-4, 0.025, 0.2, 0.5, 0.9, 0.975, 0.9995):
        assert S.t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9, abs=1e-12)


def test_bad_statistics_input_names_the_argument():
    with pytest.raises(ValueError, match="df"):
        S.t_sf(1.0, 0)
    with pytest.raises(ValueError, match="p must be"):
        S.t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="confidence"):
        S.summarize([1, 2], confidence=95)
    with pytest.raises(ValueError, match="same length"):
        S.paired_t_test([1, 2, 3], [1, 2])


def test_summary_interval_matches_scipy():
    values = [0.912, 0.934, 0.921, 0.947, 0.918]
    out = S.summarize(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert out["n"] == 5 and out["mean"] == pytest.approx(np.mean(values))
    assert out["std"] == pytest.approx(np.std(values, ddof=1))
    assert (out["ci_low"], out["ci_high"]) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
    one = S.summarize([0.5, None, float("nan")])
    assert one["n"] == 1 and one["mean"] == 0.5 and math.isnan(one["std"]) and math.isnan(one["ci_low"])


def test_paired_t_test_and_holm_match_scipy_and_the_definition():
    a, b = [0.91, 0.93, 0.95, 0.90, 0.94], [0.89, 0.92, 0.91, 0.90, 0.90]
    ours, ref = S.paired_t_test(a, b), stats.ttest_rel(a, b)
    assert ours["t"] == pytest.approx(ref.statistic) and ours["p"] == pytest.approx(ref.pvalue)
    assert ours["df"] == 4 and ours["mean_diff"] == pytest.approx(0.022)
    assert S.paired_t_test(a, a)["p"] == 1.0
    shifted = S.paired_t_test([x + 0.01 for x in b], b)
    assert shifted["t"] == math.inf and shifted["p"] == 0.0
    # Holm by hand: sorted 0.005·4=0.02, 0.01·3=0.03, 0.03·2=0.06, 0.04·1=0.04 -> kept non-decreasing
    assert S.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.holm([0.2, float("nan")])[0] == pytest.approx(0.2)
    pairs = S.pairwise_tests({"x": {0: 0.9, 1: 0.92, 2: 0.91}, "y": {0: 0.8, 1: 0.83, 2: 0.8},
                              "z": {0: 0.9, 1: 0.91, 2: 0.92}})
    assert [(p["a"], p["b"]) for p in pairs] == [("x", "y"), ("x", "z"), ("y", "z")]
    raw = [p["p"] for p in pairs]
    assert [p["p_holm"] for p in pairs] == pytest.approx(S.holm(raw))
    assert raw[0] == pytest.approx(stats.ttest_rel([0.9, 0.92, 0.91], [0.8, 0.83, 0.8]).pvalue)


def test_paired_bootstrap_over_test_samples():
    rng = np.random.default_rng(1)
    truth = rng.random(400) < 0.8
    better = [truth.astype(int).tolist(), truth.astype(int).tolist()]
    worse = [(truth & (rng.random(400) < 0.85)).astype(int).tolist() for _ in range(2)]
    res = S.paired_bootstrap(better, worse, resamples=2000, seed=3)
    observed = np.mean(np.asarray(better) - np.asarray(worse))
    assert res["mean_diff"] == pytest.approx(observed) and res["ci_low"] < observed < res["ci_high"]
    assert res["p"] < 0.01 and res["n_samples"] == 400 and res["n_seeds"] == 2
    assert S.paired_bootstrap(better, better, resamples=500)["p"] == 1.0
    assert S.paired_bootstrap(better, worse, resamples=2000, seed=3) == res  # deterministic per seed
    # the percentile interval agrees with scipy's paired bootstrap of the same statistic
    diff = (np.asarray(better) - np.asarray(worse)).mean(axis=0)
    ref = stats.bootstrap((diff,), np.mean, n_resamples=4000, method="percentile", random_state=0)
    assert res["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert res["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.01)


def test_pareto_front():
    from dendrix.analysis.plots import pareto_front

    energy, acc = [1.0, 2.0, 0.5, 3.0, 2.5], [90, 95, 85, 94, 96]
    assert pareto_front(energy, acc) == [2, 0, 1, 4]
    assert pareto_front([10, 20, 30], [90, 80, 85], minimize_x=False) == [0, 2]


def test_matched_parameter_budget_and_width_search():
    from dendrix.models import build_model, count_parameters
    from dendrix.train.batches import open_dataset
    from dendrix.train.budget import _search, match_budget, scaled_hidden
    from dendrix.train.compare import kind_config

    assert scaled_hidden([128, 64], 32) == [32, 16]
    assert _search(lambda w: 3.0 * w, 300.0, 1, 16, exact=True) == (100, 300.0)
    configs = {k: kind_config("demo", k, ["model.hidden=[64]"]) for k in ("lif", "dlif", "dgn")}
    budget = match_budget(configs, "lif", "params")
    assert budget["widths"]["lif"] == [64] and budget["target"] == budget["values"]["lif"]
    info = open_dataset(configs["lif"]["data"], "train", seed=0).info
    for kind in ("dlif", "dgn"):
        width = budget["widths"][kind]
        torch.manual_seed(configs[kind]["seed"])  # DLIF draws its connectivity
        params = count_parameters(build_model({**configs[kind]["model"], "hidden": width}, info))
        assert params == budget["values"][kind]
        assert abs(params - budget["target"]) / budget["target"] < 0.03, (kind, width, params)
        assert width[0] < 64  # both cost more per hidden unit than LIF
    timed = match_budget({k: configs[k] for k in ("lif", "dgn")}, "lif", "time", repeats=2)
    assert timed["values"]["lif"] > 0 and timed["widths"]["dgn"][0] >= 1
    with pytest.raises(ValueError, match="match must be one of"):
        match_budget(configs, "lif", "flops")


@pytest.mark.parametrize("argv, message", [
    (["demo", "--all", "--kinds", "lif"], "--all and --kinds exclude each other"),
    (["demo", "--seeds", "0"], "--seeds must be >= 1"),
    (["compare", "--config", "demo", "--kinds", "lif", "--match", "params", "--reference", "nosuch"],
     "unknown --reference kind 'nosuch'"),
])
def test_statistics_options_reject_bad_input(argv, message, capsys):
    from dendrix.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_compare_with_seeds_and_matched_params_writes_statistics(tmp_path):
    from dendrix.cli import main
    from dendrix.train.report import SUMMARY_METRICS

    out = tmp_path / "cmp"
    code = main(["compare", "--config", "demo", "--kinds", "lif,dgn", "--epochs", "1", "--seeds", "2", "--quiet",
                 "--match", "params", "--reference", "lif", "--out", str(out), "model.hidden=[24]"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert [(r["neuron"], r["seed"]) for r in rows] == [("lif", 0), ("lif", 1), ("dgn", 0), ("dgn", 1)]
    assert all(r["error"] is None and len(r["test_correct"]) == 300 for r in rows)
    assert {r["run_dir"] for r in rows} == {str(out / "runs" / k / f"seed-{s}") for k in ("lif", "dgn") for s in (0, 1)}
    for kind in ("lif", "dgn"):
        entry = report["summary"][kind]
        assert entry["seeds"] == [0, 1]
        for key, _, _ in SUMMARY_METRICS:
            values = [r[key] for r in rows if r["neuron"] == kind]
            st = entry[key]
            assert st["mean"] == pytest.approx(np.mean(values)) and st["std"] == pytest.approx(np.std(values, ddof=1))
            if st["std"] > 0:
                low, high = stats.t.interval(0.95, 1, loc=np.mean(values), scale=stats.sem(values))
                assert (st["ci_low"], st["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    pair = report["pairwise"]["test_accuracy"][0]
    assert (pair["a"], pair["b"], pair["n"]) == ("lif", "dgn", 2) and 0 <= pair["p_holm"] <= 1
    assert isinstance(pair["significant"], bool)
    assert report["pairwise"]["test_accuracy_bootstrap"][0]["n_samples"] == 300
    budget = report["budget"]
    assert budget["match"] == "params" and budget["widths"]["lif"] == [24]
    assert abs(budget["values"]["dgn"] - budget["target"]) / budget["target"] < 0.05
    dgn_params = {r["params"] for r in rows if r["neuron"] == "dgn"}
    assert dgn_params == {budget["values"]["dgn"]} and rows[2]["hidden"] == budget["widths"]["dgn"]
    md = (out / "report.md").read_text()
    assert "Matched budget: parameter count of `lif`" in md and "paired t-test" in md and "Holm" in md
    assert "paired bootstrap over test samples" in md and "## Per-seed rows" in md
    for png in ("accuracy.png", "accuracy_vs_energy.png", "accuracy_vs_robustness.png", "robustness_curves.png",
                "learning_curves.png", "raster_lif.png"):
        assert (out / png).stat().st_size > 5000, png
        assert f"]({png})" in md


def test_a_comparison_run_is_deterministic_per_seed(tmp_path):
    from dendrix.train.compare import train_kind

    over = ["model.hidden=[8]", "train.epochs=1", "train.progress=false"]
    kw = dict(verbose=False, rasters=False, evaluation=False)
    first, _ = train_kind("demo", "lif", tmp_path / "a", over, seed=1, **kw)
    again, _ = train_kind("demo", "lif", tmp_path / "b", over, seed=1, **kw)
    other, _ = train_kind("demo", "lif", tmp_path / "c", over, seed=2, **kw)
    assert first["error"] is None and first["seed"] == 1 and other["seed"] == 2
    assert first["test_correct"] == again["test_correct"] and first["test_accuracy"] == again["test_accuracy"]
    assert first["test_correct"] != other["test_correct"]
    assert first["run_dir"] == str(tmp_path / "a" / "runs" / "lif" / "seed-1")


def test_welch_difference_matches_scipy():
    a, b = [0.95, 0.93, 0.96], [0.80, 0.85, 0.78, 0.90]
    ours, ref = S.welch_difference(a, b), stats.ttest_ind(a, b, equal_var=False)
    assert ours["mean_diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert ours["t"] == pytest.approx(ref.statistic) and ours["p"] == pytest.approx(ref.pvalue)
    assert ours["df"] == pytest.approx(ref.df)
    ci = ref.confidence_interval(0.95)
    assert (ours["ci_low"], ours["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    one = S.welch_difference([0.9], [0.8, 0.7])
    assert one["mean_diff"] == pytest.approx(0.15) and math.isnan(one["ci_low"]) and math.isnan(one["p"])
    flat = S.welch_difference([0.9, 0.9], [0.8, 0.8])
    assert flat["half_width"] == 0.0 and flat["p"] == 0.0
    with pytest.raises(ValueError, match="confidence"):
        S.welch_difference(a, b, confidence=1.5)


def _generated_split_rows(rng):
    """Rows as compare_kinds(splits=[official, speaker]) writes them, with made-up but format-exact values."""
    rows, histories = [], {"official": {}, "speaker": {}}
    for split, kinds, base in (("official", ("lif", "dgn"), 0.9), ("speaker", ("lif",), 0.7)):
        for kind in kinds:
            for seed in (0, 1, 2):
                acc = base + (0.05 if kind == "dgn" else 0.0) + 0.01 * seed
                correct = (rng.random(200) < acc).astype(int).tolist()
                rows.append({"neuron": kind, "seed": seed, "split": split, "test_accuracy": acc,
                             "val_accuracy": acc, "params": 100, "spike_rate": 0.1 + 0.01 * seed,
                             "sec_per_epoch": 1.0, "energy_uj": 0.2, "overall_robustness": acc / 2,
                             "best_epoch": 1, "error": None, "hidden": [8], "test_correct": correct,
                             "wall_seconds": 3.0, "robustness_settings": [
                                 {"perturbation": "noise", "severity": 0.1, "accuracy": acc - 0.1}]})
                histories[split].setdefault(kind, {})[seed] = [
                    {"epoch": e, "train_loss": 1.0 / e, "val_accuracy": acc} for e in (1, 2)]
    return rows, histories


def test_split_report_puts_both_splits_side_by_side(tmp_path):
    from dendrix.train.report import write_report

    rows, histories = _generated_split_rows(np.random.default_rng(0))
    write_report(tmp_path, rows, histories, "generated")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["splits"] == ["official", "speaker"]
    assert set(report["summary"]) == {"official", "speaker"} and set(report["pairwise"]) == {"official", "speaker"}
    assert set(report["summary"]["official"]) == {"lif", "dgn"} and set(report["summary"]["speaker"]) == {"lif"}
    lif = report["generalisation"]["kinds"]["lif"]
    official = [r["test_accuracy"] for r in rows if r["neuron"] == "lif" and r["split"] == "official"]
    speaker = [r["test_accuracy"] for r in rows if r["neuron"] == "lif" and r["split"] == "speaker"]
    assert lif["accuracy"]["official"]["mean"] == pytest.approx(np.mean(official))
    assert lif["accuracy"]["speaker"]["mean"] == pytest.approx(np.mean(speaker))
    assert lif["gap"]["speaker"]["mean_diff"] == pytest.approx(0.2)
    assert report["generalisation"]["kinds"]["dgn"]["gap"] == {}  # dgn was not trained on the speaker split
    # pairwise tests per split: on official lif vs dgn (3 seeds), none on speaker (one kind)
    pair = report["pairwise"]["official"]["test_accuracy"][0]
    assert (pair["a"], pair["b"], pair["n"]) == ("lif", "dgn", 3)
    assert report["pairwise"]["speaker"]["test_accuracy"] == []
    md = (tmp_path / "report.md").read_text()
    assert "| lif | 91.0 ± 1.0 [88.5, 93.5] | 71.0 ± 1.0 [68.5, 73.5] | +20.0 [+17.7, +22.3] |" in md and "not trained" in md
    assert "## Split official" in md and "## Split speaker" in md and "Welch" in md
    for png in ("accuracy_by_split.png", "accuracy.png", "accuracy_speaker.png", "learning_curves_speaker.png",
                "robustness_curves_speaker.png"):
        assert (tmp_path / png).stat().st_size > 5000, png
        assert f"]({png})" in md


def test_compare_trains_each_split_separately(tmp_path):
    from dendrix.cli import main
    from dendrix.train.run import load_run

    out = tmp_path / "cmp"
    code = main(["compare", "--config", "demo", "--kinds", "lif", "--epochs", "1", "--seeds", "2", "--quiet",
                 "--splits", "official,speaker", "--out", str(out), "model.hidden=[8]"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert [(r["split"], r["seed"]) for r in rows] == [("official", 0), ("official", 1), ("speaker", 0),
                                                       ("speaker", 1)]
    assert all(r["error"] is None for r in rows)
    assert [len(r["test_correct"]) for r in rows] == [300, 300, 500, 500]  # 5 recordings x 60 / 500 of george
    run = load_run(out / "runs" / "speaker" / "lif" / "seed-0")
    assert run.config["data"]["split"] == "speaker"
    for part in ("train", "val"):  # the held-out speaker is in neither training nor model selection
        assert "george" not in set(run.dataset(part).meta["speaker"].tolist())
    assert set(run.dataset("test").meta["speaker"].tolist()) == {"george"}
    assert load_run(out / "runs" / "official" / "lif" / "seed-1").config["data"]["split"] == "official"
    gap = report["generalisation"]["kinds"]["lif"]["gap"]["speaker"]
    acc = {s: np.mean([r["test_accuracy"] for r in rows if r["split"] == s]) for s in ("official", "speaker")}
    assert gap["mean_diff"] == pytest.approx(acc["official"] - acc["speaker"])
    assert "held-out speaker 'george'" in (out / "report.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["compare", "--config", "demo", "--kinds", "lif", "--splits", "official,cross"], "unknown split 'cross'"),
    (["compare", "--config", "demo", "--kinds", "lif", "--speaker-kinds", "lif"], "--speaker-kinds needs --splits"),
    (["compare", "--config", "demo", "--kinds", "lif", "--splits", "official,speaker", "--speaker-kinds", "dgn"],
     "names none of the compared kinds"),
    (["compare", "--config", "shd_mlp", "--kinds", "lif", "--splits", "speaker"], "--splits speaker"),
])
def test_split_options_reject_bad_input(argv, message, capsys):
    from dendrix.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
