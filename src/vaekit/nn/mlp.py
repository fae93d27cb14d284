"""Multi-layer perceptrons."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["MLP", "activation"]

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (relu, tanh, elu, gelu, silu, softplus, leaky_relu)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}") from None


class MLP(nn.Module):
    """Fully connected net ``in_features -> hidden... -> out_features``.

    Inputs of any shape ``(*lead, *in_shape)`` are flattened over ``in_shape`` (the trailing dimensions
    whose product is ``in_features``); the output is ``(*lead, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        act: str = "relu",
        final_act: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        layers: list[nn.Module] = []
        widths = [self.in_features, *[int(h) for h in hidden]]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), activation(act)]
        layers.append(nn.Linear(widths[-1], self.out_features))
        if final_act:
            layers.append(activation(act))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            # (*lead, C, H, W) -> (*lead, C*H*W): find how many trailing dims make in_features
            n, k = 1, 0
            while n < self.in_features and k < x.dim():
                k += 1
                n *= x.shape[-k]
            if n != self.in_features:
                raise ValueError(
                    f"MLP expects inputs whose trailing dimensions multiply to {self.in_features}, "
                    f"got shape {tuple(x.shape)}"
                )
            x = x.flatten(-k)
        return self.net(x)
