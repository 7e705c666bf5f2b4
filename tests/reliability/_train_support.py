"""Shared pieces of the CLI/trainer half of the reliability suite: a tiny config on the synthetic XOR data set
(registered, so subprocesses can use it too), a CLI runner and a snapshot of a folder's files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

DATA_OPTIONS = {"size": 256, "test_size": 64, "time_steps": 20}
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV["PYTHONPATH"] = SRC + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")


def tiny_config(epochs: int = 2, **train) -> dict:
    """A config that trains in a fraction of a second per epoch (82 parameters, 7 batches per epoch)."""
    return {"name": "tiny", "seed": 0, "threads": 1,
            "data": {"name": "xor", "batch_size": 32, "eval_batch_size": 256, "options": dict(DATA_OPTIONS)},
            "model": {"kind": "lif", "hidden": [16], "weight_gain": 3.0},
            "train": {"epochs": epochs, "lr": 0.01, "progress": False, **train}}


def write_config(folder: Path, epochs: int = 2, **train) -> Path:
    path = Path(folder) / "tiny.json"
    path.write_text(json.dumps(tiny_config(epochs, **train)))
    return path


def run_cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dendrix", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)


def popen_cli(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dendrix", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd)


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (empty when it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The model tensors of the newest checkpoint of ``run_dir``."""
    from safetensors.torch import load_file

    folders = sorted((Path(run_dir) / "checkpoints").glob("epoch-*"))
    return load_file(str(folders[-1] / "model.safetensors"))


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
