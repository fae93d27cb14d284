"""Every bound from the model contract: the ELBO's per-example terms and the importance weights.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes", Eq. 3 (ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)),
estimated with L reparameterised samples as in their Eq. 7); for a hierarchy of groups z_1..z_G with
p(z_g | z_{g+1}) the KL is the sum of the groups' KLs at the sampled parents (the chain rule; Sønderby et al.
2016, Eq. 15). Burda et al. 2016, "Importance Weighted Autoencoders", Eq. 8: log w = log p(x|z) + sum_g
[log p(z_g | parents) - log q(z_g | .)], behind the IWAE bound and the log p(x) estimate.

A discrete group the model sums out exactly (``LatentGroup.enumerated``, M2's class y; Kingma et al. 2014,
"Semi-Supervised Learning with Deep Generative Models", Eq. 7): the ELBO is sum_y q(y|x) [E_q(z|x,y) log p(x|y,z)
- KL(q(z|x,y) || p(z))] - KL(q(y|x) || p(y)), and each importance weight sums the classes out,
w_s = sum_y p(y) p(x|y,z_s,y) p(z_s,y) / q(z_s,y|x,y) (an unbiased estimate of p(x) for every s).

Units: nats per example; sums over data dimensions and latents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from vaekit.models.contract import LatentGroup
from vaekit.objectives.latents import group_kl, group_log_q

__all__ = ["ELBOTerms", "elbo_terms", "single_group_terms", "log_weights", "iwae_bound"]


@dataclass
class ELBOTerms:
    """Per-example ELBO terms in nats.

    log_px_z: (B,) Monte Carlo mean over the L samples of log p(x|z).
    kl: (B,) the total KL (sum over groups).
    kl_groups: (B, G) the KL split into the units free bits acts on: per dimension of every group, groups in the
        model's order (bottom first), or one column for a group whose Monte Carlo KL does not split.
    groups: {name: (B, G_g)} the same per latent group (their columns concatenate to ``kl_groups``).
    analytic_kl: whether every group's KL is a closed form.
    extras: the model's ``ModelOutput.extras`` (e.g. M2's class logits for labelled data).
    sizes: each group's number of latent dimensions per example.
    """

    log_px_z: torch.Tensor
    kl: torch.Tensor
    kl_groups: torch.Tensor
    groups: dict[str, torch.Tensor]
    analytic_kl: bool
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    #: {name: latent dimensions of one example's group} (its event size; KL balancing weighs by it)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def elbo(self) -> torch.Tensor:
        return self.log_px_z - self.kl


def elbo_terms(model: nn.Module, x: torch.Tensor, n_samples: int = 1, check: bool = True, **options) -> ELBOTerms:
    """ELBO terms of ``model`` (any ``LatentVariableModel``) on the batch x with L = ``n_samples`` samples.

    options go to the model's forward (``posterior=`` for per-point refinement, ``decoder_dtype=``).
    """
    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"the number of ELBO samples must be a positive integer, got {n_samples!r}")
    if check:
        model.check_input(x)
    out = model(x, None if n_samples == 1 else int(n_samples), **options)
    enum = _enumerated(out.groups)
    log_px_z = out.px.log_prob(x if out.target is None else out.target)  # (*S, [K,] B)
    if out.sample_dims:
        log_px_z = log_px_z.mean(0)  # ([K,] B)
    w = None if enum is None else enum.q.probs.transpose(0, 1)  # (K, B) q(y = k | x)
    if w is not None:
        log_px_z = (w * log_px_z).sum(0)  # (B,)
    groups, analytic = {}, True
    for g in out.groups:
        if w is None or g is enum:
            groups[g.name], a = group_kl(g, out.sample_dims)  # (B, D_g)
        else:
            kl, a = group_kl(g, out.sample_dims, batch_dims=2)  # (K, B, D_g) at each enumerated value
            groups[g.name] = (w.unsqueeze(-1) * kl).sum(0)  # (B, D_g)
        analytic = analytic and a
    parts = list(groups.values())
    kl_groups = parts[0] if len(parts) == 1 else torch.cat(parts, -1)  # (B, G)
    sizes = {g.name: math.prod(g.q.event_shape) for g in out.groups}
    return ELBOTerms(log_px_z, kl_groups.sum(-1), kl_groups, groups, analytic, out.extras, sizes)


def single_group_terms(model: nn.Module, x: torch.Tensor, who: str,
                       check: bool = True) -> tuple[LatentGroup, torch.Tensor, torch.Tensor]:
    """(the one latent group, log p(x|z) (B,), KL (B,)) of a one-group model at one sample without a sample axis:
    the terms of objectives that add a penalty on the codes z (β-TCVAE, FactorVAE; ``who`` names it in errors)."""
    if check:
        model.check_input(x)
    out = model(x, None)
    if len(out.groups) != 1 or out.groups[0].enumerated:
        raise ValueError(f"{who} needs a model with one sampled latent group (model.family=vae)")
    g = out.groups[0]
    log_px_z = out.px.log_prob(x if out.target is None else out.target)  # (B,)
    return g, log_px_z, group_kl(g, 0)[0].sum(-1)  # closed form where registered


def _enumerated(groups: list[LatentGroup]) -> LatentGroup | None:
    found = [g for g in groups if g.enumerated]
    if len(found) > 1:
        raise ValueError(f"a model may sum out one discrete latent group exactly, got {[g.name for g in found]}")
    return found[0] if found else None


def log_weights(model: nn.Module, x: torch.Tensor, k: int, **options) -> torch.Tensor:
    """log w_k = log p(x|z_k) + sum_g [log p(z_g,k | parents) - log q(z_g,k | .)], z_k ~ q: shape (K, B)."""
    out = model(x, int(k), **options)
    enum = _enumerated(out.groups)
    lw = out.px.log_prob(x if out.target is None else out.target)  # (K, [C,] B)
    for g in out.groups:
        lw = lw + (g.p.log_prob(g.z) if g is enum else g.p.log_prob(g.z) - group_log_q(g))
    return lw if enum is None else torch.logsumexp(lw, 1)  # the C enumerated classes summed out: (K, B)


def iwae_bound(model: nn.Module, x: torch.Tensor, k: int, **options) -> torch.Tensor:
    """(B,) IWAE_k = log (1/k) sum_k w_k (Burda et al. 2016, Eq. 8)."""
    return torch.logsumexp(log_weights(model, x, k, **options), 0) - math.log(k)
