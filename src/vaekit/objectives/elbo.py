"""Training objectives on the model contract: the (beta-weighted, warmed-up, free-bits) ELBO and the IWAE bound.

Units: nats per example; sums over pixels and latents, mean over the batch.

An objective is an ``Objective`` (an ``nn.Module``): ``objective(model, x, step=, check=)`` returns one typed
``ObjectiveResult``. An objective with extra terms puts them, per example, in ``result.terms``. What else it
needs from the trainer comes through the hooks the base class declares (each a no-op by default): its own
trainable parameters (``joint_parameters()``: by default every parameter that no optimizer of its own updates;
the trainer adds them to its optimizer as a group of their own), its own optimizers (``optimizers()``, a
FactorVAE discriminator's, updated in ``auxiliary_step`` and checkpointed), extra validation metrics
(``validation_metrics``, M2's accuracy) and the metric that picks the 'best' checkpoint (``selection``). The
trainer and the evaluator need no change for any of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from vaekit.objectives.bounds import elbo_terms, log_weights
from vaekit.objectives.schedules import kl_weight

__all__ = ["Objective", "ObjectiveResult", "ELBO", "IWAE", "kl_balance_coefficients"]


@dataclass
class ObjectiveResult:
    """loss: scalar to minimise. log_px_z, kl: (B,) per-example terms in nats. beta: the KL weight used.

    ``elbo`` (B,) is the per-example bound: ``log_px_z - kl`` (computed when read, off the training hot path), or
    ``bound`` when the objective is another bound (IWAE). ``terms``: further named (B,) per-example terms of an
    objective (a total-correlation estimate, a classifier loss). ``kl_groups``: (B, G) the KL per unit (latent
    dimension) when the objective computed it. ``means``: the batch means of log p(x|z) and KL, detached, when
    the objective computed them anyway (the trainer's running averages reuse them).
    """

    loss: torch.Tensor
    log_px_z: torch.Tensor
    kl: torch.Tensor
    beta: float
    bound: torch.Tensor | None = None
    means: tuple[torch.Tensor, torch.Tensor] | None = None
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    kl_groups: torch.Tensor | None = None

    @property
    def elbo(self) -> torch.Tensor:
        return self.bound if self.bound is not None else self.log_px_z - self.kl

    def stats(self) -> dict[str, torch.Tensor]:
        """Detached batch means for the training log: rec (= -E log p(x|z)), kl and every extra term."""
        rec, kl = self.means if self.means is not None else (self.log_px_z.detach().mean(), self.kl.detach().mean())
        out = {"rec": -rec, "kl": kl}
        for name, v in self.terms.items():
            out[name] = v.detach().mean()
        return out


class Objective(nn.Module):
    """Base class of training objectives: ``forward`` and the trainer's hooks (see the module docstring)."""

    #: the validation metric (higher is better) that picks the 'best' checkpoint; "val_elbo" unless an objective
    #: names one its ``validation_metrics`` reports (M2: "val_accuracy")
    selection: str = "val_elbo"

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def joint_parameters(self) -> list[nn.Parameter]:
        """Parameters the trainer's optimizer trains together with the model's (a learned prior's, a weight):
        by default every parameter that requires a gradient, less those updated by ``optimizers()``."""
        own = {id(p) for opt in self.optimizers().values() for g in opt.param_groups for p in g["params"]}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in own]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The objective's own optimizers by name (checkpointed with the run); none by default."""
        return {}

    def auxiliary_step(self, model: nn.Module, x: torch.Tensor, result: ObjectiveResult,
                       step: int) -> dict[str, float]:
        """An update of the objective's own parameters after each main step that was taken (the batch x and its
        result); returns statistics to log. Nothing by default."""
        return {}

    def validation_metrics(self, model: nn.Module, val_x: torch.Tensor) -> dict[str, float]:
        """Metrics added to each validation record, called in eval mode without gradients (M2: the
        accuracy of q(y|x)); none by default."""
        return {}


def _per_group(value: float | Mapping[str, float], name: str, what: str) -> float:
    if isinstance(value, Mapping):
        if name not in value:
            raise ValueError(f"{what} has no entry for latent group {name!r} (it has {', '.join(value)})")
        return float(value[name])
    return float(value)


def kl_balance_coefficients(kls: Mapping[str, torch.Tensor], sizes: Mapping[str, int],
                            eps: float = 0.01) -> dict[str, torch.Tensor]:
    """NVAE's KL balancing coefficients (Vahdat & Kautz 2020, Sec. 5 and App. A, "KL balancing coefficient"):
    gamma_g proportional to (E_batch |KL_g| + eps) / alpha_g, normalised to mean 1 over the G groups
    (gamma_g = G c_g / sum_h c_h), detached. kls: {group: (B,) KL}; alpha_g: the group's size relative to the
    smallest (``sizes``: latent dimensions per example), so groups are compared by KL per dimension. A group
    with more KL per dimension than the others gets a larger weight, which keeps the others from collapsing
    while the KL is warmed up."""
    smallest = min(int(sizes[name]) for name in kls)
    c = {name: (kl.detach().abs().mean() + eps) / (int(sizes[name]) / smallest) for name, kl in kls.items()}
    total = sum(c.values())
    return {name: len(c) * v / total for name, v in c.items()}


class ELBO(Objective):
    """Negative ELBO loss  -E_q[log p(x|z)] + beta_t * KL  with L samples.

    beta_t = beta * min(1, step / warmup_steps) (KL warm-up). With ``free_bits = lambda > 0`` the KL term is
    sum_u max(lambda, E_batch[KL_u]) over units u (Kingma et al. 2016, "Improving Variational Inference with
    Inverse Autoregressive Flow", Sec. C.8 / Eq. 15): one unit per latent dimension of every group (per layer
    and dimension in a hierarchy), the whole group where its KL is a Monte Carlo estimate that does not split.
    beta and free_bits may be given per latent group as {group name: value}.
    With ``kl_balance`` (NVAE, Vahdat & Kautz 2020) each group's KL term is weighed by
    ``kl_balance_coefficients`` while the warm-up factor is below 1, then plainly summed.
    The per-example ``elbo`` reported is always the true (beta = 1, no free bits) ELBO.
    """

    def __init__(self, beta: float | Mapping[str, float] = 1.0, warmup_steps: int = 0,
                 free_bits: float | Mapping[str, float] = 0.0, n_samples: int = 1, kl_balance: bool = False) -> None:
        super().__init__()
        betas = list(beta.values()) if isinstance(beta, Mapping) else [beta]
        fbs = list(free_bits.values()) if isinstance(free_bits, Mapping) else [free_bits]
        if min(betas) < 0 or min(fbs) < 0 or n_samples < 1 or warmup_steps < 0:
            raise ValueError("ELBO needs beta >= 0, free_bits >= 0, warmup_steps >= 0 and n_samples >= 1")
        self.beta = dict(beta) if isinstance(beta, Mapping) else float(beta)
        self.free_bits = dict(free_bits) if isinstance(free_bits, Mapping) else float(free_bits)
        self.warmup_steps, self.n_samples = int(warmup_steps), int(n_samples)
        self.kl_balance = bool(kl_balance)
        self._simple = not isinstance(beta, Mapping) and not isinstance(free_bits, Mapping) and not kl_balance

    def kl_term(self, t, step: int | None) -> tuple[torch.Tensor, float]:
        """(the weighted, free-bits KL term of the loss, the warm-up factor times beta for logging)."""
        ramp = kl_weight(step, 1.0, self.warmup_steps)
        if self._simple:
            beta = ramp * self.beta
            kl = torch.clamp(t.kl_groups.mean(0), min=self.free_bits).sum() if self.free_bits > 0 else t.kl.mean()
            return (kl if beta == 1.0 else beta * kl), beta  # one graph node fewer at beta 1
        total = 0.0
        gamma = (kl_balance_coefficients({n: k.sum(-1) for n, k in t.groups.items()}, t.sizes)
                 if self.kl_balance and ramp < 1 and len(t.groups) > 1 else {})
        for name, kl_g in t.groups.items():
            fb = _per_group(self.free_bits, name, "free_bits")
            b = ramp * _per_group(self.beta, name, "beta") * gamma.get(name, 1.0)
            kl = torch.clamp(kl_g.mean(0), min=fb).sum() if fb > 0 else kl_g.sum(-1).mean()
            total = total + b * kl
        return total, ramp

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:
        t = elbo_terms(model, x, self.n_samples, check=check)
        kl_term, beta = self.kl_term(t, step)
        kl_mean, rec_mean = t.kl.mean(), t.log_px_z.mean()
        loss = kl_term - rec_mean
        return ObjectiveResult(loss, t.log_px_z, t.kl, beta, means=(rec_mean.detach(), kl_mean.detach()),
                               kl_groups=t.kl_groups)


class IWAE(Objective):
    """Importance-weighted bound (Burda et al. 2016, Eq. 8): log (1/k) sum_k w_k, w_k = p(x, z_k) / q(z_k|x)."""

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        if k < 1:
            raise ValueError("IWAE needs k >= 1")
        self.k = int(k)

    def bound(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B,) IWAE_k lower bound per example."""
        return torch.logsumexp(log_weights(model, x, self.k), 0) - math.log(self.k)

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:
        if check:
            model.check_input(x)
        bound = self.bound(model, x)
        nan = torch.full_like(bound, float("nan"))
        return ObjectiveResult(-bound.mean(), nan, nan, 1.0, bound=bound)
