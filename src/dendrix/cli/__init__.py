"""The ``dendrix`` command. Each sub-command lives in its own module with ``add_arguments(parser)`` and
``main(args) -> int``; errors a user can fix are printed as one line (no traceback).

The library reports through :mod:`logging` (logger ``dendrix``); the command shows its INFO records on stdout
(warnings and errors on stderr), only warnings with ``--quiet`` and DEBUG records with ``--verbose``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# sub-command -> (module, one-line help)
COMMANDS = {
    "train": ("dendrix.cli.train", "train one model from a YAML config (with key=value overrides)"),
    "eval": ("dendrix.cli.eval", "evaluate a run folder: accuracy, energy, robustness"),
    "compare": ("dendrix.cli.compare", "train several neuron kinds on one task and tabulate them"),
    "demo": ("dendrix.cli.demo", "compare every neuron kind on the embedded spiking FSDD data"),
    "demo-vision": ("dendrix.cli.demo_vision", "LIF, PLIF, DA-LIF, DLIF on the digits images (spiking CNN)"),
    "export": ("dendrix.cli.export", "export a trained run folder to ONNX (per step) or NIR"),
    "data": ("dendrix.cli.data", "build or inspect data sets (e.g. build-fsdd)"),
    "list": ("dendrix.cli.listing", "list the registered neuron kinds"),
}


class UserError(Exception):
    """An error caused by the user's input; printed as one line and exit code 2."""


class _ConsoleHandler(logging.Handler):
    """INFO and below to stdout, WARNING and above to stderr; the streams are looked up at each record, so a
    replaced ``sys.stdout`` (tests, notebooks) is honoured."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def configure_logging(quiet: bool = False, verbose: bool = False) -> logging.Logger:
    """Attach the command's console handler to the ``dendrix`` logger (replacing an earlier one) and set its level:
    WARNING with ``quiet``, DEBUG with ``verbose``, else INFO. Returns the logger."""
    if quiet and verbose:
        raise UserError("--quiet and --verbose exclude each other")
    logger = logging.getLogger("dendrix")
    for handler in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(handler)
    handler = _ConsoleHandler()
    fmt = "%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    return logger


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dendrix",
        description="dendrix: train, compare and evaluate dendritic, resonating and gated spiking neurons.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"dendrix {__version__}")
    # dest names differ from the sub-commands' own --quiet (argparse lets a sub-parser's default win).
    parser.add_argument("--quiet", "-q", dest="log_quiet", action="store_true",
                        help="show only warnings and errors (the sub-commands' --quiet also hides progress bars)")
    parser.add_argument("--verbose", "-v", dest="log_verbose", action="store_true",
                        help="show debug messages, each with its logger name")
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
    from .._optional import MissingExtra
    from ..data import DatasetError

    try:
        if args.log_quiet and hasattr(args, "quiet"):
            args.quiet = True  # the global --quiet also silences the sub-command's own output
        configure_logging(quiet=args.log_quiet or getattr(args, "quiet", False), verbose=args.log_verbose)
        return int(args._main(args) or 0)
    except (UserError, DatasetError, MissingExtra) as err:
        print(f"dendrix {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ndendrix {args.command}: interrupted", file=sys.stderr)
        return 130
