"""Objectives on the model contract: per-example bound terms (ELBO, importance weights, IWAE), the training
objectives (ELBO with beta, KL warm-up and free bits; IWAE, MIWAE, CIWAE, PIWAE, DReG; β-TCVAE; FactorVAE;
InfoVAE-MMD, WAE-MMD), latent sampling and KL per group; schedules.

Exports load on first use, so the registry of objective names and options (``vaekit.objectives.registry``) is
read without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ELBO", "IWAE", "BetaTCVAE", "FactorVAE", "Objective", "ObjectiveResult", "ELBOTerms", "elbo_terms", "log_weights", "iwae_bound",
           "sample_latent", "group_kl", "kl_dims", "register_fused_sampler", "register_kl_dims", "kl_weight",
           "MultiSampleBound", "MMDAutoencoder", "mmd2"]

_WHERE = {"ELBOTerms": "bounds", "elbo_terms": "bounds", "iwae_bound": "bounds", "log_weights": "bounds",
          "ELBO": "elbo", "IWAE": "elbo", "Objective": "elbo", "ObjectiveResult": "elbo", "FactorVAE": "factor_vae",
          "group_kl": "latents", "kl_dims": "latents", "register_fused_sampler": "latents",
          "register_kl_dims": "latents", "sample_latent": "latents", "kl_weight": "schedules", "BetaTCVAE": "tc",
          "MultiSampleBound": "iw_bounds", "MMDAutoencoder": "mmd", "mmd2": "mmd"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"vaekit.objectives.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'vaekit.objectives' has no attribute {name!r}")
