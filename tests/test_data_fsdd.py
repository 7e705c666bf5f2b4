"""Embedded spiking FSDD: splits, the encoder on real recordings, and bit-exact rebuilds of the shipped copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dendrix.data import DatasetError, get_dataset
from dendrix.data.audio import CochleaEncoder
from dendrix.data.fsdd import EMBEDDED_FSDD, FSDD_ENCODER, build_fsdd, encode_recordings, load_fsdd

SHARED = Path(__file__).resolve().parents[2] / "shared"
RECORDINGS = SHARED / "data" / "fsdd" / "recordings"
needs_recordings = pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"FSDD recordings not found at {RECORDINGS}")
# one recording per speaker, digits and indices spread over both splits
SAMPLE = ["0_george_0.wav", "3_jackson_12.wav", "5_lucas_4.wav", "7_nicolas_49.wav", "8_theo_25.wav",
          "9_yweweler_3.wav"]


def test_embedded_file_is_compact_and_complete():
    assert EMBEDDED_FSDD.stat().st_size < 3 * 2**20
    assert (EMBEDDED_FSDD.parent / "LICENSE_FSDD.md").is_file()
    d = load_fsdd()
    assert tuple(d["spikes"].shape) == (3000, 100, 64)
    assert d["spikes"].dtype == torch.uint8 and int(d["spikes"].max()) == 1
    assert np.bincount(d["labels"]).tolist() == [300] * 10
    assert sorted(set(d["speakers"].tolist())) == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert d["meta"]["encoder"] == FSDD_ENCODER.to_dict()
    assert "CC BY-SA 4.0" in d["meta"]["license"]
    rate = float(d["spikes"].float().mean())
    assert 0.02 < rate < 0.3  # sparse but not silent


def test_official_split_sizes_and_disjointness():
    parts = {s: get_dataset("fsdd", split=s, seed=3) for s in ("train", "val", "test", "train_full")}
    assert [len(parts[s]) for s in ("train", "val", "test", "train_full")] == [2430, 270, 300, 2700]
    assert (parts["test"].meta["index"] <= 4).all() and (parts["train_full"].meta["index"] >= 5).all()
    key = lambda ds: {(int(l), s, int(i)) for l, s, i in zip(ds.labels, ds.meta["speaker"], ds.meta["index"])}
    train, val = key(parts["train"]), key(parts["val"])
    assert not train & val and train | val == key(parts["train_full"])
    assert np.bincount(parts["val"].labels).tolist() == [27] * 10  # stratified
    info = parts["train"].info
    assert (info.name, info.num_inputs, info.num_classes, info.time_steps, info.input_kind) == \
        ("fsdd", 64, 10, 100, "spikes")
    x, y = parts["test"][0]
    assert x.shape == (100, 64) and x.dtype == torch.float32 and isinstance(y, int)


def test_validation_part_depends_on_seed_only():
    a, b = get_dataset("fsdd", split="val", seed=0), get_dataset("fsdd", split="val", seed=0)
    c = get_dataset("fsdd", split="val", seed=1)
    assert torch.equal(a.data, b.data)
    assert not torch.equal(a.data, c.data)
    assert torch.equal(get_dataset("fsdd", split="test", seed=0).data, get_dataset("fsdd", split="test", seed=5).data)


def test_speaker_split():
    test = get_dataset("fsdd", split="test", split_mode="speaker", test_speaker="theo")
    train = get_dataset("fsdd", split="train_full", split_mode="speaker", test_speaker="theo")
    assert len(test) == 500 and set(test.meta["speaker"].tolist()) == {"theo"}
    assert len(train) == 2500 and "theo" not in set(train.meta["speaker"].tolist())
    with pytest.raises(DatasetError, match="test_speaker"):
        get_dataset("fsdd", split="test", split_mode="speaker")
    with pytest.raises(DatasetError, match="split_mode"):
        get_dataset("fsdd", split_mode="random")


def test_encoder_tone_lands_in_its_channel():
    enc = CochleaEncoder()
    t = np.arange(4000) / enc.sample_rate
    spikes = enc.encode(np.sin(2 * np.pi * 1000.0 * t))
    assert spikes.shape == (100, 64) and set(np.unique(spikes)) <= {0, 1}
    counts = spikes[:50].sum(axis=0)
    best = enc.centre_frequencies[np.argmax(counts)]
    assert abs(best - 1000.0) < 60.0
    assert spikes[50:].sum() == 0  # 0.5 s of sound, padded with silence
    assert enc.encode(np.zeros(800)).sum() == 0
    with pytest.raises(ValueError, match="sample rate"):
        enc.encode(np.zeros(800), sample_rate=16000)
    with pytest.raises(ValueError, match="f_max"):
        CochleaEncoder(f_max=5000.0)


@needs_recordings
def test_encoding_real_recordings_reproduces_shipped_rows():
    enc = encode_recordings([RECORDINGS / name for name in SAMPLE])
    d = load_fsdd()
    for row, (label, speaker, index) in enumerate(zip(enc["labels"], enc["speakers"], enc["indices"])):
        match = np.flatnonzero((d["labels"] == label) & (d["speakers"] == speaker) & (d["indices"] == index))
        assert match.size == 1
        assert np.array_equal(d["spikes"][match[0]].numpy(), enc["spikes"][row])
        assert d["lengths"][match[0]] == enc["lengths"][row]
    assert enc["spikes"].sum() > 0


@needs_recordings
def test_build_is_deterministic_and_loadable(tmp_path):
    src = tmp_path / "recordings"
    src.mkdir()
    for name in SAMPLE[:3]:
        shutil.copy(RECORDINGS / name, src / name)
    out1, out2 = tmp_path / "a.npz", tmp_path / "b.npz"
    build_fsdd(tmp_path, out1)  # the parent folder works too
    build_fsdd(src, out2)
    assert out1.read_bytes() == out2.read_bytes()
    built = load_fsdd(out1)
    shipped = load_fsdd()
    for i in range(3):
        m = np.flatnonzero((shipped["labels"] == built["labels"][i]) & (shipped["speakers"] == built["speakers"][i])
                           & (shipped["indices"] == built["indices"][i]))
        assert torch.equal(shipped["spikes"][m[0]], built["spikes"][i])
    ds = get_dataset("fsdd", split="test", path=str(out1))  # 0_george_0 and 5_lucas_4 have index <= 4
    assert len(ds) == 2


def test_bad_source_and_file_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        build_fsdd(tmp_path / "missing", tmp_path / "x.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no .wav"):
        build_fsdd(tmp_path / "empty", tmp_path / "x.npz")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "hello.wav").write_bytes(b"RIFF")
    with pytest.raises(DatasetError, match="not an FSDD recording name"):
        build_fsdd(tmp_path / "bad", tmp_path / "x.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a valid spiking-FSDD file"):
        load_fsdd(broken)
    with pytest.raises(DatasetError, match="not found"):
        load_fsdd(tmp_path / "nope.npz")


def test_cli_prints_one_line_error(tmp_path, capsys):
    from dendrix.cli import main

    code = main(["data", "build-fsdd", "--source", str(tmp_path / "no"), "--out", str(tmp_path / "x.npz")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "does not exist" in lines[0]
    assert main(["data", "info", "fsdd", "-o", "split_mode=speaker"]) == 2
    assert "test_speaker" in capsys.readouterr().err
    assert main(["data", "info", "fsdd", "--split", "test"]) == 0
    assert "300 items" in capsys.readouterr().out


@pytest.mark.parametrize("name, parsed", [
    ("7_jackson_32.wav", (7, "jackson", 32)),
    ("7_user1_3.wav", (7, "user1", 3)),
    ("0_42_7.wav", (0, "42", 7)),
    ("2_anna-2_10.wav", (2, "anna-2", 10)),
    ("3_my_voice_5.wav", (3, "my_voice", 5)),
])
def test_recording_names_allow_digits_in_speaker(name, parsed):
    from dendrix.data.fsdd import parse_recording_name

    assert parse_recording_name(name) == parsed


@pytest.mark.parametrize("name", ["12_jackson_3.wav", "7_jackson.wav", "7__3.wav", "7_jackson_3.mp3",
                                  "7_jack son_3.wav", "x_jackson_3.wav"])
def test_malformed_recording_names_are_refused(name):
    from dendrix.data.fsdd import parse_recording_name

    with pytest.raises(DatasetError, match="not an FSDD recording name"):
        parse_recording_name(name)


def _write_tone(path: Path, freq: float, rate: int = 8000, seconds: float = 0.4) -> None:
    import wave

    t = np.arange(int(rate * seconds)) / rate
    pcm = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def test_own_recordings_with_digit_speaker_names_build_and_split(tmp_path):
    src = tmp_path / "recordings"
    src.mkdir()
    for name, freq in [("1_user1_0.wav", 500.0), ("2_user1_7.wav", 900.0), ("1_user22_3.wav", 1500.0)]:
        _write_tone(src / name, freq)
    out = tmp_path / "own.npz"
    build_fsdd(src, out)
    built = load_fsdd(out)
    assert sorted(zip(built["labels"].tolist(), built["speakers"].tolist(), built["indices"].tolist())) == \
        [(1, "user1", 0), (1, "user22", 3), (2, "user1", 7)]
    assert int(built["spikes"].sum()) > 0
    test = get_dataset("fsdd", split="test", split_mode="speaker", test_speaker="user1", path=str(out))
    assert len(test) == 2 and set(test.meta["speaker"].tolist()) == {"user1"}
