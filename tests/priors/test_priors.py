"""Priors: known answers for each log-density (a hand-computed mixture, scipy, a change of variables by autograd),
draws against their densities, the Monte Carlo KL against a closed form and a large-sample estimate, free bits on a
KL that does not split, and what the uses half offers a model whose prior is not Gaussian."""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Independent, Normal, kl_divergence

from vaekit.config import ModelConfig
from vaekit.models.registry import build_family
from vaekit.objectives import ELBO, elbo_terms
from vaekit.objectives.latents import group_kl, sample_latent
from vaekit.priors import FlowPrior, MixturePrior
from vaekit.priors.registry import PRIOR_SPECS, load_prior

SHAPE = (6,)


def _vae(prior: str, **opts) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_family(ModelConfig(family="vae", latent_dim=2, hidden=[8], prior=prior, prior_options=opts),
                        SHAPE).double()


def test_each_prior_options_dataclass_mirrors_its_class():
    for name, spec in PRIOR_SPECS.items():
        params = inspect.signature(load_prior(name)).parameters
        declared = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                    for f in dataclasses.fields(spec.options)}
        own = {k: p.default for k, p in params.items() if k not in ("latent_dim", "data_shape")}
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in own.items()} == declared, name


def test_vamp_prior_is_the_mixture_of_the_pseudo_inputs_posteriors_by_hand():
    model = _vae("vamp", components=3, init_mean=0.5, init_std=0.3)
    prior = model.prior
    z = torch.randn(4, 5, 2, dtype=torch.float64)  # (S, B, D)
    with torch.no_grad():
        h = model.encoder(prior.pseudo_inputs())  # (K, F)
        mu, raw = model.posterior.linear(h).chunk(2, -1)  # (K, D) each
        log_var = model.posterior(h).log_scale * 2
        var = log_var.exp()
        # log N(z; mu_k, var_k) by hand, then log (1/K) sum_k
        comp = -0.5 * (((z[..., None, :] - mu) ** 2) / var + log_var + math.log(2 * math.pi)).sum(-1)  # (S, B, K)
        expected = torch.logsumexp(comp, -1) - math.log(3)
        got = model.prior_distribution().log_prob(z)
    torch.testing.assert_close(got, expected)
    assert bool(((prior.pseudo_inputs() >= 0) & (prior.pseudo_inputs() <= 1)).all())
    # the pseudo-inputs learn through the Monte Carlo KL
    model.train()
    ELBO()(model, (torch.rand(5, *SHAPE, dtype=torch.float64) > 0.5).double()).loss.backward()
    assert prior.pseudo.grad is not None and float(prior.pseudo.grad.abs().sum()) > 0


def test_mixture_prior_log_prob_matches_scipy_and_its_draws():
    torch.manual_seed(0)
    prior = MixturePrior(2, components=3, init_scale=2.0).double()
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, 1.0, -0.5]))
        prior.raw_log_scale.copy_(torch.tensor([[0.1, -0.3], [0.4, 0.0], [-0.2, 0.2]]))
    p = prior()
    z = torch.randn(7, 2, dtype=torch.float64) * 2
    w = p.weights.detach().numpy()
    dens = sum(w[k] * stats.multivariate_normal(p.loc[k].detach().numpy(), np.diag(p.scale[k].detach().numpy() ** 2))
               .pdf(z.numpy()) for k in range(3))
    np.testing.assert_allclose(p.log_prob(z).detach().numpy(), np.log(dens), rtol=1e-10)
    # draws at T = 1 have the mixture's mean; at T -> 0 they sit on the component means
    torch.manual_seed(1)
    draws = p.sample((40000,))
    se = p.stddev.detach() / math.sqrt(40000)
    assert bool(((draws.mean(0) - p.mean.detach()).abs() < 4 * se).all())
    cold = p.sample_at_temperature((50,), 1e-6)
    assert bool((torch.cdist(cold, p.loc.detach()).min(-1).values < 1e-4).all())


def test_mixture_log_prob_by_matrix_products_is_the_elementwise_form_and_its_gradients():
    """GaussianMixture.log_prob expands the quadratic form (no (N, K, D) tensor); in float32 with small scales far
    from 0, where the expansion cancels most, it equals torch's elementwise MixtureSameFamily.log_prob in float64,
    and so do its gradients."""
    from torch.distributions import Categorical, MixtureSameFamily

    from vaekit.priors import GaussianMixture

    g = torch.Generator().manual_seed(0)
    loc = (3 * torch.randn(50, 40, generator=g) + 5).requires_grad_(True)  # (K, D) far from 0
    scale = (0.05 + 0.2 * torch.rand(50, 40, generator=g)).requires_grad_(True)  # sigma >= 0.05 (log-variance -6)
    logits = torch.randn(50, generator=g)
    z = (loc[torch.randint(50, (4, 30), generator=g)] + 0.1 * torch.randn(4, 30, 40, generator=g)).detach()
    z.requires_grad_(True)  # (S, B, D): draws near the components, as a posterior's samples are
    got = GaussianMixture(logits, loc, scale).log_prob(z)  # (4, 30)
    assert got.dtype == torch.float32 and got.shape == (4, 30)
    ref_mix = MixtureSameFamily(Categorical(logits=logits.double()),
                                Independent(Normal(loc.double(), scale.double()), 1))
    ref = ref_mix.log_prob(z.double())
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-3)  # float32 rounding of values ~1e2
    grads = torch.autograd.grad(got.sum(), (z, loc, scale))
    refs = torch.autograd.grad(ref.sum(), (z, loc, scale))
    for a, b in zip(grads, refs):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-4)


def _perturbed_flow(dim: int = 3, steps: int = 2) -> FlowPrior:
    torch.manual_seed(0)
    flow = FlowPrior(dim, steps=steps, hidden=[16]).double()
    with torch.no_grad():  # away from the identity it starts as
        for s in flow.steps:
            s.made.out.weight.normal_(0, 0.3)
            s.made.out.bias.normal_(0, 0.3)
    return flow


def test_flow_prior_log_prob_is_the_change_of_variables_by_autograd():
    p = _perturbed_flow()()
    z = torch.randn(5, 3, dtype=torch.float64)
    for zi in z:
        eps = p.to_base(zi)[0]
        jac = torch.autograd.functional.jacobian(lambda v: p.to_base(v)[0], zi)  # (D, D) of z -> eps
        expected = Normal(0.0, 1.0).log_prob(eps).sum() + torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(p.log_prob(zi), expected)
    # a draw maps back to its base noise; at T = 0 every draw is the image of eps = 0
    torch.manual_seed(2)
    eps = torch.randn(6, 3, dtype=torch.float64)
    back, _ = p.to_base(p.from_base(eps))
    torch.testing.assert_close(back, eps)
    cold = p.sample_at_temperature((4,), 0.0)
    torch.testing.assert_close(cold, p.from_base(torch.zeros(4, 3, dtype=torch.float64)))


def test_flow_prior_density_integrates_to_one():
    p = _perturbed_flow(dim=2)()
    g = torch.linspace(-9, 9, 361, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)  # (N, 2)
    with torch.no_grad():
        mass = p.log_prob(zz).exp().sum() * (g[1] - g[0]) ** 2
    assert abs(float(mass) - 1.0) < 2e-3


def test_monte_carlo_kl_is_unbiased_against_a_closed_form_and_a_large_sample():
    torch.manual_seed(0)
    q = Independent(Normal(torch.tensor([[0.3, -0.5]], dtype=torch.float64),
                           torch.tensor([[0.7, 1.2]], dtype=torch.float64)), 1)
    # a one-component mixture is a Gaussian: the MC KL must average to the closed form
    one = MixturePrior(2, components=1).double()
    with torch.no_grad():
        one.loc.copy_(torch.tensor([[0.4, 0.1]]))
        one.raw_log_scale.copy_(torch.tensor([[0.2, -0.3]]))
    p1 = one()
    exact = kl_divergence(q, Independent(Normal(p1.loc[0], p1.scale[0]), 1))
    n = 200000
    with torch.no_grad():
        kl, analytic = group_kl(sample_latent("z", q, p1, n), 1)
        z = q.sample((n,))
        se = (q.log_prob(z) - p1.log_prob(z)).std() / math.sqrt(n)
    assert not analytic and kl.shape == (1, 1)
    assert abs(float(kl.sum() - exact.sum())) < 4 * float(se)
    # a three-component mixture: single-sample estimates average to an independent large-sample estimate
    p3 = MixturePrior(2, components=3, init_scale=1.5).double()()
    with torch.no_grad():
        draws = torch.stack([group_kl(sample_latent("z", q, p3, None), 0)[0].sum() for _ in range(2000)])
        z = q.sample((n,))
        ref = q.log_prob(z) - p3.log_prob(z)
    se = math.hypot(float(draws.std()) / math.sqrt(2000), float(ref.std()) / math.sqrt(n))
    assert abs(float(draws.mean() - ref.mean())) < 4 * se


def test_free_bits_and_the_analytic_flag_with_a_monte_carlo_kl():
    model = _vae("mog", components=3)
    x = (torch.rand(5, *SHAPE, dtype=torch.float64) > 0.5).double()
    torch.manual_seed(3)
    t = elbo_terms(model, x)
    assert t.analytic_kl is False and t.kl_groups.shape == (5, 1)  # the group is one free-bits unit
    torch.manual_seed(3)
    res = ELBO(free_bits=50.0)(model, x)
    torch.testing.assert_close(res.loss, torch.clamp(t.kl_groups.mean(0), min=50.0).sum() - t.log_px_z.mean())
    assert float(res.loss) == pytest.approx(50.0 - float(t.log_px_z.mean()))


@pytest.mark.parametrize("prior", ["vamp", "mog", "flow"])
def test_a_non_gaussian_prior_offers_z_coordinates_and_its_own_draws(prior):
    from vaekit.models.contract import GAUSSIAN_PRIOR, MissingCapability, require
    from vaekit.models.uses import from_prior_units, sample_latents, to_prior_units

    model = _vae(prior, **({"components": 4} if prior != "flow" else {})).eval()
    assert GAUSSIAN_PRIOR not in model.capabilities
    with pytest.raises(MissingCapability, match="capability 'gaussian-prior'"):
        require(model, GAUSSIAN_PRIOR, "restoration")
    z = {"z": torch.randn(3, 2, dtype=torch.float64)}
    assert torch.equal(to_prior_units(model, z)["z"], z["z"]) and torch.equal(from_prior_units(model, z)["z"], z["z"])
    with torch.no_grad():
        p = model.prior_distribution()
        g = torch.Generator().manual_seed(4)
        draws = sample_latents(model, 4000, generator=g)["z"]
        assert draws.shape == (4000, 2)
        # the draws follow the prior: their mean log-density is the prior's (negative) entropy, within noise
        ref = p.log_prob(p.sample((4000,)))
        lp = p.log_prob(draws)
        assert abs(float(lp.mean() - ref.mean())) < 4 * math.hypot(float(lp.std()), float(ref.std())) / math.sqrt(4000)
        assert model.sample(3, temperature=0.5).shape == (3, *SHAPE)


def test_the_samples_figure_names_what_each_prior_draws(tmp_path):
    """A samples figure's title says what was drawn: N(0, T² I) only for the standard normal, never for a
    mixture, a flow, a VampPrior or the sphere; a hierarchy names its top group and how the rest are drawn."""
    from vaekit.models.uses import describe_prior_draws

    said = {name: describe_prior_draws(_vae(name)) for name in ("standard", "mog", "flow", "vamp")}
    assert said["standard"] == "z ~ N(0, T² I)"
    assert "mixture" in said["mog"] and said["vamp"] == said["mog"] and "N(0, T² I)" not in said["mog"]
    assert "flow" in said["flow"]
    torch.manual_seed(0)
    svae = build_family(ModelConfig(family="vae", latent_dim=3, hidden=[8], posterior="vmf", prior="sphere"), SHAPE)
    assert "sphere" in describe_prior_draws(svae) and "N(0" not in describe_prior_draws(svae)
    ladder = build_family(ModelConfig(family="ladder", latent_dims=[2, 3], hidden=[8, 8]), SHAPE)
    top = ladder.layout.top_down()[0].name
    assert describe_prior_draws(ladder) == f"{top} ~ N(0, T² I); each lower group ~ N(μ_p, (T σ_p)²) given its parent"
