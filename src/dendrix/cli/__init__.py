"""The ``dendrix`` command. Each sub-command lives in its own module with ``add_arguments(parser)`` and
``main(args) -> int``; errors a user can fix are printed as one line (no traceback)."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> (module, one-line help)
COMMANDS = {
    "train": ("dendrix.cli.train", "train one model from a YAML config (with key=value overrides)"),
    "eval": ("dendrix.cli.eval", "evaluate a run folder: accuracy, energy, robustness"),
    "compare": ("dendrix.cli.compare", "train several neuron kinds on one task and tabulate them"),
    "demo": ("dendrix.cli.demo", "compare every neuron kind on the embedded spiking FSDD data"),
    "data": ("dendrix.cli.data", "build or inspect data sets (e.g. build-fsdd)"),
    "list": ("dendrix.cli.listing", "list the registered neuron kinds"),
}


class UserError(Exception):
    """An error caused by the user's input; printed as one line and exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dendrix",
        description="dendrix: train, compare and evaluate dendritic, resonating and gated spiking neurons.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"dendrix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(module)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    from ..data import DatasetError

    try:
        return int(args._main(args) or 0)
    except (UserError, DatasetError) as err:
        print(f"dendrix {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ndendrix {args.command}: interrupted", file=sys.stderr)
        return 130
