"""Faults during training (issue 15 items 2, 3): non-finite loss / gradient / parameter, nan_policy, the run-folder
lock, --out at an existing run, and resuming with an edited config."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys

import pytest
import torch

import dendrix.train.trainer as trainer_module
from _train_support import final_weights, same_tensors, snapshot, tiny_config
from dendrix.train import Trainer, TrainingDiverged, resolve_config
from dendrix.train.checkpoint import checkpoint_folders
from dendrix.train.runfolder import RunFolderError, RunLock, check_run_name
from dendrix.train.trainer import RESUME_OPERATIONAL_KEYS, RESUME_TUNABLE_KEYS, ResumeConfigError


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _trainer(folder, epochs=2, resume=False, **train):
    return Trainer(resolve_config(tiny_config(epochs, **train)), folder, resume=resume, log=None)


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# -- non-finite values ----------------------------------------------------------------------------------------

def _poison_loss_at(monkeypatch, step: int):
    calls = {"n": 0}
    original = trainer_module._forward_loss

    def forward(model, base, x, y, smoothing):
        loss, logits = original(model, base, x, y, smoothing)
        calls["n"] += 1
        if base.training and calls["n"] == step:
            loss = loss * float("nan")
        return loss, logits
    monkeypatch.setattr(trainer_module, "_forward_loss", forward)


def _poison_gradient_at(trainer, step: int):
    calls = {"n": 0}

    def hook(grad):
        calls["n"] += 1
        return grad * float("nan") if calls["n"] == step else grad
    trainer.model.output.weight.register_hook(hook)


def test_nan_loss_stops_with_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    _trainer(tmp_path / "run", epochs=3).fit(stop_after=1)
    before = snapshot(tmp_path / "run" / "checkpoints")
    _poison_loss_at(monkeypatch, 4)
    with pytest.raises(TrainingDiverged) as err:
        _trainer(tmp_path / "run", epochs=3, resume=True).fit()
    line = _one_line(err)
    assert "loss became nan at epoch 2, batch 4" in line and "last good checkpoint (epoch 1)" in line
    assert snapshot(tmp_path / "run" / "checkpoints") == before


def test_nan_gradient_names_the_tensor(tmp_path):
    trainer = _trainer(tmp_path / "run")
    _poison_gradient_at(trainer, 3)
    with pytest.raises(TrainingDiverged) as err:
        trainer.fit()
    line = _one_line(err)
    assert "gradient of output.weight became nan/inf at epoch 1, batch 3" in line
    assert "no epoch finished" in line and checkpoint_folders(tmp_path / "run") == []


def test_non_finite_parameter_with_a_finite_loss_is_caught(tmp_path):
    trainer = _trainer(tmp_path / "run", epochs=3)
    trainer.fit(stop_after=1)
    good = final_weights(tmp_path / "run")
    step = trainer.optimizer.step

    def exploding_step(*a, **k):  # what train.neuron_lr=1e30 or an overflow does to a time constant
        out = step(*a, **k)
        with torch.no_grad():
            trainer.model.output.bias.fill_(float("inf"))
        return out
    trainer.optimizer.step = exploding_step
    with pytest.raises(TrainingDiverged) as err:
        trainer.fit()
    assert "parameter output.bias became nan/inf at epoch 2, batch 1" in _one_line(err)
    assert same_tensors(final_weights(tmp_path / "run"), good)


def test_linalg_failure_in_the_forward_pass_is_a_one_line_stop(tmp_path, monkeypatch):
    def broken(*args):
        raise torch.linalg.LinAlgError("linalg.eig: The algorithm failed to converge\nmore detail")
    monkeypatch.setattr(trainer_module, "_forward_loss", broken)
    with pytest.raises(TrainingDiverged) as err:
        _trainer(tmp_path / "run").fit()
    assert "the forward pass (linalg.eig: The algorithm failed to converge) became" in _one_line(err)


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_nan_policy_skip_drops_the_step_and_carries_on(tmp_path, monkeypatch, caplog, poison):
    trainer = _trainer(tmp_path / "run", nan_policy="skip")
    if poison == "loss":
        _poison_loss_at(monkeypatch, 2)
    else:
        _poison_gradient_at(trainer, 2)
    with caplog.at_level(logging.WARNING, logger="dendrix"):
        result = trainer.fit()
    assert [r["skipped_steps"] for r in trainer.history] == [1, 0]
    assert sum("skipped a step" in r.getMessage() for r in caplog.records) == 1
    assert math.isfinite(result["test_loss"])
    assert all(torch.isfinite(v).all() for v in final_weights(tmp_path / "run").values())
    assert trainer.scheduler.last_epoch == 2 * trainer.steps_per_epoch  # the schedule did not shift


# -- the run folder -------------------------------------------------------------------------------------------

def test_out_at_a_finished_run_is_refused_and_overwrite_replaces_it(tmp_path):
    run = tmp_path / "run"
    _trainer(run, epochs=3).fit()
    (run / "eval_test.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    before = snapshot(run)
    with pytest.raises(RunFolderError) as err:
        _trainer(run, epochs=1)
    assert "already holds a run" in _one_line(err) and "--overwrite" in str(err.value)
    assert snapshot(run) == before
    Trainer(resolve_config(tiny_config(1)), run, log=None, overwrite=True).fit()
    assert [e for e, _ in checkpoint_folders(run)] == [1]  # the old epochs 2, 3 are gone
    assert json.loads((run / "result.json").read_text())["epochs"] == 1
    assert not (run / "eval_test.json").exists() and (run / "notes.txt").read_text() == "mine"


def test_a_folder_locked_by_a_live_process_is_refused(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.mkdir()
        (run / ".lock").write_text(f"{holder.pid} {__import__('socket').gethostname()}\n")
        before = snapshot(run)
        with pytest.raises(RunFolderError) as err:
            _trainer(run)
        assert f"in use by process {holder.pid}" in _one_line(err)
        with pytest.raises(RunFolderError):
            RunLock(run).acquire()
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_detected_and_taken_over(tmp_path, caplog):
    run = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.mkdir()
    (run / ".lock").write_text(f"{dead.pid} {__import__('socket').gethostname()}\n")
    with caplog.at_level(logging.WARNING, logger="dendrix"):
        _trainer(run, epochs=1).fit()
    assert any("stale lock" in r.getMessage() for r in caplog.records)
    assert not (run / ".lock").exists()  # released at the end


def test_the_lock_is_held_while_training(tmp_path):
    run = tmp_path / "run"
    seen = []
    trainer = _trainer(run, epochs=2)
    trainer.fit(on_epoch=lambda row: seen.append((run / ".lock").read_text().split()[0]))
    assert seen == [str(__import__("os").getpid())] * 2 and not (run / ".lock").exists()


@pytest.mark.parametrize("name", ["../up", "a/b", "/abs", "..", ".hidden", "a b", "", "x" * 101, 3, ["a"]])
def test_run_names_with_separators_are_refused(name):
    with pytest.raises(RunFolderError, match="letters, digits"):
        check_run_name(name)


# -- resuming with an edited config ---------------------------------------------------------------------------

def _edit(run, section, key, value):
    path = run / "config.json"
    cfg = json.loads(path.read_text())
    cfg[section][key] = value
    path.write_text(json.dumps(cfg))
    return resolve_config(cfg)


@pytest.fixture
def one_epoch(tmp_path):
    run = tmp_path / "run"
    _trainer(run, epochs=3).fit(stop_after=1)
    return run


def test_resume_refuses_a_changed_learning_rate_unless_allowed(one_epoch):
    cfg = _edit(one_epoch, "train", "lr", 0.05)
    before = snapshot(one_epoch)
    with pytest.raises(ResumeConfigError) as err:
        Trainer(cfg, one_epoch, resume=True, log=None)
    assert "train.lr (0.01 -> 0.05)" in _one_line(err) and "--allow-config-change" in str(err.value)
    assert snapshot(one_epoch) == before
    trainer = Trainer(cfg, one_epoch, resume=True, log=None, allow_config_change=True)
    assert {g["initial_lr"] for g in trainer.optimizer.param_groups} == {0.05}
    assert trainer.scheduler.base_lrs == [0.05] * len(trainer.optimizer.param_groups)
    trainer.fit()
    assert json.loads((one_epoch / "config.json").read_text())["train"]["lr"] == 0.05


@pytest.mark.parametrize("section, key, value", [("train", "optimizer", "sgd"), ("model", "hidden", [8]),
                                                 ("model", "kind", "alif"), ("data", "batch_size", 16)])
def test_resume_refuses_changes_the_checkpoint_cannot_follow(one_epoch, section, key, value):
    cfg = _edit(one_epoch, section, key, value)
    with pytest.raises(ResumeConfigError) as err:
        Trainer(cfg, one_epoch, resume=True, log=None, allow_config_change=True)
    assert f"{section}.{key}" in _one_line(err) and "start a new run" in str(err.value)


def test_resume_takes_operational_changes_without_asking(one_epoch):
    cfg = _edit(one_epoch, "train", "keep_checkpoints", 3)
    cfg["train"]["progress"] = True
    trainer = Trainer(cfg, one_epoch, resume=True, log=None)
    assert trainer.epoch == 1
    assert {"train.keep_checkpoints", "train.progress"} <= RESUME_OPERATIONAL_KEYS
    assert not RESUME_OPERATIONAL_KEYS & RESUME_TUNABLE_KEYS
