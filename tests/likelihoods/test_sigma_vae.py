"""sigma-VAE (Rybkin et al. 2021): learned shared sigma and batch-optimal sigma* = sqrt(MSE)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from vaekit.likelihoods import build_likelihood
from vaekit.likelihoods.floors import inverse_soft_floor_log_scale, soft_floor_log_scale


def _data(shape=(6, 2, 5), seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(shape, generator=g, dtype=torch.float64)
    x = mean + noise * torch.randn(shape, generator=g, dtype=torch.float64)
    return mean, x


# -- the soft floor -----------------------------------------------------------------------------------------
def test_soft_floor_adds_variances_and_inverts():
    s = torch.linspace(-20, 5, 101, dtype=torch.float64)
    got = soft_floor_log_scale(s, -6.0)
    torch.testing.assert_close(torch.exp(2 * got), torch.exp(2 * s) + math.exp(-12.0))  # sigma^2 = e^2s + e^2m
    for v in (-5.9, -2.0, 0.0, 3.0, 30.0):
        raw = inverse_soft_floor_log_scale(v, -6.0)
        assert float(soft_floor_log_scale(torch.tensor(raw, dtype=torch.float64), -6.0)) == pytest.approx(v, abs=1e-12)
    with pytest.raises(ValueError, match="above the floor"):
        inverse_soft_floor_log_scale(-7.0, -6.0)


# -- learned shared sigma ---------------------------------------------------------------------------------
def test_sigma_vae_starts_at_init_and_matches_scipy():
    lik = build_likelihood("sigma-vae", (2, 5))
    assert lik.sigma == pytest.approx(1.0, abs=1e-6)
    lik2 = build_likelihood("sigma-vae", (2, 5), init_log_sigma=math.log(0.2), min_log_sigma=-6.0)
    assert lik2.sigma == pytest.approx(0.2, rel=1e-6)
    mean, x = _data()
    ref = stats.norm.logpdf(x.numpy(), mean.numpy(), lik2.sigma).reshape(6, -1).sum(1)
    np.testing.assert_allclose(lik2(mean).log_prob(x).detach().numpy(), ref, rtol=1e-6)
    assert [n for n, _ in lik2.named_parameters()] == ["raw_log_sigma"]


def test_sigma_vae_gradient_reaches_log_sigma_and_is_analytic():
    lik = build_likelihood("sigma-vae", (2, 5), init_log_sigma=-1.0)
    mean, x = _data()
    lik(mean).log_prob(x).sum().backward()
    sigma, raw = lik.sigma, float(lik.raw_log_sigma.detach())
    n_total = x.numel()
    # d/dlog sigma sum_b log p = sum (x - mu)^2 / sigma^2 - N B;  d log sigma / d raw = sigmoid(2 (raw - m))
    dlog = float(((x - mean) ** 2).sum()) / sigma**2 - n_total
    expected = dlog * (1 / (1 + math.exp(-2 * (raw + 6.0))))
    assert float(lik.raw_log_sigma.grad) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("raw", [-30.0, -1e4])
def test_sigma_vae_floor_holds_for_very_negative_parameter(raw):
    lik = build_likelihood("sigma-vae", (4,), min_log_sigma=-6.0)
    with torch.no_grad():
        lik.raw_log_sigma.fill_(raw)
    assert lik.sigma >= math.exp(-6.0) * (1 - 1e-6)
    assert lik.sigma == pytest.approx(math.exp(-6.0), rel=1e-6)
    lp = lik(torch.zeros(3, 4)).log_prob(torch.full((3, 4), 0.01))
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(lik.raw_log_sigma.grad)
    if raw == -30.0:  # soft floor: the gradient is tiny but not zero, so sigma can come back
        assert float(lik.raw_log_sigma.grad) != 0.0


def test_learned_sigma_converges_to_the_batch_optimum():
    # Maximising the Gaussian likelihood over the shared sigma alone must land on sqrt(MSE): the soft floor only
    # reparameterises sigma in (e^m, inf), so it does not move an optimum that lies above it.
    torch.manual_seed(0)
    lik = build_likelihood("sigma-vae", (2, 5))
    mean, x = _data(noise=0.3)
    for _ in range(60):  # gradient ascent on the per-pixel log-likelihood; curvature -2 in log sigma
        lik.raw_log_sigma.grad = None
        (lik(mean.float()).log_prob(x.float()).sum() / x.numel()).backward()
        with torch.no_grad():
            lik.raw_log_sigma += 0.2 * lik.raw_log_sigma.grad
    target = math.sqrt(float(((x - mean) ** 2).mean()))
    assert lik.sigma == pytest.approx(target, rel=1e-6)


# -- batch-optimal sigma* ----------------------------------------------------------------------------------
def test_optimal_sigma_is_root_mse_over_samples_batch_and_pixels():
    lik = build_likelihood("sigma-vae-optimal", (2, 5), min_log_sigma=-30.0)
    assert lik.sigma == 1.0  # before any log_prob
    mean, _ = _data((3, 6, 2, 5))  # (L, B, C, W)
    _, x = _data((6, 2, 5), seed=1)  # (B, C, W)
    d = lik(mean)
    lp = d.log_prob(x)
    assert lp.shape == (3, 6)
    mse = float(((x - mean) ** 2).mean())
    assert lik.sigma == pytest.approx(math.sqrt(mse), rel=1e-7)  # the reporting buffer is float32
    ref = stats.norm.logpdf(x.numpy()[None], mean.numpy(), math.sqrt(mse)).reshape(3, 6, -1).sum(-1)
    np.testing.assert_allclose(lp.numpy(), ref, rtol=1e-12)
    # default floor: sigma*^2 = MSE + exp(-12)
    lik_f = build_likelihood("sigma-vae-optimal", (2, 5))
    lik_f(mean).log_prob(x)
    assert lik_f.sigma == pytest.approx(math.sqrt(mse + math.exp(-12.0)), rel=1e-7)
    assert "last_sigma" not in lik_f.state_dict()


@pytest.mark.parametrize("min_log_sigma", [-6.0, -30.0])
def test_optimal_sigma_maximises_the_likelihood_over_a_grid(min_log_sigma):
    lik = build_likelihood("sigma-vae-optimal", (2, 5), min_log_sigma=min_log_sigma)
    mean, x = _data((4, 2, 5), noise=0.05)
    at_opt = float(lik(mean).log_prob(x).sum())
    s_star = math.sqrt(float(((x - mean) ** 2).mean()) + math.exp(2 * min_log_sigma))
    grid = s_star * np.exp(np.linspace(-0.5, 0.5, 201))  # 0.5% steps
    totals = [stats.norm.logpdf(x.numpy(), mean.numpy(), s).sum() for s in grid]
    assert int(np.argmax(totals)) == 100  # the centre of the grid, sigma* (the default floor moves it < 0.1%)
    assert at_opt == pytest.approx(totals[100], rel=1e-12)
    if min_log_sigma == -30.0:  # without a floor it is the exact maximiser
        assert all(at_opt >= t - 1e-12 for t in totals)


def test_detached_sigma_star_gives_the_envelope_gradient():
    # With sigma* optimal for the summed log-likelihood, the gradient through sigma* is zero (envelope theorem):
    # the detached implementation must give the same gradient w.r.t. the mean as differentiating through it.
    lik = build_likelihood("sigma-vae-optimal", (2, 5), min_log_sigma=-30.0)
    mean0, x = _data((3, 2, 5))
    mean = mean0.clone().requires_grad_(True)
    lik(mean).log_prob(x).sum().backward()
    mean_b = mean0.clone().requires_grad_(True)
    var = ((x - mean_b) ** 2).mean()  # not detached
    full = (-0.5 * (x - mean_b) ** 2 / var - 0.5 * torch.log(var) - 0.5 * math.log(2 * math.pi)).sum()
    full.backward()
    torch.testing.assert_close(mean.grad, mean_b.grad, rtol=1e-10, atol=1e-12)


def test_optimal_sigma_perfect_fit_uses_the_floor_and_stays_finite():
    lik = build_likelihood("sigma-vae-optimal", (4,), min_log_sigma=-6.0)
    mean = torch.full((2, 4), 0.3, requires_grad=True)
    lp = lik(mean).log_prob(torch.full((2, 4), 0.3))
    assert lik.sigma == pytest.approx(math.exp(-6.0), rel=1e-6)
    torch.testing.assert_close(lp, torch.full((2,), 4 * (6.0 - 0.5 * math.log(2 * math.pi))))
    lp.sum().backward()
    assert torch.isfinite(mean.grad).all()


def test_optimal_sigma_samples_use_the_last_sigma():
    torch.manual_seed(0)
    lik = build_likelihood("sigma-vae-optimal", (50,))
    mean, x = _data((40, 50), noise=0.2)
    d = lik(mean.float())
    d.log_prob(x.float())
    xs = d.sample((10,))
    assert xs.shape == (10, 40, 50)
    resid = (xs - mean.float()).flatten()
    # 20000 draws: the sample std is within 3% (> 4 standard errors of 1/sqrt(2n) = 0.5%)
    assert float(resid.std()) == pytest.approx(lik.sigma, rel=0.03)
    torch.testing.assert_close(d.mean, mean.float())
