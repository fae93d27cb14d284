"""Multi-sample training objectives: IWAE, MIWAE, CIWAE and PIWAE, with the doubly reparameterised (DReG)
gradient for the encoder.

With S = M x K samples z_{m,k} ~ q(z|x) and log-weights lw_{m,k} = log p(x, z_{m,k}) - log q(z_{m,k}|x):

- IWAE_K  = log (1/K) sum_k w_k  (Burda et al. 2016, "Importance Weighted Autoencoders", Eq. 8);
- MIWAE(M, K) = (1/M) sum_m IWAE_K over the m-th group of K samples (Rainforth et al. 2018, "Tighter
  Variational Bounds are Not Necessarily Better", Eq. 9): M = 1 is IWAE_K, K = 1 the ELBO with M samples;
- CIWAE_beta = beta ELBO + (1 - beta) IWAE_K on the same K samples (Rainforth et al. 2018, Eq. 10): beta = 1 is
  the ELBO, beta = 0 IWAE_K;
- PIWAE(M, K): the generative network follows IWAE_{MK} and the inference network MIWAE(M, K), on the same
  samples (Rainforth et al. 2018, Sec. 5), in one backward pass;
- DReG (Tucker et al. 2019, "Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives", Eq. 7): the
  encoder's gradient of IWAE_K is E[sum_k w~_k^2 d lw_k / d z_k  d z_k / d phi] (w~ the normalised weights, the
  derivative at z with q's parameters held fixed): no score-function term, so its variance does not grow with K.
  For MIWAE and PIWAE each group of K is its own IWAE_K: weights (w~^{(m)}_k)^2 / M.

How one backward pass gives the encoder other weights than the decoder: a bound B(lw) gives every sample the
weight c = dB/dlw. The encoder phi reaches lw only through the samples z (reparameterised) and through log q's
own parameters; the decoder never does. With J_k = d lw_k / d z_k (q's parameters held fixed; one extra
backward pass to z, since lw_k depends on z_k alone) and D_k = log q(sg(z_k)) (q's parameters alone), the loss
-B + C - sg(C), C = -sum_k [ <z_k, sg((a_k - c_k) J_k)> - sg(d_k - c_k) D_k ], has the decoder's gradient of
-B and the encoder's gradient -sum_k [a_k J_k dz_k/dphi - d_k dD_k/dphi]: (a, d) = (c', c') for PIWAE's MIWAE
weights c', (w~^2, 0) for DReG. This needs one latent vector (``single-vector``: a hierarchy's child sample
depends on its parent's) and log q(z|x) as a function of z (a flow inverts itself for it: slow). Units: nats per
example.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.models.contract import LatentGroup
from vaekit.objectives.bounds import log_weights
from vaekit.objectives.elbo import Objective, ObjectiveResult
from vaekit.utils import batches, evaluation_context, model_device

__all__ = ["MultiSampleBound", "miwae_bound", "ciwae_bound"]


def miwae_bound(lw: torch.Tensor, m: int) -> torch.Tensor:
    """(B,) MIWAE(M, K) of log-weights lw (M*K, B): the mean over M groups of IWAE_K (Rainforth et al. 2018,
    Eq. 9)."""
    s, b = lw.shape
    k = s // m
    return (torch.logsumexp(lw.view(m, k, b), 1) - math.log(k)).mean(0)  # (B,)


def ciwae_bound(lw: torch.Tensor, beta: float) -> torch.Tensor:
    """(B,) CIWAE_beta = beta ELBO_K + (1 - beta) IWAE_K of log-weights lw (K, B) (Rainforth et al. 2018,
    Eq. 10): the ELBO here is the Monte Carlo mean of the same K log-weights."""
    k = lw.shape[0]
    return beta * lw.mean(0) + (1 - beta) * (torch.logsumexp(lw, 0) - math.log(k))


VAL_BATCH = 100  # validation examples per pass (x M*K samples each)
VAL_SEED = 0  # the validation bound's own RNG stream: the same draws at every validation, training's untouched


class MultiSampleBound(Objective):
    """Loss -mean_batch bound (module docstring). m, k: M groups of K samples; beta: CIWAE's ELBO weight (0: none);
    piwae: the decoder follows IWAE_{MK}, the encoder MIWAE(M, K); dreg: the encoder's doubly reparameterised
    gradient. ``name`` names the objective in errors.

    The 'best' checkpoint is the one with the highest bound on the validation data (``val_bound``), not the
    one-sample ELBO: training on a multi-sample bound widens q(z|x) on purpose, so the ELBO can fall while the
    bound and log p(x) rise (a VAE trained further on IWAE_50 loses ELBO from its first steps)."""

    selection = "val_bound"

    def __init__(self, k: int = 5, m: int = 1, beta: float = 0.0, piwae: bool = False, dreg: bool = False,
                 name: str = "iwae") -> None:
        super().__init__()
        if k < 1 or m < 1 or not 0.0 <= beta <= 1.0:
            raise ValueError(f"{name} needs k >= 1, m >= 1 and 0 <= beta <= 1, got k={k}, m={m}, beta={beta}")
        if beta > 0 and (m > 1 or piwae or dreg):
            raise ValueError(f"{name}: beta (CIWAE) combines with one group of samples (m=1), no piwae, no dreg")
        self.k, self.m, self.beta = int(k), int(m), float(beta)
        self.piwae, self.dreg, self.name = bool(piwae), bool(dreg), name

    def bound_of(self, lw: torch.Tensor) -> torch.Tensor:
        """(B,) the bound the loss reports, of log-weights (M*K, B): IWAE_{MK} for PIWAE (its decoder's target)."""
        if self.piwae:
            return torch.logsumexp(lw, 0) - math.log(lw.shape[0])
        if self.beta > 0:
            return ciwae_bound(lw, self.beta)
        return miwae_bound(lw, self.m)

    def validation_metrics(self, model: nn.Module, val_x: torch.Tensor) -> dict[str, float]:
        """{"val_bound": the mean bound (``bound_of``, M*K samples per example) over ``val_x``}, from a fixed
        private RNG stream."""
        total = 0.0
        with evaluation_context(model, VAL_SEED):
            for xb in batches(val_x, VAL_BATCH, model_device(model)):
                total += float(self.bound_of(log_weights(model, xb, self.m * self.k)).double().sum())
        return {"val_bound": total / val_x.shape[0]}

    def _split(self) -> bool:
        return self.piwae or self.dreg

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:
        if check:
            model.check_input(x)
        s = self.m * self.k
        if not self._split() or not torch.is_grad_enabled():
            bound = self.bound_of(log_weights(model, x, s))  # (B,)
            return _result(-bound.mean(), bound)
        out = model(x, s)
        g = self._one_group(out.groups)
        lw = out.px.log_prob(x if out.target is None else out.target) + g.p.log_prob(g.z) - _log_q(g)
        bound = self.bound_of(lw)  # (B,); lw: (S, B)
        loss = -bound.mean()
        if not g.z.requires_grad:
            return _result(loss, bound)
        c, a, d = self._weights(lw.detach())  # (S, B) each
        jac, = torch.autograd.grad(lw.sum(), g.z, retain_graph=True)  # (S, B, D) d lw_k / d z_k, q held fixed
        d_q = g.q.log_prob(g.z.detach())  # (S, B) log q's own parameters only
        corr = -((g.z * ((a - c).unsqueeze(-1) * jac)).sum(-1) - (d - c) * d_q).sum(0).mean()
        return _result(loss + corr - corr.detach(), bound)

    def _weights(self, lw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c: the bound's weights dB/dlw, a: the encoder's weights on the path through z, d: on log q's own
        parameters), each (S, B)."""
        s, b = lw.shape
        c = torch.softmax(lw, 0)  # (S, B) IWAE_{MK}'s normalised weights
        if not self.piwae:
            if self.beta > 0:
                c = self.beta / s + (1 - self.beta) * c
            else:
                c = torch.softmax(lw.view(self.m, self.k, b), 1).reshape(s, b) / self.m
        enc = c
        if self.piwae:
            enc = torch.softmax(lw.view(self.m, self.k, b), 1).reshape(s, b) / self.m  # MIWAE's weights
        if self.dreg:
            w = torch.softmax(lw.view(self.m, self.k, b), 1).reshape(s, b)  # within each group of K
            return c, w * w / self.m, torch.zeros_like(c)
        return c, enc, enc

    def _one_group(self, groups: list[LatentGroup]) -> LatentGroup:
        what = "piwae" if self.piwae else f"{self.name} with dreg=true"
        if len(groups) != 1 or groups[0].enumerated:
            raise ValueError(f"{what} needs a model with one sampled latent vector (the capability "
                             f"'single-vector'); this model has {len(groups)} latent group(s)")
        return groups[0]


def _log_q(g: LatentGroup) -> torch.Tensor:
    """(S, B) log q(z|x) as a function of z (the derivative at z needs it: not the sampler's value from its noise);
    a flow inverts itself here, T x D network passes."""
    return g.q.log_prob(g.z)


def _result(loss: torch.Tensor, bound: torch.Tensor) -> ObjectiveResult:
    nan = torch.full_like(bound, float("nan"))
    return ObjectiveResult(loss, nan, nan, 1.0, bound=bound.detach())
