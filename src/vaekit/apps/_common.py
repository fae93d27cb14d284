"""Helpers shared by the apps: model checks, per-pixel log-densities, per-example ELBO, numpy conversion."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, Independent

from vaekit.utils import as_data_tensor, batches, eval_mode, evaluation_context, model_device
from vaekit.posteriors.gaussian import DiagonalGaussian

__all__ = ["require_vae", "require_gaussian_posterior", "pixel_log_prob", "per_example_elbo",
           "as_data_tensor", "batches", "eval_mode", "evaluation_context", "model_device"]


def require_vae(model: nn.Module, what: str) -> None:
    """ValueError unless ``model`` has ``encode(x) -> q(z|x)`` and ``decode(z) -> p(x|z)`` (a one-latent VAE)."""
    if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
        raise ValueError(f"{what} needs a VAE with one latent vector (model.family=vae); "
                         f"{type(model).__name__} has no encode/decode")


def require_gaussian_posterior(model: nn.Module, x: torch.Tensor, what: str) -> DiagonalGaussian:
    """q(z|x) for ``x``, or ValueError when it is not a diagonal Gaussian (e.g. an IAF posterior)."""
    require_vae(model, what)
    q = model.encode(x)
    if not isinstance(q, DiagonalGaussian):
        raise ValueError(f"{what} needs a diagonal Gaussian posterior (model.posterior=gaussian); "
                         f"this model's q(z|x) is {type(q).__name__}")
    return q


def pixel_log_prob(p: Distribution, x: torch.Tensor) -> torch.Tensor:
    """Per-element log p(x_i|z), shape (*batch, *data_shape), of a likelihood that factorises over elements
    (an ``Independent`` over the data dimensions, as every vaekit likelihood returns)."""
    if not isinstance(p, Independent):
        raise ValueError(f"per-pixel log-densities need a likelihood that factorises over pixels (an Independent "
                         f"distribution); got {type(p).__name__}")
    return p.base_dist.log_prob(x)


def per_example_elbo(model: nn.Module, x: torch.Tensor, n_samples: int = 1, batch_size: int = 500,
                     seed: int | None = None) -> torch.Tensor:
    """(N,) float64 ELBO(x_i) = E_q[log p(x_i|z)] - KL(q(z|x_i) || p(z)) with ``n_samples`` samples per example
    (Kingma & Welling 2014, Eq. 3), from the dataset loop ``vaekit.evaluation.per_example_terms``."""
    from vaekit.evaluation import per_example_terms

    return per_example_terms(model, x, batch_size, n_samples, seed, check=False)["elbo"]
