"""The model contract every family speaks (written down in DESIGN.md, "Contracts everything hangs on").

For a batch x a model answers one question: what are your latent groups — for each, q and p as torch
Distributions (p conditioned on the sampled parent group for a hierarchy) and the sample(s) z — and what is
p(x|z)? It does not compute its own bound: ``vaekit.objectives`` turns the answer into per-example terms, and the
trainer, evaluator, figures and apps only ever see this contract and the objective's typed result.

Lead shapes: ``n_samples=None`` draws one sample without a sample axis (lead (B,)); an integer S draws S
samples (lead (S, B)). Each group's z is (*lead, D_g); p(x|z) has batch_shape lead.

A discrete group may be summed out exactly instead of sampled (``enumerated=True``, M2's class y): its z holds
every value, (K, B, K) one-hot rows, and every other group and p(x|z) carry that enumeration axis as their first
batch axis, lead (*S, K, B). The objective weights by q's probabilities (the ELBO) or by p's (log p(x)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch.distributions import Distribution

__all__ = ["LatentGroup", "ModelOutput", "LatentVariableModel"]


@dataclass
class LatentGroup:
    """One latent group z_g: its posterior q(z_g | x, parents), its prior p(z_g | parents), and samples.

    z: (*lead, D_g) reparameterised samples (made by ``vaekit.objectives.sample_latent``).
    log_q: (*lead,) log q(z_g) computed alongside the sample when the sampler had it (flows, the
        reparameterised Gaussian); log_q_dims: (*lead, D_g) the same split over dimensions when the posterior
        offers it (IAF), which lets free bits act per dimension with a Monte Carlo KL.
    kl_dims: (B, D_g) the closed-form KL per dimension when a registered fused sampler computed it together
        with z (the Gaussian head against N(0, I) in training); None otherwise.
    enumerated: a discrete group whose values are all in z (see the module docstring); at most one per model.
    """

    name: str
    q: Distribution
    p: Distribution
    z: torch.Tensor
    log_q: torch.Tensor | None = None
    log_q_dims: torch.Tensor | None = None
    kl_dims: torch.Tensor | None = None
    enumerated: bool = False

    @property
    def dim(self) -> int:
        return int(self.z.shape[-1])


@dataclass
class ModelOutput:
    """A model's answer for a batch: its latent groups (bottom layer first) and p(x|z) (batch_shape lead).

    sample_dims: 0 (one sample, lead (B,)) or 1 (lead (S, B)).
    target: what px is a density of when it is not x itself (M1+M2: M1's posterior means of x), else None.
    """

    groups: list[LatentGroup]
    px: Distribution
    sample_dims: int = 0
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    target: torch.Tensor | None = None


@runtime_checkable
class LatentVariableModel(Protocol):
    """What the objective, trainer, evaluator, figures and apps rely on (checked by tests/models/test_contract.py).

    forward(x, n_samples=1, *, posterior=None, decoder_dtype=None) -> ModelOutput: ``posterior`` replaces the
        encoder's q(z|x) of a one-group model (per-point refinement); ``decoder_dtype`` runs the decoder net
        under autocast in that dtype (log-densities stay float32).
    check_input(x): ValueError on data that does not fit the model (shape, NaN/inf, likelihood support).
    extra_stats() -> {name: float}: statistics the model reports itself (a learned sigma), logged by the trainer.
    sample(n, temperature), reconstruct(x), embed(x): the uses (decoder means; posterior means (B, latent_dim)).
    """

    data_shape: tuple[int, ...]
    latent_dim: int

    def forward(self, x: torch.Tensor, n_samples: int | None = 1, **options) -> ModelOutput: ...

    def check_input(self, x: torch.Tensor) -> None: ...

    def extra_stats(self) -> dict[str, float]: ...

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...
