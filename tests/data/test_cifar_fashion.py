"""CIFAR-10 (python and binary versions) and Fashion-MNIST: the real files when VAEKIT_DATA_DIR holds them,
small generated files otherwise, the code-free unpickler, and the checksummed downloads (file:// URLs)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import DATASETS, load_data
from vaekit.data.download import fetch
from vaekit.data.readers import read_cifar_bin, read_cifar_py

DATA_DIR = os.environ.get("VAEKIT_DATA_DIR")
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _need(rel: str) -> str:
    if not DATA_DIR or not (Path(DATA_DIR) / rel).exists():
        pytest.skip(f"{rel} not found: set VAEKIT_DATA_DIR to a folder holding it (.ci/run sets it)")
    return DATA_DIR


def _write_py_batch(path: Path, x: np.ndarray, y: list[int]) -> None:
    """A batch in the python version's format: a protocol-2 pickle of a dict with bytes keys."""
    d = {b"batch_label": b"synthetic", b"labels": y, b"data": x.reshape(len(x), -1), b"filenames": [b"a.png"] * len(y)}
    path.write_bytes(pickle.dumps(d, protocol=2))


def _synthetic_cifar(root: Path, n: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Both versions of a tiny CIFAR-10 (n images per batch) under root/cifar10, with the same content."""
    rng = np.random.default_rng(0)
    made = {}
    for k in BATCHES:
        x, y = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).tolist()
        for version in ("py", "bin"):
            (root / "cifar10" / f"cifar-10-batches-{version}").mkdir(parents=True, exist_ok=True)
        _write_py_batch(root / "cifar10/cifar-10-batches-py" / k, x, y)
        rec = np.concatenate([np.array(y, np.uint8)[:, None], x.reshape(n, -1)], axis=1)  # label byte + pixels
        (root / "cifar10/cifar-10-batches-bin" / f"{k}.bin").write_bytes(rec.tobytes())
        made[k] = (x, y)
    return made


def test_cifar10_python_real():
    d = load_data("cifar10", data_dir=_need("cifar10/cifar-10-batches-py/test_batch"), val_fraction=0.1)
    assert d.shape == (3, 32, 32) and d.n_levels == 256 and "cifar-10-batches-py" in d.source
    assert (len(d.train), len(d.val), len(d.test)) == (45000, 5000, 10000)
    assert torch.bincount(d.test.y).tolist() == [1000] * 10
    counts = torch.bincount(d.train.y, minlength=10) + torch.bincount(d.val.y, minlength=10)
    assert counts.tolist() == [5000] * 10  # train and val cover the official training batches
    x, y = read_cifar_py(Path(DATA_DIR) / "cifar10/cifar-10-batches-py/data_batch_1")
    assert x.shape == (10000, 3, 32, 32) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]


def test_cifar10_python_and_binary_versions_agree(tmp_path, monkeypatch):
    made = _synthetic_cifar(tmp_path)
    x, y = read_cifar_py(tmp_path / "cifar10/cifar-10-batches-py/test_batch")
    assert np.array_equal(x, made["test_batch"][0]) and y.tolist() == made["test_batch"][1]
    with pytest.raises(ValueError, match="data_batch_1 has md5 .* expected c99cafc152244af753f735de768cd75f"):
        load_data("cifar10", data_dir=str(tmp_path))  # the python batches are checked against the published md5
    monkeypatch.setitem(DATASETS, "cifar10", dataclasses.replace(DATASETS["cifar10"], md5={}))
    py = load_data("cifar10", data_dir=str(tmp_path), val_fraction=0.25)
    for f in (tmp_path / "cifar10/cifar-10-batches-py").iterdir():
        f.unlink()
    binary = load_data("cifar10", data_dir=str(tmp_path), val_fraction=0.25)
    assert "cifar-10-batches-bin" in binary.source and "cifar-10-batches-py" in py.source
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(py, split).x, getattr(binary, split).x)
        assert torch.equal(getattr(py, split).y, getattr(binary, split).y)
    assert torch.equal(py.test.x * 255, torch.from_numpy(made["test_batch"][0]).float())


class _Payload:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_cifar_python_reader_runs_no_code(tmp_path):
    """A crafted pickle that would call os.mkdir is refused before anything runs; damaged batches are named."""
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": _Payload(str(tmp_path / "ran")), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_1 .*posix\.mkdir is not allowed|data_batch_1 .*os\.mkdir is not"):
        read_cifar_py(evil)
    assert not (tmp_path / "ran").exists()
    bad = tmp_path / "b"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, protocol=2))
    with pytest.raises(ValueError, match="1 labels for 2 images"):
        read_cifar_py(bad)
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.float32), b"labels": [1, 2]}, protocol=2))
    with pytest.raises(ValueError, match=r"'data' is float32 \(2, 10\), expected uint8"):
        read_cifar_py(bad)
    bad.write_bytes(b"\x80\x02}q")
    with pytest.raises(ValueError, match="could not read .*b .*fetch it again"):
        read_cifar_py(bad)


def test_cifar_download_unpacks_python_version(tmp_path, monkeypatch):
    """The registry's download (file:// URL, checksum of the generated archive) yields a loadable python layout."""
    made = _synthetic_cifar(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src/cifar10/cifar-10-batches-py", arcname="cifar-10-batches-py")
    (tmp_path / "c.tar.gz").write_bytes(buf.getvalue())
    item = DATASETS["cifar10"].downloads[0]
    assert item.filename == "cifar-10-python.tar.gz" and item.md5 == "c58f30108f718f92721af3b95e74349a"
    item = dataclasses.replace(item, urls=((tmp_path / "c.tar.gz").as_uri(),), md5=hashlib.md5(buf.getvalue()).hexdigest())
    fetch((item,), tmp_path / "data/cifar10")
    monkeypatch.setitem(DATASETS, "cifar10", dataclasses.replace(DATASETS["cifar10"], md5={}))
    d = load_data("cifar10", data_dir=str(tmp_path / "data"))
    assert torch.equal(d.test.y, torch.tensor(made["test_batch"][1]))
    assert read_cifar_bin(tmp_path / "src/cifar10/cifar-10-batches-bin/test_batch.bin")[1].tolist() == made["test_batch"][1]


def test_fashion_mnist_real(tmp_path):
    root = _need("fashion_mnist/train-images-idx3-ubyte.gz")
    d = load_data("fashion-mnist", data_dir=root, val_fraction=0.1)
    assert d.shape == (1, 28, 28) and d.n_levels == 256 and "fashion_mnist" in d.source
    assert (len(d.train), len(d.val), len(d.test)) == (54000, 6000, 10000)
    assert torch.bincount(d.test.y).tolist() == [1000] * 10
    counts = torch.bincount(d.train.y, minlength=10) + torch.bincount(d.val.y, minlength=10)
    assert counts.tolist() == [6000] * 10
    train = torch.cat([d.train.x, d.val.x]).double() * 255  # mean grey levels of the published splits
    assert float(train.mean()) == pytest.approx(72.940, abs=1e-3)
    assert float(d.test.x.double().mean() * 255) == pytest.approx(73.147, abs=1e-3)
    # the download checks the published md5 of each file: fetched from the local copies via file://
    local = Path(root) / "fashion_mnist"
    items = tuple(dataclasses.replace(i, urls=((local / i.filename).as_uri(),)) for i in DATASETS["fashion-mnist"].downloads)
    assert len(fetch(items, tmp_path)) == 4
