"""Checkpoints (issue 15 items 1, 2): no code runs from a file, no pointer leaves the run folder, a corrupt newest
checkpoint falls back to the newest intact one, only finite weights are saved, the last K are kept."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from _train_support import final_weights, same_tensors, tiny_config
from dendrix.train import Trainer, TrainingDiverged, load_run, resolve_config
from dendrix.train.checkpoint import (CheckpointError, atomic_write, checkpoint_folders, intact_checkpoint,
                                      latest_checkpoint, pack, read_checkpoint, unpack)

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()  # the tiny config asks for one thread; give the rest of the suite its own
    yield
    torch.set_num_threads(threads)


def _train(folder, epochs=2, stop_after=None, **train):
    return Trainer(resolve_config(tiny_config(epochs, **train)), folder, log=None).fit(stop_after=stop_after)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run (its final weights are what every resumed run must reproduce)."""
    threads = torch.get_num_threads()
    folder = tmp_path_factory.mktemp("reference") / "run"
    result = Trainer(resolve_config(tiny_config(3)), folder, log=None).fit()
    torch.set_num_threads(threads)
    return folder, result


class _Exploit:
    """Unpickling this calls ``Path.touch`` on the marker: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_source_never_unpickles():
    offenders = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for needle in ("weights_only=False", "torch.load(", "pickle.load(", "pickle.loads("):
            if needle in text:
                offenders.append(f"{path.relative_to(SRC)}: {needle}")
    assert offenders == []


def test_planted_pickle_is_never_run(tmp_path):
    run = tmp_path / "run"
    _train(run, epochs=2, stop_after=1)
    marker = tmp_path / "pwned"
    folder = run / "checkpoints" / "epoch-0001"
    (folder / "state.json").unlink()  # what an old-format or hand-crafted checkpoint looks like
    with open(folder / "trainer.pt", "wb") as f:
        pickle.dump({"optimizer": _Exploit(marker)}, f)
    for planted in ("trainer.safetensors", "model.safetensors"):  # a pickle under the expected names as well
        with open(folder / planted, "wb") as f:
            pickle.dump(_Exploit(marker), f)
    with pytest.raises(FileNotFoundError, match="no intact checkpoint"):
        Trainer(resolve_config(tiny_config(2)), run, resume=True, log=None)
    with pytest.raises(CheckpointError, match="old pickle checkpoint"):
        read_checkpoint(folder)
    assert not marker.exists()


def test_pointer_outside_the_folder_is_not_followed(tmp_path, caplog):
    run, outside = tmp_path / "run", tmp_path / "outside"
    _train(run, epochs=2, stop_after=1)
    _train(outside, epochs=3, stop_after=2)  # a complete, valid checkpoint elsewhere (epoch 2)
    root = run / "checkpoints"
    for bad in ("../../outside/checkpoints/epoch-0002", str(outside / "checkpoints" / "epoch-0002"), "epoch-2",
                "epoch-0002/../../../outside/checkpoints/epoch-0002"):
        (root / "last.json").write_text(json.dumps({"epoch": 2, "dir": bad}))
        with caplog.at_level(logging.WARNING, logger="dendrix"):
            assert latest_checkpoint(run) is None
        assert "ignoring" in caplog.text
        caplog.clear()
        trainer = Trainer(resolve_config(tiny_config(2)), run, resume=True, log=None)
        assert trainer.epoch == 1  # its own checkpoint, not the one the pointer names
    os.symlink(outside / "checkpoints" / "epoch-0002", root / "epoch-0002")  # a symlinked folder: skipped too
    (root / "last.json").write_text(json.dumps({"epoch": 2, "dir": "epoch-0002"}))
    assert latest_checkpoint(run) is None
    assert [e for e, _ in checkpoint_folders(run)] == [1]
    assert Trainer(resolve_config(tiny_config(2)), run, resume=True, log=None).epoch == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_state", "garbage_state", "empty_trainer"])
def test_corrupt_newest_checkpoint_falls_back_bit_identically(tmp_path, reference, damage, caplog):
    run = tmp_path / "run"
    _train(run, epochs=3, stop_after=2)
    newest = run / "checkpoints" / "epoch-0002"
    target = {"truncate": newest / "model.safetensors", "flip": newest / "trainer.safetensors",
              "delete_state": newest / "state.json", "garbage_state": newest / "state.json",
              "empty_trainer": newest / "trainer.safetensors"}[damage]
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete_state":
        target.unlink()
    elif damage == "garbage_state":
        target.write_bytes(os.urandom(200))
    else:
        target.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="dendrix"):
        trainer = Trainer(resolve_config(tiny_config(3)), run, resume=True, log=None)
    lines = [r.getMessage() for r in caplog.records if "skipping checkpoint" in r.getMessage()]
    assert len(lines) == 1 and str(target) in lines[0] and "\n" not in lines[0]
    assert trainer.epoch == 1
    result = trainer.fit()
    assert same_tensors(final_weights(run), final_weights(reference[0]))
    assert result["test_accuracy"] == reference[1]["test_accuracy"]


def test_keep_last_k_checkpoints(tmp_path):
    _train(tmp_path / "two", epochs=3)
    assert [e for e, _ in checkpoint_folders(tmp_path / "two")] == [3, 2]
    _train(tmp_path / "one", epochs=3, keep_checkpoints=1)
    assert [e for e, _ in checkpoint_folders(tmp_path / "one")] == [3]
    _train(tmp_path / "all", epochs=3, keep_checkpoints=5)
    assert [e for e, _ in checkpoint_folders(tmp_path / "all")] == [3, 2, 1]


def test_non_finite_weights_at_the_end_of_an_epoch_are_never_checkpointed(tmp_path):
    run = tmp_path / "run"
    _train(run, epochs=3, stop_after=1)
    good = final_weights(run)
    trainer = Trainer(resolve_config(tiny_config(3)), run, resume=True, log=None)
    original = trainer._train_epoch

    def poisoned_epoch():  # the last step of the epoch leaves an inf in a buffer-free weight
        metrics = original()
        with torch.no_grad():
            trainer.model.output.weight[0, 0] = float("inf")
        return metrics
    trainer._train_epoch = poisoned_epoch
    with pytest.raises(TrainingDiverged, match=r"model tensor output.weight .*last good checkpoint \(epoch 1\)"):
        trainer.fit()
    assert [e for e, _ in checkpoint_folders(run)] == [1] and latest_checkpoint(run)[0] == 1
    assert same_tensors(final_weights(run), good)
    assert not (run / "checkpoints" / "epoch-0002").exists()


def test_pack_round_trip_keeps_types_exactly():
    rng = np.random.get_state()
    state = {"optimizer": {"state": {0: {"step": torch.tensor(3.0), "buf": torch.randn(2, 3)}},
                           "param_groups": [{"betas": (0.9, 0.999), "params": [0], "lr": float("inf")}]},
             "rng": [{"numpy": rng, "torch": torch.get_rng_state()}], "history": [{"a": 1.5}], "n": None}
    tensors: dict = {}
    meta = json.loads(json.dumps(pack(state, tensors)))
    back = unpack(meta, tensors)
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["optimizer"]["state"][0]["buf"], state["optimizer"]["state"][0]["buf"])
    assert back["rng"][0]["numpy"][0] == "MT19937" and back["rng"][0]["numpy"][1].dtype == rng[1].dtype
    assert np.array_equal(back["rng"][0]["numpy"][1], rng[1]) and back["rng"][0]["numpy"][2:] == rng[2:]
    with pytest.raises(TypeError, match="cannot store a object"):
        pack({"x": object()}, {})


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")

    def failing(tmp):
        Path(tmp).write_text("half")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        atomic_write(path, failing)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_load_run_names_the_bad_file(tmp_path, reference):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    (run / "best.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="best.safetensors is not a readable safetensors file"):
        load_run(run)
    (run / "best.safetensors").unlink()
    assert load_run(run).weights.name == "model.safetensors"  # newest intact checkpoint instead
    assert intact_checkpoint(run)[0] == 3


# -- every file through the one atomic writer (dendrix.files) -----------------------------------------------------
_WRITE_METHODS = {"write_text", "write_bytes", "savefig", "savez", "savez_compressed", "fdopen", "to_csv"}
_WRITE_CALLS = {("torch", "save"), ("np", "save"), ("numpy", "save"), ("json", "dump"), ("nir", "write"),
                ("onnx", "export"), ("shutil", "copy"), ("shutil", "copyfile"), ("shutil", "copy2")}


def _writes_a_mode(call) -> bool:
    import ast

    modes = [a for a in call.args[1:2]] + [k.value for k in call.keywords if k.arg == "mode"]
    return any(isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+")
               for m in modes)


def _direct_writes(path) -> list[str]:
    """Calls in ``path`` that write a file, outside a writer handed to ``atomic_write`` (which writes the
    temporary path it is given)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    local_functions = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "atomic_write":
            for arg in node.args[1:2]:
                body = arg if isinstance(arg, ast.Lambda) else local_functions.get(getattr(arg, "id", None))
                allowed |= {id(n) for n in ast.walk(body)} if body is not None else set()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in allowed:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        owner = getattr(func.value, "id", getattr(func.value, "attr", None)) if isinstance(func, ast.Attribute) else None
        write = ((isinstance(func, ast.Attribute) and name in _WRITE_METHODS) or (owner, name) in _WRITE_CALLS
                 or (name in ("open", "ZipFile") and _writes_a_mode(node))
                 or (owner == "os" and name == "open" and "O_CREAT" in ast.unparse(node)))
        if write:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_module_writes_a_file_directly():
    """issue 15: every file the package writes (run folders, reports, plots, JSON, Markdown, CSV, exports, data
    caches, lock files) goes through dendrix.files.atomic_write; only that module opens files for writing."""
    from pathlib import Path

    import dendrix

    package = Path(dendrix.__file__).parent
    found = [w for p in sorted(package.rglob("*.py")) if p.name != "files.py" or p.parent != package
             for w in _direct_writes(p)]
    assert not found, "files written without dendrix.files.atomic_write:\n" + "\n".join(found)


def test_the_write_scan_finds_direct_writes(tmp_path):
    """The scan is not vacuous: each form of a direct write is found, a writer given to atomic_write is not."""
    source = tmp_path / "sample.py"
    source.write_text("import json, os, numpy as np, torch\n"
                      "open(p, 'w')\nPath(p).write_text('x')\nfig.savefig(p)\nnp.savez(p, a=1)\ntorch.save(x, p)\n"
                      "json.dump(d, f)\nos.open(p, os.O_WRONLY | os.O_CREAT)\nopen(p)\n"
                      "atomic_write(p, lambda tmp: fig.savefig(tmp))\n"
                      "def w(tmp):\n    open(tmp, 'wb')\natomic_write(p, w)\nwrite_text(p, 'x')\n")
    lines = [w.split(":")[1] for w in _direct_writes(source)]
    assert lines == ["2", "3", "4", "5", "6", "7", "8"], lines
