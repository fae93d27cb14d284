"""p(x|z) heads. ``build_likelihood(name, data_shape, **kwargs)`` builds one by its registry name."""

from __future__ import annotations

from typing import Any, Sequence

from vaekit.likelihoods.base import Likelihood, check_finite
from vaekit.likelihoods.bernoulli import BernoulliLikelihood
from vaekit.likelihoods.continuous_bernoulli import ContinuousBernoulliLikelihood
from vaekit.likelihoods.discretized_logistic import DiscretizedLogisticLikelihood
from vaekit.likelihoods.gaussian import FixedGaussianLikelihood
from vaekit.likelihoods.gaussian_perpixel import PerPixelGaussianLikelihood
from vaekit.likelihoods.sigma_vae import SigmaVAELikelihood
from vaekit.likelihoods.sigma_vae_optimal import OptimalSigmaVAELikelihood

__all__ = ["Likelihood", "BernoulliLikelihood", "FixedGaussianLikelihood", "LIKELIHOODS", "build_likelihood",
           "check_finite", "ContinuousBernoulliLikelihood", "SigmaVAELikelihood", "OptimalSigmaVAELikelihood",
           "PerPixelGaussianLikelihood", "DiscretizedLogisticLikelihood"]

LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": FixedGaussianLikelihood,
    "continuous-bernoulli": ContinuousBernoulliLikelihood,
    "sigma-vae": SigmaVAELikelihood,
    "sigma-vae-optimal": OptimalSigmaVAELikelihood,
    "gaussian-perpixel": PerPixelGaussianLikelihood,
    "discretized-logistic": DiscretizedLogisticLikelihood,
}


def build_likelihood(name: str, data_shape: Sequence[int], **kwargs: Any) -> Likelihood:
    """Build a likelihood head by name (see ``LIKELIHOODS``)."""
    if name not in LIKELIHOODS:
        import difflib

        close = difflib.get_close_matches(name, list(LIKELIHOODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown likelihood {name!r}{hint} (choose from {', '.join(sorted(LIKELIHOODS))})")
    return LIKELIHOODS[name](data_shape, **kwargs)
