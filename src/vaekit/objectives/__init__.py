"""Objectives: ELBO (beta, KL warm-up, free bits) and the IWAE bound; schedules."""

from vaekit.objectives.elbo import ELBO, IWAE, ObjectiveResult
from vaekit.objectives.schedules import kl_weight

__all__ = ["ELBO", "IWAE", "ObjectiveResult", "kl_weight"]
