"""MMD-regularised autoencoders: InfoVAE-MMD and WAE-MMD, with RBF and inverse multiquadratic kernels.

The squared maximum mean discrepancy between the aggregate posterior q(z) (the batch's codes z_i ~ q(z|x_i)) and
the prior p(z) (as many draws z~_j ~ p(z)), Gretton et al. 2012, "A Kernel Two-Sample Test", Eq. 3 (the unbiased
U-statistic, Lemma 6) and Eq. 5 (the biased V-statistic):

    MMD_u^2 = 1/(n(n-1)) sum_{i != j} [k(z_i, z_j) + k(z~_i, z~_j)] - 2/n^2 sum_{i, j} k(z_i, z~_j)
    MMD_b^2 = 1/n^2 sum_{i, j} [k(z_i, z_j) + k(z~_i, z~_j) - 2 k(z_i, z~_j)].

Kernels: RBF k(a, b) = exp(-||a - b||^2 / (2 s^2)) and IMQ k(a, b) = C / (C + ||a - b||^2) with C = 2 D s^2
(Tolstikhin et al. 2018, "Wasserstein Auto-Encoders", Sec. 4), each summed over ``scales`` multiplying the
bandwidth (their code: several scales for IMQ).

- InfoVAE (Zhao et al. 2019, "InfoVAE: Balancing Learning and Inference in Variational Autoencoders", Eq. 6):
  loss = -E_q log p(x|z) + (1 - alpha) KL(q(z|x) || p(z)) + (alpha + lambda - 1) MMD^2(q(z), p(z)).
- WAE-MMD (Tolstikhin et al. 2018, Algorithm 2): loss = c(x, G(z)) + lambda MMD_u^2(q(z), p(z)), with the cost
  c = -log p(x|z) of the model's likelihood (squared error for a unit Gaussian, cross-entropy for Bernoulli).

Per example terms in nats: ``log_px_z``, ``kl`` (reported for both) and the batch's ``mmd`` (one number for the
batch, repeated per example). The prior draws come from the model's prior on the codes' device.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from vaekit.objectives.bounds import single_group_terms
from vaekit.objectives.elbo import Objective, ObjectiveResult

__all__ = ["kernel_matrix", "mmd2", "MMDAutoencoder"]

Kernel = Literal["rbf", "imq"]


def kernel_matrix(a: torch.Tensor, b: torch.Tensor, kernel: Kernel = "rbf", scale: float = 1.0,
                  scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """(N, M) kernel values between rows of a (N, D) and b (M, D): RBF with s^2 = scale * factor, or IMQ with
    C = 2 D scale * factor, summed over the factors in ``scales`` (module docstring)."""
    d2 = torch.cdist(a, b).pow(2)  # (N, M) squared distances
    out = torch.zeros_like(d2)
    for f in scales:
        if kernel == "rbf":
            out = out + torch.exp(-d2 / (2 * scale * f))
        elif kernel == "imq":
            c = 2 * a.shape[-1] * scale * f
            out = out + c / (c + d2)
        else:
            raise ValueError(f"unknown kernel {kernel!r}; choose rbf or imq")
    return out


def mmd2(z: torch.Tensor, zp: torch.Tensor, kernel: Kernel = "rbf", scale: float = 1.0,
         scales: Sequence[float] = (1.0,), unbiased: bool = True) -> torch.Tensor:
    """Squared MMD between samples z (N, D) and zp (M, D): the U-statistic (``unbiased``; the within-sample
    diagonals left out) or the V-statistic (Gretton et al. 2012, Eq. 3 and 5)."""
    n, m = z.shape[0], zp.shape[0]
    kzz = kernel_matrix(z, z, kernel, scale, scales)  # (N, N)
    kpp = kernel_matrix(zp, zp, kernel, scale, scales)  # (M, M)
    kzp = kernel_matrix(z, zp, kernel, scale, scales)  # (N, M)
    if unbiased:
        if n < 2 or m < 2:
            raise ValueError("the unbiased MMD estimate needs at least 2 samples on each side")
        within = (kzz.sum() - kzz.diagonal().sum()) / (n * (n - 1)) + (kpp.sum() - kpp.diagonal().sum()) / (m * (m - 1))
    else:
        within = kzz.mean() + kpp.mean()
    return within - 2 * kzp.mean()


class MMDAutoencoder(Objective):
    """InfoVAE-MMD / WAE-MMD loss (module docstring): -log p(x|z) + kl_weight KL + mmd_weight MMD^2, per example
    means. InfoVAE: kl_weight = 1 - alpha, mmd_weight = alpha + lambda - 1; WAE: kl_weight = 0, mmd_weight =
    lambda. kernel, scale (RBF's s^2; IMQ's C = 2 D scale), scales, unbiased: the MMD estimate (``mmd2``)."""

    def __init__(self, kl_weight: float, mmd_weight: float, kernel: Kernel = "imq", scale: float = 1.0,
                 scales: Sequence[float] = (1.0,), unbiased: bool = True, name: str = "wae-mmd") -> None:
        super().__init__()
        if kl_weight < 0 or mmd_weight < 0 or scale <= 0 or not scales or min(scales) <= 0:
            raise ValueError(f"{name} needs non-negative weights and positive kernel scales")
        self.kl_weight, self.mmd_weight = float(kl_weight), float(mmd_weight)
        self.kernel, self.scale, self.scales = kernel, float(scale), tuple(float(s) for s in scales)
        self.unbiased, self.name = bool(unbiased), name

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:
        g, log_px_z, kl = single_group_terms(model, x, self.name, check)  # (B,) each
        if g.z.ndim != 2:
            raise ValueError(f"{self.name} needs codes of shape (B, D), got {tuple(g.z.shape)}")
        # (B, D) one prior draw per example, from the model's prior (batched, or one for all examples)
        zp = g.p.sample() if tuple(g.p.batch_shape) == tuple(g.z.shape[:-1]) else g.p.sample(g.z.shape[:-1])
        mmd = mmd2(g.z, zp, self.kernel, self.scale, self.scales, self.unbiased)  # scalar
        loss = (self.kl_weight * kl - log_px_z).mean() + self.mmd_weight * mmd
        return ObjectiveResult(loss, log_px_z, kl, self.kl_weight, terms={"mmd": mmd.expand_as(kl)})
