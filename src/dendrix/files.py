"""The one way the package writes a file: to a temporary name beside it, ``fsync``, then an atomic rename.

A reader (or a crash, a full disk, SIGKILL) never sees half a file: either the old file or the new one.
Every module that writes (run folders, reports, plots, exports, data caches, lock files) goes through
:func:`atomic_write`; ``tests/reliability/test_checkpoints.py::test_no_module_writes_a_file_directly`` reads the
sources with ``ast`` and fails on a write anywhere else. Usable from every floor (imports nothing of dendrix).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "write_text", "write_bytes", "write_json", "write_csv", "read_json_mapping"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, writer: Callable[[str], None], *, exclusive: bool = False) -> None:
    """Call ``writer(tmp_path)``, fsync the result, then move it onto ``path`` atomically (no partial files).

    The temporary file is in ``path``'s folder and ends with ``path``'s suffix (writers such as ``np.savez``
    add a suffix otherwise). A failing writer, fsync or rename leaves the old file (if any) and no temporary.
    ``exclusive``: fail with ``FileExistsError`` when ``path`` exists (a hard link instead of the rename: a lock
    file whose content is complete the moment it appears).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), exclusive=exclusive)


def write_text(path: str | Path, text: str, *, exclusive: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), exclusive=exclusive)


def write_json(path: str | Path, data: Any, **dump) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (non-JSON values as their ``str`` unless
    ``default=`` says otherwise)."""
    dump = {"indent": 2, "default": str, **dump}
    write_text(path, json.dumps(data, **dump) + "\n")


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts; the union of their keys in first-seen order as columns) to ``path`` as CSV, atomically."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def read_json_mapping(path: str | Path, error: type[Exception], consequence: str) -> dict:
    """The JSON object in ``path``, or ``error`` in one line: the file, why, and ``consequence`` (what the
    caller cannot do: "the run config cannot be read", "restore it to resume")."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise error(f"{path} is not valid JSON ({type(err).__name__}); {consequence}") from None
    if not isinstance(data, dict):
        raise error(f"{path} must hold a mapping, got {type(data).__name__}")
    return data
