"""The deep Markov model (Krishnan, Shalit & Sontag 2017, "Structured Inference Networks for Nonlinear State Space
Models", AAAI): a nonlinear state space model p(x, z) = prod_t p(z_t | z_{t-1}) p(x_t | z_t) with the gated
transition of their Sec. 5 and an MLP emitter, and the structured posterior q(z_t | z_{t-1}, x_{t:T}) of their
Sec. 4 (the combiner of a backward RNN's summary of x_{t:T} with z_{t-1}, "ST-R"). The bound is their Eq. 6:
sum_t E_q[log p(x_t | z_t)] - E_q[KL(q(z_t | z_{t-1}, x_{t:T}) || p(z_t | z_{t-1}))], the KL per step in closed
form at the sampled z_{t-1}. How the model speaks the contract: ``vaekit.models.sequences``.

With ``iaf_steps`` K > 0 each step's Gaussian q(z_t | z_{t-1}, x_{t:T}) is pushed through K inverse
autoregressive flow steps over the D_z dimensions (Kingma et al. 2016, Eq. 10-11, in the LSTM-style update of
their Eq. 14, ``vaekit.posteriors.iaf.IAFStep``, orders alternating), as in Krishnan et al.'s and Pyro's DMM with
IAF: the transformed z_t feeds the next step, log q(z_t | .) = log N(z_t^0; mu_t, sigma_t) - sum_k sum_d
log sigma_{k,d}, and the KL becomes the Monte Carlo term log q(z) - log p(z) at the sampled path (a ``FlowPath``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Normal

from vaekit.likelihoods.base import Likelihood
from vaekit.models.contract import LatentGroup, ModelOutput
from vaekit.models.sequences import BackwardRNN, FlowPath, SequenceModel, path_normal, split_steps
from vaekit.nn import MLP
from vaekit.posteriors.iaf import IAFStep

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
    (the known-answer tests use a linear-Gaussian state space model). iaf_steps: K IAF steps on each step's
    posterior (0: the Gaussian combiner alone), each a MADE of one hidden layer of width iaf_dim (Pyro's
    ``--num-iafs``, ``--iaf-dim``).
    """

    def __init__(self, data_shape: Sequence[int], likelihood: Likelihood, z_dim: int = 100,
                 transition_dim: int = 200, emission_dim: int = 100, rnn_dim: int = 600, rnn_cell: str = "rnn",
                 act: str = "relu", iaf_steps: int = 0, iaf_dim: int = 100) -> None:
        super().__init__(data_shape, likelihood, z_dim)
        if iaf_steps < 0 or iaf_dim < 1:
            raise ValueError(f"the DMM needs iaf_steps >= 0 and iaf_dim >= 1, got {iaf_steps} and {iaf_dim}")
        n_params = likelihood.params_per_channel * self.D
        self.emitter = MLP(z_dim, [emission_dim, emission_dim], n_params, act=act)
        self.transition = GatedTransition(z_dim, transition_dim)
        self.combiner = Combiner(z_dim, rnn_dim)
        self.encoder = BackwardRNN(self.D, rnn_dim, rnn_cell)
        self.z_0 = nn.Parameter(torch.zeros(z_dim))  # z_0 of p(z_1 | z_0)
        self.z_q_0 = nn.Parameter(torch.zeros(z_dim))  # z_0 the combiner sees at t = 1
        orders = (list(range(z_dim)), list(range(z_dim))[::-1])
        self.iafs = nn.ModuleList(IAFStep(z_dim, [iaf_dim], 0, orders[k % 2]) for k in range(int(iaf_steps)))

    def flow(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_t^0 (*lead, D_z) through the IAF steps: (z_t^K, sum_k log sigma_k per dimension (*lead, D_z))."""
        log_det = torch.zeros_like(z)
        for step in self.iafs:
            z, log_sigma = step.step(z, None)
            log_det = log_det + log_sigma
        return z, log_det

    def _run(self, x: torch.Tensor, n_samples: int | None, sample: bool):
        """Steps 1..L (L the batch's longest sequence) along a path drawn from q (``sample``) or along q's means:
        (q_loc, q_scale, p_loc, p_scale, z), each (*lead, L, D_z), and with IAF steps log q(z_t | .) (*lead, L)
        (else None). q_loc, q_scale are the base Gaussian's; z is the flow's output (a padded step: no flow)."""
        values, mask = split_steps(x)
        L = self.observed_steps(mask)
        # the steps as views of one unbind: its backward stacks the L gradients once, where indexing h[:, t] would
        # fill and add a zero (B, L, H) tensor per step (quadratic in L)
        h = self.encoder(values[:, :L], mask[:, :L]).unbind(1)  # L x (B, H)
        lead = (x.shape[0],) if n_samples is None else (int(n_samples), x.shape[0])
        z_prev_p, z_prev_q = self.z_0.expand(*lead, -1), self.z_q_0.expand(*lead, -1)
        out: list[list[torch.Tensor]] = [[], [], [], [], [], []]
        for t in range(L):
            p_loc, p_scale = self.transition(z_prev_p)  # (*lead, Dz)
            q_loc, q_scale = self.combiner(z_prev_q, h[t])
            observed = mask[:, t, None] > 0  # (B, 1): a padded step takes q = p
            q_loc, q_scale = torch.where(observed, q_loc, p_loc), torch.where(observed, q_scale, p_scale)
            z = q_loc + q_scale * torch.randn_like(q_loc) if sample else q_loc
            if self.iafs:  # log q(z_t) = log N(z^0; q) - sum log sigma, the flow skipped at a padded step
                log_q = Normal(q_loc, q_scale).log_prob(z)  # (*lead, Dz)
                z_k, log_det = self.flow(z)
                z = torch.where(observed, z_k, z)
                out[5].append((log_q - torch.where(observed, log_det, torch.zeros_like(log_det))).sum(-1))
            for acc, v in zip(out, (q_loc, q_scale, p_loc, p_scale, z)):
                acc.append(v)
            z_prev_p = z_prev_q = z
        return [torch.stack(v, -2) for v in out[:5]] + [torch.stack(out[5], -1) if self.iafs else None]

    def _flow_path(self, x: torch.Tensor, n_samples: int | None):
        """(z (*lead, T, Dz), log q(z_t | .) (*lead, T), p, L) of one path drawn through the IAF steps; beyond
        the batch's longest sequence (L steps) q = p = N(0, 1) and z = 0, as in ``padded_group``."""
        q_loc, q_scale, p_loc, p_scale, z, log_q = self._run(x, n_samples, sample=True)
        _, p, z_full = self.padded_group(q_loc, q_scale, p_loc, p_scale, z)
        beyond = p.base_dist.log_prob(z_full)[..., z.shape[-2]:, :].sum(-1)  # (*lead, T - L)
        return z_full, torch.cat([log_q, beyond], -1), p, z

    def _draw(self, x: torch.Tensor, sample_shape: torch.Size):
        """``FlowPath.draw``: paths (*S, B, T, Dz) and their log q per step (*S, B, T), one sample axis at most."""
        if len(sample_shape) > 1:
            raise ValueError(f"draws of a DMM's flow path take one sample axis, got {tuple(sample_shape)}")
        z, log_q, _, _ = self._flow_path(x, int(sample_shape[0]) if sample_shape else None)
        return z, log_q

    # -- the bound half -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, **options) -> ModelOutput:
        if self.iafs:
            z_full, log_q, p, z = self._flow_path(x, n_samples)  # (*lead, T, Dz), (*lead, T), z: (*lead, L, Dz)
            q = FlowPath(z_full, log_q, lambda shape: self._draw(x, shape), z_full.shape[:-2], z_full.shape[-2:])
            group = LatentGroup("z", q, p, z_full, log_q=log_q.sum(-1))
        else:
            q_loc, q_scale, p_loc, p_scale, z, _ = self._run(x, n_samples, sample=True)  # (*lead, L, Dz)
            q, p, z_full = self.padded_group(q_loc, q_scale, p_loc, p_scale, z)
            group = LatentGroup("z", q, p, z_full)
        px = self.emission(self.pad_path(self.emitter(z), 0.0), split_steps(x)[1])
        return ModelOutput([group], px, 0 if n_samples is None else 1)

    # -- the uses half ------------------------------------------------------------------------------------
    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]:
        """q(z | x): along the mean pass for the Gaussian posterior; with IAF steps a ``FlowPath`` whose mean and
        s.d. the uses estimate from draws."""
        if self.iafs:
            shape = torch.Size((x.shape[0], self.T, self.z_dim))
            return {"z": FlowPath(None, None, lambda s: self._draw(x, s), shape[:1], shape[1:])}
        q_loc, q_scale, p_loc, p_scale, z, _ = self._run(x, None, sample=False)
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
