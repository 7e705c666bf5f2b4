"""Guards of a run folder: one process at a time (a pid lock file), no silent overwrite, safe names.

* :class:`RunLock` creates ``RUN/.lock`` with ``O_EXCL`` and writes ``pid host`` into it. A second process
  asking for the same folder gets :class:`RunFolderError` naming the holder; a lock whose process no longer
  runs on this host is *stale* and is taken over with a warning.
* :func:`is_run_folder` says whether a folder already holds a run (its config, result or checkpoints);
  :func:`clear_run_folder` removes exactly the files a run writes (``--overwrite``), nothing else.
* :func:`check_run_name` accepts names made of letters, digits, ``.``, ``_`` and ``-`` (no separators, no
  ``..``), so a name read from a config cannot steer an output outside its folder.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
from pathlib import Path

from ..files import write_text

__all__ = ["RunFolderError", "RunLock", "is_run_folder", "clear_run_folder", "check_run_name", "LOCK_NAME"]

_logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
RUN_FILES = ("config.json", "info.json", "metrics.csv", "result.json", "best.safetensors")
_REPORT_PATTERNS = ("eval_*.json", "eval_*.md", "energy_*.json", "energy_*.md", "robustness_*.json",
                    "robustness_*.md", "robustness_*.png")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RunFolderError(RuntimeError):
    """A run folder that is in use, already holds a run, or a name that would leave its folder (one line)."""


def check_run_name(name, what: str = "name") -> str:
    """``name`` if it is a safe folder-name part, else :class:`RunFolderError` naming ``what``."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise RunFolderError(f"{what} must be letters, digits, '.', '_' or '-' (at most 100, no path separators "
                             f"or '..'), got {name!r}")
    return name


def is_run_folder(folder: str | Path) -> bool:
    """True when ``folder`` already holds (part of) a dendrix run."""
    folder = Path(folder)
    return any((folder / name).exists() for name in ("config.json", "result.json", "checkpoints"))


def clear_run_folder(folder: str | Path) -> None:
    """Delete the files a run writes into ``folder`` (checkpoints, weights, metrics, results, eval reports)."""
    folder = Path(folder)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    shutil.rmtree(folder / "tensorboard", ignore_errors=True)
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for pattern in _REPORT_PATTERNS:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


def _holder(path: Path) -> tuple[int | None, str]:
    try:
        parts = path.read_text(encoding="utf-8", errors="replace").split()
        return int(parts[0]), (parts[1] if len(parts) > 1 else "")
    except (OSError, ValueError, IndexError):
        return None, ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _in_use_by(path: Path) -> int | None:
    """pid of the live process holding ``path`` (None when the lock is absent or stale)."""
    if not path.exists():
        return None
    pid, host = _holder(path)
    if pid is None:
        return None
    if host and host != socket.gethostname():
        return pid  # another machine: cannot tell whether it still runs, so treat it as live
    return pid if _alive(pid) else None


class RunLock:
    """``with RunLock(folder):`` — hold ``folder/.lock`` for this process (re-entrant within the process)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False
        self._depth = 0

    @staticmethod
    def check_free(folder: str | Path) -> None:
        """:class:`RunFolderError` when another live process holds ``folder``'s lock (nothing is written)."""
        pid = _in_use_by(Path(folder) / LOCK_NAME)
        if pid is not None and pid != os.getpid():
            raise RunFolderError(f"run folder {folder} is in use by process {pid} (lock file "
                                 f"{Path(folder) / LOCK_NAME}); wait for it or stop it")

    def acquire(self) -> "RunLock":
        if self.held:
            self._depth += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        record = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(3):
            try:
                # complete the moment it appears (a hard link of a written file; fails if the lock exists)
                write_text(self.path, record, exclusive=True)
            except FileExistsError:
                pid = _in_use_by(self.path)
                if pid is not None:
                    raise RunFolderError(f"run folder {self.folder} is in use by process {pid} (lock file "
                                         f"{self.path}); wait for it or stop it") from None
                stale, _ = _holder(self.path)
                _logger.warning("removing the stale lock %s of process %s, which no longer runs", self.path, stale)
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            except KeyboardInterrupt:  # Ctrl-C/SIGTERM right after the link: do not leave our lock behind
                if _holder(self.path) == (os.getpid(), socket.gethostname()):
                    self.path.unlink(missing_ok=True)
                raise
            except OSError as err:
                if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                    raise RunFolderError(f"cannot write into run folder {self.folder}: {err.strerror}") from None
                raise
            self.held = True
            self._depth = 1
            return self
        raise RunFolderError(f"could not take the lock {self.path} (another process keeps taking it)")

    def release(self) -> None:
        if not self.held:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        self.held = False
        pid, _ = _holder(self.path)
        if pid == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
