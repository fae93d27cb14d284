"""β-TCVAE and FactorVAE on the core's interface: known answers for the TC estimators, the decomposition, the
β = 1 reduction to the ELBO, and FactorVAE's discriminator trained, checkpointed and resumed by the trainer."""

import json
import math

import pytest
import torch

from vaekit.config import ConfigError, ModelConfig, TrainConfig
from vaekit.models import build_vae
from vaekit.objectives import ELBO
from vaekit.objectives.factor_vae import FactorVAE, permute_dims
from vaekit.objectives.tc import BetaTCVAE, tc_decomposition
from vaekit.registry import build_objective
from vaekit.training.trainer import Trainer


def _aggregate(n: int, rho: float, s2: float, sigma: float, seed: int = 0):
    """N posteriors N(mu_n, sigma^2 I), mu_n ~ N(0, s2 [[1, rho], [rho, 1]]), one sample z_n from each."""
    g = torch.Generator().manual_seed(seed)
    cov = s2 * torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    mu = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T  # (N, 2)
    scale = torch.full_like(mu, sigma)
    z = mu + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    r = s2 * rho / (s2 + sigma ** 2)  # correlation of the aggregate posterior N(0, s2 C + sigma^2 I)
    return z, mu, scale, log_pz, -0.5 * math.log(1 - r * r)


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_tc_estimators_match_the_closed_form_tc_of_a_gaussian_aggregate(rho):
    n = 1500  # the whole data set as one batch
    z, mu, scale, log_pz, tc_true = _aggregate(n, rho, s2=1.0, sigma=0.3)
    mss = tc_decomposition(z, mu, scale, log_pz, n, "mss")
    mws = tc_decomposition(z, mu, scale, log_pz, n, "mws")
    assert float(mss["tc"].mean()) == pytest.approx(tc_true, abs=0.05)
    # MWS weights every term 1/(N M): with M = N its tc is the mixture's plus (D - 1) log N exactly
    assert float(mws["tc"].mean()) - math.log(n) == pytest.approx(tc_true, abs=0.05)
    if rho:
        assert tc_true > 0.35  # a clearly non-zero answer
    for est in (mss, mws):  # mi + tc + dwkl = log q(z|x) - log p(z) per example
        log_q = torch.distributions.Normal(mu, scale).log_prob(z).sum(-1)
        torch.testing.assert_close(est["mi"] + est["tc"] + est["dwkl"], log_q - log_pz)


def _vae(seed=0, d=12, k=3):
    torch.manual_seed(seed)
    return build_vae((d,), latent_dim=k, hidden=(16,))


def _x(n=64, d=12):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(0)) < 0.4).float()


def test_beta_tcvae_at_beta_one_is_the_elbo_and_weights_the_tc_term():
    model, x = _vae(), _x()
    torch.manual_seed(1)
    elbo = ELBO()(model, x)
    torch.manual_seed(1)
    one = BetaTCVAE(beta=1.0, dataset_size=1000)(model, x)
    torch.testing.assert_close(one.loss, elbo.loss)
    torch.testing.assert_close(one.elbo, elbo.elbo)
    torch.manual_seed(1)
    six = BetaTCVAE(beta=6.0, dataset_size=1000)(model, x)
    torch.testing.assert_close(six.loss, elbo.loss + 5 * six.terms["tc"].mean())
    assert set(six.terms) == {"mi", "tc", "dwkl"} and six.terms["tc"].shape == (64,)


def test_objectives_from_the_config_with_typed_options():
    tc = build_objective(ModelConfig(objective="beta-tcvae", beta=6.0), n_train=500)
    assert isinstance(tc, BetaTCVAE) and tc.beta == 6.0 and tc.dataset_size == 500
    fv = build_objective(ModelConfig(objective="factor-vae", latent_dim=4, objective_options={"gamma": 35}))
    assert isinstance(fv, FactorVAE) and fv.gamma == 35.0
    with pytest.raises(ConfigError, match="objective_options has 'gama'.*did you mean 'gamma'"):
        build_objective(ModelConfig(objective="factor-vae", objective_options={"gama": 3}))
    with pytest.raises(ConfigError, match="unknown model.objective 'beta-tc'; did you mean 'beta-tcvae'"):
        build_objective(ModelConfig(objective="beta-tc"))
    with pytest.raises(ConfigError, match="model.objective_options.estimator must be one of mws, mss"):
        build_objective(ModelConfig(objective="beta-tcvae", objective_options={"estimator": 3}), n_train=5)
    with pytest.raises(ConfigError, match="needs the training set size"):
        build_objective(ModelConfig(objective="beta-tcvae"))


def test_permute_dims_permutes_each_dimension_independently():
    z = torch.arange(40.0).reshape(10, 4) + 100 * torch.arange(4.0)
    p = permute_dims(z)
    for j in range(4):
        assert sorted(p[:, j].tolist()) == sorted(z[:, j].tolist())
    assert not all(torch.equal(torch.argsort(p[:, 0]), torch.argsort(p[:, j])) for j in range(1, 4))


def test_factor_vae_discriminator_learns_and_resumes_exactly(tmp_path):
    # the discriminator separates correlated codes from their permutations: cross-entropy falls below log 2
    fv = FactorVAE(latent_dim=2, hidden=(32, 32), disc_lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        base = torch.randn(256, 1, generator=g)
        loss = fv.discriminator_loss(torch.cat([base, base + 0.1 * torch.randn(256, 1, generator=g)], 1))
        fv.disc_opt.zero_grad()
        loss.backward()
        fv.disc_opt.step()
    assert float(loss.detach()) < 0.5 * math.log(2)
    s = TrainConfig(steps=8, batch_size=16, lr=0.01, progress=False, val_every=4, checkpoint_every=4)

    class Stop(Exception):
        pass

    def kill(t, r):
        if r["step"] == 4:
            raise Stop

    def trainer(run, seed=0, callbacks=None):
        model, obj = _vae(seed), FactorVAE(latent_dim=3, hidden=(8,), gamma=5.0)
        return Trainer(model, obj, _x(), None, settings=s, run_dir=tmp_path / run, seed=0, callbacks=callbacks), obj

    full, obj = trainer("full")
    d0 = [p.clone() for p in obj.discriminator.parameters()]
    full.fit()
    assert all(not torch.equal(a, b) for a, b in zip(d0, obj.discriminator.parameters()))  # its own optimizer ran
    rec = json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "tc" in rec and "disc_loss" in rec

    part, _ = trainer("part", callbacks=[kill])
    with pytest.raises(Stop):
        part.fit()
    resumed, obj3 = trainer("part", seed=5)
    resumed.restore(tmp_path / "part" / "last.safetensors")
    resumed.fit()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(obj.discriminator.parameters(), obj3.discriminator.parameters()):
        assert torch.equal(a, b)
