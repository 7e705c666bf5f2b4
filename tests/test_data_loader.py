"""get_dataset dispatch and the time-first loader: shapes, deterministic shuffling, samplers, errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler, TensorDataset

from dendrix.data import DatasetError, DatasetInfo, dataset_options, get_dataset, list_datasets, make_loader
from dendrix.data.base import ArrayDataset, stratified_holdout


def _toy(n=10, T=4, C=3):
    data = torch.arange(n * T * C, dtype=torch.float32).view(n, T, C)
    return ArrayDataset(data, torch.arange(n) % 2, DatasetInfo("toy", C, 2, T, "analog"))


def test_time_first_batches_and_sizes():
    ds = _toy()
    loader = make_loader(ds, 4)
    batches = list(loader)
    assert len(loader) == 3 == len(batches)
    x, y = batches[0]
    assert x.shape == (4, 4, 3) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x[:, 1], ds[1][0])  # [T, B, C]: batch item 1 is sample 1
    assert [b[1].numel() for b in batches] == [4, 4, 2]
    assert len(make_loader(ds, 4, drop_last=True)) == 2
    assert [b[1].numel() for b in make_loader(ds, 4, drop_last=True)] == [4, 4]


def _first_values(loader):
    return torch.cat([x[0, :, 0] for x, _ in loader]).tolist()  # identifies the items in batch order


def test_shuffle_is_deterministic_per_seed_and_epoch():
    ds = _toy(50)
    a, b = make_loader(ds, 8, shuffle=True, seed=1), make_loader(ds, 8, shuffle=True, seed=1)
    epoch0 = _first_values(a)
    assert _first_values(b) == epoch0
    assert _first_values(a) != epoch0  # the next epoch has another order
    assert _first_values(make_loader(ds, 8, shuffle=True, seed=2)) != epoch0
    a.set_epoch(0)
    assert _first_values(a) == epoch0  # resuming at an epoch replays its order
    assert sorted(epoch0) == sorted(ds.data[:, 0, 0].tolist())
    assert _first_values(make_loader(ds, 8)) == ds.data[:, 0, 0].tolist()


def test_distributed_sampler_partitions_the_data():
    ds = _toy(10)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        loader = make_loader(ds, 3, sampler=sampler)
        loader.set_epoch(2)
        seen += torch.cat([x[0, :, 0] for x, _ in loader]).tolist()
        assert len(loader) == 2
    assert sorted(seen) == sorted(ds.data[:, 0, 0].tolist())
    with pytest.raises(ValueError, match="sampler"):
        make_loader(ds, 3, shuffle=True, sampler=DistributedSampler(ds, num_replicas=2, rank=0))


def test_generic_dataset_of_items():
    ds = TensorDataset(torch.rand(5, 7, 2), torch.arange(5))
    x, y = next(iter(make_loader(ds, 5)))
    assert x.shape == (7, 5, 2) and torch.equal(y, torch.arange(5))


def test_errors_are_dataset_errors():
    with pytest.raises(DatasetError, match="unknown data set"):
        get_dataset("imagenet")
    with pytest.raises(DatasetError, match="no option 'colour'"):
        get_dataset("fsdd", colour=1)
    with pytest.raises(DatasetError, match="split must be one of"):
        get_dataset("fsdd", split="dev")
    assert issubclass(DatasetError, ValueError)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(_toy(), 0)
    with pytest.raises(ValueError, match="input_kind"):
        DatasetInfo("x", 1, 2, 3, "pixels")


def test_registry_lists_every_name_of_the_contract():
    names = {"fsdd", "shd", "ssc", "smnist", "psmnist", "scifar10", "scifar100", "digits", "xor", "correlation",
             "delayed_recall", "frequency"}
    assert names <= set(list_datasets())
    assert dataset_options("fsdd")["split_mode"] == "official"


def test_stratified_holdout():
    labels = torch.arange(100).remainder(4).numpy()
    keep, held = stratified_holdout(labels, 0.2, seed=0)
    assert len(held) == 20 and len(keep) == 80 and not set(keep) & set(held)
    assert sorted(torch.bincount(torch.as_tensor(labels[held])).tolist()) == [5, 5, 5, 5]
    with pytest.raises(DatasetError, match="val_fraction"):
        stratified_holdout(labels, 1.0, 0)


def test_window_counts_and_probe_command(capsys):
    import numpy as np

    from dendrix.cli import main
    from dendrix.cli.data import window_counts

    x = np.arange(2 * 5 * 3).reshape(2, 5, 3)
    w = window_counts(x, 2)  # windows [0, 2) and [2, 5)
    assert w.shape == (2, 6) and w[0].tolist() == [3, 5, 7, 27, 30, 33]
    assert main(["data", "probe", "digits", "--windows", "8"]) == 0
    acc = float(capsys.readouterr().out.strip().split("test accuracy ")[1].split()[0])
    assert acc > 0.9  # a linear model reads 8x8 digits well above chance (0.1)
