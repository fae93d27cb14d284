"""Verified downloads: stream each file to a temporary name next to its target, check its checksum, then rename.

Only called on request (``vaekit datasets --download NAME`` or ``vaekit.data.download``); loading never
downloads. Mirrors are tried in order; a checksum mismatch on one mirror moves on to the next.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vaekit.data.readers import file_digest

__all__ = ["DownloadItem", "fetch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadItem:
    """One file to fetch.

    filename: name under the dataset folder. urls: mirrors, tried in order.
    md5 / sha256: expected digest of the downloaded bytes (at least one of md5, sha256, verify is required).
    verify: extra check of the downloaded file's content (raises ValueError), for files without a published hash.
    unpack_tar: extract the archive's regular files into the dataset folder and delete the archive.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    verify: Callable[[Path], None] | None = field(default=None, compare=False)
    unpack_tar: bool = False

    def __post_init__(self) -> None:
        assert self.md5 or self.sha256 or self.verify, f"{self.filename}: no way to verify the download"


def _stream(url: str, dest: Path, timeout: float) -> dict[str, str]:
    """Download url into dest; returns its md5 and sha256."""
    hashes = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    req = urllib.request.Request(url, headers={"User-Agent": "vaekit"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        for chunk in iter(lambda: resp.read(1 << 20), b""):
            out.write(chunk)
            for h in hashes.values():
                h.update(chunk)
    return {k: h.hexdigest() for k, h in hashes.items()}


def _check(item: DownloadItem, path: Path, digests: dict[str, str]) -> None:
    for algo in ("md5", "sha256"):
        want = getattr(item, algo)
        if want and digests[algo] != want.lower():
            raise ValueError(f"{item.filename}: {algo} {digests[algo]} != expected {want}")
    if item.verify is not None:
        item.verify(path)


def _unpack(archive: Path, folder: Path) -> None:
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: the standard safe filter
            tar.extractall(folder, members=members, filter="data")
        else:  # older Pythons: refuse paths that leave the folder
            for m in members:
                if m.name.startswith("/") or ".." in Path(m.name).parts:
                    raise ValueError(f"{archive}: unsafe member path {m.name!r}; not extracting")
            tar.extractall(folder, members=members)
    archive.unlink()


def fetch(items: tuple[DownloadItem, ...], folder: str | Path, *, timeout: float = 60.0) -> list[Path]:
    """Download and verify ``items`` into ``folder`` (created if needed); returns the paths written.

    A file already present is kept when it passes its checksum. Raises RuntimeError naming every URL tried when
    a file cannot be obtained intact.
    """
    folder = Path(folder).expanduser()
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # removed again if nothing arrives
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch_into(items, folder, timeout)
    except BaseException:
        for p in created:  # innermost first; only folders this call made and left empty
            try:
                p.rmdir()
            except OSError:
                break
        raise


def _fetch_into(items: tuple[DownloadItem, ...], folder: Path, timeout: float) -> list[Path]:
    written = []
    for item in items:
        target = folder / item.filename
        if target.exists() and not item.unpack_tar:
            try:
                _check(item, target, {a: file_digest(target, a) for a in ("md5", "sha256")})
                written.append(target)
                continue
            except ValueError:
                log.warning("%s exists but fails its checksum; downloading it again", target)
        problems = []
        for url in item.urls:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{item.filename}.", suffix=".part", dir=folder)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                log.info("downloading %s", url)
                _check(item, tmp, _stream(url, tmp, timeout))
                os.replace(tmp, target)
                break
            except (urllib.error.URLError, OSError, ValueError) as e:
                problems.append(f"{url}: {e}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise RuntimeError(f"could not download {item.filename} intact: " + "; ".join(problems))
        if item.unpack_tar:
            _unpack(target, folder)
        written.append(target)
    return written

