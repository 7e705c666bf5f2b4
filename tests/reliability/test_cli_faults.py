"""Bad input to every sub-command (issue 15 item 5): exactly one line on stderr, a non-zero exit, no traceback,
and no file of an existing run changes. ``--debug`` shows the traceback instead."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import torch

from _train_support import run_cli, snapshot, tiny_config
from dendrix.cli import main
from dendrix.train import Trainer, resolve_config

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished run, damaged copies of it, bad config files and other odd paths."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("cli_faults")
    run = root / "run"
    Trainer(resolve_config(tiny_config(1)), run, log=None).fit()
    other = root / "other"  # a run of another shape, for mismatching weights
    cfg = tiny_config(1)
    cfg["model"]["hidden"] = [8]
    Trainer(resolve_config(cfg), other, log=None).fit()
    torch.set_num_threads(threads)
    paths = {"run": run, "tmp": root, "empty": root / "empty", "file": root / "plain.txt"}
    paths["empty"].mkdir()
    paths["file"].write_text("not a folder")

    def damaged(name, edit):
        folder = root / name
        shutil.copytree(run, folder)
        edit(folder)
        paths[name] = folder
    damaged("bad_config_json", lambda f: (f / "config.json").write_text("{not json"))
    damaged("list_config_json", lambda f: (f / "config.json").write_text("[1, 2]"))
    damaged("no_config_json", lambda f: (f / "config.json").unlink())
    damaged("bad_info_json", lambda f: (f / "info.json").write_bytes(b"\xff\xfe\x00"))
    damaged("no_info_json", lambda f: (f / "info.json").unlink())
    damaged("unknown_kind", lambda f: (f / "config.json").write_text(
        json.dumps({**json.loads((f / "config.json").read_text()), "model": {"arch": "mlp", "kind": "nosuch"}})))
    damaged("truncated_best", lambda f: (f / "best.safetensors").write_bytes(
        (f / "best.safetensors").read_bytes()[:100]))
    damaged("mismatched_best", lambda f: shutil.copy(other / "best.safetensors", f / "best.safetensors"))
    damaged("no_weights", lambda f: (shutil.rmtree(f / "checkpoints"), (f / "best.safetensors").unlink()))
    damaged("busy", lambda f: (f / ".lock").write_text(f"1 {socket.gethostname()}\n"))  # pid 1 always runs
    comparison = root / "comparison"
    comparison.mkdir()
    (comparison / "report.json").write_text("[]")
    paths["comparison"] = comparison

    configs = root / "configs"
    configs.mkdir()
    paths["cfg_dir"] = configs / "folder.yaml"
    paths["cfg_dir"].mkdir()
    texts = {"binary": b"\x00\x01\x02\x89PNG", "latin1": "name: caf\xe9\n".encode("latin-1"),
             "list": b"- 1\n- 2\n", "scalar": b"3\n", "unknown": b"trian:\n  lr: 0.1\n",
             "unknown_inner": b"train:\n  learning_rate: 0.1\n", "bad_yaml": b"train: [1, 2\n",
             "nan_clip": b"train:\n  grad_clip: .nan\n", "inf_lr": b"train:\n  lr: .inf\n",
             "bad_name": b"name: ../../etc\n", "section_not_mapping": b"train: 3\n",
             "bomb": b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                     b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nname: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"}
    for name, data in texts.items():
        paths[f"cfg_{name}"] = configs / f"{name}.yaml"
        paths[f"cfg_{name}"].write_bytes(data)
    paths["cfg_tiny"] = configs / "tiny.json"
    paths["cfg_tiny"].write_text(json.dumps(tiny_config(1)))
    return paths


def _case_id(argv) -> str:
    # no "/" or "::" in an id: pytest would read them as parts of the node's path
    return " ".join(argv).replace("/", "|").replace("::", ":")[:80]


def _case(argv, message, skip=False):
    return pytest.param(argv, message, marks=pytest.mark.skipif(skip, reason="needs a machine without CUDA"),
                        id=_case_id(argv))


TRAIN = [
    (["train", "--config", "{cfg_dir}"], "is a folder"),
    (["train", "--config", "{cfg_binary}"], "is a binary file"),
    (["train", "--config", "{cfg_latin1}"], "is not UTF-8 text"),
    (["train", "--config", "{cfg_list}"], "must hold a mapping at the top level, got list"),
    (["train", "--config", "{cfg_scalar}"], "must hold a mapping at the top level, got int"),
    (["train", "--config", "{cfg_unknown}"], "unknown config key 'trian' (did you mean 'train'?)"),
    (["train", "--config", "{cfg_unknown_inner}"], "unknown config key 'train.learning_rate'"),
    (["train", "--config", "{cfg_bad_yaml}"], "is not valid YAML"),
    (["train", "--config", "{cfg_nan_clip}"], "train.grad_clip must be a number >= 0, got nan"),
    (["train", "--config", "{cfg_inf_lr}"], "train.lr must be a number > 0, got inf"),
    (["train", "--config", "{cfg_bad_name}"], "config key name must be letters"),
    (["train", "--config", "{cfg_section_not_mapping}"], "config key train must be a mapping"),
    (["train", "--config", "{cfg_bomb}"], "expands to more than"),
    (["train", "--config", "{tmp}/missing.yaml"], "not found"),
    (["train", "train.lr=.nan"], "train.lr must be a number > 0, got nan"),
    (["train", "train.lr=-.inf"], "train.lr must be a number > 0"),
    (["train", "train.lr=1e-3x"], "train.lr must be a number > 0, got '1e-3x'"),
    (["train", "train.grad_clip=.nan"], "train.grad_clip must be a number >= 0, got nan"),
    (["train", "train.grad_clip=.inf"], "train.grad_clip must be a number >= 0, got inf"),
    (["train", "train.weight_decay=.nan"], "train.weight_decay must be a number >= 0"),
    (["train", "train.neuron_lr=.inf"], "train.neuron_lr must be null or a number >= 0"),
    (["train", "train.momentum=.nan"], "train.momentum must be a number >= 0"),
    (["train", "train.warmup_epochs=.inf"], "train.warmup_epochs must be a number >= 0"),
    (["train", "train.label_smoothing=.nan"], "train.label_smoothing must be a number in [0, 1)"),
    (["train", "train.min_lr_ratio=.inf"], "train.min_lr_ratio must be a number in [0, 1)"),
    (["train", "model.dropout=.nan"], "model.dropout must be a number in [0, 1)"),
    (["train", "model.weight_gain=.inf"], "model.weight_gain must be a number > 0"),
    (["train", "train.epochs=1e3"], "train.epochs must be a positive integer, got 1000.0"),
    (["train", "train.epochs=.inf"], "train.epochs must be a positive integer"),
    (["train", "train.keep_checkpoints=0"], "train.keep_checkpoints must be a positive integer"),
    (["train", "train.nan_policy=ignore"], "train.nan_policy must be one of stop, skip"),
    (["train", "train.lrr=1e-3"], "unknown config key 'train.lrr' (did you mean 'lr'?)"),
    (["train", "trainn.lr=1e-3"], "unknown config key 'trainn' (did you mean 'train'?)"),
    (["train", "name=../escape"], "config key name must be letters"),
    (["train", "name=a/b"], "config key name must be letters"),
    (["train", "seed=-1"], "seed must be an integer >= 0"),
    (["train", "threads=0"], "threads must be null or a positive integer"),
    (["train", "device=tpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["train", "trainlr"], "must look like key=value"),
    (["train", "=3"], "has an empty key"),
    (["train", "--config", "{cfg_tiny}", "--out", "{run}"], "already holds a run"),
    (["train", "--config", "{cfg_tiny}", "--out", "{file}"], "is a file"),
    (["train", "--config", "{cfg_tiny}", "--out", "{busy}", "--overwrite"], "is in use by process 1"),
    (["train", "--resume", "{busy}"], "is in use by process 1"),
    (["train", "--resume", "{run}", "--overwrite"], "do not combine it with"),
    (["train", "--resume", "{run}", "--out", "{tmp}/x"], "do not combine it with"),
    (["train", "--allow-config-change"], "--allow-config-change only applies to --resume"),
    (["train", "--overwrite"], "--overwrite needs --out"),
    (["train", "--resume", "{tmp}/missing"], "is not a run folder to resume"),
    (["train", "--resume", "{empty}"], "is not a run folder to resume"),
    (["train", "--resume", "{file}"], "is not a run folder to resume"),
    (["train", "--resume", "{bad_config_json}"], "config.json is not valid JSON"),
    (["train", "--resume", "{list_config_json}"], "config.json must hold a mapping"),
    (["train", "--resume", "{no_weights}"], "has no checkpoint yet"),
    (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]
TRAIN_DEVICES = [
    _case(["train", "--config", "{cfg_tiny}", "device=cuda", "--out", "{tmp}/dev"], "CUDA is not available", CUDA),
    _case(["train", "--config", "{cfg_tiny}", "device=cuda:3", "--out", "{tmp}/dev"], "CUDA", False),
]
EVAL = [
    (["eval", "{tmp}/missing"], "is not a folder"),
    (["eval", "{file}"], "is not a folder"),
    (["eval", "{empty}"], "is not a dendrix run folder (config.json missing)"),
    (["eval", "{no_config_json}"], "is not a dendrix run folder (config.json missing)"),
    (["eval", "{bad_config_json}"], "config.json is not valid JSON"),
    (["eval", "{list_config_json}"], "config.json must hold a mapping"),
    (["eval", "{no_info_json}"], "info.json missing"),
    (["eval", "{bad_info_json}"], "info.json is not valid JSON"),
    (["eval", "{unknown_kind}"], "config.json does not describe a model that can be built"),
    (["eval", "{truncated_best}"], "best.safetensors is not a readable safetensors file"),
    (["eval", "{mismatched_best}"], "best.safetensors does not fit the model"),
    (["eval", "{no_weights}"], "has no trained weights yet"),
    (["eval", "{run}", "--device", "tpu"], "--device: device 'tpu' is not"),
    (["eval", "{run}", "--device", "auto"], "--device must be cpu, cuda or cuda:N"),
    (["eval", "{run}", "--device", "meta"], "is not supported"),
    (["eval", "{run}", "--device", "cuda:-1"], "--device"),
    (["eval", "{run}", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["eval", "{run}", "--batch-size", "abc"], "invalid int value: 'abc'"),
    (["eval", "{run}", "--max-batches", "-2"], "--max-batches must be >= 1"),
    (["eval", "{run}", "--attack-steps", "0"], "--attack-steps must be >= 1"),
    (["eval", "{run}", "--split", "nosuch"], "invalid choice: 'nosuch'"),
    (["eval", "{run}", "--weights", "newest"], "invalid choice: 'newest'"),
    (["eval", "{run}", "--e-ac", "nan"], "--e-ac must be a finite number >= 0"),
    (["eval", "{run}", "--e-mac", "-1"], "--e-mac must be a finite number >= 0"),
    (["eval", "{run}", "--e-ac", "inf"], "--e-ac must be a finite number >= 0"),
    (["eval", "{run}", "--sigma", "nan"], "--sigma must list finite numbers >= 0"),
    (["eval", "{run}", "--sigma", "-0.1"], "--sigma must list finite numbers >= 0"),
    (["eval", "{run}", "--spike-p", "inf"], "--spike-p must list finite numbers >= 0"),
    (["eval", "{run}", "--eps", "x"], "--eps must be comma-separated numbers"),
    (["eval", "{run}", "--eps", ","], "--eps must list finite numbers >= 0"),
    (["eval"], "the following arguments are required: RUN_DIR"),
]
EVAL_DEVICES = [
    _case(["eval", "{run}", "--device", "cuda"], "CUDA is not available", CUDA),
    _case(["eval", "{run}", "--device", "cuda:7"], "CUDA", False),
]
COMPARE = [
    (["compare", "--config", "{cfg_tiny}", "--kinds", "lif,nosuch"], "unknown neuron kind 'nosuch'"),
    (["compare", "--config", "{cfg_tiny}", "--kinds", ","], "--kinds is empty"),
    (["compare", "--config", "{cfg_tiny}", "--kinds", "lif", "--workers", "0"], "--workers must be >= 1"),
    (["compare", "--config", "{cfg_tiny}", "--kinds", "lif", "--epochs", "0"], "--epochs must be >= 1"),
    (["compare", "--config", "{cfg_dir}", "--kinds", "lif"], "is a folder"),
    (["compare", "--config", "{cfg_bomb}", "--kinds", "lif"], "expands to more than"),
    (["compare", "--config", "{cfg_tiny}", "--kinds", "lif", "train.lr=.nan"], "train.lr must be a number > 0"),
    (["compare", "--config", "{cfg_tiny}", "--kinds", "lif", "--out", "{file}"], "is a file, not a folder"),
    (["compare", "--config", "{cfg_tiny}", "--kinds", "lif", "--out", "{comparison}"], "already holds a comparison"),
    (["compare", "--config", "{cfg_tiny}", "--kinds", "lif", "--out", "{busy}"], "is in use by process 1"),
    (["compare", "--kinds", "lif"], "the following arguments are required: --config"),
    (["compare", "--config", "{cfg_tiny}", "--kinds", "lif", "--workers", "two"], "invalid int value"),
]
DEMO = [
    (["demo", "--kinds", "lif,nosuch"], "unknown neuron kind 'nosuch'"),
    (["demo", "--epochs", "0"], "--epochs must be >= 1"),
    (["demo", "--kinds", "lif", "--workers", "0"], "--workers must be >= 1"),
    (["demo", "--kinds", "lif", "--out", "{comparison}"], "already holds a comparison"),
    (["demo", "--epochs", "1.5"], "invalid int value: '1.5'"),
]
DATA = [
    (["data", "info", "nosuch"], "nosuch"),
    (["data", "info", "xor", "--option", "size"], "--option expects KEY=VALUE"),
    (["data", "info", "xor", "--option", "no_such_option=1"], "no_such_option"),
    (["data", "info", "xor", "--split", "nosuch"], "nosuch"),
    (["data", "nosuch"], "invalid choice: 'nosuch'"),
    (["data", "download", "nosuch"], "invalid choice: 'nosuch'"),
]
OTHER = [
    (["list", "--family", "nosuch"], "unknown family 'nosuch'"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["--quiet", "--verbose", "list"], "--quiet and --verbose exclude each other"),
]
CASES = [c if hasattr(c, "values") else pytest.param(*c, id=_case_id(c[0]))
         for c in [*TRAIN, *TRAIN_DEVICES, *EVAL, *EVAL_DEVICES, *COMPARE, *DEMO, *DATA, *OTHER]]
# every sub-command has bad-input cases here
assert {c.values[0][0] for c in CASES} >= {"train", "eval", "compare", "demo", "data", "list"}


def _fill(argv, world):
    return [a.format(**{k: str(v) for k, v in world.items()}) for a in argv]


def _runs(world):
    return {name: snapshot(path) for name, path in world.items() if path.is_dir()}


@pytest.mark.parametrize("argv, message", CASES)
def test_bad_input_is_one_line_and_changes_nothing(world, argv, message, capsys):
    from pathlib import Path

    default_runs = Path("runs").resolve()  # where a run without --out would go: nothing may appear there
    before, runs_before = _runs(world), snapshot(default_runs)
    try:
        code = main(_fill(argv, world))
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code not in (0, None), captured
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert _runs(world) == before and snapshot(default_runs) == runs_before


def test_debug_shows_the_traceback(world, tmp_path):
    proc = run_cli("--debug", "train", "--config", world["cfg_dir"], cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "is a folder" in proc.stderr
    plain = run_cli("train", "--config", world["cfg_dir"], cwd=tmp_path)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [f"dendrix train: error: config file '{world['cfg_dir']}' is a "
                                                 "folder, not a YAML file"]


def test_an_unexpected_error_is_one_line_naming_debug(monkeypatch, capsys):
    import dendrix.registry

    def broken():
        raise RuntimeError("registry exploded\nsecond line")
    monkeypatch.setattr(dendrix.registry, "available", broken)
    assert main(["list"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == ("dendrix list: internal error: RuntimeError: registry exploded (rerun with --debug for the "
                    "traceback)")
    with pytest.raises(RuntimeError, match="registry exploded"):
        main(["--debug", "list"])


def test_numbers_with_exponents_parse_as_numbers(world, tmp_path):
    from dendrix.train.config import load_config

    assert resolve_config(None, ["train.lr=1e-3", "train.weight_decay=5E-5"])["train"]["lr"] == 0.001
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  lr: 2e-3\n  weight_decay: 1E-4\n  epochs: 3\n")
    cfg = resolve_config(load_config(path))
    assert cfg["train"]["lr"] == 0.002 and cfg["train"]["weight_decay"] == 0.0001


# Every numeric key: NaN and infinities refused (from key=value and from a file), exponent notation accepted.
FLOAT_KEYS = ["train.lr", "train.neuron_lr", "train.weight_decay", "train.neuron_weight_decay", "train.momentum",
              "train.grad_clip", "train.warmup_epochs", "train.label_smoothing", "train.min_lr_ratio",
              "model.dropout", "model.weight_gain"]
INT_KEYS = ["train.epochs", "train.keep_checkpoints", "data.batch_size", "data.eval_batch_size", "seed", "threads"]
NON_FINITE = [".nan", ".inf", "-.inf", ".NaN", "+.inf"]


@pytest.mark.parametrize("key", FLOAT_KEYS + INT_KEYS)
@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("source", ["override", "file"])
def test_non_finite_numbers_are_refused_for_every_key(key, value, source, tmp_path, capsys):
    argv = ["train", f"{key}={value}"]
    if source == "file":
        section, _, name = key.rpartition(".")
        text = f"{section}:\n  {name}: {value}\n" if section else f"{name}: {value}\n"
        (tmp_path / "c.yaml").write_text(text)
        argv = ["train", "--config", str(tmp_path / "c.yaml")]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"config key {key} must be" in line and "Traceback" not in line
    assert list(tmp_path.iterdir()) == ([tmp_path / "c.yaml"] if source == "file" else [])


_UNIT_KEYS = ("model.dropout", "train.label_smoothing", "train.min_lr_ratio")  # must stay below 1


@pytest.mark.parametrize("key, text, value", [
    (key, text, value) for key in FLOAT_KEYS
    for text, value in [("1e-3", 1e-3), ("5E-1", 0.5), ("2.5e-2", 0.025), ("1e0", 1.0)]
    if not (key in _UNIT_KEYS and value >= 1)])
def test_exponent_numbers_parse_for_every_float_key(key, text, value):
    section, name = key.split(".")
    assert resolve_config(None, [f"{key}={text}"])[section][name] == value


@pytest.mark.parametrize("command", ["train", "eval", "compare", "demo", "list", "data", "data info"])
def test_unknown_flags_are_one_line_for_every_sub_command(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--no-such-flag"])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--no-such-flag" in line or "required" in line


# -- folders that cannot be written (the tests run as root, so chmod would not stop a write) ----------------------
def _full_disk(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def _permission_denied(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


UNWRITABLE = [
    (["train", "--config", "{tmp}/tiny.json", "--out", "{tmp}/new-run"], "train"),
    (["eval", "{run}"], "eval"),
    (["export", "{run}", "--format", "onnx", "--out", "{tmp}/exported.onnx"], "export"),
    (["compare", "--config", "{tmp}/tiny.json", "--kinds", "lif", "--out", "{tmp}/new-cmp"], "compare"),
]


@pytest.mark.parametrize("failure", [_full_disk, _permission_denied], ids=["ENOSPC", "EACCES"])
@pytest.mark.parametrize("argv, command", UNWRITABLE, ids=[c for _, c in UNWRITABLE])
def test_a_write_that_fails_is_one_line_and_changes_no_existing_run(world, argv, command, failure, monkeypatch,
                                                                   capsys):
    """Every rename onto a final name fails (a full disk, a folder that refuses writes): one clear line, a
    non-zero exit, no traceback, and the finished run (and every other folder) exactly as before."""
    import json

    (world["tmp"] / "tiny.json").write_text(json.dumps(tiny_config(1)))
    before = _runs(world)
    monkeypatch.setattr("dendrix.files.os.replace", failure)
    code = main([a.replace("/new-", f"/new{failure.__name__}-") for a in _fill(argv, world)])
    monkeypatch.undo()
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code not in (0, None), captured
    assert "Traceback" not in captured.err + captured.out
    assert lines and all(line.startswith(f"dendrix {command}") or "FAILED" in line for line in lines), captured.err
    assert any(("No space left" in line or "Permission denied" in line) for line in lines), captured.err
    after = _runs(world)
    assert all(after[name] == files for name, files in before.items()), "an existing folder changed"


@pytest.mark.parametrize("argv, command", [
    (["train", "--config", "{tmp}/tiny.json", "--out", "{file}/run"], "train"),
    (["compare", "--config", "{tmp}/tiny.json", "--kinds", "lif", "--out", "{file}/cmp"], "compare"),
    (["export", "{run}", "--format", "onnx", "--out", "{file}/model.onnx"], "export"),
    (["demo", "--kinds", "lif", "--epochs", "1", "--seeds", "1", "--out", "{file}/demo"], "demo"),
], ids=["train", "compare", "export", "demo"])
def test_a_file_where_a_folder_is_expected_is_one_line(world, argv, command, capsys):
    import json

    (world["tmp"] / "tiny.json").write_text(json.dumps(tiny_config(1)))
    before = _runs(world)
    code = main(_fill(argv, world))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1 and lines[0].startswith(f"dendrix {command}"), captured
    assert "Traceback" not in captured.err + captured.out and _runs(world) == before
