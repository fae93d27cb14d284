"""Training objectives: the (beta-weighted, warmed-up, free-bits) ELBO and the IWAE bound.

Units: nats per example; sums over pixels and latents, mean over the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaekit.objectives.schedules import kl_weight

__all__ = ["ObjectiveResult", "ELBO", "IWAE"]


@dataclass
class ObjectiveResult:
    """loss: scalar to minimise. log_px_z, kl: (B,) per-example terms in nats. beta: the KL weight used.

    ``elbo`` (B,) is the per-example bound: ``log_px_z - kl`` (computed when read, off the training hot path), or
    ``bound`` when the objective is another bound (IWAE). ``means``: the batch means of log p(x|z) and KL,
    detached, when the objective computed them anyway (the trainer's running averages reuse them).
    """

    loss: torch.Tensor
    log_px_z: torch.Tensor
    kl: torch.Tensor
    beta: float
    bound: torch.Tensor | None = None
    means: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def elbo(self) -> torch.Tensor:
        return self.bound if self.bound is not None else self.log_px_z - self.kl


class ELBO:
    """Negative ELBO loss  -E_q[log p(x|z)] + beta_t * KL  with L samples.

    beta_t = beta * min(1, step / warmup_steps) (KL warm-up). With ``free_bits = lambda > 0`` the KL term is
    sum_g max(lambda, E_batch[KL_g]) over groups g (Kingma et al. 2016, "Improving Variational Inference with
    Inverse Autoregressive Flow", Sec. C.8 / Eq. 15): one group per latent dimension for a diagonal Gaussian,
    per layer/dimension for hierarchical models, the whole z where the KL is a Monte Carlo estimate.
    The per-example ``elbo`` reported is always the true (beta = 1, no free bits) ELBO.
    """

    def __init__(self, beta: float = 1.0, warmup_steps: int = 0, free_bits: float = 0.0, n_samples: int = 1) -> None:
        if beta < 0 or free_bits < 0 or n_samples < 1 or warmup_steps < 0:
            raise ValueError("ELBO needs beta >= 0, free_bits >= 0, warmup_steps >= 0 and n_samples >= 1")
        self.beta, self.warmup_steps = float(beta), int(warmup_steps)
        self.free_bits, self.n_samples = float(free_bits), int(n_samples)

    def __call__(self, model, x: torch.Tensor, step: int | None = None, check: bool = True) -> ObjectiveResult:
        t = model.elbo_terms(x, self.n_samples, check=check)
        beta = kl_weight(step, self.beta, self.warmup_steps)
        kl_mean, rec_mean = t.kl.mean(), t.log_px_z.mean()
        kl_term = torch.clamp(t.kl_groups.mean(0), min=self.free_bits).sum() if self.free_bits > 0 else kl_mean
        loss = (kl_term if beta == 1.0 else beta * kl_term) - rec_mean  # one graph node fewer at beta 1
        return ObjectiveResult(loss, t.log_px_z, t.kl, beta, means=(rec_mean.detach(), kl_mean.detach()))


class IWAE:
    """Importance-weighted bound (Burda et al. 2016, Eq. 8): log (1/k) sum_k w_k, w_k = p(x, z_k) / q(z_k|x)."""

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError("IWAE needs k >= 1")
        self.k = int(k)

    def bound(self, model, x: torch.Tensor) -> torch.Tensor:
        """(B,) IWAE_k lower bound per example."""
        lw = model.log_weights(x, self.k)  # (k, B)
        return torch.logsumexp(lw, 0) - math.log(self.k)

    def __call__(self, model, x: torch.Tensor, step: int | None = None, check: bool = True) -> ObjectiveResult:
        if check:
            model.check_input(x)
        lw = model.log_weights(x, self.k)  # (k, B)
        bound = torch.logsumexp(lw, 0) - math.log(self.k)
        nan = torch.full_like(bound, float("nan"))
        return ObjectiveResult(-bound.mean(), nan, nan, 1.0, bound=bound)
