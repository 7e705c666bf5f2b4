"""The train/compare/demo commands: bad input gives one line (no traceback); compare writes its report."""

import json
import os
import subprocess
import sys

import pytest

from dendrix.cli import main

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dendrix", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["train", "train.lrr=0.1"], "unknown config key 'train.lrr'"),
    (["train", "model.kind=nosuch"], "unknown neuron kind 'nosuch'"),
    (["compare", "--config", "fsdd_mlp", "--kinds", "lif,nosuch"], "unknown neuron kind 'nosuch'"),
])
def test_bad_input_is_one_line_without_traceback(args, message, tmp_path):
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


@pytest.mark.parametrize("argv, message", [
    (["train", "--config", "no/such/file.yaml"], "config file 'no/such/file.yaml' not found"),
    (["train", "train.epochs=0"], "train.epochs must be a positive integer"),
    (["train", "--resume", "{tmp}"], "is not a run folder to resume"),
    (["train", "--resume", "{tmp}", "train.lr=1"], "do not combine it with"),
    (["demo", "--kinds", "lif,nosuch"], "unknown neuron kind 'nosuch'"),
    (["demo", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "model.neuron.no_such_argument=1", "--out", "{tmp}/run"], "cannot set up the run"),
])
def test_user_errors_in_process(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_compare_writes_markdown_and_json(tmp_path, capsys):
    out = tmp_path / "cmp"
    # no --quiet: it would silence the logged table too; train.progress=false hides the progress bars
    code = main(["compare", "--config", "demo", "--kinds", "lif,alif", "--epochs", "1",
                 "--out", str(out), "model.hidden=[16]", "train.progress=false"])
    assert code == 0
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [r["neuron"] for r in rows] == ["lif", "alif"]
    for row in rows:
        assert row["error"] is None
        assert 0.1 < row["test_accuracy"] <= 1 and row["params"] > 0 and row["sec_per_epoch"] > 0
        assert 0 <= row["spike_rate"] < 1
        assert row["energy_uj"] > 0 and 0 <= row["overall_robustness"] <= 1
    table = (out / "report.md").read_text()
    assert "energy (μJ/sample)" in table and "robustness (%)" in table
    assert "| lif |" in table and "| alif |" in table
    for png in ("learning_curves.png", "accuracy.png", "raster_lif.png", "raster_alif.png"):
        assert (out / png).stat().st_size > 1000
    assert "| lif |" in capsys.readouterr().out


def test_a_failing_kind_is_recorded_and_visible(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--config", "fsdd_mlp", "--kinds", "lif", "--quiet", "--out", str(out),
                 "model.neuron.no_such_argument=1"])
    assert code == 1  # nothing trained
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    assert row["neuron"] == "lif" and "no_such_argument" in row["error"] and row["test_accuracy"] is None
    assert "lif FAILED" in capsys.readouterr().err
    assert "Traceback" in (out / "errors" / "lif.txt").read_text()
    assert "failed:" in (out / "report.md").read_text()
