"""Fault injection for the reliability guarantees: helpers to snapshot a folder, to run the CLI and check for
the one-line error, and small tmpfs mounts (a full disk, a read-only folder) where ``mount`` is allowed.

Where mounting is not allowed (not root, a container without CAP_SYS_ADMIN) the same faults are injected by
monkeypatching the write path to raise the OSError the kernel would raise (ENOSPC, EROFS)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
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


# `vaekit` processes for the kill / lock tests are forked from one server process that imported vaekit, torch and
# scikit-learn once per session (multiprocessing's forkserver; a fresh interpreter that never ran a parallel op, so
# forking it is safe): each is still a process of its own running the CLI's main(), killed or raced as before, but
# without a new interpreter's ~10 s of imports every time.
_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["torch", "torch._dynamo", "sklearn.datasets", "sklearn.neighbors", "vaekit.cli",
                                    "vaekit.run", "vaekit.training", "vaekit.evaluation", "vaekit.plots",
                                    "tests.reliability.conftest"])


def _cli_process_main(argv: list[str], out: str, err: str) -> None:
    """The body of a forked `vaekit ARGV` process: stdout/stderr to files, one thread (as OMP_NUM_THREADS=1 in
    subprocess_env), exit code = main()'s."""
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)
    sys.exit(main(argv))


class VaekitProcess:
    """`vaekit ARGV` in its own process (forked from the session's forkserver), with Popen's interface as the
    tests use it: pid, poll(), wait(), kill(), send_signal(), returncode; stderr() gives what it wrote there."""

    def __init__(self, argv: list[str]) -> None:
        logs = Path(tempfile.mkdtemp(prefix="vaekit-process-"))
        self._out, self._err = logs / "stdout", logs / "stderr"
        self._proc = _FORKSERVER.Process(target=_cli_process_main, args=(argv, str(self._out), str(self._err)))
        self._proc.start()
        self.pid = self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode  # -N when killed by signal N, as Popen's

    def poll(self) -> int | None:
        return self._proc.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise subprocess.TimeoutExpired(f"vaekit process {self.pid}", timeout)
        return self._proc.exitcode

    def kill(self) -> None:
        self._proc.kill()

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def stderr(self) -> str:
        return self._err.read_text() if self._err.exists() else ""


def vaekit_process(*argv: str) -> VaekitProcess:
    return VaekitProcess([str(a) for a in argv])


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
