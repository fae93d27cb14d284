"""Objectives: beta, KL warm-up, free bits, IWAE — each against a direct computation."""

import math

import pytest
import torch

from vaekit.models import build_vae
from vaekit.objectives import ELBO, IWAE, kl_weight
from vaekit.objectives.bounds import elbo_terms, log_weights


def _setup(seed=0):
    torch.manual_seed(seed)
    m = build_vae((10,), hidden=[8], latent_dim=3)
    x = torch.bernoulli(torch.full((6, 10), 0.3), generator=torch.Generator().manual_seed(1))
    return m, x


def test_kl_weight_schedule():
    assert kl_weight(None, 2.0, 100) == 2.0
    assert kl_weight(0, 2.0, 100) == 0.0
    assert kl_weight(25, 2.0, 100) == 0.5
    assert kl_weight(500, 2.0, 100) == 2.0
    assert kl_weight(7, 0.5, 0) == 0.5


@pytest.mark.parametrize("beta,step,warmup", [(1.0, None, 0), (4.0, None, 0), (1.0, 30, 100), (0.0, None, 0)])
def test_loss_is_rec_plus_weighted_kl(beta, step, warmup):
    m, x = _setup()
    torch.manual_seed(5)
    r = ELBO(beta=beta, warmup_steps=warmup)(m, x, step=step)
    torch.manual_seed(5)
    t = elbo_terms(m, x, 1)
    w = kl_weight(step, beta, warmup)
    torch.testing.assert_close(r.loss, -t.log_px_z.mean() + w * t.kl.mean())
    torch.testing.assert_close(r.elbo, t.log_px_z - t.kl)  # the reported ELBO is always the beta = 1 value
    assert r.beta == w
    rec_m, kl_m = r.means  # the batch means the trainer accumulates, detached
    assert not rec_m.requires_grad and not kl_m.requires_grad
    torch.testing.assert_close(rec_m, t.log_px_z.mean())
    torch.testing.assert_close(kl_m, t.kl.mean())


def test_free_bits_floors_each_dimension_batch_mean():
    m, x = _setup()
    torch.manual_seed(5)
    t = elbo_terms(m, x, 1)
    lam = float(t.kl_groups.detach().mean(0).median())  # some dimensions below, some above the floor
    torch.manual_seed(5)
    r = ELBO(free_bits=lam)(m, x)
    expect = -t.log_px_z.mean() + torch.clamp(t.kl_groups.mean(0), min=lam).sum()
    torch.testing.assert_close(r.loss, expect)
    # dimensions under the floor get no KL gradient
    r.loss.backward()
    assert r.loss > -t.log_px_z.mean() + t.kl.mean() - 1e-6


def test_iwae_k1_is_the_single_sample_elbo_and_rises_with_k():
    m, x = _setup()
    torch.manual_seed(3)
    lw = log_weights(m, x, 1)
    torch.manual_seed(3)
    b1 = IWAE(1).bound(m, x)
    torch.testing.assert_close(b1, lw[0])
    torch.manual_seed(4)
    means = [IWAE(k).bound(m, x.repeat(200, 1)).mean().item() for k in (1, 5, 50)]
    assert means[0] < means[1] < means[2]
    torch.manual_seed(6)
    lw = log_weights(m, x, 7)
    torch.manual_seed(6)
    torch.testing.assert_close(IWAE(7).bound(m, x), torch.logsumexp(lw, 0) - math.log(7))
    torch.manual_seed(6)
    r = IWAE(7)(m, x)  # the objective reports its bound as the per-example 'elbo', and minimises its mean
    torch.testing.assert_close(r.elbo, torch.logsumexp(lw, 0) - math.log(7))
    torch.testing.assert_close(r.loss, -r.elbo.mean())


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        ELBO(beta=-1)
    with pytest.raises(ValueError):
        ELBO(n_samples=0)
    with pytest.raises(ValueError):
        IWAE(0)
