"""Diagonal Gaussian posterior: reparameterisation, log q, analytic KL against references and Monte Carlo."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaekit.posteriors import DiagonalGaussian, GaussianPosterior, soft_clamp
from vaekit.posteriors.gaussian import kl_per_dim, _ReparamKL
from vaekit.priors import StandardNormal
from vaekit.objectives.bounds import elbo_terms, log_weights
from vaekit.objectives.latents import sample_latent


def _q(seed=0, b=5, d=4):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(b, d, generator=g)
    scale = torch.rand(b, d, generator=g) * 1.5 + 0.2
    return DiagonalGaussian(loc, scale)


def test_rsample_and_log_prob_matches_torch_log_prob():
    q = _q()
    torch.manual_seed(1)
    z, log_q = q.rsample_and_log_prob((7,))
    assert z.shape == (7, 5, 4) and log_q.shape == (7, 5)
    ref = Independent(Normal(q.loc, q.scale), 1).log_prob(z)
    torch.testing.assert_close(log_q, ref, atol=1e-5, rtol=1e-5)


def test_reparameterised_sample_has_right_moments():
    q = _q(b=1, d=3)
    torch.manual_seed(2)
    z, _ = q.rsample_and_log_prob((200_000,))
    torch.testing.assert_close(z.mean(0), q.loc, atol=4 * q.scale.max().item() / math.sqrt(2e5), rtol=0)
    torch.testing.assert_close(z.std(0), q.scale, atol=0.01, rtol=0)


def test_gradients_reach_mu_and_logvar_through_the_sample():
    head = GaussianPosterior(6, 3)
    h = torch.randn(4, 6)
    torch.manual_seed(0)
    z, _ = head(h).rsample_and_log_prob((2,))
    z.square().sum().backward()
    w = head.linear.weight.grad
    assert w is not None
    assert w[:3].abs().sum() > 0 and w[3:].abs().sum() > 0  # mu rows and log-variance rows


@pytest.mark.parametrize("standard", [True, False])
def test_analytic_kl_matches_closed_form_torch_and_monte_carlo(standard):
    q = _q(seed=3)
    if standard:
        p = StandardNormal(4)()
    else:
        g = torch.Generator().manual_seed(9)
        p = DiagonalGaussian(torch.randn(5, 4, generator=g), torch.rand(5, 4, generator=g) + 0.5)
    kl = kl_per_dim(q, p)
    ref = kl_divergence(Normal(q.loc, q.scale), Normal(p.loc.expand_as(q.loc), p.scale.expand_as(q.scale)))
    torch.testing.assert_close(kl, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kl_divergence(q, p), ref.sum(-1), atol=1e-5, rtol=1e-5)  # registered KL
    if standard:  # Kingma & Welling's formula with log-variances
        lv = 2 * q.scale.log()
        torch.testing.assert_close(kl.sum(-1), -0.5 * (1 + lv - q.loc ** 2 - lv.exp()).sum(-1), atol=1e-5, rtol=1e-5)
    torch.manual_seed(4)
    n = 400_000
    z, log_q = q.rsample_and_log_prob((n,))
    diff = log_q - p.log_prob(z)  # (n, B)
    mc, se = diff.mean(0), diff.std(0) / math.sqrt(n)
    assert torch.all((mc - kl.sum(-1)).abs() < 5 * se + 1e-4)


def test_soft_clamp_bounds_and_identity_near_centre():
    x = torch.linspace(-100, 100, 1001)
    y = soft_clamp(x, -12.0, 8.0)
    assert y.min() >= -12 and y.max() <= 8
    assert torch.all(y[1:] >= y[:-1])
    assert abs(soft_clamp(torch.tensor(-2.0), -12.0, 8.0).item() + 2.0) < 1e-6  # the centre is fixed
    assert abs(soft_clamp(torch.tensor(-1.5), -12.0, 8.0).item() + 1.5) < 0.01


def test_posterior_logvar_is_kept_finite():
    head = GaussianPosterior(3, 2)
    with torch.no_grad():
        head.linear.weight.fill_(0.0)
        head.linear.bias.copy_(torch.tensor([0.0, 0.0, -1e4, 1e4]))
    q = head(torch.zeros(1, 3))
    assert torch.isfinite(q.scale).all() and q.scale.min() > 0
    assert torch.isfinite(kl_divergence(q, StandardNormal(2)())).all()


def test_fused_sample_and_kl_equals_the_distribution_path_values_and_gradients():
    torch.manual_seed(0)
    head = GaussianPosterior(6, 3).double()
    with torch.no_grad():
        head.linear.weight.mul_(8.0)  # push some log-variances into the soft clamp's curved region
    h = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    gz, gk = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)

    prior = DiagonalGaussian(torch.zeros(3).double(), torch.ones(3).double(), standard=True)
    fused = lambda h_, n: sample_latent("z", head(h_), prior, n)  # noqa: E731 - the registered fused sampler
    torch.manual_seed(1)
    g = fused(h, 2)
    assert g.kl_dims is not None and g.log_q is None  # the fused path ran
    z1, kl1 = g.z, g.kl_dims  # (L, B, D), (B, D)
    g1 = torch.autograd.grad((z1 * gz).sum() + (kl1 * gk).sum(), [h, *head.parameters()])
    torch.manual_seed(1)
    q = head(h)
    z2, kl2 = q.rsample((2,)), kl_per_dim(q, prior)
    g2 = torch.autograd.grad((z2 * gz).sum() + (kl2 * gk).sum(), [h, *head.parameters()])
    torch.testing.assert_close(z1, z2)
    torch.testing.assert_close(kl1, kl2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    # the hand-written backward against finite differences, with only one of the two outputs used too
    mu, raw = torch.randn(4, 3, dtype=torch.float64) * 3, torch.randn(4, 3, dtype=torch.float64) * 12
    eps = torch.randn(2, 4, 3, dtype=torch.float64)
    fn = lambda m, r: _ReparamKL.apply(m, r, eps, -2.0, 10.0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (mu.requires_grad_(), raw.requires_grad_()))
    assert torch.autograd.gradcheck(lambda m, r: fn(m, r)[1], (mu, raw))
    # one sample without the sample axis: the same draw as L = 1, and a gradcheck of that form
    torch.manual_seed(3)
    g3 = fused(h, None)
    torch.manual_seed(3)
    g4 = fused(h, 1)
    z3, kl3, z4, kl4 = g3.z, g3.kl_dims, g4.z, g4.kl_dims
    assert z3.shape == (5, 3) and torch.equal(z3, z4[0]) and torch.equal(kl3, kl4)
    assert torch.autograd.gradcheck(lambda m, r: _ReparamKL.apply(m, r, eps[0], -2.0, 10.0), (mu, raw))


@pytest.mark.parametrize("n_samples", [1, 3])
def test_vae_training_terms_take_the_fused_path_with_the_same_numbers(n_samples):
    from vaekit.models import build_vae

    torch.manual_seed(0)
    m = build_vae((1, 4, 4), latent_dim=3, hidden=(8,)).double()
    x = (torch.rand(6, 1, 4, 4) > 0.5).double()
    torch.manual_seed(2)
    t1 = elbo_terms(m, x, n_samples)
    assert "ReparamKL" in type(t1.kl_groups.grad_fn).__name__  # the fused node, not the distribution path
    torch.manual_seed(2)
    q = m.encode(x)
    z = q.rsample((n_samples,))
    log_px_z = m.decode(z).log_prob(x).mean(0)
    kl = kl_per_dim(q, m.prior()).sum(-1)
    torch.testing.assert_close(t1.log_px_z, log_px_z)
    torch.testing.assert_close(t1.kl, kl)
