"""q(z|x) heads: modules mapping encoder features h to a Distribution over z.

Every head's distribution offers ``rsample_and_log_prob(sample_shape) -> (z, log q(z|x))``. Names and their
typed options are declared in ``vaekit.posteriors.registry`` (read without torch); the classes below load on
first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["DiagonalGaussian", "GaussianPosterior", "IAFDistribution", "IAFPosterior", "VonMisesFisher", "VMFPosterior",
           "soft_clamp", "POSTERIORS", "build_posterior"]

_WHERE = {"DiagonalGaussian": "gaussian", "GaussianPosterior": "gaussian", "soft_clamp": "gaussian",
          "IAFDistribution": "iaf", "IAFPosterior": "iaf", "VonMisesFisher": "vmf", "VMFPosterior": "vmf"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"vaekit.posteriors.{_WHERE[name]}"), name)
    if name == "POSTERIORS":  # name -> class, in the registry's order; built once
        from vaekit.posteriors.registry import POSTERIOR_SPECS, load_posterior

        globals()[name] = {n: load_posterior(n) for n in POSTERIOR_SPECS}
        return globals()[name]
    raise AttributeError(f"module 'vaekit.posteriors' has no attribute {name!r}")


def build_posterior(name: str, in_features: int, latent_dim: int, **kwargs: Any) -> nn.Module:
    """Build a posterior head by name (see ``vaekit.posteriors.registry``)."""
    from vaekit.posteriors.registry import POSTERIOR_SPECS, load_posterior

    if name not in POSTERIOR_SPECS:
        raise ValueError(f"unknown posterior {name!r} (choose from {', '.join(sorted(POSTERIOR_SPECS))})")
    return load_posterior(name)(in_features, latent_dim, **kwargs)
