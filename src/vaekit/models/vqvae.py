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
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, OneHotCategorical

from vaekit.likelihoods.base import Likelihood
from vaekit.models.arrays import array_io
from vaekit.models.code_prior import CodeTransformer, uniform_codes
from vaekit.models.contract import (DISCRETE, DISCRETE_DATA, QUANTISED, GroupLayout, LatentGroup, LatentLayout,
                                    ModelOutput)
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
    prior: None (uniform) or a ``CodeTransformer`` over the code map.
    """

    def __init__(self, data_shape: Sequence[int], likelihood: Likelihood, quantiser: nn.Module, *, arch: str = "conv",
                 conv_channels: Sequence[int] = (64, 64), hidden: Sequence[int] = (256,), positions: int = 4,
                 act: str = "relu", prior: CodeTransformer | None = None) -> None:
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        self.likelihood, self.quantiser = likelihood, quantiser
        self.arch = arch
        d, self.k = int(quantiser.dim), int(quantiser.codebook_size)
        if arch == "conv":
            if len(self.data_shape) != 3:
                raise ValueError(f"model.arch=conv needs image data (C, H, W), got shape {self.data_shape}; use "
                                 f"model.arch=mlp")
            hw = conv_sizes(self.data_shape[1], self.data_shape[2], len(conv_channels))[-1]
            self.map_shape = (int(hw[0]), int(hw[1]))
            self.encoder = ConvCodeEncoder(self.data_shape, conv_channels, d, act)
            self.decoder = ConvCodeDecoder(d, likelihood.param_shape, conv_channels, act)
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
        self.latent_dim = self.map_shape[0] * self.map_shape[1] * d  # the size of z_q

    def set_prior(self, width: int = 64, layers: int = 2, heads: int = 4) -> None:
        """Give the model a (fresh) causal-transformer prior over its code maps."""
        ref = next(self.encoder.parameters())
        self.prior = CodeTransformer(self.map_shape, self.k, width, layers, heads).to(ref.device, ref.dtype)

    def freeze(self) -> None:
        """Fix everything but the prior (a finished first stage under a second-stage prior)."""
        for name, p in self.named_parameters():
            if not name.startswith("prior."):
                p.requires_grad_(False)
        self.quantiser.frozen = True

    # -- building blocks -----------------------------------------------------------------------------------
    def encode_map(self, x: torch.Tensor) -> torch.Tensor:
        """z_e: (B, H, W, D)."""
        h = self.encoder(x)
        if self.arch == "conv":
            return h.permute(0, 2, 3, 1)  # (B, H, W, D)
        return h.reshape(x.shape[0], *self.map_shape, -1)

    def _decoder_in(self, zq: torch.Tensor) -> torch.Tensor:
        """(*lead, H, W, D) -> the decoder's input for N = prod(lead) maps."""
        h, w, d = zq.shape[-3:]
        zq = zq.reshape(-1, h, w, d)
        return zq.permute(0, 3, 1, 2) if self.arch == "conv" else zq.reshape(zq.shape[0], -1)

    def decoded(self, zq: torch.Tensor, lead: torch.Size, copies: int | None = None) -> Distribution:
        """p(x | z_q) for code vectors zq (*lead, H, W, D): the likelihood's lazy Distribution; ``copies`` S:
        the same p(x | z_q) S times, lead (S, *lead) (a deterministic q's samples), decoded once."""
        h = self.decoder(self._decoder_in(zq))
        h = full_precision(h.reshape(*lead, *self.likelihood.param_shape))
        if copies is not None:
            h, lead = h.expand(copies, *h.shape), torch.Size((copies, *lead))
        return self.likelihood.decoded(h, lead)

    def code_prior(self) -> Distribution:
        """p(z) over one-hot maps (H, W, K): uniform, or the second-stage prior."""
        if self.prior is not None:
            return self.prior.distribution()
        return uniform_codes(self.map_shape, self.k, self.quantiser.vectors())

    def quantise(self, x: torch.Tensor):
        """(the quantiser's result for the encoder outputs of x, flattened (B H W, D))."""
        z_e = self.encode_map(x)  # (B, H, W, D)
        return self.quantiser(z_e.reshape(-1, z_e.shape[-1]))

    @array_io
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W) the code indices of x (int64)."""
        return self.quantise(x).codes.reshape(x.shape[0], *self.map_shape)

    # -- the bound half --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, **options) -> ModelOutput:
        """One group "codes" (q one-hot at the nearest codes, p the code prior) and p(x | z_q); extras: the
        per-example commitment and codebook terms (sums over positions)."""
        unknown = set(options) - {"decoder_dtype"}
        if unknown:
            raise ValueError(f"the vqvae family does not take {sorted(unknown)} (a replacement posterior needs "
                             f"continuous latents)")
        b = x.shape[0]
        r = self.quantise(x)
        onehot = F.one_hot(r.codes, self.k).to(r.z.dtype).reshape(b, *self.map_shape, self.k)  # (B, H, W, K)
        q = Independent(OneHotCategorical(probs=onehot), 2)
        zq = r.z.reshape(b, *self.map_shape, -1)  # (B, H, W, D) straight-through
        if n_samples is None:
            z, px = onehot, self.decoded(zq, torch.Size((b,)))
        else:  # q is deterministic: every sample is the same code map
            s = int(n_samples)
            z = onehot.expand(s, *onehot.shape)
            px = self.decoded(zq, torch.Size((b,)), copies=s)
        extras = {"commitment": r.commitment.reshape(b, -1).sum(-1), "codebook_loss": r.codebook_loss.reshape(b, -1).sum(-1)}
        return ModelOutput([LatentGroup("codes", q, self.code_prior(), z)], px, 0 if n_samples is None else 1, extras)

    def check_input(self, x: torch.Tensor) -> None:
        self.likelihood.check_batch(x)

    def extra_stats(self) -> dict[str, float]:
        return self.likelihood.stats()

    def train(self, mode: bool = True) -> "VQVAE":
        super().train(mode)
        if self.quantiser.frozen:
            self.quantiser.eval()
        return self

    # -- the uses half ---------------------------------------------------------------------------------------
    @property
    def layout(self) -> LatentLayout:
        return LatentLayout((GroupLayout("codes", (*self.map_shape, self.k), "discrete"),))

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {DISCRETE, QUANTISED}
        if self.likelihood.discrete:
            caps.add(DISCRETE_DATA)
        return frozenset(caps)

    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]:
        onehot = F.one_hot(self.codes(x), self.k).to(self.quantiser.vectors().dtype)  # (B, H, W, K)
        return {"codes": Independent(OneHotCategorical(probs=onehot), 2)}

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        return self.code_prior()

    def decode(self, z: Mapping[str, torch.Tensor] | torch.Tensor) -> Distribution:
        """p(x|z) for one-hot code maps (*lead, H, W, K) (or {"codes": ...})."""
        onehot = z["codes"] if isinstance(z, Mapping) else z
        lead = onehot.shape[:-3]
        zq = self.quantiser.lookup(onehot.argmax(-1)).to(self.quantiser.vectors().dtype)  # (*lead, H, W, D)
        return self.decoded(zq, lead).full

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
                positions: int = 4) -> VQVAE:
    """A VQ-VAE with a uniform prior from the family's options (``vaekit.models.registry.VQVAEOptions``)."""
    from vaekit.likelihoods import build_likelihood
    from vaekit.models.quantiser import FiniteScalarQuantiser, VectorQuantiser

    lik = build_likelihood(likelihood, data_shape, **(likelihood_kwargs or {}))
    if quantiser == "fsq":
        quant: nn.Module = FiniteScalarQuantiser(fsq_levels)
    elif quantiser == "vq":
        quant = VectorQuantiser(codebook_size, code_dim, update=codebook_update, decay=ema_decay,
                                kmeans_init=kmeans_init, restart_after=restart_after, cosine=cosine)
    else:
        raise ValueError(f"unknown model.quantiser {quantiser!r}; choose 'vq' or 'fsq'")
    return VQVAE(data_shape, lik, quant, arch=arch, conv_channels=conv_channels, hidden=hidden, positions=positions,
                 act=act)
