"""The VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning") on the contract.

The encoder maps x to a map z_e (H, W, D); the quantiser (``vaekit.models.quantiser``) replaces each vector by
its nearest code, and the decoder maps the code vectors to p(x|z_q). As a latent variable model (their Sec. 3.1):
one discrete group "codes", q(z|x) a one-hot categorical per position (deterministic: the nearest code), event
shape (H, W, K); p(z) uniform while the VQ-VAE trains (KL = H W log K, a constant), or a second-stage
autoregressive prior over code maps (``model.code_prior=transformer``, trained with ``model.prior_of=RUN`` on a
finished run's frozen codes; their Sec. 3.3). The bound the objective computes is then
log p(x) >= log p(x | z_q) + log p(z_q) (log q(z_q|x) = 0), and with the uniform prior
log p(x | z_q) - H W log K.

The decoder's gradient reaches the encoder straight through the quantiser; the commitment and codebook terms are
in ``ModelOutput.extras`` per example (``commitment``, ``codebook_loss``), where ``model.objective=vq`` weighs them.

Two levels (``levels=2``; Razavi, van den Oord & Vinyals 2019, "Generating Diverse High-Fidelity Images with
VQ-VAE-2", Sec. 3.1 and Fig. 2a): the bottom encoder maps x to features on an (H, W) grid, a top encoder halves
them to (H/2, W/2) and is quantised first by its own quantiser; the quantised top map is decoded (upsampled) to
(H, W) and the bottom is quantised from [bottom features, top decoding]; the decoder maps both quantised maps
(the top upsampled) to p(x|z_q). Two discrete groups, "bottom" (its parent "top") and "top"; with the uniform
prior the bound is log p(x | z_q) - (H W + H/2 W/2) log K, and the second-stage prior is one causal transformer
over [top codes, bottom codes] (``vaekit.models.code_prior``): p(z_top) p(z_bottom | z_top).
"""

from __future__ import annotations

from typing import Mapping, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, OneHotCategorical

from vaekit.likelihoods.base import Likelihood
from vaekit.models.arrays import array_io
from vaekit.models.code_prior import CodeTransformer, uniform_codes
from vaekit.models.contract import (DISCRETE, DISCRETE_DATA, HIERARCHICAL, QUANTISED, GroupLayout, LatentGroup,
                                    LatentLayout, ModelOutput)
from vaekit.models.quantiser import QuantResult
from vaekit.models.uses import LatentUsesMixin
from vaekit.nn import MLP
from vaekit.nn.conv import conv_sizes
from vaekit.nn.mlp import activation
from vaekit.utils import full_precision

__all__ = ["VQVAE", "ConvCodeEncoder", "ConvCodeDecoder", "build_vqvae"]


class _Residual(nn.Module):
    """x + conv1x1(act(conv3x3(act(x)))) (the VQ-VAE paper's residual block, Sec. 4.1)."""

    def __init__(self, c: int, act: str) -> None:
        super().__init__()
        self.net = nn.Sequential(activation(act), nn.Conv2d(c, c, 3, padding=1), activation(act), nn.Conv2d(c, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class ConvCodeEncoder(nn.Module):
    """(N, C, H, W) -> (N, D, H / 2^L, W / 2^L): L stride-2 4x4 convs, a residual block, a 1x1 conv to D."""

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], dim: int, act: str = "relu") -> None:
        super().__init__()
        c = int(in_shape[0])
        layers: list[nn.Module] = []
        for i, ch in enumerate(channels):
            layers += ([activation(act)] if i else []) + [nn.Conv2d(c, int(ch), 4, stride=2, padding=1)]
            c = int(ch)
        layers += [_Residual(c, act), activation(act), nn.Conv2d(c, dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvCodeDecoder(nn.Module):
    """(N, D, h, w) -> (N, P, H, W): a 1x1 conv, a residual block, the mirrored transposed convs, a 3x3 conv to
    the likelihood's P parameter channels (odd sizes restored exactly)."""

    def __init__(self, dim: int, out_shape: Sequence[int], channels: Sequence[int], act: str = "relu") -> None:
        super().__init__()
        p, h, w = (int(s) for s in out_shape)
        chans = [int(c) for c in reversed(list(channels))]
        sizes = conv_sizes(h, w, len(chans))
        layers: list[nn.Module] = [nn.Conv2d(dim, chans[0], 1), _Residual(chans[0], act)]
        outs = chans[1:] + [chans[-1]]
        for i, (cin, cout) in enumerate(zip(chans, outs)):
            (th, tw), (sh, sw) = sizes[-2 - i], sizes[-1 - i]
            layers += [activation(act), nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1,
                                                           output_padding=(th - 2 * sh, tw - 2 * sw))]
        layers += [activation(act), nn.Conv2d(outs[-1], p, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VQVAE(LatentUsesMixin, nn.Module):
    """A VQ-VAE for data of shape ``data_shape``.

    quantiser: a ``VectorQuantiser`` or ``FiniteScalarQuantiser`` of dimension D and K codes.
    arch "conv": image data (C, H, W), a (H / 2^L, W / 2^L) code map from ``conv_channels`` (L layers);
    arch "mlp": any data, ``positions`` codes in a (1, positions) map from an MLP of widths ``hidden``.
    prior: None (uniform) or a ``CodeTransformer`` over the code map(s).
    levels: 1, or 2 (conv only: a top map of half the size, quantised by ``top_quantiser``, of the same K, first;
    see the module docstring).
    """

    def __init__(self, data_shape: Sequence[int], likelihood: Likelihood, quantiser: nn.Module, *, arch: str = "conv",
                 conv_channels: Sequence[int] = (64, 64), hidden: Sequence[int] = (256,), positions: int = 4,
                 act: str = "relu", prior: CodeTransformer | None = None, levels: int = 1,
                 top_quantiser: nn.Module | None = None) -> None:
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        self.likelihood, self.quantiser = likelihood, quantiser
        self.arch, self.levels = arch, int(levels)
        d, self.k = int(quantiser.dim), int(quantiser.codebook_size)
        if self.levels not in (1, 2):
            raise ValueError(f"model.levels must be 1 or 2, got {levels}")
        if self.levels == 2 and arch != "conv":
            raise ValueError("model.levels=2 (a VQ-VAE-2 hierarchy of code maps) needs model.arch=conv")
        if self.levels == 2 and (top_quantiser is None or int(top_quantiser.codebook_size) != self.k
                                 or int(top_quantiser.dim) != d):
            raise ValueError("a two-level VQ-VAE needs a top quantiser with the bottom's K and D")
        if arch == "conv":
            if len(self.data_shape) != 3:
                raise ValueError(f"model.arch=conv needs image data (C, H, W), got shape {self.data_shape}; use "
                                 f"model.arch=mlp")
            hw = conv_sizes(self.data_shape[1], self.data_shape[2], len(conv_channels))[-1]
            self.map_shape = (int(hw[0]), int(hw[1]))
            c = int(list(conv_channels)[-1])
            feat, dec_in = (d, d) if self.levels == 1 else (c, 2 * d)  # two levels: features, then both maps in
            self.encoder = ConvCodeEncoder(self.data_shape, conv_channels, feat, act)
            self.decoder = ConvCodeDecoder(dec_in, likelihood.param_shape, conv_channels, act)
            if self.levels == 2:
                self._build_top(cast(nn.Module, top_quantiser), c, d, act)
        elif arch == "mlp":
            self.map_shape = (1, int(positions))
            self.encoder = MLP(self.data_shape, list(hidden), positions * d, act=act)
            n_out = 1
            for s in likelihood.param_shape:
                n_out *= s
            self.decoder = MLP(positions * d, list(hidden)[::-1], n_out, act=act)
        else:
            raise ValueError(f"unknown model.arch {arch!r}; choose 'mlp' or 'conv'")
        self.prior = prior
        self.latent_dim = sum(h * w for h, w in self.map_shapes.values()) * d  # the size of z_q

    def _build_top(self, top_quantiser: nn.Module, c: int, d: int, act: str) -> None:
        """The top level (VQ-VAE-2, Fig. 2a): encoder (C, H, W) -> (D, H/2, W/2), its quantiser, the top decoding
        (D, H/2, W/2) -> (D, H, W) that conditions the bottom quantiser, and the top map's upsampling for the
        decoder."""
        h, w = self.map_shape
        try:
            th, tw = conv_sizes(h, w, 1)[-1]
        except ValueError:
            raise ValueError(f"model.levels=2 halves the {h}x{w} code map, which is too small; use fewer "
                             f"model.conv_channels") from None
        self.top_map_shape = (int(th), int(tw))
        pad = (h - 2 * th, w - 2 * tw)  # odd sizes restored exactly
        self.top_encoder = nn.Sequential(activation(act), nn.Conv2d(c, c, 4, stride=2, padding=1), _Residual(c, act),
                                         activation(act), nn.Conv2d(c, d, 1))
        self.top_decoder = nn.Sequential(nn.Conv2d(d, c, 3, padding=1), _Residual(c, act), activation(act),
                                         nn.ConvTranspose2d(c, d, 4, stride=2, padding=1, output_padding=pad))
        self.bottom_in = nn.Conv2d(c + d, d, 1)  # [bottom features, top decoding] -> the bottom's z_e
        self.top_upsample = nn.ConvTranspose2d(d, d, 4, stride=2, padding=1, output_padding=pad)
        self.top_quantiser = top_quantiser

    # -- the levels --------------------------------------------------------------------------------------------
    @property
    def map_shapes(self) -> dict[str, tuple[int, int]]:
        """{group: its (h, w) code map}, bottom first: {"codes": ...} for one level, {"bottom", "top"} for two."""
        if self.levels == 1:
            return {"codes": self.map_shape}
        return {"bottom": self.map_shape, "top": self.top_map_shape}

    def quantiser_of(self, name: str) -> nn.Module:
        """The quantiser of group ``name``."""
        return self.top_quantiser if name == "top" else self.quantiser

    def _quantisers(self) -> list[nn.Module]:
        return [self.quantiser_of(name) for name in self.map_shapes]

    def set_prior(self, width: int = 64, layers: int = 2, heads: int = 4) -> None:
        """Give the model a (fresh) causal-transformer prior over its code maps (two levels: one sequence over
        [top codes, bottom codes])."""
        ref = next(self.encoder.parameters())
        shape = self.map_shape if self.levels == 1 else [self.top_map_shape, self.map_shape]
        self.prior = CodeTransformer(shape, self.k, width, layers, heads).to(ref.device, ref.dtype)

    def freeze(self) -> None:
        """Fix everything but the prior (a finished first stage under a second-stage prior)."""
        for name, p in self.named_parameters():
            if not name.startswith("prior."):
                p.requires_grad_(False)
        for q in self._quantisers():
            q.frozen = True

    # -- building blocks -----------------------------------------------------------------------------------
    def encode_map(self, x: torch.Tensor) -> torch.Tensor:
        """z_e: (B, H, W, D)."""
        h = self.encoder(x)
        if self.arch == "conv":
            return h.permute(0, 2, 3, 1)  # (B, H, W, D)
        return h.reshape(x.shape[0], *self.map_shape, -1)

    def _decoder_in(self, zq: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """(*lead, H, W, D), or one such map per group (bottom first) -> the decoder's input for N = prod(lead)
        maps (two levels: the top map upsampled beside the bottom map, (N, 2D, H, W))."""
        maps = [zq] if isinstance(zq, torch.Tensor) else list(zq)
        ins = []
        for m in maps:
            h, w, d = m.shape[-3:]
            m = m.reshape(-1, h, w, d)
            ins.append(m.permute(0, 3, 1, 2) if self.arch == "conv" else m.reshape(m.shape[0], -1))
        if len(ins) == 1:
            return ins[0]
        bottom, top = ins
        return torch.cat([self.top_upsample(top), bottom], 1)  # (N, 2D, H, W)

    def decoded(self, zq: torch.Tensor | Sequence[torch.Tensor], lead: torch.Size,
                copies: int | None = None) -> Distribution:
        """p(x | z_q) for code vectors zq (*lead, H, W, D) (two levels: [bottom, top]): the likelihood's lazy
        Distribution; ``copies`` S: the same p(x | z_q) S times, lead (S, *lead) (a deterministic q's samples),
        decoded once."""
        h = self.decoder(self._decoder_in(zq))
        h = full_precision(h.reshape(*lead, *self.likelihood.param_shape))
        if copies is not None:
            h, lead = h.expand(copies, *h.shape), torch.Size((copies, *lead))
        return self.likelihood.decoded(h, lead)

    def code_prior(self, name: str | None = None, top: torch.Tensor | None = None) -> Distribution:
        """p(z) over one-hot maps (H, W, K) of group ``name`` (default: the first): uniform, or the second-stage
        prior; the bottom of two levels under a learned prior is conditioned on ``top``, one-hot (*lead, h, w, K)."""
        name = name or next(iter(self.map_shapes))
        shape = self.map_shapes[name]
        if self.prior is None:
            return uniform_codes(shape, self.k, self.quantiser.vectors())
        if self.levels == 1:
            return self.prior.distribution()
        if name == "top":
            return self.prior.distribution(0)
        if top is None:
            raise ValueError("the bottom map's prior is conditioned on the top map: give its one-hot codes")
        return self.prior.distribution(1, top.argmax(-1).flatten(-2))  # context (*lead, h/2 * w/2)

    def quantise(self, x: torch.Tensor):
        """(the quantiser's result for the encoder outputs of x, flattened (B H W, D)); two levels: the bottom's."""
        if self.levels == 2:
            return self.quantise_all(x)[0]
        z_e = self.encode_map(x)  # (B, H, W, D)
        return self.quantiser(z_e.reshape(-1, z_e.shape[-1]))

    def quantise_all(self, x: torch.Tensor) -> list[QuantResult]:
        """The quantisers' results for x, one per group (bottom first), each flattened (B h w, D): two levels
        quantise the top first and the bottom from [bottom features, top decoding] (VQ-VAE-2, Fig. 2a)."""
        if self.levels == 1:
            return [self.quantise(x)]
        b = x.shape[0]
        feats = self.encoder(x)  # (B, C, H, W)
        zt_e = self.top_encoder(feats).permute(0, 2, 3, 1)  # (B, H/2, W/2, D)
        top = self.top_quantiser(zt_e.reshape(-1, zt_e.shape[-1]))
        zt = top.z.reshape(b, *self.top_map_shape, -1).permute(0, 3, 1, 2)  # (B, D, H/2, W/2) straight-through
        zb_e = self.bottom_in(torch.cat([feats, self.top_decoder(zt)], 1)).permute(0, 2, 3, 1)  # (B, H, W, D)
        return [self.quantiser(zb_e.reshape(-1, zb_e.shape[-1])), top]

    @array_io
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W) the code indices of x (int64); two levels: the bottom map's (all: ``code_maps``)."""
        return self.quantise(x).codes.reshape(x.shape[0], *self.map_shape)

    def code_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{group: (B, h, w) code indices} of x, bottom first."""
        rs = self.quantise_all(x)
        return {name: r.codes.reshape(x.shape[0], *shape) for r, (name, shape) in zip(rs, self.map_shapes.items())}

    # -- the bound half --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, **options) -> ModelOutput:
        """One group "codes" (two levels: "bottom", "top"; q one-hot at the nearest codes, p the code prior) and
        p(x | z_q); extras: the per-example commitment and codebook terms (sums over positions and levels)."""
        unknown = set(options) - {"decoder_dtype"}
        if unknown:
            raise ValueError(f"the vqvae family does not take {sorted(unknown)} (a replacement posterior needs "
                             f"continuous latents)")
        b = x.shape[0]
        rs = self.quantise_all(x)
        names, shapes = list(self.map_shapes), list(self.map_shapes.values())
        onehots = [F.one_hot(r.codes, self.k).to(r.z.dtype).reshape(b, *s, self.k)
                   for r, s in zip(rs, shapes)]  # (B, h, w, K) per group
        zqs = [r.z.reshape(b, *s, -1) for r, s in zip(rs, shapes)]  # (B, h, w, D) straight-through
        if n_samples is None:
            zs, px = onehots, self.decoded(zqs if self.levels > 1 else zqs[0], torch.Size((b,)))
        else:  # q is deterministic: every sample is the same code map
            s = int(n_samples)
            zs = [o.expand(s, *o.shape) for o in onehots]
            px = self.decoded(zqs if self.levels > 1 else zqs[0], torch.Size((b,)), copies=s)
        z_of = dict(zip(names, zs))
        groups = [LatentGroup(name, Independent(OneHotCategorical(probs=o), 2), self.group_prior(name, z_of), z)
                  for name, o, z in zip(names, onehots, zs)]
        commitment, codebook = rs[0].commitment.reshape(b, -1).sum(-1), rs[0].codebook_loss.reshape(b, -1).sum(-1)
        for r in rs[1:]:
            commitment = commitment + r.commitment.reshape(b, -1).sum(-1)
            codebook = codebook + r.codebook_loss.reshape(b, -1).sum(-1)
        extras = {"commitment": commitment, "codebook_loss": codebook}
        return ModelOutput(groups, px, 0 if n_samples is None else 1, extras)

    def check_input(self, x: torch.Tensor) -> None:
        self.likelihood.check_batch(x)

    def extra_stats(self) -> dict[str, float]:
        return self.likelihood.stats()

    def train(self, mode: bool = True) -> "VQVAE":
        super().train(mode)
        for q in self._quantisers():
            if q.frozen:
                q.eval()
        return self

    # -- the uses half ---------------------------------------------------------------------------------------
    @property
    def layout(self) -> LatentLayout:
        return LatentLayout(tuple(GroupLayout(name, (*shape, self.k), "discrete",
                                              parent="top" if name == "bottom" else None)
                                  for name, shape in self.map_shapes.items()))

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {DISCRETE, QUANTISED} | ({HIERARCHICAL} if self.levels > 1 else set())
        if self.likelihood.discrete:
            caps.add(DISCRETE_DATA)
        return frozenset(caps)

    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]:
        if self.levels == 1:
            onehot = F.one_hot(self.codes(x), self.k).to(self.quantiser.vectors().dtype)  # (B, H, W, K)
            return {"codes": Independent(OneHotCategorical(probs=onehot), 2)}
        dtype = self.quantiser.vectors().dtype
        return {name: Independent(OneHotCategorical(probs=F.one_hot(c, self.k).to(dtype)), 2)  # (B, h, w, K)
                for name, c in self.code_maps(x).items()}

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        return self.code_prior(name, z.get("top"))

    def decode(self, z: Mapping[str, torch.Tensor] | torch.Tensor) -> Distribution:
        """p(x|z) for one-hot code maps (*lead, H, W, K) (or {"codes": ...}; two levels {"bottom", "top"})."""
        if self.levels == 1:
            onehot = z["codes"] if isinstance(z, Mapping) else z
            lead = onehot.shape[:-3]
            zq = self.quantiser.lookup(onehot.argmax(-1)).to(self.quantiser.vectors().dtype)  # (*lead, H, W, D)
            return self.decoded(zq, lead).full
        if not isinstance(z, Mapping):
            raise ValueError("a two-level VQ-VAE decodes {'bottom': ..., 'top': ...} one-hot code maps")
        dtype = self.quantiser.vectors().dtype
        zqs = [self.quantiser_of(n).lookup(z[n].argmax(-1)).to(dtype) for n in self.map_shapes]  # (*lead, h, w, D)
        return self.decoded(zqs, z["bottom"].shape[:-3]).full

    @array_io
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z_q) at the nearest codes."""
        return super().reconstruct(x)

    @array_io
    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 0): a VQ-VAE has no continuous latent group (its code vectors: ``codes`` and ``quantiser.lookup``)."""
        return torch.zeros(x.shape[0], 0, dtype=self.quantiser.vectors().dtype, device=x.device)


def build_vqvae(data_shape: Sequence[int], *, arch: str = "conv", hidden: Sequence[int] = (256,), act: str = "relu",
                conv_channels: Sequence[int] = (64, 64), likelihood: str = "bernoulli",
                likelihood_kwargs: dict | None = None, quantiser: str = "vq", codebook_size: int = 512,
                code_dim: int = 64, fsq_levels: Sequence[int] = (8, 5, 5, 5), codebook_update: str = "ema",
                ema_decay: float = 0.99, kmeans_init: bool = True, restart_after: int = 0, cosine: bool = False,
                positions: int = 4, levels: int = 1) -> VQVAE:
    """A VQ-VAE with a uniform prior from the family's options (``vaekit.models.registry.VQVAEOptions``)."""
    from vaekit.likelihoods import build_likelihood
    from vaekit.models.quantiser import FiniteScalarQuantiser, VectorQuantiser

    lik = build_likelihood(likelihood, data_shape, **(likelihood_kwargs or {}))
    def make() -> nn.Module:
        if quantiser == "fsq":
            return FiniteScalarQuantiser(fsq_levels)
        if quantiser == "vq":
            return VectorQuantiser(codebook_size, code_dim, update=codebook_update, decay=ema_decay,
                                   kmeans_init=kmeans_init, restart_after=restart_after, cosine=cosine)
        raise ValueError(f"unknown model.quantiser {quantiser!r}; choose 'vq' or 'fsq'")

    quant = make()
    top = make() if levels == 2 else None  # every quantiser option applies to both levels
    return VQVAE(data_shape, lik, quant, arch=arch, conv_channels=conv_channels, hidden=hidden, positions=positions,
                 act=act, levels=levels, top_quantiser=top)
