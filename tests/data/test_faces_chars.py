"""CelebA and Omniglot on small generated files (the real ones are not in the test data): layouts, splits,
crops, checksummed downloads from file:// URLs; and ``vaekit datasets --prepare``."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.reliability.conftest import assert_one_line_error, cli
from vaekit.data import DATASETS, load_data
from vaekit.data.download import fetch
from vaekit.data.faces_chars import git_blob_check
from vaekit.data.stream import FileRows


def _celeba(folder: Path, n: int = 9) -> list[np.ndarray]:
    """n aligned-size (178x218) JPEG-free faces: PNG bytes under .jpg names are what Pillow reads by content;
    list_eval_partition.txt puts 5 in train, 2 in validation, 2 in test."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    faces = []
    with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as z:
        for i in range(n):
            a = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
            faces.append(a)
            path = folder / f"{i + 1:06d}.jpg"
            Image.fromarray(a).save(path, format="PNG")
            z.write(path, f"img_align_celeba/{i + 1:06d}.jpg")
            path.unlink()
    split = [0] * 5 + [1] * 2 + [2] * 2
    (folder / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {s}\n" for i, s in enumerate(split)))
    return faces


def test_celeba_official_split_centre_crop_and_size(tmp_path, monkeypatch):
    faces = _celeba(tmp_path / "celeba")
    with pytest.raises(ValueError, match="has md5 .* expected 00d2c5bc6d35e252742224ab0c1e8fcb"):
        load_data("celeba", data_dir=str(tmp_path), storage="stream")
    monkeypatch.setitem(DATASETS, "celeba", dataclasses.replace(DATASETS["celeba"], md5={}))
    d = load_data("celeba", data_dir=str(tmp_path), storage="stream", workers=0, options={"size": 16, "crop": 148})
    assert isinstance(d.train.x, FileRows) and (len(d.train), len(d.val), len(d.test)) == (5, 2, 2)
    assert d.shape == (3, 16, 16) and d.n_levels == 256
    full = load_data("celeba", data_dir=str(tmp_path), storage="memory", options={"size": 148, "crop": 148})
    top, left = (218 - 148) // 2, (178 - 148) // 2  # the centred 148 x 148 square, not resized
    want = torch.from_numpy(faces[5][top:top + 148, left:left + 148].transpose(2, 0, 1).copy()).float() / 255
    assert torch.equal(full.val.x.take(torch.tensor([0]), "cpu")[0], want)
    with pytest.raises(ValueError, match="crop=200 must be"):
        load_data("celeba", data_dir=str(tmp_path), options={"crop": 200})
    (tmp_path / "celeba/list_eval_partition.txt").write_text("000001.jpg 0\n")
    with pytest.raises(ValueError, match="do not match list_eval_partition.txt"):
        load_data("celeba", data_dir=str(tmp_path), storage="stream")


def test_omniglot_iwae_layout_and_git_blob_download(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    imgs = (rng.random((7, 28, 28)) < 0.3).astype(np.float64)  # (N, row, col)
    col_major = imgs.transpose(0, 2, 1).reshape(7, 784).T  # (784, N): each column an image in column-major order
    (tmp_path / "src").mkdir()
    savemat(tmp_path / "src/chardata.mat", {"data": col_major[:, :5], "testdata": col_major[:, 5:]})
    blob = subprocess.run(["git", "hash-object", str(tmp_path / "src/chardata.mat")], capture_output=True, text=True)
    item = DATASETS["omniglot"].downloads[0]
    item = dataclasses.replace(item, urls=((tmp_path / "src/chardata.mat").as_uri(),), verify=git_blob_check(blob.stdout.strip()))
    fetch((item,), tmp_path / "data/omniglot")
    d = load_data("omniglot", data_dir=str(tmp_path / "data"), val_fraction=0.2)
    assert d.shape == (1, 28, 28) and d.n_levels == 2 and (len(d.train), len(d.val), len(d.test)) == (4, 1, 2)
    assert torch.equal(d.test.x[:, 0], torch.from_numpy(imgs[5:]).float())  # rows and columns the right way round
    with pytest.raises(RuntimeError, match="git blob id"):
        fetch((dataclasses.replace(item, verify=git_blob_check("0" * 40)),), tmp_path / "other")


def test_prepare_writes_uint8_shards_read_back_exactly(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(3)
    for i in range(23):
        (tmp_path / "imgs" / "xy"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "xy"[i % 2] / f"{i}.png")
    (tmp_path / "imgs/x/bad.png").write_bytes(b"not an image")
    code, out, err = cli(capsys, "datasets", "--prepare", tmp_path / "imgs", "--out", tmp_path / "shards",
                         "--shard-size", "10", "--workers", "1")
    assert code == 0, err
    assert "wrote 23 images (3, 9, 7) as 3 uint8 shard(s)" in out and "1 unreadable skipped" in out
    (tmp_path / "imgs/x/bad.png").unlink()
    mem = load_data("image-folder", path=str(tmp_path / "imgs"))
    mm = load_data("arrays", path=str(tmp_path / "shards"), storage="mmap")
    assert torch.equal(mem.train.x, mm.train.values()) and torch.equal(mem.test.y, mm.test.y)
    code, _, err = cli(capsys, "datasets", "--prepare", tmp_path / "imgs", "--out", tmp_path / "shards")
    assert_one_line_error(code, err, "not an empty folder")
