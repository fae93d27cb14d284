"""Prior names a config can pick (``model.prior``, a ``vae`` family option) with their typed options
(``model.prior_options``). Read without torch: a prior's class is imported when a model is built.

Each options dataclass mirrors its class's keyword arguments after ``(latent_dim, data_shape)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from vaekit.options import Activation, option

__all__ = ["PriorSpec", "PRIOR_SPECS", "prior_names", "prior_options", "load_prior", "StandardOptions",
           "MixtureOptions", "VampOptions", "FlowOptions", "SphereOptions"]


@dataclass
class StandardOptions:
    """``standard``: N(0, I), no options."""


@dataclass
class MixtureOptions:
    """``mog``: a learned mixture of K diagonal Gaussians."""

    components: int = option(10, doc="number of mixture components K", min=1)
    init_scale: float = option(1.0, doc="s.d. of the component means at initialisation", min=0)
    learn_weights: bool = option(True, doc="learn the mixture weights (false: equal weights)")
    min_log_scale: float = option(-6.0, doc="soft floor of each component's log σ")


@dataclass
class VampOptions:
    """``vamp``: the VampPrior, the mixture of the posteriors of K learned pseudo-inputs (Tomczak & Welling 2018)."""

    components: int = option(500, doc="number of pseudo-inputs K", min=1)
    init_mean: float = option(0.05, doc="mean of the pseudo-inputs at initialisation")
    init_std: float = option(0.01, doc="s.d. of the pseudo-inputs at initialisation", min=0)
    clamp: bool = option(True, doc="keep the pseudo-inputs in [0, 1] (hard tanh), the range of image data")


@dataclass
class FlowOptions:
    """``flow``: a masked autoregressive flow on N(0, I) (Papamakarios et al. 2017)."""

    steps: int = option(4, doc="number of MAF steps", min=1)
    hidden: list[int] = option(default_factory=lambda: [64, 64], doc="hidden widths of each step's MADE", min=1)
    act: Activation = option("elu", doc="activation of the MADE nets")


@dataclass
class SphereOptions:
    """``sphere``: the uniform distribution on the sphere S^(D-1) (Davidson et al. 2018), no options; needs
    ``model.posterior=vmf``."""


@dataclass(frozen=True)
class PriorSpec:
    """name; target: ``module:Class``; options: its options dataclass; doc: one line."""

    name: str
    target: str
    options: type
    doc: str


PRIOR_SPECS: dict[str, PriorSpec] = {s.name: s for s in (
    PriorSpec("standard", "standard:StandardNormal", StandardOptions, "N(0, I)"),
    PriorSpec("vamp", "mixture:VampPrior", VampOptions, "VampPrior (Tomczak & Welling 2018)"),
    PriorSpec("mog", "mixture:MixturePrior", MixtureOptions, "learned mixture of Gaussians"),
    PriorSpec("flow", "flow:FlowPrior", FlowOptions, "masked autoregressive flow (Papamakarios et al. 2017)"),
    PriorSpec("sphere", "sphere:SpherePrior", SphereOptions, "uniform on the sphere S^(D-1) (Davidson et al. 2018; "
              "with model.posterior=vmf)"),
)}


def prior_names() -> list[str]:
    """The names ``model.prior`` can take."""
    return list(PRIOR_SPECS)


def prior_options(name: str) -> type:
    """The options dataclass of prior ``name`` (a known name)."""
    return PRIOR_SPECS[name].options


def load_prior(name: str) -> Callable:
    """The class of prior ``name`` (imports it, and torch)."""
    module, cls = PRIOR_SPECS[name].target.split(":")
    return getattr(importlib.import_module(f"vaekit.priors.{module}"), cls)
