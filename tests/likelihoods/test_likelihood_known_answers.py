"""log_prob of the simple heads against scipy.stats / closed forms (Bernoulli, fixed, per-pixel Gaussian)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from vaekit.likelihoods import build_likelihood


def _h(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def test_bernoulli_matches_scipy_on_binary_data():
    torch.manual_seed(0)
    lik = build_likelihood("bernoulli", (2, 3, 4))
    h = _h((5, 2, 3, 4))
    x = (torch.rand(5, 2, 3, 4, dtype=torch.float64) < 0.4).double()
    got = lik(h).log_prob(x)  # (5,)
    p = torch.sigmoid(h).numpy()
    ref = stats.bernoulli.logpmf(x.numpy(), p).reshape(5, -1).sum(1)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_bernoulli_grey_values_give_cross_entropy():
    torch.manual_seed(1)
    lik = build_likelihood("bernoulli", (7,))
    h, x = _h((3, 7)), torch.rand(3, 7, dtype=torch.float64)
    p, xn = torch.sigmoid(h).numpy(), x.numpy()
    ref = (xn * np.log(p) + (1 - xn) * np.log1p(-p)).sum(1)
    np.testing.assert_allclose(lik(h).log_prob(x).numpy(), ref, rtol=1e-12)


def test_bernoulli_training_path_matches_scipy_value_and_gradient():
    """With gradients the density is computed as -BCE-with-logits (another code path): same value, and the
    gradient is x - sigmoid(h), here with x broadcast over a leading sample dimension."""
    lik = build_likelihood("bernoulli", (2, 3))
    h = _h((4, 5, 2, 3)).requires_grad_()
    x = (torch.rand(5, 2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) < 0.4).double()
    got = lik(h).log_prob(x)  # (4, 5)
    p = torch.sigmoid(h.detach()).numpy()
    ref = stats.bernoulli.logpmf(np.broadcast_to(x.numpy(), p.shape), p).reshape(4, 5, -1).sum(-1)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    got.sum().backward()
    torch.testing.assert_close(h.grad, x.expand_as(h) - torch.sigmoid(h.detach()))


def test_fixed_gaussian_sigma_one_is_half_squared_error_plus_constant():
    torch.manual_seed(2)
    lik = build_likelihood("gaussian", (3, 5))
    h, x = _h((4, 3, 5)), torch.rand(4, 3, 5, dtype=torch.float64)
    n = 15
    ref = -0.5 * ((x - h) ** 2).sum((1, 2)) - 0.5 * n * math.log(2 * math.pi)
    torch.testing.assert_close(lik(h).log_prob(x), ref, rtol=1e-14, atol=1e-12)


def test_fixed_gaussian_sigma_kwarg_matches_scipy():
    lik = build_likelihood("gaussian", (6,), sigma=0.3)
    h, x = _h((4, 6)), _h((4, 6), seed=5)
    ref = stats.norm.logpdf(x.numpy(), h.numpy(), 0.3).sum(1)
    np.testing.assert_allclose(lik(h).log_prob(x).numpy(), ref, rtol=1e-12)


def test_perpixel_gaussian_matches_scipy_with_softplus_scale():
    lik = build_likelihood("gaussian-perpixel", (2, 3), min_sigma=1e-3)
    h = _h((5, 4, 3))  # 2 channels of means, then 2 of raw scales
    x = _h((5, 2, 3), seed=3)
    mean, raw = h[:, :2].numpy(), h[:, 2:].numpy()
    sigma = np.logaddexp(0.0, raw) + 1e-3
    ref = stats.norm.logpdf(x.numpy(), mean, sigma).reshape(5, -1).sum(1)
    d = lik(h)
    np.testing.assert_allclose(d.log_prob(x).numpy(), ref, rtol=1e-12)
    torch.testing.assert_close(d.mean, h[:, :2])


def test_perpixel_gaussian_floor_and_gradient():
    lik = build_likelihood("gaussian-perpixel", (4,), min_sigma=0.01)
    raw = torch.full((2, 4), -200.0, requires_grad=True)
    h = torch.cat([torch.zeros(2, 4), raw], -1)
    d = lik(h)
    assert torch.all(d.base_dist.scale >= 0.01)
    torch.testing.assert_close(d.base_dist.scale, torch.full((2, 4), 0.01))
    raw2 = torch.full((2, 4), -5.0, requires_grad=True)
    lik(torch.cat([torch.zeros(2, 4), raw2], -1)).log_prob(torch.ones(2, 4)).sum().backward()
    assert torch.all(raw2.grad != 0)


@pytest.mark.parametrize("min_sigma", [0.0, -1.0])
def test_perpixel_gaussian_rejects_bad_floor(min_sigma):
    with pytest.raises(ValueError, match="min_sigma must be positive"):
        build_likelihood("gaussian-perpixel", (3,), min_sigma=min_sigma)
