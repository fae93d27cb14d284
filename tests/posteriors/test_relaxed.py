"""Gumbel-softmax latents: relaxed samples' mean tends to the class probabilities as the temperature falls, exact
one-hot draws without gradients, straight-through values and gradients, the exact categorical KL against torch,
and the annealing schedule of the discrete family."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from vaekit.config import ModelConfig
from vaekit.models.discrete import annealed_temperature
from vaekit.models.registry import build_family
from vaekit.posteriors.relaxed import GumbelSoftmax, categorical_kl, categorical_prior

PI = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=torch.float64)  # (N, K)


def test_relaxed_samples_mean_tends_to_the_class_probabilities_as_the_temperature_falls():
    torch.manual_seed(0)
    n = 20000
    se = (PI * (1 - PI) / n).sqrt()
    cold = GumbelSoftmax(PI.log(), tau=0.02).relaxed((n,)).mean(0)
    assert bool(((cold - PI).abs() < 4 * se).all()), cold
    warm = GumbelSoftmax(PI.log(), tau=5.0).relaxed((n,)).mean(0)  # a hot relaxation is pulled to uniform
    assert float((warm - PI).abs().max()) > 20 * float(se.max())
    assert float((warm - 1 / 3).abs().max()) < float((PI - 1 / 3).abs().max())


def test_without_gradients_draws_are_exact_one_hot_categorical_draws():
    q = GumbelSoftmax(PI.log().expand(4, 2, 3), tau=1.0)
    torch.manual_seed(1)
    with torch.no_grad():
        z = q.rsample((5000,))  # (S, B, N, K)
    assert set(z.unique().tolist()) == {0.0, 1.0} and bool((z.sum(-1) == 1).all())
    freq = z.mean((0, 1))
    assert bool(((freq - PI).abs() < 4 * (PI * (1 - PI) / 20000).sqrt()).all())
    # log_prob of one-hot values is the categorical log-probability
    torch.testing.assert_close(q.log_prob(z[:2]), (PI.log() * z[:2]).sum((-1, -2)))


def test_straight_through_values_are_one_hot_with_the_relaxed_gradient():
    logits = PI.log().clone().requires_grad_(True)
    w = torch.randn(2, 3, dtype=torch.float64)
    torch.manual_seed(2)
    z = GumbelSoftmax(logits, tau=0.7, straight_through=True).rsample()
    assert set(z.detach().unique().tolist()) == {0.0, 1.0}
    (g_st,) = torch.autograd.grad((z * w).sum(), logits)
    torch.manual_seed(2)
    y = GumbelSoftmax(logits, tau=0.7).rsample()
    (g_soft,) = torch.autograd.grad((y * w).sum(), logits)
    torch.testing.assert_close(g_st, g_soft)
    assert torch.equal(z.detach(), torch.nn.functional.one_hot(y.argmax(-1), 3).double())


def test_exact_categorical_kl_matches_torch():
    q = GumbelSoftmax(PI.log())
    uniform = categorical_prior(2, 3, PI)
    torch.testing.assert_close(categorical_kl(q, uniform),
                               kl_divergence(Categorical(probs=PI), Categorical(logits=torch.zeros(2, 3))).double())
    assert float(categorical_kl(q, uniform)[0]) == pytest.approx(sum(p * math.log(3 * p) for p in PI[0].tolist()))


def test_temperature_annealing_follows_the_training_steps():
    assert annealed_temperature(0, 1.0, 0.5, 100) == 1.0
    assert annealed_temperature(50, 1.0, 0.5, 100) == pytest.approx(math.sqrt(0.5))
    assert annealed_temperature(500, 1.0, 0.5, 100) == pytest.approx(0.5)
    assert annealed_temperature(500, 2.0, 0.5, 0) == 2.0
    torch.manual_seed(0)
    model = build_family(ModelConfig(family="discrete", hidden=[8], n_latents=2, categories=3, anneal_steps=4,
                                     min_temperature=0.25), (6,))
    x = (torch.rand(3, 6) > 0.5).float()
    for _ in range(2):
        model(x)
    assert int(model.steps_seen) == 2 and model.temperature == pytest.approx(0.5)
    with torch.no_grad():
        model(x)
    model.eval()
    model(x)
    assert int(model.steps_seen) == 2  # evaluation does not advance the schedule
    assert "steps_seen" in model.state_dict() and model.extra_stats()["temperature"] == pytest.approx(0.5)
