"""Registry datasets: real files (when VAEKIT_DATA_DIR holds them), synthetic data dirs, splits, errors,
status, and verified fetching from file:// URLs (no network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import DATASETS, DataNotFoundError, dataset_status, download, load_data
from vaekit.data.base import split_indices
from vaekit.data.download import DownloadItem, fetch
from vaekit.data.readers import write_idx

DATA_DIR = os.environ.get("VAEKIT_DATA_DIR")


def _need(rel: str) -> str:
    if not DATA_DIR or not (Path(DATA_DIR) / rel).exists():
        pytest.skip(f"{rel} not found: set VAEKIT_DATA_DIR to a folder holding it (.ci/run sets it)")
    return DATA_DIR


def test_mnist_real():
    d = load_data("mnist", data_dir=_need("mnist/train-images-idx3-ubyte.gz"), val_fraction=0.1, seed=0)
    assert d.shape == (1, 28, 28) and d.n_levels == 256 and d.name == "mnist"
    assert (len(d.train), len(d.val), len(d.test)) == (54000, 6000, 10000)
    assert d.train.x.dtype == torch.float32 and float(d.train.x.min()) == 0.0 and float(d.train.x.max()) == 1.0
    assert torch.equal(d.test.x * 255, (d.test.x * 255).round())  # exact 8-bit levels
    assert torch.bincount(d.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # train and val are a disjoint cover of the official train set: their class counts add up to its counts
    counts = torch.bincount(d.train.y, minlength=10) + torch.bincount(d.val.y, minlength=10)
    assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert "train-images-idx3-ubyte.gz" in d.source


def test_splits_deterministic_for_seed():
    root = _need("frey_face/frey_rawface.mat")
    a, b = load_data("frey-face", data_dir=root, seed=5), load_data("frey-face", data_dir=root, seed=5)
    c = load_data("frey-face", data_dir=root, seed=6)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert not torch.equal(getattr(a, split).x, getattr(c, split).x)


def test_binarized_mnist_real():
    d = load_data("binarized-mnist", data_dir=_need("binarized_mnist"))
    assert d.shape == (1, 28, 28) and d.n_levels == 2 and d.train.y is None
    assert (len(d.train), len(d.val), len(d.test)) == (50000, 10000, 10000)
    for part, mean in ((d.train, 0.130562), (d.val, 0.131127), (d.test, 0.132512)):  # mean pixel of each published split
        assert bool(((part.x == 0) | (part.x == 1)).all())
        assert abs(float(part.x.sum(dtype=torch.float64)) / part.x.numel() - mean) < 1e-5


def test_frey_face_real():
    d = load_data("frey-face", data_dir=_need("frey_face/frey_rawface.mat"), seed=0)
    assert d.shape == (1, 28, 20) and d.n_levels == 256 and d.train.y is None
    assert (len(d.train), len(d.val), len(d.test)) == (1592, 177, 196)
    x = torch.cat([d.train.x, d.val.x, d.test.x]).double() * 255
    assert float(x.min()) == pytest.approx(8) and float(x.max()) == pytest.approx(238)
    assert float(x.mean()) == pytest.approx(154.46, abs=0.01)
    # no frame appears in two splits (frames are distinct images)
    assert len({r.numpy().tobytes() for r in x.round().to(torch.uint8)}) == len(x)


def test_mnist_path_override_and_md5_check(tmp_path):
    """path= points at a folder of IDX files; the published md5 is checked, so synthetic files are refused."""
    for split, n in (("train", 12), ("t10k", 4)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", np.zeros((n, 28, 28), np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    with pytest.raises(ValueError, match="has md5 .* expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_data("mnist", path=str(tmp_path))


def _cifar_dir(root: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 3)]:
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        imgs = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (folder / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], imgs], 1).tobytes())
    return root


def test_cifar10_synthetic(tmp_path):
    root = _cifar_dir(tmp_path)
    d = load_data("cifar10", data_dir=str(root), val_fraction=0.25)
    assert d.shape == (3, 32, 32) and d.n_levels == 256
    assert (len(d.train), len(d.val), len(d.test)) == (15, 5, 3)
    raw = np.frombuffer((root / "cifar10/cifar-10-batches-bin/test_batch.bin").read_bytes(), np.uint8)
    raw = raw.reshape(3, 3073)
    assert d.test.y.tolist() == raw[:, 0].tolist()
    np.testing.assert_array_equal((d.test.x * 255).round().numpy().astype(np.uint8).reshape(3, -1), raw[:, 1:])


def test_digits():
    d = load_data("digits", seed=0)
    assert d.shape == (1, 8, 8) and d.n_levels == 17 and d.source.startswith("sklearn")
    assert (len(d.train), len(d.val), len(d.test)) == (1294, 144, 359)  # test 20 % of 1797, val 10 % of rest
    x = torch.cat([d.train.x, d.val.x, d.test.x])
    assert torch.equal(x * 16, (x * 16).round()) and float(x.max()) == 1.0
    assert torch.bincount(torch.cat([d.train.y, d.val.y, d.test.y])).sum() == 1797


def test_split_indices_disjoint_and_seeded():
    tr, va, te = split_indices(103, test_fraction=0.2, val_fraction=0.1, seed=3)
    assert (len(tr), len(va), len(te)) == (74, 8, 21)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(103))
    tr2, va2, te2 = split_indices(103, test_fraction=0.2, val_fraction=0.3, seed=3)
    assert np.array_equal(te, te2)  # test split does not move with val_fraction
    assert not np.array_equal(te, split_indices(103, test_fraction=0.2, val_fraction=0.1, seed=4)[2])
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        split_indices(10, test_fraction=0.1, val_fraction=1.0, seed=0)


def test_unknown_dataset_suggests_name():
    with pytest.raises(ValueError, match="unknown dataset 'fashion_mnist'; did you mean 'fashion-mnist'"):
        load_data("fashion_mnist")
    with pytest.raises(ValueError, match="known datasets: digits, mnist"):
        load_data("zzzz")


def test_missing_files_message(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError) as e:
        load_data("fashion-mnist")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "fashion_mnist") in msg and "VAEKIT_DATA_DIR" in msg
    assert "train-images-idx3-ubyte.gz" in msg and "vaekit datasets --download fashion-mnist" in msg
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(DataNotFoundError, match=r"binarized_mnist\.npz \(or binarized_mnist_train\.amat"):
        load_data("binarized-mnist", data_dir=str(tmp_path / "elsewhere"))


def test_binarized_amat_layout(tmp_path):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrs = {k: (rng.random((n, 784)) < 0.2).astype(np.uint8) for k, n in (("train", 5), ("valid", 2), ("test", 3))}
    for k, a in arrs.items():
        (folder / f"binarized_mnist_{k}.amat").write_text("\n".join(" ".join(map(str, r)) for r in a))
    d = load_data("binarized-mnist", data_dir=str(tmp_path))
    assert torch.equal(d.val.x.reshape(2, -1), torch.from_numpy(arrs["valid"]).float())
    np.savez(folder / "binarized_mnist.npz", train=arrs["train"] * 3, valid=arrs["valid"], test=arrs["test"])
    with pytest.raises(ValueError, match="not 0/1 data"):
        load_data("binarized-mnist", data_dir=str(tmp_path))
    (folder / "binarized_mnist.npz").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="binarized_mnist.npz as a .npz archive"):
        load_data("binarized-mnist", data_dir=str(tmp_path))


def test_dataset_status(tmp_path):
    _cifar_dir(tmp_path)
    rows = {r["name"]: r for r in dataset_status(str(tmp_path))}
    assert set(rows) == set(DATASETS)
    assert rows["cifar10"]["available"] and not rows["mnist"]["available"] and rows["digits"]["available"]
    assert str(tmp_path / "mnist") in rows["mnist"]["where"] and rows["mnist"]["downloadable"]
    assert "--download mnist" in rows["mnist"]["how_to_get"] and not rows["arrays"]["downloadable"]
    for r in rows.values():
        assert set(r) == {"name", "description", "available", "where", "how_to_get", "downloadable"}


def test_fetch_verifies_and_renames(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(b"payload")
    good = hashlib.md5(b"payload").hexdigest()
    url = (src / "f.bin").as_uri()
    out = fetch((DownloadItem("f.bin", ("file:///nonexistent/f.bin", url), md5=good),), tmp_path / "dst")
    assert out == [tmp_path / "dst" / "f.bin"] and out[0].read_bytes() == b"payload"
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["f.bin"]  # no temp files left
    with pytest.raises(RuntimeError, match=r"could not download g\.bin intact: .*md5"):
        fetch((DownloadItem("g.bin", (url,), md5="0" * 32),), tmp_path / "dst")
    assert not (tmp_path / "dst" / "g.bin").exists()
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["f.bin"]


def test_fetch_unpacks_tar(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "a.tar.gz").write_bytes(buf.getvalue())
    item = DownloadItem("a.tar.gz", ((tmp_path / "a.tar.gz").as_uri(),),
                        sha256=hashlib.sha256(buf.getvalue()).hexdigest(), unpack_tar=True)
    fetch((item,), tmp_path / "out")
    assert (tmp_path / "out/cifar-10-batches-bin/readme.txt").read_bytes() == b"hi"
    assert not (tmp_path / "out/a.tar.gz").exists()


def test_download_refuses_non_downloadable():
    with pytest.raises(ValueError, match="'digits' has no download: bundled"):
        download("digits")
    assert all(item.md5 or item.sha256 or item.verify for s in DATASETS.values() for item in s.downloads)


def test_gzip_idx_of_real_layout_loads(tmp_path):
    """fashion-mnist files are read by the same IDX path: a synthetic copy fails only on the published md5 (the
    folder's older spelling fashion-mnist/ is still looked in)."""
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for split, n in (("train", 3), ("t10k", 2)):
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 3, 0, 0, 0, n,
                                                                                    0, 0, 0, 28, 0, 0, 0, 28])
                                                                             + bytes(n * 784)))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.zeros(n, np.uint8))
    with pytest.raises(ValueError, match="8d4fb7e6c68d591d4c3dfef9ec88bf0d"):
        load_data("fashion-mnist", data_dir=str(tmp_path))


def test_registry_checksums_match_local_copies(tmp_path):
    """The md5/sha256 the mnist downloads check are those of the verified local copies (fetched via file://)."""
    import dataclasses

    root = Path(_need("mnist/t10k-labels-idx1-ubyte.gz")) / "mnist"
    items = tuple(dataclasses.replace(i, urls=((root / i.filename).as_uri(),)) for i in DATASETS["mnist"].downloads)
    assert len(fetch(items, tmp_path)) == 4
    frey = DATASETS["frey-face"].downloads[0]
    frey.verify(Path(_need("frey_face/frey_rawface.mat")) / "frey_face" / "frey_rawface.mat")
