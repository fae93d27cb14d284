"""VAE wiring: contract over nets x likelihoods x posteriors, gradients, save/load, clear errors."""


import pytest
import torch
from safetensors.torch import load, save

from vaekit.models import build_vae
from vaekit.objectives import ELBO, IWAE
from vaekit.objectives.bounds import elbo_terms, log_weights

CASES = [((12,), "mlp"), ((1, 8, 6), "mlp"), ((1, 8, 6), "conv"), ((3, 7, 5), "conv")]


def _x(shape, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, *shape), 0.4), generator=g)


@pytest.mark.parametrize("shape,arch", CASES)
@pytest.mark.parametrize("posterior", ["gaussian", "iaf"])
def test_every_parameter_gets_a_gradient_and_shapes_hold(shape, arch, posterior):
    torch.manual_seed(0)
    m = build_vae(shape, arch=arch, hidden=[16], latent_dim=3, conv_channels=[4], posterior=posterior,
                  posterior_kwargs={"steps": 1} if posterior == "iaf" else None)
    x = _x(shape)
    r = ELBO(n_samples=3)(m, x)
    assert r.loss.dim() == 0 and torch.isfinite(r.loss)
    assert r.elbo.shape == r.kl.shape == r.log_px_z.shape == (4,)
    r.loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert log_weights(m, x, 5).shape == (5, 4)
    assert m.sample(2).shape == (2, *shape)
    assert m.reconstruct(x).shape == x.shape
    assert m.embed(x).shape == (4, 3)


@pytest.mark.parametrize("shape,arch", CASES)
def test_state_dict_round_trip_reproduces_outputs(shape, arch):
    torch.manual_seed(1)
    m = build_vae(shape, arch=arch, hidden=[16], latent_dim=3, conv_channels=[4])
    blob = save(m.state_dict())
    torch.manual_seed(2)
    m2 = build_vae(shape, arch=arch, hidden=[16], latent_dim=3, conv_channels=[4])
    m2.load_state_dict(load(blob))
    x = _x(shape)
    torch.manual_seed(3)
    a = log_weights(m, x, 4)
    torch.manual_seed(3)
    b = log_weights(m2, x, 4)
    assert torch.equal(a, b)


def test_elbo_terms_monte_carlo_average_matches_log_weights():
    torch.manual_seed(0)
    m = build_vae((10,), hidden=[8], latent_dim=2)
    x = _x((10,), n=3)
    t = elbo_terms(m, x, n_samples=20000)
    lw = log_weights(m, x, 20000)
    # E_q[log w] = ELBO; the analytic-KL estimate has lower variance but the same mean
    torch.testing.assert_close(t.elbo, lw.mean(0), atol=5 * (lw.std(0) / 20000 ** 0.5).max().item(), rtol=0)
    assert torch.all(t.kl_groups.sum(-1) == t.kl) and t.analytic_kl


def test_elbo_le_iwae_le_estimate():
    torch.manual_seed(0)
    m = build_vae((10,), hidden=[8], latent_dim=2)
    x = _x((10,), n=50)
    elbo = elbo_terms(m, x, 1000).elbo.mean()
    iw = [IWAE(k).bound(m, x).mean() for k in (1, 10, 200)]
    assert elbo - 0.05 <= iw[0] <= iw[1] <= iw[2]


@pytest.mark.parametrize("bad,match", [
    (lambda x: x * 3.0, r"needs data in \[0, 1\]"),
    (lambda x: x.masked_fill(x > 0.5, float("nan")), "NaN or inf"),
    (lambda x: x[:, :5], "does not fit a model built for"),
    (lambda x: x[0], "expected a batch of shape"),
    (lambda x: x.reshape(4, 2, 5), "does not fit a model built for"),
])
def test_bad_input_gets_a_clear_error(bad, match):
    m = build_vae((10,), hidden=[8], latent_dim=2)
    x = _x((10,))
    with pytest.raises(ValueError, match=match):
        ELBO()(m, bad(x))


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ValueError, match="did you mean 'bernoulli'"):
        build_vae((4,), likelihood="bernouli")
    with pytest.raises(ValueError, match="unknown posterior"):
        build_vae((4,), posterior="flowy")
    with pytest.raises(ValueError, match="model.arch=conv needs image data"):
        build_vae((4,), arch="conv")
