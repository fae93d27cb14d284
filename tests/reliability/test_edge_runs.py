"""Runs at the edges: a test split of one image still gets its report; a run that diverged is refused by
`vaekit evaluate` in one line, with nothing on disk changed."""

from __future__ import annotations

import numpy as np

from tests.reliability.conftest import QUICK, assert_one_line_error, cli, snapshot


def test_report_of_a_run_whose_test_split_holds_one_image(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "one.npz"
    np.savez(data, train=rng.random((40, 1, 8, 8)).astype(np.float32), val=rng.random((8, 1, 8, 8)).astype(np.float32),
             test=rng.random((1, 1, 8, 8)).astype(np.float32))
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--quiet", "--out", run, *QUICK, "model.latent_dim=3", "data.name=arrays",
                       f"data.path={data}")
    assert code == 0, err
    code, out, err = cli(capsys, "report", run, "-o", tmp_path / "r.html")
    assert code == 0 and "Traceback" not in err, err
    assert 'id="fig-latent-map"' in (tmp_path / "r.html").read_text()


def test_pca_of_one_point_gives_two_axes():
    from vaekit.plots.latent import pca_2d

    comps, mean, ratio = pca_2d(np.array([[0.5, -1.0, 2.0]]))
    assert comps.shape == (3, 2) and ratio.shape == (2,) and np.all(ratio == 0)
    assert np.allclose(comps.T @ comps, np.eye(2))  # still two orthonormal axes
    comps, _, ratio = pca_2d(np.random.default_rng(0).normal(size=(50, 4)))  # the usual case is unchanged
    assert comps.shape == (4, 2) and ratio[0] >= ratio[1] > 0


def test_evaluate_of_a_run_trained_with_an_absurd_learning_rate(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--quiet", "--out", run, *QUICK, "train.lr=1e12")
    assert code in (0, 1) and "Traceback" not in err, err
    before = snapshot(run)
    code, _, err = cli(capsys, "evaluate", run, "--iw-samples", "2")
    assert_one_line_error(code, err, "diverged", "train.lr")
    assert snapshot(run) == before


def test_nan_log_weights_are_a_value_error_naming_the_cause():
    import pytest
    import torch

    from vaekit.evaluation import NonFiniteModelError, estimate_log_likelihood
    from vaekit.models.build import build_vae

    torch.manual_seed(0)
    model = build_vae((4,), latent_dim=2, hidden=[8], likelihood="gaussian")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ValueError, match="diverged") as e:
        estimate_log_likelihood(model, torch.rand(3, 4), k=2)
    assert isinstance(e.value, NonFiniteModelError) and isinstance(e.value, RuntimeError)
