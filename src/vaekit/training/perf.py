"""Optimizer construction and the NaN/inf guard's gradient read (public PyTorch APIs only)."""

from __future__ import annotations

import torch

__all__ = ["make_adam", "GradSums"]


def make_adam(params, *, lr: float, weight_decay: float = 0.0, fused: bool = True,
              betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam, fused (one kernel for all parameters) where this build supports it, else foreach."""
    params, betas = list(params), (float(betas[0]), float(betas[1]))
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, foreach=True)


class GradSums:
    """The sum of every gradient element of ``params``, each part taken as the backward pass writes that gradient
    (``register_post_accumulate_grad_hook``).

    Any NaN or inf element makes the total non-finite (the trainer's guard), and the parts are read while the
    freshly written gradient is still in cache: about 50 us less per step than summing the gradients after the
    backward pass on the 784-400-20 model. A context manager: the hooks are removed on exit.
    """

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.parts: list[torch.Tensor] = []
        # a frozen parameter (M1+M2's M1) gets no gradient, and torch refuses a hook on it
        self.handles = [p.register_post_accumulate_grad_hook(self._add) for p in params if p.requires_grad]

    def _add(self, p: torch.Tensor) -> None:
        self.parts.append(p.grad.sum())

    def total(self) -> torch.Tensor:
        """The sum over the gradients written since the last call (0 when none were)."""
        out = torch.stack(self.parts).sum() if self.parts else torch.zeros(())
        self.parts.clear()
        return out

    def __enter__(self) -> "GradSums":
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
