"""``dendrix export RUN_DIR --format onnx|nir --out FILE`` on tiny runs trained with the pipeline (1 epoch)."""

import numpy as np
import pytest
import torch

import dendrix.data
from dendrix.cli import main
from dendrix.train import Trainer, load_run, resolve_config

from test_cli_eval import _Spikes

ort = pytest.importorskip("onnxruntime", reason="onnxruntime comes with the test set-up (dendrix[onnx])")
nir = pytest.importorskip("nir", reason="nir comes with the test set-up (dendrix[nir])")


def _train(folder, kind: str, **model) -> None:
    cfg = resolve_config({"data": {"name": "patterns", "batch_size": 32},
                          "model": {"kind": kind, "hidden": [16], **model},
                          "train": {"epochs": 1, "lr": 0.02, "progress": False}})
    Trainer(cfg, folder, log=None).fit()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setattr(dendrix.data, "get_dataset", lambda name, split="train", root=None, seed=0, **kw: _Spikes(split),
                  raising=False)
    root = tmp_path_factory.mktemp("export")
    folders = {kind: root / kind for kind in ("lif", "dlif", "psn")}
    for kind, folder in folders.items():
        _train(folder, kind)
    yield folders
    patch.undo()


def _x(run) -> torch.Tensor:
    x, _ = next(iter(run.loader("test", batch_size=4)))
    return x


@pytest.mark.parametrize("kind", ["lif", "dlif"])
def test_onnx_export_of_a_run_streams_its_per_step_logits(kind, runs, tmp_path, capsys):
    out = tmp_path / f"{kind}.onnx"
    assert main(["export", str(runs[kind]), "--format", "onnx", "--out", str(out), "--batch-size", "4"]) == 0
    assert f"wrote {out} (onnx, one step" in capsys.readouterr().out
    run = load_run(runs[kind])
    x = _x(run)
    saved = np.load(out.with_suffix(".state.npz"))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()][1:]
    state, logits = [saved[n] for n in names], []
    for x_t in x.numpy():
        y_t, *state = session.run(None, {"x": x_t, **dict(zip(names, state))})
        logits.append(y_t)
    with torch.no_grad():
        want = run.model(x, per_step=True)
    torch.testing.assert_close(torch.from_numpy(np.stack(logits)), want, rtol=1e-5, atol=1e-5)


def test_nir_export_of_a_lif_run_round_trips(runs, tmp_path, capsys):
    out = tmp_path / "lif.nir"
    assert main(["export", str(runs["lif"]), "--format", "nir", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    run = load_run(runs["lif"])
    x = _x(run)
    back = dendrix.export.from_nir(out)
    with torch.no_grad():
        assert torch.equal(back(x), run.model(x, per_step=True))


def test_a_neuron_without_a_nir_form_is_a_one_line_refusal(runs, tmp_path, capsys):
    code = main(["export", str(runs["dlif"]), "--format", "nir", "--out", str(tmp_path / "dlif.nir")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "NIR cannot carry this run" in err and "DLIFLinear" in err and "to_onnx" in err
    assert not (tmp_path / "dlif.nir").exists()


def test_a_window_kind_is_refused_as_a_step_and_exported_as_its_window(runs, tmp_path, capsys):
    out = tmp_path / "psn.onnx"
    assert main(["export", str(runs["psn"]), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "ONNX cannot carry this run" in err and "does not stream" in err and "window=True" in err
    assert main(["export", str(runs["psn"]), "--format", "onnx", "--window", "--out", str(out)]) == 0
    run = load_run(runs["psn"])
    x = _x(run)[:, :1]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), run.model(x), rtol=1e-5, atol=1e-5)  # the logits


def test_bad_arguments_are_one_line_errors(runs, tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["export", str(runs["lif"]), "--format", "nir", "--dt", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--dt must be > 0" in capsys.readouterr().err
