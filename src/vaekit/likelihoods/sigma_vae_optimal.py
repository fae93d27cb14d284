"""Optimal sigma-VAE: the shared Gaussian scale set to its batch maximum-likelihood value (Rybkin, Daniilidis &
Levine 2021, "Simple and Effective VAE Training with Calibrated Decoders", their "optimal sigma-VAE").

For a shared sigma the Gaussian log-likelihood summed over the batch is maximised in closed form by

    sigma*^2 = (1 / (S B N)) sum_{s, b, i} (x_{b,i} - mu_{s,b,i})^2     (MSE over samples, batch and pixels)

and log p(x|z) = -||x - mu||^2 / (2 sigma*^2) - N log sigma* - N/2 log(2 pi) is then used per example.

Batch dependence: sigma* is computed inside ``log_prob(x)`` from *everything* passed in (all L latent samples and
all B examples), so the per-example terms depend on the rest of the batch and on L. Estimates of log p(x)
with this likelihood (IWAE, importance sampling) therefore change with the batch size and composition;
for a batch-independent number evaluate with a fixed sigma (e.g. the last ``sigma``).

Gradient: sigma* is detached. The ELBO loss averages log p(x|z) equally over samples and examples, so it is
exactly the objective sigma* maximises; by the envelope theorem d/d(theta) max_sigma f = (df/d theta) at sigma*,
so the gradient through sigma* is zero and detaching changes nothing there, while it avoids 0/0 when the MSE is
0. (For importance-weighted objectives sigma* is not the optimum and the detached gradient treats it as a constant.)

Floor: sigma*^2 = MSE + exp(2 m) with m = ``min_log_sigma`` (the soft floor of ``vaekit.likelihoods.floors``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.distributions import Distribution, constraints

from vaekit.likelihoods.base import Likelihood
from vaekit.likelihoods.floors import soft_floor_log_scale

__all__ = ["OptimalSigmaVAELikelihood", "BatchOptimalGaussian"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class BatchOptimalGaussian(Distribution):
    """N(x; loc, sigma*^2 I) over the last ``event_dim`` axes with sigma* fitted to the data in ``log_prob``.

    ``sigma_store`` is a 0-d tensor (the owning module's buffer): ``log_prob`` writes the sigma* it used there,
    and ``sample``/``stddev`` read it (the last fitted value).
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc: torch.Tensor, event_dim: int, min_log_sigma: float, sigma_store: torch.Tensor) -> None:
        self.loc = loc  # (*batch, *event)
        self.min_log_sigma = float(min_log_sigma)
        self.sigma_store = sigma_store
        split = loc.dim() - event_dim
        super().__init__(loc.shape[:split], loc.shape[split:], validate_args=False)

    def optimal_log_sigma(self, diff: torch.Tensor) -> torch.Tensor:
        """Detached, floored log sigma* for residuals ``diff = x - loc`` of any shape (a 0-d tensor)."""
        log_mse = torch.log(diff.detach().square().mean())  # -inf when the fit is perfect
        return soft_floor_log_scale(0.5 * log_mse, self.min_log_sigma)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        diff = value - self.loc  # (*batch, *event), broadcast e.g. (B, *D) against (L, B, *D)
        log_sigma = self.optimal_log_sigma(diff)
        with torch.no_grad():
            self.sigma_store.copy_(log_sigma.exp())
        per_pixel = -0.5 * diff.square() * torch.exp(-2.0 * log_sigma) - log_sigma - _HALF_LOG_2PI
        return per_pixel.flatten(-len(self.event_shape)).sum(-1)  # (*batch,)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def stddev(self) -> torch.Tensor:
        return self.sigma_store.to(self.loc.dtype).expand_as(self.loc)

    @property
    def variance(self) -> torch.Tensor:
        return self.stddev.square()

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.stddev * eps


class OptimalSigmaVAELikelihood(Likelihood):
    """Gaussian with the batch-optimal shared sigma* = sqrt(MSE) (Rybkin et al. 2021); no parameters.

    Per-example log-likelihoods depend on the whole batch (see the module docstring). ``sigma`` reports the
    sigma* of the last ``log_prob`` call (1.0 before the first), kept in a non-persistent buffer so it never
    enters checkpoints.
    """

    params_per_channel = 1

    def __init__(self, data_shape: Sequence[int], min_log_sigma: float = -6.0) -> None:
        super().__init__(data_shape)
        self.min_log_sigma = float(min_log_sigma)
        self.register_buffer("last_sigma", torch.tensor(1.0), persistent=False)

    @property
    def sigma(self) -> float:
        """sigma* used by the last ``log_prob`` (a Python float, for logging)."""
        return float(self.last_sigma)

    def forward(self, h: torch.Tensor) -> BatchOptimalGaussian:
        (mean,) = self.split(h)  # (*batch, *data_shape)
        return BatchOptimalGaussian(mean, self.event_dim, self.min_log_sigma, self.last_sigma)

    def stats(self) -> dict[str, float]:
        return {"sigma": self.sigma}

    def extra_repr(self) -> str:
        return f"data_shape={self.data_shape}, min_log_sigma={self.min_log_sigma}"
