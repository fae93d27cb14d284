"""Per-step terms of sequence models through the generic hooks ``position_terms`` and ``observed_units``: the
per-step scores sum to the per-sequence negative ELBO (same draws), padded steps excluded; a planted anomaly gets
its sequence's highest step score; ``vaekit evaluate`` reports nats per observed step and bits/dim over the
observed values, and ``vaekit anomaly`` writes the per-step scores beside the per-sequence one."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from vaekit.apps import anomaly_scores
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.data.sequences import pack_sequences
from vaekit.evaluation import evaluate, per_example_terms, per_position_terms
from vaekit.models.registry import build_family
from vaekit.objectives import ELBO

SIZES = {"dmm": {"transition_dim": 8, "emission_dim": 8}, "vrnn": {"phi_dim": 8}, "srnn": {"phi_dim": 8}}


def _model(family: str, iaf_steps: int = 0, d: int = 4, t_max: int = 7, seed: int = 0):
    torch.manual_seed(seed)
    extra = dict(SIZES[family], **({"iaf_steps": iaf_steps, "iaf_dim": 6} if iaf_steps else {}))
    return build_family(ModelConfig(family=family, latent_dim=3, likelihood="bernoulli", rnn_dim=8, **extra),
                        (t_max, d + 1))


def _batch(lengths=(5, 3, 7, 1), d: int = 4, t_max: int = 7):
    g = torch.Generator().manual_seed(3)
    seqs = [(torch.rand(n, d, generator=g) > 0.5).float().numpy() for n in lengths]
    return torch.from_numpy(pack_sequences(seqs, t_max))


@pytest.mark.parametrize("family,iaf,samples", [("dmm", 0, 1), ("dmm", 2, 3), ("vrnn", 0, 2),
                                                         ("srnn", 0, 2)])
def test_per_step_scores_sum_to_the_negative_elbo_with_the_same_draws(family, iaf, samples):
    model, x = _model(family, iaf), _batch()
    steps = per_position_terms(model, x, batch_size=3, n_samples=samples, seed=7)  # (N, T)
    elbo = per_example_terms(model, x, batch_size=3, n_samples=samples, seed=7)["elbo"]  # (N,)
    mask = x[..., -1].bool()
    assert steps.shape == (4, 7) and torch.isnan(steps[~mask]).all() and torch.isfinite(steps[mask]).all()
    torch.testing.assert_close(steps.nansum(1), -elbo, rtol=1e-6, atol=1e-5)
    assert per_position_terms(build_family(ModelConfig(hidden=[8], latent_dim=2), (6,)), torch.rand(3, 6)) is None


def test_a_planted_anomaly_gets_the_highest_step_score():
    """A DMM trained on one note moving up a 6-key roll; all notes flipped at one step of a test sequence."""
    d, t_max = 6, 10
    g = torch.Generator().manual_seed(0)

    def roll(offset, n):
        r = np.zeros((n, d), np.float32)
        r[np.arange(n), (np.arange(n) + offset) % d] = 1
        return r

    train = torch.from_numpy(pack_sequences([roll(int(torch.randint(d, (1,), generator=g)),
                                                  int(torch.randint(6, t_max + 1, (1,), generator=g)))
                                             for _ in range(48)], t_max))
    model = _model("dmm", d=d, t_max=t_max)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    torch.manual_seed(1)
    for _ in range(80):
        opt.zero_grad()
        ELBO()(model, train).loss.backward()
        opt.step()
    seqs = [roll(2, 9), roll(4, 7)]
    seqs[0][5] = 1 - seqs[0][5]  # five notes on, the one expected off
    seqs[1][2] = 1 - seqs[1][2]
    x = torch.from_numpy(pack_sequences(seqs, t_max))
    s = anomaly_scores(model, x, ["neg_elbo"], elbo_samples=4, seed=0)
    steps = s["neg_elbo_step"]  # (2, T)
    assert np.nanargmax(steps[0]) == 5 and np.nanargmax(steps[1]) == 2
    assert np.isnan(steps[0, 9:]).all() and np.isnan(steps[1, 7:]).all()
    np.testing.assert_allclose(np.nansum(steps, 1), s["neg_elbo"], rtol=1e-6)


def test_evaluate_reports_nats_per_observed_step_by_hand():
    model, x = _model("dmm"), _batch()
    res = evaluate(model, x, k=8, batch_size=3, seed=4, n_levels=2)
    elbo = per_example_terms(model, x, batch_size=3, seed=4)["elbo"]
    n_steps = 5 + 3 + 7 + 1
    assert res["observed_steps"] == n_steps and res["observed_values"] == 4 * n_steps
    assert res["neg_elbo_per_step"] == pytest.approx(-float(elbo.sum()) / n_steps, rel=1e-9)
    assert res["neg_log_px_per_step"] == pytest.approx(-res["log_px"] * 4 / n_steps, rel=1e-9)
    # bits/dim over the 64 observed values (not T (D + 1) = 35 per sequence with the padding and the mask)
    assert res["bits_per_dim"] == pytest.approx(-res["log_px"] * 4 / (4 * n_steps * math.log(2)), rel=1e-9)


@pytest.fixture(scope="module")
def sines_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("seq-steps") / "run"
    assert main(["train", "--quiet", "--out", str(run_dir), "model.family=dmm", "data.name=sines",
                 "data.dataset_options={n: 40, t_max: 8}", "model.latent_dim=2", "model.transition_dim=8",
                 "model.emission_dim=8", "model.rnn_dim=8", "model.iaf_steps=1", "model.iaf_dim=4",
                 "model.warmup_steps=0", "model.free_bits=0", "train.steps=4", "train.val_every=4",
                 "eval.iw_samples=4", "train.threads=1"]) == 0
    return run_dir


def test_cli_evaluate_and_anomaly_per_step(sines_run, tmp_path, capsys):
    from vaekit.runs import load_run, prepare

    assert main(["evaluate", str(sines_run), "--json", "--iw-samples", "4"]) == 0
    res = json.loads(capsys.readouterr().out)
    cfg, model, _ = load_run(sines_run)
    x = torch.as_tensor(prepare(cfg, build=False).splits.test.x)  # sines: no evaluation transform
    elbo = per_example_terms(model, x, batch_size=cfg.eval.batch_size, seed=cfg.seed)["elbo"]
    n_steps = int(x[..., -1].sum())
    assert n_steps < x.shape[0] * x.shape[1]  # variable lengths: some padding
    assert res["observed_steps"] == n_steps
    assert res["neg_elbo_per_step"] == pytest.approx(-float(elbo.sum()) / n_steps, rel=1e-6)
    assert main(["evaluate", str(sines_run), "--iw-samples", "4"]) == 0
    assert "per observed step" in capsys.readouterr().out
    out = tmp_path / "scores.csv"
    assert main(["anomaly", str(sines_run), "-o", str(out), "--scores", "neg_elbo", "--elbo-samples", "2"]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(x)
    for row, xi in zip(rows, x):
        steps = np.array([float(row[f"neg_elbo_step{t}"]) for t in range(x.shape[1])])
        observed = xi[:, -1].numpy() > 0
        assert np.isnan(steps[~observed]).all() and np.isfinite(steps[observed]).all()
        assert steps[observed].sum() == pytest.approx(float(row["neg_elbo"]), rel=1e-4, abs=1e-3)
