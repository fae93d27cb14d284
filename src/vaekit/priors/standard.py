"""The standard normal prior p(z) = N(0, I) (Kingma & Welling 2014, Sec. 3)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from vaekit.posteriors.gaussian import DiagonalGaussian

__all__ = ["StandardNormal"]


class StandardNormal(nn.Module):
    """p(z) = N(0, I) over D latent dimensions (buffers follow the module's device and dtype)."""

    gaussian = True  # prior units u = z

    def __init__(self, latent_dim: int, data_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> DiagonalGaussian:
        # the distribution has no parameters to learn: build it once per buffer (a .to() makes new buffers)
        cached = getattr(self, "_cached", None)
        if cached is None or cached[0] is not self.loc:
            cached = (self.loc, DiagonalGaussian(self.loc, self.scale, log_scale=self.loc, standard=True))
            self._cached = cached
        return cached[1]
