"""Exponential moving average of a model's weights, used for validation, the 'best' checkpoint and evaluation.

Polyak & Juditsky 1992 (averaged iterates); the exponential form with a decay that ramps up over the first
steps, d_t = min(d, (1 + t) / (10 + t)), as in TensorFlow's ExponentialMovingAverage(num_updates=t): early
averages are not dragged towards the random initialisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """An averaged copy of ``model``: after each optimizer step, avg <- avg + (1 - d_t) (theta - avg).

    ``model`` (the copy) is what validation and the 'best' checkpoint use; buffers (batch-norm statistics) are
    copied from the trained model, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}; e.g. 0.999, or null to turn it off")
        self.decay = float(decay)
        self.source = model
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self._src = [p for p in model.parameters() if p.requires_grad]
        self._dst = [q for p, q in zip(model.parameters(), self.model.parameters()) if p.requires_grad]

    def decay_at(self, step: int) -> float:
        """d_t for the update after optimizer step ``step`` (0-based)."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        w = 1.0 - self.decay_at(step)
        for dst, src in zip(self._dst, self._src):
            dst.lerp_(src, w)

    @torch.no_grad()
    def sync_buffers(self) -> nn.Module:
        """Copy buffers (e.g. batch-norm running statistics) from the trained model; return the averaged model."""
        for b_dst, b_src in zip(self.model.buffers(), self.source.buffers()):
            b_dst.copy_(b_src)
        return self.model
