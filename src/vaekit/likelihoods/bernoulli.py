"""Bernoulli likelihood over pixels in [0, 1] (Kingma & Welling 2014, Appendix C.1)."""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Independent
from torch.nn import functional as F

from vaekit.likelihoods.base import Likelihood

__all__ = ["BernoulliLikelihood", "BernoulliPixels"]


class BernoulliPixels(Independent):
    """Independent Bernoulli pixels; log_prob = -sum BCE-with-logits, negated after the sum (one pass less)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.base_dist.logits  # (*batch, *event)
        logits, value = torch.broadcast_tensors(logits, value)
        bce = F.binary_cross_entropy_with_logits(logits, value, reduction="none")
        return -bce.sum(dim=tuple(range(-self.reinterpreted_batch_ndims, 0)))


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
