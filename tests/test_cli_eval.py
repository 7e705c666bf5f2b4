"""``dendrix eval RUN_DIR``: accuracy always, energy and robustness reports written into the run folder."""

import json

import pytest
import torch

import dendrix.data
from dendrix.cli import main
from dendrix.data import DatasetInfo
from dendrix.train import Trainer, load_run, resolve_config


class _Spikes(torch.utils.data.Dataset):
    """Four classes of Bernoulli spike patterns [T=10, C=12] (fast stand-in for a real data set)."""

    def __init__(self, split):
        n = {"train": 128, "val": 32, "test": 64}[split]
        g = torch.Generator().manual_seed({"train": 1, "val": 2, "test": 3}[split])
        probs = torch.rand(4, 10, 12, generator=torch.Generator().manual_seed(0)) ** 2
        self.y = torch.arange(n) % 4
        self.x = (torch.rand(n, 10, 12, generator=g) < probs[self.y]).float()
        self.info = DatasetInfo("patterns", 12, 4, 10)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setattr(dendrix.data, "get_dataset", lambda name, split="train", root=None, seed=0, **kw: _Spikes(split),
                  raising=False)
    folder = tmp_path_factory.mktemp("eval") / "run"
    cfg = resolve_config({"data": {"name": "patterns", "batch_size": 32},
                          "model": {"kind": "lif", "hidden": [16]},
                          "train": {"epochs": 1, "lr": 0.02, "progress": False}})
    Trainer(cfg, folder, log=None).fit()
    yield folder
    patch.undo()


def test_eval_writes_accuracy_energy_and_robustness(run_dir, capsys):
    code = main(["eval", str(run_dir), "--energy", "--robustness", "--quick"])
    assert code == 0
    summary = json.loads((run_dir / "eval_test.json").read_text())
    run = load_run(run_dir)
    correct = 0
    with torch.no_grad():
        for x, y in run.loader("test"):
            correct += int((run.model(x).argmax(-1) == y).sum())
    assert summary["accuracy"] == correct / 64
    assert summary["energy_uj"] > 0 and 0 <= summary["overall_robustness"] <= 1
    energy = json.loads((run_dir / "energy_test.json").read_text())
    assert energy["energy_uj"] == summary["energy_uj"] and energy["samples"] == 64
    robust = json.loads((run_dir / "robustness_test.json").read_text())
    assert robust["clean_accuracy"] == summary["accuracy"]
    for stem in ("eval_test.md", "energy_test.md", "robustness_test.md", "robustness_test.png"):
        assert (run_dir / stem).stat().st_size > 0
    assert "proxy" in (run_dir / "energy_test.md").read_text()
    assert "accuracy (test)" in capsys.readouterr().out


def test_eval_accuracy_only_on_another_split(run_dir):
    assert main(["eval", str(run_dir), "--split", "val"]) == 0
    summary = json.loads((run_dir / "eval_val.json").read_text())
    assert 0 <= summary["accuracy"] <= 1 and "energy_uj" not in summary


@pytest.mark.parametrize("argv, message", [
    (["eval", "{tmp}/missing"], "is not a folder"),
    (["eval", "{tmp}"], "not a dendrix run folder"),
    (["eval", "{run}", "--max-batches", "0"], "--max-batches must be >= 1"),
    (["eval", "{run}", "--robustness", "--eps", "a,b"], "--eps must be comma-separated numbers"),
])
def test_user_errors_are_one_line(argv, message, run_dir, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(run_dir)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
