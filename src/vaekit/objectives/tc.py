"""β-TCVAE (Chen, Li, Grosse & Duvenaud 2018, "Isolating Sources of Disentanglement in VAEs").

The KL term averaged over the data splits into three (their Eq. 2), with q(z) = (1/N) sum_n q(z|n) the aggregate
posterior of the N training points:

    E_p(n)[KL(q(z|n) || p(z))] = I_q(z; n)                          (index-code mutual information)
                               + KL(q(z) || prod_j q(z_j))            (total correlation, TC)
                               + sum_j KL(q(z_j) || p(z_j))           (dimension-wise KL)

and the β-TCVAE loss weights them alpha, beta, gamma (their Eq. 4; alpha = gamma = 1 in their experiments).
log q(z) and log q(z_j) at the batch's samples are estimated from the batch of M points:

- minibatch weighted sampling (MWS, their Sec. 3.1 / Appendix C.1):
  log q(z_i) ~ logsumexp_j log q(z_i | n_j) - log(N M), the same per dimension for log q(z_ij);
- minibatch stratified sampling (MSS, Appendix C.2): weight 1/N on the point's own term, (N - M + 1)/(N (M - 1))
  on one other and 1/(M - 1) on the rest (the weights of a batch drawn without the point itself), which tends to
  the mixture as M and N grow (tested against the closed-form TC of a Gaussian aggregate posterior).

Per example i (all three (B,), nats): mi = log q(z_i|n_i) - log q(z_i), tc = log q(z_i) - sum_j log q(z_ij),
dwkl = sum_j log q(z_ij) - log p(z_i); they add up to the single-sample KL log q(z_i|n_i) - log p(z_i). The loss
uses the closed-form KL for the part weighted 1 (lower variance, the same expectation):

    loss = mean_i [ -log p(x_i|z_i) + beta_KL * KL_i + (alpha - 1) mi_i + (beta - 1) tc_i + (gamma - 1) dwkl_i ].

MWS's weights make its tc larger than the mixture's by about (D - 1) log N, a constant that leaves the gradients
unchanged; the value logged is the estimator's, as in the paper's code.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal

from vaekit.objectives.elbo import Objective, ObjectiveResult
from vaekit.objectives.bounds import single_group_terms

__all__ = ["BetaTCVAE", "tc_decomposition", "gaussian_posterior"]


def gaussian_posterior(q) -> tuple[torch.Tensor, torch.Tensor]:
    """(loc, scale), each (B, D), of a diagonal Gaussian q(z|x); ValueError for any other posterior."""
    if isinstance(q, Independent) and isinstance(q.base_dist, Normal) and q.reinterpreted_batch_ndims == 1:
        return q.base_dist.loc, q.base_dist.scale
    raise ValueError(f"this objective needs a diagonal Gaussian posterior (model.posterior=gaussian), got "
                     f"{type(q).__name__}")


def _log_weights(m: int, n: int, estimator: str, device: torch.device) -> torch.Tensor:
    """(M, M) log weights w_ij of q(z_i | n_j) in the estimate of q(z_i) (rows: samples i, columns: points j)."""
    if estimator == "mws":
        return torch.full((m, m), -math.log(n * m), device=device)
    if m < 2:
        raise ValueError("the MSS estimator needs batches of at least 2 points")
    w = torch.full((m, m), 1.0 / (m - 1), device=device, dtype=torch.float64)
    w.fill_diagonal_(1.0 / n)
    other = torch.arange(m, device=device)
    w[other, (other + 1) % m] = (n - m + 1) / (n * (m - 1))  # the stratum's leftover weight on one other point
    return w.log().to(torch.get_default_dtype())


def tc_decomposition(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, log_pz: torch.Tensor,
                     dataset_size: int, estimator: str = "mws") -> dict[str, torch.Tensor]:
    """Per-example mi, tc, dwkl (each (B,)) of a batch of samples z_i ~ q(z|n_i) (module doc).

    z, loc, scale: (B, D); log_pz: (B,) log p(z_i) under the prior.
    """
    b = z.shape[0]
    if dataset_size < b:
        raise ValueError(f"dataset_size ({dataset_size}) must be at least the batch size ({b})")
    log_q_ij = Normal(loc[None], scale[None]).log_prob(z[:, None])  # (B_i, B_j, D): log q(z_id | n_j)
    lw = _log_weights(b, int(dataset_size), estimator, z.device).to(z.dtype)  # (B, B)
    log_qz = torch.logsumexp(lw + log_q_ij.sum(-1), 1)  # (B,)
    log_qzj = torch.logsumexp(lw[..., None] + log_q_ij, 1).sum(-1)  # (B,) sum_d log q(z_id)
    log_q_own = torch.diagonal(log_q_ij, dim1=0, dim2=1).sum(0)  # (B,) log q(z_i | n_i)
    return {"mi": log_q_own - log_qz, "tc": log_qz - log_qzj, "dwkl": log_qzj - log_pz}


class BetaTCVAE(Objective):
    """β-TCVAE loss (module doc): TC weight ``beta``, MI weight ``alpha``, dimension-wise KL weight ``gamma``.

    dataset_size: N, the number of training points (the trainer's data); estimator: "mws" or "mss".
    ``result.terms`` holds mi, tc, dwkl per example; ``result.kl`` is the closed-form KL, so ``elbo`` is the ELBO.
    """

    def __init__(self, beta: float = 6.0, alpha: float = 1.0, gamma: float = 1.0, dataset_size: int | None = None,
                 estimator: str = "mws") -> None:
        super().__init__()
        if estimator not in ("mws", "mss"):
            raise ValueError(f"beta-tcvae estimator must be 'mws' or 'mss', got {estimator!r}")
        if dataset_size is None or dataset_size < 1:
            raise ValueError("beta-tcvae needs the training set size: objective_options.dataset_size=N")
        if min(alpha, beta, gamma) < 0:
            raise ValueError("beta-tcvae needs alpha, beta, gamma >= 0")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.dataset_size, self.estimator = int(dataset_size), estimator

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:
        g, log_px_z, kl = single_group_terms(model, x, "beta-tcvae", check)  # (B,) each
        loc, scale = gaussian_posterior(g.q)
        parts = tc_decomposition(g.z, loc, scale, g.p.log_prob(g.z), self.dataset_size, self.estimator)
        extra = (self.alpha - 1) * parts["mi"] + (self.beta - 1) * parts["tc"] + (self.gamma - 1) * parts["dwkl"]
        loss = (kl - log_px_z + extra).mean()
        return ObjectiveResult(loss, log_px_z, kl, self.beta, terms=parts)
