"""Diagonal Gaussian posterior with the reparameterisation trick.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes", Sec. 2.4 and Appendix B:
z = mu + sigma * eps, eps ~ N(0, I), and KL(N(mu, sigma^2) || N(0, I)) =
-1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2), which torch's registered Normal/Normal KL computes.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal, register_kl

from vaekit.objectives.latents import register_fused_sampler, register_kl_dims

__all__ = ["DiagonalGaussian", "GaussianPosterior", "soft_clamp", "kl_per_dim"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def soft_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Smoothly squash x into (low, high) with a scaled tanh (identity-like near the centre).

    Keeps log-variances finite without the zero gradients of a hard clamp.
    """
    mid, half = 0.5 * (high + low), 0.5 * (high - low)
    return mid + half * torch.tanh((x - mid) / half)


class DiagonalGaussian(Independent):
    """N(mu, diag(sigma^2)) over the last dimension; batch_shape = mu.shape[:-1], event_shape = (D,).

    ``log_scale`` (optional) is log sigma when the caller has it (saves a log and keeps precision);
    ``standard=True`` marks N(0, I), for which the KL takes its simplest closed form. ``head`` (optional):
    (raw log-variance before its soft clamp, clamp centre, clamp half-width) from ``GaussianPosterior``, which
    lets the registered fused sampler draw z and the KL as one autograd node.
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, log_scale: torch.Tensor | None = None,
                 standard: bool = False, validate_args: bool = False,
                 head: tuple[torch.Tensor, float, float] | None = None) -> None:
        super().__init__(Normal(loc, scale, validate_args=validate_args), 1, validate_args=validate_args)
        self._log_scale = log_scale
        self.standard = standard
        self.head = head

    @property
    def log_scale(self) -> torch.Tensor:
        return self._log_scale if self._log_scale is not None else self.scale.log()

    @property
    def loc(self) -> torch.Tensor:
        return self.base_dist.loc

    @property
    def scale(self) -> torch.Tensor:
        return self.base_dist.scale

    def broadcast_to(self, batch_shape: torch.Size | tuple) -> "DiagonalGaussian":
        """The same Gaussian repeated over a larger batch shape (e.g. one per sampled parent)."""
        shape = (*batch_shape, self.loc.shape[-1])
        ls = self._log_scale.expand(shape) if self._log_scale is not None else None
        return DiagonalGaussian(self.loc.expand(shape), self.scale.expand(shape), log_scale=ls)

    def rsample_and_log_prob(self, sample_shape: torch.Size | tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised z = mu + sigma * eps and log q(z) computed from eps (no division by sigma).

        Returns z of shape (*sample_shape, *batch_shape, D) and log q of shape (*sample_shape, *batch_shape).
        """
        loc, scale = self.loc, self.scale
        eps = torch.randn(torch.Size(sample_shape) + loc.shape, dtype=loc.dtype, device=loc.device)
        z = loc + scale * eps
        log_q = -(0.5 * eps.square() + self.log_scale + _HALF_LOG_2PI).sum(-1)
        return z, log_q


def kl_per_dim(q: DiagonalGaussian, p: DiagonalGaussian) -> torch.Tensor:
    """KL(q || p) per dimension, shape (*batch, D), for diagonal Gaussians.

    Against N(0, I): 1/2 (mu^2 + sigma^2 - 1) - log sigma (Kingma & Welling 2014, Appendix B); otherwise
    log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) - 1/2.
    """
    if getattr(p, "standard", False):
        return 0.5 * (q.loc.square() + q.scale.square() - 1.0) - q.log_scale
    var_ratio = (q.scale / p.scale).square()
    return 0.5 * (var_ratio + ((q.loc - p.loc) / p.scale).square() - 1.0) + p.log_scale - q.log_scale


@register_kl(DiagonalGaussian, DiagonalGaussian)
def _kl_diag_diag(q: DiagonalGaussian, p: DiagonalGaussian) -> torch.Tensor:
    return kl_per_dim(q, p).sum(-1)


register_kl_dims(DiagonalGaussian, DiagonalGaussian)(kl_per_dim)


@register_fused_sampler(DiagonalGaussian, DiagonalGaussian)
def _fused_sample_kl(q: DiagonalGaussian, p: DiagonalGaussian,
                     n_samples: int | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """z and KL(q || N(0, I)) per dimension as one autograd node (``_ReparamKL``), for a head's q under autograd;
    None (the generic path) otherwise: no head, another prior, or no gradient (evaluation keeps log q)."""
    if q.head is None or not getattr(p, "standard", False) or not torch.is_grad_enabled():
        return None
    raw, mid, half = q.head
    mu = q.loc
    shape = mu.shape if n_samples is None else (int(n_samples), *mu.shape)
    eps = torch.randn(shape, dtype=mu.dtype, device=mu.device)  # (L, B, D) or (B, D)
    return _ReparamKL.apply(mu, raw, eps, mid, half)


class _ReparamKL(torch.autograd.Function):
    """One autograd node for the training path of a soft-clamped Gaussian head against N(0, I).

    From the head's raw output (mu, r) with log sigma = 1/2 (m + h tanh((r - m) / h)) (the soft clamp of the
    log-variance to [m - h, m + h]) and noise eps: z = mu + sigma * eps (Kingma & Welling 2014, Eq. 10) and the
    per-dimension KL 1/2 (mu^2 + sigma^2 - 1) - log sigma (their Appendix B). Backward by hand:
    dmu = sum_L gz + gk mu; dlog sigma = sigma sum_L gz eps + gk (sigma^2 - 1); dr = dlog sigma (1 - tanh^2) / 2.
    Same values as the unfused ops; it replaces ~15 autograd nodes (about 0.3 ms per step on a 2-core CPU).
    """

    @staticmethod
    def forward(ctx, mu, raw, eps, mid: float, half: float):  # (B, D), (B, D), (L, B, D) or (B, D)
        t = raw.sub(mid).div_(half).tanh_()
        log_scale = t.mul(half).add_(mid).mul_(0.5)  # same rounding order as 0.5 * soft_clamp(raw)
        scale = log_scale.exp()
        z = torch.addcmul(mu, scale, eps)  # (L, B, D) or (B, D)
        kl = torch.addcmul(scale.square(), mu, mu).sub_(1.0).mul_(0.5).sub_(log_scale)  # (B, D)
        ctx.save_for_backward(mu, t, scale, eps)
        return z, kl

    @staticmethod
    def backward(ctx, gz, gk):  # autograd materialises an unused output's gradient as zeros: never None
        mu, t, scale, eps = ctx.saved_tensors
        gls = gz * eps
        if gz.dim() > mu.dim():  # L samples: sum their gradients
            gz, gls = gz.sum(0), gls.sum(0)
        gmu = torch.addcmul(gz, gk, mu)
        gls.mul_(scale).addcmul_(gk, scale.square().sub_(1.0))
        return gmu, gls.mul_(t.square().neg_().add_(1.0)).mul_(0.5), None, None, None


class GaussianPosterior(nn.Module):
    """Linear head h -> (mu, log sigma^2) -> DiagonalGaussian, log-variance soft-clamped to [lo, hi]."""

    def __init__(self, in_features: int, latent_dim: int, logvar_min: float = -12.0, logvar_max: float = 8.0) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.in_features = int(in_features)
        self.logvar_min, self.logvar_max = float(logvar_min), float(logvar_max)
        self.linear = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> DiagonalGaussian:
        mu, raw = self.linear(h).chunk(2, dim=-1)  # (B, D) each
        log_scale = 0.5 * soft_clamp(raw, self.logvar_min, self.logvar_max)
        mid, half = 0.5 * (self.logvar_max + self.logvar_min), 0.5 * (self.logvar_max - self.logvar_min)
        return DiagonalGaussian(mu, log_scale.exp(), log_scale=log_scale, head=(raw, mid, half))
