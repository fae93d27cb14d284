"""Bernoulli likelihood over pixels in [0, 1] (Kingma & Welling 2014, Appendix C.1)."""

from __future__ import annotations

import math

import torch
from torch.distributions import Bernoulli, Independent
from torch.nn import functional as F

from vaekit.likelihoods.base import Likelihood

__all__ = ["BernoulliLikelihood", "BernoulliPixels", "bernoulli_log_prob"]


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_i [x_i l_i - softplus(l_i)] over the last axis: logits (*batch, N), x (*batch', N) broadcasting.

    Under autograd it is -BCE-with-logits, whose fused backward (sigmoid(l) - x) beats the backward of the
    two-term form; without gradients (the hot loop of the importance-sampled log p(x), K samples of one data
    point decoded at once) the two-term form: two passes over the logits, x broadcast, instead of the
    half-dozen of the element-wise BCE.
    """
    if logits.requires_grad and torch.is_grad_enabled():
        if x.shape != logits.shape:
            logits, x = torch.broadcast_tensors(logits, x)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    return (logits * x).sum(-1) - F.softplus(logits).sum(-1)


class BernoulliPixels(Independent):
    """Independent Bernoulli pixels with a lean log-density (``bernoulli_log_prob``)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        k = self.reinterpreted_batch_ndims
        return bernoulli_log_prob(self.base_dist.logits.flatten(-k), value.flatten(-k))


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

    def log_prob(self, h: torch.Tensor, x: torch.Tensor, lead: torch.Size) -> torch.Tensor:
        """``self(h).log_prob(x)`` on flat views, without building the distribution (the training hot path)."""
        n = math.prod(self.data_shape)
        if tuple(h.shape) != (*lead, n):
            h = self.split(h.reshape(*lead, *self.param_shape))[0].reshape(*lead, n)
        return bernoulli_log_prob(h, x.reshape(*x.shape[:x.dim() - self.event_dim], n))
