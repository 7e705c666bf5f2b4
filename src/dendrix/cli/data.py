"""``dendrix data``: build or inspect data sets.

- ``dendrix data build-fsdd --source DIR --out FILE``: encode the FSDD recordings into the compact spiking copy.
- ``dendrix data info NAME [--split S] [--root DIR] [--option key=value ...]``: sizes, shape and spike rate.
- ``dendrix data list``: the data sets.
- ``dendrix data download NAME [--root DIR] [--checksums FILE]``: fetch SHD/SSC files, checksum-verified.
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
    i = sub.add_parser("info", help="describe a data set split")
    i.add_argument("name")
    i.add_argument("--split", default="train")
    i.add_argument("--root", default=None, help="data folder (default $DENDRIX_DATA or ~/.cache/dendrix)")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="data set option, e.g. -o split_mode=speaker -o test_speaker=theo")
    sub.add_parser("list", help="list the data sets")
    d = sub.add_parser("download", help="download SHD/SSC files into the cache, verified by checksum")
    d.add_argument("name", choices=["shd", "ssc"])
    d.add_argument("--root", default=None, help="cache folder (default $DENDRIX_DATA or ~/.cache/dendrix)")
    d.add_argument("--checksums", default=None,
                   help="md5 manifest file ('<md5>  <file name>' lines); default: the one published beside the data")
    d.add_argument("--split", action="append", default=None, help="only these splits (train/valid/test)")


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


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

        from ..data.fsdd import build_fsdd

        start = time.perf_counter()

        def progress(i: int, n: int) -> None:
            if not args.quiet and (i == n or i % 250 == 0):
                print(f"\rencoded {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)

        enc = build_fsdd(args.source, args.out, progress=progress)
        spikes = enc["spikes"]
        print(f"wrote {args.out}: {spikes.shape[0]} recordings, [T={spikes.shape[1]}, C={spikes.shape[2]}], "
              f"mean spike rate {spikes.mean():.4f} per bin, {time.perf_counter() - start:.1f} s")
        return 0
    if cmd == "info":
        from ..data import get_dataset, make_loader

        options = {}
        for item in args.option:
            if "=" not in item:
                raise UserError(f"--option expects KEY=VALUE, got {item!r}")
            key, value = item.split("=", 1)
            options[key.strip()] = _parse_value(value)
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
    raise UserError("choose an action: build-fsdd, info, list or download (see `dendrix data --help`)")
