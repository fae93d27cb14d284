"""Known answers for the sequence families: on a linear-Gaussian state space model the DMM's and the SRNN's ELBO
is the sum of the per-step terms computed by hand, and their importance-sampled log p(x) is the Kalman filter's
exact marginal likelihood; padded steps change nothing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vaekit.config import ModelConfig
from vaekit.data.sequences import pack_sequences
from vaekit.likelihoods import build_likelihood
from vaekit.models.dmm import DMM
from vaekit.models.registry import build_family
from vaekit.models.srnn import SRNN
from vaekit.objectives import ELBO, elbo_terms, log_weights

A, S, C, R = 0.9, 0.5, 1.2, 0.4  # z_t = A z_{t-1} + S e_t, x_t = C z_t + R n_t, z_0 = 0


class LinearTransition(nn.Module):
    def forward(self, z):
        return A * z, torch.full_like(z, S)


class OneStepPosterior(nn.Module):
    """q(z_t | z_{t-1}, x_t): the exact posterior of z_t given z_{t-1} and x_t alone (h_t = x_t), scaled wider."""

    def forward(self, z, h):
        prec = 1 / S**2 + C**2 / R**2
        loc = (A * z / S**2 + C * h / R**2) / prec
        return loc, torch.full_like(loc, 1.1 / math.sqrt(prec))


class Identity(nn.Module):
    def forward(self, values, mask):
        return values  # h_t = x_t


class Scale(nn.Module):
    def forward(self, z):
        return C * z


def linear_dmm(t_max: int) -> DMM:
    model = DMM((t_max, 2), build_likelihood("gaussian", (1,), sigma=R), z_dim=1, transition_dim=2,
                emission_dim=2, rnn_dim=1).double()
    model.transition, model.combiner, model.encoder, model.emitter = (LinearTransition(), OneStepPosterior(),
                                                                      Identity(), Scale())
    with torch.no_grad():
        model.z_0.zero_()
        model.z_q_0.zero_()
    return model


class LinearHead(nn.Module):
    """A stand-in for the SRNN's StepHead: the context passes through, the Gaussian comes from ``fn(z_prev, c)``."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def context(self, c):
        return c

    def forward(self, z_prev, c):
        return self.fn(z_prev, c)


class LastFeature(nn.Module):
    def forward(self, inputs, mask):
        return inputs[..., -1:]  # a_t = phi(x_t) = x_t from [d_t, phi(x_t)]


class FirstFeatureScaled(nn.Module):
    def forward(self, v):
        return C * v[..., :1]  # the mean of x_t from [z_t, d_t]


def linear_srnn(t_max: int) -> SRNN:
    """The same state space model as an SRNN: d_t is computed but ignored, the posterior's context a_t is x_t."""
    model = SRNN((t_max, 2), build_likelihood("gaussian", (1,), sigma=R), z_dim=1, rnn_dim=1, hidden=1,
                 residual_posterior=False).double()
    model.phi_x, model.backward_rnn, model.dec = nn.Identity(), LastFeature(), FirstFeatureScaled()
    model.prior = LinearHead(lambda z, c: LinearTransition()(z))
    model.post = LinearHead(OneStepPosterior())
    with torch.no_grad():
        model.z0.zero_()
    return model


def kalman_log_marginal(x: torch.Tensor) -> float:
    """log p(x_1..x_T) of the scalar linear-Gaussian model by the Kalman filter's prediction errors."""
    m, v, total = 0.0, 0.0, 0.0
    for xt in x.tolist():
        m, v = A * m, A * A * v + S * S  # predict z_t
        sv = C * C * v + R * R  # predictive variance of x_t
        total += -0.5 * (math.log(2 * math.pi * sv) + (xt - C * m) ** 2 / sv)
        k = v * C / sv
        m, v = m + k * (xt - C * m), (1 - k * C) * v
    return total


def _normal_lp(x, loc, scale):
    return -0.5 * math.log(2 * math.pi) - math.log(scale) - (x - loc) ** 2 / (2 * scale**2)


def _batch():
    seqs = [torch.tensor([[0.3], [1.1], [0.7], [-0.4], [0.2]]), torch.tensor([[-0.8], [0.1], [0.9]])]
    return torch.from_numpy(pack_sequences([s.numpy() for s in seqs], 6)).double(), seqs


@pytest.mark.parametrize("build", [linear_dmm, linear_srnn])
def test_elbo_is_the_sum_of_the_per_step_terms_by_hand(build):
    model = build(6)
    x, seqs = _batch()
    torch.manual_seed(4)
    with torch.no_grad():
        t = elbo_terms(model, x, 1)
    assert t.analytic_kl
    torch.manual_seed(4)  # the same noise: one (B, 1) draw per step up to the longest sequence
    eps = [torch.randn(2, 1, dtype=torch.float64) for _ in range(5)]
    prec = 1 / S**2 + C**2 / R**2
    sq = 1.1 / math.sqrt(prec)
    for b, seq in enumerate(seqs):
        z_prev, rec, kl = 0.0, 0.0, 0.0
        for step, xt in enumerate(seq[:, 0].tolist()):
            mp, mq = A * z_prev, (A * z_prev / S**2 + C * xt / R**2) / prec
            z = mq + sq * float(eps[step][b])
            kl += math.log(S / sq) + (sq**2 + (mq - mp) ** 2) / (2 * S**2) - 0.5
            rec += _normal_lp(xt, C * z, R)
            z_prev = z
        assert float(t.log_px_z[b]) == pytest.approx(rec, abs=1e-10)
        assert float(t.kl[b]) == pytest.approx(kl, abs=1e-10)


@pytest.mark.parametrize("build", [linear_dmm, linear_srnn])
def test_importance_sampled_log_px_is_the_kalman_marginal_likelihood(build):
    model = build(6)
    x, seqs = _batch()
    torch.manual_seed(0)
    with torch.no_grad():
        lw = torch.cat([log_weights(model, x, 5000) for _ in range(4)])  # (K, B)
        est = torch.logsumexp(lw, 0) - math.log(lw.shape[0])  # (B,) log (1/K) sum_k w_k
        elbo = elbo_terms(model, x, 500).elbo
    for b, seq in enumerate(seqs):
        exact = kalman_log_marginal(seq[:, 0])
        assert float(est[b]) == pytest.approx(exact, abs=0.01)
        assert float(elbo[b]) < exact - 0.005  # the bound is below it, and importance sampling closes the gap


@pytest.mark.parametrize("family", ["dmm", "vrnn", "srnn"])
def test_padded_steps_change_nothing(family):
    torch.manual_seed(0)
    model = build_family(ModelConfig(family=family, latent_dim=3, likelihood="bernoulli", rnn_dim=8,
                                     **({"transition_dim": 8, "emission_dim": 8} if family == "dmm" else
                                        {"phi_dim": 8})), (7, 5)).double()
    seqs = [(torch.rand(n, 4) > 0.5).double().numpy() for n in (5, 3)]
    x = torch.from_numpy(pack_sequences(seqs, 7)).double()
    y = x.clone()
    y[1, 3:, :-1] = 1.0  # other values at the padded steps
    torch.manual_seed(1)
    a = elbo_terms(model, x, 2)
    torch.manual_seed(1)
    b = elbo_terms(model, y, 2)
    assert torch.equal(a.elbo, b.elbo)
    # a sequence's bound alone and next to a longer one (deterministic path: q's means, its own KL closed form)
    with torch.no_grad():
        q_pair = model.posteriors(x)["z"]
        q_alone = model.posteriors(x[1:])["z"]
    torch.testing.assert_close(q_pair.mean[1, :3], q_alone.mean[0, :3])
    rec = model.reconstruct(x)  # the input's own lengths: zeros after them, the mask feature as given
    assert torch.count_nonzero(rec[1, 3:]) == 0 and torch.equal(rec[..., -1], x[..., -1])
    # no gradient reaches the padded values, and the padded steps' KL is exactly zero
    x.requires_grad_(True)
    torch.manual_seed(2)
    ELBO()(model, x).loss.backward()
    assert torch.count_nonzero(x.grad[1, 3:, :-1]) == 0 and torch.count_nonzero(x.grad[0, :5, :-1]) > 0
    torch.manual_seed(2)
    out = model(x.detach(), None)
    g = out.groups[0]
    kl_steps = torch.distributions.kl_divergence(g.q.base_dist, g.p.base_dist).sum(-1)  # (B, T)
    assert torch.count_nonzero(kl_steps[1, 3:]) == 0 and torch.count_nonzero(kl_steps[0, 5:]) == 0
    ratio = (g.q.base_dist.log_prob(g.z) - g.p.base_dist.log_prob(g.z)).sum(-1)  # (B, T) log q - log p per step
    assert torch.count_nonzero(ratio[1, 3:]) == 0 and torch.count_nonzero(ratio[0, 5:]) == 0


@pytest.mark.parametrize("family", ["dmm", "vrnn", "srnn"])
def test_sequence_uses_sampling_and_prior_units_round_trip(family):
    from vaekit.models.uses import from_prior_units, sample_latents, to_prior_units

    torch.manual_seed(0)
    model = build_family(ModelConfig(family=family, latent_dim=2, likelihood="bernoulli", rnn_dim=8), (4, 3))
    model = model.double().eval()
    with torch.no_grad():
        z = sample_latents(model, 5, temperature=0.8)
        assert z["z"].shape == (5, 4, 2)
        back = from_prior_units(model, to_prior_units(model, z))
        torch.testing.assert_close(back["z"], z["z"])
        torch.manual_seed(1)
        # ancestral sampling at T = 0 follows the prior means step by step
        z0 = sample_latents(model, 1, temperature=0.0)["z"]
        p = model.group_prior("z", z0)
        torch.testing.assert_close(p.mean, z0)


def test_sequence_families_refuse_non_sequence_data():
    from vaekit.options import ConfigError

    with pytest.raises(ConfigError, match=r"model.family=dmm models sequences: data of shape \(T, D \+ 1\)"):
        build_family(ModelConfig(family="dmm"), (1, 8, 8))
    model = build_family(ModelConfig(family="vrnn", latent_dim=2, rnn_dim=4, phi_dim=4), (3, 3))
    bad = torch.zeros(2, 3, 3)
    bad[:, 0, -1] = 1
    bad[0, 2, -1] = 1  # a gap in the mask
    with pytest.raises(ValueError, match="the last feature of sequence data must be the step mask"):
        model.check_input(bad)


@pytest.mark.parametrize("family", ["vrnn", "srnn"])
def test_dropout_acts_in_training_only_and_is_checked(family):
    from vaekit.options import ConfigError

    torch.manual_seed(0)
    seqs = [(torch.rand(n, 4) > 0.5).float().numpy() for n in (5, 3)]
    x = torch.from_numpy(pack_sequences(seqs, 6))
    plain = build_family(ModelConfig(family=family, latent_dim=3, rnn_dim=8, phi_dim=8, likelihood="bernoulli"),
                         (6, 5))
    dropped = build_family(ModelConfig(family=family, latent_dim=3, rnn_dim=8, phi_dim=8, likelihood="bernoulli",
                                       dropout=0.5), (6, 5))
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in dropped.modules())
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    # in eval mode, at q's means, the dropped model is deterministic; in training mode two passes differ
    dropped.eval()
    with torch.no_grad():
        a, b = dropped.posteriors(x)["z"].mean, dropped.posteriors(x)["z"].mean
    assert torch.equal(a, b)
    dropped.train()
    with torch.no_grad():
        c, d = dropped.posteriors(x)["z"].mean, dropped.posteriors(x)["z"].mean
    assert not torch.equal(c, d)
    with pytest.raises(ConfigError, match="dropout"):
        build_family(ModelConfig(family=family, dropout=1.0), (6, 5))


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_backward_rnn_summarises_each_sequence_alone_from_its_end(cell):
    from vaekit.models.sequences import BackwardRNN

    torch.manual_seed(0)
    enc = BackwardRNN(4, 6, cell).double()
    lengths = [7, 2, 5, 1]
    x = torch.randn(4, 7, 4, dtype=torch.float64)
    mask = (torch.arange(7)[None] < torch.tensor(lengths)[:, None]).double()
    x[mask == 0] = 9.0  # values at the padding must not reach any step
    h = enc(x, mask)  # (B, T, H)
    for b, n in enumerate(lengths):  # the RNN run on x_n, x_{n-1}, ..., x_1 of this sequence alone
        out, _ = enc.rnn(x[b : b + 1, :n].flip(1), enc.h0.expand(1, 1, -1).contiguous())
        torch.testing.assert_close(h[b, :n], out[0].flip(0))
        assert torch.count_nonzero(h[b, n:]) == 0


def _srnn(**options) -> SRNN:
    torch.manual_seed(0)
    return build_family(ModelConfig(family="srnn", latent_dim=2, rnn_dim=4, phi_dim=5, likelihood="bernoulli",
                                    **options), (6, 4)).double().eval()


def test_srnn_state_sees_the_past_and_its_posterior_the_future():
    model = _srnn()
    x = torch.from_numpy(pack_sequences([(torch.rand(6, 3) > 0.5).double().numpy()], 6)).double()
    y = x.clone()
    y[0, 3, :-1] = 1 - y[0, 3, :-1]  # other notes at step 3
    with torch.no_grad():
        d_x, d_y = model._past(x[..., :-1])[0], model._past(y[..., :-1])[0]  # (1, 6, 4)
        q_x, q_y = model.posteriors(x)["z"].mean, model.posteriors(y)["z"].mean  # (1, 6, 2)
    assert torch.equal(d_x[:, :4], d_y[:, :4])  # d_t summarises x_{<t}: steps 0..3 do not see x_3
    assert not torch.allclose(d_x[:, 4:], d_y[:, 4:])
    assert not torch.allclose(q_x[:, :3], q_y[:, :3])  # the smoother: q(z_t) for t < 3 sees x_3 through a_t


def test_srnn_residual_posterior_adds_the_prior_mean():
    plain, residual = _srnn(residual_posterior=False), _srnn(residual_posterior=True)
    residual.load_state_dict(plain.state_dict())
    x = torch.from_numpy(pack_sequences([(torch.rand(4, 3) > 0.5).double().numpy()], 6)).double()
    with torch.no_grad():
        q0, _, p0, _, _, _ = plain._run(x, None, sample=False)
        q1, _, p1, _, _, _ = residual._run(x, None, sample=False)
    torch.testing.assert_close(p1[:, 0], p0[:, 0])  # step 1: the same z_0 and d_1 in both
    torch.testing.assert_close(q1[:, 0], q0[:, 0] + p0[:, 0])


@pytest.mark.parametrize("emission_uses_d", [True, False])
def test_srnn_generative_recurrence_is_the_training_pass_on_its_own_means(emission_uses_d):
    """The uses half (no x) feeds the emission's means back as x_{t-1}; run on those means, the training pass
    gives the same prior and emission at the same path. Without d in the emission, p(x_t | z_t) is z_t's alone."""
    model = _srnn(emission_uses_d=emission_uses_d)
    z = torch.randn(3, 6, 2, dtype=torch.float64)
    with torch.no_grad():
        p_loc, p_scale, _, dec = model._generate(z, None)  # (3, 6, .)
        means = model.likelihood.decoded(dec, dec.shape[:-1]).mean  # (3, 6, 3)
        d, _ = model._past(means)
        c = model.prior.context(d)
        z_prev = torch.cat([model.z0.expand(3, 1, -1), z[:, :-1]], 1)
        loc, scale = model.prior(z_prev, c)
        torch.testing.assert_close(loc, p_loc)
        torch.testing.assert_close(scale, p_scale)
        torch.testing.assert_close(model._emit(z, d), dec)
        assert torch.equal(model._emit(z, d), model._emit(z, torch.zeros_like(d))) != emission_uses_d
