"""Priors p(z): modules whose ``forward()`` returns a Distribution over the latent vector (event shape (D,)).

Names and typed options are declared in ``vaekit.priors.registry`` (read without torch); the classes load on
first use. A prior with ``needs_encoder = True`` (the VampPrior) is called with the model's map x -> q(z|x);
``gaussian = True`` marks a diagonal Gaussian prior, whose prior units u = (z - mu_p) / sigma_p are N(0, I);
``euclidean = False`` a prior whose z is confined to a sphere (no free coordinates in R^D).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from torch import nn

__all__ = ["StandardNormal", "GaussianMixture", "MixturePrior", "VampPrior", "FlowPrior", "FlowDistribution",
           "SpherePrior", "HypersphericalUniform", "build_prior"]

_WHERE = {"StandardNormal": "standard", "GaussianMixture": "mixture", "MixturePrior": "mixture",
          "VampPrior": "mixture", "FlowPrior": "flow", "FlowDistribution": "flow", "SpherePrior": "sphere",
          "HypersphericalUniform": "sphere"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"vaekit.priors.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'vaekit.priors' has no attribute {name!r}")


def build_prior(name: str, latent_dim: int, data_shape: Sequence[int], **kwargs: Any) -> nn.Module:
    """Build a prior by name (see ``vaekit.priors.registry``) for ``latent_dim`` latents and data of ``data_shape``."""
    from vaekit.priors.registry import PRIOR_SPECS, load_prior

    if name not in PRIOR_SPECS:
        raise ValueError(f"unknown prior {name!r} (choose from {', '.join(sorted(PRIOR_SPECS))})")
    return load_prior(name)(latent_dim, data_shape=tuple(int(s) for s in data_shape), **kwargs)
