"""The VQ-VAE objective (van den Oord, Vinyals & Kavukcuoglu 2017, Eq. 3) on the model contract.

loss = -log p(x | z_q) + beta ||z_e - sg(e)||^2 + ||sg(z_e) - e||^2 + KL(q(z|x) || p(z)), per example and summed
over the code positions, mean over the batch. The commitment term (beta, 0.25 in the paper) moves only the
encoder, the codebook term only the codes (zero for a codebook kept by moving averages, or FSQ): the model puts
both in ``ModelOutput.extras`` (``vaekit.models.quantiser``). The KL is H W log K for the uniform prior (no
gradient) and -log p(z_q) for a learned prior (it trains the prior only: z_q is a one-hot, q deterministic).
The per-example bound reported is log p(x | z_q) - KL = log p(x | z_q) + log p(z_q) <= log p(x).

Every validation adds the codebook's use on the validation set: the fraction of the K codes used
(``val_codes_used``), the perplexity exp(H) of the code frequencies, the number of codes never used
(``val_dead_codes``), the counts themselves (``val_code_counts``, for the usage-over-training figure) and the
bound with the uniform prior, log p(x | z_q) - sum_g H_g W_g log K (``val_uniform_bound``; the same as ``val_elbo``
until a second-stage prior is trained). A model with several code maps (a two-level VQ-VAE) reports each map's
use under its group's name: ``val_codes_used_top``, ``val_code_counts_bottom``, ...
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.objectives.bounds import elbo_terms
from vaekit.objectives.elbo import Objective, ObjectiveResult

__all__ = ["VQObjective", "codebook_usage", "usage_metrics"]


@torch.no_grad()
def codebook_usage(model: nn.Module, x: torch.Tensor, batch_size: int = 500
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({group: code counts (K_g,)}, log p(x | z_q) (N,)) of a quantised model over the examples x (eval mode, no
    grad); the groups in layout order."""
    groups = model.layout.groups
    counts = {g.name: torch.zeros(g.shape[-1], dtype=torch.long, device=x.device) for g in groups}
    rec = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size]
        out = model(xb, None)
        for g in out.groups:
            counts[g.name] += torch.bincount(g.z.argmax(-1).flatten(), minlength=counts[g.name].numel())
        rec.append(out.px.log_prob(xb))
    return counts, torch.cat(rec)


def usage_metrics(counts: torch.Tensor, suffix: str = "") -> dict:
    """The validation metrics of one code map's counts (K,): used fraction, dead codes, perplexity, the counts."""
    used = int((counts > 0).sum())
    p = counts.double() / counts.sum().clamp_min(1)
    return {f"val_codes_used{suffix}": used / counts.numel(), f"val_dead_codes{suffix}": counts.numel() - used,
            f"val_perplexity{suffix}": float(torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum())),
            f"val_code_counts{suffix}": [int(c) for c in counts]}


class VQObjective(Objective):
    """See the module docstring. commitment: beta; codebook_weight: the weight of the codebook term."""

    def __init__(self, commitment: float = 0.25, codebook_weight: float = 1.0) -> None:
        super().__init__()
        if commitment < 0 or codebook_weight < 0:
            raise ValueError("the VQ objective needs commitment >= 0 and codebook_weight >= 0")
        self.commitment, self.codebook_weight = float(commitment), float(codebook_weight)

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:
        t = elbo_terms(model, x, 1, check=check)
        if "commitment" not in t.extras:
            raise ValueError("model.objective=vq needs a vector-quantised model (model.family=vqvae)")
        commit, cb = t.extras["commitment"], t.extras["codebook_loss"]  # (B,), (B,)
        rec, kl = t.log_px_z.mean(), t.kl.mean()
        loss = kl - rec + self.commitment * commit.mean() + self.codebook_weight * cb.mean()
        return ObjectiveResult(loss, t.log_px_z, t.kl, 1.0, means=(rec.detach(), kl.detach()),
                               terms={"commitment": commit, "codebook": cb}, kl_groups=t.kl_groups)

    def validation_metrics(self, model: nn.Module, val_x: torch.Tensor) -> dict:
        counts, log_px_z = codebook_usage(model, val_x)
        groups = model.layout.groups
        out: dict = {}
        for g in groups:
            out.update(usage_metrics(counts[g.name], "" if len(groups) == 1 else f"_{g.name}"))
        uniform_kl = sum(g.size // g.shape[-1] * math.log(g.shape[-1]) for g in groups)  # sum_g H_g W_g log K_g
        out["val_uniform_bound"] = float(log_px_z.mean()) - uniform_kl
        return out
