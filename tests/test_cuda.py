"""CUDA against CPU: every registered kind inside a real model, the DLIF bilinear engine, LIF, and the trainer.

Skipped as a whole without CUDA. The same weights (``copy.deepcopy`` of a CPU-built model) run on both devices in
float64, where rounding differences between cuBLAS/cuFFT/cuSOLVER and the CPU libraries are ~1e-15, far too
small to move a membrane across its threshold: outputs and gradients must agree to tight tolerances. A float32
pass checks that the everyday dtype runs (finite outputs and gradients) and fires the same hidden spikes.

    python -m pytest -q tests/test_cuda.py
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import dendrix
from dendrix.data import DatasetInfo
from dendrix.models import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")

KINDS = ["lif", "plif", "alif", "dalif", "rf", "brf", "drf", "mmdend", "pmsn", "psn", "masked_psn",
         "sliding_psn", "dlif", "dgn", "sdgn"]
T, B, C_IN, CLASSES = 12, 3, 8, 3
INFO = DatasetInfo("synthetic", C_IN, CLASSES, T)
# float64 CPU vs CUDA: the same spikes, so only rounding of smooth quantities differs.
TIGHT = dict(rtol=1e-7, atol=1e-9)


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    return torch.device("cuda")


def _spikes(seed: int = 1, rate: float = 0.4, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, C_IN, generator=g) < rate).to(dtype)


def _labels() -> torch.Tensor:
    return torch.arange(B) % CLASSES


def _model(config: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(config, INFO)


def _hidden_spikes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with dendrix.record(model, states=False) as rec:  # CPU copies
        model(x)
    return rec.spikes


def _forward_backward(model: torch.nn.Module, x: torch.Tensor):
    """Logits, and the gradients of a cross-entropy loss for every parameter (by name) and for the input."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    logits = model(x)
    F.cross_entropy(logits, _labels().to(logits.device)).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach(), grads, x.grad


def _compare_devices(config: dict, device: torch.device) -> None:
    """float64: the same model (copied weights) on the CPU and on ``device`` gives the same logits and gradients."""
    cpu_model = _model(config).double()
    dev_model = copy.deepcopy(cpu_model).to(device)
    x = _spikes()
    spikes = _hidden_spikes(cpu_model, x)
    assert spikes and any(s.abs().sum() > 0 for s in spikes.values()), \
        f"{config}: the hidden layers are silent, the comparison would be vacuous"

    logits, grads, gx = _forward_backward(cpu_model, x)
    d_logits, d_grads, d_gx = _forward_backward(dev_model, x.to(device))
    assert d_logits.device.type == device.type
    torch.testing.assert_close(d_logits.cpu(), logits, **TIGHT)
    assert d_grads.keys() == grads.keys()
    missing = [n for n, g in d_grads.items() if g is None and grads[n] is not None]
    assert not missing, f"{config}: no gradient on {device} for {missing}"
    for name, g in grads.items():
        if g is None:
            continue
        assert d_grads[name].device.type == device.type, f"{name}: gradient on {d_grads[name].device}"
        torch.testing.assert_close(d_grads[name].cpu(), g, **TIGHT, msg=lambda m: f"{config} grad {name}: {m}")
    torch.testing.assert_close(d_gx.cpu(), gx, **TIGHT)


def _float32_smoke(config: dict, device: torch.device) -> None:
    """float32 on ``device``: finite logits and gradients, and the hidden spikes of the CPU run (>= 99 % equal)."""
    cpu_model = _model(config)
    dev_model = copy.deepcopy(cpu_model).to(device)
    x = _spikes(dtype=torch.float32)
    logits, grads, _ = _forward_backward(dev_model, x.to(device))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    bad = [n for n, g in grads.items() if g is None or not torch.isfinite(g).all()]
    assert not bad, f"{config}: missing or non-finite float32 gradients on {device}: {bad}"
    ref, got = _hidden_spikes(cpu_model, x), _hidden_spikes(dev_model, x.to(device))
    assert ref.keys() == got.keys()
    for name in ref:
        agree = (ref[name] == got[name]).double().mean().item()
        assert agree >= 0.99, f"{config} layer {name}: only {agree:.3f} of float32 spikes agree with the CPU"


# -- every registered kind in the MLP of build_model ------------------------------------------------------------

def test_every_kind_is_covered():
    assert set(KINDS) <= set(dendrix.available())


@pytest.mark.parametrize("kind", KINDS)
def test_mlp_float64_matches_cpu(kind, cuda):
    _compare_devices({"arch": "mlp", "kind": kind, "hidden": [16], "weight_gain": 4.0}, cuda)


@pytest.mark.parametrize("kind", KINDS)
def test_mlp_float32_runs(kind, cuda):
    _float32_smoke({"arch": "mlp", "kind": kind, "hidden": [16], "weight_gain": 4.0}, cuda)


@pytest.mark.parametrize("kind", ["lif", "alif", "rf", "drf", "dlif", "dgn", "sdgn"])
def test_recurrent_mlp_float64_matches_cpu(kind, cuda):
    # lif/alif/rf/drf: RecurrentSpikingLayer (step loop); dlif: the concat path; dgn/sdgn: DGN's own recurrence.
    _compare_devices({"arch": "mlp", "kind": kind, "hidden": [16], "recurrent": True, "weight_gain": 4.0}, cuda)


@pytest.mark.parametrize("config", [
    {"arch": "seqimage", "kind": "lif", "conv_channels": [8], "hidden": [16], "weight_gain": 4.0},
    {"arch": "sequence", "kind": "drf", "d_model": 16, "depth": 1, "dropout": 0.0},
], ids=["seqimage-lif", "sequence-drf"])
def test_other_architectures_float64_match_cpu(config, cuda):
    _compare_devices(config, cuda)


# -- engines ------------------------------------------------------------------------------------------------------

def _layout_on(layout, device: torch.device):
    """The pair layout with its index tensors on ``device`` (its own ``to`` if it has one)."""
    if hasattr(layout, "to"):
        return layout.to(device)
    moved = {f.name: getattr(layout, f.name).to(device) for f in dataclasses.fields(layout)
             if isinstance(getattr(layout, f.name), torch.Tensor)}
    return dataclasses.replace(layout, **moved)


@pytest.mark.parametrize("n, out, density", [(12, 5, 0.3), (64, 48, 0.1), (30, 7, 1.0), (40, 30, 0.55)])
def test_bilinear_torch_engine_on_cuda_matches_reference(n, out, density, cuda):
    from dendrix.ops.bilinear import bilinear_form, build_layout

    layout = build_layout(n, out, density, generator=torch.Generator().manual_seed(n))
    g = torch.Generator().manual_seed(out)
    s = (torch.rand(57, n, generator=g) < 0.3).double().requires_grad_(True)
    values = torch.randn(layout.nnz, generator=g, dtype=torch.float64).requires_grad_(True)
    s_d = s.detach().to(cuda).requires_grad_(True)
    v_d = values.detach().to(cuda).requires_grad_(True)

    ref = bilinear_form(s, values, layout, backend="reference")
    got = bilinear_form(s_d, v_d, _layout_on(layout, cuda), backend="torch")
    assert got.device.type == cuda.type
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    gs, gv = torch.autograd.grad(ref, (s, values), upstream)
    gs_d, gv_d = torch.autograd.grad(got, (s_d, v_d), upstream.to(cuda))
    torch.testing.assert_close(gs_d.cpu(), gs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gv_d.cpu(), gv, rtol=1e-12, atol=1e-12)

    # the reference on the GPU agrees too, and float32 stays within float32 rounding
    ref_d = bilinear_form(s_d.detach(), v_d.detach(), _layout_on(layout, cuda), backend="reference")
    torch.testing.assert_close(ref_d.cpu(), ref.detach(), rtol=1e-12, atol=1e-12)
    got32 = bilinear_form(s_d.detach().float(), v_d.detach().float(), _layout_on(layout, cuda), backend="torch")
    torch.testing.assert_close(got32.cpu().double(), ref.detach(), rtol=1e-5, atol=1e-4)


def test_bilinear_numba_backend_refuses_cuda_tensors(cuda):
    from dendrix.ops.bilinear import bilinear_form, build_layout

    layout = build_layout(6, 4, 0.5, generator=torch.Generator().manual_seed(0))
    s = torch.ones(3, 6, device=cuda)
    with pytest.raises((ValueError, RuntimeError), match="numba"):
        bilinear_form(s, torch.zeros(layout.nnz, device=cuda), _layout_on(layout, cuda), backend="numba")


@pytest.mark.parametrize("v_reset", [0.0, None], ids=["hard", "soft"])
@pytest.mark.parametrize("backend", ["fused", "auto"])
def test_lif_engine_on_cuda_matches_cpu_reference(backend, v_reset, cuda):
    from dendrix.ops.lif import lif_sequence

    g = torch.Generator().manual_seed(3)
    x = (torch.randn(40, 4, 9, generator=g, dtype=torch.float64) + 0.6).requires_grad_(True)
    decay = torch.full((9,), 0.4, dtype=torch.float64, requires_grad=True)
    v0 = torch.zeros(4, 9, dtype=torch.float64)
    x_d, decay_d = (t.detach().to(cuda).requires_grad_(True) for t in (x, decay))
    ref = lif_sequence(x, v0, decay, v_reset=v_reset, backend="reference")
    got = lif_sequence(x_d, v0.to(cuda), decay_d, v_reset=v_reset, backend=backend)
    assert ref[0].sum() > 0
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.detach().cpu(), b.detach(), rtol=1e-10, atol=1e-12)
    weights = torch.randn(ref[1].shape, generator=g, dtype=torch.float64)
    loss = (ref[0] * weights).sum() + ref[1].sum() + ref[2].sum()
    loss_d = (got[0] * weights.to(cuda)).sum() + got[1].sum() + got[2].sum()
    for a, b in zip(torch.autograd.grad(loss_d, (x_d, decay_d)), torch.autograd.grad(loss, (x, decay))):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-10)


# -- training on the GPU ------------------------------------------------------------------------------------------

class _Head(torch.utils.data.Dataset):
    """The first ``n`` samples of a dendrix data set (keeps its ``info``)."""

    def __init__(self, dataset, n: int):
        self.dataset, self.n, self.info = dataset, min(n, len(dataset)), dataset.info

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.dataset[i]


def test_trainer_two_steps_on_cuda_and_load_run_on_both_devices(tmp_path, monkeypatch, cuda):
    import dendrix.data
    from dendrix.train import Trainer, load_run, resolve_config

    real_get_dataset = dendrix.data.get_dataset
    monkeypatch.setattr(dendrix.data, "get_dataset",
                        lambda name, split="train", **kw: _Head(real_get_dataset(name, split=split, **kw), 64))
    cfg = resolve_config({"device": str(cuda), "deterministic": False,
                          "data": {"name": "fsdd", "batch_size": 32, "eval_batch_size": 64},
                          "model": {"kind": "lif", "hidden": [32], "weight_gain": 3.0},
                          "train": {"epochs": 1, "lr": 0.02, "progress": False}})
    trainer = Trainer(cfg, tmp_path / "run", log=None)
    assert trainer.steps_per_epoch == 2
    assert all(p.device.type == cuda.type for p in trainer.model.parameters())
    result = trainer.fit()
    assert len(trainer.history) == 1 and math.isfinite(trainer.history[0]["train_loss"])
    assert 0.0 <= result["test_accuracy"] <= 1.0 and math.isfinite(result["test_loss"])
    assert (tmp_path / "run" / "result.json").exists()

    x, _ = next(iter(load_run(tmp_path / "run", device="cpu").loader("test")))
    logits = {}
    for dev in ("cpu", str(cuda)):
        run = load_run(tmp_path / "run", device=dev)
        assert all(p.device == torch.device(dev) or p.device.type == torch.device(dev).type
                   for p in run.model.parameters())
        with torch.no_grad():
            logits[dev] = run.model.double()(x.double().to(dev)).cpu()
    torch.testing.assert_close(logits[str(cuda)], logits["cpu"], **TIGHT)


# -- analysis on the GPU ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lif", "dlif", "dgn", "mmdend"])
def test_quick_evaluation_on_cuda_matches_cpu(kind, cuda):
    from dendrix.analysis.summary import quick_evaluation

    cpu_model = _model({"arch": "mlp", "kind": kind, "hidden": [16], "weight_gain": 4.0}).double()
    dev_model = copy.deepcopy(cpu_model).to(cuda)
    g = torch.Generator().manual_seed(5)
    batch = [((torch.rand(T, 8, C_IN, generator=g) < 0.4).double(), torch.arange(8) % CLASSES)]
    ref = quick_evaluation(cpu_model, batch, seed=0)
    got = quick_evaluation(dev_model, batch, seed=0)  # batches are moved to the model's device
    assert got["energy_uj"] == pytest.approx(ref["energy_uj"], rel=1e-9)
    assert got["clean_accuracy"] == pytest.approx(ref["clean_accuracy"], abs=1e-12)
    # FGSM picks the top-scoring bits; an exact tie of float64 gradient scores may break differently on the GPU
    assert got["overall_robustness"] == pytest.approx(ref["overall_robustness"], abs=1 / 8 + 1e-12)


def test_dgn_noise_simulation_on_cuda_matches_cpu(cuda):
    from dendrix.analysis.dgn_theory import NoiseInputs, simulate_variance

    p = NoiseInputs(torch.tensor([[0.5, 0.3], [0.2, 0.1]]), torch.tensor([[0.2, 0.1], [0.3, 0.05]]),
                    torch.tensor([1.0, 2.0]), torch.tensor([0.3, 0.2]), 1.0)
    p_dev = NoiseInputs(*(t.to(cuda) for t in (p.weight, p.conductance, p.mu, p.sigma)), 1.0)
    kw = dict(dt=4e-3, burn_in=1.0, duration=2.0, paths=100, seed=0)
    (mean, var), (mean_d, var_d) = simulate_variance(p, **kw), simulate_variance(p_dev, **kw)
    assert mean_d.device.type == cuda.type
    torch.testing.assert_close(mean_d.cpu(), mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var_d.cpu(), var, rtol=1e-8, atol=1e-12)


# -- torch.compile(fullgraph=True) on the GPU, the loop of test_compile.py -----------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_compiles_fullgraph_on_cuda(kind, cuda):
    from compile_support import check_compiled_matches_eager, layer_for, spike_input

    # float64: MMDEND compiles the plain form of its chunked kernel (equal up to rounding, see test_compile.py)
    layer = layer_for(kind).to(cuda).double()
    y = check_compiled_matches_eager(layer, spike_input(cuda, torch.float64), rtol=1e-7, atol=1e-10)
    assert y.abs().sum() > 0, f"{kind}: the layer is silent on {cuda}, the comparison would be vacuous"


@pytest.mark.parametrize("kind", ["lif", "dgn", "dlif"])
def test_inductor_compiles_representative_kinds_on_cuda(kind, cuda):
    from compile_support import check_compiled_matches_eager, layer_for, spike_input

    check_compiled_matches_eager(layer_for(kind).to(cuda), spike_input(cuda), backend="inductor",
                                 rtol=1e-5, atol=1e-5)
