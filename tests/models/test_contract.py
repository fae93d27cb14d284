"""The model contract, over every family x posterior x likelihood: the objective's ELBO equals a brute-force Monte
Carlo ELBO computed from the model's own distributions (mean over many draws of log p(x|z) + sum_g log p(z_g) -
log q(z_g), with q.log_prob, not the sampler's value), and the generic paths a new family takes (a plain
Independent(Normal) posterior, a learned non-standard prior, a prior with no closed-form KL) run and agree."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal, StudentT

from vaekit.config import ModelConfig
from vaekit.likelihoods import LIKELIHOODS
from vaekit.models.contract import LatentVariableModel, ModelOutput
from vaekit.models.registry import build_family
from vaekit.models.vae import VAE
from vaekit.nn import MLP
from vaekit.objectives import ELBO, elbo_terms, log_weights
from vaekit.likelihoods import build_likelihood

SHAPE = (6,)
FAMILIES = {
    "vae-gaussian": dict(family="vae", latent_dim=3, hidden=[16]),
    "vae-iaf": dict(family="vae", latent_dim=3, hidden=[16], posterior="iaf",
                    posterior_options={"steps": 2, "hidden": [8], "context": 4}),
    "ladder": dict(family="ladder", latent_dims=[3, 2], hidden=[16, 8]),
    "m2": dict(family="m2", latent_dim=3, hidden=[16], n_classes=3),  # its class y summed out exactly
    # sequences (T, D + 1), the step mask last: a latent path (T, D_z) whose prior depends on its earlier steps
    "dmm": dict(family="dmm", latent_dim=2, transition_dim=8, emission_dim=8, rnn_dim=8),
    "dmm-iaf": dict(family="dmm", latent_dim=2, transition_dim=8, emission_dim=8, rnn_dim=8, iaf_steps=2, iaf_dim=4),
    "vrnn": dict(family="vrnn", latent_dim=2, rnn_dim=8, phi_dim=8),
    "srnn": dict(family="srnn", latent_dim=2, rnn_dim=8, phi_dim=8),
    "vqvae": dict(family="vqvae", hidden=[16], codebook_size=8, code_dim=2, positions=2),  # a (1, 2) code map
    "vqvae-prior": dict(family="vqvae", hidden=[16], codebook_size=8, code_dim=2, positions=2, code_prior="transformer",
                        prior_width=8, prior_layers=1, prior_heads=2),  # log p(z) autoregressive, KL Monte Carlo
    # two levels (VQ-VAE-2) on (1, 4, 4) images: a 2x2 bottom map whose parent is a 1x1 top map
    "vqvae2": dict(family="vqvae", arch="conv", conv_channels=[4], levels=2, codebook_size=4, code_dim=2),
    "vqvae2-prior": dict(family="vqvae", arch="conv", conv_channels=[4], levels=2, codebook_size=4, code_dim=2,
                         code_prior="transformer", prior_width=8, prior_layers=1, prior_heads=2),
    # vectors read as 1x1 maps: three groups over two resolutions
    "hvae": dict(family="hvae", width=8, enc_blocks=[1, 1], dec_groups=[1, 2], latent_channels=2),
    "vae-vamp": dict(family="vae", latent_dim=3, hidden=[16], prior="vamp", prior_options={"components": 4}),
    "vae-mog": dict(family="vae", latent_dim=3, hidden=[16], prior="mog", prior_options={"components": 3}),
    "vae-flow": dict(family="vae", latent_dim=3, hidden=[16], prior="flow",
                     prior_options={"steps": 2, "hidden": [8]}),
    # z on the sphere S^2: a von Mises-Fisher posterior, the uniform prior, their KL in closed form
    "vae-vmf": dict(family="vae", latent_dim=3, hidden=[16], posterior="vmf", prior="sphere"),
    "discrete": dict(family="discrete", hidden=[16], n_latents=2, categories=3),
    "discrete-bernoulli": dict(family="discrete", hidden=[16], n_latents=3, categories=2, latent="bernoulli",
                               straight_through=True),
}
SEQUENCE_SHAPE = (3, 3)  # 3 steps of 2 features and the step mask


IMAGE_SHAPE = (1, 4, 4)  # the conv families


def _shape(family: str) -> tuple[int, ...]:
    if FAMILIES[family].get("arch") == "conv":
        return IMAGE_SHAPE
    return SEQUENCE_SHAPE if FAMILIES[family]["family"] in ("dmm", "vrnn", "srnn") else SHAPE


def _data(name: str, b: int = 3, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, *shape, generator=g, dtype=torch.float64) * 0.9 + 0.05
    if name == "bernoulli":
        x = (x > 0.5).double()
    elif LIKELIHOODS[name].discrete:
        x = torch.round(x * 255) / 255
    if shape == SEQUENCE_SHAPE:  # lengths 3, 2, 1, ...: the step mask, zeros at the padding
        lengths = torch.arange(b) % shape[0]
        x[..., -1] = (torch.arange(shape[0]) < (shape[0] - lengths)[:, None]).double()
        x[..., :-1] *= x[..., -1:]
    return x


def _brute_force_elbo(model: nn.Module, x: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, standard error) per example of log p(x|z) + sum_g [log p(z_g) - log q(z_g)] over s draws; a group
    summed out exactly (M2's y) is averaged over its values with weights q(y|x) instead of sampled."""
    with torch.no_grad():
        out = model(x, s)
        w = out.px.log_prob(x)  # (s, [K,] B)
        enum = [g for g in out.groups if g.enumerated]
        for g in out.groups:
            if not g.enumerated:
                w = w + g.p.log_prob(g.z) - g.q.log_prob(g.z)
        for g in enum:  # every value k of y: (K, B) log p(k) - log q(k | x), weighted by q(k | x)
            w = (g.q.probs.T * (w + g.p.log_prob(g.z) - g.q.log_prob(g.z))).sum(1)  # (s, B)
    return w.mean(0), w.std(0) / math.sqrt(s)


@pytest.mark.parametrize("lik", sorted(LIKELIHOODS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_objective_elbo_equals_brute_force_monte_carlo(family, lik, device):
    torch.manual_seed(0)
    model = build_family(ModelConfig(likelihood=lik, **FAMILIES[family]), _shape(family)).double().to(device)
    assert isinstance(model, LatentVariableModel)
    x = _data(lik, shape=_shape(family)).to(device)
    s = 4000
    torch.manual_seed(1)
    with torch.no_grad():
        t = elbo_terms(model, x, n_samples=s)
    torch.manual_seed(2)
    mc, se = _brute_force_elbo(model, x, s)
    # the objective's closed-form KL has no Monte Carlo noise: the brute force's s.e. bounds the difference
    tol = 4 * se * (1.5 if not t.analytic_kl else 1.0) + (0.02 if lik == "sigma-vae-optimal" else 1e-6)
    assert bool(((t.elbo - mc).abs() < tol).all()), (t.elbo, mc, se)
    assert float(se.max()) < 0.5  # the comparison has power
    assert torch.allclose(t.kl_groups.sum(-1), t.kl)
    # the training objective: a finite loss, a gradient for every parameter, the model's own statistics
    model.train()
    res = ELBO()(model, x)
    res.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(isinstance(v, float) for v in model.extra_stats().values())


class PlainPosterior(nn.Module):
    """A posterior head returning a plain Independent(Normal): no fused sampler, no rsample_and_log_prob."""

    def __init__(self, features: int, latent: int) -> None:
        super().__init__()
        self.latent_dim = latent
        self.linear = nn.Linear(features, 2 * latent)

    def forward(self, h):
        mu, log_s = self.linear(h).chunk(2, -1)
        return Independent(Normal(mu, log_s.exp()), 1)


class LearnedPrior(nn.Module):
    """p(z) = N(m, diag s^2) with learned m, s (not N(0, I)), or a Student-t prior (no closed-form KL)."""

    def __init__(self, latent: int, student: bool = False) -> None:
        super().__init__()
        self.latent_dim, self.student = latent, student
        self.loc = nn.Parameter(torch.tensor([0.3, -0.2])[:latent].double())
        self.log_scale = nn.Parameter(torch.tensor([0.2, -0.1])[:latent].double())

    def forward(self):
        if self.student:
            return Independent(StudentT(3.0, self.loc, self.log_scale.exp()), 1)
        return Independent(Normal(self.loc, self.log_scale.exp()), 1)


@pytest.mark.parametrize("student", [False, True], ids=["learned-normal-prior", "student-t-prior"])
def test_generic_path_plain_posterior_and_non_standard_prior(student):
    torch.manual_seed(0)
    lik = build_likelihood("bernoulli", SHAPE)
    model = VAE(MLP(SHAPE, [], 8, final_act=True), PlainPosterior(8, 2), MLP(2, [8], 6), lik,
                LearnedPrior(2, student)).double()
    x = _data("bernoulli")
    s = 20000
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(x, 3)
        assert isinstance(out, ModelOutput) and out.groups[0].log_q is None and out.groups[0].kl_dims is None
        t = elbo_terms(model, x, n_samples=s)
    assert t.analytic_kl is (not student)  # Normal-Normal has a registered KL; Normal-StudentT does not
    assert t.kl_groups.shape == ((3, 2) if not student else (3, 1))
    if not student:  # the closed form torch registers, per dimension
        q, p = model.encode(x), model.prior()
        torch.testing.assert_close(t.kl_groups, torch.distributions.kl_divergence(q.base_dist, p.base_dist))
    torch.manual_seed(2)
    mc, se = _brute_force_elbo(model, x, s)
    assert bool(((t.elbo - mc).abs() < 4 * se * 1.5).all()), (t.elbo, mc, se)
    # log_weights on the generic path: log q from q.log_prob
    lw = log_weights(model, x, 5)
    assert lw.shape == (5, 3) and torch.isfinite(lw).all()
    # every parameter, the prior's included, gets a gradient through the objective
    model.train()
    ELBO(free_bits=0.01)(model, x).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_per_group_beta_and_free_bits():
    torch.manual_seed(0)
    model = build_family(ModelConfig(**FAMILIES["ladder"]), SHAPE).double()
    x = _data("bernoulli")
    torch.manual_seed(3)
    t = elbo_terms(model, x)
    assert list(t.groups) == ["layer1", "layer2"]
    torch.manual_seed(3)
    res = ELBO(beta={"layer1": 1.0, "layer2": 0.5}, free_bits={"layer1": 0.0, "layer2": 0.3})(model, x)
    kl2 = torch.clamp(t.groups["layer2"].mean(0), min=0.3).sum()
    expected = t.groups["layer1"].sum(-1).mean() + 0.5 * kl2 - t.log_px_z.mean()
    torch.testing.assert_close(res.loss, expected)
    with pytest.raises(ValueError, match="no entry for latent group 'layer2'"):
        ELBO(beta={"layer1": 1.0})(model, x)


# -- the uses half ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_uses_half_layout_posteriors_decode_and_prior_units(family):
    """Every family: the layout names what posteriors() returns (with the layout's event shapes); decode takes
    the groups sample_latents draws; prior units round-trip; embed gives the continuous groups' means flat;
    capabilities come from the declared set."""
    from vaekit.models.contract import CAPABILITIES, LatentUses
    from vaekit.models.uses import flatten, from_prior_units, posterior_means, sample_latents, to_prior_units

    torch.manual_seed(0)
    model = build_family(ModelConfig(likelihood="gaussian", **FAMILIES[family]), _shape(family)).double().eval()
    assert isinstance(model, LatentUses)
    assert set(model.capabilities) <= set(CAPABILITIES)
    x = _data("gaussian", b=4, shape=_shape(family))
    layout = model.layout
    with torch.no_grad():
        qs = model.posteriors(x)
        assert list(qs) == layout.names
        for g in layout.groups:
            assert tuple(qs[g.name].batch_shape) == (4,) and tuple(qs[g.name].event_shape) == g.shape
        z = sample_latents(model, 5, temperature=0.7)
        assert {k: tuple(v.shape) for k, v in z.items()} == {g.name: (5, *g.shape) for g in layout.groups}
        px = model.decode(z)
        assert tuple(px.batch_shape) == (5,) and tuple(px.event_shape) == _shape(family)
        back = from_prior_units(model, to_prior_units(model, z))
        for name in layout.names:
            torch.testing.assert_close(back[name], z[name])
        torch.manual_seed(3)  # a flow's posterior mean is a sample mean
        e = model.embed(x)
        torch.manual_seed(3)
        torch.testing.assert_close(e, flatten(layout, posterior_means(model, x)))
        assert model.embed(x).shape == (4, layout.continuous_size)


def test_prior_units_are_z_for_a_standard_normal_prior_and_whiten_a_ladders_layers():
    from vaekit.models.uses import sample_latents, to_prior_units

    torch.manual_seed(0)
    vae = build_family(ModelConfig(**FAMILIES["vae-gaussian"]), SHAPE).eval()
    z = {"z": torch.randn(7, 3)}
    assert torch.equal(to_prior_units(vae, z)["z"], z["z"])
    ladder = build_family(ModelConfig(**FAMILIES["ladder"]), SHAPE).eval()
    with torch.no_grad():
        torch.manual_seed(1)
        z = sample_latents(ladder, 4000, temperature=1.0)
        u = to_prior_units(ladder, z)
        # u_2 = z_2 (standard normal top); u_1 = (z_1 - mu_p(z_2)) / sigma_p(z_2) is N(0, I) by construction
        p = ladder.top_down[0](z["layer2"])
        torch.testing.assert_close(u["layer1"], (z["layer1"] - p.loc) / p.scale)
    assert abs(float(u["layer1"].mean())) < 0.05 and abs(float(u["layer1"].std()) - 1) < 0.05
    # ancestral sampling at a temperature draws the same noise the Ladder's own sample() does
    torch.manual_seed(2)
    a = ladder.sample(3, temperature=0.5)
    torch.manual_seed(2)
    with torch.no_grad():
        top = 0.5 * torch.randn(3, 2)
        p = ladder.top_down[0](top)
        z1 = p.loc + 0.5 * p.scale * torch.randn(3, 3)
        b = ladder.decode(z1).mean
    torch.testing.assert_close(a, b)


def test_a_use_the_model_cannot_serve_is_one_line_naming_the_capability():
    from vaekit.models.contract import CLASSIFIER, MissingCapability, require

    vae = build_family(ModelConfig(**FAMILIES["vae-gaussian"]), SHAPE)
    with pytest.raises(MissingCapability, match=r"^classifying needs a model with the capability 'classifier' "
                                                r"\(a classifier q\(y\|x\)\); this VAE has: continuous"):
        require(vae, CLASSIFIER, "classifying")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_familys_declared_capabilities_are_its_models(family):
    """What the registry declares before a model is built (objectives are validated against it) holds for the
    built model."""
    from vaekit.models.registry import FAMILIES as REGISTRY

    cfg = ModelConfig(**FAMILIES[family])
    model = build_family(cfg, _shape(family))
    assert REGISTRY[cfg.family].capabilities <= model.capabilities
