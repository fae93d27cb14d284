"""The deep Markov model (Krishnan, Shalit & Sontag 2017, "Structured Inference Networks for Nonlinear State Space
Models", AAAI): a nonlinear state space model p(x, z) = prod_t p(z_t | z_{t-1}) p(x_t | z_t) with the gated
transition of their Sec. 5 and an MLP emitter, and the structured posterior q(z_t | z_{t-1}, x_{t:T}) of their
Sec. 4 (the combiner of a backward RNN's summary of x_{t:T} with z_{t-1}, "ST-R"). The bound is their Eq. 6:
sum_t E_q[log p(x_t | z_t)] - E_q[KL(q(z_t | z_{t-1}, x_{t:T}) || p(z_t | z_{t-1}))], the KL per step in closed
form at the sampled z_{t-1}. How the model speaks the contract: ``vaekit.models.sequences``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from vaekit.likelihoods.base import Likelihood
from vaekit.models.contract import LatentGroup, ModelOutput
from vaekit.models.sequences import BackwardRNN, SequenceModel, path_normal, split_steps
from vaekit.nn import MLP

__all__ = ["GatedTransition", "Combiner", "DMM"]


class GatedTransition(nn.Module):
    """p(z_t | z_{t-1}) = N(mu, sigma^2) with mu = (1 - g) * W z_{t-1} + g * m, g = sigmoid(MLP_g(z_{t-1})),
    m = MLP_m(z_{t-1}) and sigma = softplus(W_s relu(m)) (Krishnan et al. 2017, Sec. 5, "gated transition");
    W starts at the identity."""

    def __init__(self, z_dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = MLP(z_dim, [hidden], z_dim)
        self.proposed = MLP(z_dim, [hidden], z_dim)
        self.linear = nn.Linear(z_dim, z_dim)
        self.scale = nn.Linear(z_dim, z_dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(z_dim))
            self.linear.bias.zero_()

    def forward(self, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.sigmoid(self.gate(z_prev))  # (*lead, Dz)
        m = self.proposed(z_prev)
        loc = (1 - g) * self.linear(z_prev) + g * m
        return loc, F.softplus(self.scale(torch.relu(m))) + 1e-4


class Combiner(nn.Module):
    """q(z_t | z_{t-1}, x_{t:T}) = N(mu, sigma^2) from h = (tanh(W z_{t-1}) + h_t) / 2, h_t the backward RNN's
    summary of x_{t:T} (Krishnan et al. 2017, Sec. 4, the combiner function)."""

    def __init__(self, z_dim: int, rnn_dim: int) -> None:
        super().__init__()
        self.z_to_h = nn.Linear(z_dim, rnn_dim)
        self.loc = nn.Linear(rnn_dim, z_dim)
        self.scale = nn.Linear(rnn_dim, z_dim)

    def forward(self, z_prev: torch.Tensor, h_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = 0.5 * (torch.tanh(self.z_to_h(z_prev)) + h_t)  # (*lead, H)
        return self.loc(h), F.softplus(self.scale(h)) + 1e-4


class DMM(SequenceModel):
    """Deep Markov model on packed sequences (B, T, D + 1); one latent path "z" (T, D_z).

    transition(z_prev) -> (loc, scale); combiner(z_prev, h_t) -> (loc, scale); emitter(z_t) -> the likelihood's
    parameters for x_t; encoder(values, mask) -> h (B, T, H). Any modules with these signatures may replace them
    (the known-answer tests use a linear-Gaussian state space model).
    """

    def __init__(self, data_shape: Sequence[int], likelihood: Likelihood, z_dim: int = 100,
                 transition_dim: int = 200, emission_dim: int = 100, rnn_dim: int = 600, rnn_cell: str = "rnn",
                 act: str = "relu") -> None:
        super().__init__(data_shape, likelihood, z_dim)
        n_params = likelihood.params_per_channel * self.D
        self.emitter = MLP(z_dim, [emission_dim, emission_dim], n_params, act=act)
        self.transition = GatedTransition(z_dim, transition_dim)
        self.combiner = Combiner(z_dim, rnn_dim)
        self.encoder = BackwardRNN(self.D, rnn_dim, rnn_cell)
        self.z_0 = nn.Parameter(torch.zeros(z_dim))  # z_0 of p(z_1 | z_0)
        self.z_q_0 = nn.Parameter(torch.zeros(z_dim))  # z_0 the combiner sees at t = 1

    def _run(self, x: torch.Tensor, n_samples: int | None, sample: bool):
        """Steps 1..L (L the batch's longest sequence) along a path drawn from q (``sample``) or along q's means:
        (q_loc, q_scale, p_loc, p_scale, z), each (*lead, L, D_z)."""
        values, mask = split_steps(x)
        L = self.observed_steps(mask)
        h = self.encoder(values[:, :L], mask[:, :L])  # (B, L, H)
        lead = (x.shape[0],) if n_samples is None else (int(n_samples), x.shape[0])
        z_prev_p, z_prev_q = self.z_0.expand(*lead, -1), self.z_q_0.expand(*lead, -1)
        out: list[list[torch.Tensor]] = [[], [], [], [], []]
        for t in range(L):
            p_loc, p_scale = self.transition(z_prev_p)  # (*lead, Dz)
            q_loc, q_scale = self.combiner(z_prev_q, h[:, t])
            observed = mask[:, t, None] > 0  # (B, 1): a padded step takes q = p
            q_loc, q_scale = torch.where(observed, q_loc, p_loc), torch.where(observed, q_scale, p_scale)
            z = q_loc + q_scale * torch.randn_like(q_loc) if sample else q_loc
            for acc, v in zip(out, (q_loc, q_scale, p_loc, p_scale, z)):
                acc.append(v)
            z_prev_p = z_prev_q = z
        return [torch.stack(v, -2) for v in out]

    # -- the bound half -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, **options) -> ModelOutput:
        q_loc, q_scale, p_loc, p_scale, z = self._run(x, n_samples, sample=True)  # (*lead, L, Dz)
        q, p, z_full = self.padded_group(q_loc, q_scale, p_loc, p_scale, z)
        px = self.emission(self.pad_path(self.emitter(z), 0.0), split_steps(x)[1])
        return ModelOutput([LatentGroup("z", q, p, z_full)], px, 0 if n_samples is None else 1)

    # -- the uses half ------------------------------------------------------------------------------------
    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]:
        q_loc, q_scale, p_loc, p_scale, z = self._run(x, None, sample=False)
        return {"z": self.padded_group(q_loc, q_scale, p_loc, p_scale, z)[0]}

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        path = self._path(z)  # (*lead, T, Dz)
        prev = torch.cat([self.z_0.expand(*path.shape[:-2], 1, -1), path[..., :-1, :]], -2)
        return path_normal(*self.transition(prev))

    def group_from_units(self, name: str, u: torch.Tensor, z: Mapping[str, torch.Tensor]) -> torch.Tensor:
        z_prev, steps = self.z_0.expand(*u.shape[:-2], -1), []
        for t in range(self.T):
            loc, scale = self.transition(z_prev)
            z_prev = loc + scale * u[..., t, :]
            steps.append(z_prev)
        return torch.stack(steps, -2)

    def decode(self, z: Mapping[str, torch.Tensor] | torch.Tensor) -> Distribution:
        path = self._path(z)
        return self.emission(self.emitter(path), path.new_ones(self.T))
