"""The opt-in torch.compile path of estimate_log_likelihood (slow: one inductor compilation per model)."""

from __future__ import annotations

import shutil

import pytest
import torch
from ppca_vae import PPCA

from vaekit.evaluation import estimate_log_likelihood

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None, reason="inductor needs C++"),
]


def test_compiled_estimate_matches_exact_log_px():
    p = PPCA(dtype=torch.float32)
    x = p.sample(6, seed=4)
    exact = p.log_px(x)
    res = estimate_log_likelihood(p.vae(), x, k=50, batch_size=6, compiled=True, seed=0)
    assert (res.per_example - exact).abs().max() < 1e-3  # exact q: every weight is log p(x) (float32 model)
    res = estimate_log_likelihood(p.perturbed_vae(), x, k=2000, batch_size=6, compiled=True, seed=0)
    assert (res.per_example - exact).abs().max() < 0.05
