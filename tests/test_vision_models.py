"""Spiking vision networks: parameter counts of the published CIFAR architectures, every kind on feature maps,
DLIF's bilinear convolutions, tdBN, direct encoding, TET, the paper configs (one training step each on generated
data in the published formats) and conv energy counts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from event_files import aedat31_packet, random_events, write_aedat2, write_aedat31

from dendrix.analysis.energy import count_operations
from dendrix.data import get_dataset, make_loader
from dendrix.data.neuromorphic import CIFAR10_CLASSES
from dendrix.models import build_model, count_parameters
from dendrix.models.vision import (BilinearConv2d, SeqBatchNorm, SpikeDrivenTransformer, SpikingCNN, SpikingResNet,
                                   SpikingVGG)
from dendrix.models.vision.blocks import FeatureMapNeuron
from dendrix.train.config import resolve_config
from dendrix.train.trainer import _forward_loss, make_optimizer


def test_parameter_counts_match_the_published_cifar_figures():
    # kuangliu/pytorch-cifar ResNet18() and VGG('VGG11') for 10 classes: 11,173,962 and 9,231,114 (docs/vision.md)
    assert count_parameters(SpikingResNet(3, 10, depth=18)) == 11_173_962
    assert count_parameters(SpikingVGG(3, 10)) == 9_231_114


def test_resnet17_is_the_documented_reconstruction():
    # stem 64, 1/2/2/2 basic blocks of 64/128/256/512, FC 256 + neuron, FC (docs/vision.md): 17 weight layers as
    # tdBN counts ResNet-19, 11.23 M parameters for DVS-Gesture (2 polarities, 11 classes)
    net = SpikingResNet(2, 11, depth=17)
    assert count_parameters(net) == 11_228_427
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == 17 and [m.out_features for m in linears] == [256, 11]
    out = net(torch.rand(2, 3, 2, 32, 32).round())
    assert out.shape == (3, 11) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind,per_channel", [("lif", False), ("plif", False), ("plif", True), ("dalif", True),
                                              ("dlif", False), ("dgn", False), ("psn", False)])
def test_every_kind_runs_on_feature_maps(kind, per_channel):
    torch.manual_seed(0)
    model = SpikingCNN(1, 10, kind=kind, per_channel=per_channel, channels=(4, 6), time_steps=3)
    x = torch.rand(3, 2, 1, 8, 8)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    if per_channel:  # one parameter per channel, broadcast over H and W
        neuron = next(m for m in model.modules() if isinstance(m, FeatureMapNeuron))
        assert neuron.channel_last and all(p.shape == (4,) for p in neuron.neuron.parameters())


def test_static_images_are_direct_encoded_and_bad_input_is_named():
    model = SpikingCNN(1, 10, channels=(4, 4), time_steps=3).eval()
    img = torch.rand(2, 1, 8, 8)
    assert torch.allclose(model(img), model(img.expand(3, 2, 1, 8, 8)))
    with pytest.raises(ValueError, match="time_steps"):
        SpikingCNN(1, 10, channels=(4, 4))(img)
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.rand(3, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="bilinear_stages"):
        SpikingResNet(3, 10, kind="dlif", bilinear_stages=[5])
    with pytest.raises(ValueError, match="per_channel"):
        SpikingCNN(1, 10, kind="lif", per_channel=True)


def test_bilinear_stages_and_sparsity_where_the_paper_puts_them():
    resnet = SpikingResNet(3, 10, kind="dlif", block="preact", width=0.125)
    bil = [m for m in resnet.modules() if isinstance(m, BilinearConv2d)]
    assert len(bil) == 8 and {m.layer.sparsity for m in bil} == {0.0}  # stages 1-2, two blocks x two convs
    assert {m.in_channels for m in bil} == {8, 16}
    vgg = SpikingVGG(3, 100, kind="dlif", width=0.125, bilinear_sparsity=0.9)
    bil = [m for m in vgg.modules() if isinstance(m, BilinearConv2d)]
    assert len(bil) == 1 and bil[0].layer.sparsity == 0.9   # the stem (analog input) never gets the term
    assert not any(isinstance(m, BilinearConv2d) for m in SpikingResNet(3, 10, kind="lif", width=0.125).modules())


def test_tdbn_statistics_over_time_and_batch_and_threshold_scale():
    bn = SeqBatchNorm(3, alpha=0.5, v_threshold=2.0)
    assert torch.equal(bn.weight.data, torch.ones(3))
    x = torch.randn(4, 5, 3, 6, 6) * 3 + 1
    y = bn(x)
    assert torch.allclose(y.mean(dim=(0, 1, 3, 4)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 1, 3, 4), unbiased=False), torch.ones(3), atol=1e-3)
    assert torch.allclose(SeqBatchNorm(3, alpha=0.5, v_threshold=1.0).weight.data, torch.full((3,), 0.5))


def test_tet_loss_is_the_per_step_cross_entropy():
    model = SpikingCNN(1, 10, channels=(4, 4), readout="tet", time_steps=3)
    x, y = torch.rand(3, 4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss, logits = _forward_loss(model, model, x, y, 0.0)
    out = model(x, per_step=True)
    expected = sum(torch.nn.functional.cross_entropy(out[t], y) for t in range(3)) / 3
    assert torch.allclose(loss, expected, atol=1e-6) and torch.allclose(logits, out.mean(0))


def test_transformer_with_bilinear_fusion_head():
    model = SpikeDrivenTransformer(1, 10, kind="dlif", dim=8, depth=1, time_steps=2)
    assert model.bilinear_head and not SpikeDrivenTransformer(1, 10, dim=8, depth=1).bilinear_head
    out = model(torch.rand(2, 3, 1, 8, 8), per_step=True)
    assert out.shape == (2, 3, 10)
    out.sum().backward()


def test_conv_energy_counts_spikes_and_bilinear_pairs():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 1, 8, 8) * 6   # strong enough drive that both layers spike at init
    counts = {}
    for kind in ("lif", "dlif"):
        torch.manual_seed(0)
        model = SpikingCNN(1, 10, kind=kind, channels=(8, 6), time_steps=2, norm="none")
        report = count_operations(model, x)
        counts[kind] = report
    rows = {r.name: r for r in counts["dlif"].layers}
    bil_row = next(r for name, r in rows.items() if "features.4" in name)  # the second conv: bilinear
    assert bil_row.breakdown.get("pair_ac", 0.0) > 0 and "dynamics_mac" not in bil_row.breakdown
    lif_rows = {r.name: r for r in counts["lif"].layers}
    assert "pair_ac" not in lif_rows[bil_row.name].breakdown and lif_rows[bil_row.name].ac > 0
    # the bilinear conv's pair ACs equal a brute-force count of active channel pairs at every pixel
    model = SpikingCNN(1, 10, kind="dlif", channels=(8, 6), time_steps=2, norm="none").eval()
    with torch.no_grad():
        spikes = model.features[:4](model.encode(x))
    conv = model.features[4].module
    brute = 0.0
    rows_s = spikes.permute(0, 1, 3, 4, 2).reshape(-1, 8)
    pairs = conv.layer.layout.entries()
    for o, i, j in zip(*pairs):
        brute += float((rows_s[:, i] * rows_s[:, j]).sum())
    assert conv.operation_counts(spikes.flatten(0, 1), conv(spikes.flatten(0, 1)))["pair_ac"] == pytest.approx(brute)
    assert counts["dlif"].energy_pj > 0 and counts["lif"].energy_pj > 0


def _cifar_tree(root, classes):
    rng = np.random.default_rng(classes)
    folder = root / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if classes == 10 else ["train", "test"]
    key = b"labels" if classes == 10 else b"fine_labels"
    folder.mkdir()
    for name in names:
        n = 4
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: [int(v) for v in range(n)],
                 b"batch_label": b"x"}
        if classes == 100:
            batch[b"coarse_labels"] = [0] * n
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)


def _gesture_tree(root):
    rng = np.random.default_rng(6)
    base = root / "dvsgesture" / "DvsGesture"
    for user in ("user01", "user24"):
        events = random_events(rng, 300, 128, 128, 2_000_000, t_min=1000)
        write_aedat31(base / f"{user}_natural.aedat", [aedat31_packet(events)])
        (base / f"{user}_natural_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n1,100000,900000\n2,1000000,1900000\n")
    (base / "trials_to_train.txt").write_text("user01_natural.aedat\n")
    (base / "trials_to_test.txt").write_text("user24_natural.aedat\n")


def _cifar10dvs_tree(root):
    rng = np.random.default_rng(7)
    for cls in CIFAR10_CLASSES:
        for i in (0, 100):
            write_aedat2(root / "cifar10dvs" / cls / f"cifar10_{cls}_{i}.aedat",
                         random_events(rng, 40, 128, 128, 10**6))


PAPER_CONFIGS = {"cifar10_resnet18_dlif": (_cifar_tree, 10), "cifar100_vgg11_dlif": (_cifar_tree, 100),
                 "cifar10_resnet19_dalif": (_cifar_tree, 10), "dvsgesture_resnet19_dalif": (_gesture_tree, None),
                 "cifar10dvs_resnet19_dlif": (_cifar10dvs_tree, None),
                 "dvsgesture_resnet17_dlif": (_gesture_tree, None)}


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_paper_config_builds_and_trains_one_step(name, tmp_path):
    writer, classes = PAPER_CONFIGS[name]
    writer(tmp_path, classes) if classes else writer(tmp_path)
    cfg = resolve_config(name, [f"data.root={tmp_path}", "data.batch_size=2"])
    options = dict(cfg["data"]["options"])
    full = get_dataset(cfg["data"]["name"], split="test", root=tmp_path, **options)
    real = build_model(cfg["model"], full.info)   # the real architecture, built once (parameter count)
    assert count_parameters(real) > 1_000_000
    if "downsample" in options:
        options["downsample"] = 32   # tiny frames for the step (the architecture is the config's)
    if "time_steps" in options:
        options["time_steps"] = 2
    if "frames" in options:
        options["frames"] = 2
    train = get_dataset(cfg["data"]["name"], split="train_full", root=tmp_path, **options)
    model_cfg = {**cfg["model"], "width": 0.0625}
    if model_cfg["kind"] == "dlif":   # the torch pair engine: no numba compilation in a one-step test
        model_cfg["neuron"] = {**model_cfg.get("neuron", {}), "backend": "torch"}
    model = build_model(model_cfg, train.info)
    opt = make_optimizer(model, cfg["train"])
    x, y = next(iter(make_loader(train, 2, shuffle=True, seed=0)))
    assert x.dim() == 5 and x.shape[1] == 2
    before = [p.detach().clone() for p in model.parameters()]
    loss, _ = _forward_loss(model, model, x, y, 0.0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


def test_demo_vision_runs_on_a_tiny_subset(tmp_path):
    from dendrix.cli import main

    code = main(["demo-vision", "--subset", "40", "--epochs", "1", "--kinds", "lif,dlif", "--workers", "1",
                 "--quiet", "--out", str(tmp_path / "demo")])
    assert code == 0
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "| lif |" in report and "| dlif |" in report and "energy" in report


def test_crop_flip_augmentation_windows_and_train_only(tmp_path):
    from dendrix.data.vision import crop_flip

    images = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5) + 1
    out = crop_flip(images, torch.Generator().manual_seed(3), padding=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for n in range(2):   # every output is one 5x5 window of the padded image, flipped or not
        windows = [padded[n, :, dy:dy + 5, dx:dx + 5] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[n], w) or torch.equal(out[n], w.flip(-1)) for w in windows)
    _cifar_tree(tmp_path, 10)
    test_a = get_dataset("cifar10", split="test", root=tmp_path, time_steps=2)
    test_b = get_dataset("cifar10", split="test", root=tmp_path, time_steps=2)
    assert not test_a.augment and torch.equal(test_a.get_batch([0, 1])[0], test_b.get_batch([0, 1])[0])
    train = get_dataset("cifar10", split="train_full", root=tmp_path, time_steps=2)
    assert train.augment and train.info.input_shape == (3, 32, 32)
    x, _ = train.get_batch(range(len(train)))
    assert x.shape == (len(train), 2, 3, 32, 32) and torch.equal(x[:, 0], x[:, 1])   # direct: same at every step


@pytest.mark.parametrize("sparsity", [0.0, 0.9])
def test_bilinear_conv_matches_the_dense_formula(sparsity):
    torch.manual_seed(1)
    conv = BilinearConv2d(6, 5, sparsity=sparsity, seed=2, backend="torch")
    s = (torch.rand(3, 6, 7, 7) < 0.3).float()
    K = conv.layer.bilinear_matrix()   # [out, C, C], symmetric, zero diagonal
    dense = conv.conv(s) + torch.einsum("nchw,ocd,ndhw->nohw", s, K, s)
    assert torch.allclose(conv(s), dense, atol=1e-5)
