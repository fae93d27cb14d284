"""A full disk, a read-only folder, paths that are files or folders, and file modes.

Full disk and read-only folder: a small tmpfs is mounted (as root, where ``mount`` works: the real kernel errors
ENOSPC and EROFS); elsewhere the write path is monkeypatched to raise the same OSError. Root ignores mode bits,
so ``chmod`` cannot make a read-only folder here: the read-only case needs the mount (or the monkeypatch)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from tests.reliability.conftest import QUICK, assert_one_line_error, cli, remount_readonly, snapshot, tmpfs


def _fill(folder: Path) -> None:
    """Fill the file system holding ``folder`` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    try:
        with open(folder / "filler2", "wb", buffering=0) as f:
            while True:
                f.write(b"\0")
    except OSError:
        pass


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """(folder on a full file system, how): a full tmpfs, or writes monkeypatched to raise ENOSPC."""
    mnt = tmp_path / "full"
    with tmpfs(mnt, "256k") as mounted:
        if mounted:
            yield mnt, "tmpfs"
            return
        import vaekit.utils as u

        real = u.tempfile.mkstemp

        def mkstemp(*a, **kw):
            fd, name = real(*a, **kw)
            os.close(fd)
            os.unlink(name)
            raise OSError(errno.ENOSPC, "No space left on device", name)
        monkeypatch.setattr(u.tempfile, "mkstemp", mkstemp)
        yield mnt, "monkeypatch"


@pytest.fixture
def readonly(tmp_path, monkeypatch):
    """A folder holding the user's old output file, then made read-only (remount, or EROFS by monkeypatch)."""
    mnt = tmp_path / "ro"
    with tmpfs(mnt, "4m") as mounted:
        (mnt / "out").mkdir()
        (mnt / "out" / "z.npy").write_bytes(b"old output")
        if mounted and remount_readonly(mnt):
            yield mnt
            return
        import vaekit.utils as u

        def mkstemp(*a, dir=None, **kw):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        monkeypatch.setattr(u.tempfile, "mkstemp", mkstemp)
        yield mnt


def test_training_onto_a_full_disk(trained, full_disk, capsys):
    mnt, how = full_disk
    run = mnt / "run"
    if how == "tmpfs":
        shutil.copytree(trained, run, ignore=shutil.ignore_patterns("*.png", "report.html", "figures"))
        _fill(mnt)
    else:
        shutil.copytree(trained, run)
    before = snapshot(run)
    code, _, err = cli(capsys, "train", "--quiet", "--resume", run, "train.steps=40")
    assert_one_line_error(code, err, "no space left")
    after = snapshot(run)
    # the checkpoints, their JSON and the config are exactly as they were; no temporary file is left
    for name in ("last.safetensors", "best.safetensors", "last.json", "best.json", "config.yaml"):
        assert after[name] == before[name], name
    assert not list(run.glob(".*.tmp"))
    code, out, err = cli(capsys, "evaluate", run, "--iw-samples", "2", "--json")
    assert code == 0, err


@pytest.mark.parametrize("command", ["embed", "anomaly", "inpaint", "refine", "sample", "plot"])
def test_app_outputs_onto_a_full_disk_keep_the_old_file(trained, full_disk, capsys, command):
    mnt, how = full_disk
    name = {"embed": "z.npy", "anomaly": "s.csv", "inpaint": "c.npy", "refine": "r.csv", "sample": "s.png",
            "plot": "figures"}[command]
    old = mnt / name
    if command == "plot":
        old.mkdir()
        (old / "samples.png").write_bytes(b"the user's old figure")
    else:
        old.write_bytes(b"the user's old file")
    if how == "tmpfs":
        _fill(mnt)
    before = snapshot(mnt)
    argv = {"embed": ["embed", trained, "--first", "5", "-o", old],
            "anomaly": ["anomaly", trained, "--first", "5", "-k", "2", "--scores", "neg_elbo", "-o", old],
            "inpaint": ["inpaint", trained, "--first", "3", "--mask", "bottom", "--steps", "2", "-o", old],
            "refine": ["refine", trained, "--first", "3", "--steps", "2", "--eval-samples", "2", "-o", old],
            "sample": ["sample", trained, "-n", "4", "-o", old],
            "plot": ["plot", trained, "--kind", "samples", "--out", old]}[command]
    code, _, err = cli(capsys, *argv)
    assert_one_line_error(code, err, "no space left")
    after = snapshot(mnt)
    assert {k: v for k, v in after.items() if not k.startswith("filler")} == \
        {k: v for k, v in before.items() if not k.startswith("filler")}
    assert not [p for p in mnt.rglob(".*.tmp")]


def test_outputs_into_a_read_only_folder(trained, readonly, capsys):
    before = snapshot(readonly)
    for argv in (["embed", trained, "--first", "4", "-o", readonly / "out" / "z.npy"],
                 ["sample", trained, "-n", "4", "-o", readonly / "out" / "s.png"],
                 ["plot", trained, "--kind", "samples", "--out", readonly / "out"],
                 ["train", "--quiet", "--out", readonly / "out" / "run", *QUICK]):
        code, _, err = cli(capsys, *argv)
        assert_one_line_error(code, err, "read-only")
    assert snapshot(readonly) == before


def test_paths_that_are_files_or_folders(trained, tmp_path, capsys):
    (tmp_path / "afile.txt").write_text("mine")
    (tmp_path / "adir").mkdir()
    before = snapshot(tmp_path)
    cases = [(["train", "--quiet", "--out", tmp_path / "afile.txt" / "run", *QUICK], "is a file"),
             (["train", "--quiet", "--out", tmp_path / "afile.txt", *QUICK], "is a file"),
             (["embed", trained, "--first", "3", "-o", tmp_path / "afile.txt" / "z.npy"], "is a file"),
             (["sample", trained, "-o", tmp_path / "adir"], ".png"),
             (["report", trained, "-o", tmp_path / "afile.txt" / "r.html"], None)]
    (tmp_path / "adir.npy").mkdir()
    before = snapshot(tmp_path)
    for argv, needle in cases:
        code, _, err = cli(capsys, *argv)
        assert_one_line_error(code, err, *([needle] if needle else []))
        assert "Errno" not in err
    assert snapshot(tmp_path) == before
    code, _, err = cli(capsys, "embed", trained, "--first", "3", "-o", tmp_path / "adir.npy")
    assert_one_line_error(code, err, "directory")


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(trained, tmp_path, capsys, umask, mode):
    from vaekit.utils import atomic_save_npy, atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_save_npy(tmp_path / "a.npy", [1.0])
        assert cli(capsys, "sample", trained, "-n", "4", "-o", tmp_path / "s.png")[0] == 0
        if umask == 0o002:  # a whole run: checkpoints, config, figures, report
            assert cli(capsys, "train", "--quiet", "--out", tmp_path / "run", *QUICK)[0] == 0
    finally:
        os.umask(old)
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert p.stat().st_mode & 0o777 == mode, p


def test_a_resume_the_disk_refuses_keeps_the_config_it_had(trained, tmp_path, monkeypatch, capsys):
    """Room for the small config.yaml but not for a checkpoint (a nearly full disk): the resume fails, and the
    config it had already rewritten (train.steps) is put back, so the folder is as it was."""
    import vaekit.utils as u

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = snapshot(run)
    real = u.tempfile.mkstemp

    def mkstemp(*a, prefix="", **kw):
        if ".safetensors" in prefix or prefix.startswith((".last.json", ".best.json", ".metrics")):
            raise OSError(errno.ENOSPC, "No space left on device", prefix)
        return real(*a, prefix=prefix, **kw)

    monkeypatch.setattr(u.tempfile, "mkstemp", mkstemp)
    code, _, err = cli(capsys, "train", "--quiet", "--resume", run, "train.steps=300")
    assert_one_line_error(code, err, "no space left")
    after = snapshot(run)
    for name in ("last.safetensors", "best.safetensors", "config.yaml"):
        assert after[name] == before[name], name
