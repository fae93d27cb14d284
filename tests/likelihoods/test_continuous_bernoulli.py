"""Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): normaliser, density, moments, stability."""

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate

from vaekit.likelihoods import build_likelihood
from vaekit.likelihoods.continuous_bernoulli import StableContinuousBernoulli, cb_log_normalizer

mpmath.mp.dps = 60


def _logit(lam: float) -> float:
    return math.log(lam / (1 - lam))


def _ref_log_c(eta: float) -> float:
    """log C from the paper's lambda form, C = 2 artanh(1 - 2 lambda) / (1 - 2 lambda), in 60-digit arithmetic."""
    if eta == 0:
        return math.log(2)
    if abs(eta) > 100:  # lambda rounds to 1 even at 60 digits: C = |eta| / tanh(|eta|/2) = |eta| (1 + O(e^-|eta|))
        return math.log(abs(eta))
    lam = 1 / (1 + mpmath.exp(-mpmath.mpf(eta)))
    return float(mpmath.log(2 * mpmath.atanh(1 - 2 * lam) / (1 - 2 * lam)))


def _ref_dlog_c(eta: float) -> float:
    """d log C / d eta = 1/eta - 1/sinh(eta) (-> eta/6 at 0), in 60-digit arithmetic."""
    if eta == 0:
        return 0.0
    e = mpmath.mpf(eta)
    return float(1 / e - 1 / mpmath.sinh(e))


ETAS = [0.0, _logit(0.5 + 1e-4), _logit(0.5 - 1e-4), 1e-6, -3e-3, 0.01, 0.3, 0.4999999, 0.5000001, -0.5000001,
        -2.0, 10.0, 50.0, -50.0, 200.0, 1e4, -1e4]


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-13), (torch.float32, 1e-6)])
def test_log_normaliser_matches_high_precision_reference(dtype, atol):
    eta = torch.tensor(ETAS, dtype=dtype)
    got = cb_log_normalizer(eta).double().numpy()
    ref = np.array([_ref_log_c(e) for e in ETAS])
    np.testing.assert_allclose(got, ref, rtol=2e-7 if dtype == torch.float32 else 1e-13, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_log_normaliser_gradient_finite_and_exact(dtype):
    eta = torch.tensor(ETAS, dtype=dtype, requires_grad=True)
    cb_log_normalizer(eta).sum().backward()
    assert torch.isfinite(eta.grad).all()
    ref = np.array([_ref_dlog_c(e) for e in ETAS])
    tol = 1e-10 if dtype == torch.float64 else 2e-6
    np.testing.assert_allclose(eta.grad.double().numpy(), ref, rtol=tol, atol=tol)


def _ref_d2log_c(eta: float) -> float:
    """d^2 log C / d eta^2 = cosh(eta) / sinh(eta)^2 - 1/eta^2 (-> 1/6 at 0)."""
    e = mpmath.mpf(eta)
    return 1 / 6 if eta == 0 else float(mpmath.cosh(e) / mpmath.sinh(e) ** 2 - 1 / e**2)


def test_log_normaliser_smooth_across_one_half():
    # A grid straddling lambda = 0.5 and both series/exact switch points at |eta| = 0.5.
    eta64 = torch.linspace(-0.7, 0.7, 1401, dtype=torch.float64)
    ref = torch.tensor([_ref_log_c(float(e)) for e in eta64[::20]], dtype=torch.float64)
    torch.testing.assert_close(cb_log_normalizer(eta64)[::20], ref, rtol=0, atol=5e-14)
    v32 = cb_log_normalizer(eta64.float()).double()
    assert float((v32 - cb_log_normalizer(eta64)).abs().max()) < 2e-7  # no jump bigger than float32 rounding
    # second differences follow the analytic curvature: no kink at the switch points
    v, step = cb_log_normalizer(eta64), float(eta64[1] - eta64[0])
    d2 = (v[2:] - 2 * v[1:-1] + v[:-2]) / step**2
    ref2 = torch.tensor([_ref_d2log_c(float(e)) for e in eta64[1:-1]], dtype=torch.float64)
    torch.testing.assert_close(d2, ref2, rtol=0, atol=1e-5)
    # and the float32 gradient is smooth too (the closed form's gradient would lose digits near 0)
    e32 = eta64.float().requires_grad_(True)
    cb_log_normalizer(e32).sum().backward()
    dref = torch.tensor([_ref_dlog_c(float(e)) for e in eta64], dtype=torch.float64)
    # 5e-7 = two float32 ulps of the 1/eta term at |eta| = 0.5, where the closed form takes over
    torch.testing.assert_close(e32.grad.double(), dref, rtol=0, atol=5e-7)


@pytest.mark.parametrize("eta", [0.0, _logit(0.5 + 1e-4), _logit(0.5 - 1e-4), 0.01, 0.7, -4.0, 30.0, -300.0, 5000.0])
def test_density_integrates_to_one_and_moments(eta):
    d = StableContinuousBernoulli(logits=torch.tensor(eta, dtype=torch.float64))

    def pdf(x: float) -> float:
        return math.exp(float(d.log_prob(torch.tensor(x, dtype=torch.float64))))

    # the mass of extreme etas sits within ~10/|eta| of an edge: tell quad where
    pts = [c for k in (0.3, 1, 3, 10, 40) for c in (k / abs(eta), 1 - k / abs(eta))] if abs(eta) > 20 else None
    opts = dict(points=pts, limit=200, epsabs=1e-12, epsrel=1e-10)
    mass = integrate.quad(pdf, 0, 1, **opts)[0]
    mean = integrate.quad(lambda x: x * pdf(x), 0, 1, **opts)[0]
    var = integrate.quad(lambda x: (x - mean) ** 2 * pdf(x), 0, 1, **opts)[0]
    assert mass == pytest.approx(1.0, abs=1e-8)
    assert float(d.mean) == pytest.approx(mean, abs=1e-8)
    assert float(d.variance) == pytest.approx(var, rel=1e-6, abs=1e-12)


def test_log_prob_matches_torch_and_direct_formula_for_moderate_logits():
    torch.manual_seed(0)
    eta = 3 * torch.randn(50, dtype=torch.float64)
    x = torch.rand(50, dtype=torch.float64)
    ours = StableContinuousBernoulli(logits=eta)
    theirs = torch.distributions.ContinuousBernoulli(logits=eta)
    torch.testing.assert_close(ours.log_prob(x), theirs.log_prob(x), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours.mean, theirs.mean, rtol=1e-9, atol=1e-9)
    lam = torch.sigmoid(eta).numpy()
    ref = [_ref_log_c(float(e)) for e in eta] + x.numpy() * np.log(lam) + (1 - x.numpy()) * np.log1p(-lam)
    np.testing.assert_allclose(ours.log_prob(x).numpy(), ref, rtol=1e-10)


def test_extreme_logits_stay_finite_in_float32_with_gradients():
    eta = torch.tensor([-1e4, -80.0, -17.0, 0.0, 17.0, 80.0, 1e4], requires_grad=True)
    x = torch.tensor([0.0, 0.3, 1.0, 0.5, 0.0, 1.0, 1.0])
    d = StableContinuousBernoulli(logits=eta)
    lp = d.log_prob(x)
    assert torch.isfinite(lp).all()
    (lp.sum() + d.mean.sum() + d.variance.sum()).backward()
    assert torch.isfinite(eta.grad).all()
    # at eta = 80, x = 1: log p = log C + log sigmoid(80) = log(80) to float32 precision
    assert float(lp[5].detach()) == pytest.approx(math.log(80.0), rel=1e-6)
    assert float(d.mean[-1].detach()) == pytest.approx(1 - 1e-4, abs=1e-6)


def test_likelihood_head_mean_is_cb_mean_not_lambda_and_broadcasts():
    torch.manual_seed(3)
    lik = build_likelihood("continuous-bernoulli", (2, 3))
    h = torch.randn(4, 5, 2, 3, dtype=torch.float64) * 3  # (L, B, C, W)
    x = torch.rand(5, 2, 3, dtype=torch.float64)  # (B, C, W)
    d = lik(h)
    assert d.batch_shape == (4, 5) and d.event_shape == (2, 3)
    lp = d.log_prob(x)
    assert lp.shape == (4, 5)
    torch.testing.assert_close(lp[2], lik(h[2]).log_prob(x))
    ref = torch.distributions.ContinuousBernoulli(logits=h).log_prob(x).sum((-2, -1))
    torch.testing.assert_close(lp, ref, rtol=1e-9, atol=1e-9)
    lam = torch.sigmoid(h)
    assert not torch.allclose(d.mean, lam)  # the mean is pulled towards 1/2 relative to lambda
    assert torch.all((d.mean - 0.5).abs() <= (lam - 0.5).abs() + 1e-12)
