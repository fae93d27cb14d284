"""How examples are held (data.storage): uint8 in memory, memory-mapped .npy shards and streamed image files
give the float32 path's batches and the same trained weights bit for bit; streamed data resume exactly after
kill -9 and are read in disjoint rank shards; unreadable files are skipped with a count or a one-line error."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.reliability.conftest import assert_one_line_error, cli, vaekit_process
from vaekit.data import load_data
from vaekit.data.rows import ArrayRows, TensorRows
from vaekit.data.stream import FileRows

@pytest.fixture(autouse=True)
def _no_report(monkeypatch):
    """The run report's figures are not what these tests look at (and cost seconds per run)."""
    import importlib

    monkeypatch.setattr(importlib.import_module("vaekit.runs.finish"), "write_report_safely", lambda *a, **k: None)


TINY = ["model.hidden=[8]", "model.latent_dim=2", "train.batch_size=16"]


def _images(folder: Path, n: int = 60, size: int = 6) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        (folder / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "ab"[i % 2] / f"{i:03d}.png")
    return folder


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "last.safetensors"))


def _same(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_uint8_storage_same_batches_and_run_bit_for_bit(tmp_path, capsys):
    x = np.random.default_rng(1).integers(0, 256, (90, 1, 5, 5), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    f32 = load_data("arrays", path=str(tmp_path / "x.npy"))
    mem = load_data("arrays", path=str(tmp_path / "x.npy"), storage="memory")
    assert isinstance(mem.train.x, TensorRows) and mem.train.x.nbytes * 4 == f32.train.x.numel() * 4
    idx = torch.tensor([5, 0, 7])
    assert torch.equal(mem.train.x.take(idx, "cpu"), f32.train.x[idx])  # the same float32 values
    for storage in ("float32", "memory"):
        code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / storage, "data.name=arrays", f"data.path={tmp_path / 'x.npy'}",
                           f"data.storage={storage}", "train.steps=8", "data.binarize=dynamic", *TINY)
        assert code == 0, err
    assert _same(tmp_path / "float32", tmp_path / "memory")
    m = lambda s: (tmp_path / s / "metrics.jsonl").read_text().replace("samples_per_s", "")  # noqa: E731
    assert [json.loads(r)["loss"] for r in m("float32").splitlines()] == [json.loads(r)["loss"] for r in m("memory").splitlines()]


def test_mnist_uint8_is_a_quarter_of_float32():
    root = os.environ.get("VAEKIT_DATA_DIR")
    if not root or not (Path(root) / "mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("mnist not found: set VAEKIT_DATA_DIR to a folder holding it")
    mem = load_data("mnist", data_dir=root, storage="memory")
    assert isinstance(mem.train.x, TensorRows) and mem.train.x.nbytes == 54000 * 784  # float32: 4x this
    assert float(mem.test.x.take(torch.arange(100), "cpu").max()) == 1.0


def test_mmap_shards_read_per_batch_with_labels(tmp_path, capsys):
    x = np.random.default_rng(2).integers(0, 256, (70, 1, 4, 4), dtype=np.uint8)
    (tmp_path / "shards").mkdir()
    for k, part in enumerate(np.array_split(x, 3)):
        np.save(tmp_path / "shards" / f"images-{k:05d}.npy", part)
    np.save(tmp_path / "shards/labels.npy", np.arange(70) % 3)
    d = load_data("arrays", path=str(tmp_path / "shards"), storage="mmap")
    assert isinstance(d.train.x, ArrayRows) and d.train.x.nbytes == 0 and d.n_levels == 256
    rows = d.train.x
    rows.drop_every = 1  # pages released after every read: values still right
    got = rows.take(torch.tensor([3, 0, 3]), "cpu")
    g = rows.index[[3, 0, 3]]
    assert torch.equal(got, torch.from_numpy(x[g]).float() / 255) and torch.equal(d.train.y[[3, 0]], torch.from_numpy(g[:2] % 3))
    for storage in ("memory", "mmap"):
        code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / storage, "data.name=arrays",
                           f"data.path={tmp_path / 'shards'}", f"data.storage={storage}", "train.steps=6", *TINY)
        assert code == 0, err
    assert _same(tmp_path / "memory", tmp_path / "mmap")
    np.save(tmp_path / "shards/images-00009.npy", np.zeros((2, 1, 3, 3), np.uint8))
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "bad", "data.name=arrays", f"data.path={tmp_path / 'shards'}",
                       "data.storage=mmap", *TINY)
    assert_one_line_error(code, err, "differ in example shape")


def test_stream_matches_memory_and_zip(tmp_path, capsys):
    folder = _images(tmp_path / "imgs")
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as z:
        for f in sorted(folder.rglob("*.png")):
            z.write(f, f.relative_to(folder).as_posix())
    mem = load_data("image-folder", path=str(folder), storage="memory")
    for path in (folder, tmp_path / "imgs.zip"):
        s = load_data("image-folder", path=str(path), storage="stream", workers=1)
        assert isinstance(s.train.x, FileRows) and torch.equal(s.train.y, mem.train.y)
        assert torch.equal(s.train.values(), mem.train.values()) and torch.equal(s.test.values(), mem.test.values())
    for storage in ("memory", "stream"):
        code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / storage, "data.name=image-folder", f"data.path={folder}",
                           f"data.storage={storage}", "train.steps=7", "data.workers=2", *TINY)
        assert code == 0, err
    assert _same(tmp_path / "memory", tmp_path / "stream")


def _archives(folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The images of ``folder`` as a .zip and as a .tar whose members are stored as "./a/000.png" (tar -C dir .)."""
    files = sorted(folder.rglob("*.png"))
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as z:
        for f in files:
            z.write(f, f.relative_to(folder).as_posix())
    with tarfile.open(tmp_path / "imgs.tar", "w") as t:
        for f in files:
            t.add(f, "./" + f.relative_to(folder).as_posix())
    return tmp_path / "imgs.zip", tmp_path / "imgs.tar"


def test_zip_and_tar_archives_give_the_folders_data_streamed_and_in_memory(tmp_path, capsys):
    folder = _images(tmp_path / "imgs")
    mem = load_data("image-folder", path=str(folder), storage="memory")
    for archive in _archives(folder, tmp_path):
        for storage in ("stream", "memory", "auto"):  # auto: small, so held in memory
            d = load_data("image-folder", path=str(archive), storage=storage, workers=2)
            assert isinstance(d.train.x, FileRows) == (storage == "stream"), (archive, storage)
            assert torch.equal(d.train.values(), mem.train.values()) and torch.equal(d.train.y, mem.train.y), (archive, storage)
            assert torch.equal(d.test.y, mem.test.y)
    code, out, err = cli(capsys, "datasets", "--prepare", tmp_path / "imgs.tar", "--out", tmp_path / "shards",
                         "--workers", "2")
    assert code == 0, err
    shards = load_data("arrays", path=str(tmp_path / "shards"), storage="mmap")
    assert torch.equal(shards.train.values(), mem.train.values()) and torch.equal(shards.train.y, mem.train.y)
    shutil.rmtree(folder / "b")  # the archive rewritten in place is read again, not from the first one's index
    _, tar = _archives(folder, tmp_path)
    only_a = load_data("image-folder", path=str(folder), storage="memory")
    again = load_data("image-folder", path=str(tar), storage="stream", workers=1)
    assert torch.equal(again.train.values(), only_a.train.values()) and again.train.y is None


def test_damaged_and_compressed_tar_archives_are_one_line_errors(tmp_path, capsys):
    folder = _images(tmp_path / "imgs", n=20)
    _, tar = _archives(folder, tmp_path)
    with tarfile.open(tmp_path / "imgs.tar.gz", "w:gz") as t:
        t.add(folder / "a", "a")
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "gz", "data.name=image-folder",
                       f"data.path={tmp_path / 'imgs.tar.gz'}", "train.steps=2", *TINY)
    assert_one_line_error(code, err, "compressed tar archive", "decompress it")
    (tmp_path / "cut.tar").write_bytes(tar.read_bytes()[:700])  # the first header and part of its image
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "cut", "data.name=image-folder",
                       f"data.path={tmp_path / 'cut.tar'}", "data.storage=stream", "train.steps=2", *TINY)
    assert code == 2 and "Traceback" not in err and "cut.tar" in err, err


def test_an_archive_opened_before_the_workers_fork_is_not_read_through_the_parents_handle(tmp_path):
    """Forked decoding workers share the parent's file offsets: each process opens the archive itself."""
    import multiprocessing

    from vaekit.data import stream

    folder = _images(tmp_path / "imgs", n=8)
    for archive in _archives(folder, tmp_path):
        rows, _ = stream.stream_rows(archive, workers=0)  # reads the first header in this process
        handles = {**stream._ZIPS, **stream._TAR_FILES}
        assert any(k[:2] == (os.getpid(), str(archive)) for k in handles)
        with multiprocessing.get_context("fork").Pool(1) as pool:
            child_keys = pool.apply(_open_in_child, (rows.all_files[3],))
        assert len(child_keys) == 1 and child_keys[0][0] != os.getpid() and child_keys[0][1] == str(archive)


def _open_in_child(name: str) -> list:
    from vaekit.data import stream

    parents = {**stream._ZIPS, **stream._TAR_FILES}
    assert stream.decode_image(name, stream.ImageSpec("RGB", (6, 6))).shape == (3, 6, 6)
    return [k for k in {**stream._ZIPS, **stream._TAR_FILES} if k not in parents or k[0] == os.getpid()]


def test_unreadable_files_skipped_with_a_count_or_a_one_line_error(tmp_path, capsys, caplog):
    folder = _images(tmp_path / "imgs", n=40)
    (folder / "a/002.png").write_bytes(b"\x89PNG not really")
    (folder / "b/003.png").write_bytes(b"")
    rows = FileRows([str(f) for f in sorted(folder.rglob("*.png"))], load_data(
        "image-folder", path=str(folder), storage="stream").train.x.spec, workers=0)
    with caplog.at_level(logging.WARNING, logger="vaekit.data.stream"):
        xb = rows.take(torch.arange(len(rows)), "cpu")
    assert xb.shape[0] == 38 and len(rows.skipped) == 2 and "skipped 2 unreadable image(s)" in caplog.text
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "skip", "data.name=image-folder", f"data.path={folder}",
                       "data.storage=stream", "train.steps=6", "data.workers=1", *TINY)
    assert code == 0 and "Traceback" not in err, err
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "err", "data.name=image-folder", f"data.path={folder}",
                       "data.storage=stream", "data.on_error=error", "train.steps=6", "data.workers=1",
                       "data.val_fraction=0", "train.epochs=1", *TINY)
    assert_one_line_error(code, err, "png", "data.on_error=skip")


def test_stream_resume_after_kill_9_mid_epoch_gives_the_same_weights(tmp_path, capsys):
    folder = _images(tmp_path / "imgs", n=100)  # 81 training images: 6 batches of 16 per epoch
    args = ["data.name=image-folder", f"data.path={folder}", "data.storage=stream", "data.workers=1",
            "train.steps=40", "train.checkpoint_every=1", "train.val_every=7", *TINY]
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "plain", *args)
    assert code == 0, err
    run = tmp_path / "killed"
    for _ in range(3):  # killed once a checkpoint inside an epoch (after the first) exists
        proc = vaekit_process("train", "--quiet", "--out", run, *args)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            try:
                step = json.loads((run / "last.json").read_text())["step"]
                if step >= 8 and step % 6:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        shutil.rmtree(run)  # it finished first (a busy machine): try again
    step = json.loads((run / "last.json").read_text())["step"]
    assert 8 <= step < 40 and step % 6  # stopped inside an epoch
    code, _, err = cli(capsys, "train", "--quiet", "--resume", run)
    assert code == 0, err
    assert _same(tmp_path / "plain", run)


def test_two_rank_shards_of_streamed_batches_are_disjoint_and_cover_the_epoch(tmp_path, monkeypatch):
    """Each rank's trainer plans and decodes only its part of every global batch (the trainer's own batch code
    with the rank set; the process group itself is tested with the in-memory path)."""
    from vaekit.config import TrainConfig
    from vaekit.data import stream
    from vaekit.models import build_vae
    from vaekit.objectives import ELBO
    from vaekit.training import Trainer
    from vaekit.training.distributed import DistInfo

    folder = _images(tmp_path / "imgs", n=37)
    read: dict[int, list[str]] = {0: [], 1: []}
    decode = stream.decode_image
    rank = {"r": 0}
    monkeypatch.setattr(stream, "decode_image", lambda name, spec: (read[rank["r"]].append(name), decode(name, spec))[1])
    files = [str(f) for f in sorted(folder.rglob("*.png"))]
    for r in (0, 1):
        rank["r"] = r
        rows = FileRows(files, load_data("image-folder", path=str(folder), storage="stream").train.x.spec, workers=0)
        tr = Trainer(build_vae((3, 6, 6), latent_dim=2, hidden=(4,)), ELBO(), rows, None,
                     settings=TrainConfig(batch_size=10, progress=False), run_dir=None)
        tr.dist = DistInfo(r, 2, r)
        sizes = []
        for b in range(tr.steps_per_epoch):  # one epoch, as fit() counts batches
            tr.state.batch = b
            sizes.append(tr._next_batch().shape[0])
        assert sum(sizes) == len(read[r]) and sizes[0] == 5
    assert not set(read[0]) & set(read[1]) and sorted(read[0] + read[1]) == files
