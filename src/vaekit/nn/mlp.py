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

    ``in_features`` is an int (inputs ``(*lead, in_features)``) or a shape such as ``(C, H, W)`` (inputs
    ``(*lead, C, H, W)``, flattened over that shape). The output is ``(*lead, out_features)``.
    ``dropout`` > 0 puts ``nn.Dropout(dropout)`` after every hidden activation (Srivastava et al., 2014); it acts
    in training mode only, and with dropout 0 the module and its state-dict keys are those of the plain net.
    """

    def __init__(
        self,
        in_features: int | Sequence[int],
        hidden: Sequence[int],
        out_features: int,
        act: str = "relu",
        final_act: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_shape = (int(in_features),) if isinstance(in_features, int) else tuple(int(s) for s in in_features)
        self.in_features = 1
        for s in self.in_shape:
            self.in_features *= s
        self.out_features = int(out_features)
        layers: list[nn.Module] = []
        widths = [self.in_features, *[int(h) for h in hidden]]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), activation(act)]
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
        layers.append(nn.Linear(widths[-1], self.out_features))
        if final_act:
            layers.append(activation(act))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.in_shape)
        if tuple(x.shape[-k:]) != self.in_shape:
            raise ValueError(f"MLP expects inputs of trailing shape {self.in_shape}, got {tuple(x.shape)}")
        if k > 1:
            x = x.flatten(-k)  # (*lead, C, H, W) -> (*lead, C*H*W)
        return self.net(x)


class FlattenInput(nn.Module):
    """(*lead, *in_shape) -> (*lead, prod(in_shape)): the encoder of an affine VAE (``model.hidden=[]``)."""

    def __init__(self, in_shape: Sequence[int]) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_features = 1
        for s in self.in_shape:
            self.out_features *= s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.in_shape)
        if tuple(x.shape[-k:]) != self.in_shape:
            raise ValueError(f"expected inputs of trailing shape {self.in_shape}, got {tuple(x.shape)}")
        return x.flatten(-k) if k > 1 else x
