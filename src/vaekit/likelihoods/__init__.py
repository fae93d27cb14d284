"""p(x|z) heads. ``build_likelihood(name, data_shape, **kwargs)`` builds one by its registry name."""

from __future__ import annotations

from typing import Any, Sequence

from vaekit.likelihoods.base import Likelihood, check_finite
from vaekit.likelihoods.bernoulli import BernoulliLikelihood
from vaekit.likelihoods.gaussian import FixedGaussianLikelihood

__all__ = ["Likelihood", "BernoulliLikelihood", "FixedGaussianLikelihood", "LIKELIHOODS", "build_likelihood",
           "check_finite"]

LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": FixedGaussianLikelihood,
}


def build_likelihood(name: str, data_shape: Sequence[int], **kwargs: Any) -> Likelihood:
    """Build a likelihood head by name (see ``LIKELIHOODS``)."""
    if name not in LIKELIHOODS:
        import difflib

        close = difflib.get_close_matches(name, list(LIKELIHOODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown likelihood {name!r}{hint} (choose from {', '.join(sorted(LIKELIHOODS))})")
    return LIKELIHOODS[name](data_shape, **kwargs)
