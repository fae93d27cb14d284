"""What the sequence families share: packed sequences with their step mask, the masked emission p(x_{1:T} | .),
the backward RNN over x_{t:T}, and the base class that speaks both halves of the contract.

How a sequence model speaks the contract (no sequence-specific code in the trainer, evaluator or apps):

- Data: one tensor (B, T, D + 1) per batch, the last feature the step mask (1 at observed steps, 0 at padding;
  ``vaekit.data.sequences``), so a batch carries its lengths. The data shape is (T, D + 1).
- Latents: one group "z" of event shape (T, D_z). Its q and p are ``Independent(Normal, 2)`` over (T, D_z) whose
  parameters at step t were computed at the sampled z_{t-1} (the path the sample took): log q(z) - log p(z) is
  then the exact log-ratio of the sequential densities, and ``kl_divergence(q, p)`` is the sum over steps of the
  per-step Gaussian KLs at the sampled past — the analytic KL per step of Krishnan et al. (2017), Eq. 6.
- Padding: at a padded step q's parameters are p's, so its KL and its log q - log p are exactly 0, and the
  emission's log-density is multiplied by the mask: padded steps contribute nothing.
- A posterior without a closed-form KL (the DMM's steps pushed through IAF): q is a ``FlowPath`` that keeps
  log q(z_t | z_{t-1}, x) per step at its own sample; the group carries their sum as ``log_q``, so the objective
  takes the Monte Carlo KL log q(z) - log p(z) on that sample as for any flow, and a padded step (q = p there,
  no flow) adds exactly 0.
- Per-step terms: ``position_terms(x, out)`` splits the negative ELBO of one forward pass over the steps,
  -log p(x_t | z_t) + KL_t (NaN at padded steps), and ``observed_units(x)`` counts the observed steps and values
  of each sequence (``vaekit anomaly``'s per-step scores, ``vaekit evaluate``'s nats per step).
- Uses: ``group_prior("z", z)`` is p(z_t | past) at the given path, all steps at once; ``group_from_units`` maps
  prior units u (T, D_z) to a path step by step (z_t = mu_p(past) + sigma_p(past) u_t), which ancestral sampling
  and the prior-unit figures use for a group whose prior depends on its own earlier steps.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from vaekit.likelihoods.base import Likelihood
from vaekit.models.contract import (CONTINUOUS, DISCRETE_DATA, GAUSSIAN_PRIOR, GroupLayout, LatentGroup, LatentLayout,
                                   ModelOutput)
from vaekit.models.uses import LatentUsesMixin

__all__ = ["split_steps", "SequenceEmission", "BackwardRNN", "SequenceModel", "ObservedPastModel", "path_normal",
           "FlowPath"]


def split_steps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values (B, T, D), mask (B, T)) of packed sequences x (B, T, D + 1)."""
    return x[..., :-1], x[..., -1]


def path_normal(loc: torch.Tensor, scale: torch.Tensor) -> Independent:
    """Independent(Normal) over the last two axes (T, D_z): a latent path's per-step Gaussians."""
    return Independent(Normal(loc, scale), 2)


class _MaskedSteps(Distribution):
    """The elementwise view of ``SequenceEmission``: batch (*lead, T, D + 1); the mask feature is given, not
    modelled (log-density 0, its mean the mask)."""

    arg_constraints: dict = {}

    def __init__(self, steps: Distribution, mask: torch.Tensor) -> None:
        self.steps, self.mask = steps, mask  # batch (*lead, T) event (D,); (*lead, T)
        super().__init__(torch.Size((*steps.batch_shape, steps.event_shape[0] + 1)), validate_args=False)

    def _pack(self, v: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        m = self.mask.unsqueeze(-1)  # (*lead, T, 1)
        return torch.cat([v * m, last.expand(*v.shape[:-1], 1)], -1)

    @property
    def mean(self) -> torch.Tensor:
        return self._pack(self.steps.mean, self.mask.unsqueeze(-1))

    @property
    def variance(self) -> torch.Tensor:
        return self._pack(self.steps.variance, torch.zeros_like(self.mask).unsqueeze(-1))

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        s = self.steps.sample(sample_shape)  # (*S, *lead, T, D)
        return self._pack(s, self.mask.unsqueeze(-1).expand(*s.shape[:-1], 1))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        lp = self.steps.base_dist.log_prob(value[..., :-1]) * self.mask.unsqueeze(-1)  # (*lead, T, D)
        return torch.cat([lp, torch.zeros_like(lp[..., :1])], -1)


class SequenceEmission(Independent):
    """p(x_{1:T} | .) over packed sequences (T, D + 1): the per-step emission p(x_t | .) (a likelihood's
    distribution, batch (*lead, T), event (D,)) at the observed steps; padded steps and the mask feature add 0.
    ``log_prob`` takes the likelihood's direct form (the training path); the rest is elementwise."""

    def __init__(self, steps: Distribution, mask: torch.Tensor) -> None:
        self.steps, self.mask = steps, mask
        super().__init__(_MaskedSteps(steps, mask), 2, validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return (self.steps.log_prob(value[..., :-1]) * self.mask).sum(-1)  # (*lead,)


class BackwardRNN(nn.Module):
    """h_t = RNN(x_t, h_{t+1}) run from each sequence's last observed step back to its first: h_t summarises
    x_{t:T} (Krishnan et al. 2017, Sec. 4, the "ST-R" inference network). Each sequence is reversed within its
    length, so its padding comes after its steps and never reaches them; the RNN runs on the padded tensor (on CPU
    a packed sequence's backward costs a (sum of lengths, H) fill and add per step, quadratic in T)."""

    def __init__(self, d_in: int, hidden: int, cell: str = "rnn") -> None:
        super().__init__()
        self.rnn = (nn.GRU(d_in, hidden, batch_first=True) if cell == "gru" else
                    nn.RNN(d_in, hidden, nonlinearity="relu", batch_first=True))
        self.h0 = nn.Parameter(torch.zeros(1, 1, hidden))

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, _ = values.shape
        lengths = mask.sum(1).long().clamp(min=1)  # (B,)
        t = torch.arange(T, device=values.device)
        idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T): reverse within the length
        rev = values.gather(1, idx.unsqueeze(-1).expand_as(values))
        out, _ = self.rnn(rev, self.h0.expand(1, B, -1).contiguous())  # (B, T, H)
        out = out * (t < lengths[:, None]).unsqueeze(-1).to(out.dtype)  # zeros at the padding
        return out.gather(1, idx.unsqueeze(-1).expand_as(out))


class FlowPath(Distribution):
    """q(z_{1:T} | x) of a latent path whose steps are flows (no closed form): batch lead, event (T, D_z).

    z (*lead, T, D_z) and log_q_steps (*lead, T): the path drawn in the forward pass and log q(z_t | z_{t-1}, x)
    at it, step by step (None for a posterior built for the uses only); draw(sample_shape) -> (z (*S, *lead, T,
    D_z), log_q_steps (*S, *lead, T)) draws new paths with the model's networks. ``log_prob`` is known only at the
    drawn path (another path would need the networks run along it); ``mean`` and ``stddev`` have no closed form
    (``vaekit.models.uses`` then averages draws).
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, z: torch.Tensor | None, log_q_steps: torch.Tensor | None, draw, batch_shape: torch.Size,
                 event_shape: torch.Size) -> None:
        self.z, self.log_q_steps, self.draw = z, log_q_steps, draw
        super().__init__(batch_shape, event_shape, validate_args=False)

    def rsample_and_log_prob(self, sample_shape: torch.Size | tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
        z, steps = self.draw(torch.Size(sample_shape))
        return z, steps.sum(-1)

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.draw(torch.Size(sample_shape))[0]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self.z is not None and value is self.z:
            return self.log_q_steps.sum(-1)  # (*lead,)
        raise NotImplementedError("log q of a flow path is known at the path drawn with it only (the group's "
                                  "log_q); draw paths with rsample_and_log_prob")

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError("the mean of a flow path has no closed form; average rsample() draws")

    @property
    def stddev(self) -> torch.Tensor:
        raise NotImplementedError("the s.d. of a flow path has no closed form; use rsample() draws")


class SequenceModel(LatentUsesMixin, nn.Module):
    """Base of the sequence families: the data layout (T, D + 1), one latent path "z" (T, D_z), the masked
    emission, input checks and the uses' layout. Subclasses implement ``forward``, ``posteriors``,
    ``group_prior``, ``group_from_units`` and ``decode``."""

    def __init__(self, data_shape: Sequence[int], likelihood: Likelihood, z_dim: int) -> None:
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        if len(self.data_shape) != 2 or self.data_shape[1] < 2:
            raise ValueError(f"a sequence model needs data of shape (T, D + 1) (steps, features and the step mask "
                             f"last), got {self.data_shape}; load a sequence dataset (jsb-chorales, moving-mnist, "
                             f"sines, sequences)")
        self.T, self.D = self.data_shape[0], self.data_shape[1] - 1
        if likelihood.data_shape != (self.D,):
            raise ValueError(f"the emission must be over one step ({self.D},), got {likelihood.data_shape}")
        self.likelihood, self.z_dim = likelihood, int(z_dim)
        self.latent_dim = self.T * self.z_dim

    # -- shared pieces ------------------------------------------------------------------------------------
    def emission(self, h: torch.Tensor, mask: torch.Tensor) -> SequenceEmission:
        """p(x | .) from emitter outputs h (*lead, T, P) and the step mask (broadcastable to (*lead, T))."""
        lead = h.shape[:-1]
        return SequenceEmission(self.likelihood.decoded(h, lead), mask.to(h.dtype).expand(lead))

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"data of shape {tuple(x.shape[1:])} per example does not fit a sequence model built "
                             f"for {self.data_shape} (T steps, D features and the step mask)")
        values, mask = split_steps(x.detach())
        if not bool(((mask == 0) | (mask == 1)).all()) or bool((mask[:, 1:] > mask[:, :-1]).any()) \
                or bool((mask[:, 0] == 0).any()):
            raise ValueError("the last feature of sequence data must be the step mask: 1 for the observed steps, "
                             "then 0 for the padding, at least one step per sequence; pack with "
                             "vaekit.data.sequences.pack_sequences")
        self.likelihood.check(values[mask > 0].reshape(-1, self.D))

    def extra_stats(self) -> dict[str, float]:
        return self.likelihood.stats()

    def pad_path(self, v: torch.Tensor, fill: float) -> torch.Tensor:
        """(*lead, L, K) -> (*lead, T, K), steps L..T-1 set to ``fill`` (beyond every sequence of the batch)."""
        if v.shape[-2] == self.T:
            return v
        pad = v.new_full((*v.shape[:-2], self.T - v.shape[-2], v.shape[-1]), fill)
        return torch.cat([v, pad], -2)

    def padded_group(self, q_loc, q_scale, p_loc, p_scale, z):
        """q, p and z over all T steps from the first L: beyond them q = p = N(0, 1) and z = 0, so those steps
        add exactly 0 to the KL and to log q - log p."""
        q = path_normal(self.pad_path(q_loc, 0.0), self.pad_path(q_scale, 1.0))
        p = path_normal(self.pad_path(p_loc, 0.0), self.pad_path(p_scale, 1.0))
        return q, p, self.pad_path(z, 0.0)

    @staticmethod
    def observed_steps(mask: torch.Tensor) -> int:
        """The longest sequence of the batch: steps after it are padding everywhere."""
        return int(mask.sum(1).max())

    # -- per-step terms (optional contract hooks) ----------------------------------------------------------
    def position_terms(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        """(*lead, T) the negative ELBO of ``out`` (this model's forward pass on x) split over the steps:
        -log p(x_t | z_t) + KL_t in nats, NaN at padded steps. KL_t is the closed-form Gaussian KL of step t at
        the sampled past (Krishnan et al. 2017, Eq. 6) or, for a ``FlowPath``, log q(z_t | .) - log p(z_t | z_{t-1})
        at the sample: the objective's KL split by step, so the observed steps sum to the sample's -ELBO."""
        values, mask = split_steps(x)  # (B, T, D), (B, T)
        log_px = out.px.steps.log_prob(values) * out.px.mask  # (*lead, T)
        g = out.groups[0]
        if isinstance(g.q, FlowPath):
            kl = g.q.log_q_steps - g.p.base_dist.log_prob(g.z).sum(-1)  # (*lead, T)
        else:
            kl = kl_divergence(g.q.base_dist, g.p.base_dist).sum(-1)  # (*lead, T)
        return torch.where(mask > 0, kl - log_px, torch.full_like(log_px, float("nan")))

    def observed_units(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(observed steps (B,), observed values (B,)) of packed sequences x: the step mask's sum, times D."""
        steps = split_steps(x)[1].sum(1)  # (B,)
        return steps, steps * self.D

    # -- the uses half ------------------------------------------------------------------------------------
    @property
    def layout(self) -> LatentLayout:
        return LatentLayout((GroupLayout("z", (self.T, self.z_dim)),))

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({CONTINUOUS, GAUSSIAN_PRIOR} | ({DISCRETE_DATA} if self.likelihood.discrete else set()))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z) at the posterior's mean path, with x's own step mask (zeros after each length)."""
        from vaekit.models.uses import posterior_means

        return self.decode(posterior_means(self, x)).mean * split_steps(x)[1].unsqueeze(-1)

    def _path(self, z: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        return z["z"] if isinstance(z, Mapping) else z


class ObservedPastModel(SequenceModel):
    """Base of the families whose prior and emission at step t also depend on the observed past x_{<t} through a
    recurrent state (the VRNN, the SRNN). Subclasses implement

    - ``_run(x, n_samples, sample)`` -> (q_loc, q_scale, p_loc, p_scale, z, emitter output), each (*lead, L, .):
      steps 1..L on the observed x along a path drawn from q (``sample``) or along q's means, q = p at padded steps;
    - ``_generate(z, u)`` -> (p_loc, p_scale, z, emitter output), each (*lead, T, .): the generative recurrence
      without x (x_t = the emission's mean) at a given path z, or solving the path from prior units u.

    The uses half (no x) runs ``_generate``: ``decode``, ``group_prior`` and ``group_from_units`` see the past as
    the model's own mean predictions."""

    def _run(self, x: torch.Tensor, n_samples: int | None, sample: bool) -> list[torch.Tensor]:
        raise NotImplementedError

    def _generate(self, z: torch.Tensor | None, u: torch.Tensor | None) -> list[torch.Tensor]:
        raise NotImplementedError

    # -- the bound half -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, **options) -> ModelOutput:
        q_loc, q_scale, p_loc, p_scale, z, dec = self._run(x, n_samples, sample=True)
        q, p, z_full = self.padded_group(q_loc, q_scale, p_loc, p_scale, z)
        px = self.emission(self.pad_path(dec, 0.0), split_steps(x)[1])
        return ModelOutput([LatentGroup("z", q, p, z_full)], px, 0 if n_samples is None else 1)

    # -- the uses half ------------------------------------------------------------------------------------
    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]:
        q_loc, q_scale, p_loc, p_scale, z, _ = self._run(x, None, sample=False)
        return {"z": self.padded_group(q_loc, q_scale, p_loc, p_scale, z)[0]}

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        p_loc, p_scale, _, _ = self._generate(self._path(z), None)
        return path_normal(p_loc, p_scale)

    def group_from_units(self, name: str, u: torch.Tensor, z: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._generate(None, u)[2]

    def decode(self, z: Mapping[str, torch.Tensor] | torch.Tensor) -> Distribution:
        path = self._path(z)
        dec = self._generate(path, None)[3]
        return self.emission(dec, path.new_ones(self.T))
