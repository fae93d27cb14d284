"""Heteroscedastic Gaussian decoder: a mean and a scale per pixel, both outputs of the decoder net.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes", Appendix C.2 (Gaussian MLP decoder):
log p(x|z) = sum_i log N(x_i; mu_i(z), sigma_i(z)^2). A free per-pixel scale can shrink without bound on pixels
the decoder fits exactly (the likelihood then diverges), so the scale is floored:
sigma_i = softplus(r_i) + sigma_min with r the raw decoder output (Rybkin et al. 2021 discuss this failure mode).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal

from vaekit.likelihoods.base import Likelihood

__all__ = ["PerPixelGaussianLikelihood"]


class PerPixelGaussianLikelihood(Likelihood):
    """N(x; mu(z), diag sigma(z)^2) with sigma = softplus(raw) + min_sigma (Kingma & Welling 2014, App. C.2).

    The decoder emits 2 values per channel: channels [0, C) are the means, [C, 2C) the raw scales.
    ``min_sigma`` (default 1e-3) bounds each sigma from below; log p per pixel is then at most
    -log(min_sigma) - 1/2 log(2 pi). The gradient w.r.t. raw is sigmoid(raw) > 0 (no hard clamp).
    """

    params_per_channel = 2

    def __init__(self, data_shape: Sequence[int], min_sigma: float = 1e-3) -> None:
        super().__init__(data_shape)
        if not min_sigma > 0:
            raise ValueError(f"min_sigma must be positive, got {min_sigma}")
        self.min_sigma = float(min_sigma)

    def forward(self, h: torch.Tensor) -> Independent:
        mean, raw = self.split(h)  # (*batch, *data_shape) each
        scale = F.softplus(raw) + self.min_sigma
        return Independent(Normal(mean, scale, validate_args=False), self.event_dim, validate_args=False)

    def extra_repr(self) -> str:
        return f"data_shape={self.data_shape}, min_sigma={self.min_sigma}"
