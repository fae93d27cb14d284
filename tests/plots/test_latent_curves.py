"""Latent maps (axes choice: PCA vs most-informative dimensions), the training GIF, curves and the KL heat map."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from vaekit.plots import curves, latent


def _cloud(n=400, d=5, seed=0):
    """Points whose variance lies mostly along dimension 3, then dimension 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d)) * np.array([0.1, 1.0, 0.05, 3.0, 0.2]) + np.array([0, 1, 0, -2, 0])
    return z


def test_pca_axes_match_sklearn_up_to_sign():
    z = _cloud()
    ax = latent.choose_map_axes(z, "pca")
    ref = PCA(n_components=2).fit(z)
    xy, xy_ref = ax.apply(z), ref.transform(z)
    for k in range(2):
        s = np.sign(xy[:, k] @ xy_ref[:, k])
        np.testing.assert_allclose(xy[:, k], s * xy_ref[:, k], atol=1e-9)
    ratio = ref.explained_variance_ratio_
    assert ax.xlabel == f"PC1 ({ratio[0]:.0%} of variance)" and ax.ylabel == f"PC2 ({ratio[1]:.0%} of variance)"
    assert "PCA projection of the 5-dimensional" in ax.note
    assert abs(ax.proj[3, 0]) > 0.99 and abs(ax.proj[1, 1]) > 0.99  # the two high-variance dimensions


def test_kl_axes_pick_the_two_most_informative_dimensions_and_two_dims_are_drawn_as_they_are():
    z = _cloud()
    ax = latent.choose_map_axes(z, "kl", kl=[0.0, 1.5, 0.2, 4.0, 1.5])
    np.testing.assert_array_equal(ax.apply(z), z[:, [3, 1]])  # ties: the lower index first
    assert ax.xlabel == "z3 (KL 4.00 nats)" and ax.ylabel == "z1 (KL 1.50 nats)"
    two = latent.choose_map_axes(z[:, :2], "pca")
    np.testing.assert_array_equal(two.apply(z[:, :2]), z[:, :2])
    with pytest.raises(ValueError, match="at least 2 latent dimensions"):
        latent.choose_map_axes(z[:, :1])
    with pytest.raises(ValueError, match="one KL value per latent dimension"):
        latent.choose_map_axes(z, "kl")


def test_latent_map_with_and_without_labels(tmp_path, png_size):
    z = _cloud()
    y = np.arange(len(z)) % 4
    a = latent.plot_latent_map(z, y, tmp_path / "a.png")
    b = latent.plot_latent_map(z, None, tmp_path / "b.png")  # no labels: grey points, said in the title
    assert png_size(a) == png_size(b) == (760, 640)
    assert a.read_bytes() != b.read_bytes()
    assert latent.plot_latent_map(z, y, tmp_path / "a2.png").read_bytes() == a.read_bytes()
    with pytest.raises(ValueError, match="one label per point"):
        latent.plot_latent_map(z, y[:10], tmp_path / "c.png")


def test_latent_gif_has_one_frame_per_snapshot_up_to_the_cap(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    snaps = {"step": np.arange(1, 9) * 10, "z": rng.normal(size=(8, 50, 3)) * np.linspace(0.1, 1, 8)[:, None, None],
             "y": np.arange(50) % 3}
    p = latent.plot_latent_gif(snaps, tmp_path / "a.gif")
    with Image.open(p) as im:
        assert im.format == "GIF" and im.size == (600, 540) and im.n_frames == 8
    p = latent.plot_latent_gif(snaps, tmp_path / "b.gif", max_frames=3)
    with Image.open(p) as im:
        assert im.n_frames == 3
    with pytest.raises(ValueError, match="must end in .gif"):
        latent.plot_latent_gif(snaps, tmp_path / "a.png")


def _records(n=6, g=4, sigma=False):
    recs = []
    for i in range(n):
        r = {"step": 10 * (i + 1), "epoch": i, "loss": 50.0 - i, "rec": 40.0 - i, "kl": 10.0 + 0.1 * i, "beta": 1.0,
             "lr": 1e-3, "val_elbo": -51.0 + i, "val_rec": 41.0 - i, "val_kl": 10.0,
             "val_kl_dims": [0.5 * k * (i + 1) for k in range(g)]}
        if sigma:
            r["sigma"] = 0.5 / (i + 1)
        recs.append(r)
    return recs


def test_curves_and_kl_heat_map(tmp_path, png_size):
    assert png_size(curves.plot_curves(_records(sigma=True), tmp_path / "c.png")) == (1000, 720)
    assert png_size(curves.plot_kl_heatmap(_records(g=5), tmp_path / "k.png")) == (900, 350)
    assert png_size(curves.plot_kl_heatmap(_records(g=30), tmp_path / "k30.png")) == (900, 570)
    steps, kl = curves.kl_matrix(_records(n=3, g=2))
    np.testing.assert_array_equal(steps, [10, 20, 30])
    np.testing.assert_array_equal(kl, [[0, 0, 0], [0.5, 1.0, 1.5]])  # (G, T): dimension 0 collapsed
    no_kl = [{k: v for k, v in r.items() if k != "val_kl_dims"} for r in _records()]
    with pytest.raises(ValueError, match="no val_kl_dims"):
        curves.plot_kl_heatmap(no_kl, tmp_path / "x.png")


def test_load_metrics_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        curves.load_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        curves.load_metrics(tmp_path)
