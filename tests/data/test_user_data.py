"""image-folder and arrays datasets from small files written in tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.data import DataNotFoundError, load_data


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _class_folder(root, n_per_class=5, size=(6, 4)):
    """Grey PNGs in class folders 'b_cat' and 'a_dog'; pixel value encodes class and index."""
    for c, name in enumerate(["a_dog", "b_cat"]):
        for i in range(n_per_class):
            _png(root / name / f"{i}.png", np.full(size, 10 * c + i, dtype=np.uint8))
    return root


def test_image_folder_labels_and_values(tmp_path):
    root = _class_folder(tmp_path / ".hidden_parent" / "imgs")  # a hidden folder above the root is fine
    _png(root / "a_dog" / ".ipynb_checkpoints" / "x.png", np.zeros((6, 4), np.uint8))  # hidden: skipped
    d = load_data("image-folder", path=str(root), val_fraction=0.25, seed=0)
    assert d.shape == (1, 6, 4) and d.n_levels == 256 and d.name == "image-folder"
    xs = torch.cat([d.train.x, d.val.x, d.test.x])
    ys = torch.cat([d.train.y, d.val.y, d.test.y])
    assert len(xs) == 10 and (len(d.test), len(d.val), len(d.train)) == (1, 2, 7)
    levels = (xs[:, 0, 0, 0] * 255).round().long()
    # label = sorted folder index; the pixel value was 10 * label + i
    assert torch.equal(levels // 10, ys)
    assert sorted(levels.tolist()) == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert torch.equal(xs, xs[:, :, :1, :1].expand_as(xs))  # each image constant, as written


def test_image_folder_rgb_resize_and_flat(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        _png(tmp_path / "flat" / f"{i}.png", rng.integers(0, 256, size=(10 + i, 8, 3), dtype=np.uint8))
    _png(tmp_path / "flat" / "grey.png", np.zeros((9, 9), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"differ in size .* data.image_size=\[H,W\] \(image_size=\(H, W\) from Python\)"):
        load_data("image-folder", path=str(tmp_path / "flat"))
    d = load_data("image-folder", path=str(tmp_path / "flat"), image_size=(5, 7), val_fraction=0.0)
    assert d.shape == (3, 5, 7) and d.train.y is None  # mixed colour modes -> RGB; no sub-folders -> no labels
    assert len(d.train) + len(d.test) == 5 and len(d.val) == 0
    g = load_data("image-folder", path=str(tmp_path / "flat"), image_size=(5, 7), grayscale=True)
    assert g.shape == (1, 5, 7)
    # a constant RGB image resized stays that colour (channel order R, G, B)
    _png(tmp_path / "one" / "c.png", np.broadcast_to(np.array([255, 0, 51], np.uint8), (4, 4, 3)).copy())
    _png(tmp_path / "one" / "d.png", np.broadcast_to(np.array([255, 0, 51], np.uint8), (4, 4, 3)).copy())
    c = load_data("image-folder", path=str(tmp_path / "one"), image_size=(3, 3), val_fraction=0.0)
    np.testing.assert_allclose(c.train.x[0, :, 1, 1].numpy(), [1.0, 0.0, 0.2], atol=1e-6)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="nowhere"):
        load_data("image-folder", path=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no images"):
        load_data("image-folder", path=str(tmp_path / "empty"))
    root = _class_folder(tmp_path / "mixed")
    _png(root / "loose.png", np.zeros((6, 4), np.uint8))
    with pytest.raises(ValueError, match="both images and class sub-folders"):
        load_data("image-folder", path=str(root))
    with pytest.raises(ValueError, match="pass path="):
        load_data("image-folder")
    with pytest.raises(ValueError, match="apply only to image-folder"):
        load_data("digits", image_size=(8, 8))


def test_arrays_npy_real_valued(tmp_path):
    x = np.random.default_rng(0).standard_normal((50, 3))
    np.save(tmp_path / "x.npy", x)
    d = load_data("arrays", path=str(tmp_path / "x.npy"), seed=1)
    assert d.shape == (3,) and d.n_levels is None and d.train.y is None
    assert (len(d.train), len(d.val), len(d.test)) == (41, 4, 5)  # test 10 % of 50; val round(0.1 * 45)
    back = torch.cat([d.train.x, d.val.x, d.test.x]).double()
    # a permutation of the rows, as float32
    assert torch.allclose(back[back[:, 0].argsort()], torch.from_numpy(x[x[:, 0].argsort()]), atol=1e-6)


def test_arrays_npz_x_y_and_fixed_splits(tmp_path):
    x = (np.random.default_rng(0).random((30, 4)) < 0.5).astype(np.float32)
    y = np.arange(30) % 3
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    d = load_data("arrays", path=str(tmp_path / "xy.npz"))
    assert d.n_levels == 2  # values in {0, 1}
    for part in (d.train, d.val, d.test):  # labels travel with their rows
        idx = torch.tensor([int(np.flatnonzero((x == r.numpy()).all(1))[0]) for r in part.x])
        assert part.y.dtype == torch.int64 and len(part.y) == len(part.x)
        assert bool((torch.from_numpy(x[idx]) == part.x).all())
    u8 = np.random.default_rng(1).integers(0, 256, size=(10, 2, 2), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", train=u8, valid=u8[:3], test=u8[:4], test_y=np.arange(4))
    s = load_data("arrays", path=str(tmp_path / "s.npz"))
    assert (len(s.train), len(s.val), len(s.test)) == (10, 3, 4) and s.n_levels == 256 and s.shape == (2, 2)
    assert torch.equal((s.train.x * 255).round().to(torch.uint8), torch.from_numpy(u8))
    assert s.train.y is None and s.test.y.tolist() == [0, 1, 2, 3]


def test_arrays_csv(tmp_path):
    (tmp_path / "h.csv").write_text("a,b,label\n" + "".join(f"{i / 10},{-i},{i % 2}\n" for i in range(20)))
    d = load_data("arrays", path=str(tmp_path / "h.csv"), val_fraction=0.0)
    assert d.shape == (2,) and d.n_levels is None
    x, y = torch.cat([d.train.x, d.test.x]), torch.cat([d.train.y, d.test.y])
    assert torch.equal(y, (-x[:, 1]).long() % 2) and torch.allclose(x[:, 0], -x[:, 1] / 10)
    (tmp_path / "n.csv").write_text("".join(f"{i / 20},{1 - i / 20}\n" for i in range(20)))
    n = load_data("arrays", path=str(tmp_path / "n.csv"))
    assert n.shape == (2,) and n.train.y is None and n.n_levels is None
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(ValueError, match="must be numeric"):
        load_data("arrays", path=str(tmp_path / "bad.csv"))


def test_arrays_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="missing.npy"):
        load_data("arrays", path=str(tmp_path / "missing.npy"))
    np.savez(tmp_path / "k.npz", data=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"has keys \['data'\]; expected 'x'"):
        load_data("arrays", path=str(tmp_path / "k.npz"))
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 definitely truncated")
    with pytest.raises(ValueError, match=r"could not read .*c\.npz as a \.npz archive"):
        load_data("arrays", path=str(tmp_path / "c.npz"))
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]] * 10))
    with pytest.raises(ValueError, match="finite"):
        load_data("arrays", path=str(tmp_path / "nan.npy"))
    np.savez(tmp_path / "fy.npz", x=np.zeros((10, 2)), y=np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="whole numbers"):
        load_data("arrays", path=str(tmp_path / "fy.npz"))
    (tmp_path / "t.txt").write_text("1,2")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_data("arrays", path=str(tmp_path / "t.txt"))


def test_select_classes_keeps_only_those_labels_in_every_split():
    from vaekit.data import load_data

    s = load_data("digits", seed=0).select_classes([3, 7])
    for a in (s.train, s.val, s.test):
        assert len(a) > 0 and set(a.y.tolist()) == {3, 7}
    full = load_data("digits", seed=0)
    assert len(s.train) == int(((full.train.y == 3) | (full.train.y == 7)).sum())
    with pytest.raises(ValueError, match="labels are"):
        full.select_classes([42])
