"""scikit-learn digits as images [T, B, 1, H, W]: splits, upsampling, direct and rate encoding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dendrix.data import DatasetError, dataset_options, get_dataset, list_datasets, make_loader
from dendrix.data.vision import StaticImageDataset, resize_images


def test_digits_images_direct_matches_the_sequence_data_set():
    rows = get_dataset("digits", split="test")
    img = get_dataset("digits_images", split="test", time_steps=3)
    assert len(img) == len(rows) == 359
    assert img.info.input_shape == (1, 8, 8) and img.info.num_inputs == 1 and img.info.time_steps == 3
    assert img.info.input_kind == "analog"
    x, y = img.get_batch(range(len(img)))
    xr, yr = rows.get_batch(range(len(rows)))
    assert torch.equal(y, yr)
    assert x.shape == (359, 3, 1, 8, 8)
    for t in range(3):
        assert torch.equal(x[:, t, 0], xr)                    # same images at every step
    for split in ("train", "val", "train_full"):
        assert len(get_dataset("digits_images", split=split)) == len(get_dataset("digits", split=split))
    xb, yb = next(iter(make_loader(img, 16)))
    assert xb.shape == (3, 16, 1, 8, 8) and yb.shape == (16,)


def test_digits_images_upsampled():
    base = get_dataset("digits_images", split="test", time_steps=1).get_batch(range(10))[0][:, 0]
    near = get_dataset("digits_images", split="test", time_steps=1, size=16).get_batch(range(10))[0][:, 0]
    assert near.shape == (10, 1, 16, 16)
    assert torch.equal(near[..., ::2, ::2], base) and torch.equal(near[..., 1::2, 1::2], base)
    bil = get_dataset("digits_images", split="test", time_steps=1, size=16, interpolation="bilinear")
    xb = bil.get_batch(range(10))[0][:, 0]
    torch.testing.assert_close(xb, F.interpolate(base, size=(16, 16), mode="bilinear", align_corners=False))
    assert float(xb.min()) >= 0.0 and float(xb.max()) <= 1.0
    assert bil.info.input_shape == (1, 16, 16)


def test_digits_images_rate_code_is_fixed_and_follows_the_pixels():
    a = get_dataset("digits_images", split="train", encoding="rate", time_steps=200, encoder_seed=1)
    b = get_dataset("digits_images", split="train", encoding="rate", time_steps=200, encoder_seed=1)
    c = get_dataset("digits_images", split="train", encoding="rate", time_steps=200, encoder_seed=2)
    xa, _ = a.get_batch(range(50))
    assert a.info.input_kind == "spikes" and set(xa.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(xa, b.get_batch(range(50))[0]) and not torch.equal(xa, c.get_batch(range(50))[0])
    assert torch.equal(xa, a.get_batch(range(50))[0])        # the same spikes on every pass
    pixels = get_dataset("digits_images", split="train", time_steps=1).get_batch(range(50))[0][:, 0]
    err = (xa.mean(1) - pixels).abs()
    assert float(err.max()) < 5 * (0.25 / 200) ** 0.5


def test_bad_options():
    with pytest.raises(DatasetError, match="size"):
        get_dataset("digits_images", size=4)
    with pytest.raises(DatasetError, match="interpolation"):
        get_dataset("digits_images", size=16, interpolation="bicubic")
    with pytest.raises(DatasetError, match="encoding"):
        get_dataset("digits_images", encoding="latency")
    with pytest.raises(DatasetError, match="time_steps"):
        get_dataset("digits_images", time_steps=0)
    with pytest.raises(DatasetError, match=r"\[N, C, H, W\]"):
        StaticImageDataset(torch.zeros(3, 8, 8), [0, 1, 2], "x", 3, 2)
    with pytest.raises(DatasetError, match="size"):
        resize_images(torch.zeros(1, 1, 8, 8), 0)


def test_registered_in_the_data_set_registry():
    names = list_datasets()
    for name in ("digits_images", "nmnist", "dvsgesture", "cifar10dvs"):
        assert name in names
    assert dataset_options("digits_images") == {"size": 8, "interpolation": "nearest", "encoding": "direct",
                                                "time_steps": 4, "encoder_seed": 0, "val_fraction": 0.1,
                                                "subset": None}
    assert set(dataset_options("dvsgesture")) == {"frames", "split_by", "downsample", "val_fraction", "cache"}
