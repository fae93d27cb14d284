"""Discrete latents trained through a continuous relaxation: the Gumbel-softmax / Concrete distribution (Jang et al.
2017, "Categorical Reparameterization with Gumbel-Softmax", Eq. 1-2; Maddison et al. 2017, "The Concrete
Distribution", Sec. 3.1) for N categorical variables of K values each (K = 2: Bernoulli variables, the binary
Concrete).

    y_k = softmax((log pi_k + g_k) / tau),  g_k = -log(-log U_k), U_k ~ U(0, 1)

As tau -> 0 the relaxed sample y tends to the one-hot argmax_k (log pi_k + g_k), an exact draw from Cat(pi) (the
Gumbel-max trick). Straight-through (Jang et al. 2017, Sec. 2.2): the forward value is that one-hot, the gradient
is the relaxed sample's.

``GumbelSoftmax`` is q(z|x) with batch (B,) and event (N, K). Where gradients are on (training) ``rsample`` gives
the relaxed (or straight-through) sample; without gradients (evaluation, log p(x)) it draws exact one-hot values,
and ``log_prob`` is the categorical log-probability of one-hot values, so the ELBO and the importance-weighted
log p(x) that vaekit evaluates are those of the discrete model. The KL against a categorical prior is exact
(``register_kl_dims``): KL_n = sum_k pi_nk (log pi_nk - log p_nk) per variable n (Jang et al. 2017, Sec. 3.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Independent, OneHotCategorical, constraints

from vaekit.objectives.latents import register_kl_dims

__all__ = ["GumbelSoftmax", "categorical_prior", "categorical_kl"]


class GumbelSoftmax(Distribution):
    """N independent categorical variables of K values with Gumbel-softmax samples at temperature ``tau``.

    logits: (*batch, N, K). straight_through: one-hot forward values with the relaxed gradients.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, logits: torch.Tensor, tau: float = 1.0, straight_through: bool = False) -> None:
        self.logits = logits - logits.logsumexp(-1, keepdim=True)  # (*batch, N, K) normalised log pi
        self.tau, self.straight_through = float(tau), bool(straight_through)
        super().__init__(logits.shape[:-2], logits.shape[-2:], validate_args=False)

    @property
    def probs(self) -> torch.Tensor:  # (*batch, N, K)
        return self.logits.exp()

    @property
    def mean(self) -> torch.Tensor:
        return self.probs

    def _gumbel(self, sample_shape: torch.Size | tuple) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.logits.shape
        u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device).clamp_min(1e-20)
        e = (-torch.log(u)).clamp_min(1e-20)  # Exp(1) noise
        return -torch.log(e)  # (*S, *batch, N, K) Gumbel(0, 1)

    def relaxed(self, sample_shape: torch.Size | tuple = (), tau: float | None = None) -> torch.Tensor:
        """(*S, *batch, N, K) Gumbel-softmax samples at temperature ``tau`` (default: the distribution's)."""
        t = self.tau if tau is None else float(tau)
        return torch.softmax((self.logits + self._gumbel(sample_shape)) / t, -1)

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        """Exact one-hot draws (the Gumbel-max trick), (*S, *batch, N, K)."""
        with torch.no_grad():
            g = self.logits + self._gumbel(sample_shape)
            return F.one_hot(g.argmax(-1), g.shape[-1]).to(self.logits.dtype)

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        """Relaxed samples (straight-through: one-hot values, relaxed gradients) where gradients are on; exact
        one-hot draws otherwise."""
        if not torch.is_grad_enabled():
            return self.sample(sample_shape)
        y = self.relaxed(sample_shape)
        if not self.straight_through:
            return y
        hard = F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)
        return hard + (y - y.detach())

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """sum_n log pi_n[value_n] for one-hot values (*S, *batch, N, K) -> (*S, *batch)."""
        return (value * self.logits).sum((-1, -2))


def categorical_prior(n: int, k: int, like: torch.Tensor) -> Distribution:
    """The uniform prior over N categorical variables of K values: batch (), event (N, K) one-hot values."""
    return Independent(OneHotCategorical(logits=torch.zeros(n, k, dtype=like.dtype, device=like.device),
                                         validate_args=False), 1, validate_args=False)


@register_kl_dims(GumbelSoftmax, Independent)
def categorical_kl(q: GumbelSoftmax, p: Independent) -> torch.Tensor:
    """(*batch, N) KL(Cat(pi_n) || p_n) per variable, exact; p an Independent of OneHotCategorical (N, K)."""
    log_p = p.base_dist.logits - p.base_dist.logits.logsumexp(-1, keepdim=True)  # (N, K)
    return (q.probs * (q.logits - log_p)).sum(-1)
