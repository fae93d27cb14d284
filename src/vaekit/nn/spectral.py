"""Spectral regularisation: the sum of the largest singular values of a network's weights, estimated by power
iteration with persistent vectors (Miyato et al. 2018, "Spectral Normalization for GANs", Alg. 1), as NVAE
penalises it (Vahdat & Kautz 2020, Sec. 3.3 "Spectral regularization": L_SR = lambda sum_i s^(i)) to bound the
decoder's Lipschitz constant and keep a deep hierarchy's KL terms stable.

A weight of shape (out, in, *kernel) is taken as the matrix (out, in * prod(kernel)), as NVAE and spectral
normalisation do. Each call runs ``iterations`` steps of power iteration without gradient, keeps u and v as
buffers (so a checkpoint and a resume carry them), and returns s = u^T W v, whose gradient with respect to W is
u v^T: the penalty pushes the top singular direction down.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SpectralNorms"]


class SpectralNorms(nn.Module):
    """Largest singular values of a fixed list of weights, one pair of persistent power-iteration vectors each.

    ``shapes``: the weights' shapes, in the order ``forward`` receives them. u_i (out,) and v_i (in * k) start at
    random unit vectors drawn from the global RNG.
    """

    def __init__(self, shapes: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.n = len(shapes)
        for i, s in enumerate(shapes):
            rows, cols = int(s[0]), int(torch.Size(s[1:]).numel())
            self.register_buffer(f"u{i}", F.normalize(torch.randn(rows), dim=0))
            self.register_buffer(f"v{i}", F.normalize(torch.randn(cols), dim=0))

    def forward(self, weights: Sequence[torch.Tensor], iterations: int = 1) -> torch.Tensor:
        """(n,) estimates of each weight's largest singular value, differentiable in the weights."""
        if len(weights) != self.n:
            raise ValueError(f"SpectralNorms was built for {self.n} weights, got {len(weights)}")
        out = []
        for i, w in enumerate(weights):
            m = w.flatten(1)  # (out, in * k)
            u, v = getattr(self, f"u{i}"), getattr(self, f"v{i}")
            with torch.no_grad():
                md = m.detach().to(u.dtype)
                for _ in range(int(iterations)):
                    v = F.normalize(md.t() @ u, dim=0, eps=1e-12)
                    u = F.normalize(md @ v, dim=0, eps=1e-12)
                getattr(self, f"u{i}").copy_(u)
                getattr(self, f"v{i}").copy_(v)
            out.append(u.to(m.dtype) @ m @ v.to(m.dtype))
        return torch.stack(out)
