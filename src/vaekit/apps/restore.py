"""Image restoration with a trained VAE: super-resolution, deblurring, inpainting and denoising as one inverse
problem y = A(x) + noise (operators: ``vaekit.apps.operators``).

- MAP: z* = argmax_z log p(y | A(E[x|z])) + log p(z) by Adam (``vaekit.apps.latent.map_estimate``), started
  from the encoder's posterior mean of the pseudo-input ``observation.start(y)`` (``init="encoder"``) or from
  the prior's mode z = 0 (``init="prior"``); ``restarts - 1`` further starts drawn from the prior, the best
  log-posterior kept per example. The restoration is E[x | z*] (observed pixels kept where y holds them exactly: a noiseless mask alone).
  Bora et al. 2017, "Compressed Sensing using Generative Models"; the same objective as ``inpaint``.
- Samples: sampling-importance-resampling from the Laplace approximation N(z*, H^-1) of p(z | y)
  (``vaekit.apps.latent``), the decoder means of S draws; their per-pixel spread shows what y leaves open, and
  the self-normalised weighted mean of the decoder means over all M proposals estimates E[x | y] (the
  posterior-mean restoration, which minimises the expected squared error).
- Baselines and metrics: ``vaekit.apps.restore_baselines``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vaekit.apps._common import (as_data_tensor, decode_units, encode_units, eval_mode, log_prior_units,
                                 model_device, require_gaussian_units)
from vaekit.apps.latent import importance_resample, laplace_precision, map_estimate
from vaekit.apps.operators import Observation

__all__ = ["RESTORE_INITS", "RestoreResult", "restore"]

RESTORE_INITS = ("encoder", "prior")


@dataclass
class RestoreResult:
    """restored: (N, *data_shape) E[x | z*]; z: (N, D) the MAP latents; log_joint: (N,) log p(y|z*) + log p(z*);
    samples: (N, S, *data_shape) decoder means of posterior draws, posterior_mean: (N, *data_shape) and
    ess: (N,) effective sample sizes (None without samples); seconds: wall time of MAP and sampling."""

    restored: torch.Tensor
    z: torch.Tensor
    log_joint: torch.Tensor
    samples: torch.Tensor | None = None
    posterior_mean: torch.Tensor | None = None
    ess: torch.Tensor | None = None
    seconds: float = 0.0


def _check(steps: int, restarts: int, samples: int, proposals: int, init: str) -> None:
    for name, v, low in (("steps", steps, 0), ("restarts", restarts, 1), ("samples", samples, 0),
                         ("proposals", proposals, 1)):
        if int(v) != v or v < low:
            raise ValueError(f"{name} must be an integer of at least {low}, got {v!r}")
    if init not in RESTORE_INITS:
        raise ValueError(f"init must be one of {', '.join(RESTORE_INITS)}, got {init!r}")


def _restore_batch(model: nn.Module, y: torch.Tensor, obs: Observation, *, steps: int, lr: float, restarts: int,
                   init: str, likelihood: str, samples: int, proposals: int, scale: float,
                   g: torch.Generator) -> list[torch.Tensor | None]:
    def log_joint(z: torch.Tensor) -> torch.Tensor:  # (*lead, B) for z: prior units (*lead, B, D)
        return obs.log_likelihood(decode_units(model, z), y, likelihood) + log_prior_units(z)

    B, D = y.shape[0], model.layout.continuous_size
    with torch.no_grad():
        first = (encode_units(model, obs.start(y))[0] if init == "encoder"
                 else torch.zeros(B, D, dtype=y.dtype, device=y.device))
    extra = torch.randn((restarts - 1, B, D), generator=g, dtype=y.dtype).to(y.device)  # (R - 1, B, D)
    z = map_estimate(log_joint, torch.cat([first[None], extra]), steps, lr)  # (R, B, D)
    with torch.no_grad():
        lj = log_joint(z)  # (R, B)
        best = lj.argmax(0)  # (B,)
        z, lj = z[best, torch.arange(B)], lj.max(0).values  # (B, D), (B,)
        clamp = obs.mask is not None and obs.sigma is None and obs.selects_pixels  # y holds exact pixels of x
        keep = obs.mask.missing.to(y.device) if clamp else None

        def image(zz: torch.Tensor) -> torch.Tensor:  # (*lead, B, D) -> (*lead, B, *data_shape)
            x = decode_units(model, zz).mean
            return x if keep is None else torch.where(keep, x, y)

        out: list[torch.Tensor | None] = [image(z), z, lj, None, None, None]
    if samples:
        prec = laplace_precision(log_joint, z)  # (B, D, D)
        s = importance_resample(log_joint, z, prec, samples, proposals, scale, generator=g)
        with torch.no_grad():
            out[3] = image(s.samples).transpose(0, 1)  # (B, S, *data_shape)
            mean = torch.zeros_like(out[0])
            for i in range(0, proposals, 64):
                w = s.weights[i:i + 64].reshape(*s.weights[i:i + 64].shape, *([1] * (y.dim() - 1)))
                mean += (w * image(s.proposals[i:i + 64])).sum(0)
            out[4], out[5] = mean, s.ess
    return out


def restore(model: nn.Module, y: Any, observation: Observation, *, steps: int = 300, lr: float = 0.05,
            restarts: int = 1, init: str = "encoder", likelihood: str = "auto", samples: int = 0,
            proposals: int = 256, proposal_scale: float = 1.0, batch_size: int = 500,
            seed: int = 0) -> RestoreResult:
    """Restore images from observations ``y`` (N, *observation.obs_shape) of ``observation`` (see the module
    docstring): ``steps`` Adam steps at learning rate ``lr`` from ``restarts`` starts (``init``: the first);
    ``samples`` posterior draws per example from ``proposals`` importance proposals (0: MAP only);
    ``likelihood``: see ``Observation.log_likelihood``. The model's weights are not changed."""
    require_gaussian_units(model, "restoration")
    _check(steps, restarts, samples, proposals, init)
    y = as_data_tensor(y)
    if tuple(y.shape[1:]) != observation.obs_shape:
        raise ValueError(f"observations of shape {tuple(y.shape[1:])} do not fit {observation.spec} on "
                         f"{observation.data_shape}, which gives {observation.obs_shape}")
    if tuple(observation.data_shape) != tuple(model.data_shape):
        raise ValueError(f"the operator is built for {observation.data_shape}; the model for {tuple(model.data_shape)}")
    g = torch.Generator().manual_seed(int(seed))
    t0 = time.perf_counter()
    parts = []
    with eval_mode(model):
        dev = model_device(model)
        for i in range(0, y.shape[0], batch_size):
            rows = slice(i, i + batch_size)
            parts.append(_restore_batch(model, y[rows].to(dev), observation.batch(rows), steps=int(steps),
                                        lr=float(lr), restarts=int(restarts), init=init, likelihood=likelihood,
                                        samples=int(samples), proposals=int(proposals), scale=float(proposal_scale),
                                        g=g))
    cat = [None if p[0] is None else torch.cat([t.cpu() for t in p]) for p in zip(*parts)]
    return RestoreResult(*cat, seconds=time.perf_counter() - t0)
