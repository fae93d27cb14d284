"""Sampling a latent group and its KL: the one place where the KL of every family is computed.

KL(q || p) per dimension: a registered closed form (``register_kl_dims``; otherwise torch's ``kl_divergence`` on
the factors of two factorised distributions, or on the whole distributions); where none is registered, the
Monte Carlo estimate log q(z) - log p(z) on the same sample (per dimension when the posterior splits its
log-density over dimensions, as IAF does, and the prior factorises). A closed form evaluated at sampled
parents (a hierarchy) is averaged over the samples: its expectation is the KL of the chain rule.

A fused sampler (``register_fused_sampler``) may draw z and compute the closed-form KL together as one autograd
node (the Gaussian head against N(0, I) in training); it must give the same numbers as the generic path (tested).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.distributions import Distribution, Independent, kl_divergence

from vaekit.models.contract import LatentGroup

__all__ = ["sample_latent", "group_kl", "kl_dims", "register_fused_sampler", "register_kl_dims", "factorised",
           "group_log_q"]

FusedSampler = Callable[[Distribution, Distribution, "int | None"], "tuple[torch.Tensor, torch.Tensor] | None"]
_FUSED: dict[tuple[type, type], FusedSampler] = {}
_KL_DIMS: dict[tuple[type, type], Callable[[Distribution, Distribution], torch.Tensor]] = {}


def _lookup(table: dict, q: Distribution, p: Distribution):
    for tq in type(q).__mro__:
        for tp in type(p).__mro__:
            fn = table.get((tq, tp))
            if fn is not None:
                return fn
    return None


def register_fused_sampler(q_type: type, p_type: type) -> Callable[[FusedSampler], FusedSampler]:
    """Decorator: ``fn(q, p, n_samples) -> (z, kl_dims (B, D))``, or None where it does not apply (then the
    generic path runs). It must equal the generic path's z and closed-form KL for the same noise."""

    def deco(fn: FusedSampler) -> FusedSampler:
        _FUSED[(q_type, p_type)] = fn
        return fn

    return deco


def register_kl_dims(q_type: type, p_type: type):
    """Decorator: ``fn(q, p) -> (*batch, D)`` closed-form KL per dimension for this pair of distribution types."""

    def deco(fn):
        _KL_DIMS[(q_type, p_type)] = fn
        return fn

    return deco


def factorised(d: Distribution) -> bool:
    """An ``Independent`` over one event dimension: log_prob is a sum over dimensions of ``base_dist``'s."""
    return isinstance(d, Independent) and d.reinterpreted_batch_ndims == 1


def sample_latent(name: str, q: Distribution, p: Distribution, n_samples: int | None = 1) -> LatentGroup:
    """Draw reparameterised z ~ q (``n_samples=None``: one sample, no sample axis) and return the group.

    log q(z) is kept when the posterior computes it alongside the sample (``rsample_and_log_prob``, per dimension
    with ``rsample_and_log_prob_dims``); a registered fused sampler gives the KL per dimension instead.
    """
    fused = _lookup(_FUSED, q, p)
    if fused is not None:
        r = fused(q, p, n_samples)
        if r is not None:
            return LatentGroup(name, q, p, r[0], kl_dims=r[1])
    shape = () if n_samples is None else (int(n_samples),)
    if hasattr(q, "rsample_and_log_prob_dims"):
        z, lq_dims = q.rsample_and_log_prob_dims(shape)  # (*S, B, D), (*S, B, D)
        return LatentGroup(name, q, p, z, log_q=lq_dims.sum(-1), log_q_dims=lq_dims)
    if hasattr(q, "rsample_and_log_prob"):
        z, lq = q.rsample_and_log_prob(shape)  # (*S, B, D), (*S, B)
        return LatentGroup(name, q, p, z, log_q=lq)
    return LatentGroup(name, q, p, q.rsample(shape))


def kl_dims(q: Distribution, p: Distribution) -> torch.Tensor | None:
    """Closed-form KL(q || p) per dimension, (*batch, D) ((*batch, 1) when only the whole KL has a closed form),
    or None when no closed form is registered for the pair."""
    fn = _lookup(_KL_DIMS, q, p)
    if fn is not None:
        return fn(q, p)
    try:
        if factorised(q) and factorised(p):
            return kl_divergence(q.base_dist, p.base_dist)
        return kl_divergence(q, p).unsqueeze(-1)
    except NotImplementedError:
        return None


def group_kl(g: LatentGroup, sample_dims: int, batch_dims: int = 1) -> tuple[torch.Tensor, bool]:
    """(KL per dimension (B, D_g) — or (B, 1) for a Monte Carlo KL that does not split —, is it closed-form).

    Averaged over the leading sample axes of z (a closed form at sampled parents has them too); ``batch_dims=2``
    keeps an enumeration axis: (K, B, D_g).
    """
    if g.kl_dims is not None:
        return g.kl_dims, True
    kl = kl_dims(g.q, g.p)
    analytic = kl is not None
    if kl is None:  # Monte Carlo on the same sample
        if g.log_q_dims is not None and factorised(g.p):
            kl = g.log_q_dims - g.p.base_dist.log_prob(g.z)  # (*S, B, D)
        else:
            log_q = g.log_q if g.log_q is not None else g.q.log_prob(g.z)
            kl = (log_q - g.p.log_prob(g.z)).unsqueeze(-1)  # (*S, B, 1)
    while kl.dim() > 1 + batch_dims:  # sample axes (of z, or of q and p at sampled parents)
        kl = kl.mean(0)
    return kl, analytic


def group_log_q(g: LatentGroup) -> torch.Tensor:
    """log q(z_g) on the group's samples, (*lead,): the sampler's own value where it kept one."""
    if g.log_q is not None:
        return g.log_q
    return g.q.log_prob(g.z)
