"""Anomaly detection with a VAE trained on normal data only: per-example scores, calibrated thresholds, AUROC/AUPRC.

An & Cho 2015, "Variational Autoencoder based Anomaly Detection using Reconstruction Probability": a VAE trained
on normal data gives low probability to inputs unlike them. Scores here (higher = more anomalous), in nats or
squared pixel units per example:
- ``neg_elbo``: -ELBO(x) = -(E_q[log p(x|z)] - KL(q(z|x) || p(z))), the Monte Carlo mean over L samples;
- ``neg_log_px``: -log p(x) by importance sampling with K samples (Burda et al. 2016, Eq. 8, via
  ``vaekit.evaluation.estimate_log_likelihood``): a stochastic upper bound on -log p(x) that tightens with K;
- ``recon_error``: sum_i (x_i - E[x_i|z = mu(x)])^2, with the per-pixel map (x - x_hat)^2 as a localisation.
For a model whose examples are made of positions (a sequence's time steps; the contract's optional
``position_terms``), ``neg_elbo`` comes with ``neg_elbo_step`` (N, P): the same -ELBO (same draws) split over the
positions, -log p(x_t | z_t) + KL_t, NaN at padded steps: it localises an anomaly in time.
A threshold for a target false-positive rate is the matching order statistic of the scores of held-out normal
data; AUROC is the Mann-Whitney statistic (Hanley & McNeil 1982), AUPRC the average precision.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from vaekit.apps._common import as_data_tensor, batches, evaluation_context, model_device, per_example_elbo

__all__ = ["SCORES", "anomaly_scores", "reconstruction_error", "calibrate_threshold", "auroc", "auprc",
           "anomaly_labels", "threshold_report"]

SCORES = ("neg_elbo", "neg_log_px", "recon_error")


def reconstruction_error(model: nn.Module, x: Any, batch_size: int = 500) -> torch.Tensor:
    """(N, *data_shape) per-pixel squared error (x - E[x|z = E_q[z|x]])^2 (``model.reconstruct``)."""
    x = as_data_tensor(x)
    out = []
    with evaluation_context(model):
        for xb in batches(x, batch_size, model_device(model)):
            out.append((xb - model.reconstruct(xb)).square().cpu())  # (B, *data_shape)
    return torch.cat(out)


def anomaly_scores(model: nn.Module, x: Any, which: Sequence[str] = SCORES, *, k: int = 100, elbo_samples: int = 10,
                   seed: int = 0, error_map: bool = False, batch_size: int = 500, positions: bool = True
                   ) -> dict[str, np.ndarray]:
    """Scores of ``x`` (N, *data_shape), higher = more anomalous: {name: (N,) float64} for the names in ``which``
    (see ``SCORES``), plus "error_map" (N, *data_shape) float32 when ``error_map``. k: importance samples for
    neg_log_px; elbo_samples: samples L for neg_elbo; seed: fixes every draw. With neg_elbo and ``positions``, a
    model with the ``position_terms`` hook also gives "neg_elbo_step" (N, P) float64, NaN at unobserved
    positions, whose observed positions sum to neg_elbo (the same draws)."""
    from vaekit.evaluation import estimate_log_likelihood, per_position_terms

    bad = [w for w in which if w not in SCORES]
    if bad or not which:
        raise ValueError(f"unknown anomaly score {bad[0] if bad else ''!r}; choose from {', '.join(SCORES)}")
    x = as_data_tensor(x)
    model.check_input(x)
    out: dict[str, np.ndarray] = {}
    if "neg_elbo" in which:
        out["neg_elbo"] = (-per_example_elbo(model, x, elbo_samples, batch_size, seed)).numpy()
        steps = per_position_terms(model, x, batch_size, elbo_samples, seed) if positions else None  # same draws
        if steps is not None:
            out["neg_elbo_step"] = steps.numpy()
    if "neg_log_px" in which:
        ll = estimate_log_likelihood(model, x, k=k, seed=seed + 1, check=False)
        out["neg_log_px"] = (-ll.per_example).numpy()
    if "recon_error" in which or error_map:
        err = reconstruction_error(model, x, batch_size)  # (N, *data_shape)
        if "recon_error" in which:
            out["recon_error"] = err.flatten(1).sum(1).double().numpy()
        if error_map:
            out["error_map"] = err.float().numpy()
    return out


def _scores_array(scores: Any, what: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError(f"{what}: no scores given")
    if not np.isfinite(s).all():
        raise ValueError(f"{what}: scores must be finite, got {int((~np.isfinite(s)).sum())} NaN/inf values")
    return s


def calibrate_threshold(normal_scores: Any, fpr: float) -> float:
    """Threshold t such that flagging ``score > t`` flags at most ``fpr`` of ``normal_scores`` (held-out normal
    data): t is the k-th smallest score, k = n - floor(fpr * n), so exactly floor(fpr * n) of n distinct normal
    scores lie above it (fewer with ties at t)."""
    if not 0.0 < float(fpr) < 1.0:
        raise ValueError(f"the target false-positive rate must be in (0, 1), got {fpr!r}")
    s = np.sort(_scores_array(normal_scores, "threshold calibration"))
    n_above = int(math.floor(float(fpr) * s.size + 1e-9))
    return float(s[s.size - n_above - 1])


def _labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels).reshape(-1)
    if y.size != n:
        raise ValueError(f"got {y.size} anomaly labels for {n} scores; give one label per example")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("anomaly labels must be 0 (normal) or 1 (anomaly)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(f"AUROC/AUPRC need both normal and anomalous examples; all {n} labels are {int(y[0])}")
    return y


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of ``scores`` (higher = anomaly) for binary ``labels`` (1 = anomaly):
    the Mann-Whitney U / (n_pos n_neg), ties counting one half (mid-ranks)."""
    from scipy.stats import rankdata

    s = _scores_array(scores, "AUROC")
    y = _labels(labels, s.size)
    ranks = rankdata(s)  # average ranks for ties
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc(scores: Any, labels: Any) -> float:
    """Area under the precision-recall curve as average precision, sum_n (R_n - R_{n-1}) P_n over the distinct
    score thresholds taken from the highest down (anomaly = positive class)."""
    s = _scores_array(scores, "AUPRC")
    y = _labels(labels, s.size)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each run of equal scores
    tp = tp[last]
    precision = tp / (last + 1.0)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def anomaly_labels(y: Any, anomalies: Sequence[int] | None = None, normal: Sequence[int] | None = None) -> np.ndarray:
    """(N,) bool, True = anomaly, from class labels ``y``: those in ``anomalies`` if given, else those not in
    ``normal`` (e.g. the ``data.classes`` a one-class-out model was trained on)."""
    y = np.asarray(y).reshape(-1)
    if anomalies is not None:
        return np.isin(y, list(anomalies))
    if normal is None:
        raise ValueError("anomaly labels need the anomalous classes or the normal classes")
    return ~np.isin(y, list(normal))


def threshold_report(scores: Any, normal_scores: Any, fpr: float, labels: Any | None = None) -> dict[str, float]:
    """Threshold for ``fpr`` on ``normal_scores`` and what it does on ``scores``: threshold, fpr_calibration (flagged
    fraction of the normal scores), flagged (fraction of ``scores``); with ``labels`` (1 = anomaly) holding both
    kinds also auroc, auprc, and the fpr / tpr of the flags."""
    s = _scores_array(scores, "scores")
    t = calibrate_threshold(normal_scores, fpr)
    flag = s > t
    out = {"threshold": t, "fpr_calibration": float(np.mean(_scores_array(normal_scores, "normal scores") > t)),
           "flagged": float(flag.mean())}
    if labels is not None:
        y = np.asarray(labels).reshape(-1).astype(bool)
        if 0 < y.sum() < y.size:
            out.update(auroc=auroc(s, y), auprc=auprc(s, y), fpr=float(flag[~y].mean()), tpr=float(flag[y].mean()))
    return out
