"""Helpers shared by the apps: capability checks, latents in prior units, per-pixel log-densities, per-example
ELBO, numpy conversion. Every app is written against the uses half of the model contract
(``vaekit.models.contract.LatentUses``) and asks for capabilities, never for a family."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Distribution, Independent

from vaekit.models.contract import CONTINUOUS, GAUSSIAN_POSTERIOR, GAUSSIAN_PRIOR, SINGLE_VECTOR, require
from vaekit.models.uses import decode_units, encode_units
from vaekit.utils import as_data_tensor, batches, eval_mode, evaluation_context, model_device

__all__ = ["require", "require_latent_units", "require_gaussian_units", "single_gaussian_posterior",
           "log_prior_units", "encode_units", "decode_units", "pixel_log_prob", "per_example_elbo", "as_data_tensor",
           "batches", "eval_mode", "evaluation_context", "model_device"]


def require_latent_units(model: nn.Module, what: str) -> None:
    """MissingCapability unless every latent group is continuous: the use then works on the flat prior-unit
    coordinates u (``vaekit.models.uses``), where the prior is N(0, I) whatever the family."""
    require(model, CONTINUOUS, what)


def require_gaussian_units(model: nn.Module, what: str) -> None:
    """MissingCapability unless every latent group is continuous with a Gaussian prior: the use puts the prior
    N(0, I) on the prior units u (MAP in u), which holds only then."""
    require(model, CONTINUOUS, what)
    require(model, GAUSSIAN_PRIOR, what)


def single_gaussian_posterior(model: nn.Module, x: torch.Tensor, what: str) -> Distribution:
    """q(z|x) of a one-vector model with a diagonal Gaussian posterior (MissingCapability otherwise)."""
    require(model, SINGLE_VECTOR, what)
    require(model, GAUSSIAN_POSTERIOR, what)
    return model.posteriors(x)[model.layout.groups[0].name]


def log_prior_units(u: torch.Tensor) -> torch.Tensor:
    """(*lead,) log N(u; 0, I) of flat prior units u (*lead, D): the prior in the coordinates u."""
    return -0.5 * (u.square().sum(-1) + u.shape[-1] * math.log(2 * math.pi))


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
