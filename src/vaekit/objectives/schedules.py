"""Schedules for the KL weight."""

from __future__ import annotations

__all__ = ["kl_weight"]


def kl_weight(step: int | None, beta: float = 1.0, warmup_steps: int = 0) -> float:
    """beta * min(1, step / warmup_steps): linear KL warm-up (Bowman et al. 2016; Sønderby et al. 2016 Sec. 2.3).

    With ``warmup_steps = 0`` or ``step = None`` (evaluation) the weight is ``beta``.
    """
    if warmup_steps <= 0 or step is None:
        return float(beta)
    return float(beta) * min(1.0, max(0, step) / warmup_steps)
