"""``dendrix list``: the registered neuron kinds."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--family", help="only kinds of this family")


def main(args) -> int:
    from ..registry import available, describe

    for kind in available():
        reg = describe(kind)
        if args.family and reg.family != args.family:
            continue
        print(f"{kind:12s} {reg.family:10s} {reg.description}")
    return 0
