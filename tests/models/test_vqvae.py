"""The VQ-VAE's quantiser and bound against hand computations: the EMA codebook update (van den Oord et al. 2017,
App. A.1), dead-code restart, k-means initialisation, the straight-through gradient, the commitment term on the
encoder's side only, FSQ's grid, the second-stage prior's bound, and an exact resume of a run with a codebook."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vaekit.models.code_prior import CodeTransformer
from vaekit.models.quantiser import FiniteScalarQuantiser, VectorQuantiser, code_perplexity
from vaekit.models.vqvae import build_vqvae
from vaekit.objectives import elbo_terms
from vaekit.objectives.vq import VQObjective

from tests.models.resume import killed_and_resumed


def _vq(**kw) -> VectorQuantiser:
    q = VectorQuantiser(3, 2, kmeans_init=False, **kw).double()
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
        q.ema_sum.copy_(q.codebook)
    return q.train()


Z = torch.tensor([[0.1, -0.1], [0.9, 1.3], [1.2, 0.8], [-0.2, 0.0]], dtype=torch.float64)  # codes 0, 1, 1, 0


def test_ema_update_matches_a_hand_computation():
    q = _vq(decay=0.5, eps=1e-5)
    with torch.enable_grad():
        r = q(Z.clone().requires_grad_())
    assert r.codes.tolist() == [0, 1, 1, 0]
    # N <- 0.5 * 1 + 0.5 n, with n = (2, 2, 0); m <- 0.5 m + 0.5 sums
    n_ema = [0.5 + 0.5 * 2, 0.5 + 0.5 * 2, 0.5]
    sums = [[0.1 - 0.2, -0.1 + 0.0], [0.9 + 1.2, 1.3 + 0.8], [0.0, 0.0]]
    m = [[0.5 * 0.0 + 0.5 * sums[0][0], 0.5 * 0.0 + 0.5 * sums[0][1]],
         [0.5 * 1.0 + 0.5 * sums[1][0], 0.5 * 1.0 + 0.5 * sums[1][1]],
         [0.5 * 5.0, 0.5 * 5.0]]
    total = sum(n_ema)
    smoothed = [(v + 1e-5) / (total + 3 * 1e-5) * total for v in n_ema]
    expected = torch.tensor([[m[i][j] / smoothed[i] for j in range(2)] for i in range(3)], dtype=torch.float64)
    torch.testing.assert_close(q.ema_count, torch.tensor(n_ema, dtype=torch.float64))
    torch.testing.assert_close(q.codebook, expected)
    # the batch was quantised with the codebook before the update
    torch.testing.assert_close(r.z_q, torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]],
                                                   dtype=torch.float64))
    # evaluation (eval mode, or no autograd) never moves the codebook
    before = q.codebook.clone()
    with torch.no_grad():
        q(Z)
    q.eval()
    q(Z)
    assert torch.equal(q.codebook, before)


def test_dead_code_restart_reseeds_from_the_batch_after_n_unused_steps():
    q = _vq(decay=0.5, restart_after=2)
    torch.manual_seed(7)
    q(Z)  # step 1: code 2 unused once
    assert q.unused_steps.tolist() == [0, 0, 1]
    state = torch.get_rng_state()
    q(Z)  # step 2: code 2 unused twice -> restarted with a random row of this batch
    torch.set_rng_state(state)
    pick = int(torch.randint(0, Z.shape[0], (1,)))  # the draw the restart makes
    torch.testing.assert_close(q.codebook[2], Z[pick])
    torch.testing.assert_close(q.ema_sum[2], Z[pick])
    assert float(q.ema_count[2]) == 1.0 and q.unused_steps.tolist() == [0, 0, 0] and int(q.restarts) == 1
    # without restart, the same code stays dead
    q2 = _vq(decay=0.5)
    for _ in range(3):
        q2(Z)
    assert q2.unused_steps.tolist() == [0, 0, 3]


def test_kmeans_init_finds_two_separated_clusters():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 2, generator=g, dtype=torch.float64) * 0.1 + 3
    b = torch.randn(50, 2, generator=g, dtype=torch.float64) * 0.1 - 3
    q = VectorQuantiser(2, 2, kmeans_init=True, decay=0.0).double().train()
    torch.manual_seed(0)
    q(torch.cat([a, b]))
    got = sorted(q.codebook.tolist())
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), torch.stack([b.mean(0), a.mean(0)]))
    assert bool(q.initted)


@pytest.mark.parametrize("cosine", [False, True])
def test_straight_through_gradient_is_the_identity_to_the_encoder(cosine):
    q = VectorQuantiser(4, 3, kmeans_init=False, cosine=cosine).double().eval()
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, dtype=torch.float64)
    r = q(z)
    torch.testing.assert_close(r.z.detach(), r.z_q.detach())  # the value is the code
    (r.z * w).sum().backward()
    if cosine:  # identity to the normalised encoding: the Jacobian of z -> z/|z| applied to w
        zz = z.detach().clone().requires_grad_()
        (torch.nn.functional.normalize(zz, dim=-1) * w).sum().backward()
        torch.testing.assert_close(z.grad, zz.grad)
    else:
        torch.testing.assert_close(z.grad, w)


def test_commitment_moves_the_encoder_only_and_the_codebook_term_the_codes_only():
    q = _vq(update="gradient")
    z = Z.clone().requires_grad_()
    r = q(z)
    e = q.codebook.detach()[r.codes]
    torch.testing.assert_close(r.commitment.detach(), ((Z - e) ** 2).sum(-1))
    r.commitment.sum().backward(retain_graph=True)
    assert q.codebook.grad is None  # no gradient from the commitment term
    torch.testing.assert_close(z.grad, 2 * (Z - e))
    z.grad = None
    r.codebook_loss.sum().backward()
    assert z.grad is None
    expected = torch.zeros(3, 2, dtype=torch.float64).index_add_(0, r.codes, 2 * (e - Z))
    torch.testing.assert_close(q.codebook.grad, expected)


def test_the_objective_weighs_commitment_by_beta_and_reports_usage():
    torch.manual_seed(0)
    model = build_vqvae((6,), arch="mlp", hidden=[8], codebook_size=4, code_dim=2, positions=3).double()
    x = (torch.rand(5, 6, dtype=torch.float64) > 0.5).double()
    model.eval()  # no codebook update between the two passes
    with torch.no_grad():
        out = model(x, None)
        res = VQObjective(commitment=0.25)(model, x)
    rec = out.px.log_prob(x)
    kl = 3 * math.log(4)  # a deterministic q against the uniform prior: H W log K
    torch.testing.assert_close(res.kl, torch.full((5,), kl, dtype=torch.float64))
    torch.testing.assert_close(res.loss, -rec.mean() + kl + 0.25 * out.extras["commitment"].mean())
    m = VQObjective().validation_metrics(model, x)
    counts = torch.tensor(m["val_code_counts"])
    assert int(counts.sum()) == 5 * 3 and m["val_codes_used"] == float((counts > 0).sum()) / 4
    assert m["val_perplexity"] == pytest.approx(code_perplexity(counts))
    assert m["val_uniform_bound"] == pytest.approx(float(rec.mean()) - kl)
    assert code_perplexity(torch.tensor([3, 3, 3, 3])) == pytest.approx(4.0)


def test_fsq_rounds_to_its_grid_and_indexes_every_point_once():
    f = FiniteScalarQuantiser([4, 3])
    assert f.codebook_size == 12
    grid = f.vectors()  # (12, 2)
    assert len({tuple(v) for v in grid.tolist()}) == 12
    z = torch.randn(64, 2, requires_grad=True)
    r = f(z)
    torch.testing.assert_close(r.z.detach(), f.lookup(r.codes))  # the output is the code's grid point
    assert set(torch.unique(r.z.detach()[:, 1] * 1).tolist()) <= {-1.0, 0.0, 1.0}
    assert set(torch.unique(r.z.detach()[:, 0]).tolist()) <= {-1.0, -0.5, 0.0, 0.5}
    r.z.sum().backward()
    assert bool((z.grad > 0).all())  # the straight-through rounding passes tanh's slope


def test_the_priors_bound_is_log_p_x_given_zq_plus_log_p_zq_by_hand():
    torch.manual_seed(0)
    model = build_vqvae((6,), arch="mlp", hidden=[8], codebook_size=3, code_dim=2, positions=2).double().eval()
    model.set_prior(width=8, layers=1, heads=2)
    x = (torch.rand(4, 6, dtype=torch.float64) > 0.5).double()
    with torch.no_grad():
        t = elbo_terms(model, x)
        codes = model.codes(x).reshape(4, 2)  # (B, 2)
        net = model.prior
        log_pz = torch.zeros(4, dtype=torch.float64)
        for i in range(2):  # p(z_i | z_<i) from the prefix alone: the chain rule, causality included
            logits = net(codes[:, :i + 1])[:, i]  # the net never sees z_i when predicting it
            log_pz += torch.log_softmax(logits, -1).gather(-1, codes[:, i:i + 1]).squeeze(-1)
        zq = model.quantiser.lookup(codes)  # (B, 2, D)
        log_px = model.likelihood.decoded(model.decoder(zq.reshape(4, -1)), torch.Size((4,))).log_prob(x)
        torch.testing.assert_close(t.log_px_z, log_px)
        torch.testing.assert_close(t.elbo, log_px + log_pz)
        # p is a distribution over the K^n code maps: its probabilities sum to one
        maps = torch.tensor(list(itertools.product(range(3), repeat=2)))  # (9, 2)
        onehot = torch.nn.functional.one_hot(maps, 3).double().reshape(9, 1, 2, 3)
        total = model.code_prior().log_prob(onehot).exp().sum()
        torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))
        draws = model.code_prior().sample((5,))
        assert draws.shape == (5, 1, 2, 3) and bool((draws.sum(-1) == 1).all())


def test_a_killed_and_resumed_run_with_a_codebook_ends_with_the_same_weights_and_codebook(tmp_path):
    from vaekit.config import TrainConfig
    from vaekit.training import Trainer

    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 16, generator=g) > 0.5).float()
    x = torch.bernoulli(protos[torch.randint(0, 4, (96,), generator=g)] * 0.9 + 0.05, generator=g)

    def trainer(d, callbacks=None):
        torch.manual_seed(0)
        model = build_vqvae((16,), arch="mlp", hidden=[16], codebook_size=8, code_dim=2, positions=2,
                            restart_after=2)  # restarts happen: 8 codes, 2 positions x 10 examples a batch
        s = TrainConfig(steps=30, batch_size=10, lr=3e-3, val_every=7, checkpoint_every=5, progress=False)
        return Trainer(model, VQObjective(), x[:80], x[80:], settings=s, run_dir=d, seed=3, callbacks=callbacks)

    full, resumed = killed_and_resumed(trainer, tmp_path, kill_at=13, resumed_from=10)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert "quantiser.codebook" in a and "quantiser.unused_steps" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the run did restart codes, and a run with another seed ends elsewhere (the test can fail)
    assert int(full.model.quantiser.restarts) > 0
    other = trainer(tmp_path / "other")
    other.seed = 4
    other.data_gen.manual_seed(4)
    other.noise = type(other.noise)(other.device, 4 + 6)
    other.fit()
    assert not torch.equal(other.model.quantiser.codebook, full.model.quantiser.codebook)


def _ddp_worker(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same initial codebooks (DDP broadcasts the model at the start)
        g = torch.Generator().manual_seed(0)
        full = torch.randn(3, 16, 2, generator=g, dtype=torch.float64)  # 3 steps of 16 vectors
        ema = VectorQuantiser(4, 2, kmeans_init=False, decay=0.5).double().train()
        fancy = VectorQuantiser(4, 2, kmeans_init=True, decay=0.5, restart_after=1).double().train()
        torch.manual_seed(rank)  # then the ranks' RNGs differ: restarts and the k-means start come from rank 0
        for step in range(3):
            half = full[step, rank * 8:(rank + 1) * 8]
            with torch.enable_grad():
                ema(half)
                fancy(half + 10 * (rank == 1))  # rank 1's vectors far away: codes go unused, then restart
        torch.save({"ema": ema.codebook, "fancy": fancy.codebook, "restarts": fancy.restarts}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes: ~12 s of CPU
def test_codebook_statistics_are_all_reduced_across_processes(tmp_path):
    """Two gloo processes, each with half of every batch: the EMA codebook equals one process's on the whole
    batches, and k-means starts and restarts leave every process with the same codebook."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(f"file://{tmp_path}/init", str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    full = torch.randn(3, 16, 2, generator=g, dtype=torch.float64)
    one = VectorQuantiser(4, 2, kmeans_init=False, decay=0.5).double().train()
    for step in range(3):
        one(full[step])
    torch.testing.assert_close(r0["ema"], one.codebook)
    torch.testing.assert_close(r1["ema"], one.codebook)
    assert torch.equal(r0["fancy"], r1["fancy"]) and int(r0["restarts"]) == int(r1["restarts"])


def test_bad_vqvae_configs_are_one_line_errors(tmp_path, capsys):
    from vaekit.cli import main
    from vaekit.process_state import preserve_process_state

    base = ["model.family=vqvae", "model.latent_dim=10", "model.warmup_steps=0", "model.free_bits=0"]
    cases = {("model.objective=elbo",): "set model.objective=vq",
             ("model.objective=vq", f"model.prior_of={tmp_path / 'none'}", "model.code_prior=transformer"):
                 "is not a trained vaekit run",
             ("model.objective=vq", f"model.prior_of={tmp_path}"): "set model.code_prior=transformer",
             ("model.objective=vq", "model.code_prior=transformer", "model.prior_width=10"):
                 "multiple of model.prior_heads",
             ("model.objective=vq", "model.levels=2"): "model.levels=2 (a VQ-VAE-2 hierarchy of code maps) needs "
                                                       "model.arch=conv (got mlp)",
             ("model.objective=vq", "model.levels=3"): "model.levels"}
    for i, (extra, message) in enumerate(cases.items()):
        with preserve_process_state():
            code = main(["train", "--quiet", "--preset", "digits-quick", "--out", str(tmp_path / f"r{i}"), *base,
                         *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and message in err[-1] and not (tmp_path / f"r{i}").exists(), err
