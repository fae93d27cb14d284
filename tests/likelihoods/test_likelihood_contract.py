"""Contract tests over every registered likelihood, inside a tiny VAE (MLP on vectors, conv on images)."""

import math

import pytest
import torch

from vaekit.likelihoods import LIKELIHOODS, Likelihood
from vaekit.models import build_vae
from vaekit.objectives import ELBO
from vaekit.objectives.bounds import elbo_terms, log_weights

CONFIGS = [((12,), "mlp"), ((1, 8, 6), "conv")]
#: likelihoods whose per-example log-probs depend on the rest of the batch (documented in their modules)
BATCH_DEPENDENT = {"sigma-vae-optimal"}


def _build(name, shape, arch, seed):
    torch.manual_seed(seed)
    return build_vae(shape, arch=arch, latent_dim=3, hidden=(16,), conv_channels=(4,), likelihood=name)


def _data(name, shape, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, *shape, generator=g)
    if LIKELIHOODS[name].discrete and name != "bernoulli":
        x = torch.round(x * 255) / 255  # 8-bit levels
    return x


@pytest.mark.parametrize("shape,arch", CONFIGS, ids=["mlp", "conv"])
@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_likelihood_contract_in_a_vae(name, shape, arch):
    model = _build(name, shape, arch, seed=0)
    lik = model.likelihood
    assert isinstance(lik, Likelihood)
    x = _data(name, shape)
    model.check_input(x)  # valid data pass the checks

    # loss finite, and every parameter (a shared learned sigma included) gets a finite gradient
    torch.manual_seed(1)
    res = ELBO(n_samples=2)(model, x)
    assert res.loss.dim() == 0 and math.isfinite(float(res.loss.detach()))
    assert res.elbo.shape == (4,) and torch.isfinite(res.elbo).all()
    res.loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    for pname, p in lik.named_parameters():
        assert float(p.grad.abs().sum()) > 0, f"likelihood parameter {pname} got a zero gradient"

    # shapes: batch (L, B), event = data shape; log_prob broadcasts x (B, ...) against (L, B, ...)
    with torch.no_grad():
        z = torch.randn(2, 4, model.latent_dim)
        d = model.decode(z)
        assert d.batch_shape == (2, 4) and d.event_shape == shape
        lp = d.log_prob(x)
        assert lp.shape == (2, 4) and torch.isfinite(lp).all()
        if name not in BATCH_DEPENDENT:
            torch.testing.assert_close(lp[1], model.decode(z[1]).log_prob(x))
        assert d.mean.shape == (2, 4, *shape) and torch.isfinite(d.mean).all()
        s = d.sample()
        assert s.shape == (2, 4, *shape) and torch.isfinite(s).all()
        if lik.support is not None:  # reconstructions and samples stay in the data's support
            lo, hi = lik.support
            assert float(d.mean.min()) >= lo and float(d.mean.max()) <= hi
            assert float(s.min()) >= lo and float(s.max()) <= hi
        assert model.sample(3).shape == (3, *shape)


@pytest.mark.parametrize("shape,arch", CONFIGS, ids=["mlp", "conv"])
@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_state_dict_round_trip_gives_identical_log_prob(name, shape, arch):
    model = _build(name, shape, arch, seed=0)
    with torch.no_grad():  # move every parameter off its initial value (a learned sigma too)
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    fresh = _build(name, shape, arch, seed=123)
    fresh.load_state_dict(model.state_dict())
    x = _data(name, shape)
    torch.manual_seed(7)
    a = elbo_terms(model, x, n_samples=2)
    torch.manual_seed(7)
    b = elbo_terms(fresh, x, n_samples=2)
    assert torch.equal(a.log_px_z, b.log_px_z) and torch.equal(a.kl, b.kl)
    z = torch.randn(3, model.latent_dim)
    assert torch.equal(model.decode(z).log_prob(x[:3]), fresh.decode(z).log_prob(x[:3]))
    if hasattr(model.likelihood, "sigma"):
        assert model.likelihood.sigma == fresh.likelihood.sigma


@pytest.mark.parametrize("shape,arch", CONFIGS, ids=["mlp", "conv"])
@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_direct_log_prob_equals_the_distribution_path(name, shape, arch):
    """VAE.decoded(z).log_prob (the likelihood's direct form, used in training) = decode(z).log_prob(x), values and
    grads; the lazy distribution has the full one's shapes and mean."""
    model = _build(name, shape, arch, seed=0).double()
    x = _data(name, shape).double()
    for lead in [(4,), (3, 4)]:  # one sample per example, and L = 3 samples broadcasting x
        z = torch.randn(*lead, model.latent_dim, dtype=torch.float64)
        lazy = model.decoded(z)
        assert lazy.batch_shape == model.decode(z).batch_shape and lazy.event_shape == model.decode(z).event_shape
        torch.testing.assert_close(lazy.mean, model.decode(z).mean)
        direct = lazy.log_prob(x)
        via_dist = model.decode(z).log_prob(x)
        assert direct.shape == lead
        torch.testing.assert_close(direct, via_dist)
        w = torch.randn(lead, dtype=torch.float64)
        g1 = torch.autograd.grad((direct * w).sum(), list(model.decoder.parameters()))
        g2 = torch.autograd.grad((via_dist * w).sum(), list(model.decoder.parameters()))
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b)
    with torch.no_grad():  # the no-grad form (the importance-sampling loop) too
        torch.testing.assert_close(model.decoded(z).log_prob(x), model.decode(z).log_prob(x))
