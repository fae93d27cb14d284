"""A VAE with discrete latents: N categorical variables of K values (or N Bernoulli bits), trained through the
Gumbel-softmax relaxation (Jang et al. 2017; Maddison et al. 2017; ``vaekit.posteriors.relaxed``) against a
uniform prior, with the exact categorical KL.

The temperature is annealed over training steps: tau_t = tau_0 (tau_min / tau_0)^min(1, t / anneal_steps)
(an exponential decay from tau_0 to tau_min, as in Jang et al. 2017, Sec. 4, "tau = max(0.5, exp(-r t))"). The
step t is the count of training forwards with gradients (one per optimiser step for the ELBO), a buffer saved in
checkpoints, so a resumed run continues the schedule. Without gradients the latents are exact one-hot draws
(the discrete model's ELBO and log p(x)).

The one group "z" has event shape (N, K) of one-hot values ("discrete" in the layout); a Bernoulli latent is a
categorical of K = 2 whose decoder sees the bit (the second value). Uses that need continuous latents (traversals,
embeddings, restoration) refuse in one line through the 'continuous' capability.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.distributions import Distribution

from vaekit.likelihoods.base import Likelihood
from vaekit.models.contract import DISCRETE, DISCRETE_DATA, GroupLayout, LatentGroup, LatentLayout, ModelOutput
from vaekit.models.uses import LatentUsesMixin
from vaekit.models.vae import decoder_precision
from vaekit.nn import MLP
from vaekit.posteriors.relaxed import GumbelSoftmax, categorical_prior
from vaekit.utils import full_precision

__all__ = ["DiscreteVAE", "annealed_temperature"]


def annealed_temperature(step: int, tau0: float, tau_min: float, anneal_steps: int) -> float:
    """tau_0 (tau_min / tau_0)^min(1, step / anneal_steps); tau_0 throughout when anneal_steps is 0."""
    if anneal_steps <= 0:
        return float(tau0)
    frac = min(1.0, step / anneal_steps)
    return float(tau0 * math.exp(frac * math.log(tau_min / tau0)))


class DiscreteVAE(LatentUsesMixin, nn.Module):
    """MLP encoder x -> logits (N, K), decoder one-hot z (N, K) (or bits (N,) for Bernoulli) -> p(x|z)."""

    def __init__(self, data_shape: Sequence[int], likelihood: Likelihood, n_latents: int, categories: int,
                 hidden: Sequence[int], act: str = "relu", bernoulli: bool = False, temperature: float = 1.0,
                 min_temperature: float = 0.5, anneal_steps: int = 0, straight_through: bool = False) -> None:
        super().__init__()
        if bernoulli and categories != 2:
            raise ValueError(f"Bernoulli latents have 2 values; got categories={categories}")
        if not 0 < min_temperature <= temperature:
            raise ValueError(f"the temperatures need 0 < min_temperature <= temperature, got {min_temperature} "
                             f"and {temperature}")
        self.data_shape = tuple(int(s) for s in data_shape)
        self.n, self.k, self.bernoulli = int(n_latents), int(categories), bool(bernoulli)
        self.latent_dim = self.n * self.k
        self.tau0, self.tau_min, self.anneal_steps = float(temperature), float(min_temperature), int(anneal_steps)
        self.straight_through = bool(straight_through)
        hidden = list(hidden)
        self.encoder = MLP(self.data_shape, hidden, self.n * self.k, act=act)
        self.decoder = MLP(self.n if self.bernoulli else self.n * self.k, hidden[::-1],
                           likelihood.params_per_channel * math.prod(self.data_shape), act=act)
        self.likelihood = likelihood
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))

    @property
    def temperature(self) -> float:
        """The relaxation's temperature at the current training step."""
        return annealed_temperature(int(self.steps_seen), self.tau0, self.tau_min, self.anneal_steps)

    # -- the bound half ------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> GumbelSoftmax:
        logits = full_precision(self.encoder(x)).unflatten(-1, (self.n, self.k))  # (B, N, K)
        return GumbelSoftmax(logits, self.temperature, self.straight_through)

    def prior(self) -> Distribution:
        """The uniform prior over the N variables (on the model's device, in its dtype)."""
        return categorical_prior(self.n, self.k, next(self.parameters()))

    def decoded(self, z: torch.Tensor, decoder_dtype: torch.dtype | None = None) -> Distribution:
        """p(x|z) for one-hot (or relaxed) z (*lead, N, K), the likelihood's lazy Distribution."""
        inp = z[..., 1] if self.bernoulli else z.flatten(-2)  # (*lead, N) or (*lead, N K)
        with decoder_precision(z, decoder_dtype):
            h = self.decoder(inp)
        if h.dtype != z.dtype:
            h = h.to(z.dtype)
        return self.likelihood.decoded(full_precision(h), z.shape[:-2])

    def forward(self, x: torch.Tensor, n_samples: int | None = 1, *, posterior: Distribution | None = None,
                decoder_dtype: torch.dtype | None = None) -> ModelOutput:
        """The group "z" (q, the uniform prior, relaxed or one-hot samples) and p(x|z)."""
        if self.training and torch.is_grad_enabled():
            self.steps_seen += 1  # the annealing schedule's clock
        q = self.encode(x) if posterior is None else posterior
        shape = () if n_samples is None else (int(n_samples),)
        z = q.rsample(shape)  # (*S, B, N, K)
        g = LatentGroup("z", q, self.prior(), z)
        return ModelOutput([g], self.decoded(z, decoder_dtype), 0 if n_samples is None else 1)

    def check_input(self, x: torch.Tensor) -> None:
        self.likelihood.check_batch(x)

    def extra_stats(self) -> dict[str, float]:
        return {**self.likelihood.stats(), "temperature": self.temperature}

    # -- the uses half -------------------------------------------------------------------------------------
    @property
    def layout(self) -> LatentLayout:
        return LatentLayout((GroupLayout("z", (self.n, self.k), kind="discrete"),))

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {DISCRETE}
        if self.likelihood.discrete:
            caps.add(DISCRETE_DATA)
        return frozenset(caps)

    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None) -> dict[str, Distribution]:
        return {"z": self.encode(x)}

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        return self.prior()

    def decode(self, z: torch.Tensor | Mapping[str, torch.Tensor]) -> Distribution:
        return self.decoded(z["z"] if isinstance(z, Mapping) else z).full
