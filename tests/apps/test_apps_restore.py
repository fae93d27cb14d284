"""Restoration: operators against hand computations and scipy, the MAP latent and the posterior samples against
the closed forms of a linear-Gaussian (pPCA) VAE, inpaint/denoise as special cases, baselines, PSNR/SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vaekit.apps import baselines, denoise, image_metrics, inpaint, parse_operator, psnr_ssim, restore
from vaekit.apps.latent import importance_resample, laplace_precision
from vaekit.apps.operators import DEFAULT_SIGMA, Blur, Downsample, gaussian_kernel

SHAPE = (1, 4, 4)  # 16 pixels, 3 latents
STEPS = 500


class _Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(1)


def _image_ppca(ppca):
    """The pPCA VAE of tests/evaluation/ppca_vae.py on (1, 4, 4) images (x_dim = 16)."""
    from vaekit.likelihoods import FixedGaussianLikelihood

    m = ppca.vae()
    m.encoder = _Flatten()
    m.likelihood = FixedGaussianLikelihood(SHAPE, sigma=ppca.sigma).to(torch.float64)
    m.data_shape = SHAPE
    return m


@pytest.fixture(scope="module")
def ppca16():
    from ppca_vae import PPCA

    return PPCA(x_dim=16, z_dim=3, sigma=0.3, seed=2)


def _matrix(obs):
    """(O, 16) matrix of the linear part of A, column j = A(e_j) (masks act through the likelihood's weights)."""
    from vaekit.apps.operators import Mask, Observation

    lin = Observation([op for op in obs.ops if not isinstance(op, Mask)], SHAPE)
    eye = torch.eye(16, dtype=torch.float64).reshape(16, *SHAPE)
    return lin(eye).reshape(16, -1).T


def _exact_posterior(ppca, obs, y):
    """Mean (N, D) and covariance (N, D, D) of p(z | y) for y = A(W z + b) + noise, sigma the likelihood's:
    ridge regression, precision P = I + (A W)^T diag(w) (A W) / s^2 with w the observed entries."""
    s = obs.sigma or DEFAULT_SIGMA
    M = _matrix(obs) @ ppca.W  # (O, D)
    Ab = _matrix(obs) @ ppca.b  # (O,)
    w = obs.observed(y).reshape(-1, M.shape[0]).expand(y.shape[0], -1)  # (N, O)
    P = torch.eye(ppca.z_dim, dtype=torch.float64) + torch.einsum("od,no,oe->nde", M, w, M) / s**2
    rhs = torch.einsum("od,no->nd", M, w * (y.reshape(len(y), -1) - Ab)) / s**2
    return torch.linalg.solve(P, rhs), torch.linalg.inv(P), P


@pytest.mark.parametrize("spec", ["downsample:2+noise:0.3", "blur:1+noise:0.3", "blur:0.7+mask:random:0.4+noise:0.2",
                                  "identity+noise:0.5"])
def test_map_is_the_ridge_regression_answer_on_ppca(ppca16, spec):
    model = _image_ppca(ppca16)
    x = ppca16.sample(30).reshape(30, *SHAPE)
    obs = parse_operator(spec, SHAPE, n=30, seed=3)
    y = obs.observe(x, torch.Generator().manual_seed(0))
    res = restore(model, y, obs, steps=STEPS, lr=0.1, likelihood="gaussian")
    want, _, _ = _exact_posterior(ppca16, obs, y)
    assert (res.z - want).abs().max() < 1e-4
    assert torch.allclose(res.restored.reshape(30, -1), res.z @ ppca16.W.T + ppca16.b, atol=1e-10)
    if spec.startswith("identity"):  # a concave objective: every start finds the same optimum
        two = restore(model, y, obs, steps=STEPS, lr=0.1, likelihood="gaussian", restarts=3, init="prior", seed=1)
        assert (two.z - want).abs().max() < 1e-4


def test_samples_follow_the_exact_gaussian_posterior(ppca16):
    model = _image_ppca(ppca16)
    x = ppca16.sample(4).reshape(4, *SHAPE)
    obs = parse_operator("downsample:2+noise:0.3", SHAPE)
    y = obs.observe(x, torch.Generator().manual_seed(0))
    mean, cov, P = _exact_posterior(ppca16, obs, y)
    prior = model.prior()

    def log_joint(z):
        return obs.log_likelihood(model.decode(z), y, "gaussian") + prior.log_prob(z)

    assert torch.allclose(laplace_precision(log_joint, mean), P, atol=1e-8)  # the Hessian of a Gaussian log-density
    s = importance_resample(log_joint, mean, P, n_samples=4000, n_proposals=4000,
                            generator=torch.Generator().manual_seed(1))
    # q is the posterior itself: every weight is 1/M and the effective sample size is M
    assert torch.allclose(s.weights, torch.full_like(s.weights, 1 / 4000), rtol=1e-6)
    assert torch.allclose(s.ess, torch.full_like(s.ess, 4000.0), rtol=1e-6)
    sd = torch.diagonal(cov, dim1=1, dim2=2).sqrt()  # (N, D)
    assert ((s.samples.mean(0) - mean).abs() < 5 * sd / math.sqrt(4000) * 1.5).all()  # resampling adds some noise
    emp = torch.einsum("snd,sne->nde", s.samples - mean, s.samples - mean) / 4000
    assert torch.allclose(emp, cov, atol=0.1 * float(cov.abs().max()))
    res = restore(model, y, obs, steps=400, samples=50, proposals=2000, likelihood="gaussian", seed=2)
    assert res.samples.shape == (4, 50, *SHAPE) and res.ess.min() > 1999
    exact_image = (mean @ ppca16.W.T + ppca16.b).reshape(4, *SHAPE)  # E[x | y] = W E[z | y] + b
    img_sd = (torch.einsum("xd,nde,xe->nx", ppca16.W, cov, ppca16.W).sqrt()).reshape(4, *SHAPE)
    assert ((res.posterior_mean - exact_image).abs() < 5 * img_sd / math.sqrt(2000)).all()


def test_a_noiseless_mask_is_inpaint_and_the_identity_is_denoise(tiny_vae, digits_x):
    x = digits_x[:20]
    obs = parse_operator("mask:bottom", (1, 8, 8), n=20)
    y = obs.observe(x)
    assert torch.equal(y[:, :, 4:], torch.zeros_like(y[:, :, 4:])) and torch.equal(y[:, :, :4], x[:, :, :4])
    got = restore(tiny_vae, y, obs, steps=30)  # likelihood auto: the decoder's own, as inpaint's
    want = inpaint(tiny_vae, x, obs.mask.missing[0], fill=0.5, steps=30)
    assert torch.allclose(got.restored, want, atol=1e-6) and torch.equal(got.restored[:, :, :4], x[:, :, :4])
    obs = parse_operator("identity", (1, 8, 8))
    assert torch.allclose(restore(tiny_vae, x, obs, steps=30).restored, denoise(tiny_vae, x, steps=30), atol=1e-6)


def test_observed_pixels_are_kept_only_where_y_holds_them(tiny_vae, digits_x):
    x = digits_x[:5]
    for spec, kept in (("mask:top", True), ("mask:top+noise:0.1", False), ("blur:1+mask:top", False)):
        obs = parse_operator(spec, (1, 8, 8), n=5)
        r = restore(tiny_vae, obs.observe(x, torch.Generator().manual_seed(0)), obs, steps=3)
        assert torch.equal(r.restored[:, :, 4:], x[:, :, 4:]) == kept, spec


def test_sampling_a_neural_vae(tiny_vae, digits_x):
    x = digits_x[:12]
    obs = parse_operator("downsample:2+noise:0.1", (1, 8, 8))
    y = obs.observe(x, torch.Generator().manual_seed(0))
    r = restore(tiny_vae, y, obs, steps=20, samples=6, proposals=40, restarts=2, seed=4)
    assert r.samples.shape == (12, 6, 1, 8, 8) and r.posterior_mean.shape == x.shape
    assert ((r.ess >= 1 - 1e-6) & (r.ess <= 40 + 1e-6)).all() and torch.isfinite(r.samples).all()
    again = restore(tiny_vae, y, obs, steps=20, samples=6, proposals=40, restarts=2, seed=4)
    assert torch.equal(r.samples, again.samples)  # seeded
    assert torch.allclose(restore(tiny_vae, y, obs, steps=20, batch_size=5).restored,
                          restore(tiny_vae, y, obs, steps=20).restored, atol=1e-6)


def test_operators_against_hand_computations():
    from scipy.ndimage import gaussian_filter

    x = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    assert Downsample(2)(x)[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert torch.equal(Downsample(2).start(Downsample(2)(x))[0, 0, :2, :2], torch.full((2, 2), 2.5, dtype=x.dtype))
    k = gaussian_kernel(1.5)
    assert k.numel() == 13 and float(k.sum()) == pytest.approx(1.0, abs=1e-15) and torch.equal(k, k.flip(0))
    img = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for s in (0.6, 1.5, 3.0):  # a radius larger than the image: replicated edges all the same
        want = gaussian_filter(img.numpy(), (0, 0, s, s), mode="nearest", truncate=4.0)
        np.testing.assert_allclose(Blur(s)(img).numpy(), want, atol=1e-12)
    obs = parse_operator("blur:1+downsample:2+mask:top+noise:0.1", (1, 8, 8), n=3)
    assert obs.obs_shape == (1, 4, 4) and obs.sigma == 0.1 and obs.kind == "super-resolution"
    assert obs.spec == "blur:1+downsample:2+mask:top+noise:0.1" and obs.mask.missing.shape == (3, 1, 4, 4)
    y = obs.observe(torch.rand(3, 1, 8, 8, dtype=torch.float64), torch.Generator().manual_seed(0))
    assert (y[:, :, :2] == 0).all() and (y[:, :, 2:] != 0).all()
    assert parse_operator("mask:random:0.3", (1, 8, 8), n=5, seed=1).mask.missing.shape == (5, 1, 8, 8)
    assert parse_operator("noise:0.2", (3, 4, 4)).kind == "denoising"


def test_psnr_and_ssim_are_scikit_images():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(0)
    t = torch.rand(5, 1, 12, 10, generator=g)
    p = (t + 0.1).clamp(0, 1)
    psnr, ssim = psnr_ssim(p, t)
    assert psnr[0] == pytest.approx(peak_signal_noise_ratio(t[0, 0].double().numpy(), p[0, 0].double().numpy(),
                                                            data_range=1.0))
    assert ssim[3] == pytest.approx(structural_similarity(t[3, 0].double().numpy(), p[3, 0].double().numpy(),
                                                          data_range=1.0))
    assert psnr_ssim(t * 0 + 0.5, t * 0 + 0.6)[0][0] == pytest.approx(20.0)  # MSE 0.01: 20 dB
    m = image_metrics(p, t)
    assert m["psnr"] == pytest.approx(psnr.mean()) and m["ssim"] == pytest.approx(ssim.mean())
    assert psnr_ssim(torch.rand(2, 3, 5, 5), torch.rand(2, 3, 5, 5))[1].shape == (2,)  # RGB, a 5-pixel window


def test_baselines():
    flat = torch.full((3, 1, 8, 8), 0.25)
    obs = parse_operator("downsample:4", (1, 8, 8))
    b = baselines(obs, obs(flat))
    assert set(b) == {"nearest", "bicubic"} and all(torch.allclose(v, flat, atol=1e-6) for v in b.values())
    sharp = torch.zeros(2, 1, 16, 16)
    sharp[:, :, 5:11, 7:9] = 1.0
    obs = parse_operator("blur:1.5", (1, 16, 16))
    y = obs(sharp)
    b = baselines(obs, y)
    assert set(b) == {"richardson_lucy", "wiener"}
    blurred = image_metrics(y, sharp)["psnr"]
    assert all(image_metrics(v, sharp)["psnr"] > blurred for v in b.values())  # deconvolution sharpens
    obs = parse_operator("mask:left", (1, 8, 8), fill=0.3)
    assert torch.equal(baselines(obs, obs(flat))["mean_fill"][:, :, :, :4], torch.full((3, 1, 8, 4), 0.3))
    assert set(baselines(parse_operator("noise:0.1", (1, 8, 8)), flat)) == {"observed"}


@pytest.mark.parametrize("spec, match", [
    ("downsample:3", "downsample:3 needs image sides divisible by 3; these images are 8 x 8"),
    ("downsample:1", "downsample in --operator 'downsample:1' needs an integer factor of at least 2"),
    ("blur:-1", "blur in --operator 'blur:-1' needs a positive number (blur:SIGMA), got '-1'"),
    ("noise:x", "noise in --operator 'noise:x' needs a positive number"),
    ("zoom:2", "unknown operator 'zoom:2' in --operator 'zoom:2'; give downsample:K, blur:SIGMA"),
    ("blur:1++noise:0.1", "empty operator in --operator"),
    ("mask", "mask in --operator 'mask' needs a mask: mask:bottom"),
    ("mask:diagonal", "neither a file"),
    ("mask:top+downsample:2", "the mask must come after every downsample and blur"),
    ("noise:0.1+noise:0.2", "has more than one noise"),
])
def test_bad_specs(spec, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match.replace("(", r"\(").replace(")", r"\)")
                       .replace("+", r"\+")):
        parse_operator(spec, (1, 8, 8))


def test_bad_input_messages(tiny_vae, digits_x):
    obs = parse_operator("downsample:2", (1, 8, 8))
    with pytest.raises(ValueError, match=r"observations of shape \(1, 8, 8\) do not fit downsample:2 on \(1, 8, 8\)"):
        restore(tiny_vae, digits_x[:2], obs)
    with pytest.raises(ValueError, match="restarts must be an integer of at least 1, got 0"):
        restore(tiny_vae, obs(digits_x[:2]), obs, restarts=0)
    with pytest.raises(ValueError, match="init must be one of encoder, prior"):
        restore(tiny_vae, obs(digits_x[:2]), obs, init="zero")
    with pytest.raises(ValueError, match="the decoder's likelihood applies only to masks and identities"):
        restore(tiny_vae, obs(digits_x[:2]), obs, likelihood="decoder", steps=1)
    with pytest.raises(ValueError, match=r"restoration needs images \(C, H, W\)"):
        parse_operator("noise:0.1", (6,))
    with pytest.raises(ValueError, match="restoration needs a model with the capability 'continuous'"):
        restore(nn.Linear(2, 2), obs(digits_x[:2]), obs)
