"""SHD/SSC loaders on tiny HDF5 files written in the published format, and the checksum-verified download."""

from __future__ import annotations

import gzip
import hashlib

import h5py
import numpy as np
import pytest

from dendrix.data import DatasetError, get_dataset
from dendrix.data.download import download_dataset, fetch, gunzip_verified, read_manifest


def _write_h5(path, times, units, labels):
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16))
        u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (ti, ui) in enumerate(zip(times, units)):
            t[i], u[i] = np.asarray(ti, np.float16), np.asarray(ui, np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), np.uint16))


def _random_samples(n, classes, seed):
    rng = np.random.default_rng(seed)
    times, units = [], []
    for _ in range(n):
        k = int(rng.integers(5, 40))
        times.append(np.sort(rng.uniform(0, 1.3, k)))
        units.append(rng.integers(0, 700, k))
    return times, units, np.arange(n) % classes


@pytest.fixture()
def shd_root(tmp_path):
    folder = tmp_path / "shd"
    folder.mkdir()
    # sample 0: spikes at known places; float16 times as in the published files
    times0, units0 = [0.0, 0.0021, 0.0039, 0.5, 0.999, 1.2], [0, 0, 5, 699, 10, 3]
    t, u, y = _random_samples(39, 20, 0)
    _write_h5(folder / "shd_train.h5", [times0] + t, [units0] + u, np.arange(40) % 20)
    t, u, y = _random_samples(20, 20, 1)
    _write_h5(folder / "shd_test.h5", [times0] + t[1:], [units0] + u[1:], y)
    return tmp_path


def _expected_counts(times, units, dt, steps, channels, pool=1):
    x = np.zeros((steps, channels))
    for t, u in zip(np.asarray(times, np.float16).astype(np.float64), units):
        b = int(np.floor(t / dt))
        if b < steps:
            x[b, u // pool] += 1
    return x


def test_shd_4ms_binary(shd_root):
    ds = get_dataset("shd", split="test", root=shd_root)
    assert (ds.info.num_inputs, ds.info.num_classes, ds.info.time_steps) == (700, 20, 250)
    x, y = ds[0]
    expected = np.minimum(_expected_counts([0.0, 0.0021, 0.0039, 0.5, 0.999, 1.2], [0, 0, 5, 699, 10, 3],
                                           0.004, 250, 700), 1)
    assert np.array_equal(x.numpy(), expected)
    assert x[0, 0] == 1 and x[:, 3].sum() == 0  # two spikes in bin 0 clipped to 1; 1.2 s beyond 1 s dropped


def test_shd_counts_1ms_and_pooling(shd_root):
    counts = get_dataset("shd", split="test", root=shd_root, binning="counts")
    assert counts.info.time_steps == 100
    x, _ = counts[0]
    assert x[0, 0] == 2 and x.sum() == 6  # 1.4 s window keeps the spike at 1.2 s
    one_ms = get_dataset("shd", split="test", root=shd_root, binning="1ms")
    assert one_ms.info.time_steps == 1000 and one_ms[0][0].sum() == 5
    pooled = get_dataset("shd", split="test", root=shd_root, binning="counts", pool=10)
    assert pooled.info.num_inputs == 70
    xp, _ = pooled[0]
    assert xp[0, 0] == 3 and xp[:, 69].sum() == 1 and xp[:, 1].sum() == 1
    times, units, _ = _random_samples(20, 20, 1)
    batch, labels = pooled.get_batch([3, 1])
    assert batch.shape == (2, 100, 70) and labels.tolist() == [pooled.labels[3], pooled.labels[1]]
    ref = _expected_counts(times[3], units[3], 1.4 / 100, 100, 70, pool=10)
    assert np.array_equal(batch[0].numpy(), ref)


def test_shd_validation_split(shd_root):
    train, val = get_dataset("shd", split="train", root=shd_root), get_dataset("shd", split="val", root=shd_root)
    assert len(train) + len(val) == 40 and len(val) == 20  # >= 1 per class of 2 members
    full = get_dataset("shd", split="train_full", root=shd_root)
    assert len(full) == 40


def test_ssc_uses_its_valid_file(tmp_path):
    for part, n in (("train", 35), ("valid", 10), ("test", 7)):
        t, u, _ = _random_samples(n, 35, n)
        _write_h5(tmp_path / f"ssc_{part}.h5", t, u, np.arange(n) % 35)
    assert [len(get_dataset("ssc", split=s, root=tmp_path)) for s in ("train", "val", "test", "train_full")] == \
        [35, 10, 7, 45]
    assert get_dataset("ssc", split="test", root=tmp_path).info.num_classes == 35


def test_missing_corrupt_and_gz_files(tmp_path):
    with pytest.raises(DatasetError, match="dendrix data download shd"):
        get_dataset("shd", split="test", root=tmp_path)
    (tmp_path / "shd_test.h5").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="corrupt"):
        get_dataset("shd", split="test", root=tmp_path)
    (tmp_path / "shd_test.h5").unlink()
    t, u, y = _random_samples(4, 20, 2)
    _write_h5(tmp_path / "plain.h5", t, u, y)
    with gzip.open(tmp_path / "shd_test.h5.gz", "wb") as f:
        f.write((tmp_path / "plain.h5").read_bytes())
    assert len(get_dataset("shd", split="test", root=tmp_path)) == 4
    (tmp_path / "bad.h5.gz").write_bytes(gzip.compress(b"x" * 1000)[:-8])
    with pytest.raises(DatasetError, match="not a valid gzip"):
        gunzip_verified(tmp_path / "bad.h5.gz")
    assert not (tmp_path / "bad.h5").exists()
    with h5py.File(tmp_path / "nolabels.h5", "w") as f:
        f.create_dataset("x", data=[1])
    (tmp_path / "shd").mkdir()
    (tmp_path / "nolabels.h5").rename(tmp_path / "shd" / "shd_train.h5")
    with pytest.raises(DatasetError, match="lacks the dataset"):
        get_dataset("shd", split="train", root=tmp_path)
    with pytest.raises(DatasetError, match="binning"):
        get_dataset("shd", split="test", root=tmp_path, binning="2ms")


def test_download_verifies_checksums(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    t, u, y = _random_samples(3, 20, 3)
    _write_h5(tmp_path / "src.h5", t, u, y)
    payload = gzip.compress((tmp_path / "src.h5").read_bytes())
    (server / "shd_test.h5.gz").write_bytes(payload)
    good = hashlib.md5(payload).hexdigest()
    (server / "md5sums.txt").write_text(f"{good}  shd_test.h5.gz\n")
    cache = tmp_path / "cache"
    paths = download_dataset("shd", root=cache, splits=["test"], base_url=server.as_uri() + "/")
    assert paths == [cache / "shd" / "shd_test.h5"]
    assert len(get_dataset("shd", split="test", root=cache)) == 3
    bad_manifest = tmp_path / "sums.txt"
    bad_manifest.write_text(f"{'0' * 32}  shd_test.h5.gz\n")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch((server / "shd_test.h5.gz").as_uri(), tmp_path / "other" / "shd_test.h5.gz", "0" * 32)
    assert not (tmp_path / "other" / "shd_test.h5.gz").exists()
    with pytest.raises(DatasetError, match="no entry"):
        (tmp_path / "sums2.txt").write_text(f"{good}  shd_train.h5.gz\n")
        download_dataset("shd", root=tmp_path / "c2", splits=["test"], checksums=tmp_path / "sums2.txt",
                         base_url=server.as_uri() + "/")
    assert read_manifest(bad_manifest) == {"shd_test.h5.gz": "0" * 32}
    (tmp_path / "junk.txt").write_text("not a manifest\n")
    with pytest.raises(DatasetError, match="expected '<md5> <file name>'"):
        read_manifest(tmp_path / "junk.txt")
