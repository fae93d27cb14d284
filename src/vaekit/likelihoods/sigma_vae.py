"""sigma-VAE: Gaussian decoder with one learned, shared scale (Rybkin, Daniilidis & Levine 2021, "Simple and
Effective VAE Training with Calibrated Decoders").

log p(x|z) = -||x - mu(z)||^2 / (2 sigma^2) - N log sigma - N/2 log(2 pi)   (N = pixels per example)

with sigma a single parameter trained jointly with the networks by the same ELBO, so the balance between
reconstruction and KL is learned rather than fixed by hand (a fixed sigma is an implicit beta = 2 sigma^2).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.distributions import Independent, Normal

from vaekit.likelihoods.base import Likelihood
from vaekit.likelihoods.floors import inverse_soft_floor_log_scale, soft_floor_log_scale

__all__ = ["SigmaVAELikelihood"]


class SigmaVAELikelihood(Likelihood):
    """N(x; h, sigma^2 I) with one learned log sigma shared by all pixels (Rybkin et al. 2021).

    The trained parameter is ``raw_log_sigma``; the scale used is the soft-floored
    ``log_sigma = m + softplus(2 (raw - m)) / 2`` (``vaekit.likelihoods.floors``, m = ``min_log_sigma``),
    so sigma > exp(m) always while the gradient never vanishes. ``init_log_sigma`` is the initial *floored*
    value (0 -> sigma = 1 exactly). ``sigma`` reports the current value for training curves.
    """

    params_per_channel = 1

    def __init__(self, data_shape: Sequence[int], init_log_sigma: float = 0.0, min_log_sigma: float = -6.0) -> None:
        super().__init__(data_shape)
        self.min_log_sigma = float(min_log_sigma)
        raw = inverse_soft_floor_log_scale(init_log_sigma, self.min_log_sigma)
        self.raw_log_sigma = nn.Parameter(torch.tensor(raw))

    @property
    def log_sigma(self) -> torch.Tensor:
        """Floored log sigma, a 0-d tensor that carries the gradient to ``raw_log_sigma``."""
        return soft_floor_log_scale(self.raw_log_sigma, self.min_log_sigma)

    @property
    def sigma(self) -> float:
        """Current sigma as a Python float (for logging)."""
        return float(self.log_sigma.detach().exp())

    def forward(self, h: torch.Tensor) -> Independent:
        (mean,) = self.split(h)  # (*batch, *data_shape)
        scale = self.log_sigma.exp().to(mean.dtype).expand_as(mean)
        return Independent(Normal(mean, scale, validate_args=False), self.event_dim, validate_args=False)

    def stats(self) -> dict[str, float]:
        return {"sigma": self.sigma}

    def extra_repr(self) -> str:
        return f"data_shape={self.data_shape}, min_log_sigma={self.min_log_sigma}"
