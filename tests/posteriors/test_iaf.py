"""IAF posterior (Kingma et al. 2016): autoregressive steps, log-determinant, normalised density, VAE wiring."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.autograd.functional import jacobian

from vaekit.models import build_vae
from vaekit.objectives import ELBO
from vaekit.posteriors import POSTERIORS, IAFDistribution, IAFPosterior, build_posterior
from vaekit.objectives.bounds import elbo_terms, log_weights


def _head(dim: int, steps: int = 2, hidden=(16, 16), context: int = 4, seed: int = 0, perturb: float = 0.3,
          in_features: int = 6, forget_bias: float = 1.0) -> IAFPosterior:
    """A float64 head whose weights are perturbed away from the default initialisation (non-trivial flow)."""
    torch.manual_seed(seed)
    head = IAFPosterior(in_features, dim, steps=steps, hidden=hidden, context=context, forget_bias=forget_bias).double()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(perturb * torch.randn_like(p))
    return head


def _q(head: IAFPosterior, batch: int = 1, seed: int = 1) -> IAFDistribution:
    g = torch.Generator().manual_seed(seed)
    return head(torch.randn(batch, head.in_features, generator=g, dtype=torch.float64))


def _normal_logpdf(eps: torch.Tensor) -> torch.Tensor:
    return -0.5 * eps.square() - 0.5 * math.log(2 * math.pi)  # per dimension


@pytest.mark.parametrize("dim,steps,hidden", [(3, 2, (8,)), (5, 3, (16, 16)), (6, 4, (4, 7, 5))])
def test_each_step_jacobian_is_strictly_triangular_in_its_order(dim, steps, hidden):
    """d(m, s)/dz is strictly lower triangular in step t's order: order 0..D-1 for even t, reversed for odd t."""
    head = _head(dim, steps, hidden)
    q = _q(head)
    z = torch.randn(dim, dtype=torch.float64)
    c = q.context[0]
    for t, step in enumerate(head.steps):
        expected_order = list(range(dim)) if t % 2 == 0 else list(range(dim))[::-1]
        assert step.order == expected_order
        for out in (0, 1):  # m and s
            J = jacobian(lambda v: step(v, c)[out], z)  # (D, D) in the original coordinates
            # in original coordinates: strictly lower (even t) or strictly upper (odd t, reversed order)
            tri = torch.triu(J) if t % 2 == 0 else torch.tril(J)
            assert torch.all(tri == 0)
            perm = torch.tensor(expected_order)
            assert torch.all(torch.triu(J[perm][:, perm]) == 0)
            assert J.abs().sum() > 0  # the step is not trivially constant


@pytest.mark.parametrize("dim,steps", [(3, 2), (5, 3), (5, 0), (2, 1)])
def test_log_det_matches_autograd_jacobian(dim, steps):
    """log q(z_T) = log N(eps) - log|det dz_T/deps|, and the reported sum log sigma_0 + sum_t log sigma_t is that log-det."""
    head = _head(dim, steps)
    for b in range(3):
        q = _q(head, seed=b)
        eps = torch.randn(1, dim, dtype=torch.float64)
        z, log_q_dims = q.flow(eps)
        J = jacobian(lambda e: q.flow(e.unsqueeze(0))[0][0], eps[0])  # (D, D)
        sign, logabsdet = torch.linalg.slogdet(J)
        expected = _normal_logpdf(eps).sum() - logabsdet
        assert torch.allclose(log_q_dims.sum(), expected, atol=1e-10, rtol=0)
        # the reported log-determinant accumulations: sum log sigma0 + sum_t sum log sigma_t
        z_t, reported = q.loc + q.scale * eps, q.scale.log().sum()
        for step in head.steps:
            z_t, log_sigma = step.step(z_t, q.context)
            reported = reported + log_sigma.sum()
        assert torch.allclose(reported, logabsdet, atol=1e-10, rtol=0)


def test_per_dimension_terms_follow_the_variables_through_the_reversals():
    """log q_d = log N(eps_d) - log sigma0_d - sum_t log [dz_t/dz_{t-1}]_{dd} with the diagonals from autograd."""
    dim = 4
    head = _head(dim, steps=3)
    q = _q(head)
    eps = torch.randn(1, dim, dtype=torch.float64)
    _, log_q_dims = q.flow(eps)
    z = q.loc + q.scale * eps
    expected = _normal_logpdf(eps) - q.scale.log()  # (1, D)
    for step in head.steps:
        J = jacobian(lambda v: step.step(v.unsqueeze(0), q.context)[0][0], z[0])  # (D, D)
        expected = expected - torch.diagonal(J).abs().log()
        z = step.step(z, q.context)[0]
    assert torch.allclose(log_q_dims, expected, atol=1e-10)


def _flow_2d() -> IAFDistribution:
    """A strongly non-Gaussian 2-D flow: base N(0, I), MADE weights scaled by 1 + 1.5 * N(0, 1) noise."""
    torch.manual_seed(1)
    head = IAFPosterior(6, 2, steps=3, hidden=(16, 16), context=4).double()
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.startswith("steps"):
                p.mul_(1 + 1.5 * torch.randn_like(p)).add_(0.45 * torch.randn_like(p))
        head.linear.weight[:4].zero_()  # mu_0 = 0, log sigma_0^2 = 0; the context stays random
        head.linear.bias[:4].zero_()
    return _q(head, seed=4)


def test_density_integrates_to_one_and_matches_samples_in_2d():
    q = _flow_2d()
    lo, hi, m = -7.0, 7.0, 25  # cells of width 1, each integrated by the midpoint rule on m x m points
    n_cells = int(hi - lo)
    h = 1.0 / m
    g = lo + (torch.arange(n_cells * m, dtype=torch.float64) + 0.5) * h  # midpoints
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 2)  # (G, 1, 2)
    with torch.no_grad():
        z, log_q = q.rsample_and_log_prob((60_000,))  # (N, 1, 2), (N, 1)
        z, log_q = z[:, 0], log_q[:, 0]
        # non-trivial: KL(q || its best Gaussian fit) is far from 0 (a Gaussian q would give ~0)
        fit = torch.distributions.MultivariateNormal(z.mean(0), torch.cov(z.T))
        assert float((log_q - fit.log_prob(z)).mean()) > 0.3
        dens = q.log_prob(grid).exp().reshape(n_cells, m, n_cells, m)
        assert abs(float(dens.sum() * h * h) - 1.0) < 1e-2
        # goodness of fit: sample counts in the 14 x 14 cells vs the integrated density of each cell
        assert float(((z < lo) | (z > hi)).any(-1).double().mean()) < 1e-3
        edges = torch.arange(lo, hi + 0.5, 1.0, dtype=torch.float64)
        counts = torch.histogramdd(z, bins=[edges, edges]).hist.flatten()
        probs = dens.sum((1, 3)).flatten() * h * h  # (cells,)
    expected = probs * z.shape[0]
    keep = expected > 5
    assert keep.sum() > 10  # the mass spreads over many cells
    chi2 = (((counts[keep] - expected[keep]) ** 2) / expected[keep]).sum()
    p_value = stats.chi2.sf(float(chi2), int(keep.sum()) - 1)
    assert p_value > 1e-3, f"samples disagree with log_prob: chi2={float(chi2):.1f}, p={p_value:.2g}"


def test_log_prob_by_inversion_equals_log_q_from_sampling_float32():
    torch.manual_seed(5)
    head = IAFPosterior(6, 5, steps=3, hidden=(32, 32), context=8)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.2 * torch.randn_like(p))
        q = head(torch.randn(4, 6))
        z, log_q = q.rsample_and_log_prob((7,))  # (7, 4, 5), (7, 4)
        assert z.shape == (7, 4, 5) and log_q.shape == (7, 4)
        assert torch.allclose(q.log_prob(z), log_q, atol=1e-4, rtol=0)
        eps = torch.randn(7, 4, 5)
        z2, _ = q.flow(eps)
        assert torch.allclose(q.inverse(z2)[0], eps, atol=1e-4)


def test_zero_steps_is_the_diagonal_gaussian_and_forget_bias_scales():
    head = _head(3, steps=0)
    q = _q(head, batch=2)
    z, lq = q.rsample_and_log_prob_dims((5,))
    base = torch.distributions.Normal(q.loc, q.scale)
    assert torch.allclose(lq, base.log_prob(z), atol=1e-12)
    # with zeroed MADE output layers m = 0 and s = forget_bias: z_T = sigmoid(b)^T z_0
    for b in (1.0, 2.0):
        head = _head(3, steps=2, forget_bias=b)
        with torch.no_grad():
            for step in head.steps:
                step.made.out.weight.zero_()
                step.made.out.bias.zero_()
        q = _q(head)
        eps = torch.randn(1, 3, dtype=torch.float64)
        z, lq = q.flow(eps)
        sig = 1 / (1 + math.exp(-b))
        assert torch.allclose(z, sig**2 * (q.loc + q.scale * eps))
        assert torch.allclose(lq, _normal_logpdf(eps) - q.scale.log() - 2 * math.log(sig))


def test_contract_shapes_mean_and_registry():
    assert POSTERIORS["iaf"] is IAFPosterior
    head = build_posterior("iaf", 6, 3, steps=1, hidden=(8,), context=2)
    q = head(torch.randn(4, 6))
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    assert q.rsample().shape == (4, 3) and q.sample((2,)).shape == (2, 4, 3)
    with pytest.raises(NotImplementedError):
        q.mean
    with pytest.raises(ValueError, match="last dimension 3"):
        q.log_prob(torch.randn(4, 2))
    with pytest.raises(ValueError, match="steps >= 0"):
        IAFPosterior(6, 3, steps=-1)
    with pytest.raises(ValueError, match="logvar_min < logvar_max"):
        IAFPosterior(6, 3, logvar_min=1.0, logvar_max=0.0)
    with pytest.raises(ValueError, match="forget_bias"):
        IAFPosterior(6, 3, forget_bias=float("nan"))


def _vae(arch: str = "mlp", seed: int = 0):
    torch.manual_seed(seed)
    shape = (1, 8, 8) if arch == "conv" else (12,)
    return build_vae(shape, arch=arch, latent_dim=3, hidden=(16,), conv_channels=(4, 8), posterior="iaf",
                     posterior_kwargs=dict(steps=2, hidden=(8, 8), context=4, forget_bias=2.0)), shape


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("free_bits", [0.0, 0.1])
def test_gradients_reach_every_parameter(arch, free_bits):
    model, shape = _vae(arch)
    x = (torch.rand(5, *shape) > 0.5).float()
    res = ELBO(free_bits=free_bits, n_samples=2)(model, x)
    res.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert torch.isfinite(res.elbo).all() and res.elbo.shape == (5,)
    assert model.embed(x).shape == (5, 3)  # sample mean, since q.mean raises


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_state_dict_round_trip_reproduces_outputs(arch):
    from safetensors.torch import load, save

    model, shape = _vae(arch, seed=0)
    other, _ = _vae(arch, seed=1)
    x = (torch.rand(3, *shape) > 0.5).float()
    other.load_state_dict(load(save(model.state_dict())))
    outputs = []
    for m in (model, other):
        torch.manual_seed(7)
        elbo = elbo_terms(m, x, 4).elbo  # (3,)
        log_q = m.encode(x).log_prob(torch.randn(2, 3, 3))  # (2, 3) by inversion
        outputs.append((elbo, log_q))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


def test_free_bits_groups_sum_to_kl_and_match_the_gaussian_kl_per_dimension():
    model, shape = _vae("mlp")
    x = (torch.rand(4, *shape) > 0.5).float()
    t = elbo_terms(model, x, 3)
    assert t.kl_groups.shape == (4, 3) and not t.analytic_kl
    assert torch.allclose(t.kl_groups.sum(-1), t.kl, atol=1e-5)
    # steps = 0: the per-dimension Monte Carlo KL converges to the closed-form per-dimension Gaussian KL
    torch.manual_seed(0)
    vae0 = build_vae(shape, latent_dim=3, hidden=(16,), posterior="iaf", posterior_kwargs=dict(steps=0, context=0))
    with torch.no_grad():
        L = 20_000
        t0 = elbo_terms(vae0, x, L)
        q = vae0.encode(x)
        exact = torch.distributions.kl_divergence(torch.distributions.Normal(q.loc, q.scale),
                                                  torch.distributions.Normal(0.0, 1.0))  # (B, D)
        # standard error of the per-dimension estimate from its own samples
        z, lqd = q.rsample_and_log_prob_dims((L,))
        terms = lqd - torch.distributions.Normal(0.0, 1.0).log_prob(z)
        se = terms.std(0) / math.sqrt(L)
    assert torch.all((t0.kl_groups - exact).abs() < 5 * se + 1e-6)
    # ELBO with free bits runs with per-dimension groups
    res = ELBO(free_bits=0.5)(model, x)
    assert torch.isfinite(res.loss)
