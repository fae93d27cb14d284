"""The variational RNN (Chung et al. 2015, "A Recurrent Latent Variable Model for Sequential Data", NeurIPS).

A GRU state h_t = f(phi_x(x_t), phi_z(z_t), h_{t-1}) (their Eq. 7) carries the past; each step has the prior
p(z_t | h_{t-1}) (Eq. 5), the emission p(x_t | z_t, h_{t-1}) (Eq. 6) and the posterior q(z_t | x_t, h_{t-1})
(Eq. 9). The bound is their Eq. 10, sum_t E_q[log p(x_t | z_t, h_{t-1}) - KL(q(z_t | .) || p(z_t | h_{t-1}))]
with the KL per step in closed form at the sampled past. How the model speaks the contract:
``vaekit.models.sequences``.

For the uses half (no x), the state is driven by the emission's means (``ObservedPastModel``): ``decode``,
``group_prior`` and ``group_from_units`` run the generative recurrence with x_t = E[x_t | z_t, h_{t-1}].
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.likelihoods.base import Likelihood
from vaekit.models.sequences import ObservedPastModel, split_steps
from vaekit.nn import MLP

__all__ = ["VRNN"]


class VRNN(ObservedPastModel):
    """Variational RNN on packed sequences (B, T, D + 1); one latent path "z" (T, D_z).

    ``dropout`` > 0 drops units after the hidden layers of phi_x and of the emission net, in training mode only
    (Srivastava et al. 2014). On JSB Chorales it slowed learning without narrowing the train/validation gap
    (docs/results/sequences.md)."""

    def __init__(self, data_shape: Sequence[int], likelihood: Likelihood, z_dim: int = 16, rnn_dim: int = 128,
                 hidden: int = 128, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__(data_shape, likelihood, z_dim)
        self.phi_x = MLP(self.D, [hidden], hidden, act=act, final_act=True, dropout=dropout)
        self.phi_z = MLP(z_dim, [], hidden, act=act, final_act=True)
        self.prior = MLP(rnn_dim, [hidden], 2 * z_dim, act=act)
        self.enc = MLP(hidden + rnn_dim, [hidden], 2 * z_dim, act=act)
        self.dec = MLP(hidden + rnn_dim, [hidden], likelihood.params_per_channel * self.D, act=act, dropout=dropout)
        self.cell = nn.GRUCell(2 * hidden, rnn_dim)
        self.h0 = nn.Parameter(torch.zeros(rnn_dim))

    @staticmethod
    def _gauss(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = params.chunk(2, -1)
        return loc, F.softplus(raw) + 1e-4

    def _step(self, h: torch.Tensor, fx: torch.Tensor, fz: torch.Tensor) -> torch.Tensor:
        """h_t = GRU([phi_x(x_t), phi_z(z_t)], h_{t-1}) for any lead shape."""
        lead = h.shape[:-1]
        inp = torch.cat([fx.expand(*lead, -1), fz], -1)
        return self.cell(inp.reshape(-1, inp.shape[-1]), h.reshape(-1, h.shape[-1])).reshape(*lead, -1)

    def _run(self, x: torch.Tensor, n_samples: int | None, sample: bool):
        """Steps 1..L on the observed x along a path drawn from q (``sample``) or along q's means:
        (q_loc, q_scale, p_loc, p_scale, z (*lead, L, D_z), emitter output (*lead, L, P))."""
        values, mask = split_steps(x)
        L = self.observed_steps(mask)
        fx_all = self.phi_x(values[:, :L]).unbind(1)  # L x (B, Hx): one unbind, not a (B, L, Hx) gradient per step
        lead = (x.shape[0],) if n_samples is None else (int(n_samples), x.shape[0])
        h = self.h0.expand(*lead, -1)
        out: list[list[torch.Tensor]] = [[], [], [], [], [], []]
        for t in range(L):
            fx = fx_all[t]  # (B, Hx)
            p_loc, p_scale = self._gauss(self.prior(h))  # (*lead, Dz)
            q_loc, q_scale = self._gauss(self.enc(torch.cat([fx.expand(*lead, -1), h], -1)))
            observed = mask[:, t, None] > 0  # (B, 1): a padded step takes q = p
            q_loc, q_scale = torch.where(observed, q_loc, p_loc), torch.where(observed, q_scale, p_scale)
            z = q_loc + q_scale * torch.randn_like(q_loc) if sample else q_loc
            fz = self.phi_z(z)
            dec = self.dec(torch.cat([fz, h], -1))
            for acc, v in zip(out, (q_loc, q_scale, p_loc, p_scale, z, dec)):
                acc.append(v)
            h = self._step(h, fx, fz)
        return [torch.stack(v, -2) for v in out]

    def _generate(self, z: torch.Tensor | None, u: torch.Tensor | None):
        """The generative recurrence without x (x_t = the emission's mean) at a given path z, or solving the path
        from prior units u: (p_loc, p_scale, z, emitter output), each (*lead, T, .)."""
        given = z if z is not None else u
        h = self.h0.expand(*given.shape[:-2], -1)
        out: list[list[torch.Tensor]] = [[], [], [], []]
        for t in range(self.T):
            p_loc, p_scale = self._gauss(self.prior(h))
            z_t = z[..., t, :] if z is not None else p_loc + p_scale * u[..., t, :]
            fz = self.phi_z(z_t)
            dec = self.dec(torch.cat([fz, h], -1))
            x_t = self.likelihood.decoded(dec, dec.shape[:-1]).mean  # (*lead, D)
            for acc, v in zip(out, (p_loc, p_scale, z_t, dec)):
                acc.append(v)
            h = self._step(h, self.phi_x(x_t), fz)
        return [torch.stack(v, -2) for v in out]
