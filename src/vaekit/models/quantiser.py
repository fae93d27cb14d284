"""Vector quantisers: a codebook of K vectors (VQ-VAE) and the codebook-free finite scalar quantiser (FSQ).

van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning" (VQ-VAE):
- quantisation: z_q = e_k, k = argmin_j ||z_e - e_j||^2 (Eq. 1-2);
- straight-through estimator: the decoder's gradient at z_q is copied to z_e (Sec. 3.2), z = z_e + sg(z_q - z_e);
- the loss (Eq. 3): log p(x|z_q) + ||sg(z_e) - e||^2 + beta ||z_e - sg(e)||^2, beta = 0.25: the codebook term
  moves only the codes, the commitment term only the encoder (here ``QuantResult.codebook_loss`` and
  ``QuantResult.commitment``, per vector; the objective weighs them);
- the codebook by exponential moving averages instead of the codebook term (App. A.1, Eq. 6-8):
  N_i <- g N_i + (1 - g) n_i, m_i <- g m_i + (1 - g) sum_j z_e,j [j -> i], e_i = m_i / N_i, with N_i Laplace-smoothed
  as in their released code: N_i <- (N_i + eps) / (n + K eps) n, n = sum_i N_i.
Besides: k-means initialisation of the codebook from the first training batch (Lloyd's iterations from K distinct
encoder outputs); dead-code restart (a code unused for ``restart_after`` training steps is re-seeded with an
encoder output of the current batch; as in Dhariwal et al. 2020, "Jukebox", Sec. 3.2); cosine codes (Yu et al.
2022, "Vector-quantized Image Modeling with Improved VQGAN", Sec. 3.2: l2-normalised z_e and codes, so the
nearest code is the most similar direction; the low dimension is the family's ``code_dim``).

Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple" (FSQ): each of d channels is bounded to
L_i levels, f(z) = floor(L/2) tanh(z) (shifted by half a level for even L), and rounded with the straight-through
estimator; the implicit codebook is the product grid of prod_i L_i codes, with no loss and nothing to learn.

Codebook statistics are all-reduced over processes when torch.distributed is initialised, and restarts and the
k-means start are broadcast from rank 0, so every process keeps the same codebook. Random draws (restarts, the
k-means start) use the global RNG on the data's device, which the trainer forks from its checkpointed stream.
Codebook updates happen in training mode under autograd only (a training step), never in evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QuantResult", "VectorQuantiser", "FiniteScalarQuantiser", "code_perplexity"]


@dataclass
class QuantResult:
    """z: (N, D) straight-through output (value z_q, gradient to z_e); z_q: (N, D) the codes' vectors; codes: (N,)
    indices; commitment: (N,) ||z_e - sg(z_q)||^2; codebook_loss: (N,) ||sg(z_e) - z_q||^2 (zero without codebook
    gradients: EMA codebooks and FSQ)."""

    z: torch.Tensor
    z_q: torch.Tensor
    codes: torch.Tensor
    commitment: torch.Tensor
    codebook_loss: torch.Tensor


def code_perplexity(counts: torch.Tensor) -> float:
    """exp(H(p)) of the code frequencies p = counts / sum(counts): K when all K codes are used equally, 1 for one."""
    p = counts.double() / counts.sum().clamp_min(1)
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum()))


def _dist() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _all_reduce(*ts: torch.Tensor) -> None:
    if _dist():
        for t in ts:
            torch.distributed.all_reduce(t)


def _broadcast(t: torch.Tensor) -> torch.Tensor:
    if _dist():
        torch.distributed.broadcast(t, 0)
    return t


class VectorQuantiser(nn.Module):
    """A codebook of ``codebook_size`` K vectors of ``dim`` D (see the module docstring).

    update: "ema" (App. A.1; decay, eps) or "gradient" (the codebook a parameter trained by the codebook term).
    kmeans_init: the first training batch's k-means centres (``kmeans_iters`` Lloyd iterations) as the codebook.
    restart_after: re-seed codes unused for this many training steps (0: never).
    cosine: l2-normalised inputs and codes.
    """

    def __init__(self, codebook_size: int, dim: int, *, update: str = "ema", decay: float = 0.99,
                 eps: float = 1e-5, kmeans_init: bool = True, kmeans_iters: int = 10, restart_after: int = 0,
                 cosine: bool = False) -> None:
        super().__init__()
        if update not in ("ema", "gradient"):
            raise ValueError(f"unknown codebook update {update!r}; choose 'ema' or 'gradient'")
        if codebook_size < 2 or dim < 1:
            raise ValueError(f"a codebook needs K >= 2 codes of dimension >= 1, got K={codebook_size}, D={dim}")
        if not 0 <= decay < 1:
            raise ValueError(f"the EMA decay must be in [0, 1), got {decay}")
        self.k, self.dim, self.update = int(codebook_size), int(dim), update
        self.decay, self.eps, self.cosine = float(decay), float(eps), bool(cosine)
        self.kmeans_iters, self.restart_after = int(kmeans_iters), int(restart_after)
        init = torch.empty(self.k, self.dim).uniform_(-1 / self.k, 1 / self.k)  # Sonnet's VQ init
        if self.cosine:
            init = F.normalize(torch.randn(self.k, self.dim), dim=-1)
        if update == "gradient":
            self.codebook = nn.Parameter(init)
        else:
            self.register_buffer("codebook", init)
        self.register_buffer("ema_count", torch.ones(self.k))  # N_i, so that e_i = m_i / N_i at the start
        self.register_buffer("ema_sum", init.clone())  # m_i
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self.register_buffer("unused_steps", torch.zeros(self.k, dtype=torch.long))  # training steps since last use
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # codes re-seeded so far
        self.frozen = False  # a trained first stage under a second-stage prior: no more updates

    @property
    def codebook_size(self) -> int:
        return self.k

    def vectors(self) -> torch.Tensor:
        """(K, D) the code vectors as the decoder sees them (normalised for cosine codes)."""
        return F.normalize(self.codebook, dim=-1) if self.cosine else self.codebook

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(N,) index of the nearest code of each row of z (N, D) (normalised first for cosine codes)."""
        e = self.vectors().to(z.dtype)  # (K, D)
        if self.cosine:
            return (F.normalize(z, dim=-1) @ e.T).argmax(-1)
        d = (z * z).sum(-1, keepdim=True) - 2 * z @ e.T + (e * e).sum(-1)  # (N, K)
        return d.argmin(-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(*shape, D) code vectors of integer codes (*shape)."""
        return self.vectors()[codes]

    def forward(self, z_e: torch.Tensor) -> QuantResult:
        """Quantise z_e (N, D); in a training step also update the codebook (EMA, k-means start, restarts)."""
        learning = self.training and torch.is_grad_enabled() and not self.frozen
        if self.cosine:
            z_e = F.normalize(z_e, dim=-1)
        if learning and not bool(self.initted):
            self._kmeans(z_e.detach())
        codes = self.nearest(z_e.detach())  # (N,)
        z_q = self.lookup(codes).to(z_e.dtype)  # (N, D): carries the codebook's gradient in "gradient" mode
        commitment = ((z_e - z_q.detach()) ** 2).sum(-1)  # (N,) the encoder's side only
        codebook_loss = ((z_e.detach() - z_q) ** 2).sum(-1) if self.update == "gradient" else \
            torch.zeros_like(commitment)  # (N,) the codebook's side only (an EMA codebook has no such term)
        z = z_e + (z_q - z_e).detach()  # straight-through: value z_q, gradient identity to z_e
        if learning:
            self._learn(z_e.detach(), codes)
        return QuantResult(z, z_q, codes, commitment, codebook_loss)

    @torch.no_grad()
    def _learn(self, z_e: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = F.one_hot(codes, self.k).to(z_e.dtype)  # (N, K)
        n = onehot.sum(0)  # (K,)
        s = onehot.T @ z_e  # (K, D)
        _all_reduce(n, s)
        if self.update == "ema":
            self.ema_count.mul_(self.decay).add_(n.to(self.ema_count.dtype), alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(s.to(self.ema_sum.dtype), alpha=1 - self.decay)
            self.codebook.copy_(self._ema_codebook())
        self.unused_steps.copy_(torch.where(n > 0, torch.zeros_like(self.unused_steps), self.unused_steps + 1))
        if self.restart_after > 0:
            self._restart(z_e)

    def _ema_codebook(self) -> torch.Tensor:
        total = self.ema_count.sum()
        count = (self.ema_count + self.eps) / (total + self.k * self.eps) * total  # Laplace smoothing
        e = self.ema_sum / count.unsqueeze(-1)
        return F.normalize(e, dim=-1) if self.cosine else e

    @torch.no_grad()
    def _restart(self, z_e: torch.Tensor) -> None:
        """Codes unused for ``restart_after`` steps take random encoder outputs of this batch (rank 0's)."""
        dead = self.unused_steps >= self.restart_after  # (K,)
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        pick = torch.randint(0, z_e.shape[0], (n_dead,), device=z_e.device)
        new = _broadcast(z_e[pick].contiguous()).to(self.codebook.dtype)  # (n_dead, D)
        self.codebook.data[dead] = F.normalize(new, dim=-1) if self.cosine else new
        self.ema_sum[dead] = new.to(self.ema_sum.dtype)
        self.ema_count[dead] = 1.0
        self.unused_steps[dead] = 0
        self.restarts += n_dead

    @torch.no_grad()
    def _kmeans(self, z: torch.Tensor) -> None:
        """Lloyd's k-means on z (N, D) from K rows drawn at random (with replacement when N < K)."""
        n = z.shape[0]
        pick = torch.randperm(n, device=z.device)[:self.k] if n >= self.k else \
            torch.randint(0, n, (self.k,), device=z.device)
        centres = _broadcast(z[pick].clone())  # (K, D)
        counts = torch.zeros(self.k, dtype=z.dtype, device=z.device)
        for _ in range(self.kmeans_iters):
            if self.cosine:
                centres = F.normalize(centres, dim=-1)
                codes = (z @ centres.T).argmax(-1)
            else:
                codes = ((z * z).sum(-1, keepdim=True) - 2 * z @ centres.T + (centres * centres).sum(-1)).argmin(-1)
            onehot = F.one_hot(codes, self.k).to(z.dtype)  # (N, K)
            counts, sums = onehot.sum(0), onehot.T @ z
            _all_reduce(counts, sums)
            centres = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), centres)
        if self.cosine:
            centres = F.normalize(centres, dim=-1)
        self.codebook.data.copy_(centres.to(self.codebook.dtype))
        self.ema_sum.copy_(centres.to(self.ema_sum.dtype))
        self.ema_count.fill_(1.0)
        self.initted.fill_(True)


class FiniteScalarQuantiser(nn.Module):
    """FSQ (Mentzer et al. 2023, Sec. 3): d = len(levels) channels, channel i rounded to one of L_i levels in
    [-1, 1]; the code index is the mixed-radix number of the levels. No codebook, no auxiliary loss."""

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        lv = [int(v) for v in levels]
        if not lv or min(lv) < 2:
            raise ValueError(f"FSQ needs at least one channel of at least 2 levels, got {list(levels)}")
        self.levels = lv
        self.dim = len(lv)
        self.k = int(math.prod(lv))
        self.register_buffer("_levels", torch.tensor(lv, dtype=torch.float64), persistent=False)
        radix = [int(math.prod(lv[:i])) for i in range(len(lv))]
        self.register_buffer("_radix", torch.tensor(radix, dtype=torch.long), persistent=False)
        self.frozen = False

    @property
    def codebook_size(self) -> int:
        return self.k

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """Each channel into (-(L-1)/2, (L-1)/2), shifted by half a level when L is even (their App. A.1)."""
        lv = self._levels.to(z.dtype)
        half = (lv - 1) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def vectors(self) -> torch.Tensor:
        """(K, d) every grid point, in code-index order."""
        return self.lookup(torch.arange(self.k, device=self._radix.device))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(*shape, d) the grid point (each channel in [-1, 1]) of integer codes (*shape)."""
        lv = self._levels.to(torch.float32)
        digits = (codes.unsqueeze(-1) // self._radix) % self._levels.long()  # (*shape, d)
        half_width = torch.floor(lv / 2)
        return (digits.float() - half_width) / half_width

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        return self._codes(torch.round(self._bound(z)))

    def _codes(self, rounded: torch.Tensor) -> torch.Tensor:
        half_width = torch.floor(self._levels.to(rounded.dtype) / 2)
        digits = (rounded + half_width).long()  # (N, d) in 0..L_i-1
        return (digits * self._radix).sum(-1)

    def forward(self, z_e: torch.Tensor) -> QuantResult:
        b = self._bound(z_e)
        r = b + (torch.round(b) - b).detach()  # rounding with the straight-through estimator
        codes = self._codes(r.detach())
        half_width = torch.floor(self._levels.to(z_e.dtype) / 2)
        z = r / half_width  # (N, d) in [-1, 1]
        zero = torch.zeros(z_e.shape[0], dtype=z_e.dtype, device=z_e.device)
        return QuantResult(z, z.detach(), codes, zero, zero)
