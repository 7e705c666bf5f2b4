"""Event-camera readers, frame integration, caching and data sets, on small files in the published byte layouts
(written by tests/event_files.py with struct, independently of the numpy readers)."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch
from event_files import (aedat31_packet, random_events, write_aedat2, write_aedat31, write_nmnist_bin)

from dendrix.data import DatasetError, DatasetInfo, get_dataset, make_loader
from dendrix.data.download import download_event_dataset, extract_archive, fetch
from dendrix.data.events import (read_aedat2_dvs128, read_aedat31, read_gesture_labels, read_nmnist_bin,
                                 read_trials)
from dendrix.data.frames import cached_frames, events_to_frames
from dendrix.data.neuromorphic import CIFAR10_CLASSES


def _fields(events):
    return [(int(e["x"]), int(e["y"]), int(e["p"]), int(e["t"])) for e in events]


def _one_line_error(fn, *match):
    with pytest.raises(DatasetError) as info:
        fn()
    text = str(info.value)
    assert "\n" not in text
    for m in match:
        assert m in text
    return text


# -- readers -------------------------------------------------------------------------------------------------
def test_nmnist_bin_round_trip_with_overflow(tmp_path):
    rng = np.random.default_rng(0)
    events = random_events(rng, 50, 34, 34, 2**23 - 1)
    path = tmp_path / "00001.bin"
    write_nmnist_bin(path, events)
    assert path.stat().st_size == 5 * 50
    got = read_nmnist_bin(path)
    assert got.dtype.names == ("t", "x", "y", "p")
    assert _fields(got) == events
    # an overflow record (y = 240) is dropped and adds 2**13 us to every later event
    write_nmnist_bin(path, events[:10], overflow_after=4)
    got = read_nmnist_bin(path)
    expected = [(x, y, p, t + (8192 if i > 4 else 0)) for i, (x, y, p, t) in enumerate(events[:10])]
    assert _fields(got) == expected


def test_aedat31_round_trip_packets_overflow_invalid_and_other_types(tmp_path):
    rng = np.random.default_rng(1)
    first = random_events(rng, 20, 128, 128, 2**31 - 1)
    second = random_events(rng, 15, 128, 128, 1000)
    special = [(0, 0, 0, 5)] * 3  # eventType 0 (special events): skipped
    path = tmp_path / "user01_natural.aedat"
    write_aedat31(path, [aedat31_packet(first, invalid=frozenset({3, 7})), aedat31_packet(special, event_type=0),
                         aedat31_packet(second, overflow=2)])
    got = read_aedat31(path)
    expected = [e for i, e in enumerate(first) if i not in (3, 7)]
    expected += [(x, y, p, t + (2 << 31)) for x, y, p, t in second]
    assert _fields(got) == expected


def test_aedat2_dvs128_round_trip_drops_external_events(tmp_path):
    rng = np.random.default_rng(2)
    events = random_events(rng, 40, 128, 128, 2**32 - 1)
    path = tmp_path / "cifar10_cat_0.aedat"
    write_aedat2(path, events, external=3)
    got = read_aedat2_dvs128(path)
    assert _fields(got) == events


def test_label_csv_and_trials(tmp_path):
    csv = tmp_path / "user01_natural_labels.csv"
    csv.write_text("class,startTime_usec,endTime_usec\n1,100,200\n11,300,450\n")
    np.testing.assert_array_equal(read_gesture_labels(csv), [[0, 100, 200], [10, 300, 450]])
    trials = tmp_path / "trials_to_train.txt"
    trials.write_text("user01_natural.aedat\n\nuser02_led.aedat\n")
    assert read_trials(trials) == ["user01_natural.aedat", "user02_led.aedat"]
    csv.write_text("label,start,end\n1,2,3\n")
    _one_line_error(lambda: read_gesture_labels(csv), "class,startTime_usec,endTime_usec")
    csv.write_text("class,startTime_usec,endTime_usec\n12,100,200\n")
    _one_line_error(lambda: read_gesture_labels(csv), "line 2")


def test_corrupt_and_truncated_files_give_one_clear_error(tmp_path):
    rng = np.random.default_rng(3)
    events = random_events(rng, 10, 34, 34, 1000)
    p = tmp_path / "a.bin"
    write_nmnist_bin(p, events)
    p.write_bytes(p.read_bytes()[:-2])
    _one_line_error(lambda: read_nmnist_bin(p), "a.bin", "5-byte")
    _one_line_error(lambda: read_nmnist_bin(tmp_path / "missing.bin"), "missing.bin")

    a3 = tmp_path / "b.aedat"
    write_aedat31(a3, [aedat31_packet(random_events(rng, 10, 128, 128, 1000))])
    full = a3.read_bytes()
    a3.write_bytes(full[:-5])                                    # packet body cut short
    _one_line_error(lambda: read_aedat31(a3), "b.aedat", "packet")
    a3.write_bytes(full[:len(full) - 80 - 10])                   # packet header cut short
    _one_line_error(lambda: read_aedat31(a3), "truncated packet header")
    a3.write_bytes(full.replace(b"#!END-HEADER\r\n", b""))
    _one_line_error(lambda: read_aedat31(a3), "#!END-HEADER")
    a3.write_bytes(b"#!AER-DAT2.0\r\n" + full[14:])
    _one_line_error(lambda: read_aedat31(a3), "AER-DAT3.1")

    a2 = tmp_path / "c.aedat"
    write_aedat2(a2, random_events(rng, 10, 128, 128, 1000))
    a2.write_bytes(a2.read_bytes()[:-3])
    _one_line_error(lambda: read_aedat2_dvs128(a2), "c.aedat", "8-byte")


# -- frames --------------------------------------------------------------------------------------------------
def _events(rng, n, width, height, t_max):
    from dendrix.data.events import make_events

    ev = random_events(rng, n, width, height, t_max)
    return make_events([e[3] for e in ev], [e[0] for e in ev], [e[1] for e in ev], [e[2] for e in ev])


@pytest.mark.parametrize("split_by", ["time", "count"])
def test_frames_sum_to_event_counts(split_by):
    rng = np.random.default_rng(4)
    ev = _events(rng, 1001, 34, 34, 300_000)
    frames = events_to_frames(ev, 7, (34, 34), split_by)
    assert frames.shape == (7, 2, 34, 34)
    assert int(frames.sum()) == 1001
    for pol in (0, 1):
        assert int(frames[:, pol].sum()) == int((ev["p"] == pol).sum())
    # every pixel's total over time is its number of events
    per_pixel = np.zeros((2, 34, 34), dtype=np.int64)
    np.add.at(per_pixel, (ev["p"].astype(int), ev["y"].astype(int), ev["x"].astype(int)), 1)
    np.testing.assert_array_equal(frames.sum(0), per_pixel)
    down = events_to_frames(ev, 7, (34, 34), split_by, downsample=4)
    assert down.shape == (7, 2, 9, 9) and int(down.sum()) == 1001


def test_split_by_count_vs_time():
    from dendrix.data.events import make_events

    # 10 events: 9 in the first 10 us, one at 999 us. By count: 3 + 3 + 4 (floor(k*N/T) boundaries);
    # by time (span 1000 us, thirds of 333.3 us): 9 + 0 + 1.
    t = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 999])
    ev = make_events(t, np.arange(10), np.zeros(10), np.ones(10))
    by_count = events_to_frames(ev, 3, (1, 10), "count").sum(axis=(1, 2, 3))
    by_time = events_to_frames(ev, 3, (1, 10), "time").sum(axis=(1, 2, 3))
    np.testing.assert_array_equal(by_count, [3, 3, 4])
    np.testing.assert_array_equal(by_time, [9, 0, 1])
    # count split keeps file order: frame 0 holds events 0..2 (x = 0..2)
    frames = events_to_frames(ev, 3, (1, 10), "count")
    np.testing.assert_array_equal(frames[0, 1, 0], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    assert events_to_frames(ev[:0], 3, (1, 10)).sum() == 0
    sparse = events_to_frames(ev[:2], 5, (1, 10), "count").sum(axis=(1, 2, 3))   # fewer events than frames
    assert int(sparse.sum()) == 2 and int(sparse.max()) == 1


def test_frames_reject_bad_options_and_events():
    from dendrix.data.events import make_events

    ev = make_events([0], [40], [0], [1])
    _one_line_error(lambda: events_to_frames(ev, 2, (34, 34)), "outside")
    _one_line_error(lambda: events_to_frames(ev, 0, (34, 34)), "frames")
    _one_line_error(lambda: events_to_frames(ev, 2, (34, 34), "number"), "split_by")
    _one_line_error(lambda: events_to_frames(ev, 2, (34, 34), downsample=0), "downsample")


def test_frame_cache_is_keyed_and_rebuilt_when_damaged(tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"abc")
    calls = []

    def compute():
        calls.append(1)
        return np.full((2, 2, 3, 3), 300, dtype=np.int32)

    a = cached_frames(src, {"frames": 2}, compute, root=tmp_path)
    b = cached_frames(src, {"frames": 2}, compute, root=tmp_path)
    np.testing.assert_array_equal(a, b)
    assert len(calls) == 1 and b.dtype == np.int32
    cached_frames(src, {"frames": 3}, compute, root=tmp_path)   # another parameter: another entry
    assert len(calls) == 2
    files = sorted((tmp_path / "cache" / "frames").glob("*.npz"))
    assert len(files) == 2
    for f in files:
        f.write_bytes(b"not a zip")
    np.testing.assert_array_equal(cached_frames(src, {"frames": 2}, compute, root=tmp_path), a)
    assert len(calls) == 3


# -- data sets -----------------------------------------------------------------------------------------------
def _nmnist_tree(root, per_digit=2):
    rng = np.random.default_rng(5)
    counts = {}
    for part in ("Train", "Test"):
        for d in range(10):
            for k in range(per_digit):
                n = int(rng.integers(5, 60))
                path = root / "nmnist" / part / str(d) / f"{k:05d}.bin"
                write_nmnist_bin(path, random_events(rng, n, 34, 34, 300_000))
                counts[(part, d, k)] = n
    return counts


def test_nmnist_dataset(tmp_path):
    counts = _nmnist_tree(tmp_path)
    test = get_dataset("nmnist", split="test", root=tmp_path, frames=5, split_by="time")
    assert len(test) == 20
    assert test.info == DatasetInfo("nmnist", 2, 10, 5, "spikes", (2, 34, 34))
    x, y = test[3]
    assert x.shape == (5, 2, 34, 34) and x.dtype == torch.float32
    assert int(x.sum()) == counts[("Test", y, 1)]
    xb, yb = next(iter(make_loader(test, 8)))
    assert xb.shape == (5, 8, 2, 34, 34) and yb.shape == (8,)
    train_full = get_dataset("nmnist", split="train_full", root=tmp_path, frames=5)
    train = get_dataset("nmnist", split="train", root=tmp_path, frames=5, val_fraction=0.5)
    val = get_dataset("nmnist", split="val", root=tmp_path, frames=5, val_fraction=0.5)
    assert len(train_full) == 20 and len(train) + len(val) == 20 and len(val) == 10
    assert any((tmp_path / "cache" / "frames").glob("*.npz"))
    uncached = get_dataset("nmnist", split="test", root=tmp_path, frames=5, split_by="time", cache=False)
    torch.testing.assert_close(uncached.get_batch(range(20))[0], test.get_batch(range(20))[0])
    small = get_dataset("nmnist", split="test", root=tmp_path, frames=2, downsample=2)
    assert small.info.input_shape == (2, 17, 17) and small[0][0].shape == (2, 2, 17, 17)


def _gesture_tree(root):
    rng = np.random.default_rng(6)
    base = root / "dvsgesture" / "DvsGesture"
    expected = {}
    for user, part in (("user01", "train"), ("user02", "train"), ("user24", "test")):
        name = f"{user}_natural"
        events = random_events(rng, 400, 128, 128, 2_000_000, t_min=1000)
        write_aedat31(base / f"{name}.aedat", [aedat31_packet(events[:250]), aedat31_packet(events[250:])])
        rows = [(1, 100_000, 600_000), (5, 700_000, 1_200_000), (11, 1_300_000, 1_900_000)]
        (base / f"{name}_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in rows))
        for c, s, e in rows:
            expected.setdefault(part, []).append((c - 1, sum(s <= ev[3] < e for ev in events)))
    (base / "trials_to_train.txt").write_text("user01_natural.aedat\nuser02_natural.aedat\n")
    (base / "trials_to_test.txt").write_text("user24_natural.aedat\n")
    return expected


def test_dvsgesture_split_from_trial_files_and_label_intervals(tmp_path):
    expected = _gesture_tree(tmp_path)
    for split in ("train_full", "test"):
        ds = get_dataset("dvsgesture", split=split, root=tmp_path, frames=4, downsample=4)
        part = "train" if split == "train_full" else "test"
        assert ds.info.input_shape == (2, 32, 32) and ds.info.num_classes == 11
        if split == "train_full":   # reading one sample caches every sample of its recording (3 here)
            ds[0]
            assert len(list((tmp_path / "cache" / "frames").glob("*.npz"))) == 3
        assert [int(v) for v in ds.labels] == [c for c, _ in expected[part]]
        x, _ = ds.get_batch(range(len(ds)))
        assert x.shape == (len(ds), 4, 2, 32, 32)
        assert [int(v) for v in x.sum(dim=(1, 2, 3, 4))] == [n for _, n in expected[part]]
    assert {str(s[0].name) for s in get_dataset("dvsgesture", split="test", root=tmp_path).samples} == {
        "user24_natural.aedat"}


def test_cifar10dvs_dataset_split(tmp_path):
    rng = np.random.default_rng(7)
    counts = {}
    for cls in CIFAR10_CLASSES:
        for i in (0, 100, 101):
            n = int(rng.integers(10, 50))
            write_aedat2(tmp_path / "cifar10dvs" / cls / f"cifar10_{cls}_{i}.aedat",
                         random_events(rng, n, 128, 128, 10**6))
            counts[(cls, i)] = n
    test = get_dataset("cifar10dvs", split="test", root=tmp_path, frames=3)
    train = get_dataset("cifar10dvs", split="train_full", root=tmp_path, frames=3)
    assert len(test) == 10 and len(train) == 20
    assert all(s[0].name.endswith("_0.aedat") for s in test.samples)
    x, y = test[4]
    assert x.shape == (3, 2, 128, 128) and y == 4 and int(x.sum()) == counts[(CIFAR10_CLASSES[4], 0)]


def test_missing_files_say_how_to_get_them(tmp_path):
    _one_line_error(lambda: get_dataset("nmnist", root=tmp_path), "dendrix data download nmnist")
    _one_line_error(lambda: get_dataset("cifar10dvs", root=tmp_path), "dendrix data download cifar10dvs")
    _one_line_error(lambda: get_dataset("dvsgesture", root=tmp_path), "DvsGesture.tar.gz", "by hand")
    _gesture_tree(tmp_path)
    (tmp_path / "dvsgesture" / "DvsGesture" / "user24_natural.aedat").unlink()
    _one_line_error(lambda: get_dataset("dvsgesture", root=tmp_path), "user24_natural.aedat", "trials_to_test")
    with pytest.raises(DatasetError, match="no option"):
        get_dataset("nmnist", root=tmp_path, frame=3)


def test_dataset_info_input_shape_survives_json():
    info = DatasetInfo("dvsgesture", 2, 11, 16, "spikes", (2, 32, 32))
    back = DatasetInfo(**json.loads(json.dumps(info._asdict())))
    assert back == info and back.input_shape == (2, 32, 32)
    assert DatasetInfo(**json.loads(json.dumps(DatasetInfo("fsdd", 64, 10, 100)._asdict()))).input_shape is None
    with pytest.raises(ValueError, match="input_shape"):
        DatasetInfo("x", 3, 2, 4, "analog", (2, 8, 8))


# -- downloads -----------------------------------------------------------------------------------------------
def test_fetch_with_sha256_and_safe_extraction(tmp_path):
    src = tmp_path / "server" / "Test.zip"
    src.parent.mkdir()
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("Test/0/00001.bin", bytes(5))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    got = fetch(src.as_uri(), tmp_path / "cache" / "Test.zip", sha256=digest)
    extract_archive(got, tmp_path / "cache")
    assert (tmp_path / "cache" / "Test" / "0" / "00001.bin").stat().st_size == 5
    _one_line_error(lambda: fetch(src.as_uri(), tmp_path / "other.zip", sha256="0" * 64), "checksum mismatch")
    assert not (tmp_path / "other.zip").exists()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", b"x")
    _one_line_error(lambda: extract_archive(evil, tmp_path / "out"), "outside")
    assert not (tmp_path / "escape.txt").exists()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not really")
    _one_line_error(lambda: extract_archive(bad, tmp_path / "out"), "not a valid archive")


def test_dvsgesture_download_is_manual_and_verified(tmp_path):
    _one_line_error(lambda: download_event_dataset("dvsgesture", root=tmp_path), "by hand", "DvsGesture.tar.gz")
    (tmp_path / "dvsgesture").mkdir()
    (tmp_path / "dvsgesture" / "DvsGesture.tar.gz").write_bytes(b"truncated")
    _one_line_error(lambda: download_event_dataset("dvsgesture", root=tmp_path), "md5", "corrupt")
