"""``dendrix data``: build or inspect data sets.

- ``dendrix data build-fsdd --source DIR --out FILE``: encode the FSDD recordings into the compact spiking copy.
- ``dendrix data info NAME [--split S] [--root DIR] [--option key=value ...]``: sizes, shape and spike rate.
- ``dendrix data list``: the data sets.
- ``dendrix data probe NAME [--windows W ...]``: logistic-regression accuracy on spike counts in W time windows
  (trained on ``train_full``, scored on ``test``), a check that an encoding keeps the classes separable.
- ``dendrix data download NAME [--root DIR] [--checksums FILE]``: fetch SHD/SSC or N-MNIST/CIFAR10-DVS files (and
  verify/extract a hand-downloaded DVS128 Gesture archive), checksum-verified.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    b = sub.add_parser("build-fsdd", help="encode FSDD recordings into the bit-packed spiking copy")
    b.add_argument("--source", required=True, help="folder of FSDD .wav recordings (or its parent)")
    b.add_argument("--out", required=True, help="output .npz file")
    b.add_argument("--quiet", action="store_true", help="no progress output")
    enc = b.add_argument_group("encoder (defaults: the shipped copy)")
    enc.add_argument("--channels", type=int, default=None)
    enc.add_argument("--f-min", type=float, default=None, help="lowest centre frequency (Hz)")
    enc.add_argument("--f-max", type=float, default=None, help="highest centre frequency (Hz)")
    enc.add_argument("--bin-ms", type=float, default=None)
    enc.add_argument("--time-steps", type=int, default=None)
    enc.add_argument("--dynamic-range-db", type=float, default=None)
    enc.add_argument("--levels", type=int, default=None)
    i = sub.add_parser("info", help="describe a data set split")
    i.add_argument("name")
    i.add_argument("--split", default="train")
    i.add_argument("--root", default=None, help="data folder (default $DENDRIX_DATA or ~/.cache/dendrix)")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="data set option, e.g. -o split_mode=speaker -o test_speaker=theo")
    sub.add_parser("list", help="list the data sets")
    pr = sub.add_parser("probe", help="linear probe: logistic regression on spike counts (train_full -> test)")
    pr.add_argument("name")
    pr.add_argument("--windows", type=int, action="append", default=None,
                    help="count spikes in this many equal time windows (repeatable; default 1 and 10)")
    pr.add_argument("--root", default=None)
    pr.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE")
    d = sub.add_parser("download", help="download SHD/SSC or event-camera files into the cache, verified by checksum")
    d.add_argument("name", choices=["shd", "ssc", "nmnist", "cifar10dvs", "dvsgesture"])
    d.add_argument("--root", default=None, help="cache folder (default $DENDRIX_DATA or ~/.cache/dendrix)")
    d.add_argument("--checksums", default=None,
                   help="md5 manifest file ('<md5>  <file name>' lines); default: the one published beside the data")
    d.add_argument("--split", action="append", default=None, help="only these splits (train/valid/test)")


def _parse_value(text: str):
    from .._optional import require

    yaml = require("yaml", needed_by="dendrix data (option values)")
    from ..train.config import yaml_value

    try:
        return yaml_value(text)
    except yaml.YAMLError:
        return text


def _options(items: list[str]) -> dict:
    from . import UserError

    options = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        options[key.strip()] = _parse_value(value)
    return options


def window_counts(x, windows: int):
    """Sum ``x [N, T, C]`` over ``windows`` consecutive time windows (the last takes the remainder) → ``[N, W*C]``."""
    import numpy as np

    edges = np.linspace(0, x.shape[1], windows + 1).round().astype(int)
    return np.concatenate([x[:, a:b].sum(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)


def _probe(args, options: dict) -> int:
    import time

    import numpy as np
    from .._optional import require

    require("sklearn", needed_by="dendrix data probe")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..data import get_dataset

    def arrays(split):
        ds = get_dataset(args.name, split=split, root=args.root, **options)
        x, y = ds.get_batch(np.arange(len(ds)))
        return x.numpy().astype(np.float64), y.numpy()

    xtr, ytr = arrays("train_full")
    xte, yte = arrays("test")
    print(f"{args.name}: train_full {len(ytr)}, test {len(yte)}, [T={xtr.shape[1]}, C={xtr.shape[2]}], "
          f"mean value {xtr.mean():.4f}")
    for w in args.windows or [1, 10]:
        start = time.perf_counter()
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        clf.fit(window_counts(xtr, w), ytr)
        acc = clf.score(window_counts(xte, w), yte)
        print(f"  logistic regression on counts in {w} window(s): test accuracy {acc:.4f} "
              f"({time.perf_counter() - start:.1f} s)")
    return 0


def main(args) -> int:
    from . import UserError
    from ..data import DatasetError

    try:
        return _run(args)
    except DatasetError as err:
        raise UserError(str(err)) from None


def _run(args) -> int:
    from . import UserError

    cmd = getattr(args, "data_command", None)
    if cmd == "build-fsdd":
        import time

        from dataclasses import replace

        from ..data.fsdd import FSDD_ENCODER, build_fsdd

        changes = {k: getattr(args, k) for k in ("channels", "f_min", "f_max", "bin_ms", "time_steps",
                                                 "dynamic_range_db", "levels") if getattr(args, k) is not None}
        try:
            encoder = replace(FSDD_ENCODER, **changes)
        except (TypeError, ValueError) as err:
            raise UserError(f"bad encoder option: {err}") from None
        start = time.perf_counter()

        def progress(i: int, n: int) -> None:
            if not args.quiet and (i == n or i % 250 == 0):
                print(f"\rencoded {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)

        enc = build_fsdd(args.source, args.out, encoder=encoder, progress=progress)
        spikes = enc["spikes"]
        print(f"wrote {args.out}: {spikes.shape[0]} recordings, [T={spikes.shape[1]}, C={spikes.shape[2]}], "
              f"mean spike rate {spikes.mean():.4f} per bin, {time.perf_counter() - start:.1f} s")
        return 0
    if cmd == "probe":
        return _probe(args, _options(args.option))
    if cmd == "info":
        from ..data import get_dataset, make_loader

        options = _options(args.option)
        ds = get_dataset(args.name, split=args.split, root=args.root, seed=args.seed, **options)
        total = 0.0
        nonzero = 0.0
        count = 0
        for x, _ in make_loader(ds, 256):
            total += float(x.sum())
            nonzero += float((x != 0).sum())
            count += x.numel()
        labels = ds.labels
        print(f"{args.name} [{args.split}]: {len(ds)} items, info={ds.info}")
        print(f"  classes present: {len(set(labels.tolist()))}, mean value {total / max(count, 1):.4f}, "
              f"nonzero fraction {nonzero / max(count, 1):.4f}")
        return 0
    if cmd == "list":
        from ..data import list_datasets

        for name, desc in list_datasets().items():
            print(f"{name:15s} {desc}")
        return 0
    if cmd == "download":
        from ..data.download import download_dataset

        paths = download_dataset(args.name, root=args.root, checksums=args.checksums, splits=args.split)
        for p in paths:
            print(p)
        return 0
    raise UserError("choose an action: build-fsdd, info, list, probe or download (see `dendrix data --help`)")
