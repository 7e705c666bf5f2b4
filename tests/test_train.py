"""Trainer mechanics: config validation, exact resume, Ctrl-C, NaN handling, checkpoints, load_run.

These use a small synthetic spike data set (patched in for ``dendrix.data.get_dataset``) so they run in seconds;
the real-data checks are in test_train_fsdd.py.
"""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import dendrix.data
from dendrix.data import DatasetInfo
from dendrix.train import ConfigError, Trainer, TrainingDiverged, load_run, resolve_config
from dendrix.train.checkpoint import latest_checkpoint, read_checkpoint
from dendrix.train.config import parse_overrides



class PatternSpikes(torch.utils.data.Dataset):
    """Four classes, each a fixed random firing-probability pattern over [T, C]; samples are Bernoulli draws."""

    def __init__(self, split, size=None, T=16, C=12, K=4):
        n = size or {"train": 320, "val": 64, "test": 64}[split]
        g = torch.Generator().manual_seed({"train": 1, "val": 2, "test": 3}[split])
        probs = torch.rand(K, T, C, generator=torch.Generator().manual_seed(0)) ** 2
        self.y = torch.arange(n) % K
        self.x = (torch.rand(n, T, C, generator=g) < probs[self.y]).float()
        self.info = DatasetInfo("patterns", C, K, T)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@pytest.fixture
def patterns(monkeypatch):
    monkeypatch.setattr(dendrix.data, "get_dataset",
                        lambda name, split="train", root=None, seed=0, **options: PatternSpikes(split, **options),
                        raising=False)


def _cfg(**train):
    return resolve_config({"data": {"name": "patterns", "batch_size": 32}, "threads": 1,
                           # a low threshold: the default init with this sparse input would rarely spike
                           "model": {"kind": "lif", "hidden": [24], "dropout": 0.2, "neuron": {"v_threshold": 0.25}},
                           "train": {"epochs": 3, "lr": 0.01, "progress": False, **train}})


# -- config ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["train.lrr=0.1"], "unknown config key 'train.lrr' (did you mean 'lr'?)"),
    (["train.lr=-1"], "train.lr must be a number > 0"),
    (["train.lr=abc"], "train.lr must be a number > 0"),
    (["train.epochs=2.5"], "train.epochs must be a positive integer"),
    (["train.optimizer=adam"], "train.optimizer must be one of adamw, sgd"),
    (["model.kind=nosuch"], "unknown neuron kind 'nosuch'"),
    (["model.hidden=[0]"], "model.hidden must be a list of positive integers"),
    (["model.kernel_size=3"], "model.kernel_size is not an option of arch 'mlp'"),
    (["model.dropout=1.5"], "model.dropout must be a number in [0, 1)"),
    (["trainlr"], "must look like key=value"),
    (["data=3"], "data must be a mapping"),
])
def test_config_errors_are_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        resolve_config(None, overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_config_overrides_and_per_kind():
    assert parse_overrides(["model.hidden=[64,32]", "model.neuron.tau=4"]) == \
        {"model": {"hidden": [64, 32], "neuron": {"tau": 4}}}
    source = {"model": {"kind": "lif"}, "train": {"lr": 0.1},
              "per_kind": {"alif": {"train": {"lr": 0.5}}}}
    assert resolve_config(source)["train"]["lr"] == 0.1
    assert resolve_config(source, ["model.kind=alif"])["train"]["lr"] == 0.5
    assert resolve_config(source, ["model.kind=alif", "train.lr=0.2"])["train"]["lr"] == 0.2
    seq = resolve_config({"model": {"arch": "seqimage", "conv_channels": [8]}})
    assert "recurrent" not in seq["model"]  # MLP-only defaults dropped for other architectures
    for name in ("fsdd_mlp", "demo", "shd_mlp", "smnist_seqimage", "fsdd_rmlp"):
        assert resolve_config(name)["name"] == name  # packaged configs are valid


# -- training ----------------------------------------------------------------------------------------------------

def test_training_learns_and_writes_a_run_folder(patterns, tmp_path):
    result = Trainer(_cfg(epochs=4), tmp_path / "run", log=None).fit()
    assert result["test_accuracy"] >= 0.6  # chance is 0.25
    assert 0 < result["spike_rate"] < 1
    for name in ("config.json", "info.json", "metrics.csv", "best.safetensors", "result.json"):
        assert (tmp_path / "run" / name).exists()
    assert len((tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()) == 5
    run = load_run(tmp_path / "run")
    assert not run.model.training and run.info.num_classes == 4
    correct = total = 0
    with torch.no_grad():
        for x, y in run.loader("test", batch_size=50):
            assert x.shape[1] <= 50 and x.shape[0] == 16
            correct += int((run.model(x).argmax(-1) == y).sum())
            total += len(y)
    assert total == 64 and correct / total == pytest.approx(result["test_accuracy"])


def test_resume_after_ctrl_c_continues_exactly(patterns, tmp_path):
    straight = Trainer(_cfg(), tmp_path / "a", log=None).fit()

    def interrupt(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        Trainer(_cfg(), tmp_path / "b", log=None).fit(on_epoch=interrupt)
    assert latest_checkpoint(tmp_path / "b")[0] == 1
    torch.manual_seed(1234)  # whatever happened to the global RNG meanwhile, resume restores it
    resumed_trainer = Trainer(_cfg(), tmp_path / "b", resume=True, log=None)
    assert resumed_trainer.epoch == 1
    resumed = resumed_trainer.fit()
    wa = load_file(str(tmp_path / "a" / "checkpoints" / "epoch-0003" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "checkpoints" / "epoch-0003" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for key in ("test_accuracy", "test_loss", "best_epoch", "val_accuracy"):
        assert straight[key] == resumed[key]

    def metrics(run):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in
                read_checkpoint(run / "checkpoints" / "epoch-0003")[1]["history"]]
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(patterns, tmp_path):
    Trainer(_cfg(), tmp_path / "run", log=None).fit(stop_after=1)
    good = load_file(str(tmp_path / "run" / "checkpoints" / "epoch-0001" / "model.safetensors"))
    trainer = Trainer(_cfg(), tmp_path / "run", resume=True, log=None)
    with torch.no_grad():
        trainer.model.output.weight.fill_(math.nan)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, batch 1.*last good checkpoint \(epoch 1\)"):
        trainer.fit()
    assert latest_checkpoint(tmp_path / "run")[0] == 1
    kept = load_file(str(tmp_path / "run" / "checkpoints" / "epoch-0001" / "model.safetensors"))
    assert all(torch.equal(good[k], kept[k]) for k in good)


def test_sgd_constant_schedule_and_neuron_lr_group(patterns, tmp_path):
    cfg = _cfg(epochs=1, optimizer="sgd", schedule="constant", neuron_lr=0.0, lr=0.05)
    cfg["model"]["kind"] = "plif"
    trainer = Trainer(cfg, tmp_path / "run", log=None)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["neuron"]["lr"] == 0.0 and groups["weights"]["lr"] == 0.05
    before = [p.detach().clone() for p in groups["neuron"]["params"]]
    trainer.fit()
    assert all(torch.equal(a, b) for a, b in zip(before, groups["neuron"]["params"]))  # lr 0: frozen
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["optimizer"] == "sgd"
