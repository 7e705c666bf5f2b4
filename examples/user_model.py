"""Bring your own data set and model to the dendrix pipeline, then train and evaluate them with the CLI.

This file is both a *plugin module* and a script:

* Imported (``plugins: [user_model]`` in a config), it registers a data set ``rhythm`` and an architecture
  ``skipnet``, so ``dendrix train/compare/eval`` can name them (``data.name: rhythm``, ``model.arch: skipnet``).
* Run (``python examples/user_model.py [--tiny] [--out DIR]``), it writes such a config and runs
  ``dendrix train`` and ``dendrix eval`` on it in fresh processes, with this folder on ``PYTHONPATH`` so the CLI
  can import the plugin.

The data set is a plain ``torch.utils.data.Dataset`` of ``(x [T, C], label)``: nothing dendrix-specific, no
``.info`` (dendrix reads the shape from the first item; ``num_classes`` is given when registering). The model
is any ``nn.Module`` mapping ``x [T, B, C]`` to logits ``[B, classes]``, built here from a dendrix spiking layer of
the config's ``model.kind``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

import dendrix
from dendrix.data import register_dataset
from dendrix.models import register_architecture

CLASSES = 4


class RhythmDataset(Dataset):
    """Class c: the channels of group c (``channels / 4`` of them) fire every 4 steps from a random phase; every
    channel also fires at random with probability 0.05 per step."""

    def __init__(self, n: int, time_steps: int = 40, channels: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % CLASSES
        group = torch.arange(channels).view(1, 1, channels) * CLASSES // channels  # the class of each channel
        t = torch.arange(time_steps).view(1, time_steps, 1)
        phase = torch.randint(0, 4, (n, 1, channels), generator=g)
        rhythm = ((t + phase) % 4 == 0) & (group == self.labels.view(n, 1, 1))
        noise = torch.rand(n, time_steps, channels, generator=g) < 0.05
        self.x = (rhythm | noise).float()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i])


def rhythm(split: str, seed: int = 0, size: int = 400):
    """The factory dendrix calls: a different fixed sample per split (test never depends on ``seed``)."""
    offset = {"train": 0, "val": 1, "train_full": 2, "test": 3}[split]
    n = size if split in ("train", "train_full") else max(size // 4, CLASSES)
    return RhythmDataset(n, seed=1000 * offset + (0 if split == "test" else seed))


class SkipNet(nn.Module):
    """A spiking layer of any registered kind, a skip path from the input, and a Linear readout of the spike
    counts (sum over time)."""

    def __init__(self, num_inputs: int, num_classes: int, kind: str, neuron_kw: dict, time_steps: int | None,
                 width: int = 32):
        super().__init__()
        self.hidden = dendrix.spiking_layer(kind, num_inputs, width, time_steps=time_steps, **neuron_kw)
        self.readout = nn.Linear(width + num_inputs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x)
        return self.readout(torch.cat([h, x], dim=-1).sum(dim=0))


register_dataset("rhythm", rhythm, num_classes=CLASSES, description="example: spike rhythms (examples/user_model.py)",
                 overwrite=True)  # overwrite: this file may be imported both as a script and as the plugin
register_architecture("skipnet", SkipNet, overwrite=True)


def _cli(*args: str, env: dict) -> None:
    cmd = [sys.executable, "-m", "dendrix", *args]
    print("$", " ".join(cmd[2:]))
    subprocess.run(cmd, check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="one epoch on a small sample (a quick check)")
    parser.add_argument("--out", help="run folder (default: a temporary folder)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dendrix-user-"))
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "name": "user_example",
        "plugins": ["user_model"],
        "device": "cpu",
        "data": {"name": "rhythm", "batch_size": 32, "options": {"size": 64 if args.tiny else 400},
                 "augment": {"time_shift": 2, "drop": 0.05}},
        "model": {"arch": "skipnet", "kind": "lif", "width": 16 if args.tiny else 32},
        "train": {"epochs": 1 if args.tiny else 15, "lr": 0.01},
    }
    cfg_path = out / "user_example.json"
    cfg_path.write_text(json.dumps(config, indent=2))
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    run_dir = out / "run"
    _cli("train", "--config", str(cfg_path), "--out", str(run_dir), "--quiet", env=env)
    _cli("eval", str(run_dir), env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
