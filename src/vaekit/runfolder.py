"""A run folder as one unit: what counts as a vaekit run, its lock, and the repairs a kill can call for.

- A run folder holds the marker ``.vaekit-run`` (written first when a run is created) or, for runs made before
  the marker existed, a checkpoint. A non-empty folder that is neither is the user's own and is refused.
- While a process writes a run it holds ``.lock``: an exclusive ``flock`` on the file (released by the kernel
  when the process dies, however it dies) and the owner's pid inside it. A second process is refused with a
  message naming the owner; a lock file left by a dead process is detected (no flock held on it), explained in
  a warning and taken over.
- Taking the lock also repairs what a kill -9 can leave: ``.*.tmp`` files of interrupted atomic writes are
  removed, and a checkpoint's readable ``*.json`` copy that lags the JSON in its safetensors header is
  rewritten from the header (the header is the one that counts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Iterator

from vaekit.utils import atomic_write_text, remove_stale_temps

__all__ = ["RunFolderError", "MARKER", "LOCK", "RUN_FILES", "folder_state", "run_lock", "check_not_in_use",
           "repair_checkpoint_json", "describe_foreign", "write_marker"]

log = logging.getLogger("vaekit.run")

MARKER = ".vaekit-run"
LOCK = ".lock"
# every name vaekit writes at the top of a run folder (what a restart from scratch may clear)
RUN_FILES = ("config.yaml", "metrics.jsonl", "best.safetensors", "last.safetensors", "best.json", "last.json",
             "samples.png", "reconstructions.png", "summary.json", "report.html", "latent_snapshots.npz")


class RunFolderError(ValueError):
    """A folder that cannot be used as asked: someone else's files, a run in use, a path that is a file."""


def folder_state(folder: str | Path) -> str:
    """``"missing"``, ``"empty"``, ``"run"`` (a vaekit run with a checkpoint), ``"new-run"`` (a vaekit run killed
    before its first checkpoint) or ``"foreign"`` (a non-empty folder that is not a vaekit run). RunFolderError
    if ``folder`` is a file."""
    folder = Path(folder)
    if not folder.exists():
        for parent in folder.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RunFolderError(f"cannot create run folder {str(folder)!r}: {str(parent)!r} is a file")
                break
        return "missing"
    if not folder.is_dir():
        raise RunFolderError(f"run folder {str(folder)!r} is a file, not a folder; choose another --out")
    names = {p.name for p in folder.iterdir()
             if p.name != LOCK and not (p.name.startswith(".") and p.name.endswith(".tmp"))}
    if not names:
        return "empty"
    if "last.safetensors" in names or "best.safetensors" in names:
        return "run"
    if MARKER in names:
        return "new-run"
    return "foreign"


def describe_foreign(folder: Path) -> str:
    """One-line refusal for a folder of the user's own files."""
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
    return (f"{str(folder)!r} is not empty and is not a vaekit run (it holds {shown}); vaekit never writes into "
            f"a folder of your own files: choose a new or empty --out")


def repair_checkpoint_json(folder: str | Path) -> list[Path]:
    """Rewrite ``best.json`` / ``last.json`` from their checkpoint's header where they differ (a kill between the
    two renames of ``save_checkpoint``). Returns the files rewritten; unreadable checkpoints are left alone."""
    from safetensors import safe_open

    fixed = []
    for name in ("best", "last"):
        ckpt = Path(folder) / f"{name}.safetensors"
        if not ckpt.is_file():
            continue
        try:
            with safe_open(str(ckpt), framework="pt") as f:
                text = (f.metadata() or {})["vaekit"] + "\n"
        except Exception:  # noqa: BLE001 - a corrupt checkpoint is reported by whoever loads it
            continue
        copy = ckpt.with_suffix(".json")
        try:
            same = copy.read_text(encoding="utf-8") == text
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            atomic_write_text(copy, text)
            fixed.append(copy)
    return fixed


def _read_owner(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 200).decode("utf-8", "replace").strip()


def check_not_in_use(folder: str | Path) -> None:
    """RunFolderError naming the owner when a live process holds the folder's lock (nothing is written)."""
    import fcntl

    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        owner = _read_owner(fd) or "another process"
        raise RunFolderError(f"run folder {str(folder)!r} is in use by {owner}; wait for it to finish, or stop "
                             f"it, before writing this run") from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(folder: str | Path, *, repair: bool = True) -> Iterator[Path]:
    """Hold the run folder's lock for the block (the folder must exist). RunFolderError naming the owner when
    another live process holds it. On entry (``repair``): stale temporary files removed, lagging JSON copies of
    checkpoints rewritten. The lock file is removed on exit."""
    import fcntl

    folder = Path(folder)
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd) or "another process"
            os.close(fd)
            raise RunFolderError(f"run folder {str(folder)!r} is in use by {owner}; wait for it to finish, or "
                                 f"stop it, before writing this run") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and our lock: try again on the new one
    try:
        stale = _read_owner(fd)
        if stale:
            log.warning("run folder %s: taking over a stale lock left by %s, which is no longer running "
                        "(killed?); the run is checked and repaired", folder, stale)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
        os.fsync(fd)
        if repair:
            for p in remove_stale_temps(folder):
                log.info("removed %s, left by an interrupted write", p)
            for p in repair_checkpoint_json(folder):
                log.info("rewrote %s from its checkpoint's header", p)
        yield folder
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def write_marker(folder: Path) -> None:
    """Mark ``folder`` as a vaekit run (before anything else is written into it)."""
    import vaekit

    atomic_write_text(folder / MARKER, json.dumps({"vaekit": vaekit.__version__}) + "\n")
