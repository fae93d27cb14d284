"""A deep hierarchical VAE after VDVAE (Child 2021) and NVAE (Vahdat & Kautz 2020).

Generative model (Child 2021, Sec. 3, Eq. 1; Vahdat & Kautz 2020, Sec. 3.1): latent groups z_G (top) .. z_1
(bottom), each a (C, H, W) map at one of several resolutions, p(z) = prod_i p(z_i | z_>i) and p(x | z). A
top-down pass carries a state h from a learned constant at the coarsest resolution: every group's prior is a
diagonal Gaussian read from h, and h then takes z_i (``hvae_blocks.TopDownBlock``); between resolutions h is
upsampled (nearest). The likelihood head (a 3x3 conv) reads the full-resolution state.

Inference: a bottom-up residual conv encoder keeps its activations a_r at every resolution r (average pooling
between them), and q(z_i | x, z_>i) is read from [h, a_r] along the same top-down pass, the prior's parameters
shared with the generative model; directly, or as a residual of the prior (NVAE Sec. 3.2, Eq. 2):
q = N(mu_p + dmu, (sigma_p dsigma)^2).

KL per group (``vaekit.objectives``): the closed form KL(q(z_i | x, z_>i) || p(z_i | z_>i)) at the sampled
z_>i, which by the chain rule averages to KL(q(z|x) || p(z)). Vector data (D,) are read as a 1x1 map of D
channels. A group's parent in the layout is the group just above it (its prior depends on every group above,
through the state).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.distributions import Distribution, Independent
from torch.nn import functional as F

from vaekit.likelihoods import build_likelihood
from vaekit.likelihoods.base import Likelihood
from vaekit.models.contract import (CONTINUOUS, DISCRETE_DATA, GAUSSIAN_POSTERIOR, GAUSSIAN_PRIOR, HIERARCHICAL,
                                    GroupLayout, LatentGroup, LatentLayout, ModelOutput)
from vaekit.models.hvae_blocks import ResBlock, TopDownBlock
from vaekit.models.uses import LatentUsesMixin
from vaekit.models.vae import decoder_precision
from vaekit.nn import activation
from vaekit.nn.spectral import SpectralNorms
from vaekit.objectives.latents import sample_latent
from vaekit.utils import eval_mode, full_precision

__all__ = ["HierarchicalVAE", "build_hvae"]

Pick = Callable[[str, Independent, "Independent | None"], torch.Tensor]


def _sizes(h: int, w: int, n: int) -> list[tuple[int, int]]:
    """The resolutions of ``n`` stages, full first, each half the last (rounded up; 1 stays 1)."""
    out = [(h, w)]
    for _ in range(n - 1):
        h, w = out[-1]
        out.append((math.ceil(h / 2), math.ceil(w / 2)))
    return out


class HierarchicalVAE(LatentUsesMixin, nn.Module):
    """Groups z1 (bottom, full resolution) .. zG (top), speaking both halves of the model contract.

    enc_blocks[r] residual blocks of the encoder and dec_groups[r] latent groups of ``latent_channels`` at
    resolution r (r = 0 full, each next one half); ``width`` channels throughout; blocks' hidden width
    ``bottleneck * width``; scales floored at ``scale_floor``.
    """

    def __init__(self, likelihood: Likelihood, *, width: int = 32, enc_blocks: Sequence[int] = (2, 2),
                 dec_groups: Sequence[int] = (2, 2), latent_channels: int = 4, bottleneck: float = 0.25,
                 act: str = "gelu", residual_posterior: bool = True, scale_floor: float = 1e-3,
                 spectral_reg: float = 0.0) -> None:
        super().__init__()
        self.likelihood = likelihood
        self.data_shape = likelihood.data_shape
        if len(self.data_shape) == 3:
            self.image_shape = self.data_shape
        elif len(self.data_shape) == 1:
            self.image_shape = (self.data_shape[0], 1, 1)
        else:
            raise ValueError(f"model.family=hvae needs images (C, H, W) or vectors (D,), got shape {self.data_shape}")
        enc_blocks, dec_groups = [int(b) for b in enc_blocks], [int(g) for g in dec_groups]
        if not enc_blocks or len(enc_blocks) != len(dec_groups) or min(enc_blocks + dec_groups) < 0:
            raise ValueError(f"model.enc_blocks and model.dec_groups need one count >= 0 per resolution, got "
                             f"{enc_blocks} and {dec_groups}")
        if sum(dec_groups) < 1:
            raise ValueError("model.dec_groups needs at least one latent group")
        if width < 1 or latent_channels < 1 or not 0 < bottleneck <= 4 or not scale_floor > 0 or spectral_reg < 0:
            raise ValueError("model.width and model.latent_channels must be >= 1, model.bottleneck in (0, 4], "
                             "model.scale_floor > 0, model.spectral_reg >= 0")
        c, h, w = self.image_shape
        self.sizes = _sizes(h, w, len(enc_blocks))
        mid = max(1, round(bottleneck * width))

        def kernel(r: int) -> int:
            return 3 if min(self.sizes[r]) > 2 else 1

        n_enc, n_dec = max(1, sum(enc_blocks)), sum(dec_groups)
        self.stem = nn.Conv2d(c, width, kernel(0), padding=kernel(0) // 2)
        self.enc = nn.ModuleList(
            nn.Sequential(*[ResBlock(width, mid, width, act=act, kernel=kernel(r), out_scale=n_enc ** -0.5)
                            for _ in range(n)]) for r, n in enumerate(enc_blocks))
        self.stage: list[int] = []  # resolution of each top-down block, top first
        blocks = []
        for r in reversed(range(len(dec_groups))):
            for _ in range(dec_groups[r]):
                self.stage.append(r)
                blocks.append(TopDownBlock(width, latent_channels, mid, act=act, kernel=kernel(r),
                                           residual_posterior=residual_posterior, floor=scale_floor,
                                           out_scale=n_dec ** -0.5))
        self.dec = nn.ModuleList(blocks)
        self.h_top = nn.Parameter(torch.zeros(1, width, *self.sizes[self.stage[0]]))
        self.out = nn.Sequential(activation(act), nn.Conv2d(width, likelihood.param_shape[0], kernel(0),
                                                           padding=kernel(0) // 2))
        self.names = [f"z{len(blocks) - j}" for j in range(len(blocks))]  # top-down order: zG .. z1
        self.group_shapes = {n: (int(latent_channels), *self.sizes[r]) for n, r in zip(self.names, self.stage)}
        self.latent_dim = sum(math.prod(s) for s in self.group_shapes.values())
        self.spectral_reg = float(spectral_reg)
        if self.spectral_reg > 0:  # built only when on, so that a model without it keeps its state-dict keys
            self.spectral = SpectralNorms([w.shape for w in self._conv_weights()])

    # -- the passes ------------------------------------------------------------------------------------------
    def bottom_up(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[a_r (B, W, H_r, W_r)] for every resolution r, full first."""
        h = self.stem(x.reshape(x.shape[0], *self.image_shape))
        acts = []
        for r, blocks in enumerate(self.enc):
            if r:
                h = F.avg_pool2d(h, 2, ceil_mode=True) if min(h.shape[-2:]) > 1 else h
            h = blocks(h)
            acts.append(h)
        return acts

    def _top_down(self, lead: tuple[int, ...], acts: list[torch.Tensor] | None, pick: Pick,
                  stop: str | None = None) -> tuple[torch.Tensor | None, Independent | None]:
        """Run the top-down pass for a batch ``lead``: at each group, p (and q where ``acts``, the bottom-up
        activations flattened to N = prod(lead), are given), z = pick(name, p, q), the state updated. Returns
        (the full-resolution state (N, W, H, W), None), or (None, p of group ``stop``) when it reaches it."""
        n = math.prod(lead)
        h = self.h_top.expand(n, -1, -1, -1)
        stage = self.stage[0]
        for name, r, block in zip(self.names, self.stage, self.dec):
            if r != stage:
                h, stage = F.interpolate(h, size=self.sizes[r], mode="nearest"), r
            p, feat = block.prior_and_features(h, lead)
            if name == stop:
                return None, p
            q = block.posterior_of(h, acts[r], p) if acts is not None else None
            h = block.update(h, feat, pick(name, p, q))
        if stage != 0:
            h = F.interpolate(h, size=self.sizes[0], mode="nearest")
        return h, None

    def _px(self, h: torch.Tensor, lead: tuple[int, ...], full: bool = False) -> Distribution:
        out = self.out(h)  # (N, k C, H, W)
        out = full_precision(out).reshape(*lead, *self.likelihood.param_shape)
        return self.likelihood(out) if full else self.likelihood.decoded(out, lead)

    # -- the bound half --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, *, posterior: Distribution | None = None,
                decoder_dtype: torch.dtype | None = None) -> ModelOutput:
        """Groups z1 .. zG with q(z_i | x, z_>i) and p(z_i | z_>i) at the sampled z_>i; ``n_samples`` S draws of
        every group (lead (S, B)), the encoder run once."""
        if posterior is not None:
            raise ValueError("a hierarchical VAE takes its posteriors from its own top-down pass; posterior= is for "
                             "one-latent VAEs (model.family=vae)")
        acts = self.bottom_up(x)
        b = x.shape[0]
        lead = (b,) if n_samples is None else (int(n_samples), b)
        if n_samples is not None:  # (B, ...) -> (S B, ...), sample-major like the state
            acts = [a.unsqueeze(0).expand(lead[0], *a.shape).reshape(-1, *a.shape[1:]) for a in acts]
        groups: dict[str, LatentGroup] = {}

        def pick(name: str, p: Independent, q: Independent | None) -> torch.Tensor:
            groups[name] = sample_latent(name, q, p, None)
            return groups[name].z

        with decoder_precision(x, decoder_dtype):
            h, _ = self._top_down(lead, acts, pick)
        return ModelOutput([groups[n] for n in reversed(self.names)], self._px(h, lead),
                           0 if n_samples is None else 1)

    def check_input(self, x: torch.Tensor) -> None:
        """ValueError on data that does not fit the model (shape, NaN/inf, likelihood support)."""
        self.likelihood.check_batch(x)

    def extra_stats(self) -> dict[str, float]:
        return self.likelihood.stats()

    def _conv_weights(self) -> list[torch.Tensor]:
        """Every convolution's weight (out, in, k, k), in module order."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Conv2d)]

    def training_penalty(self) -> torch.Tensor | None:
        """NVAE's spectral regularisation (Vahdat & Kautz 2020, Sec. 3.3): spectral_reg * sum of the largest
        singular values of every convolution, one power-iteration step per call; None when off. The trainer adds
        it to the loss of every training step (the contract's optional ``training_penalty`` hook)."""
        if self.spectral_reg <= 0:
            return None
        return self.spectral_reg * self.spectral(self._conv_weights()).sum()

    # -- the uses half ---------------------------------------------------------------------------------------
    @property
    def layout(self) -> LatentLayout:
        """z1 (bottom) .. zG (top), each (latent_channels, H_r, W_r), each conditioned on the one above."""
        td = self.names
        parents = {n: (td[j - 1] if j else None) for j, n in enumerate(td)}
        return LatentLayout(tuple(GroupLayout(n, self.group_shapes[n], parent=parents[n]) for n in reversed(td)))

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {CONTINUOUS, GAUSSIAN_POSTERIOR, GAUSSIAN_PRIOR}
        if len(self.names) > 1:
            caps.add(HIERARCHICAL)
        if self.likelihood.discrete:
            caps.add(DISCRETE_DATA)
        return frozenset(caps)

    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]:
        """q(z_i | x, z_>i) along the mean pass (each z_>i at its posterior mean, or its value in ``given``)."""
        qs: dict[str, Distribution] = {}

        def pick(name: str, p: Independent, q: Independent | None) -> torch.Tensor:
            qs[name] = q
            return given[name] if given is not None and name in given else q.mean

        self._top_down((x.shape[0],), self.bottom_up(x), pick)
        return {n: qs[n] for n in reversed(self.names)}

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        """p(z_name | z_>name): the top-down pass at the values of the groups above in ``z``; batch the lead of
        those values (() for the top group, whose prior is a learned constant)."""
        if name not in self.group_shapes:
            raise KeyError(f"no latent group {name!r}; the groups are {', '.join(reversed(self.names))}")
        above = self.names[:self.names.index(name)]
        lead = tuple(z[above[0]].shape[:-3]) if above else ()
        _, p = self._top_down(lead, None, lambda n, p, q: z[n], stop=name)
        return p

    def decode(self, z: Mapping[str, torch.Tensor]) -> Distribution:
        """p(x | z) for every group's value in z, (*lead, *shape) each: batch_shape lead."""
        lead = tuple(z[self.names[0]].shape[:-3])
        h, _ = self._top_down(lead, None, lambda n, p, q: z[n])
        return self._px(h, lead, full=True)

    @torch.no_grad()
    def sample(self, n: int, temperature: float | Mapping[str, float] = 1.0) -> torch.Tensor:
        """Means of p(x|z) at n ancestral draws z_i = mu_p + T_i sigma_p eps_i, in one top-down pass; the same
        draws (global RNG, top group first) as ``vaekit.models.uses.sample_latents`` at the same temperature(s)."""
        from vaekit.models.uses import temperatures

        temps = temperatures(self.layout, temperature)

        def pick(name: str, p: Independent, q: Independent | None) -> torch.Tensor:
            eps = torch.randn(n, *self.group_shapes[name], device=self.h_top.device)
            return p.mean + temps[name] * p.stddev * eps

        with eval_mode(self):
            h, _ = self._top_down((n,), None, pick)
            return self._px(h, (n,), full=True).mean


def build_hvae(data_shape: Sequence[int], *, likelihood: str = "bernoulli",
               likelihood_kwargs: dict[str, Any] | None = None, **options: Any) -> HierarchicalVAE:
    """A hierarchical VAE for data of shape ``data_shape``; ``options`` are ``HierarchicalVAE``'s keywords."""
    lik = build_likelihood(likelihood, tuple(int(s) for s in data_shape), **(likelihood_kwargs or {}))
    return HierarchicalVAE(lik, **options)
