"""Priors p(z)."""

from __future__ import annotations

import torch
from torch import nn

from vaekit.posteriors.gaussian import DiagonalGaussian

__all__ = ["StandardNormal"]


class StandardNormal(nn.Module):
    """p(z) = N(0, I) over D latent dimensions (buffers follow the module's device and dtype)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.loc, self.scale, log_scale=self.loc, standard=True)
