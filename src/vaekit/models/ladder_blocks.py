"""Building blocks of the Ladder VAE (Sønderby et al. 2016, "Ladder Variational Autoencoders", Sec. 2).

- ``DenseBlock``: the deterministic MLPs d = MLP(y) of the paper (Linear -> [BatchNorm] -> activation, repeated).
- ``ConvStem``: a strided-conv first bottom-up block for images of any size.
- ``GaussianParams``: the heads mu = Linear(d), sigma^2 = Softplus(Linear(d)) (+ a small floor), used for both
  the bottom-up "approximate likelihood" parameters (mu_hat_q, sigma_hat^2_q) and the top-down p(z_i|z_{i+1}).
- ``precision_merge``: the precision-weighted combination of Eqs. 18-19,
  sigma^2_q = 1 / (sigma_hat^-2 + sigma_p^-2),  mu_q = (mu_hat sigma_hat^-2 + mu_p sigma_p^-2) sigma^2_q,
  which is the (normalised) product of the two Gaussian densities N(mu_hat, sigma_hat^2) N(mu_p, sigma_p^2).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from vaekit.nn import activation, conv_sizes
from vaekit.posteriors.gaussian import DiagonalGaussian

__all__ = ["DenseBlock", "ConvStem", "GaussianParams", "precision_merge"]


def _apply_flat(net: nn.Module, h: torch.Tensor, n_event: int) -> torch.Tensor:
    """Run ``net`` on h of shape (*lead, *event) as one (N, *event) batch (what BatchNorm needs)."""
    lead = h.shape[: h.dim() - n_event]
    out = net(h.reshape(-1, *h.shape[h.dim() - n_event:]))  # (N, F)
    return out.reshape(*lead, out.shape[-1])


class DenseBlock(nn.Module):
    """(*lead, *in_shape) -> (*lead, width): ``n_layers`` x [Linear -> BatchNorm1d (optional) -> activation].

    The input is flattened over ``in_shape`` (so an image x can feed the first bottom-up block directly).
    With ``batch_norm`` the statistics are taken over all leading dimensions together (samples and batch).
    """

    def __init__(
        self,
        in_shape: int | Sequence[int],
        width: int,
        n_layers: int = 2,
        act: str = "leaky_relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.in_shape = (int(in_shape),) if isinstance(in_shape, int) else tuple(int(s) for s in in_shape)
        if n_layers < 1 or width < 1:
            raise ValueError(f"a deterministic block needs n_layers >= 1 and width >= 1, got {n_layers}, {width}")
        self.out_features = int(width)
        n_in = 1
        for s in self.in_shape:
            n_in *= s
        layers: list[nn.Module] = [nn.Flatten()]
        for k in range(int(n_layers)):
            layers.append(nn.Linear(n_in if k == 0 else width, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(activation(act))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = len(self.in_shape)
        if tuple(h.shape[h.dim() - n:]) != self.in_shape:
            raise ValueError(f"DenseBlock expects inputs of trailing shape {self.in_shape}, got {tuple(h.shape)}")
        return _apply_flat(self.net, h, n)


class ConvStem(nn.Module):
    """(*lead, C, H, W) -> (*lead, width): stride-2 convs (kernel 4, padding 1; n -> floor(n/2)) each followed by
    BatchNorm2d (optional) and the activation, then Linear -> BatchNorm1d (optional) -> activation."""

    def __init__(
        self,
        in_shape: Sequence[int],
        channels: Sequence[int],
        width: int,
        act: str = "leaky_relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in in_shape)
        self.in_shape = (c, h, w)
        self.out_features = int(width)
        sizes = conv_sizes(h, w, len(channels))
        layers: list[nn.Module] = []
        prev = c
        for ch in channels:
            layers.append(nn.Conv2d(prev, int(ch), 4, stride=2, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(ch)))
            layers.append(activation(act))
            prev = int(ch)
        layers += [nn.Flatten(), nn.Linear(prev * sizes[-1][0] * sizes[-1][1], width)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(activation(act))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-3:]) != self.in_shape:
            raise ValueError(f"ConvStem expects images of shape {self.in_shape}, got {tuple(x.shape)}")
        return _apply_flat(self.net, x, 3)


class GaussianParams(nn.Module):
    """d (*lead, F) -> N(mu, diag sigma^2), batch (*lead,), event (D,): mu = Linear(d), sigma^2 = Softplus(Linear(d))
    + var_floor.

    Sønderby et al. 2016 parameterise every Gaussian this way (their Eqs. 7-9 for the VAE, reused for the
    bottom-up mu_hat_q / sigma_hat^2_q and the top-down mu_p / sigma^2_p of the LVAE). The floor keeps
    precisions finite.
    """

    def __init__(self, in_features: int, latent_dim: int, var_floor: float = 1e-4) -> None:
        super().__init__()
        if not var_floor >= 0:
            raise ValueError(f"var_floor must be >= 0, got {var_floor}")
        self.latent_dim, self.var_floor = int(latent_dim), float(var_floor)
        self.mu = nn.Linear(in_features, latent_dim)
        self.var = nn.Linear(in_features, latent_dim)

    def forward(self, d: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(self.mu(d), (F.softplus(self.var(d)) + self.var_floor).sqrt())


def precision_merge(q_hat: DiagonalGaussian, p: DiagonalGaussian) -> DiagonalGaussian:
    """Sønderby et al. 2016 Eqs. 18-19: the normalised product N(mu_hat, var_hat) N(mu_p, var_p),
    sigma^2_q = 1 / (var_hat^-1 + var_p^-1), mu_q = (mu_hat var_hat^-1 + mu_p var_p^-1) sigma^2_q; the two
    batch shapes broadcast (bottom-up (B,) against a prior at sampled parents (S, B))."""
    prec_hat, prec_p = q_hat.variance.reciprocal(), p.variance.reciprocal()
    var_q = (prec_hat + prec_p).reciprocal()
    return DiagonalGaussian((q_hat.loc * prec_hat + p.loc * prec_p) * var_q, var_q.sqrt())
