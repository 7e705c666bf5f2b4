"""The ``dendrix`` command. Each sub-command lives in its own module with ``add_arguments(parser)`` and
``main(args) -> int``. Every error is printed as exactly one line on stderr with a non-zero exit code and no
traceback (``--debug`` shows it): 2 for input the user can fix (bad arguments, configs, run folders, checkpoints),
1 for a failed run (divergence, a full disk, a bug: the line says ``internal error``), 130/143 for Ctrl-C/SIGTERM.

The library reports through :mod:`logging` (logger ``dendrix``); the command shows its INFO records on stdout
(warnings and errors on stderr), only warnings with ``--quiet`` and DEBUG records with ``--verbose``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
import threading

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


SIGINT_EXIT, SIGTERM_EXIT = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that a command unwinds exactly as for Ctrl-C."""


def interrupt_exit_code(err: KeyboardInterrupt) -> int:
    return SIGTERM_EXIT if isinstance(err, Terminated) else SIGINT_EXIT


def interrupt_name(err: KeyboardInterrupt) -> str:
    return "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``dendrix train: error: ...``) instead of the usage
    block, like every other error of the command."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


# Exceptions of the library that mean "fix your input" (looked up by module so the CLI imports nothing heavy).
_USER_ERRORS = (("dendrix.train.config", "ConfigError"), ("dendrix.train.runfolder", "RunFolderError"),
                ("dendrix.train.checkpoint", "CheckpointError"))


def _is_user_error(err: BaseException) -> bool:
    from .._optional import MissingExtra

    types: list[type] = [UserError, MissingExtra]
    for module, name in _USER_ERRORS + (("dendrix.data", "DatasetError"),):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            types.append(cls)
    return isinstance(err, tuple(types))


def one_line(err: BaseException) -> str:
    """The first line of ``err``'s message (whitespace collapsed), or its type name when it has none."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[0].split()) if lines else type(err).__name__


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
    parser = OneLineParser(
        prog="dendrix",
        description="dendrix: train, compare and evaluate dendritic, resonating and gated spiking neurons.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"dendrix {__version__}")
    # dest names differ from the sub-commands' own --quiet (argparse lets a sub-parser's default win).
    parser.add_argument("--quiet", "-q", dest="log_quiet", action="store_true",
                        help="show only warnings and errors (the sub-commands' --quiet also hides progress bars)")
    parser.add_argument("--verbose", "-v", dest="log_verbose", action="store_true",
                        help="show debug messages, each with its logger name")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of the one-line message")
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
    try:
        if args.log_quiet and hasattr(args, "quiet"):
            args.quiet = True  # the global --quiet also silences the sub-command's own output
        configure_logging(quiet=args.log_quiet or getattr(args, "quiet", False), verbose=args.log_verbose)
        return int(args._main(args) or 0)
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        line, cause = getattr(err, "line", None), getattr(err, "cause", err)  # a command that saved its work
        print(f"dendrix {args.command}: {line or interrupt_name(cause)}", file=sys.stderr)
        return interrupt_exit_code(cause)
    except Exception as err:  # noqa: BLE001 - the command's contract: one line, never a traceback
        if args.debug:
            raise
        if _is_user_error(err):
            print(f"dendrix {args.command}: error: {one_line(err)}", file=sys.stderr)
            return 2
        if isinstance(err, OSError):  # a full disk, a read-only folder, a vanished file
            print(f"dendrix {args.command}: error: {one_line(err)}", file=sys.stderr)
            return 1
        print(f"dendrix {args.command}: internal error: {type(err).__name__}: {one_line(err)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
