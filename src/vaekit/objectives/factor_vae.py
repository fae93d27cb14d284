"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising"): the ELBO plus gamma times a discriminator's
estimate of the total correlation of q(z) (their Eq. 2-3):

    loss_VAE = mean_i [ -log p(x_i|z_i) + KL_i + gamma * (logit D(z_i) - logit (1 - D(z_i))) ],

where D(z) is the discriminator's probability that z comes from q(z) rather than from prod_j q(z_j); samples of
prod_j q(z_j) are the batch's codes with every dimension permuted independently across the batch (their
Algorithm 1). The discriminator, an MLP with its own Adam optimizer (``optimizers()``; checkpointed by the
trainer), is trained in ``auxiliary_step`` with the cross-entropy
-1/2 [mean log D(z) + mean log(1 - D(z_perm))] on the codes of the step just taken. Being its own optimizer's, its
parameters are not among ``joint_parameters()``, so the trainer's optimizer never moves them.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.models.contract import CONTINUOUS, require
from vaekit.objectives.elbo import Objective, ObjectiveResult
from vaekit.objectives.bounds import single_group_terms

__all__ = ["FactorVAE", "permute_dims"]

_PERM_SEED = 0x5EED_FAC7  # base of the per-step permutation seeds


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, D) -> (B, D) with each column permuted independently: a sample of prod_j q(z_j) (Kim & Mnih, Alg. 1)."""
    b, d = z.shape
    idx = torch.argsort(torch.rand(b, d, device=z.device, generator=generator), dim=0)  # (B, D) one per dimension
    return torch.gather(z, 0, idx)


class FactorVAE(Objective):
    """FactorVAE loss (module doc). latent_dim: D; hidden: the discriminator's layers (the paper: 6 x 1000,
    LeakyReLU 0.2); disc_lr, disc_betas: its Adam (the paper: 1e-4, (0.5, 0.9)); beta: the KL weight (1)."""

    def __init__(self, latent_dim: int, gamma: float = 10.0, hidden: Sequence[int] = (1000,) * 6,
                 disc_lr: float = 1e-4, disc_betas: Sequence[float] = (0.5, 0.9), beta: float = 1.0) -> None:
        super().__init__()
        if gamma < 0 or beta < 0 or disc_lr <= 0 or latent_dim < 2:
            raise ValueError("factor-vae needs gamma >= 0, beta >= 0, disc_lr > 0 and at least 2 latent dimensions")
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.LeakyReLU(0.2)]
            width = int(h)
        self.discriminator = nn.Sequential(*layers, nn.Linear(width, 2))  # logits [from q(z), from prod q(z_j)]
        self.gamma, self.beta = float(gamma), float(beta)
        self.disc_opt = torch.optim.Adam(self.discriminator.parameters(), lr=disc_lr, betas=tuple(disc_betas))
        self._codes: torch.Tensor | None = None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"discriminator": self.disc_opt}

    def _on(self, device: torch.device) -> None:
        if next(self.discriminator.parameters()).device != device:
            self.discriminator.to(device)  # in place: the optimizer keeps the same tensors

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:
        if hasattr(model, "capabilities"):  # codes permuted per dimension must still be codes: not on a sphere
            require(model, CONTINUOUS, "factor-vae (codes with every dimension permuted across the batch)")
        g, log_px_z, kl = single_group_terms(model, x, "factor-vae", check)  # (B,) each
        if g.z.ndim != 2:
            raise ValueError(f"factor-vae needs codes of shape (B, D), got {tuple(g.z.shape)}")
        self._on(g.z.device)
        logits = self.discriminator(g.z)  # (B, 2)
        tc = logits[:, 0] - logits[:, 1]  # (B,) log D(z) / (1 - D(z)): the density-ratio estimate of TC
        self._codes = g.z.detach()
        loss = (self.beta * kl - log_px_z + self.gamma * tc).mean()
        return ObjectiveResult(loss, log_px_z, kl, self.beta, terms={"tc": tc})

    def discriminator_loss(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cross-entropy of telling codes (label 0) from dimension-permuted codes (label 1), z: (B, D)."""
        zeros = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        real = F.cross_entropy(self.discriminator(z), zeros)
        perm = F.cross_entropy(self.discriminator(permute_dims(z, generator)), zeros + 1)
        return 0.5 * (real + perm)

    def auxiliary_step(self, model: nn.Module, x: torch.Tensor, result: ObjectiveResult,
                       step: int) -> dict[str, float]:
        """One Adam step of the discriminator on the codes of the batch the main step used. The permutations come
        from a generator on the codes' device keyed by the step, so a resumed run draws the same ones."""
        z = self._codes
        if z is None or z.shape[0] != x.shape[0]:
            with torch.no_grad():
                z = model(x, None).groups[0].z
        self._codes = None
        gen = torch.Generator(device=z.device).manual_seed(_PERM_SEED + int(step))
        loss = self.discriminator_loss(z, gen)
        self.disc_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_opt.step()
        return {"disc_loss": float(loss.detach())}
