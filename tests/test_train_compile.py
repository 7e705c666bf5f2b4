"""The trainer's ``train.compile`` and ``train.precision`` keys: validation, and a compiled / bf16 training run."""

from __future__ import annotations

import math

import pytest
import torch

from dendrix.train import Trainer, load_run
from dendrix.train.config import ConfigError, resolve_config

from test_train import _cfg, patterns  # noqa: F401 - the fixture is used by name


@pytest.mark.parametrize("overrides, message", [
    (["train.compile=fast"], "train.compile must be one of False, True, default, reduce-overhead, max-autotune"),
    (["train.precision=fp16"], "train.precision must be one of fp32, bf16"),
])
def test_compile_and_precision_keys_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(None, overrides)


def test_defaults_are_eager_fp32():
    train = resolve_config(None)["train"]
    assert train["compile"] is False and train["precision"] == "fp32"


def test_compiled_bf16_training_runs_and_checkpoints_the_plain_model(patterns, tmp_path, monkeypatch):
    calls = []
    real_compile = torch.compile

    def recording_compile(module, mode=None, **kw):  # aot_eager: the capture without minutes of C++ codegen
        calls.append(mode)
        return real_compile(module, mode=None, backend="aot_eager", fullgraph=True, **kw)

    monkeypatch.setattr(torch, "compile", recording_compile)
    torch._dynamo.reset()
    trainer = Trainer(_cfg(epochs=1, compile="max-autotune", precision="bf16"), tmp_path / "run", log=None)
    assert calls == ["max-autotune"] and trainer.net is not trainer.model
    result = trainer.fit()
    assert math.isfinite(trainer.history[-1]["train_loss"]) and 0 <= result["test_accuracy"] <= 1
    # checkpoints hold the plain model's names (no "_orig_mod." of the compiled wrapper): loadable eagerly
    run = load_run(tmp_path / "run")
    assert run.model.state_dict().keys() == trainer.model.state_dict().keys()
