"""The semi-supervised objective of M2 (Kingma, Rezende, Mohamed & Welling 2014, Eqs. 6-9).

For a labelled pair, the bound on log p(x, y) (Eq. 6): L(x, y) = E_q(z|x,y)[log p(x|y,z)] - KL(q(z|x,y) || p(z))
+ log p(y). For unlabelled x, the class is summed out exactly (Eq. 7): U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)),
which ``vaekit.objectives.elbo_terms`` computes from the model's enumerated group. The training criterion (Eq. 9)
J^alpha = sum_labelled -L + sum_unlabelled -U + alpha E_labelled[-log q(y|x)], with the paper's alpha = 0.1 N, is
divided by N = N_l + N_u (nats per training example):

    loss = (N_u / N) mean_u[-U] + (N_l / N) mean_l[-L] + (alpha / N) mean_l[-log q(y|x)],

each mean taken over a minibatch: the unlabelled batch is the trainer's, the labelled batch is drawn here from
the labelled examples (all of them when there are at most ``labelled_batch``), so every step sees labels. With
every label known (N_u = 0) it is the conditional VAE plus the classifier's loss. ``generative=False`` keeps the
classification term alone: the baseline of the same classifier net trained on the labelled examples only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.objectives.bounds import elbo_terms
from vaekit.objectives.elbo import Objective, ObjectiveResult

__all__ = ["Supervision", "SemiSupervisedELBO", "balanced_label_subset", "supervision_from_labels"]


@dataclass
class Supervision:
    """The labels an objective trains with: labelled examples x (N_l, ...) with y (N_l,), how many unlabelled
    examples the trainer iterates over, the batch transform (dynamic binarisation) and seed for the labelled
    batches, and the validation labels that choose the checkpoint (by accuracy)."""

    x: torch.Tensor
    y: torch.Tensor
    n_unlabelled: int
    transform: Callable | None = None
    seed: int = 0
    val_y: torch.Tensor | None = None


def supervision_from_labels(x: torch.Tensor, y: torch.Tensor, transform: Callable | None, seed: int,
                            val_y: torch.Tensor | None = None) -> tuple[Supervision, torch.Tensor]:
    """(the Supervision, the unlabelled examples the trainer iterates over) for training examples x (N, ...) with
    labels y (N,), -1 where unlabelled. Every label known is the conditional VAE: the trainer then iterates over
    all of x and the unlabelled bound has weight 0. ``seed``: the run's seed (its labelled batches use seed + 6)."""
    known = y >= 0
    if not bool(known.any()):
        raise ValueError("y labels no example (every entry is -1); a semi-supervised model needs some labels")
    n_unlabelled = int((~known).sum())
    rest = x[~known] if n_unlabelled else x
    return Supervision(x[known], y[known], n_unlabelled, transform, seed + 6, val_y), rest


def _rank_world() -> tuple[int, int]:
    """(rank, world size) of the torchrun process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def balanced_label_subset(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Sorted indices of n examples, n / K of each of the K classes in y (seeded), for ``data.labels=n``."""
    classes = torch.unique(y)
    k = len(classes)
    if n % k or n // k < 1:
        raise ValueError(f"data.labels={n} does not split evenly over the {k} classes; give a multiple of {k}")
    g = torch.Generator().manual_seed(int(seed))
    picks = []
    for c in classes:
        idx = (y == c).nonzero().squeeze(1)
        if len(idx) < n // k:
            raise ValueError(f"data.labels={n} needs {n // k} examples of class {int(c)}, the data has {len(idx)}")
        picks.append(idx[torch.randperm(len(idx), generator=g)[: n // k]])
    return torch.cat(picks).sort().values


class SemiSupervisedELBO(Objective):
    """M2's J^alpha per training example (module docstring). alpha: the paper's alpha (None: 0.1 N)."""

    selection = "val_accuracy"  # the 'best' checkpoint is the one of the best validation accuracy

    def __init__(self, supervision: Supervision, alpha: float | None = None, labelled_batch: int = 100,
                 n_samples: int = 1, generative: bool = True) -> None:
        super().__init__()
        s = supervision
        if s.x.shape[0] != s.y.shape[0] or s.x.shape[0] == 0:
            raise ValueError(f"need labelled examples with one label each, got {s.x.shape[0]} and {s.y.shape[0]}")
        if labelled_batch < 1 or n_samples < 1:
            raise ValueError("objective_options.labelled_batch and model.n_samples must be at least 1")
        self.sup = s
        self.n_labelled, self.n_unlabelled = int(s.x.shape[0]), int(s.n_unlabelled)
        n = self.n_labelled + self.n_unlabelled
        self.alpha = 0.1 * n if alpha is None else float(alpha)
        if self.alpha < 0:
            raise ValueError(f"objective_options.alpha must be zero or more, got {alpha}")
        self.w_u, self.w_l, self.w_c = self.n_unlabelled / n, self.n_labelled / n, self.alpha / n
        self.labelled_batch, self.n_samples, self.generative = int(labelled_batch), int(n_samples), bool(generative)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def labelled(self, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled batch of a step: a function of (seed, step) alone, so a resumed run draws the same ones.

        Under torchrun the same global batch is drawn on every rank and each rank keeps its contiguous part (as
        the trainer shards the unlabelled batch), so DDP's averaged gradient is the one-process gradient."""
        if device not in self._on:
            self._on = {device: (self.sup.x.to(device), self.sup.y.to(device))}
        x, y = self._on[device]
        g = torch.Generator(device=device).manual_seed(self.sup.seed * 1_000_003 + int(step) + 7)
        if self.labelled_batch < self.n_labelled:
            idx = torch.randperm(self.n_labelled, generator=g, device=device)[: self.labelled_batch]
            x, y = x.index_select(0, idx), y.index_select(0, idx)
        if self.sup.transform is not None:
            x = self.sup.transform(x, g)
        rank, world = _rank_world()
        if world > 1:
            if x.shape[0] < world:
                raise ValueError(f"{x.shape[0]} labelled examples per step cannot be split over {world} ranks; "
                                 "raise objective_options.labelled_batch or data.labels")
            x, y = x.tensor_split(world)[rank], y.tensor_split(world)[rank]
        return x, y

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:
        xl, yl = self.labelled(step or 0, x.device)
        if not self.generative:  # the baseline: the classifier net on the labelled examples alone
            logits = model(xl, None, y=yl).extras["y_logits"]
            ce = F.cross_entropy(logits, yl, reduction="none")
            nan = torch.full((x.shape[0],), float("nan"), device=x.device)
            return ObjectiveResult(ce.mean(), nan, nan, 1.0, terms={"class_loss": ce})
        tl = elbo_terms(model, xl, self.n_samples, check=check, y=yl)
        log_py = -math.log(tl.extras["y_logits"].shape[-1])  # uniform p(y)
        lab = tl.elbo + log_py  # (B_l,) L(x, y)
        ce = F.cross_entropy(tl.extras["y_logits"], yl, reduction="none")  # (B_l,) -log q(y|x)
        loss = self.w_l * -lab.mean() + self.w_c * ce.mean()
        terms = {"labelled_elbo": lab, "class_loss": ce}
        if self.w_u > 0:
            tu = elbo_terms(model, x, self.n_samples, check=check)  # U(x): y summed out
            loss = loss + self.w_u * -tu.elbo.mean()
            return ObjectiveResult(loss, tu.log_px_z, tu.kl, 1.0, terms=terms, kl_groups=tu.kl_groups)
        return ObjectiveResult(loss, tl.log_px_z, tl.kl, 1.0, terms=terms, kl_groups=tl.kl_groups)

    @torch.no_grad()
    def validation_metrics(self, model: nn.Module, val_x: torch.Tensor) -> dict[str, float]:
        """{"val_accuracy": accuracy of argmax q(y|x) on the validation set} (empty without validation labels)."""
        if self.sup.val_y is None or val_x is None or val_x.shape[0] == 0:
            return {}
        from vaekit.evaluation.metrics import classification_error

        known = self.sup.val_y >= 0  # -1: an unlabelled validation example (the Python API's convention)
        if not bool(known.any()):
            return {}
        known = known.to(val_x.device)
        return {"val_accuracy": 1.0 - classification_error(model, val_x[known], self.sup.val_y.to(val_x.device)[known])}
