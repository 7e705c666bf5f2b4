"""Training-batch augmentation (data.augment), the speaker-held-out FSDD split (data.split) and make_loader's
DataLoader path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dendrix.data import DatasetError, SpikeAugment, TimeFirstDataLoader, get_dataset, make_loader
from dendrix.data.augment import check_augment
from dendrix.train.batches import Batches, dataset_options_for, open_dataset
from dendrix.train.config import ConfigError, resolve_config


def _spikes(T=30, B=6, C=12, p=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, C, generator=g) < p).float(), torch.arange(B) % 3


def test_time_shift_moves_each_sample_without_wrapping():
    x, y = _spikes()
    out, y2 = SpikeAugment(time_shift=4)(x, y, seed=1)
    assert torch.equal(y2, y)
    for b in range(x.shape[1]):
        matches = [s for s in range(-4, 5)
                   if torch.equal(out[:, b], torch.roll(x[:, b], s, 0) * _valid_time(x.shape[0], s))]
        assert matches, b  # sample b is x[:, b] moved by one shift in [-4, 4], zeros where it came from outside


def _valid_time(T, s):
    t = torch.arange(T) - s
    return ((t >= 0) & (t < T)).float().unsqueeze(1)


def test_channel_jitter_moves_channels_and_refuses_images():
    x, y = _spikes()
    out, _ = SpikeAugment(channel_jitter=2)(x, y, seed=3)
    for b in range(x.shape[1]):
        ok = False
        for s in range(-2, 3):
            c = torch.arange(x.shape[2]) - s
            valid = ((c >= 0) & (c < x.shape[2])).float()
            ok |= torch.equal(out[:, b], torch.roll(x[:, b], s, 1) * valid)
        assert ok, b
    with pytest.raises(DatasetError, match="channel_jitter"):
        SpikeAugment(channel_jitter=1)(torch.zeros(4, 2, 3, 5, 5), torch.zeros(2, dtype=torch.long))


def test_drop_and_insert_rates_and_binary_output():
    x, y = _spikes(T=200, B=8, C=50, p=0.3)
    dropped, _ = SpikeAugment(drop=0.25)(x, y)
    assert bool((dropped <= x).all())
    kept = float(dropped.sum() / x.sum())
    assert abs(kept - 0.75) < 0.03
    inserted, _ = SpikeAugment(insert=0.1)(x, y)
    assert bool((inserted >= x).all()) and set(inserted.unique().tolist()) <= {0.0, 1.0}
    new = float((inserted - x).sum() / (x == 0).sum())
    assert abs(new - 0.1) < 0.01


def test_mixup_gives_soft_targets_and_keeps_spikes():
    x, y = _spikes(B=16)
    out, target = SpikeAugment(mixup=0.4, num_classes=3)(x, y, seed=5, epoch=2, batch=7)
    assert target.shape == (16, 3)
    torch.testing.assert_close(target.sum(1), torch.ones(16))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    lam = float(target.max(1).values.min())
    assert 0.0 <= lam <= 1.0
    analog, _ = SpikeAugment(mixup=0.4, num_classes=3, spikes=False)(x * 0.5 + 0.1, y)
    assert analog.min() >= 0.1 - 1e-6
    with pytest.raises(DatasetError, match="number of classes"):
        SpikeAugment(mixup=0.2)


def test_augmentation_is_seeded_by_seed_epoch_and_batch():
    x, y = _spikes()
    aug = SpikeAugment(time_shift=3, drop=0.2, insert=0.05, mixup=0.5, num_classes=3)
    a = aug(x, y, seed=1, epoch=2, batch=3)
    b = aug(x, y, seed=1, epoch=2, batch=3)
    c = aug(x, y, seed=1, epoch=3, batch=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_check_augment_names_the_bad_key():
    assert check_augment({"drop": 0.1})["time_shift"] == 0
    with pytest.raises(DatasetError, match="no option 'shift'"):
        check_augment({"shift": 2})
    with pytest.raises(DatasetError, match=r"data.augment.drop must be a probability"):
        check_augment({"drop": 1.5})
    with pytest.raises(DatasetError, match="time_shift must be an integer"):
        check_augment({"time_shift": 1.5})
    with pytest.raises(ConfigError, match="data.augment"):
        resolve_config(None, ["data.augment={insert: -1}"])


def test_batches_augment_only_shuffled_training_passes():
    ds = get_dataset("fsdd", split="val")
    cfg = resolve_config(None, ["data.augment={drop: 0.5}"])
    train = Batches.from_config(ds, cfg["data"], "cpu", 32, train=True)
    plain = Batches.from_config(ds, cfg["data"], "cpu", 32)
    assert train.augment is not None and plain.augment is None
    x_aug, _ = next(iter(train.iterate(shuffle=True, seed=0, epoch=0)))
    x_ref, _ = next(iter(plain.iterate(shuffle=True, seed=0, epoch=0)))
    assert 0.4 < float(x_aug.sum() / x_ref.sum()) < 0.6  # same samples, half the spikes
    x_eval, _ = next(iter(train.iterate()))  # evaluation passes (no shuffle) are never augmented
    assert torch.equal(x_eval, next(iter(plain.iterate()))[0])


def test_a_run_with_mixup_trains(tmp_path):
    from dendrix.train.trainer import Trainer

    cfg = resolve_config(None, ["train.epochs=1", "train.progress=false", "device=cpu", "model.hidden=[16]",
                                "data.augment={mixup: 0.2, time_shift: 2}", "train.select=none"])
    trainer = Trainer(cfg, tmp_path / "run", log=None)
    assert trainer.train_data.augment is not None and trainer.train_data.augment.mixup == 0.2
    result = trainer.fit()
    assert 0.0 <= result["test_accuracy"] <= 1.0 and np.isfinite(trainer.history[-1]["train_loss"])


def test_speaker_split_holds_out_a_speaker():
    cfg = resolve_config(None, ["data.split=speaker"])
    opts = dataset_options_for(cfg["data"])
    assert opts == {"split_mode": "speaker", "test_speaker": "george"}
    test = open_dataset(cfg["data"], "test", cache=False)
    train = open_dataset(cfg["data"], "train", cache=False)
    assert set(test.meta["speaker"].tolist()) == {"george"} and "george" not in set(train.meta["speaker"].tolist())
    other = resolve_config(None, ["data.split=speaker", "data.options={test_speaker: theo}"])
    assert set(open_dataset(other["data"], "test", cache=False).meta["speaker"].tolist()) == {"theo"}
    with pytest.raises(DatasetError, match="speaker splits"):
        dataset_options_for({"name": "xor", "split": "speaker"})
    with pytest.raises(DatasetError, match="conflicts"):
        dataset_options_for({"name": "fsdd", "split": "speaker", "options": {"split_mode": "official"}})
    with pytest.raises(ConfigError, match="data.split"):
        resolve_config(None, ["data.split=speakers"])


def test_make_loader_dataloader_matches_the_in_memory_path():
    ds = get_dataset("fsdd", split="val")
    fast = make_loader(ds, 50, shuffle=True, seed=4)
    real = make_loader(ds, 50, shuffle=True, seed=4, num_workers=2)
    assert isinstance(real, torch.utils.data.DataLoader) and isinstance(real, TimeFirstDataLoader)
    assert len(real) == len(fast)
    for _ in range(2):  # two epochs: the order changes with the epoch in both
        for (xa, ya), (xb, yb) in zip(fast, real):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    real.set_epoch(0)
    fast.set_epoch(0)
    assert torch.equal(next(iter(real))[1], next(iter(fast))[1])


def test_make_loader_dataloader_of_plain_items_and_pin_memory_flag():
    items = [(np.full((5, 3), i, dtype=np.float32), i % 2) for i in range(7)]
    loader = make_loader(items, 3, num_workers=1, pin_memory=torch.cuda.is_available())
    assert isinstance(loader, torch.utils.data.DataLoader)
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(5, 3, 3), (5, 3, 3), (5, 1, 3)]
    assert batches[2][1].tolist() == [0]
    with pytest.raises(ValueError, match="num_workers"):
        make_loader(items, 3, num_workers=-1)


def test_batches_not_in_memory_use_the_dataloader():
    ds = get_dataset("fsdd", split="val")
    streamed = Batches(ds, 64, in_memory=False, num_workers=1)
    held = Batches(ds, 64)
    for (xa, ya), (xb, yb) in zip(streamed.iterate(), held.iterate()):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    shuffled = [y for _, y in streamed.iterate(shuffle=True, seed=2, epoch=1)]
    assert sorted(torch.cat(shuffled).tolist()) == sorted(held.y.tolist())
