"""Model figures: pixel sizes, determinism, KL-sorted traversals, the inverse-CDF manifold grid, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from vaekit.config import ModelConfig
from vaekit.plots import figures as F
from vaekit.registry import build_model


def test_each_figure_is_a_png_of_the_documented_size(tiny_model, digits_x, tmp_path, png_size):
    # 8x8 images are drawn in 40-pixel cells; sizes follow the formulas in each docstring
    assert png_size(F.plot_reconstructions(tiny_model, digits_x, tmp_path / "r.png", n=16)) == (710, 160)
    assert png_size(F.plot_samples(tiny_model, tmp_path / "s.png", n=16, temperatures=(0.5, 1.0))) == (710, 160)
    assert png_size(F.plot_samples(tiny_model, tmp_path / "s1.png", n=24)) == (360, 200)
    assert png_size(F.plot_traversals(tiny_model, tmp_path / "t.png", kl=[0.1, 0.3, 0.2])) == (570, 225)
    assert png_size(F.plot_interpolation(tiny_model, digits_x[:2], digits_x[2:4], tmp_path / "i.png",
                                         steps=4)) == (340, 185)
    assert png_size(F.plot_manifold(tiny_model, tmp_path / "m.png", n=5, grid="ppf")) == (295, 320)
    torch.manual_seed(0)
    frey = build_model(ModelConfig(latent_dim=2, hidden=[8], likelihood="gaussian"), (1, 28, 20))
    # 28 x 20 images keep their aspect ratio: 40-pixel-wide, 56-pixel-high cells
    assert png_size(F.plot_samples(frey, tmp_path / "f.png", n=16)) == (360, 192)


def test_figures_are_deterministic_for_a_seed_and_leave_the_global_rng_alone(tiny_model, tmp_path):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    torch.rand(3)
    state = torch.get_rng_state()
    a = F.plot_samples(tiny_model, tmp_path / "a.png", n=16, seed=3).read_bytes()
    b = F.plot_samples(tiny_model, tmp_path / "b.png", n=16, seed=3).read_bytes()
    c = F.plot_samples(tiny_model, tmp_path / "c.png", n=16, seed=4).read_bytes()
    assert a == b and a != c
    assert torch.equal(torch.get_rng_state(), state)
    m1 = F.plot_manifold(tiny_model, tmp_path / "m1.png", n=4).read_bytes()
    m2 = F.plot_manifold(tiny_model, tmp_path / "m2.png", n=4).read_bytes()
    assert m1 == m2 and before.shape == (3,)


def test_kl_per_dim_finds_the_dimension_that_carries_the_kl(one_dim_model, digits_x):
    kl = F.kl_per_dim(one_dim_model, digits_x)
    # q = N(2, 1) in dim 2 and N(0, 1) elsewhere: KL = 2^2 / 2 = 2 nats there, 0 in the others
    np.testing.assert_allclose(kl, [0, 0, 2, 0], atol=1e-6)
    assert F.kl_order(kl).tolist() == [2, 0, 1, 3]  # ties keep index order
    assert F.kl_order([0.5, 3.0, 1.0]).tolist() == [1, 2, 0]


def test_traversal_rows_are_sorted_by_kl_and_only_the_used_dimension_changes(one_dim_model, digits_x, tmp_path,
                                                                             monkeypatch):
    drawn = {}
    real = F.grid_panel

    def spy(ax, images, ncol, **kw):
        drawn.update(images=images, ncol=ncol, **kw)
        return real(ax, images, ncol, **kw)

    monkeypatch.setattr(F, "grid_panel", spy)
    kl = F.kl_per_dim(one_dim_model, digits_x)
    F.plot_traversals(one_dim_model, tmp_path / "t.png", kl, values=np.linspace(-3, 3, 7))
    assert [lab.split()[0] for lab in drawn["row_labels"]] == ["z2", "z0", "z1", "z3"]
    assert drawn["row_labels"][0].endswith("KL 2.00") and drawn["col_labels"][0] == "-3.0"
    imgs = drawn["images"].reshape(4, 7, -1)  # (rows, values, pixels)
    assert (imgs[0, 0] - imgs[0, -1]).abs().max() > 0.1   # the decoder reads z2: its row changes
    assert torch.equal(imgs[1:], imgs[1:, :1].expand_as(imgs[1:]))  # the other rows are constant


def test_traversal_latents_set_one_dimension_per_row():
    z0 = torch.tensor([0.5, -1.0, 2.0])
    z = F.traversal_latents(z0, [2, 0], [-3.0, 0.0, 3.0])  # (R, S, D)
    assert z.shape == (2, 3, 3)
    assert z[0, :, 2].tolist() == [-3.0, 0.0, 3.0] and torch.equal(z[0, :, :2], z0[:2].expand(3, 2))
    assert z[1, :, 0].tolist() == [-3.0, 0.0, 3.0] and torch.equal(z[1, :, 1:], z0[1:].expand(3, 2))


def test_manifold_grids_match_linspace_and_the_normal_inverse_cdf():
    np.testing.assert_allclose(F.manifold_values(7, "linear"), np.linspace(-3, 3, 7))
    n = 15
    np.testing.assert_allclose(F.manifold_values(n, "ppf"), norm.ppf((np.arange(n) + 0.5) / n), rtol=1e-12, atol=1e-12)
    # reading order: top-left is (x = first value, y = last value), bottom-right (last, first)
    v = np.array([-1.0, 0.0, 1.0])
    z = F.manifold_latents(v, (2, 0), 3).reshape(3, 3, 3)
    assert z[0, 0].tolist() == [1.0, 0.0, -1.0] and z[2, 2].tolist() == [-1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="choose linear or ppf"):
        F.manifold_values(5, "log")


def test_bad_input_gives_clear_errors(tiny_model, digits_x, tmp_path):
    with pytest.raises(ValueError, match="must end in .png"):
        F.plot_samples(tiny_model, tmp_path / "s.jpg")
    with pytest.raises(ValueError, match="one KL value per latent dimension"):
        F.plot_traversals(tiny_model, tmp_path / "t.png", kl=[1.0, 2.0])
    with pytest.raises(ValueError, match="temperatures must be positive"):
        F.plot_samples(tiny_model, tmp_path / "s.png", temperatures=(0.0,))
    with pytest.raises(ValueError, match="two different dimensions"):
        F.plot_manifold(tiny_model, tmp_path / "m.png", dims=(1, 1))
    tabular = build_model(ModelConfig(latent_dim=2, hidden=[8]), (6,))
    with pytest.raises(ValueError, match="needs image data"):
        F.plot_samples(tabular, tmp_path / "s.png")


def test_ladder_models_draw_every_latent_figure_in_prior_units(digits_x, tmp_path, png_size):
    torch.manual_seed(0)
    ladder = build_model(ModelConfig(family="ladder", latent_dims=[4, 2], hidden=[16, 8]), (1, 8, 8)).eval()
    assert png_size(F.plot_samples(ladder, tmp_path / "s.png", n=8)) == (360, 120)
    assert png_size(F.plot_reconstructions(ladder, digits_x, tmp_path / "r.png", n=8)) == (710, 120)
    assert F.kl_per_dim(ladder, digits_x).shape == (6,)
    # one row per coordinate of both layers (6), one column per value (11): as for a VAE with 6 dimensions
    vae6 = build_model(ModelConfig(latent_dim=6, hidden=[8]), (1, 8, 8)).eval()
    assert (png_size(F.plot_traversals(ladder, tmp_path / "t.png", kl=np.ones(6)))
            == png_size(F.plot_traversals(vae6, tmp_path / "t6.png", kl=np.ones(6))))
    assert png_size(F.plot_manifold(ladder, tmp_path / "m.png")) == png_size(F.plot_manifold(vae6, tmp_path / "m6.png"))
    F.plot_interpolation(ladder, digits_x[:1], digits_x[1:2], tmp_path / "i.png")
    m2 = build_model(ModelConfig(family="m2", latent_dim=2, hidden=[8]), (1, 8, 8)).eval()
    with pytest.raises(ValueError, match="needs a model with the capability 'continuous'.*M2 has:"):
        F.plot_traversals(m2, tmp_path / "t2.png", kl=np.ones(2))
