"""Checksum-verified downloads into the dendrix data folder (``$DENDRIX_DATA`` or ``~/.cache/dendrix``).

Nothing is trusted unverified: a file is kept only if its MD5 matches the checksum manifest, either the one the
data publisher puts beside the files (for SHD/SSC: ``md5sums.txt`` at https://zenkelab.org/datasets/) or a
manifest the user supplies (``<md5>  <file name>`` per line, as written by ``md5sum``). Downloads go to a
``.part`` file first, so an interrupted download never looks complete. Gzip files are decompressed with their
CRC checked.

The event-camera archives (:data:`EVENT_FILES`) carry pinned checksums (``("md5" | "sha256", hex digest)``),
verified before anything is extracted; archives are extracted with every member's path checked (nothing
outside the target folder). DVS128 Gesture cannot be fetched by a script (IBM's page needs a browser): put
``DvsGesture.tar.gz`` in ``<root>/dvsgesture/`` and :func:`download_event_dataset` verifies and extracts it.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tarfile
import zipfile
import urllib.error
import urllib.request
from pathlib import Path

from ..files import atomic_write
from .base import DatasetError, data_root

__all__ = ["SHD_BASE_URL", "SHD_FILES", "EVENT_FILES", "md5_file", "sha256_file", "file_digest", "read_manifest",
           "fetch", "gunzip_verified", "extract_archive", "download_event_dataset", "download_dataset"]

SHD_BASE_URL = "https://zenkelab.org/datasets/"  # Cramer et al. 2020, Spiking Heidelberg Datasets
SHD_MANIFEST = "md5sums.txt"
SHD_FILES = {
    "shd": {"train": "shd_train.h5.gz", "test": "shd_test.h5.gz"},
    "ssc": {"train": "ssc_train.h5.gz", "valid": "ssc_valid.h5.gz", "test": "ssc_test.h5.gz"},
}


def file_digest(path: str | Path, algorithm: str = "md5", chunk: int = 1 << 20) -> str:
    """Hex digest of a file with ``algorithm`` ``"md5"`` or ``"sha256"``."""
    if algorithm not in ("md5", "sha256"):
        raise DatasetError(f"checksum algorithm must be 'md5' or 'sha256', got {algorithm!r}")
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 digest of the file at ``path``."""
    return file_digest(path, "md5", chunk)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of the file at ``path``."""
    return file_digest(path, "sha256", chunk)


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


def fetch(url: str, dest: str | Path, md5: str | None = None, sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` and check its MD5 (or SHA-256); an existing ``dest`` with the right checksum
    is reused. A mismatch deletes the download and raises :class:`DatasetError`."""
    if (md5 is None) == (sha256 is None):
        raise DatasetError("fetch needs exactly one checksum: md5=... or sha256=...")
    algorithm, digest = ("md5", md5) if md5 is not None else ("sha256", sha256)
    dest = Path(dest)
    if dest.is_file() and file_digest(dest, algorithm) == digest.lower():
        return dest

    def fetch(part: str) -> None:  # the checksum is checked before the file takes its name
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except (urllib.error.URLError, OSError) as err:
            raise DatasetError(f"download of {url} failed: {err}; fetch it by hand into "
                               f"{str(dest.parent)!r}") from None
        got = file_digest(part, algorithm)
        if got != digest.lower():
            raise DatasetError(f"checksum mismatch for {url}: {algorithm} {got}, expected {digest.lower()}; "
                               f"the download was deleted")
    atomic_write(dest, fetch)
    return dest


def gunzip_verified(src: str | Path, dest: str | Path | None = None) -> Path:
    """Decompress ``src`` (``.gz``) to ``dest`` (default: ``src`` without ``.gz``), checking the gzip CRC and
    length; a truncated or corrupt archive raises :class:`DatasetError` and leaves no output."""
    src = Path(src)
    dest = Path(dest) if dest is not None else src.with_suffix("")

    def unpack(part: str) -> None:
        try:
            with gzip.open(src, "rb") as fin, open(part, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise DatasetError(f"{str(src)!r} is not a valid gzip file ({err}); delete it and download it "
                               "again") from None
    atomic_write(dest, unpack)
    return dest


def download_dataset(name: str, root=None, checksums: str | Path | None = None, splits=None,
                     base_url: str = SHD_BASE_URL) -> list[Path]:
    """Download and decompress the SHD or SSC files into ``root/<name>/``; returns the ``.h5`` paths.

    ``checksums``: a manifest file or URL; default ``base_url + "md5sums.txt"`` (published with the data)."""
    if name in EVENT_FILES:
        if checksums is not None or splits:
            raise DatasetError(f"{name}: its checksums are pinned and it has no download splits; drop "
                               f"--checksums/--split")
        return download_event_dataset(name, root=root)
    if name not in SHD_FILES:
        raise DatasetError(f"download supports {list(SHD_FILES) + list(EVENT_FILES)}, got {name!r}")
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


# Event-camera archives: (file name, URL or None for a manual download, (algorithm, digest)). The MD5 values are
# the pins published with the readers of tonic (N-MNIST) and SpikingJelly (CIFAR10-DVS, DVS128 Gesture); they
# could not be recomputed here (no network), so they are used as published.
_NMNIST_DROPBOX = "https://www.dropbox.com/sh/tg2ljlbmtzygrag/"  # Orchard et al. 2015, the authors' folder
_FIGSHARE = "https://ndownloader.figshare.com/files/"  # Li et al. 2017, CIFAR10-DVS, article 4724671
EVENT_FILES: dict[str, list[tuple[str, str | None, tuple[str, str]]]] = {
    "nmnist": [
        ("Train.zip", _NMNIST_DROPBOX + "AABlMOuR15ugeOxMCX0Pvoxga/Train.zip?dl=1",
         ("md5", "20959b8e626244a1b502305a9e6e2031")),
        ("Test.zip", _NMNIST_DROPBOX + "AADSKgJ2CjaBWh75HnTNZyhca/Test.zip?dl=1",
         ("md5", "69ca8762b2fe404d9b9bad1103e97832")),
    ],
    "cifar10dvs": [(f"{cls}.zip", _FIGSHARE + fid, ("md5", digest)) for cls, fid, digest in (
        ("airplane", "7712788", "0afd5c4bf9ae06af762a77b180354fdd"),
        ("automobile", "7712791", "8438dfeba3bc970c94962d995b1b9bdd"),
        ("bird", "7712794", "a9c207c91c55b9dc2002dc21c684d785"),
        ("cat", "7712812", "52c63c677c2b15fa5146a8daf4d56687"),
        ("deer", "7712815", "b6bf21f6c04d21ba4e23fc3e36c8a4a3"),
        ("dog", "7712818", "f379ebdf6703d16e0a690782e62639c3"),
        ("frog", "7712842", "cad6ed91214b1c7388a5f6ee56d08803"),
        ("horse", "7712851", "e7cbbf77bec584ffbf913f00e682782a"),
        ("ship", "7712836", "41c7bd7d6b251be82557c6cce9a7d5c9"),
        ("truck", "7712839", "89f3922fd147d9aeff89e76a2b0b70a7"),
    )],
    "dvsgesture": [("DvsGesture.tar.gz", None, ("md5", "8a5c71fb11e24e5ca5b11866ca6c00a1"))],
}
DVSGESTURE_PAGE = "https://research.ibm.com/interactive/dvsgesture/"


def _inside(folder: Path, member: str) -> bool:
    target = (folder / member).resolve()
    return target == folder or folder in target.parents


def extract_archive(archive: str | Path, dest: str | Path) -> Path:
    """Extract a ``.zip`` or ``.tar.gz`` into ``dest``, refusing members that would land outside it (absolute
    paths, ``..``, links). A corrupt archive raises :class:`DatasetError` naming it."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    folder = dest.resolve()
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                bad = [m for m in zf.namelist() if not _inside(folder, m)]
                if bad:
                    raise DatasetError(f"{str(archive)!r}: member {bad[0]!r} would be written outside {str(dest)!r}")
                zf.extractall(dest)
        else:
            with tarfile.open(archive, "r:*") as tf:
                tf.extractall(dest, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise DatasetError(f"{str(archive)!r} is not a valid archive ({err}); delete it and download it again") from None
    return dest


def download_event_dataset(name: str, root=None) -> list[Path]:
    """Fetch (or, for DVS128 Gesture, find) the archives of event data set ``name`` in ``root/<name>/``, verify
    their pinned checksums and extract them there; returns the archive paths."""
    if name not in EVENT_FILES:
        raise DatasetError(f"event data sets are {list(EVENT_FILES)}, got {name!r}")
    folder = data_root(root) / name
    out = []
    for file_name, url, (algorithm, digest) in EVENT_FILES[name]:
        dest = folder / file_name
        if url is None:
            if not dest.is_file():
                raise DatasetError(f"{name}: download {file_name} by hand from {DVSGESTURE_PAGE} (the page needs a "
                                   f"browser) into {str(folder)!r}, then run this again to verify and extract it")
            got = file_digest(dest, algorithm)
            if got != digest:
                raise DatasetError(f"{str(dest)!r}: {algorithm} {got}, expected {digest}; the file is corrupt or "
                                   f"not the published archive; download it again")
        else:
            fetch(url, dest, **{algorithm: digest})
        extract_archive(dest, folder)
        out.append(dest)
    return out
