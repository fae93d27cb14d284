"""Shared fixtures for the apps tests: the pPCA VAE of tests/evaluation, a tiny digits VAE."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluation"))  # ppca_vae.py


@pytest.fixture(scope="session")
def ppca():
    from ppca_vae import PPCA

    return PPCA(x_dim=6, z_dim=3, sigma=0.5, seed=0)


@pytest.fixture(scope="session")
def digits_x() -> torch.Tensor:
    from sklearn.datasets import load_digits

    x, _ = load_digits(return_X_y=True)
    return torch.tensor(x[:300] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)  # (300, 1, 8, 8) in [0, 1]


@pytest.fixture
def tiny_vae():
    from vaekit.config import ModelConfig
    from vaekit.registry import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(latent_dim=3, hidden=[16]), (1, 8, 8)).eval()
