"""The model side of ``vaekit serve``: decode, encode, sample, interpolate and resample in prior units ``u``.

Torch only (no web framework): the app in ``vaekit.serve.app`` calls these methods under one lock. See the
package docstring for the coordinates ``u`` (``vaekit.models.uses``: each continuous group whitened by its
prior given its parent; a one-latent VAE is a hierarchy of one group).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["Explorer", "LatentMap", "slerp"]


@dataclass
class LatentMap:
    """Test points in 2-D: xy = (u - mean) @ components; a click maps back with u = mean + xy @ components.T."""

    xy: np.ndarray          # (N, 2)
    labels: list[int] | None
    mean: np.ndarray        # (D,)
    components: np.ndarray  # (D, 2), orthonormal columns (a zero column when D = 1)
    xlabel: str
    ylabel: str


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016, "Sampling Generative Networks") between vectors a, b
    (D,) at fractions t (T,): (T, D). Falls back to linear interpolation when a and b are (anti)parallel or zero."""
    na, nb = a.norm(), b.norm()
    t = t[:, None]  # (T, 1)
    if na < 1e-8 or nb < 1e-8:
        return (1 - t) * a + t * b
    cos = torch.clamp((a / na) @ (b / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega < 1e-4 or math.pi - omega < 1e-4:
        return (1 - t) * a + t * b
    s = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / s) * a + (torch.sin(t * omega) / s) * b


class Explorer:
    """A trained image model and (optionally) its test points, in the coordinates u of ``vaekit.serve``.

    model: a trained model whose latent groups are all continuous (the capability ``continuous``), in eval mode;
    family: its name as the run config gives it (shown on the page); x, y: test images (N, C, H, W) and labels (N,) or None;
    binarize: threshold uploaded images at 0.5 (runs trained on binarised data); max_points: test points kept
    for the map (a fixed-seed subset when there are more).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
                 name: str = "run", family: str = "", binarize: bool = False, max_points: int = 2000,
                 kl_examples: int = 1000) -> None:
        from vaekit.models.contract import CONTINUOUS, GAUSSIAN_PRIOR, require
        from vaekit.models.uses import unit_slices

        require(model, CONTINUOUS, "vaekit serve")
        require(model, GAUSSIAN_PRIOR, "vaekit serve")  # its samples are u ~ N(0, T^2 I)
        shape = tuple(int(s) for s in model.data_shape)
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise ValueError(f"vaekit serve shows images of 1 or 3 channels; this run models data of shape {shape}")
        self.model, self.name, self.binarize = model.eval(), name, bool(binarize)
        self.family = family or type(model).__name__  # what the page calls the model
        self.data_shape = shape
        self.device = next(model.parameters()).device
        slices = unit_slices(model.layout)  # each continuous group's coordinates, layout order (bottom first)
        self.group_names = list(slices)
        self.layer_slices = list(slices.values())
        self.layer_dims = [s.stop - s.start for s in self.layer_slices]
        self.latent_dim = sum(self.layer_dims)
        self.lock = threading.Lock()  # one model call at a time: the nets are shared, CPU threads are few
        self.x = self.y = None
        self.points_u: torch.Tensor | None = None
        self.kl: list[float] | None = None
        if x is not None and len(x):
            if len(x) > max_points:
                idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:max_points].sort().values
                x, y = x[idx], (y[idx] if y is not None else None)
            self.x, self.y = x.to(self.device), y
            self.points_u = torch.cat([self.encode(self.x[i:i + 500])[0] for i in range(0, len(x), 500)])
            self.kl = self._kl(x[:kl_examples])

    # -- set-up ----------------------------------------------------------------------------------------
    def _kl(self, x: torch.Tensor) -> list[float] | None:
        """Mean KL(q || p) per latent unit in nats (``vaekit.evaluation.kl_per_dimension``), None when the
        posterior gives no per-dimension split."""
        from vaekit.evaluation import kl_per_dimension

        with self.lock:
            kl = kl_per_dimension(self.model, x.to(self.device), seed=0)
        return [float(v) for v in kl] if kl.numel() == self.latent_dim else None

    def order(self) -> list[int]:
        """Latent dimensions sorted by KL, largest first (natural order without KL values)."""
        if self.kl is None:
            return list(range(self.latent_dim))
        return sorted(range(self.latent_dim), key=lambda d: (-self.kl[d], d))

    def latent_map(self) -> LatentMap | None:
        """The 2-D map of the test points (PCA of their u; the two coordinates themselves when D <= 2)."""
        if self.points_u is None:
            return None
        u = self.points_u.double().cpu().numpy()
        d = u.shape[1]
        if d <= 2:
            comps = np.eye(d, 2)
            mean = np.zeros(d)
            labels = ("u0", "u1" if d == 2 else "(none)")
        else:
            from vaekit.plots.latent import pca_2d

            comps, mean, ratio = pca_2d(u)
            labels = (f"PC1 ({ratio[0]:.0%} of variance)", f"PC2 ({ratio[1]:.0%} of variance)")
        xy = (u - mean) @ comps
        y = None if self.y is None else [int(v) for v in self.y.reshape(-1).tolist()]
        return LatentMap(xy, y, mean, comps, *labels)

    # -- the uses ----------------------------------------------------------------------------------------
    def _tensor(self, u: Any) -> torch.Tensor:
        ref = next(self.model.parameters())
        u = torch.as_tensor(u, dtype=ref.dtype, device=ref.device)
        if u.dim() == 1:
            u = u[None]
        if u.dim() != 2 or u.shape[1] != self.latent_dim:
            raise ValueError(f"latent vectors need {self.latent_dim} values each, got shape {tuple(u.shape)}")
        return u

    @torch.no_grad()
    def decode(self, u: Any) -> torch.Tensor:
        """Means of p(x|z) (B, C, H, W), clamped to [0, 1], for u (B, D) or (D,) (``decode_units``)."""
        from vaekit.models.uses import decode_mean

        u = self._tensor(u)
        with self.lock:
            x = decode_mean(self.model, u)
        return torch.nan_to_num(x.float(), nan=0.0).clamp(0, 1).cpu()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) in prior units: (mean (B, D), std (B, D)) along the mean pass, each group measured against its
        prior at its parent's posterior mean (``encode_units``)."""
        from vaekit.models.uses import encode_units

        with self.lock:
            mean, std = encode_units(self.model, x.to(self.device))
        return mean.float().cpu(), std.float().cpu()

    def sample(self, n: int, temperature: float, seed: int) -> torch.Tensor:
        """u (n, D) ~ N(0, T^2 I): ancestral samples of the model at temperature T (decode them for images)."""
        g = torch.Generator().manual_seed(int(seed))
        return temperature * torch.randn(n, self.latent_dim, generator=g)

    def resample(self, u: Any, layer: int, temperature: float, seed: int) -> torch.Tensor:
        """u with layer ``layer``'s noise drawn anew (N(0, T^2 I)); the other layers keep theirs, so the layers
        below follow the new draw through p(z_i | z_{i+1}). (1, D)."""
        if not 0 <= layer < len(self.layer_dims):
            raise ValueError(f"layer must be in 0..{len(self.layer_dims) - 1}, got {layer}")
        u = self._tensor(u).float().cpu().clone()
        s = self.layer_slices[layer]
        g = torch.Generator().manual_seed(int(seed))
        u[:, s] = temperature * torch.randn(u.shape[0], s.stop - s.start, generator=g)
        return u

    def interpolate(self, ua: Any, ub: Any, steps: int, method: str) -> torch.Tensor:
        """(steps, D): from ua to ub, linearly or along the great circle (``slerp``)."""
        a, b = self._tensor(ua)[0].float().cpu(), self._tensor(ub)[0].float().cpu()
        t = torch.linspace(0, 1, steps)
        if method == "slerp":
            return slerp(a, b, t)
        return (1 - t[:, None]) * a + t[:, None] * b
