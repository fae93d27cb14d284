"""The stochastic RNN (Fraccaro, Sønderby, Paquet & Winther 2016, "Sequential Neural Models with Stochastic
Layers", NeurIPS): a state space model stacked on a deterministic RNN.

Generative model (their Sec. 3, with u_t = x_{t-1} for sequence modelling): a GRU d_t = f(d_{t-1}, phi(x_{t-1}))
carries the observed past, the latent state follows p(z_t | z_{t-1}, d_t), and the emission is p(x_t | z_t, d_t).
Posterior (their Sec. 3, the smoothing variant): a backward GRU a_t = g(a_{t+1}, [d_t, phi(x_t)]) summarises the
past and x_{t:T}, and q(z_t | z_{t-1}, a_t) is Gaussian; with ``residual_posterior`` its mean is the prior's plus
a learned correction (their "Resq"). The bound is sum_t E_q[log p(x_t | z_t, d_t) - KL(q(z_t | z_{t-1}, a_t) ||
p(z_t | z_{t-1}, d_t))], the KL per step in closed form at the sampled z_{t-1}. phi is one net
for x_{t-1} and x_t (two layers), as in the paper's code. How the model speaks the contract:
``vaekit.models.sequences``.

Both RNNs run over whole sequences at once (d and a do not depend on z); only the latent chain is a time loop,
of two one-hidden-layer heads whose inputs from d_t and a_t are computed for all steps before it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.likelihoods.base import Likelihood
from vaekit.models.sequences import BackwardRNN, ObservedPastModel, split_steps
from vaekit.nn import MLP
from vaekit.nn.mlp import activation

__all__ = ["StepHead", "SRNN"]


class StepHead(nn.Module):
    """(loc, scale) of a Gaussian over z_t from z_{t-1} and a context c_t (d_t for the prior, a_t for the
    posterior): one hidden layer on [z_{t-1}, c_t]. ``context(c)`` projects all steps' contexts at once, so the
    time loop multiplies only z_{t-1}."""

    def __init__(self, z_dim: int, c_dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.from_c = nn.Linear(c_dim, hidden)
        self.from_z = nn.Linear(z_dim, hidden, bias=False)
        self.act = activation(act)
        self.out = nn.Linear(hidden, 2 * z_dim)

    def context(self, c: torch.Tensor) -> torch.Tensor:
        return self.from_c(c)  # (*, hidden)

    def forward(self, z_prev: torch.Tensor, c_proj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.out(self.act(self.from_z(z_prev) + c_proj)).chunk(2, -1)  # (*lead, Dz) each
        return loc, F.softplus(raw) + 1e-4


class SRNN(ObservedPastModel):
    """Stochastic RNN on packed sequences (B, T, D + 1); one latent path "z" (T, D_z).

    rnn_dim: the forward GRU's d_t and the backward GRU's a_t; hidden: the width of phi's two layers, of the
    prior and posterior heads and of the emission net's hidden layer (the paper's music setting: z 100, d and a
    300, hidden 500). ``emission_uses_d=False`` drops d_t from the emission, p(x_t | z_t): the latent path must
    then carry what the emission needs (on JSB Chorales the paper's emission lets the model ignore z and fit x_t
    from d_t alone, the KL falling to ~0: docs/results/sequences.md). ``dropout`` > 0 drops units, in training
    only, on the connections that do not recur (Zaremba et al. 2014; the paper's code has such switches, off by
    default): after phi's two layers, on d_t where the heads, the emission and the backward GRU read it, and
    after the emission net's hidden layer."""

    def __init__(self, data_shape: Sequence[int], likelihood: Likelihood, z_dim: int = 100, rnn_dim: int = 300,
                 hidden: int = 500, act: str = "relu", residual_posterior: bool = True, dropout: float = 0.0,
                 emission_uses_d: bool = True) -> None:
        super().__init__(data_shape, likelihood, z_dim)
        self.phi_x = MLP(self.D, [hidden], hidden, act=act, final_act=True, dropout=dropout)
        self.forward_rnn = nn.GRU(hidden, rnn_dim, batch_first=True)
        self.d0 = nn.Parameter(torch.zeros(rnn_dim))
        self.backward_rnn = BackwardRNN(rnn_dim + hidden, rnn_dim, "gru")
        self.prior = StepHead(z_dim, rnn_dim, hidden, act)
        self.post = StepHead(z_dim, rnn_dim, hidden, act)
        self.emission_uses_d = bool(emission_uses_d)
        self.dec = MLP(z_dim + (rnn_dim if emission_uses_d else 0), [hidden], likelihood.params_per_channel * self.D,
                       act=act, dropout=dropout)
        self.z0 = nn.Parameter(torch.zeros(z_dim))
        self.residual_posterior = bool(residual_posterior)
        self.drop = nn.Dropout(float(dropout)) if dropout > 0 else nn.Identity()

    def _past(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(d (B, L, H_d), phi(x) (B, L, H)) of observed steps values (B, L, D): d_t from x_{<t} (x_0 = 0)."""
        fx = self.drop(self.phi_x(values))  # (B, L, H)
        f0 = self.drop(self.phi_x(values.new_zeros(values.shape[0], 1, self.D)))  # (B, 1, H): phi of x_0 = 0
        h0 = self.d0.expand(1, values.shape[0], -1).contiguous()
        d, _ = self.forward_rnn(torch.cat([f0, fx[:, :-1]], 1), h0)
        return self.drop(d), fx

    def _emit(self, z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """The emission net's output from z_t and (if it reads it) d_t, any lead shape."""
        return self.dec(torch.cat([z, d], -1) if self.emission_uses_d else z)

    def _run(self, x: torch.Tensor, n_samples: int | None, sample: bool) -> list[torch.Tensor]:
        values, mask = split_steps(x)
        L = self.observed_steps(mask)
        d, fx = self._past(values[:, :L])  # steps after a sequence's length see its padding: never used there
        a = self.backward_rnn(torch.cat([d, fx], -1), mask[:, :L])  # (B, L, H_a)
        c_p, c_q = self.prior.context(d).unbind(1), self.post.context(a).unbind(1)  # L x (B, hidden)
        lead = (x.shape[0],) if n_samples is None else (int(n_samples), x.shape[0])
        z_prev = self.z0.expand(*lead, -1)
        out: list[list[torch.Tensor]] = [[], [], [], [], []]
        for t in range(L):
            p_loc, p_scale = self.prior(z_prev, c_p[t])  # (*lead, Dz)
            q_loc, q_scale = self.post(z_prev, c_q[t])
            if self.residual_posterior:
                q_loc = q_loc + p_loc
            observed = mask[:, t, None] > 0  # (B, 1): a padded step takes q = p
            q_loc, q_scale = torch.where(observed, q_loc, p_loc), torch.where(observed, q_scale, p_scale)
            z_prev = q_loc + q_scale * torch.randn_like(q_loc) if sample else q_loc
            for acc, v in zip(out, (q_loc, q_scale, p_loc, p_scale, z_prev)):
                acc.append(v)
        q_loc, q_scale, p_loc, p_scale, z = [torch.stack(v, -2) for v in out]  # (*lead, L, Dz)
        dec = self._emit(z, d.expand(*lead, -1, -1))  # (*lead, L, P)
        return [q_loc, q_scale, p_loc, p_scale, z, dec]

    def _generate(self, z: torch.Tensor | None, u: torch.Tensor | None) -> list[torch.Tensor]:
        given = z if z is not None else u
        lead = given.shape[:-2]
        n = lead.numel()
        h = self.d0.expand(1, n, -1).contiguous()  # (1, n, H_d)
        x_prev = self.z0.new_zeros(n, self.D)  # the model's dtype and device
        z_prev = self.z0.expand(n, -1)
        out: list[list[torch.Tensor]] = [[], [], [], []]
        for t in range(self.T):
            _, h = self.forward_rnn(self.drop(self.phi_x(x_prev))[:, None], h)
            d_t = self.drop(h[0])  # (n, H_d)
            p_loc, p_scale = self.prior(z_prev, self.prior.context(d_t))
            z_prev = (z[..., t, :].reshape(n, -1) if z is not None
                      else p_loc + p_scale * u[..., t, :].reshape(n, -1))
            dec = self._emit(z_prev, d_t)
            x_prev = self.likelihood.decoded(dec, dec.shape[:-1]).mean  # (n, D)
            for acc, v in zip(out, (p_loc, p_scale, z_prev, dec)):
                acc.append(v)
        return [torch.stack(v, -2).reshape(*lead, self.T, -1) for v in out]
