"""Bring your own data and model: register_dataset, register_architecture, config plugins, the tonic adapter,
and examples/user_model.py trained and evaluated through the CLI."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dendrix.data import (DatasetError, UserDataset, dataset_options, from_tonic, get_dataset, list_datasets,
                          register_dataset, unregister_dataset)
from dendrix.models import ARCH_OPTIONS, build_model, register_architecture, unregister_architecture
from dendrix.train.config import ConfigError, import_plugins, resolve_config

ROOT = Path(__file__).resolve().parents[1]


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, n, shape=(6, 4), seed=0, classes=3):
        g = torch.Generator().manual_seed(seed)
        self.x = (torch.rand(n, *shape, generator=g) < 0.3).float()
        self.y = torch.arange(n) % classes
        self.classes = list(range(classes))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i].numpy(), self.y[i]


@pytest.fixture()
def registered():
    def pairs(split, seed=0, n=12, shape=(6, 4)):
        return _Pairs(n if split != "test" else 6, tuple(shape), seed=seed + (split == "test"))

    register_dataset("t_pairs", pairs, description="test pairs")
    yield "t_pairs"
    unregister_dataset("t_pairs")


def test_register_dataset_wraps_any_dataset(registered):
    assert list_datasets()["t_pairs"] == "test pairs"
    assert dataset_options("t_pairs") == {"n": 12, "shape": (6, 4)}
    ds = get_dataset("t_pairs", split="train", n=9)
    assert isinstance(ds, UserDataset) and len(ds) == 9
    assert (ds.info.time_steps, ds.info.num_inputs, ds.info.num_classes, ds.info.input_kind) == (6, 4, 3, "spikes")
    x, y = ds[0]
    assert x.dtype == torch.float32 and isinstance(y, int)
    images = get_dataset("t_pairs", split="test", shape=[5, 2, 3, 3])
    assert images.info.input_shape == (2, 3, 3) and images.info.num_inputs == 2
    with pytest.raises(DatasetError, match="no option 'size'"):
        get_dataset("t_pairs", size=3)


def test_register_dataset_errors():
    with pytest.raises(DatasetError, match="built-in"):
        register_dataset("fsdd", lambda split: None)
    with pytest.raises(DatasetError, match="must start with a letter"):
        register_dataset("9bad name", lambda split: None)
    with pytest.raises(DatasetError, match="'split' keyword"):
        register_dataset("t_nosplit", lambda part: None)
    register_dataset("t_noclasses", lambda split: [(np.zeros((3, 2)), 0)] * 4)
    try:
        with pytest.raises(DatasetError, match="num_classes"):
            get_dataset("t_noclasses")
        with pytest.raises(DatasetError, match="already registered"):
            register_dataset("t_noclasses", lambda split: None)
        register_dataset("t_noclasses", lambda split: [(np.zeros((3, 2)), 0), (np.zeros((4, 2)), 1)],
                         num_classes=2, overwrite=True)
        ds = get_dataset("t_noclasses")
        with pytest.raises(DatasetError, match="same shape"):
            ds[1]
    finally:
        unregister_dataset("t_noclasses")


class _Tiny(nn.Module):
    def __init__(self, num_inputs, num_classes, width=5):
        super().__init__()
        self.width = width
        self.fc = nn.Linear(num_inputs, num_classes)

    def forward(self, x):
        return self.fc(x.mean(0))


def test_register_architecture_and_build():
    register_architecture("t_tiny", _Tiny)
    try:
        assert ARCH_OPTIONS["t_tiny"] == ("width",)
        from dendrix.data import DatasetInfo

        model = build_model({"arch": "t_tiny", "kind": "lif", "width": 7}, DatasetInfo("x", 4, 3, 6))
        assert model.width == 7 and model(torch.zeros(6, 2, 4)).shape == (2, 3)
        with pytest.raises(ValueError, match="not an option of arch 't_tiny'"):
            build_model({"arch": "t_tiny", "depth": 2}, DatasetInfo("x", 4, 3, 6))
        with pytest.raises(ValueError, match="built-in"):
            register_architecture("mlp", _Tiny)
        with pytest.raises(ValueError, match="options must be identifiers"):
            register_architecture("t_bad", _Tiny, options=("kind",))
        cfg = resolve_config(None, ["model.arch=t_tiny", "model.width=3"])
        assert cfg["model"] == {"arch": "t_tiny", "kind": "lif", "neuron": {}, "width": 3}
    finally:
        unregister_architecture("t_tiny")
    with pytest.raises(ConfigError, match="register_architecture"):
        resolve_config(None, ["model.arch=t_tiny"])


def test_plugins_are_imported_and_validated(tmp_path, monkeypatch):
    module = tmp_path / "t_dendrix_plugin.py"
    module.write_text("from dendrix.data import register_dataset\nimport numpy as np\n"
                      "register_dataset('t_plugged', lambda split: [(np.zeros((3, 2)), i % 2) for i in range(6)],"
                      " num_classes=2, overwrite=True)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cfg = resolve_config({"plugins": ["t_dendrix_plugin"], "data": {"name": "t_plugged"}})
        assert cfg["plugins"] == ["t_dendrix_plugin"] and len(get_dataset("t_plugged")) == 6
    finally:
        unregister_dataset("t_plugged")
        sys.modules.pop("t_dendrix_plugin", None)
    with pytest.raises(ConfigError, match="dotted Python module name"):
        import_plugins(["examples/user_model.py"])
    with pytest.raises(ConfigError, match="cannot import plugin module 't_no_such_plugin'"):
        resolve_config({"plugins": ["t_no_such_plugin"]})
    with pytest.raises(ConfigError, match="list of module names"):
        import_plugins("t_dendrix_plugin")


def test_from_tonic_bins_events_with_tonic_to_frame(monkeypatch):
    """The adapter's own work (frame layout, one-row sensors, labels) against a stand-in for tonic's ToFrame that
    bins events into (T, P, H, W) as tonic documents; the real tonic is an optional dependency."""
    class ToFrame:
        def __init__(self, sensor_size, n_time_bins):
            self.size, self.bins = sensor_size, n_time_bins

        def __call__(self, events):
            w, h, p = self.size
            frames = np.zeros((self.bins, p, h, w))
            edges = np.linspace(events["t"].min(), events["t"].max() + 1, self.bins + 1)
            b = np.searchsorted(edges, events["t"], side="right") - 1
            np.add.at(frames, (b, events["p"], events["y"], events["x"]), 1)
            return frames

    fake = types.ModuleType("tonic")
    fake.transforms = types.SimpleNamespace(ToFrame=ToFrame)
    monkeypatch.setitem(sys.modules, "tonic", fake)
    monkeypatch.setitem(sys.modules, "tonic.transforms", fake.transforms)
    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])

    class Audio:
        sensor_size = (700, 1, 1)
        classes = list(range(20))

        def __len__(self):
            return 3

        def __getitem__(self, i):
            ev = np.array([(5, 0, 0, 0), (699, 0, 50, 0), (5, 0, 99, 0)], dtype=dtype)
            return ev, i

    ds = from_tonic(Audio(), time_steps=10)
    x, y = ds[2]
    assert x.shape == (10, 700) and y == 2 and ds.info.num_classes == 20 and ds.info.input_kind == "spikes"
    assert float(x[:, 5].sum()) == 2 and float(x[:, 699].sum()) == 1

    class Camera(Audio):
        sensor_size = (4, 3, 2)

        def __getitem__(self, i):
            return np.array([(3, 2, 0, 1), (0, 0, 9, 0)], dtype=dtype), 1

    frames = from_tonic(Camera(), time_steps=5, num_classes=2)
    assert frames.info.input_shape == (2, 3, 4) and frames[0][0][0, 1, 2, 3] == 1


def test_example_trains_a_user_model_and_data_set_through_the_cli(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "user_model.py"), "--tiny", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dendrix train" in proc.stdout and "accuracy (test)" in proc.stdout
    run = tmp_path / "run"
    assert (run / "best.safetensors").exists() or (run / "checkpoints").exists()
    import json

    config = json.loads((run / "config.json").read_text())
    assert config["data"]["name"] == "rhythm" and config["model"]["arch"] == "skipnet"
    assert json.loads((run / "eval_test.json").read_text())
