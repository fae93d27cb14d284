"""A learned flow prior: a masked autoregressive flow (Papamakarios et al. 2017, "Masked Autoregressive Flow for
Density Estimation", Eq. 2-5) on a standard normal base.

Step t maps x to x' with x'_d = (x_d - m_d(x_<d)) exp(-s_d(x_<d)), (m, s) from a MADE in the step's order
(0..D-1 for even t, D-1..0 for odd t, so that no variable is always first). With x_0 = z and eps = x_T:

    log p(z) = log N(eps; 0, I) - sum_t sum_d s_{t,d}                                  (change of variables)

Density evaluation (the training path: log p at the posterior's samples) is one pass per step; sampling
inverts each step by D sequential passes (x_d = x'_d exp(s_d) + m_d), at a temperature T from eps ~ N(0, T^2 I).
s = 3 tanh(raw / 3) keeps every scale in [e^-3, e^3].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.distributions import Distribution, constraints

from vaekit.nn.made import MADE

__all__ = ["FlowPrior", "FlowDistribution"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class _MAFStep(nn.Module):
    def __init__(self, dim: int, hidden: Sequence[int], order: Sequence[int], act: str) -> None:
        super().__init__()
        self.made = MADE(dim, hidden, n_params=2, order=order, act=act)
        nn.init.zeros_(self.made.out.weight)  # every step starts as the identity
        nn.init.zeros_(self.made.out.bias)

    def params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, raw = self.made(x).unbind(-2)  # (*lead, D) each
        return m, 3.0 * torch.tanh(raw / 3.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x', sum_d s_d) with x' = (x - m) exp(-s): towards the base."""
        m, s = self.params(x)
        return (x - m) * torch.exp(-s), s.sum(-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The x with forward(x)[0] = y: D passes (after pass k the first k + 1 variables of the order are exact)."""
        x = torch.zeros_like(y)
        for _ in range(y.shape[-1]):
            m, s = self.params(x)
            x = y * torch.exp(s) + m
        return x


class FlowDistribution(Distribution):
    """p(z) of a ``FlowPrior``: batch (), event (D,). ``log_prob`` in one pass per step; ``rsample`` inverts."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True
    temperature_note = "the flow prior's map of ε ~ N(0, T² I)"

    def __init__(self, steps: Sequence[_MAFStep], dim: int, like: torch.Tensor) -> None:
        self.steps, self.dim, self._like = list(steps), int(dim), like
        super().__init__(torch.Size(), torch.Size([dim]), validate_args=False)

    def to_base(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps (*lead, D), sum of the log-determinants of z -> eps (*lead,))."""
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for step in self.steps:
            z, s = step(z)
            log_det = log_det - s
        return z, log_det

    def from_base(self, eps: torch.Tensor) -> torch.Tensor:
        for step in reversed(self.steps):
            eps = step.inverse(eps)
        return eps

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        eps, log_det = self.to_base(value)
        return -(0.5 * eps.square() + _HALF_LOG_2PI).sum(-1) + log_det  # (*lead,)

    def sample_at_temperature(self, sample_shape: torch.Size | tuple = (), temperature: float = 1.0,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """(*sample_shape, D): the flow applied to eps ~ N(0, T^2 I) (no gradient)."""
        dev = generator.device if generator is not None else self._like.device
        shape = (*sample_shape, self.dim)
        eps = torch.randn(shape, generator=generator, device=dev, dtype=self._like.dtype).to(self._like.device)
        with torch.no_grad():
            return self.from_base(temperature * eps)

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        eps = torch.randn((*sample_shape, self.dim), dtype=self._like.dtype, device=self._like.device)
        return self.from_base(eps)

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.sample_at_temperature(sample_shape)


class FlowPrior(nn.Module):
    """p(z): ``steps`` MAF steps of MADE(``hidden``) nets on N(0, I); each step starts as the identity, so the
    prior starts as N(0, I). A KL with no closed form: the Monte Carlo estimate."""

    gaussian = False

    def __init__(self, latent_dim: int, data_shape: Sequence[int] | None = None, steps: int = 4,
                 hidden: Sequence[int] = (64, 64), act: str = "elu") -> None:
        super().__init__()
        if latent_dim < 1 or steps < 1:
            raise ValueError(f"a flow prior needs latent_dim >= 1 and steps >= 1, got {latent_dim}, {steps}")
        self.latent_dim = int(latent_dim)
        fwd, rev = list(range(latent_dim)), list(range(latent_dim))[::-1]
        self.steps = nn.ModuleList(_MAFStep(latent_dim, hidden, fwd if t % 2 == 0 else rev, act)
                                   for t in range(int(steps)))

    def forward(self) -> FlowDistribution:
        return FlowDistribution(self.steps, self.latent_dim, self.steps[0].made.out.weight)
