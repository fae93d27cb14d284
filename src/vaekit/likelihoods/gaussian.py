"""Gaussian likelihood with a fixed standard deviation."""

from __future__ import annotations

import torch
from torch.distributions import Independent, Normal

from vaekit.likelihoods.base import Likelihood

__all__ = ["FixedGaussianLikelihood"]


class FixedGaussianLikelihood(Likelihood):
    """p(x|z) = N(x; h, sigma^2 I) with a fixed sigma.

    log p = -||x - h||^2 / (2 sigma^2) - N log sigma - N/2 log(2 pi); the constant is kept, so with sigma = 1
    the negative log-likelihood is 1/2 ||x - x_hat||^2 + N/2 log(2 pi).
    """

    params_per_channel = 1

    def __init__(self, data_shape, sigma: float = 1.0) -> None:
        super().__init__(data_shape)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, h: torch.Tensor) -> Independent:
        (mean,) = self.split(h)
        scale = torch.full_like(mean, self.sigma)
        return Independent(Normal(mean, scale, validate_args=False), self.event_dim, validate_args=False)
