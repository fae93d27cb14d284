"""Known answers for the DMM with inverse autoregressive flow steps on each step's posterior (model.iaf_steps):
log q of a drawn path is the base Gaussian's log-density minus the flow's log-determinant (by autograd's
Jacobian), step by step; padded steps add exactly 0; the importance-sampled log p(x) is still the Kalman filter's
marginal likelihood; with 0 steps the model is the Gaussian DMM."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from tests.models.test_sequences import _batch, kalman_log_marginal, linear_dmm
from vaekit.config import ModelConfig
from vaekit.data.sequences import pack_sequences
from vaekit.models.registry import build_family
from vaekit.models.sequences import FlowPath, split_steps
from vaekit.objectives import elbo_terms, log_weights
from vaekit.posteriors.iaf import IAFStep


def _dmm(iaf_steps: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_family(ModelConfig(family="dmm", latent_dim=3, likelihood="bernoulli", rnn_dim=8, transition_dim=8,
                                    emission_dim=8, iaf_steps=iaf_steps, iaf_dim=6), (7, 5)).double()


def _binary_batch():
    torch.manual_seed(3)
    seqs = [(torch.rand(n, 4) > 0.5).double().numpy() for n in (5, 3)]
    return torch.from_numpy(pack_sequences(seqs, 7)).double()  # (2, 7, 5): lengths 5 and 3, L = 5 < T = 7


def test_zero_iaf_steps_is_the_gaussian_dmm():
    plain, zero = _dmm(0), _dmm(0)
    assert not any("iaf" in k for k in zero.state_dict()) and len(zero.iafs) == 0
    x = _binary_batch()
    torch.manual_seed(1)
    a = elbo_terms(plain, x, 2)
    assert a.analytic_kl  # the closed-form KL per step, as before
    flowed = _dmm(2)
    assert sum(p.numel() for p in flowed.parameters()) > sum(p.numel() for p in plain.parameters())
    torch.manual_seed(1)
    assert not elbo_terms(flowed, x, 2).analytic_kl  # a Monte Carlo KL through the objective's generic path


def test_log_q_of_a_drawn_path_is_base_density_minus_flow_log_det_by_hand():
    model = _dmm(2)
    with torch.no_grad():  # a non-trivial flow: the MADEs' outputs vary with z
        for step in model.iafs:
            for p in step.parameters():
                p.add_(0.3 * torch.randn_like(p))
    x = _binary_batch()
    torch.manual_seed(5)
    out = model(x, None)
    g = out.groups[0]
    assert isinstance(g.q, FlowPath)
    values, mask = split_steps(x)
    L, (B, T), D = 5, mask.shape, 3
    h = model.encoder(values[:, :L], mask[:, :L])
    torch.manual_seed(5)  # the same draws, one (B, D) per step
    z_prev = torch.stack([model.z_q_0, model.z_q_0])
    z_hand, lq_hand = torch.zeros(B, T, D, dtype=x.dtype), torch.zeros(B, T, dtype=x.dtype)
    for t in range(L):
        q_loc, q_scale = model.combiner(z_prev, h[:, t])
        p_loc, p_scale = model.transition(z_prev)
        eps = torch.randn(B, D, dtype=x.dtype)
        z_t = []
        for b in range(B):
            if mask[b, t] > 0:
                z0 = q_loc[b] + q_scale[b] * eps[b]
                jac = torch.autograd.functional.jacobian(lambda v: model.flow(v)[0], z0)  # (D, D)
                log_det = torch.linalg.slogdet(jac)[1]
                lq_hand[b, t] = Normal(q_loc[b], q_scale[b]).log_prob(z0).sum() - log_det
                z_t.append(model.flow(z0)[0])
            else:  # padding: q = p, no flow
                z0 = p_loc[b] + p_scale[b] * eps[b]
                lq_hand[b, t] = Normal(p_loc[b], p_scale[b]).log_prob(z0).sum()
                z_t.append(z0)
        z_prev = torch.stack(z_t)
        z_hand[:, t] = z_prev
    lq_hand[:, L:] = -0.5 * math.log(2 * math.pi) * D  # beyond the longest: q = p = N(0, 1), z = 0
    torch.testing.assert_close(g.z, z_hand, rtol=0, atol=1e-12)
    torch.testing.assert_close(g.q.log_q_steps, lq_hand, rtol=0, atol=1e-10)
    torch.testing.assert_close(g.log_q, lq_hand.sum(-1), rtol=0, atol=1e-10)
    # padded steps add exactly 0 to log q - log p (and so to the Monte Carlo KL and the importance weights)
    ratio = g.q.log_q_steps - g.p.base_dist.log_prob(g.z).sum(-1)  # (B, T)
    assert torch.count_nonzero(ratio[1, 3:]) == 0 and torch.count_nonzero(ratio[0, 5:]) == 0
    assert torch.count_nonzero(ratio[:, :3]) == 6


def test_padded_values_change_nothing_and_get_no_gradient():
    model = _dmm(2)
    x = _binary_batch()
    y = x.clone()
    y[1, 3:, :-1] = 1.0  # other values at the padded steps
    torch.manual_seed(1)
    a = elbo_terms(model, x, 2)
    torch.manual_seed(1)
    b = elbo_terms(model, y, 2)
    assert torch.equal(a.elbo, b.elbo)
    x.requires_grad_(True)
    torch.manual_seed(2)
    (-elbo_terms(model, x, 2).elbo.sum()).backward()
    assert torch.count_nonzero(x.grad[1, 3:, :-1]) == 0 and torch.count_nonzero(x.grad[0, :5, :-1]) > 0


def test_iaf_dmm_log_px_is_the_kalman_marginal_and_the_iwae_bound_lies_above_the_elbo():
    """A proper posterior q, however it is shaped, leaves log p(x) unchanged: on the linear-Gaussian model the
    importance-sampled estimate with IAF steps on q is still the Kalman filter's exact marginal likelihood."""
    torch.manual_seed(0)
    flowed = linear_dmm(6)
    flowed.iafs = torch.nn.ModuleList(IAFStep(1, [4], 0, [0]) for _ in range(2)).double()
    base = flowed.combiner

    class Wider(torch.nn.Module):  # IAF's update contracts (sigma < 1): start wider so q still covers p(z | x)
        def forward(self, z, h):
            loc, scale = base(z, h)
            return loc, 1.8 * scale

    flowed.combiner = Wider()
    x, seqs = _batch()
    torch.manual_seed(0)
    with torch.no_grad():
        lw = torch.cat([log_weights(flowed, x, 5000) for _ in range(4)])  # (K, B)
        est = torch.logsumexp(lw, 0) - math.log(lw.shape[0])
        elbo = elbo_terms(flowed, x, 2000).elbo  # (B,) E_q[log w]
        iwae = torch.stack([torch.logsumexp(log_weights(flowed, x, 10), 0) - math.log(10) for _ in range(200)])
    for b, seq in enumerate(seqs):
        assert float(est[b]) == pytest.approx(kalman_log_marginal(seq[:, 0]), abs=0.02)
    se = iwae.std(0) / math.sqrt(200)
    assert bool((iwae.mean(0) - 3 * se > elbo).all())  # IWAE_10 >= ELBO in expectation, beyond the noise


def test_iaf_dmm_uses_average_drawn_paths():
    model = _dmm(1)
    x = _binary_batch()
    torch.manual_seed(0)
    with torch.no_grad():
        e = model.embed(x)  # E_q[z] by draws (no closed form)
        r = model.reconstruct(x)
        s = model.sample(3)
    assert e.shape == (2, 7 * 3) and torch.isfinite(e).all()
    assert r.shape == x.shape and torch.count_nonzero(r[1, 3:]) == 0 and s.shape == (3, 7, 5)
    with pytest.raises(NotImplementedError, match="drawn"):
        model(x, None).groups[0].q.log_prob(torch.zeros(2, 7, 3, dtype=x.dtype))


def test_jsb_dmm_preset_trains_with_iaf_steps_saves_and_loads(tmp_path, capsys):
    """`vaekit train --preset jsb-dmm model.iaf_steps=2` at tiny sizes for 3 steps, then the run loads with its
    flow and `vaekit evaluate` reports nats per observed step (skipped without the JSB Chorales file)."""
    import json

    from vaekit.cli import main
    from vaekit.data import dataset_status
    from vaekit.runs import load_run

    if not next(r for r in dataset_status() if r["name"] == "jsb-chorales")["available"]:
        pytest.skip("JSB Chorales not available (set VAEKIT_DATA_DIR)")
    run_dir = tmp_path / "r"
    tiny = ["model.latent_dim=4", "model.transition_dim=8", "model.emission_dim=8", "model.rnn_dim=8",
            "model.iaf_steps=2", "model.iaf_dim=8", "train.steps=3", "train.val_every=3", "train.time_limit=null",
            "eval.iw_samples=2"]
    assert main(["train", "--quiet", "--preset", "jsb-dmm", "--out", str(run_dir), *tiny]) == 0
    _, model, _ = load_run(run_dir)
    assert len(model.iafs) == 2 and model.iafs[1].order == [3, 2, 1, 0]
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--json", "--iw-samples", "2", "--first", "4"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 4 and 0 < res["observed_steps"] < 4 * 160 and math.isfinite(res["neg_elbo_per_step"])
