"""Runs are never lost (issue 15 items 2, 3), with real processes: SIGKILL at a random point then resume gives
the uninterrupted run's weights bit for bit, also after truncating the newest checkpoint; SIGTERM saves and says
how to resume; a second training into a folder in use is refused; compare trains a repeated kind once.

The kill point is random: set ``DENDRIX_KILL_SEED`` to replay one (the seed is in the test's output)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from _train_support import final_weights, popen_cli, run_cli, same_tensors, snapshot, tiny_config, write_config
from dendrix.cli import main
from dendrix.train import Trainer, load_run, resolve_config
from dendrix.train.checkpoint import checkpoint_folders, intact_checkpoint

EPOCHS = 8


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    threads = torch.get_num_threads()
    folder = tmp_path_factory.mktemp("uninterrupted") / "run"
    Trainer(resolve_config(tiny_config(EPOCHS)), folder, log=None).fit()
    torch.set_num_threads(threads)
    return final_weights(folder)


def _wait_for(path: Path, proc, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the training ended before {path} appeared: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.005)


def _kill_at_random_point(tmp_path, first_epoch: int = 1) -> Path:
    """SIGKILL a CLI training a random 0-100 ms after checkpoint ``first_epoch``..3 is complete."""
    seed = int(os.environ.get("DENDRIX_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    epoch, delay = rng.randint(first_epoch, 3), rng.uniform(0.0, 0.1)
    print(f"DENDRIX_KILL_SEED={seed}: SIGKILL {delay * 1000:.0f} ms after checkpoint {epoch} of {EPOCHS}")
    run = tmp_path / "run"
    proc = popen_cli("train", "--config", write_config(tmp_path, EPOCHS), "--out", run)
    _wait_for(run / "checkpoints" / f"epoch-{epoch:04d}" / "state.json", proc)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert (run / ".lock").exists()  # left behind by the killed process: must be seen as stale
    return run


def test_sigkill_then_resume_is_bit_identical(tmp_path, reference):
    run = _kill_at_random_point(tmp_path)
    proc = run_cli("train", "--resume", run)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "stale lock" in proc.stderr
    assert same_tensors(final_weights(run), reference)
    assert load_run(run).result["epochs"] == EPOCHS and not (run / ".lock").exists()


def test_truncated_newest_checkpoint_after_sigkill_resumes_from_the_previous_one(tmp_path, reference):
    run = _kill_at_random_point(tmp_path, first_epoch=2)  # two complete checkpoints: one to fall back on
    newest = next(folder for _, folder in checkpoint_folders(run) if (folder / "state.json").exists())
    damaged = newest / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:64])
    proc = run_cli("train", "--resume", run)
    assert proc.returncode == 0, proc.stderr
    named = [line for line in proc.stderr.splitlines() if str(damaged) in line]
    assert len(named) == 1 and "corrupt or truncated" in named[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert same_tensors(final_weights(run), reference)


def test_sigterm_saves_a_second_training_is_refused_and_the_run_resumes_exactly(tmp_path, reference, capsys):
    run = tmp_path / "run"
    config = write_config(tmp_path, EPOCHS)
    proc = popen_cli("train", "--config", config, "--out", run)
    _wait_for(run / "checkpoints" / "epoch-0001" / "state.json", proc)
    # a second training into the same folder while the first runs: refused, the folder untouched
    before = snapshot(run / "checkpoints" / "epoch-0001")
    assert main(["train", "--config", str(config), "--out", str(run)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"in use by process {proc.pid}" in line or "already holds a run" in line
    assert main(["train", "--config", str(config), "--out", str(run), "--overwrite"]) == 2
    assert f"in use by process {proc.pid}" in capsys.readouterr().err
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and f"Resume with: dendrix train --resume {run}" in err
    assert "Traceback" not in err and not (run / ".lock").exists()
    assert snapshot(run / "checkpoints" / "epoch-0001") == before
    done = intact_checkpoint(run)[0]
    if done < EPOCHS:  # (on a very fast machine the run may have finished before the signal)
        trainer = Trainer(resolve_config(tiny_config(EPOCHS)), run, resume=True, log=None)
        assert trainer.epoch == done
        trainer.fit()
    assert same_tensors(final_weights(run), reference)
    # a finished run: --out at it is refused, nothing changes
    before = snapshot(run)
    assert main(["train", "--config", str(config), "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err and snapshot(run) == before


def test_compare_trains_a_repeated_kind_once(tmp_path):
    from dendrix.cli.compare import parse_kinds
    from dendrix.train.compare import compare_kinds

    assert parse_kinds("lif,LIF, lif ,alif,lif") == ["lif", "alif"]
    rows, histories = compare_kinds(tiny_config(1), ["lif", "lif"], tmp_path / "cmp", workers=2, log=None,
                                    rasters=False, evaluation=False)
    assert [r["neuron"] for r in rows] == ["lif"] and rows[0]["error"] is None
    assert list(histories) == ["lif"] and load_run(tmp_path / "cmp" / "runs" / "lif").result["epochs"] == 1
    assert not (tmp_path / "cmp" / ".lock").exists()


@pytest.mark.parametrize("command", ["compare", "demo"])
def test_sigterm_during_a_comparison_saves_the_finished_runs_and_says_how_to_go_on(tmp_path, command):
    """compare and demo handle SIGTERM like train: the finished runs stay and are reported, the unfinished run
    keeps its last finished epoch, one line says how to resume, exit code 143."""
    out = tmp_path / "cmp"
    runs = out / "runs" if command == "compare" else out / "runs" / "official"  # demo: runs per split
    second = runs / "alif"
    if command == "compare":  # SIGTERM after the second run's first epoch: it resumes from there
        args = ["compare", "--config", write_config(tmp_path, EPOCHS), "--kinds", "lif,alif"]
        started = second / "checkpoints" / "epoch-0001" / "state.json"
    else:  # SIGTERM as soon as the second run starts (the first one is finished)
        args = ["demo", "--kinds", "lif,alif", "--epochs", "1", "--seeds", "1", "--workers", "1", "--splits", "official"]
        started = second / ".lock"
    proc = popen_cli(*args, "--out", out, "--quiet")
    _wait_for(started, proc, timeout=600)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and not (out / ".lock").exists() and not (second / ".lock").exists()
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"dendrix {command}: terminated (SIGTERM) with 1 of 2 run(s) finished"), line
    assert f"--out {out} --overwrite" in line
    assert (out / "report.md").exists() and "interrupted: 1 of 2 run(s) finished" in (out / "report.md").read_text()
    assert load_run(runs / "lif").result is not None                  # the finished run is intact
    if command == "compare":
        assert f"dendrix train --resume {second}" in line
        assert intact_checkpoint(second)[0] >= 1                     # the unfinished one resumes from there
