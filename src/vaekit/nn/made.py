"""Masked linear layers and MADE (Germain et al. 2015, "MADE: Masked Autoencoder for Distribution Estimation").

Every input variable gets a degree in 1..D (its position in a chosen autoregressive order), every hidden unit a
degree m(k), and masks enforce (Germain et al. 2015, Eq. 12-13):

    input d  -> hidden k   kept iff  m(k) >= deg(d)
    hidden k -> hidden k'  kept iff  m(k') >= m(k)
    hidden k -> output d   kept iff  deg(d) > m(k)        (strict: output d never sees input d or later ones)

so output d depends only on the inputs that precede d in the order, i.e. the Jacobian of every output block
with respect to the inputs is strictly lower triangular once rows and columns are sorted by the order.

Hidden degrees are assigned deterministically (cycling through their range) rather than sampled, so a layer of
width H >= D - 1 uses every degree. Without a context vector hidden degrees lie in 1..D-1 (Germain et al.);
with one they lie in 0..D-1: degree-0 units see only the context, which lets the first variable in the order
depend on the context (this is how IAF conditions on the encoder's h, Kingma et al. 2016, Sec. 4).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.nn.mlp import activation

__all__ = ["MaskedLinear", "MADE", "made_degrees"]


class MaskedLinear(nn.Linear):
    """y = x (W * M)^T + b with a fixed 0/1 mask M of shape (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(f"mask must have shape ({out_features}, {in_features}), got {tuple(mask.shape)}")
        # the mask is a function of the constructor arguments: not saved in the state_dict
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_degrees(
    dim: int, hidden: Sequence[int], order: Sequence[int] | None = None, min_hidden_degree: int = 1
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Degrees of the inputs (D,) and of each hidden layer (H_l,).

    ``order`` lists the variable indices from first to last in the autoregressive order (default 0..D-1);
    variable ``order[k]`` gets degree k + 1. Hidden degrees cycle through ``lo..D-1`` with
    ``lo = min(min_hidden_degree, D - 1)``.
    """
    order_t = torch.arange(dim) if order is None else torch.as_tensor(list(order), dtype=torch.long)
    if sorted(order_t.tolist()) != list(range(dim)):
        raise ValueError(f"order must be a permutation of 0..{dim - 1}, got {order_t.tolist()}")
    deg_in = torch.empty(dim, dtype=torch.long)
    deg_in[order_t] = torch.arange(1, dim + 1)
    lo = min(int(min_hidden_degree), dim - 1)
    n_levels = dim - lo  # degrees lo..D-1
    deg_hidden = [lo + torch.arange(int(h)) % n_levels for h in hidden]
    return deg_in, deg_hidden


class MADE(nn.Module):
    """Autoregressive MLP x (*lead, D) [, context (*lead', C)] -> (*lead, n_params, D).

    Output ``[..., j, d]`` (parameter j of variable d) depends only on the variables before d in ``order`` and
    on the context, which is added (through an unmasked linear map) to the pre-activation of every hidden layer.
    ``lead'`` must broadcast against ``lead`` (e.g. context (B, C) with x (S, B, D)).
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        n_params: int = 2,
        context_features: int = 0,
        order: Sequence[int] | None = None,
        act: str = "elu",
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        if dim < 1 or n_params < 1 or context_features < 0:
            raise ValueError("MADE needs dim >= 1, n_params >= 1 and context_features >= 0")
        if not hidden or min(hidden) < 1:
            raise ValueError(f"MADE needs at least one hidden layer of positive width, got hidden={hidden}")
        self.dim, self.n_params, self.context_features = int(dim), int(n_params), int(context_features)
        deg_in, deg_hidden = made_degrees(dim, hidden, order, 0 if context_features > 0 else 1)
        self.register_buffer("degrees", deg_in, persistent=False)  # (D,)
        layers, ctx = [], []
        prev_deg = deg_in
        for h, deg in zip(hidden, deg_hidden):
            mask = (deg[:, None] >= prev_deg[None, :])  # (H, H_prev)
            layers.append(MaskedLinear(len(prev_deg), h, mask))
            if context_features > 0:
                ctx.append(nn.Linear(context_features, h, bias=False))
            prev_deg = deg
        deg_out = deg_in.repeat(n_params)  # (n_params * D,): block j holds parameter j of every variable
        self.out = MaskedLinear(len(prev_deg), n_params * dim, deg_out[:, None] > prev_deg[None, :])
        self.layers = nn.ModuleList(layers)
        self.context_layers = nn.ModuleList(ctx)
        self.act = activation(act)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"MADE expects inputs with last dimension {self.dim}, got {tuple(x.shape)}")
        if (context is None) != (self.context_features == 0):
            raise ValueError(f"MADE built with context_features={self.context_features} "
                             f"got context={'None' if context is None else tuple(context.shape)}")
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)  # (*lead, H)
            if context is not None:
                h = h + self.context_layers[i](context)  # context (*lead', H) broadcasts
            h = self.act(h)
        out = self.out(h)  # (*lead, n_params * D)
        return out.unflatten(-1, (self.n_params, self.dim))  # (*lead, n_params, D)
