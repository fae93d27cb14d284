"""A family new in shape, written as a user would add one: this module, one registry entry, a preset.

Three latent groups: a class y of K values summed out exactly (enumerated), a (C, H, W) map "top" with a
standard normal prior, and a vector "bottom" whose prior p(bottom | top) is a Gaussian from a linear map of the
top map. p(x | bottom, y) is a Bernoulli from an MLP. It speaks both halves of the contract and nothing else:
the trainer, evaluator, figures, apps and the explorer must run on it, or refuse naming a capability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal, OneHotCategorical

from vaekit.likelihoods import build_likelihood
from vaekit.models.contract import (CLASS_CONDITIONAL, DISCRETE, DISCRETE_DATA, HIERARCHICAL, GroupLayout,
                                    LatentGroup, LatentLayout, ModelOutput)
from vaekit.models.uses import LatentUsesMixin
from vaekit.objectives.latents import sample_latent
from vaekit.options import option

TOP = (2, 2, 2)


def _gauss(mean: torch.Tensor, raw_scale: torch.Tensor, event: int) -> Independent:
    return Independent(Normal(mean, F.softplus(raw_scale) + 1e-3), event)


class ToyFamily(LatentUsesMixin, nn.Module):
    def __init__(self, data_shape: Sequence[int], bottom: int = 3, n_classes: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        self.bottom, self.k = int(bottom), int(n_classes)
        n_x, n_top = int(torch.tensor(self.data_shape).prod()), int(torch.tensor(TOP).prod())
        self.likelihood = build_likelihood("bernoulli", self.data_shape)
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(n_x, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, self.k)
        self.q_top = nn.Linear(hidden, 2 * n_top)
        self.q_bottom = nn.Linear(hidden + n_top, 2 * self.bottom)
        self.p_bottom = nn.Linear(n_top, 2 * self.bottom)
        self.dec = nn.Sequential(nn.Linear(self.bottom + self.k, hidden), nn.ReLU(), nn.Linear(hidden, n_x))
        self.latent_dim = self.bottom + n_top

    # -- the bound half -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, **options) -> ModelOutput:
        h = self.enc(x)  # (B, H)
        B, k = x.shape[0], self.k
        logits = self.classifier(h)  # (B, K)
        y_all = torch.eye(k, dtype=h.dtype, device=h.device).unsqueeze(1).expand(-1, B, -1)  # (K, B, K)
        q_top = self._q_top(h).expand((k, B))  # the class does not change q(top | x)
        g_top = sample_latent("top", q_top, self.group_prior("top", {}), n_samples)  # z (*S, K, B, 2, 2, 2)
        p_b = self.group_prior("bottom", {"top": g_top.z})  # (*S, K, B)
        q_b = self._q_bottom(h, g_top.z)
        g_b = sample_latent("bottom", q_b, p_b, None)  # one per parent sample: (*S, K, B, D)
        gy = LatentGroup("y", OneHotCategorical(logits=logits), self.group_prior("y", {}), y_all, enumerated=True)
        px = self.decode({"bottom": g_b.z, "y": y_all})
        return ModelOutput([g_b, g_top, gy], px, 0 if n_samples is None else 1)

    def check_input(self, x: torch.Tensor) -> None:
        self.likelihood.check_batch(x)

    def extra_stats(self) -> dict[str, float]:
        return {}

    def _q_top(self, h: torch.Tensor) -> Independent:
        m, s = self.q_top(h).reshape(h.shape[0], 2, *TOP).unbind(1)
        return _gauss(m, s, 3)

    def _q_bottom(self, h: torch.Tensor, top: torch.Tensor) -> Independent:
        t = top.flatten(-3)  # (*lead, n_top)
        hh = h.expand(*t.shape[:-1], h.shape[-1])
        m, s = self.q_bottom(torch.cat([hh, t], -1)).chunk(2, -1)
        return _gauss(m, s, 1)

    # -- the uses half --------------------------------------------------------------------------------------
    @property
    def layout(self) -> LatentLayout:
        return LatentLayout((GroupLayout("bottom", (self.bottom,), parent="top"), GroupLayout("top", TOP),
                             GroupLayout("y", (self.k,), "discrete", role="class")))

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({HIERARCHICAL, DISCRETE, CLASS_CONDITIONAL, DISCRETE_DATA})

    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]:
        h = self.enc(x)
        q_top = self._q_top(h)
        top = given["top"] if given and "top" in given else q_top.mean
        return {"bottom": self._q_bottom(h, top), "top": q_top, "y": OneHotCategorical(logits=self.classifier(h))}

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        ref = self.p_bottom.weight
        if name == "top":
            zero = torch.zeros(TOP, dtype=ref.dtype, device=ref.device)
            return Independent(Normal(zero, torch.ones_like(zero)), 3)
        if name == "y":
            return OneHotCategorical(logits=torch.zeros(self.k, dtype=ref.dtype, device=ref.device))
        m, s = self.p_bottom(z["top"].flatten(-3)).chunk(2, -1)
        return _gauss(m, s, 1)

    def decode(self, z: Mapping[str, torch.Tensor]) -> Distribution:
        b = z["bottom"]
        y = z["y"].to(b.dtype).expand(*b.shape[:-1], self.k)
        h = self.dec(torch.cat([b, y], -1))
        return self.likelihood.decoded(h, b.shape[:-1]).full


@dataclass
class ToyOptions:
    """``model.family=toy``: the test family's own keys."""

    latent_dim: int = option(3, doc="size of the bottom vector group", min=1)
    n_classes: int = option(4, doc="values of the class group", min=2)


def register() -> None:
    """The one registry entry (``unregister`` takes it away again: tests leave the registry as they found it)."""
    from vaekit.models.registry import FAMILIES, register_family

    if "toy" in FAMILIES:
        return

    @register_family("toy", ToyOptions, "a test family: enumerated class, a latent map, a vector below it")
    def _toy(m, data_shape):
        return ToyFamily(data_shape, bottom=m.latent_dim, n_classes=m.n_classes)


def unregister() -> None:
    from vaekit.models.registry import FAMILIES

    FAMILIES.pop("toy", None)


PRESET = """# toy: the test family on the bundled digits, a few seconds of training
seed: 0
data: {name: digits, binarize: static}
model: {family: toy, latent_dim: 3, likelihood: bernoulli}
train: {steps: 30, batch_size: 64, lr: 0.003, val_every: 15, threads: 1}
eval: {iw_samples: 10}
"""
