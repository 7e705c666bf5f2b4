"""``dendrix list``: the registered neuron kinds."""

from __future__ import annotations

from . import UserError


def add_arguments(parser) -> None:
    parser.add_argument("--family", help="only kinds of this family")


def main(args) -> int:
    from ..registry import available, describe

    kinds = available()
    families = sorted({describe(kind).family for kind in kinds})
    if args.family and args.family not in families:
        raise UserError(f"unknown family {args.family!r} (--family); families: {', '.join(families)}")
    for kind in kinds:
        reg = describe(kind)
        if args.family and reg.family != args.family:
            continue
        print(f"{kind:12s} {reg.family:10s} {reg.description}")
    return 0
