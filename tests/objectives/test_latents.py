"""KL per group: every registered closed form against a Monte Carlo estimate; the registries' lookups; the model
family registry's checks (a misplaced key, a posterior option the posterior does not take, an affine VAE)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent

from vaekit.config import ConfigError, ModelConfig
from vaekit.models.registry import FAMILIES, build_family
from vaekit.objectives.latents import _KL_DIMS, kl_dims
from vaekit.posteriors.gaussian import DiagonalGaussian
from vaekit.priors import StandardNormal


def _gaussians():
    g = torch.Generator().manual_seed(0)
    q = DiagonalGaussian(torch.randn(4, 3, generator=g, dtype=torch.float64),
                         torch.rand(4, 3, generator=g, dtype=torch.float64) + 0.3)
    p = DiagonalGaussian(torch.randn(3, generator=g, dtype=torch.float64),
                         torch.rand(3, generator=g, dtype=torch.float64) + 0.5)
    return q, {"diagonal": p, "standard": StandardNormal(3).double()()}


@pytest.mark.parametrize("prior", ["diagonal", "standard"])
def test_every_registered_closed_form_kl_matches_monte_carlo(prior):
    from vaekit.posteriors.relaxed import GumbelSoftmax
    from vaekit.posteriors.vmf import VonMisesFisher
    from vaekit.priors.sphere import HypersphericalUniform

    # a new registration needs a case here (the categorical KL of Gumbel-softmax latents: tests/posteriors/
    # test_relaxed.py; the von Mises-Fisher KL to the uniform on the sphere: tests/posteriors/test_vmf.py)
    assert set(_KL_DIMS) == {(DiagonalGaussian, DiagonalGaussian), (GumbelSoftmax, Independent),
                             (VonMisesFisher, HypersphericalUniform)}
    q, priors = _gaussians()
    p = priors[prior]
    closed = kl_dims(q, p)  # (4, 3)
    n = 400_000
    z = q.rsample((n,))  # (n, 4, 3)
    diff = q.base_dist.log_prob(z) - p.base_dist.log_prob(z)  # per dimension
    mc, se = diff.mean(0), diff.std(0) / math.sqrt(n)
    assert bool(((closed - mc).abs() < 4 * se + 1e-6).all()), (closed, mc, se)
    # and it is torch's registered Normal-Normal KL
    torch.testing.assert_close(closed, torch.distributions.kl_divergence(q.base_dist, p.base_dist))


def test_family_registry_names_and_checks():
    from vaekit.registry import build_model  # builds after validating the model section

    assert {"vae", "ladder"} <= set(FAMILIES)
    with pytest.raises(ConfigError, match="did you mean 'ladder'"):
        build_model(ModelConfig(family="ladr"), (4,))
    with pytest.raises(ConfigError, match="model.merge applies to model.family=ladder"):
        build_model(ModelConfig(merge=False), (4,))
    with pytest.raises(ConfigError, match="model.dropout applies to model.family=vae"):
        build_model(ModelConfig(family="ladder", dropout=0.1), (4,))
    # the IAF preset's options with the Gaussian posterior: named, with what to do
    with pytest.raises(ConfigError, match=r"model.posterior_options has 'steps', which the gaussian posterior does "
                                          r"not take .*it takes: logvar_min, logvar_max.*model.posterior_options=\{\}"):
        build_model(ModelConfig(posterior="gaussian", posterior_options={"steps": 2}), (4,))
    with pytest.raises(ConfigError, match="model.likelihood_options has 'sigm'.*did you mean 'sigma'"):
        build_model(ModelConfig(likelihood="gaussian", likelihood_options={"sigm": 0.1}), (4,))


def test_affine_vae_from_an_empty_hidden_list():
    m = build_family(ModelConfig(hidden=[], latent_dim=2, likelihood="gaussian"), (5,))
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(linears) == 2  # posterior head and decoder: both affine
    assert not any(isinstance(mod, (torch.nn.ReLU, torch.nn.Tanh)) for mod in m.modules())
    x = torch.randn(7, 5)
    assert m(x, None).px.log_prob(x).shape == (7,) and m(x, 2).px.log_prob(x).shape == (2, 7)
    from vaekit.registry import build_model  # builds after validating the model section

    with pytest.raises(ConfigError, match="every entry of model.hidden must be at least 1"):
        build_model(ModelConfig(hidden=[-5]), (5,))
    with pytest.raises(ConfigError, match="model.latent_dim must be at least 1"):
        build_model(ModelConfig(latent_dim=0), (5,))
