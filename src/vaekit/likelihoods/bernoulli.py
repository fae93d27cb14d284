"""Bernoulli likelihood over pixels in [0, 1] (Kingma & Welling 2014, Appendix C.1)."""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Independent
from torch.nn import functional as F

from vaekit.likelihoods.base import Likelihood

__all__ = ["BernoulliLikelihood", "BernoulliPixels"]


class BernoulliPixels(Independent):
    """Independent Bernoulli pixels with a lean log-density.

    log p(x) = sum_i [x_i l_i - softplus(l_i)] for logits l. Without gradients (the hot loop of the
    importance-sampled log p(x), K samples of one data point decoded at once) it is computed in that form: two
    passes over the logits, x broadcast, instead of the half-dozen of the element-wise BCE. With gradients it is
    -BCE-with-logits, whose fused backward (sigmoid(l) - x) beats the backward of the two-term form.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        k = self.reinterpreted_batch_ndims
        logits = self.base_dist.logits.flatten(-k)  # (*batch, N)
        x = value.flatten(-k)  # (*batch', N), broadcasts against the logits
        if logits.requires_grad and torch.is_grad_enabled():
            if x.shape != logits.shape:
                logits, x = torch.broadcast_tensors(logits, x)
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return (logits * x).sum(-1) - F.softplus(logits).sum(-1)


class BernoulliLikelihood(Likelihood):
    """p(x|z) = prod_i Bern(x_i; sigmoid(h_i)); log_prob = -BCE-with-logits summed over pixels.

    Grey values in (0, 1) are accepted (the usual "cross-entropy" objective) although the density is then
    not normalised; use the continuous Bernoulli for a normalised density on [0, 1].
    """

    params_per_channel = 1
    support = (0.0, 1.0)
    discrete = True

    def forward(self, h: torch.Tensor) -> Independent:
        (logits,) = self.split(h)
        return BernoulliPixels(Bernoulli(logits=logits, validate_args=False), self.event_dim, validate_args=False)
