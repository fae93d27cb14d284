"""Ladder VAE (Sønderby et al. 2016): merge formula, per-layer KL, bounds, wiring, contract."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from vaekit.likelihoods import build_likelihood
from vaekit.models.ladder import LadderVAE, build_ladder
from vaekit.models.ladder_blocks import DenseBlock, GaussianParams, precision_merge
from vaekit.objectives import ELBO, IWAE
from vaekit.objectives.bounds import elbo_terms, log_weights
from vaekit.posteriors.gaussian import DiagonalGaussian

SMALL = dict(latent_dims=(6, 4, 2), hidden=(24, 16, 8), conv_channels=(4, 8))


def _model(shape=(12,), seed=0, **kw) -> LadderVAE:
    torch.manual_seed(seed)
    return build_ladder(shape, **{**SMALL, **kw})


def _binary(b: int, shape=(12,), seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, *shape, generator=g).bernoulli(generator=g)


# -- precision-weighted merge (Eqs. 18-19) ---------------------------------------------------------------------
@pytest.mark.parametrize("mh,vh,mp,vp", [(0.3, 0.5, -1.0, 2.0), (2.0, 0.05, 0.0, 1.0), (-1.5, 3.0, 1.0, 0.2)])
def test_merge_is_normalised_product_on_grid(mh, vh, mp, vp):
    grid = torch.linspace(-15, 15, 60001, dtype=torch.float64)
    dens = Normal(mh, math.sqrt(vh)).log_prob(grid).exp() * Normal(mp, math.sqrt(vp)).log_prob(grid).exp()
    dens = dens / torch.trapezoid(dens, grid)
    mh_, vh_, mp_, vp_ = (torch.tensor([v], dtype=torch.float64) for v in (mh, vh, mp, vp))
    merged = precision_merge(DiagonalGaussian(mh_, vh_.sqrt()), DiagonalGaussian(mp_, vp_.sqrt()))
    mq, vq = merged.loc[0], merged.variance[0]
    expected = Normal(mq, vq.sqrt()).log_prob(grid).exp()
    assert torch.allclose(dens, expected, rtol=0, atol=1e-6 * float(expected.max()))
    assert float(vq) < min(vh, vp)  # merging always sharpens


def test_merge_closed_form_several_dims():
    g = torch.Generator().manual_seed(0)
    mh, mp, x = (torch.randn(7, 5, generator=g, dtype=torch.float64) * 2 for _ in range(3))
    vh, vp = (torch.rand(7, 5, generator=g, dtype=torch.float64) * 3 + 0.01 for _ in range(2))
    merged = precision_merge(DiagonalGaussian(mh, vh.sqrt()), DiagonalGaussian(mp, vp.sqrt()))
    mq, vq = merged.loc, merged.variance
    # N(x; a, A) N(x; b, B) = N(a; b, A + B) N(x; c, C) with the product's (c, C)
    lhs = Normal(mh, vh.sqrt()).log_prob(x) + Normal(mp, vp.sqrt()).log_prob(x)
    rhs = Normal(mp, (vh + vp).sqrt()).log_prob(mh) + Normal(mq, vq.sqrt()).log_prob(x)
    assert torch.allclose(lhs, rhs, atol=1e-10)


def test_model_wires_merge_and_no_merge():
    x = _binary(3)
    for merge in (True, False):
        m = _model(merge=merge)
        torch.manual_seed(2)
        out = m(x, 4)
        qs, ps, zs = [g.q for g in out.groups], [g.p for g in out.groups], [g.z for g in out.groups]
        bu = m.bottom_up(x)
        L = len(m.layer_dims)
        assert [g.name for g in out.groups] == [f"layer{i + 1}" for i in range(L)] and out.sample_dims == 1
        assert torch.allclose(qs[-1].loc, bu[-1].loc.expand_as(qs[-1].loc))  # q(z_L|x) = N(mu_hat_L, .)
        assert torch.allclose(ps[-1].loc, torch.zeros(())) and torch.allclose(ps[-1].scale, torch.ones(()))
        for i in range(L - 1):
            prior = m.top_down[i](zs[i + 1])  # p(z_i | sampled z_{i+1})
            mu_p, var_p = prior.loc, prior.variance
            assert torch.allclose(ps[i].loc, mu_p) and torch.allclose(ps[i].scale ** 2, var_p, rtol=1e-5)
            if merge:
                mq = precision_merge(bu[i], prior)
                mu_q, var_q = mq.loc, mq.variance
            else:
                mu_q, var_q = bu[i].loc.expand_as(mu_p), bu[i].variance
            assert torch.allclose(qs[i].loc, mu_q, atol=1e-6)
            assert torch.allclose(qs[i].scale ** 2, var_q.expand_as(mu_q), rtol=1e-5)
            # the merged posterior depends on the sampled parent; the bottom-up one does not
            spread = float((qs[i].loc - qs[i].loc[:1]).abs().max().detach())
            assert (spread > 1e-4) if merge else (spread == 0.0)
        # the deterministic pass feeds each parent's posterior mean down (posterior_means / embed)
        means = m.posterior_means(x)
        with torch.no_grad():
            assert torch.allclose(means[-1], bu[-1].loc)
            for i in range(L - 1):
                prior = m.top_down[i](means[i + 1])
                expected = precision_merge(bu[i], prior).loc if merge else bu[i].loc
                assert torch.allclose(means[i], expected, atol=1e-6)


def test_top_layer_reaches_the_reconstruction_through_the_top_down_path():
    m = _model()
    t = elbo_terms(m, _binary(4), n_samples=2)
    (-t.log_px_z.mean()).backward()  # no KL: only the path z_L -> p(z_{L-1}|z_L) -> q -> ... -> z_1 -> x
    assert float(m.up_heads[-1].mu.weight.grad.abs().sum()) > 0
    assert all(float(p.grad.abs().sum()) > 0 for p in m.top_down.parameters())


# -- KL per layer --------------------------------------------------------------------------------------------
def test_layer_kl_matches_monte_carlo_at_fixed_parents():
    m = _model()
    x = _binary(2)
    with torch.no_grad():
        torch.manual_seed(3)
        out = m(x, 1)
        g = torch.Generator().manual_seed(4)
        for q, p in ((grp.q, grp.p) for grp in out.groups):
            analytic = kl_divergence(q.base_dist, p.base_dist).sum(-1)  # (1, B)
            n = 200_000
            eps = torch.randn(n, *q.loc.shape, generator=g)
            z = q.loc + q.scale * eps  # (n, 1, B, D) draws from q at the fixed parents
            diff = q.log_prob(z) - p.log_prob(z)  # (n, 1, B)
            mc, se = diff.mean(0), diff.std(0) / math.sqrt(n)
            assert float(analytic.min()) > 1e-3
            assert bool(((mc - analytic).abs() < 4 * se + 1e-4).all()), (mc, analytic, se)


def test_kl_groups_layer_order_and_top_layer_closed_form():
    m = _model()
    x = _binary(5)
    t = elbo_terms(m, x, n_samples=3)
    assert t.analytic_kl and t.kl_groups.shape == (5, sum(m.layer_dims))
    assert torch.allclose(t.kl_groups.sum(-1), t.kl)
    top = m.bottom_up(x)[-1]  # top layer: KL(N(mu_hat_L, var_hat_L) || N(0, I)) needs no parent
    mu, var = top.loc, top.variance
    closed = 0.5 * (var + mu**2 - 1 - var.log())
    assert torch.allclose(t.kl_groups[:, m.layer_slices[-1]], closed, atol=1e-5)
    assert [s.stop - s.start for s in m.layer_slices] == list(SMALL["latent_dims"])


# -- bounds --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("merge", [True, False])
def test_elbo_below_importance_sampled_log_px(merge):
    m = _model(merge=merge)
    x = _binary(8)
    torch.manual_seed(5)
    with torch.no_grad():
        elbo = elbo_terms(m, x, n_samples=200).elbo.mean()
        k = 1000
        log_px = (torch.logsumexp(log_weights(m, x, k), 0) - math.log(k)).mean()
        iwae5 = IWAE(k=5).bound(m, x).mean()
    assert float(elbo) < float(iwae5) < float(log_px)
    assert float(log_px - elbo) > 0.05  # a real gap at random initialisation


@pytest.mark.parametrize("merge", [True, False])
def test_analytic_kl_elbo_equals_mean_log_weight(merge):
    m = _model(merge=merge)
    x = _binary(4)
    r = 2000
    torch.manual_seed(6)
    with torch.no_grad():
        e = elbo_terms(m, x.repeat(r, 1), n_samples=1).elbo.reshape(r, 4)  # r independent one-sample ELBOs
        lw = log_weights(m, x, r)  # (r, 4)
    se = ((e.var(0) + lw.var(0)) / r).sqrt()
    assert bool(((e.mean(0) - lw.mean(0)).abs() < 4 * se).all()), (e.mean(0), lw.mean(0), se)
    assert float(se.max()) < 0.5  # the test has power


def test_merge_and_no_merge_estimate_the_same_log_px():
    # merge only changes q, never p: with the same weights both importance-sampled estimates target one log p(x)
    m1, m2 = _model(merge=True), _model(merge=False)
    m2.load_state_dict(m1.state_dict())
    x = _binary(6)
    k = 2000
    torch.manual_seed(10)
    est, var = [], []
    with torch.no_grad():
        for m in (m1, m2):
            w = log_weights(m, x, k).double()  # (k, B)
            est.append(torch.logsumexp(w, 0) - math.log(k))
            rel = (w - w.max(0).values).exp()  # delta method: se(log mean w) = sd(w) / (sqrt(k) mean(w))
            var.append((rel.std(0) / (math.sqrt(k) * rel.mean(0))) ** 2)
    assert bool(((est[0] - est[1]).abs() < 4 * (var[0] + var[1]).sqrt() + 0.01).all()), (est, var)


# -- training contract ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "arch,merge,bn,free_bits", [("mlp", True, False, 0.0), ("mlp", False, True, 0.1), ("conv", True, True, 0.0)]
)
def test_every_parameter_gets_a_gradient(arch, merge, bn, free_bits):
    shape = (1, 10, 9)
    m = _model(shape, arch=arch, merge=merge, batch_norm=bn)
    m.train()
    x = _binary(6, shape)
    res = ELBO(warmup_steps=10, free_bits=free_bits, n_samples=2)(m, x, step=3)
    assert res.beta == pytest.approx(0.3) and torch.isfinite(res.loss)
    res.loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 28, 20), (16,)])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_shapes_and_sampling(shape, arch):
    if arch == "conv" and len(shape) != 3:
        with pytest.raises(ValueError, match="needs image data"):
            _model(shape, arch=arch)
        return
    m = _model(shape, arch=arch)
    x = _binary(3, shape)
    t = elbo_terms(m, x, 2)
    assert t.log_px_z.shape == t.kl.shape == (3,) and t.kl_groups.shape == (3, 12)
    assert log_weights(m, x, 5).shape == (5, 3)
    assert m.latent_dim == 12 and m.embed(x).shape == (3, 12) and m.reconstruct(x).shape == (3, *shape)
    assert [tuple(z.shape) for z in m.posterior_means(x)] == [(3, 6), (3, 4), (3, 2)]
    s = m.sample(4)
    assert s.shape == (4, *shape) and bool(((s >= 0) & (s <= 1)).all())
    cold = m.sample(4, temperature=0.0)  # T = 0: z_L = 0 and z_i = mu_p: every draw the same
    assert torch.allclose(cold, cold[:1].expand_as(cold)) and not torch.allclose(s, s[:1].expand_as(s))


def test_sample_is_ancestral_with_tempered_scales():
    m = _model()
    temp = 0.7
    torch.manual_seed(7)
    out = m.sample(5, temperature=temp)
    torch.manual_seed(7)
    with torch.no_grad():
        z = temp * torch.randn(5, 2)
        for net in (m.top_down[1], m.top_down[0]):
            p = net(z)
            z = p.loc + temp * p.scale * torch.randn_like(p.loc)
        expected = torch.sigmoid(m.decoder(z))
    assert torch.allclose(out, expected, atol=1e-6)


def test_single_layer_identity_decoder_samples_the_tempered_prior():
    lik = build_likelihood("gaussian", (3,))
    m = LadderVAE([DenseBlock(3, 8)], [GaussianParams(8, 3)], [], nn.Identity(), lik)
    torch.manual_seed(8)
    n = 20000
    z = m.sample(n, temperature=0.5)  # the decoder mean is z itself: N(0, 0.25 I)
    se = 0.5 / math.sqrt(2 * (n - 1))  # standard error of a sample std
    assert bool(((z.std(0) - 0.5).abs() < 4 * se).all()) and bool((z.mean(0).abs() < 4 * 0.5 / math.sqrt(n)).all())


def test_state_dict_round_trip_with_batch_norm():
    m1 = _model(batch_norm=True, seed=0)
    x = _binary(6)
    m1.train()
    elbo_terms(m1, x, 2)  # moves the running statistics
    buf = io.BytesIO()
    torch.save(m1.state_dict(), buf)
    m2 = _model(batch_norm=True, seed=1)
    m1.eval(), m2.eval()
    torch.manual_seed(9)
    before = log_weights(m2, x, 4)
    m2.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    torch.manual_seed(9)
    a = log_weights(m1, x, 4)
    torch.manual_seed(9)
    b = log_weights(m2, x, 4)
    assert torch.equal(a, b) and not torch.allclose(a, before)
    assert torch.equal(m1.sample(3, 0.0), m2.sample(3, 0.0)) and torch.equal(m1.embed(x), m2.embed(x))


@pytest.mark.parametrize("lik,kwargs", [("bernoulli", {}), ("gaussian", {"sigma": 0.5})])
def test_likelihoods(lik, kwargs):
    m = _model(likelihood=lik, likelihood_kwargs=kwargs)
    x = _binary(4) if lik == "bernoulli" else torch.randn(4, 12, generator=torch.Generator().manual_seed(2))
    t = elbo_terms(m, x, 2)
    assert torch.isfinite(t.elbo).all()
    z1 = m.posterior_means(x)[0]
    h = m.decoder(z1)
    ref = (torch.distributions.Bernoulli(logits=h) if lik == "bernoulli" else Normal(h, 0.5)).log_prob(x).sum(-1)
    assert torch.allclose(m.decode(z1).log_prob(x), ref, atol=1e-4)
    if lik == "gaussian":
        with pytest.raises(ValueError):
            _model().check_input(x)  # real-valued data do not fit a Bernoulli ladder


def test_batch_norm_train_and_eval():
    m = _model(batch_norm=True)
    x = _binary(6)
    m.train()
    t = elbo_terms(m, x, 2)
    assert torch.isfinite(t.elbo).all()
    with torch.no_grad():  # train mode: outputs depend on the rest of the batch
        assert not torch.allclose(m._mean_pass(x)[0][:2], m._mean_pass(x[:2])[0])
    stats = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    m.sample(1), m.embed(x[:1])  # uses run in eval mode: batch of one is fine, running stats untouched
    assert m.training and all(torch.equal(v, m.state_dict()[k]) for k, v in stats.items())
    m.eval()
    assert torch.allclose(m.embed(x)[:1], m.embed(x[:1]), atol=1e-6)
    lw = log_weights(m, x[:1], 50)  # K samples of one point
    assert lw.shape == (50, 1) and torch.isfinite(lw).all()


def test_bad_input_messages():
    with pytest.raises(ValueError, match="one positive width per stochastic layer"):
        build_ladder((12,), latent_dims=(4, 2), hidden=(16,))
    with pytest.raises(ValueError, match="unknown model.arch"):
        build_ladder((12,), arch="resnet")
    with pytest.raises(ValueError, match="at least one positive layer size"):
        build_ladder((12,), latent_dims=(), hidden=())
    with pytest.raises(ValueError, match="expected a batch of shape"):
        elbo_terms(_model(), torch.zeros(12))
    with pytest.raises(ValueError, match="does not fit a model"):
        elbo_terms(_model(), torch.zeros(2, 13))
