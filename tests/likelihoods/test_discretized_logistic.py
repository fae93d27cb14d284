"""Discretised logistic (PixelCNN++ Eq. 2 / IAF appendix) on 256 levels in [0, 1]."""

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import stats

from vaekit.likelihoods import build_likelihood
from vaekit.likelihoods.discretized_logistic import DiscretizedLogistic

mpmath.mp.dps = 50
LEVELS = torch.arange(256, dtype=torch.float64) / 255


def _grid(locs, log_scales, dtype):
    loc, ls = torch.meshgrid(torch.tensor(locs, dtype=dtype), torch.tensor(log_scales, dtype=dtype), indexing="ij")
    return loc.reshape(-1), ls.reshape(-1)


# tolerance: the rounding of (k/255 - loc) is amplified by 1/s (1.2e6 at log s = -14)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_bin_probabilities_sum_to_one(dtype, tol):
    loc, ls = _grid([-40.0, -0.3, 0.0, 0.2, 0.5, 1.0, 1.7, 40.0], [-14.0, -8.0, -5.5, -2.0, 0.0, 3.0, 9.0], dtype)
    d = DiscretizedLogistic(loc, ls)  # batch (P,)
    lp = d.log_prob(LEVELS.to(dtype).unsqueeze(-1))  # (256, P): every level against every pixel
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(torch.logsumexp(lp, 0), torch.zeros_like(loc), rtol=0, atol=tol)


def test_matches_scipy_logistic_cdf_differences():
    g = torch.Generator().manual_seed(0)
    loc = torch.rand(40, generator=g, dtype=torch.float64) * 1.2 - 0.1
    ls = torch.rand(40, generator=g, dtype=torch.float64) * 3 - 5
    k = torch.randint(0, 256, (40,), generator=g)
    k[:3], k[3:6] = 0, 255  # edge bins included
    x = k.double() / 255
    got = DiscretizedLogistic(loc, ls).log_prob(x).numpy()
    mu, s, xn, h = loc.numpy(), np.exp(ls.numpy()), x.numpy(), 0.5 / 255
    # right of the mean use survival functions, so that neither side subtracts two numbers close to 1
    right = xn > mu
    cdf_hi = np.where(k.numpy() == 255, 1.0, stats.logistic.cdf(xn + h, mu, s))
    cdf_lo = np.where(k.numpy() == 0, 0.0, stats.logistic.cdf(xn - h, mu, s))
    sf_lo = np.where(k.numpy() == 0, 1.0, stats.logistic.sf(xn - h, mu, s))
    sf_hi = np.where(k.numpy() == 255, 0.0, stats.logistic.sf(xn + h, mu, s))
    ref = np.log(np.where(right, sf_lo - sf_hi, cdf_hi - cdf_lo))
    np.testing.assert_allclose(got, ref, rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_far_tails_match_high_precision_where_naive_cdf_difference_underflows(dtype):
    # (loc, log_scale, level k): sigmoid differences of e^-150 ... e^-2000: 0 in float32 (and partly float64)
    cases = [(0.2, -6.0, 200), (0.9, -7.0, 3), (0.5, -9.0, 128 + 40), (0.0, -8.0, 255), (1.0, -5.0, 0)]
    loc = torch.tensor([c[0] for c in cases], dtype=dtype)
    ls = torch.tensor([c[1] for c in cases], dtype=dtype)
    x = torch.tensor([c[2] / 255 for c in cases], dtype=dtype)
    got = DiscretizedLogistic(loc, ls).log_prob(x).double().numpy()
    ref = []
    with mpmath.workdps(1500):  # enough digits that 1 - e^-3000 is not 1
        for mu, log_s, k in zip(loc.tolist(), ls.tolist(), [c[2] for c in cases]):  # the values actually passed
            mu, s, h = mpmath.mpf(mu), mpmath.exp(log_s), mpmath.mpf(0.5) / 255
            cdf = lambda t: 1 / (1 + mpmath.exp(-(t - mu) / s))  # noqa: E731
            hi = 1 if k == 255 else cdf(mpmath.mpf(k) / 255 + h)
            lo = 0 if k == 0 else cdf(mpmath.mpf(k) / 255 - h)
            ref.append(float(mpmath.log(hi - lo)))
    assert min(ref) < -100  # these really are far tails
    np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype == torch.float32 else 1e-11)


def test_likelihood_head_shapes_broadcast_mean_and_gradients():
    torch.manual_seed(0)
    lik = build_likelihood("discretized-logistic", (1, 2, 3))
    h = torch.randn(4, 5, 2, 2, 3, requires_grad=True)  # (L, B, 2C, H, W)
    x = torch.randint(0, 256, (5, 1, 2, 3)).float() / 255
    d = lik(h)
    assert d.batch_shape == (4, 5) and d.event_shape == (1, 2, 3)
    lp = d.log_prob(x)
    assert lp.shape == (4, 5)
    torch.testing.assert_close(lp[1], lik(h[1]).log_prob(x))
    lp.sum().backward()
    assert torch.isfinite(h.grad).all() and (h.grad != 0).all()
    vec = build_likelihood("discretized-logistic", (3,))
    mean = vec(torch.tensor([[-0.5, 0.3, 1.5, 0.0, 0.0, 0.0]])).mean  # means, then raw log-scales
    torch.testing.assert_close(mean, torch.tensor([[0.0, 0.3, 1.0]]))


def test_scale_soft_floor_keeps_gradient():
    lik = build_likelihood("discretized-logistic", (3,), min_log_scale=-8.0)
    for raw0 in (-20.0, -1e4):
        raw = torch.full((1, 3), raw0, requires_grad=True)
        d = lik(torch.cat([torch.full((1, 3), 0.5), raw], -1))
        assert torch.all(d.base_dist.log_scale >= -8.0)  # never below the floor (equal to it in float32 rounding)
        torch.testing.assert_close(d.base_dist.log_scale, torch.full((1, 3), -8.0))
        d.log_prob(torch.full((1, 3), 128 / 255)).sum().backward()
        assert torch.isfinite(raw.grad).all()
        if raw0 == -20.0:  # d log s / d raw = sigmoid(2 (raw + 8)) = e^-24: small but not zero
            assert torch.all(raw.grad != 0)


def test_samples_are_levels_with_the_right_frequencies():
    torch.manual_seed(0)
    loc = torch.tensor([0.5, -0.002, 0.999])
    ls = torch.tensor([math.log(0.006), math.log(0.004), math.log(0.01)])
    d = DiscretizedLogistic(loc, ls)
    n = 20000
    xs = d.sample((n,))  # (n, 3)
    assert xs.shape == (n, 3) and xs.min() >= 0 and xs.max() <= 1
    k = torch.round(xs * 255)
    torch.testing.assert_close(k / 255, xs, rtol=0, atol=1e-7)
    p = d.log_prob(LEVELS.float().unsqueeze(-1)).exp()  # (256, 3)
    for j in range(3):
        freq = torch.bincount(k[:, j].long(), minlength=256).float() / n
        se = torch.sqrt(p[:, j] * (1 - p[:, j]) / n)
        assert torch.all((freq - p[:, j]).abs() <= 5 * se + 1e-4), j  # 5 standard errors per bin
