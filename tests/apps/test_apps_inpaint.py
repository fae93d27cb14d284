"""Inpainting and denoising: exact conditional means on the pPCA VAE, observed pixels kept, masks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vaekit.apps import denoise, inpaint, load_mask, masked_mse, named_mask

MISSING = torch.tensor([False, True, False, True, True, False])  # 3 of 6 coordinates missing


def _conditional_mean(ppca, x, miss):
    """E[x_miss | x_obs] under p(x) = N(b, W W^T + sigma^2 I) (Gaussian conditioning)."""
    C = ppca.W @ ppca.W.T + ppca.sigma**2 * torch.eye(ppca.x_dim, dtype=torch.float64)
    o = ~miss
    return ppca.b[miss] + (x[:, o] - ppca.b[o]) @ torch.linalg.solve(C[o][:, o], C[o][:, miss])


@pytest.mark.parametrize("method, tol", [("iterate", 1e-8), ("optimize", 1e-4), ("both", 1e-6)])
def test_completion_is_the_exact_conditional_mean_on_ppca(ppca, method, tol):
    x = ppca.sample(40)
    out = inpaint(ppca.vae(), x, MISSING, method=method, fill=ppca.b, iterations=200, steps=300, lr=0.05)
    assert torch.equal(out[:, ~MISSING], x[:, ~MISSING])  # observed values returned bit for bit
    assert (out[:, MISSING] - _conditional_mean(ppca, x, MISSING)).abs().max() < tol


def test_completion_beats_the_mean_fill_by_the_predicted_margin(ppca):
    x = ppca.sample(500, seed=3)
    out = inpaint(ppca.vae(), x, MISSING, method="iterate", fill=ppca.b, iterations=200)
    mean_fill = torch.where(MISSING, ppca.b, x)
    e_vae, e_mean = masked_mse(out, x, MISSING), masked_mse(mean_fill, x, MISSING)
    C = ppca.W @ ppca.W.T + ppca.sigma**2 * torch.eye(6, dtype=torch.float64)
    o, m = ~MISSING, MISSING
    cond_cov = C[m][:, m] - C[m][:, o] @ torch.linalg.solve(C[o][:, o], C[o][:, m])
    # expected squared errors per missing coordinate: tr(conditional cov) / 3 vs tr(marginal cov) / 3; 500 points
    # give each estimate a relative s.e. near sqrt(2 / 1500) = 3.7 %: allow 20 %
    assert e_vae == pytest.approx(float(torch.trace(cond_cov)) / 3, rel=0.2)
    assert e_mean == pytest.approx(float(torch.trace(C[m][:, m])) / 3, rel=0.2)
    assert e_vae < 0.6 * e_mean


def test_denoise_is_the_decoder_mean_at_the_posterior_mode(ppca):
    x = ppca.sample(20)
    want = (x @ ppca.A.T + ppca.c) @ ppca.W.T + ppca.b  # the posterior is Gaussian: its mode is its mean
    assert (denoise(ppca.vae(), x, steps=300) - want).abs().max() < 1e-4


def test_inpainting_a_trained_shape_keeps_observed_pixels(tiny_vae, digits_x):
    m = named_mask("centre", (1, 8, 8), n=len(digits_x))
    out = inpaint(tiny_vae, digits_x, m, fill=digits_x.mean(0), iterations=3, steps=5)
    assert out.shape == digits_x.shape and torch.equal(out[~m], digits_x[~m])
    assert torch.isfinite(out).all() and 0 <= float(out.min()) and float(out.max()) <= 1


def test_named_masks():
    assert named_mask("bottom", (1, 4, 4))[0, 0].int().tolist() == [[0] * 4, [0] * 4, [1] * 4, [1] * 4]
    assert named_mask("left", (1, 2, 4))[0, 0].int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]
    assert named_mask("top", (1, 4, 4)).sum() == 8 and named_mask("right", (3, 4, 4)).sum() == 24
    assert named_mask("centre", (1, 8, 8))[0, 0, 2:6, 2:6].all() and named_mask("centre", (1, 8, 8)).sum() == 16
    r = named_mask("random:0.25", (1, 28, 28), n=10, seed=1)
    assert r.shape == (10, 1, 28, 28) and abs(float(r.float().mean()) - 0.25) < 4 * (0.25 * 0.75 / 7840) ** 0.5
    assert torch.equal(r, named_mask("random:0.25", (1, 28, 28), n=10, seed=1))
    assert named_mask("bottom", (6,))[0].int().tolist() == [0, 0, 0, 1, 1, 1]
    assert named_mask("centre", (8,))[0].int().tolist() == [0, 0, 1, 1, 1, 1, 0, 0]


def test_seeded_random_masks_on_the_datas_device(device):
    """A random mask is drawn by a generator on the device asked for (the data's): reproducible there, and on CPU
    the draws of torch.Generator().manual_seed(seed), as before."""
    r = named_mask("random:0.25", (1, 8, 8), n=4, seed=1, device=device)
    assert r.device.type == device.type and r.dtype == torch.bool and r.shape == (4, 1, 8, 8)
    assert torch.equal(r, named_mask("random:0.25", (1, 8, 8), n=4, seed=1, device=device))
    assert not torch.equal(r, named_mask("random:0.25", (1, 8, 8), n=4, seed=2, device=device))
    assert named_mask("bottom", (1, 4, 4), device=device).device.type == device.type
    if device.type == "cpu":
        assert torch.equal(r, torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.25)
        assert torch.equal(r, named_mask("random:0.25", (1, 8, 8), n=4, seed=1))  # the default: CPU


def test_mask_files(tmp_path):
    from PIL import Image

    np.save(tmp_path / "m.npy", np.eye(8, dtype=np.uint8))
    assert load_mask(str(tmp_path / "m.npy"), 5, (1, 8, 8)).shape == (1, 8, 8)
    img = np.zeros((8, 8), np.uint8)
    img[:, :3] = 255
    Image.fromarray(img).save(tmp_path / "m.png")
    m = load_mask(str(tmp_path / "m.png"), 5, (1, 8, 8))
    assert m.shape == (1, 8, 8) and m.sum() == 24 and m[0, :, :3].all()


def test_bad_input_messages(tiny_vae, digits_x, tmp_path):
    x = digits_x[:4]
    with pytest.raises(ValueError, match=r"a mask of shape \(1, 7, 7\) does not fit inputs of shape \(4, 1, 8, 8\)"):
        inpaint(tiny_vae, x, torch.ones(7, 7).bool()[None])
    with pytest.raises(ValueError, match=r"mask values must be 0 or 1 \(1 = missing pixel to fill, 0 = observed\)"):
        inpaint(tiny_vae, x, torch.full((1, 8, 8), 0.5))
    with pytest.raises(ValueError, match="unknown inpainting method 'magic'; choose from iterate, optimize, both"):
        inpaint(tiny_vae, x, named_mask("top", (1, 8, 8)), method="magic")
    with pytest.raises(ValueError, match="unknown mask 'diagonal'"):
        named_mask("diagonal", (1, 8, 8))
    with pytest.raises(ValueError, match="random:P needs 0 < P < 1"):
        named_mask("random:1.5", (1, 8, 8))
    with pytest.raises(FileNotFoundError, match="neither a file"):
        load_mask(str(tmp_path / "none.npy"), 4, (1, 8, 8))
    with pytest.raises(ValueError, match="marks no pixel as missing"):
        masked_mse(x, x, torch.zeros(1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="inpainting needs a model with the capability 'continuous'"):
        inpaint(nn.Linear(2, 2), x, named_mask("top", (1, 8, 8)))
