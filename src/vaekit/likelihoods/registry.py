"""Likelihood names a config can pick (``model.likelihood``) with their typed options
(``model.likelihood_options``). Read without torch: a head's class is imported when a model is built.

Each options dataclass mirrors its class's keyword arguments after ``data_shape`` (same names and defaults,
checked by the tests); the builder passes every field, so the declaration is what ``--help`` shows and what
runs. Declared apart from the classes so that validation and ``vaekit train --help`` need no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from vaekit.options import option

__all__ = ["LikelihoodSpec", "LIKELIHOOD_SPECS", "likelihood_names", "likelihood_options", "load_likelihood",
           "NoOptions", "GaussianOptions", "SigmaVAEOptions", "OptimalSigmaVAEOptions", "PerPixelGaussianOptions",
           "DiscretizedLogisticOptions"]


@dataclass
class NoOptions:
    """A head with no options: ``model.likelihood_options`` stays ``{}``."""


@dataclass
class GaussianOptions:
    """``gaussian``: N(x; h, σ²I) with σ fixed."""

    sigma: float = option(1.0, doc="the fixed standard deviation σ (σ = 1: ½‖x − x̂‖² + const)", gt=0)


@dataclass
class SigmaVAEOptions:
    """``sigma-vae``: one learned σ shared by all pixels (Rybkin et al. 2021)."""

    init_log_sigma: float = option(0.0, doc="log σ at initialisation")
    min_log_sigma: float = option(-6.0, doc="soft floor of log σ")


@dataclass
class OptimalSigmaVAEOptions:
    """``sigma-vae-optimal``: the batch-optimal σ* (Rybkin et al. 2021)."""

    min_log_sigma: float = option(-6.0, doc="soft floor of log σ*")


@dataclass
class PerPixelGaussianOptions:
    """``gaussian-perpixel``: σ(z) per pixel from the decoder."""

    min_sigma: float = option(1e-3, doc="floor of each pixel's σ", gt=0)


@dataclass
class DiscretizedLogisticOptions:
    """``discretized-logistic``: a logistic discretised to n_bins levels (PixelCNN++)."""

    n_bins: int = option(256, doc="number of levels of the data (256 for 8-bit images)", min=2)
    min_log_scale: float = option(-8.0, doc="floor of the log scale")


@dataclass(frozen=True)
class LikelihoodSpec:
    """name; target: ``module:Class`` of the head; options: its options dataclass; doc: one line."""

    name: str
    target: str
    options: type
    doc: str


LIKELIHOOD_SPECS: dict[str, LikelihoodSpec] = {s.name: s for s in (
    LikelihoodSpec("bernoulli", "bernoulli:BernoulliLikelihood", NoOptions, "binary pixels (or grey values as "
                   "probabilities)"),
    LikelihoodSpec("gaussian", "gaussian:FixedGaussianLikelihood", GaussianOptions, "Gaussian, fixed σ"),
    LikelihoodSpec("continuous-bernoulli", "continuous_bernoulli:ContinuousBernoulliLikelihood", NoOptions,
                   "a normalised density on [0, 1] (Loaiza-Ganem & Cunningham 2019)"),
    LikelihoodSpec("sigma-vae", "sigma_vae:SigmaVAELikelihood", SigmaVAEOptions, "Gaussian, one learned σ"),
    LikelihoodSpec("sigma-vae-optimal", "sigma_vae_optimal:OptimalSigmaVAELikelihood", OptimalSigmaVAEOptions,
                   "Gaussian, the batch-optimal σ*"),
    LikelihoodSpec("gaussian-perpixel", "gaussian_perpixel:PerPixelGaussianLikelihood", PerPixelGaussianOptions,
                   "Gaussian, σ(z) per pixel"),
    LikelihoodSpec("discretized-logistic", "discretized_logistic:DiscretizedLogisticLikelihood",
                   DiscretizedLogisticOptions, "a discrete distribution over 256 levels (bits/dim)"),
)}


def likelihood_names() -> list[str]:
    """The names ``model.likelihood`` can take."""
    return list(LIKELIHOOD_SPECS)


def likelihood_options(name: str) -> type:
    """The options dataclass of likelihood ``name`` (a known name)."""
    return LIKELIHOOD_SPECS[name].options


def load_likelihood(name: str) -> Callable:
    """The head class of likelihood ``name`` (imports it, and torch)."""
    module, cls = LIKELIHOOD_SPECS[name].target.split(":")
    return getattr(importlib.import_module(f"vaekit.likelihoods.{module}"), cls)
