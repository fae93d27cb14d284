"""Post-hoc latent samplers: EM recovers a known Gaussian mixture; the flow and two-stage fits raise the
likelihood of their data; the whole path train -> `vaekit sample --sampler ...` on a tiny run, with the fitted
sampler saved in the run folder and reused."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from vaekit.apps.samplers import FlowSampler, TwoStageSampler, fit_gmm
from vaekit.cli import main
from vaekit.process_state import preserve_process_state


def _known_mixture() -> MixtureSameFamily:
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    m = torch.tensor([[-4.0, 0.0], [3.0, 3.0], [2.0, -4.0]], dtype=torch.float64)
    c = torch.tensor([[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 2.0]], [[1.5, -0.6], [-0.6, 0.8]]],
                     dtype=torch.float64)
    return MixtureSameFamily(Categorical(probs=w), MultivariateNormal(m, covariance_matrix=c))


def test_em_recovers_a_known_gaussian_mixture():
    truth = _known_mixture()
    torch.manual_seed(0)
    z = truth.sample((6000,))
    w, m, tril = fit_gmm(z, 3, generator=torch.Generator().manual_seed(1))
    order = [int(torch.cdist(truth.component_distribution.loc[k:k + 1], m).argmin()) for k in range(3)]
    assert sorted(order) == [0, 1, 2]
    cov = tril @ tril.transpose(-1, -2)
    # within 4 standard errors of each estimate from n_k = w_k N points: a weight sqrt(w (1 - w) / N), a mean
    # sigma / sqrt(n_k), a (co)variance about sigma^2 sqrt(2 / n_k)
    pw, n = truth.mixture_distribution.probs, 6000
    torch.testing.assert_close(w[order], pw, atol=4 * math.sqrt(0.25 / n), rtol=0)
    for k in range(3):
        c = truth.component_distribution.covariance_matrix[k]
        sd = float(c.diagonal().max().sqrt())
        nk = float(pw[k]) * n
        torch.testing.assert_close(m[order[k]], truth.component_distribution.loc[k], atol=4 * sd / math.sqrt(nk), rtol=0)
        torch.testing.assert_close(cov[order[k]], c, atol=4 * sd ** 2 * math.sqrt(2 / nk), rtol=0)
    # the fit is at least as likely as the truth on its own data (EM's maximum), and close to it
    fitted = MixtureSameFamily(Categorical(probs=w), MultivariateNormal(m, scale_tril=tril))
    gap = float(fitted.log_prob(z).mean() - truth.log_prob(z).mean())
    assert 0 <= gap < 0.01


@pytest.mark.parametrize("cls", [FlowSampler, TwoStageSampler])
def test_flow_and_two_stage_fits_learn_a_skewed_distribution(cls):
    torch.manual_seed(0)
    z = torch.randn(2000, 2, dtype=torch.float64)
    z[:, 1] = z[:, 1] * 0.3 + 0.5 * z[:, 0] ** 2  # a banana: far from Gaussian
    opts = {"steps": 2, "hidden": (32, 32)} if cls is FlowSampler else {"hidden": (32,)}
    s = cls(2, **opts)
    s.fit(z, torch.Generator().manual_seed(0), 400)
    with torch.no_grad():
        draws = s.sample(4000)
    assert draws.shape == (4000, 2) and torch.isfinite(draws).all()
    # the banana's signature: the second coordinate's mean is 0.5 E[z0^2] = 0.5 and it correlates with z0^2
    assert abs(float(draws[:, 1].mean()) - 0.5) < 0.15
    assert float(torch.corrcoef(torch.stack([draws[:, 0] ** 2, draws[:, 1]]))[0, 1]) > 0.5


def _run(capsys, *argv):
    with preserve_process_state():
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_sample_with_a_fitted_sampler_through_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = _run(capsys, "train", "--quiet", "--preset", "digits-quick", "--out", run, "train.steps=30",
                        "train.val_every=15", "model.hidden=[32]", "model.latent_dim=3", "eval.iw_samples=5")
    assert code == 0, err
    code, out, err = _run(capsys, "sample", run, "--sampler", "gmm", "--components", 3, "-n", 8,
                          "--fit-examples", 300)
    assert code == 0, err
    assert "fitted to the posterior means of 300 training examples" in out
    assert (run / "samples-gmm-T1-seed0.png").is_file()
    doc = json.loads((run / "samplers" / "gmm.json").read_text())
    assert doc["sampler"] == "gmm" and doc["options"] == {"components": 3} and doc["fitted_on"]["examples"] == 300
    code, out, err = _run(capsys, "sample", run, "--sampler", "gmm", "--components", 3, "-n", 8, "--fit-examples",
                          300, "-o", tmp_path / "again.png")
    assert code == 0 and "reused" in out, err
    code, out, err = _run(capsys, "sample", run, "--sampler", "gmm", "--components", 2, "-n", 8, "--fit-examples",
                          300, "-o", tmp_path / "two.png")
    assert code == 0 and "fitted to" in out and json.loads((run / "samplers" / "gmm.json").read_text())[
        "options"] == {"components": 2}
    code, out, err = _run(capsys, "sample", run, "--sampler", "two-stage", "--fit-steps", 5, "-n", 4,
                          "--fit-examples", 100)
    assert code == 0, err
    assert (run / "samplers" / "two-stage.safetensors").is_file() and (run / "samples-two-stage-T1-seed0.png").is_file()
    code, _, err = _run(capsys, "sample", run, "--sampler", "gmm", "--components", 0)
    assert code == 2 and "--components must be at least 1" in err and len(err.strip().splitlines()) == 1
    assert not list(run.glob("**/*.tmp"))
