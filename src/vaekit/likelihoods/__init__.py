"""p(x|z) heads. ``build_likelihood(name, data_shape, **kwargs)`` builds one by its registry name.

Names and their typed options are declared in ``vaekit.likelihoods.registry`` (read without torch); the classes
below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from vaekit.likelihoods.base import Likelihood

__all__ = ["Likelihood", "BernoulliLikelihood", "FixedGaussianLikelihood", "LIKELIHOODS", "build_likelihood",
           "check_finite", "ContinuousBernoulliLikelihood", "SigmaVAELikelihood", "OptimalSigmaVAELikelihood",
           "PerPixelGaussianLikelihood", "DiscretizedLogisticLikelihood"]

_WHERE = {"Likelihood": "base", "check_finite": "base", "BernoulliLikelihood": "bernoulli",
          "FixedGaussianLikelihood": "gaussian", "ContinuousBernoulliLikelihood": "continuous_bernoulli",
          "SigmaVAELikelihood": "sigma_vae", "OptimalSigmaVAELikelihood": "sigma_vae_optimal",
          "PerPixelGaussianLikelihood": "gaussian_perpixel", "DiscretizedLogisticLikelihood": "discretized_logistic"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"vaekit.likelihoods.{_WHERE[name]}"), name)
    if name == "LIKELIHOODS":  # name -> class, in the registry's order; built once
        from vaekit.likelihoods.registry import LIKELIHOOD_SPECS, load_likelihood

        globals()[name] = {n: load_likelihood(n) for n in LIKELIHOOD_SPECS}
        return globals()[name]
    raise AttributeError(f"module 'vaekit.likelihoods' has no attribute {name!r}")


def build_likelihood(name: str, data_shape: Sequence[int], **kwargs: Any) -> Likelihood:
    """Build a likelihood head by name (see ``vaekit.likelihoods.registry``)."""
    from vaekit.likelihoods.registry import LIKELIHOOD_SPECS, load_likelihood

    if name not in LIKELIHOOD_SPECS:
        import difflib

        close = difflib.get_close_matches(name, list(LIKELIHOOD_SPECS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown likelihood {name!r}{hint} (choose from {', '.join(sorted(LIKELIHOOD_SPECS))})")
    return load_likelihood(name)(data_shape, **kwargs)
