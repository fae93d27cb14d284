"""dSprites generated as published: counts, values, index layout, and what each factor does to the image."""

import numpy as np
import pytest
import torch

from vaekit.data import dsprites as ds
from vaekit.data import ground_truth, load_data


def _img(shape=0, scale=5, orient=0, px=16, py=16) -> torch.Tensor:
    return ds.render(torch.tensor([[shape, scale, orient, px, py]]))[0, 0]  # (64, 64)


def _centroid(im: torch.Tensor) -> tuple[float, float]:
    r, c = torch.nonzero(im, as_tuple=True)
    return float(r.double().mean()) + 0.5, float(c.double().mean()) + 0.5  # pixel-centre coordinates


def test_counts_values_and_index_layout():
    assert int(np.prod(ds.FACTOR_SIZES)) == ds.N_IMAGES == 737280
    assert ds.STRIDES == (245760, 40960, 1024, 32, 1)
    v = ds.factor_values()
    assert [len(a) for a in v] == list(ds.FACTOR_SIZES)
    np.testing.assert_allclose(v[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert v[2][0] == 0 and v[2][-1] == pytest.approx(2 * np.pi) and v[3][-1] == v[4][-1] == 1.0
    idx = torch.arange(ds.N_IMAGES)
    cl = ds.index_to_classes(idx)
    assert torch.equal(ds.classes_to_index(cl), idx)                       # a bijection onto 0..N-1
    assert torch.equal(cl[1], torch.tensor([0, 0, 0, 0, 1]))               # position y varies fastest
    assert torch.equal(cl[32], torch.tensor([0, 0, 0, 1, 0]))
    assert torch.equal(cl[245760], torch.tensor([1, 0, 0, 0, 0]))          # shape slowest
    assert torch.equal(cl[-1], torch.tensor([2, 5, 39, 31, 31]))
    vals = ds.classes_to_values(cl[[0, -1]])
    np.testing.assert_allclose(vals[1].numpy(), [3, 1, 2 * np.pi, 1, 1])
    with pytest.raises(ValueError, match="pos_x classes must be in"):
        ds.render(torch.tensor([[0, 0, 0, 32, 0]]))


def test_images_binary_inside_canvas_and_batch_independent():
    g = torch.Generator().manual_seed(0)
    cl = ds.DSprites().sample_factors(300, g)
    # the extremes: largest sprites at the corners, every shape, several angles
    corners = torch.tensor([[s, 5, o, x, y] for s in range(3) for o in (0, 5, 13) for x in (0, 31) for y in (0, 31)])
    cl = torch.cat([cl, corners])
    x = ds.render(cl)
    assert x.shape == (len(cl), 1, 64, 64) and x.dtype == torch.float32
    assert set(torch.unique(x).tolist()) == {0.0, 1.0}
    assert torch.equal(torch.cat([ds.render(cl[i:i + 7]) for i in range(0, len(cl), 7)]), x)  # batch-independent
    rows, cols = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    centre = 16 + 32 * ds.classes_to_values(cl)[:, 3:].float()               # (B, 2) column, row
    d = torch.hypot(cols - centre[:, 0, None, None], rows - centre[:, 1, None, None])
    assert float((d * x[:, 0]).max()) < 12.0 and x.sum((1, 2, 3)).min() > 20   # whole sprite on the canvas


def test_each_factor_changes_the_image_as_described():
    sq, el, he = _img(0), _img(1), _img(2)
    r, c = torch.nonzero(sq, as_tuple=True)                                   # square fills its bounding box
    box = sq[r.min():r.max() + 1, c.min():c.max() + 1]                        # (16 +- 1 pixels square)
    assert float(box.mean()) > 0.97 and abs(box.shape[0] - 16) <= 1 and abs(box.shape[1] - 16) <= 1
    r, c = torch.nonzero(el, as_tuple=True)                                   # ellipse 2:1, wide at angle 0
    assert (int(c.max() - c.min()) + 1) == pytest.approx(2 * (int(r.max() - r.min()) + 1), abs=1)
    h0 = _img(2, px=0)[:, :32]                                                # centre on column 16 exactly
    assert torch.equal(h0, h0.flip(1)) and h0.sum() > 100                     # heart: mirror symmetric
    assert _centroid(he)[0] < 32.5 - 0.5                                      # lobes on top: mass above the centre
    for s in range(3):                                                        # scale: area grows ~ s^2
        areas = [float(_img(s, k).sum()) for k in range(6)]
        assert all(a < b for a, b in zip(areas, areas[1:])) and areas[-1] / areas[0] == pytest.approx(4, rel=0.12)
    for k, theta in enumerate(ds.factor_values()[2][:20]):                    # orientation: ellipse axis angle
        im = _img(1, 5, k)
        r, c = torch.nonzero(im, as_tuple=True)
        y, x = -(r.double() - r.double().mean()), c.double() - c.double().mean()  # y up
        ang = 0.5 * np.arctan2(2 * float((x * y).mean()), float((x * x).mean() - (y * y).mean()))
        assert abs((ang - theta + np.pi / 2) % np.pi - np.pi / 2) < np.radians(4)
    for k in (0, 7, 31):                                                      # position x: columns; y: rows
        mid, at = 16 + 32 * 16 / 31, 16 + 32 * k / 31                        # (row, column) centres in pixels
        assert _centroid(_img(0, 5, 0, k, 16)) == pytest.approx((mid, at), abs=0.6)
        assert _centroid(_img(0, 5, 0, 16, k)) == pytest.approx((at, mid), abs=0.6)


def test_dataset_exposes_factors_and_checks_options(tmp_path):
    data = load_data("dsprites", options={"n_train": 60, "n_val": 10, "n_test": 10}, seed=3)
    assert data.shape == (1, 64, 64) and data.n_levels == 2 and len(data.train) == 60
    tr = data.train
    assert torch.equal(tr.y, tr.factors[:, 0]) and torch.equal(ds.render(tr.factors), tr.x)
    every = torch.cat([ds.classes_to_index(a.factors) for a in data.splits().values()])
    assert len(torch.unique(every)) == 80                                    # disjoint splits
    with pytest.raises(ValueError, match="has no option 'n_trian'; did you mean 'n_train'"):
        load_data("dsprites", options={"n_trian": 5})
    assert isinstance(ground_truth("dsprites"), ds.DSprites)
    with pytest.raises(ValueError, match="no known generative factors"):
        ground_truth("digits")
    bad = tmp_path / ds.ORIGINAL_FILE
    np.savez(bad, imgs=np.zeros((2, 64, 64), np.uint8), latents_classes=np.zeros((2, 6), np.int64))
    with pytest.raises(ValueError, match="md5"):
        ds.load_original(bad)
    with pytest.raises(ValueError, match="expected \\(737280, 64, 64\\)"):
        ds.load_original(bad, check=False)


def test_render_cache_is_checked(tmp_path):
    stale = tmp_path / ds.CACHE_FILE
    np.save(stale, np.zeros((ds.N_IMAGES, 512), np.uint8))  # the right shape, the wrong pixels
    with pytest.raises(ValueError, match="not vaekit's current dSprites rendering"):
        ds.DSprites(cache=stale)
    assert ds.DSprites(cache=tmp_path / "absent.npy")._bits is None  # no cache: render on the fly


def test_prepare_renders_every_image_once_into_the_cache(tmp_path, monkeypatch, caplog):
    """A large draw renders the whole set once (faked here by a few real rows in a zero array) and writes the cache
    where it can, keeping it in memory where it cannot; small draws render on the fly."""
    probe = np.linspace(0, ds.N_IMAGES - 1, 16).astype(np.int64)
    some = torch.tensor([5, 77_777, 300_001, 700_000])
    real = np.concatenate([probe, some.numpy()])
    bits = np.zeros((ds.N_IMAGES, 512), np.uint8)
    bits[real] = ds._pack(ds.render(ds.index_to_classes(torch.as_tensor(real))))
    calls = []
    monkeypatch.setattr(ds, "render_all", lambda progress=False: calls.append(progress) or bits)
    path = tmp_path / "dsprites" / ds.CACHE_FILE
    d = ds.DSprites(cache=path)
    d.prepare(ds.CACHE_FROM - 1)
    assert d._bits is None and not path.exists() and calls == []
    d.prepare(ds.CACHE_FROM)
    assert calls == [True] and path.is_file()
    cl = ds.index_to_classes(some)
    assert torch.equal(d.images(cl), ds.render(cl))
    assert torch.equal(ds.DSprites(cache=path).images(cl), ds.render(cl))  # the file passes the check
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    kept = ds.DSprites(cache=blocked / ds.CACHE_FILE)
    with caplog.at_level("WARNING", logger="vaekit"):
        kept.prepare(ds.N_IMAGES)
    assert "kept in memory" in caplog.text and torch.equal(kept.images(cl), ds.render(cl))
