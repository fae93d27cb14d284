"""Inference on z for one observation per example: the MAP latent by Adam, and posterior samples by importance
resampling from a Laplace approximation.

Both take ``log_joint(z) -> (*lead, B)``, the unnormalised log-posterior log p(y | z) + log p(z) of each
example for latents z (*lead, B, D); each example is independent (its own Adam moments, its own weights).

- ``map_estimate``: z* = argmax_z log_joint(z) from z0 by Adam, learning rate cosine-decayed to zero (what
  ``vaekit.apps.inpaint`` has always used).
- ``laplace_precision``: the Hessian of -log_joint at z* (Laplace's method; MacKay 2003, "Information Theory,
  Inference, and Learning Algorithms", Ch. 27), its eigenvalues floored at ``floor`` (default 1, the prior's
  precision: no proposal wider than the prior in any direction, and positive definite where the decoder makes
  -log_joint non-convex).
- ``importance_resample``: M proposals z_m ~ q = N(z*, scale^2 H^-1), self-normalised weights
  w_m ∝ exp(log_joint(z_m) - log q(z_m)), and S draws with replacement by those weights (sampling-importance-
  resampling, Rubin 1987; Smith & Gelfand 1992). The effective sample size 1 / sum w_m^2 (Kong 1992) says how
  far q is from the posterior: M when the posterior is the Gaussian q itself (a linear-Gaussian model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["map_estimate", "laplace_precision", "ImportanceSample", "importance_resample"]

LogJoint = Callable[[torch.Tensor], torch.Tensor]


def map_estimate(log_joint: LogJoint, z0: torch.Tensor, steps: int = 300, lr: float = 0.05) -> torch.Tensor:
    """(*lead, B, D) argmax_z log_joint(z) from z0 by ``steps`` Adam steps (learning rate ``lr`` cosine-decayed
    to zero); only z's gradient is taken, so a model's weights are left untouched."""
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    z = z0.detach().clone().requires_grad_(True)  # (*lead, B, D)
    opt = torch.optim.Adam([z], lr=lr)
    for t in range(int(steps)):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * t / steps))
        (z.grad,) = torch.autograd.grad(-log_joint(z).sum(), [z])
        opt.step()
    return z.detach()


def laplace_precision(log_joint: LogJoint, z: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """(B, D, D) -Hessian of log_joint at z (B, D), symmetrised, eigenvalues floored at ``floor`` (D backward
    passes through the batch: the examples are independent, so one pass gives row d of every example's Hessian)."""
    z = z.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(log_joint(z).sum(), [z], create_graph=True)  # (B, D)
        rows = []
        for d in range(z.shape[-1]):
            (h,) = torch.autograd.grad(g[:, d].sum(), [z], retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(z) if h is None else h)  # (B, D): row d of each Hessian
    hess = -torch.stack(rows, 1).detach()  # (B, D, D)
    hess = 0.5 * (hess + hess.transpose(1, 2))
    evals, evecs = torch.linalg.eigh(hess)  # (B, D), (B, D, D)
    return (evecs * evals.clamp_min(floor)[:, None, :]) @ evecs.transpose(1, 2)


@dataclass
class ImportanceSample:
    """proposals: (M, B, D) draws from q; weights: (M, B) self-normalised importance weights (sum 1 per example);
    samples: (S, B, D) draws with replacement by the weights; ess: (B,) effective sample size 1 / sum w^2."""

    proposals: torch.Tensor
    weights: torch.Tensor
    samples: torch.Tensor
    ess: torch.Tensor


def importance_resample(log_joint: LogJoint, z_map: torch.Tensor, precision: torch.Tensor, n_samples: int,
                        n_proposals: int = 256, scale: float = 1.0, generator: torch.Generator | None = None,
                        chunk: int = 64) -> ImportanceSample:
    """Sampling-importance-resampling from q = N(z_map, scale^2 precision^-1) (see the module docstring).
    z_map: (B, D); precision: (B, D, D) positive definite; noise drawn on the CPU from ``generator``."""
    if int(n_samples) != n_samples or n_samples < 1 or int(n_proposals) != n_proposals or n_proposals < 1:
        raise ValueError(f"samples and proposals must be positive integers, got {n_samples!r}, {n_proposals!r}")
    if not scale > 0:
        raise ValueError(f"the proposal scale must be positive, got {scale!r}")
    B, D = z_map.shape
    L = torch.linalg.cholesky(precision)  # (B, D, D): precision = L L^T
    eps = torch.randn((int(n_proposals), B, D), generator=generator, dtype=z_map.dtype).to(z_map.device)  # (M, B, D)
    # z = z* + scale L^-T eps has covariance scale^2 (L L^T)^-1; log q(z) = log N(eps; 0, I) + log|L| - D log scale
    step = torch.linalg.solve_triangular(L.transpose(1, 2), eps.permute(1, 2, 0), upper=True)  # (B, D, M)
    z = z_map + scale * step.permute(2, 0, 1)  # (M, B, D)
    log_det = torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(-1)  # (B,)
    log_q = -0.5 * eps.square().sum(-1) - 0.5 * D * math.log(2 * math.pi) + log_det - D * math.log(scale)  # (M, B)
    with torch.no_grad():
        log_p = torch.cat([log_joint(z[i:i + chunk]) for i in range(0, z.shape[0], chunk)])  # (M, B)
    log_w = log_p - log_q
    log_w = torch.where(torch.isnan(log_w), torch.full_like(log_w, -math.inf), log_w)
    w = torch.softmax(log_w, 0)  # (M, B)
    idx = torch.multinomial(w.T.double().cpu(), int(n_samples), replacement=True, generator=generator)  # (B, S)
    samples = z.gather(0, idx.T.to(z.device)[:, :, None].expand(-1, -1, D))  # (S, B, D)
    return ImportanceSample(z, w, samples, 1.0 / w.square().sum(0))
