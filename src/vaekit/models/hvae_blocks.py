"""Building blocks of the deep hierarchical VAE (``vaekit.models.hvae``).

- ``ResBlock``: the bottleneck residual block of VDVAE (Child 2021, "Very Deep VAEs Generalize Autoregressive
  Models and Can Outperform Them on Images", Sec. 4 and Fig. 3): act -> 1x1 -> act -> 3x3 -> act -> 3x3 -> act ->
  1x1, added to its input. Its last conv is scaled at initialisation (by 1/sqrt(number of blocks), as VDVAE scales
  its output layers), so a deep stack starts close to the identity.
- ``map_gaussian``: a diagonal Gaussian over a (C, H, W) latent map with softplus-parameterised scales and a
  floor (sigma = softplus(raw + softplus^-1(1)) + floor: sigma = 1 + floor at raw = 0).
- ``TopDownBlock``: one latent group of the top-down pass: the prior p(z_i | z_>i) and (given the bottom-up
  activations) the posterior q(z_i | x, z_>i) from the top-down state, either directly or as a residual of the
  prior (NVAE, Vahdat & Kautz 2020, Sec. 3.2: mu_q = mu_p + dmu, sigma_q = sigma_p dsigma); then the state takes
  the prior's features, a projection of z and a residual block.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal
from torch.nn import functional as F

from vaekit.nn import activation
from vaekit.utils import full_precision

__all__ = ["ResBlock", "TopDownBlock", "map_gaussian", "SOFTPLUS_ONE"]

#: softplus^-1(1): a raw scale of 0 gives sigma = 1 (+ floor)
SOFTPLUS_ONE = math.log(math.e - 1.0)


def map_gaussian(mean: torch.Tensor, raw_scale: torch.Tensor, floor: float) -> Independent:
    """N(mean, diag sigma^2) over the last three axes (a (C, H, W) map), sigma = softplus(raw + s1) + floor;
    parameters in float32 (under autocast too)."""
    scale = F.softplus(full_precision(raw_scale) + SOFTPLUS_ONE) + floor
    return Independent(Normal(full_precision(mean), scale), 3)


class ResBlock(nn.Module):
    """(N, c_in, H, W) -> (N, c_out, H, W): x + s * f(x) (``residual``) or f(x), f the bottleneck of VDVAE:
    act -> 1x1 (c_in -> mid) -> act -> kxk -> act -> kxk -> act -> 1x1 (mid -> c_out), k = 3 (1 for maps of
    at most 2x2, as VDVAE does). The last conv's initial weights are multiplied by ``out_scale``."""

    def __init__(self, c_in: int, mid: int, c_out: int, *, act: str = "gelu", kernel: int = 3,
                 residual: bool = True, out_scale: float = 1.0) -> None:
        super().__init__()
        if residual and c_in != c_out:
            raise ValueError(f"a residual block keeps its width, got {c_in} -> {c_out}")
        pad = kernel // 2
        self.residual = residual
        self.net = nn.Sequential(activation(act), nn.Conv2d(c_in, mid, 1), activation(act),
                                 nn.Conv2d(mid, mid, kernel, padding=pad), activation(act),
                                 nn.Conv2d(mid, mid, kernel, padding=pad), activation(act),
                                 nn.Conv2d(mid, c_out, 1))
        with torch.no_grad():
            self.net[-1].weight.mul_(out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return x + y if self.residual else y


class TopDownBlock(nn.Module):
    """One latent group z_i of shape (zc, H, W) at a resolution of the top-down pass.

    prior: state h (N, W, H, W) -> (mu_p, raw sigma_p, features (W)); posterior: [h, bottom-up a] (N, 2W, H, W)
    -> (mu, raw sigma) directly, or (dmu, raw dsigma) of the residual form; then h <- res(h + features +
    proj(z)). ``out_scale`` scales the initial weights of every path into the residual stream.
    """

    def __init__(self, width: int, zc: int, mid: int, *, act: str, kernel: int, residual_posterior: bool,
                 floor: float, out_scale: float) -> None:
        super().__init__()
        self.width, self.zc, self.floor = int(width), int(zc), float(floor)
        self.residual_posterior = bool(residual_posterior)
        self.prior = ResBlock(width, mid, 2 * zc + width, act=act, kernel=kernel, residual=False, out_scale=0.1)
        with torch.no_grad():  # the features start small, like every other path into the stream
            self.prior.net[-1].weight[2 * zc:].mul_(out_scale / 0.1)
        self.posterior = ResBlock(2 * width, mid, 2 * zc, act=act, kernel=kernel, residual=False, out_scale=0.1)
        self.proj = nn.Conv2d(zc, width, 1)
        with torch.no_grad():
            self.proj.weight.mul_(out_scale)
        self.res = ResBlock(width, mid, width, act=act, kernel=kernel, out_scale=out_scale)

    def prior_and_features(self, h: torch.Tensor, lead: tuple[int, ...]) -> tuple[Independent, torch.Tensor]:
        """(p(z_i | z_>i) with batch ``lead``, the prior's features (N, W, H, W)) from the state h (N, W, H, W)."""
        out = self.prior(h)
        m, s, feat = out.split([self.zc, self.zc, self.width], 1)
        return map_gaussian(m.reshape(*lead, *m.shape[1:]), s.reshape(*lead, *s.shape[1:]), self.floor), feat

    def posterior_of(self, h: torch.Tensor, a: torch.Tensor, p: Independent) -> Independent:
        """q(z_i | x, z_>i), batch as p's, from the state h and the bottom-up activations a (N, W, H, W)."""
        out = self.posterior(torch.cat([h, a], 1))
        m, s = out.reshape(*p.batch_shape, *out.shape[1:]).chunk(2, -3)  # (*lead, zc, H, W) each
        if not self.residual_posterior:
            return map_gaussian(m, s, self.floor)
        dscale = F.softplus(full_precision(s) + SOFTPLUS_ONE) + self.floor
        base = p.base_dist
        return Independent(Normal(base.loc + full_precision(m), base.scale * dscale), 3)

    def update(self, h: torch.Tensor, feat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The next state: res(h + features + proj(z)), z (*lead, zc, H, W) flattened to (N, zc, H, W)."""
        zf = z.reshape(-1, *z.shape[-3:])  # (N, zc, H, W)
        return self.res(h + feat + self.proj(zf))
