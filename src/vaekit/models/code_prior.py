"""Priors over maps of discrete codes (H, W) with K values, as torch Distributions over one-hot maps (H, W, K).

``uniform_codes``: p(z) = prod_positions 1/K (the VQ-VAE's prior while it trains: KL(q || p) = H W log K for a
one-hot q; van den Oord et al. 2017, Sec. 3.1).

``CodeTransformer``: the second stage of a VQ-VAE (their Sec. 3.3, a PixelCNN there): an autoregressive prior
p(z) = prod_i p(z_i | z_<i) over the codes in raster order, here a small causal transformer (Vaswani et al. 2017;
a start token, learned position embeddings, pre-norm blocks). ``AutoregressiveCodes`` is its Distribution:
``log_prob`` of one-hot maps in one pass, ``sample`` position by position.
"""

from __future__ import annotations

import math

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
    """A causal transformer over the H*W codes of a map: logits (B, H*W, K) of p(z_i | z_<i)."""

    def __init__(self, shape: tuple[int, int], k: int, width: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"the prior's width ({width}) must be a multiple of its heads ({heads})")
        self.shape, self.k = (int(shape[0]), int(shape[1])), int(k)
        self.n = self.shape[0] * self.shape[1]
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

    def distribution(self) -> "AutoregressiveCodes":
        return AutoregressiveCodes(self)


class AutoregressiveCodes(Distribution):
    """p(z) of a ``CodeTransformer`` over one-hot maps z (*, H, W, K): batch shape (), event shape (H, W, K)."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.one_hot, 2)

    def __init__(self, net: CodeTransformer) -> None:
        self.net = net
        super().__init__(torch.Size(), torch.Size((*net.shape, net.k)), validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """(*lead,) sum_i log p(z_i | z_<i) of one-hot maps (*lead, H, W, K)."""
        lead = value.shape[:-3]
        codes = value.argmax(-1).reshape(-1, self.net.n)  # (N, n)
        logp = F.log_softmax(self.net(codes).float(), -1)  # (N, n, K)
        return logp.gather(-1, codes.unsqueeze(-1)).squeeze(-1).sum(-1).reshape(lead).to(value.dtype)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        """One-hot maps (*sample_shape, H, W, K), position by position (the global RNG on the net's device)."""
        n = math.prod(sample_shape)
        dev = self.net.pos.device
        codes = torch.zeros(n, 0, dtype=torch.long, device=dev)
        for i in range(self.net.n):
            logits = self.net(torch.cat([codes, torch.zeros(n, 1, dtype=torch.long, device=dev)], 1))[:, i]
            nxt = torch.multinomial(F.softmax(logits.float(), -1), 1)  # (N, 1)
            codes = torch.cat([codes, nxt], 1)
        out = F.one_hot(codes, self.net.k).to(self.net.pos.dtype)  # (N, n, K)
        return out.reshape(*sample_shape, *self.net.shape, self.net.k)
