"""Optimizer construction, the optimizer step, and the NaN/inf guard's gradient read (public PyTorch APIs only)."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.adam import adam

__all__ = ["make_adam", "AdamStep", "GradSums"]


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


class AdamStep:
    """``opt.step()`` of a ``torch.optim.Adam`` through its documented functional form (``torch.optim.adam.adam``)
    on the optimizer's own state tensors: the same kernel with the same arguments, so the same numbers, without
    the per-step Python work of ``Optimizer.step`` (state look-ups and checks for every parameter, step hooks,
    the profiler scope: about 0.1 ms a step on the 784-400-20 model on a CPU, 2-3 % of its step).

    The lists of state tensors are taken after a call of ``opt.step()`` itself, which runs instead whenever they
    could be stale: before the state exists (the first step creates it), after ``opt.load_state_dict`` (it
    replaces the state), after a change of the parameter groups, or when some parameter has no gradient. The
    optimizer's step hooks do not run on the other steps; the trainer registers none.
    """

    def __init__(self, opt: torch.optim.Adam) -> None:
        self.opt = opt
        self._state: Any = None  # the opt.state the lists were taken from
        self._groups: list[tuple[dict[str, Any], list[torch.Tensor], dict[str, list[torch.Tensor]]]] = []

    def __call__(self) -> None:
        opt = self.opt
        if not self._fresh():
            opt.step()
            self._take()
            return
        extra = {k: v for k, v in (("grad_scale", getattr(opt, "grad_scale", None)),
                                   ("found_inf", getattr(opt, "found_inf", None))) if v is not None}
        with torch.no_grad():
            for group, params, st in self._groups:
                beta1, beta2 = group["betas"]
                flags = {k: group[k] for k in ("foreach", "capturable", "differentiable", "fused",
                                               "decoupled_weight_decay") if k in group}
                adam(params, [p.grad for p in params], st["exp_avg"], st["exp_avg_sq"], st["max_exp_avg_sq"],
                     st["step"], amsgrad=group["amsgrad"], beta1=beta1, beta2=beta2, lr=group["lr"],
                     weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
                     **flags, **extra)

    def _fresh(self) -> bool:
        """Whether the lists are those ``Adam.step`` would pass now."""
        groups = self.opt.param_groups
        return (self.opt.state is self._state and len(self._groups) == len(groups)
                and all(len(params) == len(g["params"]) for (_, params, _), g in zip(self._groups, groups))
                and all(p.grad is not None for _, params, _ in self._groups for p in params))

    def _take(self) -> None:
        """The state lists after ``opt.step()``; none (every step through ``opt.step()``) unless every parameter
        has its state and is real-valued (and the group is not differentiable): ``Adam.step`` then passes exactly
        these lists."""
        opt, groups = self.opt, []
        for group in opt.param_groups:
            params = list(group["params"])
            if group["differentiable"] or any(p not in opt.state or not opt.state[p] or torch.is_complex(p)
                                              for p in params):
                self._state, self._groups = None, []
                return
            keys = ("exp_avg", "exp_avg_sq", "step") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
            st = {k: [opt.state[p][k] for p in params] for k in keys}
            st.setdefault("max_exp_avg_sq", [])
            groups.append((group, params, st))
        self._state, self._groups = opt.state, groups


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
