"""Checksum-verified downloads into the dendrix data folder (``$DENDRIX_DATA`` or ``~/.cache/dendrix``).

Nothing is trusted unverified: a file is kept only if its MD5 matches the checksum manifest, either the one the
data publisher puts beside the files (for SHD/SSC: ``md5sums.txt`` at https://zenkelab.org/datasets/) or a
manifest the user supplies (``<md5>  <file name>`` per line, as written by ``md5sum``). Downloads go to a
``.part`` file first, so an interrupted download never looks complete. Gzip files are decompressed with their
CRC checked.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from .base import DatasetError, data_root

__all__ = ["SHD_BASE_URL", "SHD_FILES", "md5_file", "read_manifest", "fetch", "gunzip_verified", "download_dataset"]

SHD_BASE_URL = "https://zenkelab.org/datasets/"  # Cramer et al. 2020, Spiking Heidelberg Datasets
SHD_MANIFEST = "md5sums.txt"
SHD_FILES = {
    "shd": {"train": "shd_train.h5.gz", "test": "shd_test.h5.gz"},
    "ssc": {"train": "ssc_train.h5.gz", "valid": "ssc_valid.h5.gz", "test": "ssc_test.h5.gz"},
}


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 digest of the file at ``path``, read in ``chunk``-byte blocks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _parse_manifest(text: str, source: str) -> dict[str, str]:
    sums = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 32 or any(c not in "0123456789abcdefABCDEF" for c in parts[0]):
            raise DatasetError(f"checksum manifest {source!r}: expected '<md5> <file name>' lines, got {line!r}")
        sums[Path(parts[1].lstrip("*")).name] = parts[0].lower()
    if not sums:
        raise DatasetError(f"checksum manifest {source!r} lists no files")
    return sums


def read_manifest(source: str | Path) -> dict[str, str]:
    """``{file name: md5}`` from a local manifest file or a URL."""
    src = str(source)
    if "://" in src:
        try:
            with urllib.request.urlopen(src, timeout=60) as r:
                text = r.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as err:
            raise DatasetError(f"cannot fetch checksum manifest {src}: {err}; download it by hand and pass "
                               f"--checksums FILE") from None
        return _parse_manifest(text, src)
    path = Path(src).expanduser()
    if not path.is_file():
        raise DatasetError(f"checksum manifest {str(path)!r} not found")
    return _parse_manifest(path.read_text(), str(path))


def fetch(url: str, dest: str | Path, md5: str) -> Path:
    """Download ``url`` to ``dest`` and check its MD5; an existing ``dest`` with the right checksum is reused.
    A mismatch deletes the download and raises :class:`DatasetError`."""
    dest = Path(dest)
    if dest.is_file() and md5_file(dest) == md5.lower():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except (urllib.error.URLError, OSError) as err:
        part.unlink(missing_ok=True)
        raise DatasetError(f"download of {url} failed: {err}; fetch it by hand into {str(dest.parent)!r}") from None
    got = md5_file(part)
    if got != md5.lower():
        part.unlink(missing_ok=True)
        raise DatasetError(f"checksum mismatch for {url}: md5 {got}, expected {md5.lower()}; the download was deleted")
    part.replace(dest)
    return dest


def gunzip_verified(src: str | Path, dest: str | Path | None = None) -> Path:
    """Decompress ``src`` (``.gz``) to ``dest`` (default: ``src`` without ``.gz``), checking the gzip CRC and
    length; a truncated or corrupt archive raises :class:`DatasetError` and leaves no output."""
    src = Path(src)
    dest = Path(dest) if dest is not None else src.with_suffix("")
    part = dest.with_name(dest.name + ".part")
    try:
        with gzip.open(src, "rb") as fin, open(part, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        part.unlink(missing_ok=True)
        raise DatasetError(f"{str(src)!r} is not a valid gzip file ({err}); delete it and download it again") from None
    part.replace(dest)
    return dest


def download_dataset(name: str, root=None, checksums: str | Path | None = None, splits=None,
                     base_url: str = SHD_BASE_URL) -> list[Path]:
    """Download and decompress the SHD or SSC files into ``root/<name>/``; returns the ``.h5`` paths.

    ``checksums``: a manifest file or URL; default ``base_url + "md5sums.txt"`` (published with the data)."""
    if name not in SHD_FILES:
        raise DatasetError(f"download supports {list(SHD_FILES)}, got {name!r}")
    files = SHD_FILES[name]
    chosen = list(files) if not splits else list(splits)
    bad = [s for s in chosen if s not in files]
    if bad:
        raise DatasetError(f"{name} has splits {list(files)}, got {bad[0]!r}")
    manifest = read_manifest(checksums if checksums is not None else base_url + SHD_MANIFEST)
    folder = data_root(root) / name
    out = []
    for split in chosen:
        gz_name = files[split]
        if gz_name not in manifest:
            raise DatasetError(f"checksum manifest has no entry for {gz_name}; cannot verify the download")
        gz_path = fetch(base_url + gz_name, folder / gz_name, manifest[gz_name])
        out.append(gunzip_verified(gz_path))
    return out
