"""The hierarchical VAE family (model.family=hvae) and the stability options it brought: known answers for the
importance-sampled log p(x) of a linear-Gaussian hierarchy, NVAE's KL balancing coefficients, per-group sampling
temperatures, update skipping above a gradient-norm threshold, and bf16 autocast training."""

from __future__ import annotations

import math
from typing import Mapping

import pytest
import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal

from vaekit.config import ModelConfig, TrainConfig
from vaekit.evaluation import estimate_log_likelihood
from vaekit.likelihoods import build_likelihood
from vaekit.models.contract import GroupLayout, LatentLayout, ModelOutput
from vaekit.models.registry import build_family
from vaekit.models.uses import LatentUsesMixin, sample_latents, temperatures
from vaekit.objectives import ELBO, elbo_terms
from vaekit.objectives.elbo import kl_balance_coefficients
from vaekit.objectives.latents import sample_latent
from vaekit.training.trainer import Trainer, TrainingError

TINY = dict(family="hvae", width=8, enc_blocks=[1, 1], dec_groups=[1, 2], latent_channels=2)
IMAGE = (1, 6, 6)


def _images(b: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, *IMAGE, generator=g) > 0.5).float()


# -- a known answer: log p(x) of a linear-Gaussian hierarchy ----------------------------------------------------
class LinearGaussianHierarchy(LatentUsesMixin, nn.Module):
    """z2 ~ N(0, I_1) (a (1, 1, 1) map), z1 | z2 ~ N(A z2, s1^2 I_2) ((2, 1, 1)), x | z1 ~ N(B z1, s0^2 I_3),
    speaking the contract with the groups as (C, H, W) maps like the hvae family's; q(z2|x) and q(z1|x, z2) are
    linear-Gaussian guesses ``off`` the exact posterior. Marginal: x ~ N(0, B (A A^T + s1^2 I) B^T + s0^2 I)."""

    def __init__(self, off: float) -> None:
        super().__init__()
        self.A = torch.tensor([[0.8], [-0.5]], dtype=torch.float64)
        self.B = torch.tensor([[1.0, 0.4], [-0.5, 0.6], [0.4, -0.25]], dtype=torch.float64)  # B^T B diagonal
        self.s1, self.s0, self.off = 0.6, 0.5, off
        self.likelihood = build_likelihood("gaussian", (3,), sigma=self.s0).double()
        self.data_shape, self.latent_dim = (3,), 3
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))  # a device and dtype for the uses layer

    def covariance(self) -> torch.Tensor:
        return self.B @ (self.A @ self.A.T + self.s1 ** 2 * torch.eye(2, dtype=torch.float64)) @ self.B.T \
            + self.s0 ** 2 * torch.eye(3, dtype=torch.float64)

    def _q2(self, x: torch.Tensor) -> Independent:
        """A guess (scaled projection, inflated s.d.), or with ``off=None`` the exact q(z2|x): x = (B A) z2 + e,
        e ~ N(0, C2 = s1^2 B B^T + s0^2 I), so precision 1 + (BA)^T C2^-1 (BA), mean var (BA)^T C2^-1 x."""
        if self.off is None:
            ba = self.B @ self.A  # (3, 1)
            c2_inv = torch.linalg.inv(self.s1 ** 2 * self.B @ self.B.T + self.s0 ** 2 * torch.eye(3).double())
            var = 1 / (1 + ba.T @ c2_inv @ ba)  # (1, 1)
            m = (x @ c2_inv @ ba * var).reshape(-1, 1, 1, 1)
            return Independent(Normal(m, var.sqrt().expand_as(m)), 3)
        m = 0.5 * (x @ self.B @ self.A).reshape(-1, 1, 1, 1)
        return Independent(Normal(m * (1 + self.off), torch.full_like(m, 0.7 + self.off)), 3)

    def _q1(self, x: torch.Tensor, z2: torch.Tensor) -> Independent:
        """A guess, or the exact q(z1|x, z2) = N(z1; A z2, s1^2) N(x; B z1, s0^2) normalised."""
        prior = (z2.reshape(*z2.shape[:-3], 1) @ self.A.T)  # (*lead, 2)
        if self.off is None:
            cov = torch.linalg.inv(torch.eye(2).double() / self.s1 ** 2 + self.B.T @ self.B / self.s0 ** 2)
            m = (prior / self.s1 ** 2 + x @ self.B / self.s0 ** 2) @ cov  # (*lead, 2)
            sd = torch.diagonal(cov).sqrt().reshape(2, 1, 1)  # cov is diagonal: B's columns are orthogonal
            return Independent(Normal(m.reshape(*m.shape[:-1], 2, 1, 1), sd.expand(*m.shape[:-1], 2, 1, 1)), 3)
        m = (0.6 * prior + 0.3 * x @ self.B).reshape(*prior.shape[:-1], 2, 1, 1)
        return Independent(Normal(m, torch.full_like(m, 0.5 + self.off)), 3)

    def forward(self, x: torch.Tensor, n_samples: int | None = 1, **options) -> ModelOutput:
        q2 = self._q2(x)
        g2 = sample_latent("z2", q2, self.group_prior("z2", {}), n_samples)
        g1 = sample_latent("z1", self._q1(x, g2.z), self.group_prior("z1", {"z2": g2.z}), None)
        return ModelOutput([g1, g2], self.decode({"z1": g1.z, "z2": g2.z}), 0 if n_samples is None else 1)

    def check_input(self, x: torch.Tensor) -> None:
        self.likelihood.check_batch(x)

    def extra_stats(self) -> dict[str, float]:
        return {}

    @property
    def layout(self) -> LatentLayout:
        return LatentLayout((GroupLayout("z1", (2, 1, 1), parent="z2"), GroupLayout("z2", (1, 1, 1))))

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"continuous", "hierarchical"})

    def posteriors(self, x, given=None):
        q2 = self._q2(x)
        return {"z1": self._q1(x, given["z2"] if given and "z2" in given else q2.mean), "z2": q2}

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]):
        if name == "z2":
            zero = torch.zeros(1, 1, 1, dtype=torch.float64)
            return Independent(Normal(zero, torch.ones_like(zero)), 3)
        m = (z["z2"].reshape(*z["z2"].shape[:-3], 1) @ self.A.T).reshape(*z["z2"].shape[:-3], 2, 1, 1)
        return Independent(Normal(m, torch.full_like(m, self.s1)), 3)

    def decode(self, z):
        z1 = z["z1"].reshape(*z["z1"].shape[:-3], 2)
        return self.likelihood(z1 @ self.B.T)


@pytest.mark.parametrize("off", [None, 0.2], ids=["exact-posterior", "guessed-posterior"])
def test_importance_sampled_log_px_is_exact_on_a_linear_gaussian_hierarchy(off):
    """The evaluator's chunked IS estimate (K = 20,000 in chunks of 2,500) of a two-level linear-Gaussian
    hierarchy against log N(x; 0, Sigma) in closed form. With the exact posterior every weight is p(x): the
    estimate equals it to rounding; with a guessed one it is within 4 Monte Carlo s.e., and the ELBO below it."""
    model = LinearGaussianHierarchy(off=off)
    torch.manual_seed(0)
    marginal = MultivariateNormal(torch.zeros(3, dtype=torch.float64), model.covariance())
    x = marginal.sample((4,))
    exact = marginal.log_prob(x)  # (4,)
    res = estimate_log_likelihood(model, x, k=20000, chunk_size=2500, seed=0)
    est = torch.as_tensor(res.per_example, dtype=torch.float64)
    if off is None:
        torch.testing.assert_close(est, exact, atol=1e-9, rtol=0)
        return
    se = res.mc_var.sqrt()
    assert float(se.max()) < 0.01  # the comparison has power
    assert bool(((est - exact).abs() < 4 * se).all()), (est, exact, se)
    torch.manual_seed(1)
    elbo = elbo_terms(model, x, n_samples=2000).elbo
    assert bool((elbo < exact - 0.05).all())  # the guess is off: a gap the IS estimate closed


# -- the family ------------------------------------------------------------------------------------------------
def test_layout_shapes_and_forward_lead_shapes():
    torch.manual_seed(0)
    model = build_family(ModelConfig(**TINY), IMAGE)
    assert model.layout.names == ["z1", "z2", "z3"]
    assert [g.shape for g in model.layout.groups] == [(2, 6, 6), (2, 3, 3), (2, 3, 3)]
    assert [g.parent for g in model.layout.groups] == ["z2", "z3", None]
    x = _images(3)
    out = model(x, 4)
    assert [tuple(g.z.shape) for g in out.groups] == [(4, 3, 2, 6, 6), (4, 3, 2, 3, 3), (4, 3, 2, 3, 3)]
    assert tuple(out.px.batch_shape) == (4, 3)
    # the residual posterior (NVAE): q's mean and s.d. are the prior's shifted and scaled
    res = build_family(ModelConfig(**TINY, residual_posterior=True), IMAGE)
    with torch.no_grad():
        for p in res.parameters():
            p.zero_()
        g = res(x, None).groups[-1]
    torch.testing.assert_close(g.q.base_dist.loc, g.p.base_dist.loc.expand_as(g.q.base_dist.loc))
    torch.testing.assert_close(g.q.base_dist.scale, g.p.base_dist.scale * (1 + 1e-3))


def test_per_group_temperature_sampling():
    """sample(n, {group: T}) draws z_g = mu_p + T_g sigma_p eps_g in one pass, the same draws as the uses
    layer's ancestral sampling; T = 0 everywhere is the prior's mean path; an unknown group is refused."""
    torch.manual_seed(0)
    model = build_family(ModelConfig(**TINY), IMAGE).eval()
    temps = {"z3": 0.0, "z2": 0.5}  # z1 left at T = 1
    assert temperatures(model.layout, temps) == {"z1": 1.0, "z2": 0.5, "z3": 0.0}
    torch.manual_seed(7)
    fast = model.sample(5, temps)
    torch.manual_seed(7)
    with torch.no_grad():
        z = sample_latents(model, 5, temps)
        slow = model.decode(z).mean
    torch.testing.assert_close(fast, slow)
    with torch.no_grad():  # the top group at T = 0 is its prior's mean; z2 at T = 0.5 has half the spread
        top = model.group_prior("z3", {})
        torch.testing.assert_close(z["z3"], top.mean.expand_as(z["z3"]))
        p2 = model.group_prior("z2", z)
        u2 = (z["z2"] - p2.mean) / p2.stddev
        torch.manual_seed(7)
        torch.randn(5, 2, 3, 3)  # the top group's noise (drawn, scaled by 0)
        torch.testing.assert_close(u2, 0.5 * torch.randn(5, 2, 3, 3))
    torch.manual_seed(1)
    a = model.sample(3, 0.0)
    torch.manual_seed(2)
    torch.testing.assert_close(a, model.sample(3, 0.0))
    with pytest.raises(ValueError, match="unknown latent group 'z9'"):
        model.sample(2, {"z9": 1.0})


# -- KL balancing ----------------------------------------------------------------------------------------------
def test_kl_balance_coefficients_by_hand():
    kls = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([-0.5, 0.5])}
    gamma = kl_balance_coefficients(kls, {"a": 4, "b": 1})
    # c_a = (2 + 0.01) / 4 = 0.5025, c_b = (0.5 + 0.01) / 1 = 0.51; gamma = 2 c / (c_a + c_b)
    assert math.isclose(float(gamma["a"]), 2 * 0.5025 / 1.0125, rel_tol=1e-6)
    assert math.isclose(float(gamma["b"]), 2 * 0.51 / 1.0125, rel_tol=1e-6)


def test_kl_balanced_elbo_weighs_groups_during_warmup_only():
    torch.manual_seed(0)
    model = build_family(ModelConfig(**TINY), IMAGE)
    x = _images(4)
    torch.manual_seed(3)
    t = elbo_terms(model, x)
    assert t.sizes == {"z1": 72, "z2": 18, "z3": 18}
    kls = {n: k.sum(-1) for n, k in t.groups.items()}
    c = {n: (kls[n].abs().mean() + 0.01) / (t.sizes[n] / 18) for n in kls}
    gamma = {n: 3 * c[n] / sum(c.values()) for n in c}
    expected = 0.5 * sum(gamma[n] * kls[n].mean() for n in kls) - t.log_px_z.mean()
    obj = ELBO(warmup_steps=10, kl_balance=True)
    torch.manual_seed(3)
    torch.testing.assert_close(obj(model, x, step=5).loss, expected)
    torch.manual_seed(3)  # warm-up over: the plain ELBO
    torch.testing.assert_close(obj(model, x, step=10).loss, (t.kl - t.log_px_z).mean())


# -- update skipping and bf16 ----------------------------------------------------------------------------------
def _trainer(**train) -> Trainer:
    torch.manual_seed(0)
    model = build_family(ModelConfig(**TINY), IMAGE)
    s = TrainConfig(steps=3, batch_size=8, lr=1e-2, progress=False, **train)
    return Trainer(model, ELBO(), _images(16), None, settings=s, run_dir=None, seed=0)


def test_an_update_above_the_skip_threshold_leaves_the_weights_and_is_counted():
    tr = _trainer(skip_threshold=1e-6, max_bad_steps=5)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    out = tr.train_step(_images(8))
    assert out["skipped"] and not out["ok"] and out["grad_norm"] > 1e-6
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    summary = _trainer(skip_threshold=1e-6, max_bad_steps=5).fit()
    assert summary["skipped_updates"] == 3 and summary["bad_steps"] == 0
    # a threshold that skips everything cannot stall a run: skips count toward max_bad_steps
    with pytest.raises(TrainingError, match="train.skip_threshold"):
        _trainer(skip_threshold=1e-6, max_bad_steps=2).fit()
    # a threshold above every gradient norm: every update taken, with clipping still applied
    tr = _trainer(skip_threshold=1e9, grad_clip=1.0)
    s = tr.fit()
    assert s["skipped_updates"] == 0
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())


def test_bf16_autocast_trains_the_family():
    s = _trainer(precision="bf16").fit()
    assert s["bad_steps"] == 0 and s["steps"] == 3
