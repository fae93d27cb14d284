"""Bernoulli likelihood over pixels in [0, 1] (Kingma & Welling 2014, Appendix C.1)."""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Independent

from vaekit.likelihoods.base import Likelihood

__all__ = ["BernoulliLikelihood"]


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
        return Independent(Bernoulli(logits=logits, validate_args=False), self.event_dim, validate_args=False)
