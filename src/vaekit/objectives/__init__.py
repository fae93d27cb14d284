"""Objectives on the model contract: per-example bound terms (ELBO, importance weights, IWAE), the training
objectives (ELBO with beta, KL warm-up and free bits; IWAE; β-TCVAE; FactorVAE), latent sampling and KL per group; schedules."""

from vaekit.objectives.bounds import ELBOTerms, elbo_terms, iwae_bound, log_weights
from vaekit.objectives.elbo import ELBO, IWAE, Objective, ObjectiveResult
from vaekit.objectives.factor_vae import FactorVAE
from vaekit.objectives.latents import group_kl, kl_dims, register_fused_sampler, register_kl_dims, sample_latent
from vaekit.objectives.schedules import kl_weight
from vaekit.objectives.tc import BetaTCVAE

__all__ = ["ELBO", "IWAE", "BetaTCVAE", "FactorVAE", "Objective", "ObjectiveResult", "ELBOTerms", "elbo_terms", "log_weights", "iwae_bound",
           "sample_latent", "group_kl", "kl_dims", "register_fused_sampler", "register_kl_dims", "kl_weight"]
