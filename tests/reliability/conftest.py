"""Fault injection for the reliability guarantees: helpers to snapshot a folder, to run the CLI and check for
the one-line error, and small tmpfs mounts (a full disk, a read-only folder) where ``mount`` is allowed.

Where mounting is not allowed (not root, a container without CAP_SYS_ADMIN) the same faults are injected by
monkeypatching the write path to raise the OSError the kernel would raise (ENOSPC, EROFS)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from vaekit.cli import main

QUICK = ["train.steps=20", "train.val_every=10", "model.hidden=[16]", "model.latent_dim=2", "eval.iw_samples=5"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: relative path -> (bytes, mode). Equal snapshots: nothing on disk changed."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mode)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """Exit 2, no traceback, and the last stderr line is the one ``vaekit CMD: error: ...`` line."""
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vaekit ") and ": error: " in last, err
    for n in needles:
        assert n.lower() in last.lower(), last
    return last


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    env["OMP_NUM_THREADS"] = "1"
    return env


def vaekit_process(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vaekit.cli", *map(str, argv)], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _mount(*args: str) -> bool:
    """Run ``mount``; False where it is not allowed (or VAEKIT_TEST_NO_MOUNT=1, to test the fallback)."""
    if os.geteuid() != 0 or os.environ.get("VAEKIT_TEST_NO_MOUNT") == "1":
        return False
    try:
        return subprocess.run(["mount", *args], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[bool]:
    """Mount a tmpfs of ``size`` on ``path`` for the block; yields False (nothing mounted) where not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    ok = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def remount_readonly(path: Path) -> bool:
    return _mount("-o", "remount,ro", str(path))


@pytest.fixture(autouse=True)
def _process_state_restored():
    """The CLI run in-process tunes the process as `vaekit` would (denormal flush, threads, RNG); undo it so
    later test modules see the process as they expect."""
    from vaekit.process_state import preserve_process_state

    with preserve_process_state():
        yield


@pytest.fixture(scope="package")
def trained_out(tmp_path_factory) -> tuple[Path, str]:
    """A tiny trained run on the bundled digits (read-only for the tests: copy it to change it) and what
    `vaekit train` printed."""
    import io

    from vaekit.process_state import preserve_process_state

    run_dir = tmp_path_factory.mktemp("rel") / "run"
    buf = io.StringIO()
    with preserve_process_state(), contextlib.redirect_stdout(buf):
        assert main(["train", "--quiet", "--out", str(run_dir), *QUICK]) == 0
    return run_dir, buf.getvalue()


@pytest.fixture(scope="package")
def trained(trained_out) -> Path:
    return trained_out[0]
