"""The von Mises-Fisher posterior and the uniform prior on the sphere (Davidson et al. 2018): the Bessel function and
its exact gradient, a density that integrates to 1, log_prob against scipy and the closed form on S^2, Wood's
sampler (unit norm, E[z] = A_m(kappa) mu, a KS test of w), the closed-form KL and entropy against Monte Carlo, the
reparameterised gradients (exact in mu; in kappa with the omitted correction term computed and added back), the
config rules and what a vMF VAE offers and refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from vaekit.config import ModelConfig
from vaekit.model_config import validate_model
from vaekit.models.registry import build_family
from vaekit.objectives import ELBO, elbo_terms
from vaekit.options import ConfigError
from vaekit.posteriors.bessel import bessel_ratio, ive, log_ive, log_ive_pair, log_iv
from vaekit.posteriors.vmf import VonMisesFisher, accepted_eps, log_normaliser, log_sphere_area, w_of_eps
from vaekit.priors.sphere import HypersphericalUniform, vmf_uniform_kl

F64 = torch.float64


def _vmf(mu, kappa) -> VonMisesFisher:
    mu = torch.as_tensor(mu, dtype=F64)
    return VonMisesFisher(mu / mu.norm(dim=-1, keepdim=True), torch.as_tensor(kappa, dtype=F64))


def _a(m: int, kappa: float) -> float:
    """A_m(kappa) = I_{m/2}(kappa) / I_{m/2-1}(kappa) from scipy."""
    return float(special.ive(m / 2, kappa) / special.ive(m / 2 - 1, kappa))


# -- the Bessel function ----------------------------------------------------------------------------------------
def test_log_ive_matches_scipy_and_its_gradient_is_the_exact_derivative():
    x = torch.tensor([0.05, 0.7, 3.0, 40.0, 2500.0], dtype=F64)
    for v in (0.0, 0.5, 4.0, 19.5):
        torch.testing.assert_close(log_ive(v, x), torch.from_numpy(np.log(special.ive(v, x.numpy()))))
        torch.testing.assert_close(log_iv(v, x[:3]), torch.from_numpy(np.log(special.iv(v, x[:3].numpy()))))
        xg = x.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t, v=v: log_ive(v, t), (xg,), eps=1e-6, atol=1e-7, rtol=1e-5)
        assert torch.autograd.gradcheck(lambda t, v=v: ive(v, t), (xg,), eps=1e-6, atol=1e-8, rtol=1e-5)
        # the derivative of ive by hand: ive(v - 1, x) - ive(v, x) (v + x) / x
        (g,) = torch.autograd.grad(ive(v, xg).sum(), xg)
        xs = x.numpy()
        torch.testing.assert_close(g, torch.from_numpy(special.ive(v - 1, xs) - special.ive(v, xs) * (v + xs) / xs))
        # the pair the distribution uses: the same values, its gradients from the recurrence
        l0, l1 = log_ive_pair(v, x)
        torch.testing.assert_close(l0, log_ive(v, x))
        torch.testing.assert_close(l1, log_ive(v + 1, x))
        assert torch.autograd.gradcheck(lambda t, v=v: log_ive_pair(v, t), (xg,), eps=1e-6, atol=1e-7, rtol=1e-5)
    # the ratio A_m and its known derivative A' = 1 - A^2 - (m - 1) A / kappa
    m, k = 10, torch.tensor([0.3, 5.0, 400.0], dtype=F64, requires_grad=True)
    a = bessel_ratio(m / 2 - 1, k)
    (da,) = torch.autograd.grad(a.sum(), k)
    torch.testing.assert_close(da, (1 - a * a - (m - 1) * a / k).detach())


def test_log_iv_where_ive_underflows_follows_the_series():
    """v = 400 at x = 1 underflows float64's ive: Debye's expansion against the power series of I_v."""
    v, x = 400.0, 1.0
    assert special.ive(v, x) == 0.0
    terms = [k * math.log(x * x / 4) - math.lgamma(k + 1) - math.lgamma(v + k + 1) for k in range(30)]
    exact = v * math.log(x / 2) + float(torch.tensor(terms, dtype=F64).logsumexp(0))
    got = float(log_iv(v, torch.tensor([x], dtype=F64)))
    assert math.isfinite(got) and abs(got - exact) < 1e-3  # Debye's first correction: about 1 / (12 v) nats


# -- the density --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa", [0.4, 6.0, 60.0])
def test_the_density_integrates_to_one_on_s1_and_s2(kappa):
    th = torch.linspace(0, 2 * math.pi, 4001, dtype=F64)[:-1]  # S^1: a periodic grid, the trapezoid rule
    q1 = _vmf([0.6, -0.8], kappa)
    z1 = torch.stack([th.cos(), th.sin()], -1)
    assert abs(float(q1.log_prob(z1).exp().sum() * (2 * math.pi / 4000)) - 1) < 1e-6
    n = 600  # S^2: midpoints in the polar angle, a periodic grid in the azimuth
    pol = (torch.arange(n, dtype=F64) + 0.5) * math.pi / n
    az = torch.arange(2 * n, dtype=F64) * math.pi / n
    p, a = torch.meshgrid(pol, az, indexing="ij")
    z2 = torch.stack([p.sin() * a.cos(), p.sin() * a.sin(), p.cos()], -1)  # (n, 2n, 3)
    q2 = _vmf([0.3, -0.5, 0.81], kappa)
    total = float((q2.log_prob(z2).exp() * p.sin()).sum() * (math.pi / n) ** 2)
    assert abs(total - 1) < 1e-4


def test_log_prob_matches_scipy_and_the_closed_form_on_s2():
    g = torch.Generator().manual_seed(0)
    for m, kappa in ((3, 0.3), (3, 25.0), (5, 7.0), (10, 300.0)):
        q = _vmf(torch.randn(m, generator=g, dtype=F64), kappa)
        z = torch.randn(6, m, generator=g, dtype=F64)
        z = torch.cat([z / z.norm(dim=-1, keepdim=True), q.loc[None]])  # the mode among them
        lp = q.log_prob(z)
        if m == 3:  # kappa / (4 pi sinh kappa) e^{kappa mu.z}
            ref = math.log(kappa / (4 * math.pi * math.sinh(kappa))) + kappa * (z @ q.loc)
            torch.testing.assert_close(lp, ref)
        if hasattr(stats, "vonmises_fisher"):  # scipy >= 1.11
            ref = stats.vonmises_fisher(q.loc.numpy(), kappa).logpdf(z.numpy())
            torch.testing.assert_close(lp, torch.from_numpy(np.asarray(ref)), rtol=1e-9, atol=1e-8)
    # the normaliser tends to the uniform's as kappa -> 0, and the KL to 0
    tiny = torch.tensor([1e-6], dtype=F64)
    assert abs(float(log_normaliser(7, tiny) - tiny) + log_sphere_area(7)) < 1e-6
    assert abs(math.exp(log_sphere_area(2)) - 2 * math.pi) < 1e-12
    assert abs(math.exp(log_sphere_area(3)) - 4 * math.pi) < 1e-12


# -- the sampler --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,kappa", [(2, 3.0), (3, 0.5), (10, 12.0), (10, 5000.0)])
def test_draws_are_unit_vectors_whose_mean_is_a_m_mu(m, kappa):
    g = torch.Generator().manual_seed(1)
    mus = torch.cat([torch.eye(m, dtype=F64)[:1], -torch.eye(m, dtype=F64)[:1], torch.randn(2, m, generator=g,
                                                                                          dtype=F64)])  # (4, m)
    q = _vmf(mus, torch.full((4,), kappa, dtype=F64))  # mu = e1, -e1 and two others: both reflections
    n = 20000
    z, log_q = q.rsample_and_log_prob((n,), generator=g)  # (n, 4, m), (n, 4)
    assert z.shape == (n, 4, m) and float((z.norm(dim=-1) - 1).abs().max()) < 1e-12
    torch.testing.assert_close(log_q, q.log_prob(z), rtol=1e-9, atol=1e-9)
    se = z.std(0) / math.sqrt(n)  # (4, m)
    assert bool(((z.mean(0) - _a(m, kappa) * q.loc).abs() < 4 * se + 1e-12).all())
    torch.testing.assert_close(q.mean, _a(m, kappa) * q.loc)
    # the entropy against -E[log q] (Monte Carlo)
    h = -log_q.mean(0)
    assert bool(((q.entropy() - h).abs() < 4 * log_q.std(0) / math.sqrt(n) + 1e-9).all())


@pytest.mark.parametrize("kappa", [1.0, 20.0])
def test_w_follows_its_exact_marginal_on_s2_and_s9(kappa):
    """w = mu^T z: on S^2 its CDF is (e^{kappa w} - e^{-kappa}) / (e^{kappa} - e^{-kappa}); on S^9 the density
    proportional to e^{kappa w} (1 - w^2)^{7/2}, integrated numerically."""
    g = torch.Generator().manual_seed(2)
    k = torch.full((4000,), kappa, dtype=F64)
    w3 = w_of_eps(accepted_eps(k, 3, g), k, 3)[0].numpy()
    cdf3 = lambda w: np.expm1(kappa * (w + 1)) / np.expm1(2 * kappa)  # noqa: E731
    assert stats.kstest(w3, cdf3).pvalue > 1e-3
    grid = np.linspace(-1, 1, 200001)
    dens = np.exp(kappa * (grid - 1)) * (1 - grid * grid) ** 3.5
    cum = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2)])
    w10 = w_of_eps(accepted_eps(k, 10, g), k, 10)[0].numpy()
    assert stats.kstest(w10, lambda w: np.interp(w, grid, cum / cum[-1])).pvalue > 1e-3
    # and the sampler is not the uniform: a wrong marginal is rejected
    assert stats.kstest(w10, lambda w: np.interp(w, grid, np.cumsum((1 - grid ** 2) ** 3.5) / np.sum(
        (1 - grid ** 2) ** 3.5))).pvalue < 1e-6


def test_the_uniform_prior_on_s2_has_uniform_heights_and_the_density_one_over_its_area():
    """Archimedes: a coordinate of a uniform point on S^2 is uniform on [-1, 1]."""
    p = HypersphericalUniform(3, torch.zeros((), dtype=F64))
    z = p.sample_at_temperature((4000,), 0.5, generator=torch.Generator().manual_seed(3))
    assert float((z.norm(dim=-1) - 1).abs().max()) < 1e-12
    assert stats.kstest(z[:, 2].numpy(), stats.uniform(-1, 2).cdf).pvalue > 1e-3
    torch.testing.assert_close(p.log_prob(z[:2]), torch.full((2,), -math.log(4 * math.pi), dtype=F64))
    assert float(p.entropy()) == pytest.approx(math.log(4 * math.pi))


def test_generator_draws_repeat_and_follow_the_data_dtype_and_device(device):
    q = _vmf([[1.0, 2.0, 2.0]], [4.0])
    q = VonMisesFisher(q.loc.to(device), q.concentration.to(device))
    a = q.rsample((5,), generator=torch.Generator(device).manual_seed(3))
    b = q.rsample((5,), generator=torch.Generator(device).manual_seed(3))
    assert torch.equal(a, b) and a.device.type == device.type
    p = HypersphericalUniform(3, q.loc)
    assert p.sample_at_temperature((4,), generator=torch.Generator(device).manual_seed(3)).device.type == device.type
    assert vmf_uniform_kl(q, p).device.type == q.log_prob(a).device.type == device.type
    q32 = VonMisesFisher(q.loc.float(), q.concentration.float())
    z, lq = q32.rsample_and_log_prob((7,))
    assert z.dtype == lq.dtype == torch.float32 and z.shape == (7, 1, 3)


# -- the KL and the gradients ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa", [0.5, 30.0, 3000.0])
def test_closed_form_kl_against_monte_carlo(kappa):
    m = 10
    q = _vmf(torch.arange(1.0, m + 1)[None], [kappa])  # batch (1,)
    p = HypersphericalUniform(m, q.loc)
    kl = vmf_uniform_kl(q, p)  # (1, 1)
    assert kl.shape == (1, 1)
    torch.testing.assert_close(torch.distributions.kl_divergence(q, p), kl[:, 0])
    z = q.rsample((20000,), generator=torch.Generator().manual_seed(4))
    mc = q.log_prob(z) - p.log_prob(z)  # (n, 1)
    assert abs(float(kl) - float(mc.mean())) < 4 * float(mc.std()) / math.sqrt(20000) + 1e-9
    assert float(kl) > 0


def test_the_cached_bessel_terms_keep_their_gradient_after_a_no_grad_use():
    kappa = torch.tensor([3.0], dtype=F64, requires_grad=True)
    q = _vmf([[0.0, 1.0, 0.0, 0.0]], kappa)
    with torch.no_grad():
        q.mean
    (g,) = torch.autograd.grad(q.entropy().sum(), kappa)
    (ref,) = torch.autograd.grad(_vmf([[0.0, 1.0, 0.0, 0.0]], kappa).entropy().sum(), kappa)
    torch.testing.assert_close(g, ref)
    assert float(g.abs()) > 0


def test_reparameterised_gradient_in_mu_is_exact():
    """d/dtheta E[c^T z] for mu = theta / |theta|: the pathwise estimate against A_m(kappa) c^T mu by autograd."""
    m, kappa = 5, 4.0
    theta = torch.tensor([0.5, -1.0, 0.3, 0.8, -0.2], dtype=F64, requires_grad=True)
    c = torch.tensor([1.0, 2.0, -1.0, 0.5, 0.0], dtype=F64)
    g = torch.Generator().manual_seed(5)
    grads = []
    for _ in range(20):
        q = VonMisesFisher(theta / theta.norm(), torch.tensor(kappa, dtype=F64))
        (gr,) = torch.autograd.grad((q.rsample((2000,), generator=g) @ c).mean(), theta)
        grads.append(gr)
    grads = torch.stack(grads)  # (20, m)
    (exact,) = torch.autograd.grad(_a(m, kappa) * (c @ (theta / theta.norm())), theta)
    assert bool(((grads.mean(0) - exact).abs() < 4 * grads.std(0) / math.sqrt(20) + 1e-9).all()), (grads.mean(0),
                                                                                                   exact)


@pytest.mark.parametrize("m,kappa", [(3, 2.0), (10, 15.0)])
def test_reparameterised_gradient_in_kappa_plus_the_omitted_correction_is_exact(m, kappa):
    """d/dkappa E[w] = A_m'(kappa) = 1 - A^2 - (m - 1) A / kappa. The pathwise term dw/dkappa at the accepted eps
    (what training uses) plus the omitted correction w d/dkappa log(g(w) / r(w)) (Davidson et al. Sec. 3.3; g the
    density of w, r the proposal's, w = h(eps, kappa) with eps held fixed) matches it."""
    n = 200000
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)  # one kappa per draw: per-draw derivatives
    eps = accepted_eps(k.detach(), m, torch.Generator().manual_seed(6))  # (n,)
    w, _, sin = w_of_eps(eps, k, m)
    b = (m - 1) / (2 * k + torch.sqrt(4 * k * k + (m - 1) ** 2))
    # log g(w) - log r(w) + log s(eps), with log r(w) = log s(eps) - log |dh/deps| and dh/deps = -2b / den^2
    log_c = log_normaliser(m, k) - k  # log C_m(kappa)
    ratio = log_c + k * w + (m - 3) * torch.log(sin) + torch.log(2 * b) - 2 * torch.log(1 - (1 - b) * eps)
    (dw,) = torch.autograd.grad(w.sum(), k, retain_graph=True)
    (dl,) = torch.autograd.grad(ratio.sum(), k)
    a = _a(m, kappa)
    exact = 1 - a * a - (m - 1) * a / kappa
    total = dw + w.detach() * dl  # (n,)
    assert abs(float(total.mean()) - exact) < 4 * float(total.std()) / math.sqrt(n), (float(total.mean()), exact)
    assert abs(float(dl.mean())) < 4 * float(dl.std()) / math.sqrt(n)  # a score: mean zero


# -- the model ------------------------------------------------------------------------------------------------------
def _model(**kw):
    torch.manual_seed(0)
    return build_family(ModelConfig(family="vae", latent_dim=3, hidden=[8], posterior="vmf", prior="sphere", **kw),
                        (6,)).double()


def test_config_rules_pair_the_vmf_posterior_with_the_sphere_prior():
    validate_model(ModelConfig(family="vae", latent_dim=3, posterior="vmf", prior="sphere",
                               posterior_options={"kappa_min": 0.5}))
    with pytest.raises(ConfigError, match=r"^model.posterior=vmf puts z on the sphere S\^\(D-1\); set "
                                          r"model.prior=sphere"):
        validate_model(ModelConfig(family="vae", posterior="vmf"))
    with pytest.raises(ConfigError, match=r"^model.prior=sphere .* set model.posterior=vmf"):
        validate_model(ModelConfig(family="vae", prior="sphere", posterior="iaf"))
    with pytest.raises(ConfigError, match="latent_dim >= 2"):
        validate_model(ModelConfig(family="vae", latent_dim=1, posterior="vmf", prior="sphere"))
    with pytest.raises(ConfigError, match="kappa_min"):
        validate_model(ModelConfig(family="vae", posterior="vmf", prior="sphere", posterior_options={"kappa_min": 0}))


def test_a_vmf_vae_trains_with_free_bits_and_refuses_free_coordinates():
    from vaekit.models.contract import (CONTINUOUS, GAUSSIAN_POSTERIOR, GAUSSIAN_PRIOR, SINGLE_VECTOR,
                                        MissingCapability, require)
    from vaekit.models.uses import decode_units, encode_units, sample_latents, to_prior_units

    model = _model()
    x = (torch.rand(5, 6, dtype=F64, generator=torch.Generator().manual_seed(7)) > 0.5).double()
    assert SINGLE_VECTOR in model.capabilities
    assert not {CONTINUOUS, GAUSSIAN_PRIOR, GAUSSIAN_POSTERIOR} & model.capabilities
    torch.manual_seed(8)
    t = elbo_terms(model, x)
    assert t.analytic_kl is True and t.kl_groups.shape == (5, 1)  # the whole KL is one free-bits unit
    torch.manual_seed(8)
    res = ELBO(free_bits=5.0)(model, x)
    torch.testing.assert_close(res.loss, torch.clamp(t.kl_groups.mean(0), min=5.0).sum() - t.log_px_z.mean())
    res.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        q = model.encode(x)
        torch.testing.assert_close(model.reconstruct(x), model.decode(q.loc).mean)  # at mu, on the sphere
        torch.testing.assert_close(model.embed(x), q.mean)
        assert float(q.mean.norm(dim=-1).max()) < 1
        for temperature in (0.7, 1.0):  # the uniform at every temperature
            z = sample_latents(model, 50, temperature, generator=torch.Generator().manual_seed(9))["z"]
            torch.testing.assert_close(z.norm(dim=-1), torch.ones(50, dtype=F64))
        assert torch.equal(to_prior_units(model, {"z": z})["z"], z)
    with pytest.raises(MissingCapability, match=r"^a traversal needs a model with the capability 'continuous' "
                                                r"\(every latent group is continuous, with values anywhere in R\^D "
                                                r"\(not on a sphere\)\); this VAE has: .*single-vector$"):
        require(model, CONTINUOUS, "a traversal")
    with pytest.raises(MissingCapability, match="capability 'continuous'"):
        encode_units(model, x)
    with pytest.raises(MissingCapability, match="capability 'continuous'"):
        decode_units(model, torch.zeros(1, 3, dtype=F64))
    from vaekit.objectives.factor_vae import FactorVAE  # permuted coordinates leave the sphere

    with pytest.raises(MissingCapability, match="^factor-vae .* capability 'continuous'"):
        FactorVAE(latent_dim=3, hidden=(4,))(model, x)
