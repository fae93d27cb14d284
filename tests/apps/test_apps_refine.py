"""Per-point refinement: reaches the exact posterior of the pPCA VAE, never lowers the ELBO, leaves the model alone."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.apps import elbo_with_noise, refine


def _exact_elbo(ppca, x, loc, scale):
    """Closed-form ELBO of q = N(loc, diag scale^2) under the pPCA model (orthogonal W columns)."""
    r = x - loc @ ppca.W.T - ppca.b  # (N, X)
    w2 = (ppca.W**2).sum(0)  # (D,)
    rec = -0.5 * ppca.x_dim * math.log(2 * math.pi * ppca.sigma**2) - ((r**2).sum(1) + (w2 * scale**2).sum(1)) / (
        2 * ppca.sigma**2)
    kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(1)
    return rec - kl


def test_elbo_with_noise_estimates_the_closed_form(ppca):
    x = ppca.sample(30)
    loc, scale = x @ ppca.A.T + ppca.c + 0.3, ppca.post_scale.expand(30, 3) * 1.5
    g = torch.Generator().manual_seed(0)
    S = 4000
    eps = torch.randn(S, 30, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        est = elbo_with_noise(ppca.vae(), x, loc, scale.log(), eps)
        per_draw = ppca.vae().decode(loc + scale * eps).log_prob(x)  # (S, N): its spread gives the s.e.
    se = per_draw.std(0) / math.sqrt(S)
    assert ((est - _exact_elbo(ppca, x, loc, scale)).abs() < 5 * se).all()


def test_refinement_reaches_the_exact_posterior(ppca):
    model = ppca.perturbed_vae()  # encoder mean shifted and scale inflated: an amortisation gap of ~2.5 nats
    x = ppca.sample(40)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = refine(model, x, steps=300, lr=0.1, n_samples=32, eval_samples=200, seed=0)
    with torch.no_grad():
        q0 = model.encode(x)
    e0, e1 = _exact_elbo(ppca, x, q0.loc, q0.scale), _exact_elbo(ppca, x, res.loc, res.scale)
    assert (e1 > e0).all() and float((e0 - ppca.log_px(x)).mean()) < -1.0
    # the optimum of the ELBO over Gaussians is the exact posterior, where ELBO = log p(x)
    assert (e1 - ppca.log_px(x)).abs().max() < 0.02
    assert (res.loc - (x @ ppca.A.T + ppca.c)).abs().max() < 0.05
    assert (res.scale / ppca.post_scale - 1).abs().max() < 0.1
    # reported ELBOs: common random numbers, never lower after refinement, and close to the exact values
    assert (res.gap >= 0).all() and int(res.kept_amortised.sum()) == 0
    assert res.summary()["gap"] == pytest.approx(float((e1 - e0).mean()), abs=0.1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_no_steps_means_no_gap(ppca):
    res = refine(ppca.perturbed_vae(), ppca.sample(10), steps=0)
    assert torch.equal(res.elbo_refined, res.elbo_amortised) and not res.kept_amortised.any()


def test_refine_on_a_neural_vae_never_lowers_the_elbo(tiny_vae, digits_x):
    res = refine(tiny_vae, digits_x[:50], steps=20, lr=0.05, eval_samples=20)
    assert (res.elbo_refined >= res.elbo_amortised).all()
    kept = res.kept_amortised
    assert torch.equal(res.gap[kept], torch.zeros(int(kept.sum()), dtype=torch.float64))
    s = res.summary()
    assert s["n"] == 50 and s["gap_min"] >= 0 and s["elbo_refined"] >= s["elbo_amortised"]


def test_a_seeded_refinement_is_reproducible_on_the_models_device(tiny_vae, digits_x, device):
    """The noise comes from a generator on the model's device: one seed, the same result; another seed, other
    draws. On CPU the draws are torch.Generator().manual_seed(seed)'s, as they always were."""
    from vaekit.apps._common import single_gaussian_posterior

    model, x = tiny_vae.to(device), digits_x[:12]
    a, b = (refine(model, x, steps=5, n_samples=2, eval_samples=5, seed=3) for _ in range(2))
    for name in ("loc", "scale", "elbo_amortised", "elbo_refined", "kept_amortised"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    c = refine(model, x, steps=5, n_samples=2, eval_samples=5, seed=4)
    assert not torch.equal(a.elbo_amortised, c.elbo_amortised)
    if device.type == "cpu":  # with no steps, the first draws are the evaluation's: (S, B, D) from the CPU stream
        res = refine(model, x, steps=0, eval_samples=5, seed=3)
        eps = torch.randn(5, 12, 3, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            q = single_gaussian_posterior(model, x, "refinement")
            want = elbo_with_noise(model, x, q.loc, q.log_scale, eps)
        torch.testing.assert_close(res.elbo_amortised, want.double())


def test_bad_input_messages(tiny_vae, digits_x):
    from vaekit.config import ModelConfig
    from vaekit.registry import build_model

    iaf = build_model(ModelConfig(latent_dim=2, hidden=[8], posterior="iaf"), (1, 8, 8))
    with pytest.raises(ValueError, match="refinement needs a model with the capability 'gaussian-posterior'"):
        refine(iaf, digits_x[:3], steps=1)
    with pytest.raises(ValueError, match="steps must be a non-negative integer, got -1"):
        refine(tiny_vae, digits_x[:3], steps=-1)
    with pytest.raises(ValueError, match="eval_samples must be a positive integer, got 0"):
        refine(tiny_vae, digits_x[:3], eval_samples=0)
    with pytest.raises(ValueError, match="lr must be positive"):
        refine(tiny_vae, digits_x[:3], lr=0.0)
    with pytest.raises(ValueError, match="does not fit a model built for"):
        refine(tiny_vae, digits_x[:3].reshape(3, 64))


def test_mean_field_from_the_prior_starts_worse_and_reaches_the_exact_posterior(ppca):
    model, x = ppca.vae(), ppca.sample(40)  # the exact encoder: amortised = the optimum
    res = refine(model, x, steps=300, lr=0.1, n_samples=32, eval_samples=200, seed=0, init="prior")
    start, exact = _exact_elbo(ppca, x, torch.zeros(40, 3, dtype=x.dtype), torch.ones(40, 3, dtype=x.dtype)), ppca.log_px(x)
    # the start is q = p(z), whose 200-draw ELBO is noisy per point (its draws lie far from the posterior)
    assert abs(float((res.elbo_start - start).mean())) < 1.0 and (res.elbo_start < res.elbo_amortised - 1).all()
    assert (res.elbo_refined > res.elbo_start).all() and int(res.kept_amortised.sum()) == 0
    assert (_exact_elbo(ppca, x, res.loc, res.scale) - exact).abs().max() < 0.02  # the same optimum, from afar
    assert (res.loc - (x @ ppca.A.T + ppca.c)).abs().max() < 0.05
    s = res.summary()
    assert s["init"] == "prior" and s["seconds"] > 0 and s["seconds_amortised"] > 0
    assert s["elbo_start"] < s["elbo_amortised"] and abs(s["gap"]) < 0.05  # amortised is exact here: no gap left
    none = refine(model, x, steps=0, init="prior")
    assert torch.equal(none.elbo_refined, none.elbo_start) and (none.elbo_refined < none.elbo_amortised).all()
    with pytest.raises(ValueError, match="init must be one of encoder, prior"):
        refine(model, x, init="zero")
