"""Anomaly scores (known answers on the pPCA VAE), threshold calibration, AUROC/AUPRC against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from vaekit.apps import anomaly_scores, auprc, auroc, calibrate_threshold


def test_scores_have_their_closed_forms_on_ppca(ppca):
    model = ppca.vae()  # exact posterior: every importance weight equals p(x), so -log p(x) is exact for any K
    x = ppca.sample(60)
    L = 500
    s = anomaly_scores(model, x, k=7, elbo_samples=L, error_map=True)
    np.testing.assert_allclose(s["neg_log_px"], -ppca.log_px(x).numpy(), atol=1e-8)
    # ELBO = log p(x) for the exact posterior. Its estimate averages log p(x|z) = c - ||r - W(s*eps)||^2 / (2 sigma^2)
    # (r = x - W mu - b, orthogonal columns W_j) over L draws: Var = (4 sum_j (r.W_j)^2 s_j^2 + 2 sum_j |W_j|^4 s_j^4)
    # / (4 sigma^4) per draw, so the standard error is sqrt(Var / L); allow 5 of them per point
    r = x - ((x @ ppca.A.T + ppca.c) @ ppca.W.T + ppca.b)  # (N, X)
    w2, s2 = (ppca.W**2).sum(0), ppca.post_scale**2  # (D,), (D,)
    var = (4 * ((r @ ppca.W) ** 2 * s2).sum(1) + 2 * (w2**2 * s2**2).sum()) / (4 * ppca.sigma**4)  # (N,)
    se = (var / L).sqrt().numpy()
    assert (np.abs(s["neg_elbo"] - s["neg_log_px"]) < 5 * se).all()
    rec = (x @ ppca.A.T + ppca.c) @ ppca.W.T + ppca.b  # decoder mean at the posterior mean
    np.testing.assert_allclose(s["recon_error"], ((x - rec) ** 2).sum(1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(s["error_map"].sum(1), s["recon_error"], rtol=1e-5)
    assert s["error_map"].shape == (60, 6)


def test_off_model_points_score_higher(ppca):
    model = ppca.vae()
    normal = ppca.sample(200, seed=1)
    u, _, _ = torch.linalg.svd(ppca.W, full_matrices=True)
    off = ppca.sample(50, seed=2) + 2.0 * u[:, -1]  # shifted out of the principal subspace
    s = anomaly_scores(model, torch.cat([normal, off]), ["neg_log_px", "recon_error"], k=5)
    y = np.r_[np.zeros(200), np.ones(50)]
    assert auroc(s["neg_log_px"], y) > 0.95 and auroc(s["recon_error"], y) > 0.95


def test_threshold_gives_the_target_false_positive_rate():
    rng = np.random.default_rng(0)
    for n, fpr in [(1000, 0.05), (999, 0.05), (37, 0.1), (200, 0.01)]:
        s = rng.normal(size=n)
        t = calibrate_threshold(s, fpr)
        assert np.mean(s > t) == np.floor(fpr * n) / n  # exactly floor(fpr n) of n distinct scores above t
    s = rng.normal(size=2000)
    t = calibrate_threshold(s, 0.05)
    fresh = rng.normal(size=20000)  # the same distribution: FPR 0.05 +- sampling error of the quantile
    assert abs(np.mean(fresh > t) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 2000)
    assert np.mean(np.ones(10) > calibrate_threshold(np.ones(10), 0.3)) == 0.0  # ties: never above the target


def test_auroc_and_auprc_match_sklearn_with_ties():
    rng = np.random.default_rng(1)
    for n in (10, 101, 500):
        y = rng.random(n) < 0.3
        y[:2] = [True, False]
        s = np.round(rng.normal(size=n) + y, 1)  # rounding makes ties
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert auprc(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0 and auroc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0


def test_bad_input_messages(tiny_vae, digits_x):
    with pytest.raises(ValueError, match="unknown anomaly score 'nll'; choose from neg_elbo, neg_log_px, recon_error"):
        anomaly_scores(tiny_vae, digits_x, ["nll"])
    with pytest.raises(ValueError, match="does not fit a model built for"):
        anomaly_scores(tiny_vae, digits_x[:, :, :4])
    with pytest.raises(ValueError, match=r"false-positive rate must be in \(0, 1\), got 5"):
        calibrate_threshold([1.0, 2.0], 5)
    with pytest.raises(ValueError, match="scores must be finite"):
        calibrate_threshold([1.0, float("nan")], 0.1)
    with pytest.raises(ValueError, match="need both normal and anomalous examples; all 3 labels are 0"):
        auroc([1, 2, 3], [0, 0, 0])
    with pytest.raises(ValueError, match="got 2 anomaly labels for 3 scores"):
        auprc([1, 2, 3], [0, 1])
    with pytest.raises(ValueError, match=r"must be 0 \(normal\) or 1 \(anomaly\)"):
        auroc([1, 2, 3], [0, 1, 2])


def test_labels_and_threshold_report():
    from vaekit.apps import anomaly_labels, threshold_report

    y = np.array([0, 1, 2, 9, 9, 3])
    assert anomaly_labels(y, normal=range(9)).tolist() == [0, 0, 0, 1, 1, 0]
    assert anomaly_labels(y, anomalies=[1, 3]).tolist() == [0, 1, 0, 0, 0, 1]
    normal = np.arange(100.0)  # threshold for FPR 0.1: 89 (ten normal scores above it)
    r = threshold_report([10.0, 95.0, 200.0, 50.0], normal, 0.1, [0, 1, 1, 0])
    assert r["threshold"] == 89.0 and r["fpr_calibration"] == 0.1 and r["flagged"] == 0.5
    assert r["fpr"] == 0.0 and r["tpr"] == 1.0 and r["auroc"] == 1.0 and r["auprc"] == 1.0
    assert "auroc" not in threshold_report([1.0, 2.0], normal, 0.1, [0, 0])  # one kind only: no AUROC
