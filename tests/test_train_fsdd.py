"""Real-data training: a short LIF run on the embedded spiking FSDD beats chance by a wide margin, the same
run trains data-parallel with 2 CPU processes under torchrun (gloo), and (slow) the whole demo."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from dendrix.train import load_run, train

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
SHORT = ["threads=1", "model.kind=lif", "model.hidden=[64]", "train.epochs=3", "train.progress=false"]


def test_short_lif_run_on_fsdd_beats_chance(tmp_path):
    start = time.perf_counter()
    result = train("demo", tmp_path / "run", SHORT, log=None)
    elapsed = time.perf_counter() - start
    assert result["test_accuracy"] >= 0.5, result  # chance is 0.10
    assert result["epochs"] == 3 and result["params"] > 0
    run = load_run(tmp_path / "run")
    assert run.info.num_classes == 10 and run.result["test_accuracy"] == result["test_accuracy"]
    assert elapsed < 90


def test_ddp_two_processes_with_torchrun(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun not found next to the Python interpreter"
    out = tmp_path / "ddp"
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "dendrix", "train",
                           "--config", "demo", "--out", str(out), "--quiet", *SHORT[1:3], "train.epochs=1"],
                          capture_output=True, text=True, env=ENV, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["epochs"] == 1
    assert result["test_accuracy"] > 0.2  # one epoch with two shards already learns
    assert (out / "checkpoints" / "epoch-0001" / "model.safetensors").exists()


@pytest.mark.slow
def test_demo_runs_every_kind_and_reaches_target(tmp_path):
    from dendrix import available

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dendrix", "demo", "--all", "--seeds", "1", "--splits", "official",
                           "--out", str(tmp_path / "demo"), "--quiet"],
                          capture_output=True, text=True, env=ENV, timeout=1800)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "demo" / "report.json").read_text())["rows"]
    assert [r["neuron"] for r in rows] == available()
    assert not [r for r in rows if r["error"]], [r["error"] for r in rows if r["error"]]
    assert max(r["test_accuracy"] for r in rows) >= 0.9
    assert wall < 15 * 60
