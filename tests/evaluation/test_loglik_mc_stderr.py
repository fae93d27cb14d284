"""The Monte Carlo standard error of the importance-sampled log p(x): zero for the exact posterior, and the size
of the spread of repeated estimates (new samples, same examples) otherwise."""

from __future__ import annotations

import math

import torch
from ppca_vae import PPCA

from vaekit.evaluation import estimate_log_likelihood


def test_exact_posterior_has_no_monte_carlo_error():
    ppca = PPCA(x_dim=6, z_dim=3, sigma=0.5, seed=0)
    res = estimate_log_likelihood(ppca.vae(), ppca.sample(40), k=10, seed=0)
    assert res.mc_var is not None and res.mc_var.shape == (40,)
    assert res.mc_stderr < 1e-6 and res.to_dict()["log_px_mc_stderr"] == res.mc_stderr


def test_mc_stderr_matches_the_spread_of_repeated_estimates():
    from vaekit.models import build_vae

    torch.manual_seed(0)
    model = build_vae((1, 8, 8), arch="mlp", hidden=[16], latent_dim=2, likelihood="bernoulli")  # q far from p(z|x)
    x = (torch.rand(12, 1, 8, 8) > 0.5).float()
    runs = [estimate_log_likelihood(model, x, k=50, seed=s) for s in range(40)]
    spread_of_mean = torch.tensor([r.mean for r in runs]).std().item()  # what the s.e. of the mean should be
    claimed = sum(r.mc_stderr for r in runs) / len(runs)
    assert 0.6 < claimed / spread_of_mean < 1.6, (claimed, spread_of_mean)
    per_ex = torch.stack([r.per_example for r in runs]).std(0)  # (N,)
    claimed_ex = torch.stack([r.mc_var for r in runs]).mean(0).sqrt()
    assert math.isclose(float(claimed_ex.mean()), float(per_ex.mean()), rel_tol=0.4)
