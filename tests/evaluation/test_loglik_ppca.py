"""Known answers for the importance-sampled log p(x) on a linear-Gaussian VAE (pPCA) with exact log p(x)."""

from __future__ import annotations

import math

import pytest
import torch
from ppca_vae import PPCA

from vaekit.evaluation import elbo_dataset, estimate_log_likelihood
from vaekit.objectives.bounds import elbo_terms, log_weights


@pytest.fixture(scope="module")
def ppca() -> PPCA:
    return PPCA(x_dim=6, z_dim=3, sigma=0.5, seed=0)


def test_exact_posterior_makes_every_weight_equal_log_px(ppca):
    x = ppca.sample(50)
    lp = ppca.log_px(x)  # (N,)
    model = ppca.vae()
    torch.manual_seed(0)
    with torch.no_grad():
        lw = log_weights(model, x, 20)  # (20, N)
    assert (lw - lp).abs().max() < 1e-4
    res = estimate_log_likelihood(model, x, k=10, batch_size=7, seed=0)
    assert (res.per_example - lp).abs().max() < 1e-4
    assert res.mean == pytest.approx(float(lp.mean()), abs=1e-4)


def test_analytic_kl_elbo_equals_log_px_for_exact_posterior(ppca):
    # The analytic-KL ELBO is E_q[log p(x|z)] - KL: its only noise is the Monte Carlo mean of log p(x|z).
    x = ppca.sample(50)
    lp = ppca.log_px(x)
    model = ppca.vae()
    torch.manual_seed(1)
    with torch.no_grad():
        t = elbo_terms(model, x, n_samples=4000)
    assert t.analytic_kl
    diff = t.elbo - lp  # (N,) pure Monte Carlo noise around 0
    se = float(diff.std() / math.sqrt(diff.numel()))
    assert abs(float(diff.mean())) < 4 * se + 1e-4
    assert se < 5e-3  # the test has power: the mean is pinned to ~0.01 nats
    e = elbo_dataset(ppca.vae(), x, batch_size=16, n_samples=4000, seed=1)
    assert e["elbo"] == pytest.approx(float(lp.mean()), abs=0.015)  # ~ 6 standard errors
    assert e["elbo"] == pytest.approx(e["log_px_z"] - e["kl"], abs=1e-9)


def test_bounds_are_ordered_and_iwae_rises_with_k(ppca):
    # q too narrow and shifted: gaps stay many standard errors wide up to k = 100 (N = 1000 points)
    x = ppca.sample(1000, seed=2)
    lp = ppca.log_px(x)
    model = ppca.perturbed_vae(loc_shift=0.3, scale_factor=0.7)
    elbo = elbo_dataset(model, x, batch_size=250, n_samples=1, seed=3)
    iwae = {k: estimate_log_likelihood(model, x, k=k, batch_size=250, seed=10 + k).per_example for k in (1, 10, 100)}
    n = x.shape[0]

    def z_score(d: torch.Tensor) -> float:  # mean / standard error of a paired difference
        return float(d.mean() / (d.std() / math.sqrt(n)))

    # ELBO and IWAE_1 have the same expectation (E_q log w): equal within their standard errors
    se = math.hypot(elbo["elbo_stderr"], float(iwae[1].std()) / math.sqrt(n))
    assert abs(elbo["elbo"] - float(iwae[1].mean())) < 4 * se
    assert z_score(iwae[10] - iwae[1]) > 5
    assert z_score(iwae[100] - iwae[10]) > 5
    assert z_score(lp - iwae[100]) > 5
    assert float(iwae[10].mean()) > elbo["elbo"]


def test_k5000_estimate_is_within_005_nats_of_exact(ppca):
    x = ppca.sample(12, seed=4)
    model = ppca.perturbed_vae(loc_shift=0.4, scale_factor=1.6)
    res = estimate_log_likelihood(model, x, k=5000, seed=0)
    assert res.k == 5000 and res.per_example.shape == (12,)
    assert (res.per_example - ppca.log_px(x)).abs().max() < 0.05
    assert res.mean == pytest.approx(float(ppca.log_px(x).mean()), abs=0.02)


def test_stderr_formula_and_matches_spread_over_datasets(ppca):
    model = ppca.perturbed_vae(loc_shift=0.4, scale_factor=1.6)
    res = estimate_log_likelihood(model, ppca.sample(30, seed=5), k=5, batch_size=30, seed=0)
    pe = res.per_example
    assert res.stderr == pytest.approx(float(pe.std() / math.sqrt(30)), rel=1e-9)
    # 300 independent datasets of 30 points from the true p(x): the spread of the reported means should match
    # the reported standard errors (relative error of a 300-sample std is ~ 1 / sqrt(600) = 4 %)
    x = ppca.sample(300 * 30, seed=6).reshape(300, 30, -1)
    runs = [estimate_log_likelihood(model, x[r], k=5, batch_size=30, seed=r) for r in range(300)]
    spread = torch.tensor([r.mean for r in runs]).std()
    mean_se = sum(r.stderr for r in runs) / len(runs)
    assert 0.85 < float(spread) / mean_se < 1.15
