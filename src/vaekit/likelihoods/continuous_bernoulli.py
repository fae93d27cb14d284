"""Continuous Bernoulli likelihood (Loaiza-Ganem & Cunningham 2019, "The continuous Bernoulli: fixing a
pervasive error in variational autoencoders").

p(x | lambda) = C(lambda) lambda^x (1 - lambda)^(1 - x) on [0, 1] (their Sec. 3), with normaliser

    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda),   C(1/2) = 2.

Written in the logit eta = log(lambda / (1 - lambda)) (1 - 2 lambda = -tanh(eta / 2), 2 artanh(1 - 2 lambda) = -eta):

    C = eta / tanh(eta / 2),    log C = log 2 + eta^2/12 - 7 eta^4/1440 + 31 eta^6/90720 - ... (to eta^14)
    E[x]   = 1/2 + (coth u - 1/u) / 2            (u = eta / 2; a Langevin function)
    Var[x] = (1/u^2 - 1/sinh^2 u) / 4

No probability is ever formed, so extreme logits (|eta| = 1e4) give log C = log|eta| exactly, where
``torch.distributions.ContinuousBernoulli`` clamps probs and saturates at |eta| ~ 16 (float32). For |eta| < 1/2
(lambda within 0.12 of 1/2) the Taylor series is used: the closed forms are exact there too, but their
*gradients* cancel catastrophically in float32 (d log C / d eta = 1/eta - 1/sinh eta loses 0.2% at eta = 0.01).
The other branch is fed a dummy argument there so that no 0/0 reaches
autograd (the "double where" trick).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F
from torch.distributions import ContinuousBernoulli, Independent

from vaekit.likelihoods.base import Likelihood

__all__ = ["ContinuousBernoulliLikelihood", "StableContinuousBernoulli", "cb_log_normalizer"]

_LOG2 = math.log(2.0)
_NORM_TAYLOR = 0.5  # |eta| below which log C uses its series (truncation < 3e-14)
# coefficients of eta^2, eta^4, ..., eta^14 in log(eta / tanh(eta / 2)) - log 2
_LOG_NORM_COEFFS = (1 / 12, -7 / 1440, 31 / 90720, -127 / 4838400, 73 / 34214400, -1414477 / 7846046208000,
                    8191 / 523069747200)
_MOMENT_TAYLOR = 0.5  # |u| below which mean and variance use their series (next term < 1e-8)


def _horner(y: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:
    """sum_k coeffs[k] * y^(k+1)."""
    acc = torch.zeros_like(y)
    for c in reversed(coeffs):
        acc = (acc + c) * y
    return acc


def _split_where(x: torch.Tensor, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x where not small else 1, x where small else 0): safe inputs for the exact and series branches."""
    return torch.where(small, torch.ones_like(x), x), torch.where(small, x, torch.zeros_like(x))


def cb_log_normalizer(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda) of the continuous Bernoulli from its logits eta, elementwise and stable for any eta."""
    small = logits.abs() < _NORM_TAYLOR
    big_eta, small_eta = _split_where(logits, small)
    exact = torch.log(big_eta / torch.tanh(0.5 * big_eta))  # eta / tanh(eta/2) > 0, no cancellation
    e2 = small_eta.square()
    series = _LOG2 + _horner(e2, _LOG_NORM_COEFFS)
    return torch.where(small, series, exact)


class StableContinuousBernoulli(ContinuousBernoulli):
    """``torch.distributions.ContinuousBernoulli`` with normaliser, mean and variance computed from the logits.

    ``log_prob`` = -BCE-with-logits(eta, x) + log C(eta), i.e. x log lambda + (1-x) log(1-lambda) + log C, with
    the stable ``cb_log_normalizer`` (public overrides only). Sampling, the CDF and the entropy stay the torch
    ones (they clamp probs, which only matters in the far tails).
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits, value = torch.broadcast_tensors(self.logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none") + cb_log_normalizer(logits)

    @property
    def mean(self) -> torch.Tensor:
        u = 0.5 * self.logits
        small = u.abs() < _MOMENT_TAYLOR
        big_u, small_u = _split_where(u, small)
        exact = 1.0 / torch.tanh(big_u) - 1.0 / big_u  # Langevin function L(u)
        u2 = small_u.square()
        series = small_u * (1 / 3 - u2 * (1 / 45 - u2 * (2 / 945 - u2 * (1 / 4725 - u2 * (2 / 93555)))))
        return 0.5 + 0.5 * torch.where(small, series, exact)

    @property
    def variance(self) -> torch.Tensor:
        u = 0.5 * self.logits
        small = u.abs() < _MOMENT_TAYLOR
        big_u, small_u = _split_where(u, small)
        a = big_u.abs()
        inv_sinh2 = 4.0 * torch.exp(-2.0 * a) / torch.expm1(-2.0 * a).square()  # 1/sinh^2, no overflow
        exact = 1.0 / a.square() - inv_sinh2
        u2 = small_u.square()
        series = 1 / 3 - u2 * (1 / 15 - u2 * (2 / 189 - u2 * (1 / 675 - u2 * (2 / 10395))))
        return 0.25 * torch.where(small, series, exact)


class ContinuousBernoulliLikelihood(Likelihood):
    """p(x|z) = prod_i CB(x_i; sigmoid(h_i)) for data in [0, 1] (Loaiza-Ganem & Cunningham 2019).

    The decoder output h is the logit eta. ``.mean`` is the continuous-Bernoulli mean E[x], not
    lambda = sigmoid(eta): use it for reconstructions and samples (lambda is biased towards 0 and 1).
    """

    params_per_channel = 1
    support = (0.0, 1.0)
    discrete = False

    def forward(self, h: torch.Tensor) -> Independent:
        (logits,) = self.split(h)  # (*batch, *data_shape)
        base = StableContinuousBernoulli(logits=logits, validate_args=False)
        return Independent(base, self.event_dim, validate_args=False)
