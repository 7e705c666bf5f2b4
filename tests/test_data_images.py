"""Sequential images from tiny files in the exact MNIST idx and CIFAR pickle formats; digits from scikit-learn."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from dendrix.data import DatasetError, get_dataset
from dendrix.data.images import mnist_permutation, read_idx


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    return struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(">u1" if code == 0x08 else ">i4").tobytes()


@pytest.fixture()
def mnist_root(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n, gz in (("train", 30, True), ("t10k", 6, False)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for name, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = _idx_bytes(arr)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return tmp_path


def test_read_idx_roundtrip_and_errors(tmp_path):
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(arr, 0x0C))
    assert np.array_equal(read_idx(tmp_path / "a"), arr)
    (tmp_path / "b").write_bytes(_idx_bytes(arr, 0x0C)[:-3])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetError, match="magic"):
        read_idx(tmp_path / "c")


def test_smnist_pixel_and_column(mnist_root):
    test_images = read_idx(mnist_root / "mnist" / "t10k-images-idx3-ubyte")
    pix = get_dataset("smnist", split="test", root=mnist_root)
    assert (pix.info.time_steps, pix.info.num_inputs, pix.info.input_kind) == (784, 1, "analog")
    x, y = pix[2]
    assert y == 2 and torch.allclose(x[:, 0], torch.from_numpy(test_images[2].reshape(-1) / 255.0).float())
    col = get_dataset("smnist", split="test", root=mnist_root, mode="column")
    xc, _ = col[2]
    assert xc.shape == (28, 28)
    assert torch.allclose(xc[5], torch.from_numpy(test_images[2][:, 5] / 255.0).float())  # step 5 = column 5
    assert len(get_dataset("smnist", split="train", root=mnist_root)) + \
        len(get_dataset("smnist", split="val", root=mnist_root)) == 30


def test_psmnist_fixed_permutation(mnist_root):
    images = read_idx(mnist_root / "mnist" / "t10k-images-idx3-ubyte")
    perm = mnist_permutation(0)
    assert sorted(perm.tolist()) == list(range(784)) and not np.array_equal(perm, np.arange(784))
    assert np.array_equal(perm, mnist_permutation(0)) and not np.array_equal(perm, mnist_permutation(1))
    x, _ = get_dataset("psmnist", split="test", root=mnist_root)[0]
    assert torch.allclose(x[:, 0], torch.from_numpy(images[0].reshape(-1)[perm] / 255.0).float())


def test_missing_mnist_says_where(tmp_path):
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.*not found"):
        get_dataset("smnist", root=tmp_path)


def _cifar(tmp_path, classes):
    rng = np.random.default_rng(classes)
    if classes == 10:
        folder = tmp_path / "cifar-10-batches-py"
        names, key = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels"
    else:
        folder = tmp_path / "cifar-100-python"
        names, key = ["train", "test"], "fine_labels"
    folder.mkdir()
    for name in names:
        n = 20 if classes == 100 and name == "train" else 4
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 key.encode(): [int(v) for v in np.arange(n) % classes], b"batch_label": b"x"}
        if classes == 100:
            batch[b"coarse_labels"] = [0] * n
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def test_scifar10_pixel_and_column(tmp_path):
    folder = _cifar(tmp_path, 10)
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f)[b"data"].reshape(-1, 3, 32, 32)
    pix = get_dataset("scifar10", split="test", root=tmp_path)
    assert (pix.info.time_steps, pix.info.num_inputs, pix.info.num_classes) == (1024, 3, 10)
    x, _ = pix[1]
    assert torch.allclose(x[33], torch.from_numpy(raw[1][:, 1, 1] / 255.0).float())  # step 33 = row 1, col 1
    col = get_dataset("scifar10", split="test", root=tmp_path, mode="column")
    xc, _ = col[1]
    assert xc.shape == (32, 96)
    assert torch.allclose(xc[7], torch.from_numpy(raw[1][:, :, 7].reshape(-1) / 255.0).float())
    assert len(get_dataset("scifar10", split="train_full", root=tmp_path)) == 20


def test_scifar100_and_unsafe_pickle(tmp_path):
    _cifar(tmp_path, 100)
    ds = get_dataset("scifar100", split="test", root=tmp_path, mode="column")
    assert ds.info.num_classes == 100 and len(ds) == 4
    evil = tmp_path / "evil"
    (evil / "cifar-10-batches-py").mkdir(parents=True)

    class Boom:
        def __reduce__(self):
            return (print, ("executed",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(evil / "cifar-10-batches-py" / name, "wb") as f:
            pickle.dump({b"data": Boom(), b"labels": []}, f)
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        get_dataset("scifar10", root=evil)
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        get_dataset("scifar10", root=tmp_path / "nothing")


def test_digits_sequences():
    rows = get_dataset("digits", split="test")
    assert (rows.info.time_steps, rows.info.num_inputs, rows.info.input_kind) == (8, 8, "analog")
    sizes = [len(get_dataset("digits", split=s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 1797 and sizes[2] == 359
    assert torch.equal(rows.data, get_dataset("digits", split="test", seed=9).data)  # test part is fixed
    pix = get_dataset("digits", split="test", mode="pixel")
    assert pix.info.time_steps == 64 and torch.equal(pix[0][0].view(8, 8), rows[0][0])
    assert 0.0 <= float(rows.data.min()) and float(rows.data.max()) <= 1.0
