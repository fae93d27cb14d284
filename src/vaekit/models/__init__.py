"""Model wiring: VAE (MLP or conv)."""

from vaekit.models.build import build_vae
from vaekit.models.ladder import LadderVAE, build_ladder
from vaekit.models.vae import VAE, ELBOTerms

__all__ = ["VAE", "ELBOTerms", "build_vae", "LadderVAE", "build_ladder"]
