"""Inverse autoregressive flow posterior (Kingma et al. 2016, "Improving Variational Inference with Inverse
Autoregressive Flow", Algorithm 1 and Eq. 10-14).

    [mu_0, log sigma_0^2, c] = Linear(h)            (log-variance soft-clamped as in GaussianPosterior)
    eps ~ N(0, I);  z_0 = mu_0 + sigma_0 * eps;  l = -sum_d (1/2 eps_d^2 + log sigma_0,d + 1/2 log 2 pi)
    for t = 1..T:  [m, s] = MADE_t(z_{t-1}, c);  sigma = sigmoid(s);  z_t = sigma * z_{t-1} + (1 - sigma) * m
                   l = l - sum_d log sigma_d                       (Eq. 14, the LSTM-style stable update)
    log q(z_T | x) = l

``s`` gets a constant forget-gate bias (+1 or +2) so sigma starts near 0.73 / 0.88 and every step starts close
to (a contraction of) the identity (paper Sec. 4 / Appendix). log sigma is computed with ``logsigmoid``.

Permutation bookkeeping: the paper reverses the order of the variables between steps. Here z always stays in
the original coordinates and step t instead uses the autoregressive order 0..D-1 (t even) or D-1..0 (t odd)
in its MADE masks. This is the same flow as "reverse z, apply a step with order 0..D-1, reverse back", but
no tensor is ever permuted, so the per-dimension log-density terms below stay aligned with the variables:

    log q(z_T)_d = -1/2 eps_d^2 - log sigma_0,d - 1/2 log 2 pi - sum_t log sigma_t,d     (sum over d = log q).

Sampling never inverts the flow. ``log_prob(z)`` for an arbitrary z inverts each step by D fixed-point passes
(pass k makes the k-th variable of the step's order exact, because m_d, s_d depend only on earlier variables).
``mean`` raises NotImplementedError (no closed form); ``VAE.embed`` then falls back to a sample mean.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from vaekit.nn.made import MADE
from vaekit.posteriors.gaussian import soft_clamp
from vaekit.utils import full_precision

__all__ = ["IAFStep", "IAFDistribution", "IAFPosterior"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class IAFStep(nn.Module):
    """One IAF step: (z, c) -> (m, s) by a MADE over z (order ``order``) with context c added to its hidden layers."""

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        context: int,
        order: Sequence[int],
        act: str = "elu",
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        self.made = MADE(dim, hidden, n_params=2, context_features=context, order=order, act=act)
        self.forget_bias = float(forget_bias)
        self.order = [int(i) for i in order]

    def forward(self, z: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, s), each of the shape of z; s already includes the forget-gate bias."""
        m, s = full_precision(self.made(z, c)).unbind(-2)  # (*S, B, D) each, float32 under autocast
        return m, s + self.forget_bias

    def step(self, z: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """z_t = sigma * z + (1 - sigma) * m and log sigma (per dimension), Eq. 14."""
        m, s = self(z, c)
        sigma = torch.sigmoid(s)
        return sigma * z + (1 - sigma) * m, F.logsigmoid(s)

    def inverse(self, z_t: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The z with step(z) = z_t, and log sigma at that z: D sequential passes (m, s see only earlier variables)."""
        z = z_t
        log_sigma = torch.zeros_like(z_t)
        for _ in range(z_t.shape[-1]):  # after pass k, the first k + 1 variables of the order are exact
            m, s = self(z, c)
            log_sigma = F.logsigmoid(s)
            z = m + (z_t - m) * torch.exp(-log_sigma)  # solve z_t = sigma z + (1 - sigma) m for z
        return z, log_sigma


class IAFDistribution(Distribution):
    """q(z|x) = base diagonal Gaussian pushed through T IAF steps; batch_shape (B,), event_shape (D,)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        context: torch.Tensor | None,
        steps: Sequence[IAFStep],
        validate_args: bool = False,
    ) -> None:
        self.loc, self.scale, self.context = loc, scale, context  # (B, D), (B, D), (B, C) or None
        self.steps = list(steps)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    # -- the flow ------------------------------------------------------------------------------------------
    def flow(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_T and the per-dimension log q terms (Algorithm 1) for base noise eps of shape (*S, B, D)."""
        z = self.loc + self.scale * eps  # (*S, B, D)
        log_q = -(0.5 * eps.square() + self.scale.log() + _HALF_LOG_2PI)  # (*S, B, D)
        for step in self.steps:
            z, log_sigma = step.step(z, self.context)
            log_q = log_q - log_sigma
        return z, log_q

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """eps with flow(eps) = z, and the per-dimension log q(z) terms (*S, B, D); uses D passes per step."""
        log_det = torch.zeros_like(z)  # sum_t log sigma_t, per dimension
        for step in reversed(self.steps):
            z, log_sigma = step.inverse(z, self.context)
            log_det = log_det + log_sigma
        eps = (z - self.loc) / self.scale
        log_q = -(0.5 * eps.square() + self.scale.log() + _HALF_LOG_2PI) - log_det
        return eps, log_q

    def _noise(self, sample_shape: torch.Size | tuple) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape
        return torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)

    # -- the Distribution interface --------------------------------------------------------------------------
    def rsample_and_log_prob_dims(self, sample_shape: torch.Size | tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """z (*S, B, D) and per-dimension log q terms (*S, B, D) whose sum over D is log q(z|x)."""
        return self.flow(self._noise(sample_shape))

    def rsample_and_log_prob(self, sample_shape: torch.Size | tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """z (*S, B, D) and log q(z|x) (*S, B), computed during sampling (no inversion)."""
        z, log_q = self.rsample_and_log_prob_dims(sample_shape)
        return z, log_q.sum(-1)

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.flow(self._noise(sample_shape))[0]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log q(z|x) for any z of shape (*S, B, D), by inverting the flow (T * D network passes)."""
        if value.shape[-1:] != self.event_shape:
            raise ValueError(f"IAF log_prob expects z with last dimension {self.event_shape[0]}, got {tuple(value.shape)}")
        log_q = self.inverse(value)[1].sum(-1)  # (*S, B)
        # far in the tails the D fixed-point passes can overflow (|eps| ~ 1 / sigma -> inf); the density there
        # is 0 because 1/2 eps^2 outgrows -log sigma, so report -inf instead of nan for finite inputs
        overflow = ~torch.isfinite(log_q) & torch.isfinite(value).all(-1)
        return torch.where(overflow, torch.full_like(log_q, -math.inf), log_q)

    @property
    def mean(self) -> torch.Tensor:
        """No closed form: raises NotImplementedError (VAE.embed then averages samples)."""
        raise NotImplementedError("the mean of an IAF posterior has no closed form; average rsample() draws")


class IAFPosterior(nn.Module):
    """Posterior head h (B, F) -> IAFDistribution with ``steps`` IAF steps of MADE(``hidden``) nets.

    context: size of the context vector c computed from h and fed to every step (0 for none).
    forget_bias: constant added to s (paper: +1 or +2), so sigma = sigmoid(s) starts near 0.73 / 0.88.
    logvar_min / logvar_max: soft clamp of log sigma_0^2, as in GaussianPosterior.
    """

    gaussian = False  # q(z|x) is a flow, not a diagonal Gaussian (see ``LatentUses.capabilities``)

    def __init__(
        self,
        in_features: int,
        latent_dim: int,
        steps: int = 2,
        hidden: Sequence[int] = (320, 320),
        context: int = 64,
        act: str = "elu",
        forget_bias: float = 1.0,
        logvar_min: float = -12.0,
        logvar_max: float = 8.0,
    ) -> None:
        super().__init__()
        if latent_dim < 1 or in_features < 1:
            raise ValueError(f"IAF posterior needs in_features >= 1 and latent_dim >= 1, got {in_features}, {latent_dim}")
        if steps < 0 or context < 0:
            raise ValueError(f"IAF posterior needs steps >= 0 and context >= 0, got steps={steps}, context={context}")
        if not logvar_min < logvar_max:
            raise ValueError(f"IAF posterior needs logvar_min < logvar_max, got {logvar_min} >= {logvar_max}")
        if not math.isfinite(forget_bias):
            raise ValueError(f"IAF posterior forget_bias must be finite (e.g. 1.0 or 2.0), got {forget_bias}")
        self.in_features, self.latent_dim, self.context = int(in_features), int(latent_dim), int(context)
        self.logvar_min, self.logvar_max = float(logvar_min), float(logvar_max)
        self.linear = nn.Linear(in_features, 2 * latent_dim + context)
        forward_order, reversed_order = list(range(latent_dim)), list(range(latent_dim))[::-1]
        self.steps = nn.ModuleList(
            IAFStep(latent_dim, hidden, context, forward_order if t % 2 == 0 else reversed_order, act, forget_bias)
            for t in range(int(steps))
        )

    def forward(self, h: torch.Tensor) -> IAFDistribution:
        out = full_precision(self.linear(h))  # (B, 2D + C), float32 under autocast
        d = self.latent_dim
        mu, logvar, c = out[..., :d], out[..., d:2 * d], out[..., 2 * d:]  # (B, D), (B, D), (B, C)
        logvar = soft_clamp(logvar, self.logvar_min, self.logvar_max)
        return IAFDistribution(mu, torch.exp(0.5 * logvar), c if self.context > 0 else None, self.steps)
