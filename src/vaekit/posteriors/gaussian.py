"""Diagonal Gaussian posterior with the reparameterisation trick.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes", Sec. 2.4 and Appendix B:
z = mu + sigma * eps, eps ~ N(0, I), and KL(N(mu, sigma^2) || N(0, I)) =
-1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2), which torch's registered Normal/Normal KL computes.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal

__all__ = ["DiagonalGaussian", "GaussianPosterior", "soft_clamp"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def soft_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Smoothly squash x into (low, high) with a scaled tanh (identity-like near the centre).

    Keeps log-variances finite without the zero gradients of a hard clamp.
    """
    mid, half = 0.5 * (high + low), 0.5 * (high - low)
    return mid + half * torch.tanh((x - mid) / half)


class DiagonalGaussian(Independent):
    """N(mu, diag(sigma^2)) over the last dimension; batch_shape = mu.shape[:-1], event_shape = (D,)."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args: bool = False) -> None:
        super().__init__(Normal(loc, scale, validate_args=validate_args), 1, validate_args=validate_args)

    @property
    def loc(self) -> torch.Tensor:
        return self.base_dist.loc

    @property
    def scale(self) -> torch.Tensor:
        return self.base_dist.scale

    def rsample_and_log_prob(self, sample_shape: torch.Size | tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised z = mu + sigma * eps and log q(z) computed from eps (no division by sigma).

        Returns z of shape (*sample_shape, *batch_shape, D) and log q of shape (*sample_shape, *batch_shape).
        """
        loc, scale = self.loc, self.scale
        eps = torch.randn(torch.Size(sample_shape) + loc.shape, dtype=loc.dtype, device=loc.device)
        z = loc + scale * eps
        log_q = -(0.5 * eps.square() + scale.log() + _HALF_LOG_2PI).sum(-1)
        return z, log_q


class GaussianPosterior(nn.Module):
    """Linear head h -> (mu, log sigma^2) -> DiagonalGaussian, log-variance soft-clamped to [lo, hi]."""

    def __init__(self, in_features: int, latent_dim: int, logvar_min: float = -12.0, logvar_max: float = 8.0) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.in_features = int(in_features)
        self.logvar_min, self.logvar_max = float(logvar_min), float(logvar_max)
        self.linear = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        mu, logvar = self.linear(h).chunk(2, dim=-1)  # (B, D) each
        logvar = soft_clamp(logvar, self.logvar_min, self.logvar_max)
        return DiagonalGaussian(mu, torch.exp(0.5 * logvar))
