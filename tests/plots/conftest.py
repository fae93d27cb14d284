"""Shared fixtures for the figure tests: tiny models, and one tiny trained digits run with snapshots and a report."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vaekit.config import ModelConfig, apply_overrides
from vaekit.posteriors.gaussian import DiagonalGaussian
from vaekit.registry import build_model, load_preset

TINY_RUN = ["train.steps=30", "train.val_every=10", "train.snapshot_every=10", "train.threads=1",
            "model.hidden=[32]", "model.latent_dim=3", "eval.batch_size=500"]


def _png_size(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        return im.size


@pytest.fixture
def png_size():
    """png_size(path) -> (width, height) of a valid PNG file."""
    return _png_size


@pytest.fixture
def tiny_model():
    """An untrained 3-latent MLP VAE on (1, 8, 8) images."""
    torch.manual_seed(0)
    return build_model(ModelConfig(latent_dim=3, hidden=[16]), (1, 8, 8)).eval()


@pytest.fixture
def digits_x():
    g = torch.Generator().manual_seed(0)
    return torch.rand(40, 1, 8, 8, generator=g)


class _FixedPosterior(nn.Module):
    """q(z|x) = N(m, I) with m = (0, .., 0, 2 at ``dim``, 0, ..): KL is 2 nats in ``dim`` and 0 elsewhere."""

    def __init__(self, latent_dim: int, dim: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(latent_dim), requires_grad=False)
        with torch.no_grad():
            self.mean[dim] = 2.0

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        loc = self.mean.expand(h.shape[0], -1)  # (B, D)
        return DiagonalGaussian(loc, torch.ones_like(loc))


@pytest.fixture
def one_dim_model():
    """A 4-latent VAE whose posterior carries KL only in dimension 2 and whose decoder reads only z_2."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=4, hidden=[16]), (1, 8, 8)).eval()
    model.posterior = _FixedPosterior(4, 2)
    dec = nn.Linear(4, 64)
    with torch.no_grad():
        dec.weight.zero_()
        dec.weight[:, 2] = torch.linspace(-3, 3, 64)
        dec.bias.zero_()
    model.decoder = dec
    return model


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """30 steps of a 3-latent digits VAE (snapshots every 10 steps) with its end-of-training report."""
    from vaekit.runs import train_run

    run_dir = tmp_path_factory.mktemp("plots") / "run"
    cfg = apply_overrides(load_preset("digits-quick"), TINY_RUN)
    cfg.train.progress = False
    summary = train_run(cfg, run_dir)
    return run_dir, summary
