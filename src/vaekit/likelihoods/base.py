"""The likelihood contract: ``module(h) -> Distribution over x``.

A decoder net produces ``h`` of shape ``(*batch, k * C, H, W)`` for images or ``(*batch, k * D)`` for vectors,
where ``k = params_per_channel`` (1 for Bernoulli, 2 for a Gaussian with per-pixel scale, ...). The likelihood
splits ``h`` along the channel axis (``-len(data_shape)``) and returns a Distribution with
``batch_shape = h.shape[:-len(data_shape)]`` and ``event_shape = data_shape``, so ``log_prob(x)`` is summed
over every data dimension (nats per example).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.distributions import Distribution

__all__ = ["Likelihood", "Decoded", "check_finite"]


def check_finite(x: torch.Tensor, what: str = "data") -> None:
    """Raise a clear ValueError if x holds NaN or inf."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains NaN or inf values; clean or impute it before training")


class Likelihood(nn.Module):
    """Base class of p(x|z) heads. Subclasses set ``params_per_channel`` and implement ``forward``."""

    params_per_channel: int = 1
    #: closed interval the data must lie in, or None for the whole real line
    support: tuple[float, float] | None = None
    #: True when the data are discrete (bits/dim then needs no dequantisation correction)
    discrete: bool = False

    def __init__(self, data_shape: Sequence[int]) -> None:
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        self.event_dim = len(self.data_shape)

    @property
    def param_shape(self) -> tuple[int, ...]:
        """Shape of the decoder output h for one example: data_shape with the first axis multiplied by k."""
        return (self.params_per_channel * self.data_shape[0], *self.data_shape[1:])

    def split(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Split h into ``params_per_channel`` tensors shaped (*batch, *data_shape)."""
        if tuple(h.shape[-self.event_dim:]) != self.param_shape:
            raise ValueError(
                f"{type(self).__name__} expects decoder output of trailing shape {self.param_shape}, "
                f"got {tuple(h.shape)}"
            )
        if self.params_per_channel == 1:
            return (h,)  # no split node (its backward would copy h's gradient)
        return h.chunk(self.params_per_channel, dim=-self.event_dim)

    def check(self, x: torch.Tensor) -> None:
        """Validate data against this likelihood: shape, finiteness, support. Raises ValueError."""
        if tuple(x.shape[-self.event_dim:]) != self.data_shape:
            raise ValueError(
                f"data of shape {tuple(x.shape[1:])} per example does not fit a model built for "
                f"{self.data_shape}; rebuild the model for this data or reshape it"
            )
        check_finite(x)
        if self.support is not None:
            lo, hi = self.support
            xmin, xmax = torch.aminmax(x)
            if float(xmin) < lo or float(xmax) > hi:
                xmin, xmax = float(xmin), float(xmax)
                reach = (f"span [{xmin:.3g}, {xmax:.3g}]" if xmin < lo and xmax > hi else
                         f"reach {xmin if xmin < lo else xmax:.3g}")
                raise ValueError(
                    f"the {self.registry_name()} likelihood needs data in [{lo:g}, {hi:g}], and these data {reach}; "
                    f"set model.likelihood=sigma-vae (real values) or rescale them (e.g. divide 8-bit pixels by 255)"
                )

    @classmethod
    def registry_name(cls) -> str:
        """The name ``model.likelihood`` gives this head (its class name for a head outside the registry)."""
        from vaekit.likelihoods.registry import LIKELIHOOD_SPECS

        return next((s.name for s in LIKELIHOOD_SPECS.values() if s.target.split(":")[1] == cls.__name__),
                    cls.__name__)

    def check_batch(self, x: torch.Tensor) -> None:
        """Validate a batch (B, *data_shape): its shape, then ``check``. Raises ValueError."""
        if x.dim() != self.event_dim + 1 or tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"data of shape {tuple(x.shape[1:])} per example does not fit a model built for {self.data_shape} "
                f"(expected a batch of shape (B, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)})"
            )
        if x.shape[0] == 0:
            raise ValueError("the data batch is empty")
        self.check(x)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor, lead: torch.Size) -> torch.Tensor:
        """log p(x | h) summed over the data dimensions, shape ``lead``: h is the decoder output for a ``lead``
        batch shape (any trailing layout of ``param_shape``'s size); x is (*lead', *data_shape) and broadcasts
        against ``lead``.

        The same as building the distribution and calling its ``log_prob``, which this default does; a subclass
        may compute it directly to keep the training step lean, and must then match the default (tested).
        """
        return self(h.reshape(*lead, *self.param_shape)).log_prob(x)

    def decoded(self, h: torch.Tensor, lead: torch.Size | tuple[int, ...]) -> "Decoded":
        """p(x|z) for decoder output h of a ``lead`` batch (any trailing layout of ``param_shape``'s size), as a
        Distribution whose ``log_prob`` takes the direct form and whose other members build ``self(h)``."""
        return Decoded(self, h, torch.Size(lead))

    def stats(self) -> dict[str, float]:
        """Statistics this likelihood reports about itself for training logs (e.g. a learned sigma)."""
        return {}

    def forward(self, h: torch.Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError


class Decoded(Distribution):
    """p(x|z) from a decoder output, built lazily: ``log_prob(x)`` is the likelihood's direct
    ``log_prob(h, x, lead)`` (no distribution object on the training path); ``mean``, ``sample``, ``variance``,
    ``base_dist`` and the rest come from the full distribution ``likelihood(h)``, built on first use.
    batch_shape = lead, event_shape = data_shape (the same as the full distribution; tested)."""

    arg_constraints: dict = {}

    def __init__(self, likelihood: Likelihood, h: torch.Tensor, lead: torch.Size) -> None:
        self.likelihood, self.h, self._full = likelihood, h, None
        super().__init__(lead, torch.Size(likelihood.data_shape), validate_args=False)

    @property
    def full(self) -> Distribution:
        """The likelihood's own Distribution for this h."""
        if self._full is None:
            self._full = self.likelihood(self.h.reshape(*self.batch_shape, *self.likelihood.param_shape))
        return self._full

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.likelihood.log_prob(self.h, value, self.batch_shape)

    def __getattr__(self, name: str):  # mean, variance, base_dist, stddev, ... of the full distribution
        if name.startswith("_") or name in ("likelihood", "h"):
            raise AttributeError(name)
        return getattr(self.full, name)

    @property
    def mean(self) -> torch.Tensor:
        return self.full.mean

    @property
    def variance(self) -> torch.Tensor:
        return self.full.variance

    @property
    def support(self):
        return self.full.support

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.full.sample(sample_shape)

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.full.rsample(sample_shape)

    def entropy(self) -> torch.Tensor:
        return self.full.entropy()
