"""M2 (Kingma et al. 2014): the class summed out exactly, log p(x) with y summed out against quadrature, and the
semi-supervised loss against the paper's J^alpha written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.likelihoods import build_likelihood
from vaekit.models.m2 import M2
from vaekit.models.registry import build_family
from vaekit.objectives import elbo_terms, log_weights
from vaekit.objectives.semi_supervised import SemiSupervisedELBO, Supervision, balanced_label_subset


def tiny(latent_dim: int = 2, d: int = 6, k: int = 3, seed: int = 0) -> M2:
    torch.manual_seed(seed)
    m = M2((d,), build_likelihood("bernoulli", (d,)), latent_dim, k, [16], act="tanh")
    with torch.no_grad():  # a classifier far from uniform, so the weighting by q(y|x) matters
        m.classifier.net[-1].weight.mul_(8.0)
    return m.eval()


def data(n: int = 5, d: int = 6, seed: int = 1) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


def test_unlabelled_bound_is_the_q_weighted_labelled_bounds_plus_the_entropy():
    """U(x) = sum_y q(y|x) [L(x, y) - log p(y)] - KL(q(y|x) || p(y)) (Eq. 7), each term by Monte Carlo."""
    m, x = tiny(), data()
    torch.manual_seed(0)
    with torch.no_grad():
        u = elbo_terms(m, x, n_samples=4000).elbo  # (B,)
        q = torch.softmax(m.class_logits(x), -1)  # (B, K)
        per_class = torch.stack([elbo_terms(m, x, n_samples=4000, y=torch.full((5,), c)).elbo
                                 for c in range(3)], -1)  # (B, K) bounds on log p(x | y)
    entropy = -(q * q.log()).sum(-1)
    want = (q * (per_class - math.log(3))).sum(-1) + entropy
    assert torch.allclose(u, want, atol=0.05), (u, want)
    # the enumerated KL term is exact: the y group's KL is KL(q(y|x) || uniform) = log K - H(q)
    t = elbo_terms(m, x)
    assert torch.allclose(t.groups["y"].squeeze(-1), math.log(3) - entropy, atol=1e-5)


def test_log_px_with_y_summed_out_matches_quadrature():
    """log p(x) = log sum_y p(y) int p(x|y,z) p(z) dz, by a 1-D grid over z, against the importance-sampled
    estimate from ``log_weights`` (classes summed out inside each weight); the ELBO lies below it."""
    m, x = tiny(latent_dim=1), data()
    z = torch.linspace(-9, 9, 6001).unsqueeze(-1)  # (G, 1)
    dz = float(z[1] - z[0])
    with torch.no_grad():
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).squeeze(-1)  # (G,)
        cols = []
        for c in range(3):
            px = m.decoded(z.unsqueeze(1).expand(-1, 5, -1), torch.nn.functional.one_hot(torch.tensor(c), 3).float())
            cols.append(torch.logsumexp(px.log_prob(x) + log_pz.unsqueeze(1), 0) + math.log(dz))  # (B,)
        exact = torch.logsumexp(torch.stack(cols), 0) - math.log(3)
        torch.manual_seed(0)
        lw = log_weights(m, x, 4000)  # (K, B)
        assert lw.shape == (4000, 5)
        est = torch.logsumexp(lw, 0) - math.log(4000)
        elbo = elbo_terms(m, x, n_samples=2000).elbo
    assert torch.allclose(est, exact, atol=0.02), (est, exact)
    assert bool((elbo < exact).all())


def test_semi_supervised_loss_is_the_papers_criterion_per_example():
    """loss = J^alpha / N with J^alpha = sum_l -L + sum_u -U + alpha mean_l(-log q(y|x)) (Eq. 9), alpha = 0.1 N."""
    m = tiny()
    xl, yl, xu = data(4, seed=2), torch.tensor([0, 1, 2, 1]), data(7, seed=3)
    obj = SemiSupervisedELBO(Supervision(xl, yl, n_unlabelled=7))
    assert obj.alpha == pytest.approx(0.1 * 11)
    torch.manual_seed(5)
    loss = obj(m, xu, step=0).loss
    torch.manual_seed(5)  # the same draws in the same order: labelled batch first, then the unlabelled one
    lab = elbo_terms(m, xl, y=yl).elbo - math.log(3)
    unl = elbo_terms(m, xu).elbo
    ce = torch.nn.functional.cross_entropy(m.class_logits(xl), yl, reduction="none")
    j = -lab.sum() - unl.sum() + 0.1 * 11 * ce.mean()
    assert float(loss) == pytest.approx(float(j) / 11, rel=1e-5)


def test_labelled_batches_depend_on_the_step_alone_and_cover_the_classes():
    y = torch.arange(60) % 10
    idx = balanced_label_subset(y, 20, seed=3)
    assert torch.bincount(y[idx], minlength=10).tolist() == [2] * 10
    assert torch.equal(idx, balanced_label_subset(y, 20, seed=3))
    with pytest.raises(ValueError, match="multiple of 10"):
        balanced_label_subset(y, 15, seed=0)
    x = torch.rand(20, 6)
    obj = SemiSupervisedELBO(Supervision(x, y[:20], n_unlabelled=40), labelled_batch=8)
    a, b = obj.labelled(3, torch.device("cpu")), obj.labelled(3, torch.device("cpu"))
    assert torch.equal(a[0], b[0]) and a[0].shape == (8, 6)
    assert not torch.equal(a[0], obj.labelled(4, torch.device("cpu"))[0])


def test_ranks_split_the_one_process_labelled_batch(monkeypatch):
    """Under torchrun each rank keeps its part of the same global labelled batch (not the same batch twice)."""
    from vaekit.objectives import semi_supervised as ss

    y = torch.arange(20) % 10
    obj = SemiSupervisedELBO(Supervision(torch.rand(20, 6), y, n_unlabelled=40,
                                         transform=lambda x, g: torch.bernoulli(x, generator=g)), labelled_batch=9)
    whole = obj.labelled(5, torch.device("cpu"))
    parts = []
    for r in (0, 1):
        monkeypatch.setattr(ss, "_rank_world", lambda r=r: (r, 2))
        parts.append(obj.labelled(5, torch.device("cpu")))
    assert [p[0].shape[0] for p in parts] == [5, 4]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])
    monkeypatch.setattr(ss, "_rank_world", lambda: (0, 10))
    with pytest.raises(ValueError, match="cannot be split over 10 ranks"):
        obj.labelled(5, torch.device("cpu"))


def test_family_builds_and_rejects_misplaced_options():
    m = build_family(ModelConfig(family="m2", latent_dim=3, hidden=[8], n_classes=4), (1, 5, 5))
    x = torch.rand(2, 1, 5, 5)
    assert m.predict(x).shape == (2,) and m.sample(5).shape == (5, 1, 5, 5)
    assert m.reconstruct(x).shape == x.shape and m.embed(x).shape == (2, 3)
    from vaekit.registry import build_model

    with pytest.raises(ValueError, match="m2"):  # build_model validates the config first
        build_model(ModelConfig(family="vae", n_classes=4), (4,))


def test_m1_plus_m2_models_the_frozen_m1_posterior_means_and_loads_back(tmp_path):
    """M1+M2: the M2's likelihood is over M1's posterior means; M1 stays frozen; the run folder loads back."""
    from vaekit.config import apply_overrides
    from vaekit.registry import load_preset
    from vaekit.runs import load_run, train_run

    m1_dir = tmp_path / "m1"
    train_run(apply_overrides(load_preset("digits-quick"), ["train.steps=20", "train.progress=false",
                                                             "model.latent_dim=4", "model.hidden=[32]"]), m1_dir)
    _, m1, _ = load_run(m1_dir)
    cfg = apply_overrides(load_preset("digits-quick"), [
        "model.family=m2", "model.objective=m2", "model.warmup_steps=0", "model.free_bits=0", "model.hidden=[16]",
        "model.latent_dim=2", "model.likelihood=gaussian-perpixel", f"model.m1_run={m1_dir}", "data.labels=50",
        "train.steps=20", "train.progress=false"])
    train_run(cfg, tmp_path / "m1m2")
    _, m, _ = load_run(tmp_path / "m1m2")
    assert m.likelihood.data_shape == (4,) and m.data_shape == (1, 8, 8)
    x = torch.rand(3, 1, 8, 8).round()
    assert torch.allclose(m.features(x), m1.embed(x))  # M1 unchanged by the M2 training
    assert not any(p.requires_grad for p in m.m1.parameters())
    assert m.sample(4).shape == (4, 1, 8, 8) and m.predict(x).shape == (3,)
    with pytest.raises(ValueError, match="not a trained vaekit run"):
        build_family(ModelConfig(family="m2", m1_run=str(tmp_path / "nothing")), (1, 8, 8))


def test_semi_supervised_training_resumes_exactly_and_the_all_labelled_case_skips_the_unlabelled_term(tmp_path):
    """The labelled batches are a function of (seed, step): a run killed at step 6 and resumed ends with the
    weights of the uninterrupted run. With every label known (the conditional VAE) U(x) is not computed."""
    from vaekit.config import TrainConfig
    from vaekit.training import Trainer

    x, y = data(40, seed=4), torch.arange(40) % 3
    s = TrainConfig(steps=12, batch_size=8, lr=0.01, progress=False, val_every=3, checkpoint_every=3)

    def run(model, run_dir, callbacks=()):
        obj = SemiSupervisedELBO(Supervision(x[:9], y[:9], n_unlabelled=31, seed=2), labelled_batch=4)
        return Trainer(model.train(), obj, x[9:], None, settings=s, run_dir=run_dir, seed=0,
                       callbacks=list(callbacks))

    full = run(tiny(), tmp_path / "full")
    full.fit()

    class Stop(Exception):
        pass

    def kill(t, r):
        if r["step"] == 6:
            raise Stop

    with pytest.raises(Stop):
        run(tiny(), tmp_path / "part", [kill]).fit()
    resumed = run(tiny(seed=9), tmp_path / "part")
    resumed.restore(tmp_path / "part" / "last.safetensors")
    resumed.fit()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)

    conditional = SemiSupervisedELBO(Supervision(x, y, n_unlabelled=0))
    assert conditional.w_u == 0.0 and conditional.w_l == 1.0
    res = conditional(tiny(), torch.full((2, 6), float("nan")), step=0)  # the trainer's batch is not used
    assert torch.isfinite(res.loss)
