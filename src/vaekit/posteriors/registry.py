"""Posterior names a config can pick (``model.posterior``, a ``vae`` family option) with their typed options
(``model.posterior_options``). Read without torch: a head's class is imported when a model is built.

Each options dataclass mirrors its class's keyword arguments after ``(in_features, latent_dim)`` (same names and
defaults, checked by the tests); the builder passes every field.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from vaekit.options import Activation, option

__all__ = ["PosteriorSpec", "POSTERIOR_SPECS", "posterior_names", "posterior_options", "load_posterior",
           "GaussianPosteriorOptions", "IAFOptions", "VMFOptions"]


@dataclass
class GaussianPosteriorOptions:
    """``gaussian``: a diagonal Gaussian whose log-variance is soft-clamped."""

    logvar_min: float = option(-12.0, doc="soft lower clamp of log σ²")
    logvar_max: float = option(8.0, doc="soft upper clamp of log σ²")

    def check(self, model: object, key: str) -> None:
        """The clamp must be an interval."""
        from vaekit.options import ConfigError

        if not self.logvar_min < self.logvar_max:
            raise ConfigError(f"{key}: logvar_min must be below logvar_max, got {self.logvar_min} and "
                              f"{self.logvar_max}")


@dataclass
class IAFOptions(GaussianPosteriorOptions):
    """``iaf``: T inverse autoregressive flow steps on a Gaussian (Kingma et al. 2016)."""

    steps: int = option(2, doc="number of IAF steps T", min=0)
    hidden: list[int] = option(default_factory=lambda: [320, 320], doc="hidden widths of each step's MADE", min=1)
    context: int = option(64, doc="size of the context vector fed to every step (0: none)", min=0)
    act: Activation = option("elu", doc="activation of the MADE nets")
    forget_bias: float = option(1.0, doc="added to s so that σ = sigmoid(s) starts near 0.73 (2.0: 0.88)")


@dataclass
class VMFOptions:
    """``vmf``: a von Mises-Fisher distribution on the sphere S^(D-1) (Davidson et al. 2018); needs
    ``model.prior=sphere``."""

    kappa_min: float = option(1.0, doc="floor of the concentration: κ = softplus(·) + kappa_min (Davidson et al. "
                                       "2018: 1)", gt=0)


@dataclass(frozen=True)
class PosteriorSpec:
    """name; target: ``module:Class`` of the head; options: its options dataclass; doc: one line."""

    name: str
    target: str
    options: type
    doc: str


POSTERIOR_SPECS: dict[str, PosteriorSpec] = {s.name: s for s in (
    PosteriorSpec("gaussian", "gaussian:GaussianPosterior", GaussianPosteriorOptions, "diagonal Gaussian"),
    PosteriorSpec("iaf", "iaf:IAFPosterior", IAFOptions, "inverse autoregressive flow (Kingma et al. 2016)"),
    PosteriorSpec("vmf", "vmf:VMFPosterior", VMFOptions, "von Mises-Fisher on the sphere S^(D-1) (Davidson et al. "
                  "2018; with model.prior=sphere)"),
)}


def posterior_names() -> list[str]:
    """The names ``model.posterior`` can take."""
    return list(POSTERIOR_SPECS)


def posterior_options(name: str) -> type:
    """The options dataclass of posterior ``name`` (a known name)."""
    return POSTERIOR_SPECS[name].options


def load_posterior(name: str) -> Callable:
    """The head class of posterior ``name`` (imports it, and torch)."""
    module, cls = POSTERIOR_SPECS[name].target.split(":")
    return getattr(importlib.import_module(f"vaekit.posteriors.{module}"), cls)
