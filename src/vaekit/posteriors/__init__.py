"""q(z|x) heads: modules mapping encoder features h to a Distribution over z.

Every head's distribution offers ``rsample_and_log_prob(sample_shape) -> (z, log q(z|x))``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from vaekit.posteriors.gaussian import DiagonalGaussian, GaussianPosterior, soft_clamp
from vaekit.posteriors.iaf import IAFDistribution, IAFPosterior

__all__ = ["DiagonalGaussian", "GaussianPosterior", "IAFDistribution", "IAFPosterior", "soft_clamp", "POSTERIORS",
           "build_posterior"]

POSTERIORS: dict[str, Callable[..., nn.Module]] = {
    "gaussian": GaussianPosterior,
    "iaf": IAFPosterior,
}


def build_posterior(name: str, in_features: int, latent_dim: int, **kwargs: Any) -> nn.Module:
    """Build a posterior head by name (see ``POSTERIORS``)."""
    if name not in POSTERIORS:
        raise ValueError(f"unknown posterior {name!r} (choose from {', '.join(sorted(POSTERIORS))})")
    return POSTERIORS[name](in_features, latent_dim, **kwargs)
