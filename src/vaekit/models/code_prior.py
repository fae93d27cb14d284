"""Priors over maps of discrete codes (H, W) with K values, as torch Distributions over one-hot maps (H, W, K).

``uniform_codes``: p(z) = prod_positions 1/K (the VQ-VAE's prior while it trains: KL(q || p) = H W log K for a
one-hot q; van den Oord et al. 2017, Sec. 3.1).

``CodeTransformer``: the second stage of a VQ-VAE (their Sec. 3.3, a PixelCNN there): an autoregressive prior
p(z) = prod_i p(z_i | z_<i) over the codes in raster order, here a small causal transformer (Vaswani et al. 2017;
a start token, learned position embeddings, pre-norm blocks). ``AutoregressiveCodes`` is its Distribution:
``log_prob`` of one-hot maps in one pass, ``sample`` position by position.

Several maps (a two-level VQ-VAE's top and bottom, Razavi et al. 2019, "Generating Diverse High-Fidelity Images
with VQ-VAE-2"): one transformer over the concatenation of the maps flattened in order (top first), so
p(z_top, z_bottom) = p(z_top) p(z_bottom | z_top) by the chain rule over the joint sequence. (The paper uses a
PixelSNAIL per level, the bottom's conditioned on the top map; one joint sequence is the simpler equivalent
factorisation.) ``AutoregressiveCodes(net, level, context)`` is map ``level``'s factor, given the codes of the
maps before it.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, OneHotCategorical, constraints

__all__ = ["uniform_codes", "CodeTransformer", "AutoregressiveCodes"]


def uniform_codes(shape: tuple[int, int], k: int, like: torch.Tensor) -> Independent:
    """The uniform prior over (H, W) maps of K codes: event shape (H, W, K), batch shape ()."""
    logits = torch.zeros(*shape, k, dtype=like.dtype, device=like.device)  # (H, W, K)
    return Independent(OneHotCategorical(logits=logits), 2)


class CodeTransformer(nn.Module):
    """A causal transformer over the n codes of one map (H, W), or of several maps ``shapes`` concatenated in
    order: logits (B, n, K) of p(z_i | z_<i)."""

    def __init__(self, shape: tuple[int, int] | Sequence[tuple[int, int]], k: int, width: int = 64, layers: int = 2,
                 heads: int = 4) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"the prior's width ({width}) must be a multiple of its heads ({heads})")
        maps = [shape] if isinstance(shape[0], int) else list(shape)
        self.shapes = [(int(h), int(w)) for h, w in maps]
        self.shape, self.k = self.shapes[0], int(k)
        self.sizes = [h * w for h, w in self.shapes]
        self.n = sum(self.sizes)
        self.embed = nn.Embedding(self.k + 1, width)  # code k and the start token (index K)
        self.pos = nn.Parameter(torch.randn(self.n, width) * 0.02)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, self.k)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """logits (B, n, K) of each position given the ones before it, from codes (B, m), m <= n (raster order)."""
        b, m = codes.shape
        start = torch.full((b, 1), self.k, dtype=torch.long, device=codes.device)
        inp = torch.cat([start, codes[:, :self.n - 1]], 1)[:, :max(m, 1)]  # (B, m) shifted right
        h = self.embed(inp) + self.pos[:inp.shape[1]]  # (B, m, W)
        mask = nn.Transformer.generate_square_subsequent_mask(inp.shape[1], device=codes.device, dtype=h.dtype)
        h = self.blocks(h, mask=mask, is_causal=True)
        return self.out(self.norm(h))  # (B, m, K)

    def distribution(self, level: int = 0, context: torch.Tensor | None = None) -> "AutoregressiveCodes":
        """p of map ``level`` given the codes of the maps before it, ``context`` (*batch, n_before) (int64)."""
        return AutoregressiveCodes(self, level, context)


class AutoregressiveCodes(Distribution):
    """p(z) of map ``level`` of a ``CodeTransformer`` over one-hot maps z (*, H, W, K): event shape (H, W, K);
    batch shape () for the first map, the context's batch shape (the earlier maps' codes) for a later one."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.one_hot, 2)

    def __init__(self, net: CodeTransformer, level: int = 0, context: torch.Tensor | None = None) -> None:
        self.net, self.level = net, int(level)
        self.start = sum(net.sizes[:self.level])  # the map's first position in the joint sequence
        self.size = net.sizes[self.level]
        if (context is None) != (self.start == 0) or (context is not None and context.shape[-1] != self.start):
            raise ValueError(f"map {level} of the code prior needs the {self.start} codes of the maps before it "
                             f"as context, got {None if context is None else tuple(context.shape)}")
        self.context = context
        batch = torch.Size(()) if context is None else context.shape[:-1]
        super().__init__(batch, torch.Size((*net.shapes[self.level], net.k)), validate_args=False)

    def _prefix(self, lead: torch.Size) -> torch.Tensor:
        """(N, start) the context broadcast to ``lead`` and flattened."""
        dev = self.net.pos.device
        if self.context is None:
            return torch.zeros(math.prod(lead), 0, dtype=torch.long, device=dev)
        return self.context.expand(*lead, self.start).reshape(-1, self.start)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """(*lead,) sum_i log p(z_i | z_<i) over this map's positions, of one-hot maps (*lead, H, W, K)."""
        lead = torch.broadcast_shapes(value.shape[:-3], self.batch_shape)
        codes = value.expand(*lead, *value.shape[-3:]).argmax(-1).reshape(-1, self.size)  # (N, n_map)
        seq = torch.cat([self._prefix(lead), codes], 1)  # (N, start + n_map)
        logp = F.log_softmax(self.net(seq)[:, self.start:].float(), -1)  # (N, n_map, K)
        return logp.gather(-1, codes.unsqueeze(-1)).squeeze(-1).sum(-1).reshape(lead).to(value.dtype)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        """One-hot maps (*sample_shape, *batch, H, W, K), position by position (the global RNG on the net's
        device)."""
        lead = torch.Size((*sample_shape, *self.batch_shape))
        dev = self.net.pos.device
        seq = self._prefix(lead)  # (N, start)
        n = seq.shape[0]
        for i in range(self.start, self.start + self.size):
            logits = self.net(torch.cat([seq, torch.zeros(n, 1, dtype=torch.long, device=dev)], 1))[:, i]
            nxt = torch.multinomial(F.softmax(logits.float(), -1), 1)  # (N, 1)
            seq = torch.cat([seq, nxt], 1)
        out = F.one_hot(seq[:, self.start:], self.net.k).to(self.net.pos.dtype)  # (N, n_map, K)
        return out.reshape(*lead, *self.event_shape)
