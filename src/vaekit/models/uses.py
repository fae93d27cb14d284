"""What every use derives from the contract's uses half: posterior summaries, flat latent vectors, ancestral
sampling at a temperature and coordinates in prior units.

A family provides four primitives (``vaekit.models.contract.LatentUses``): its ``layout``, ``posteriors(x)``,
``decode(z)`` and ``group_prior(name, z)`` (and ``group_from_units(name, u, z)`` where a group's prior depends on
the group's own earlier steps, a latent path: then z_t = mu_p(z_<t) + sigma_p(z_<t) u_t is solved step by step). Everything here is written against them, so a new family gets the
figures, the apps and the explorer without code of its own, and a hierarchy's top-down pass is written once, in
its ``group_prior``.

Prior units (the "non-centred" coordinates of a Gaussian hierarchy; Kingma & Welling 2014, Sec. 2.4, applied per
group): u_g = (z_g - mu_p(z_parent)) / sigma_p(z_parent), so z_g = mu_p + sigma_p u_g and u ~ N(0, I) gives an
ancestral sample of the prior. For a standard normal prior u = z. Discrete groups keep their one-hot values.
A group whose prior is not a diagonal Gaussian (a mixture, a flow) has no such whitening: its coordinates are z
itself (traversals, interpolation and sliders move in z), its draws come from the prior's own sampler, and a
model declares the 'gaussian-prior' capability only when every group's prior is Gaussian (what MAP in u needs).
A group on a sphere (the uniform prior of a von Mises-Fisher VAE) keeps z as its coordinates too, but almost every
point of R^D is off its support, so its model does not declare 'continuous': the uses that move coordinates
freely (traversals, straight-line interpolation, fitted samplers, MAP) refuse, and its draws come from the prior's
own sampler.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch.distributions import Distribution, Independent, Normal

from vaekit.models.contract import CONTINUOUS, GAUSSIAN_PRIOR, LatentLayout, require

__all__ = ["posterior_means", "posterior_stddevs", "flatten", "unflatten", "to_prior_units", "from_prior_units",
           "sample_latents", "temperatures", "gaussian_prior", "draw_from_prior", "describe_prior_draws", "encode_units", "decode_units",
           "decode_mean", "LatentUsesMixin", "unit_slices"]

Latents = dict[str, torch.Tensor]


def _mean(q: Distribution, n: int = 64) -> torch.Tensor:
    """E_q[z]: closed form, or the mean of ``n`` draws for a posterior without one (a flow)."""
    try:
        return q.mean
    except NotImplementedError:
        z, _ = q.rsample_and_log_prob((n,))
        return z.mean(0)


def _std(q: Distribution, n: int = 64) -> torch.Tensor:
    try:
        return q.stddev
    except NotImplementedError:
        z, _ = q.rsample_and_log_prob((n,))
        return z.std(0)


def posterior_means(model: Any, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None) -> Latents:
    """{group: E_q[z_g | x]} along the mean pass, batch (B,); a discrete group: its most probable value (one-hot)."""
    qs = model.posteriors(x, given)
    out: Latents = {}
    for g in model.layout.groups:
        q = qs[g.name]
        if g.kind == "continuous":
            out[g.name] = _mean(q)
        else:
            probs = q.base_dist.probs if isinstance(q, Independent) else q.probs  # (B, [H, W,] K): a map too
            out[g.name] = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
    return out


def posterior_stddevs(model: Any, x: torch.Tensor) -> Latents:
    """{continuous group: s.d. of q(z_g | x)} along the mean pass."""
    qs = model.posteriors(x)
    return {g.name: _std(qs[g.name]) for g in model.layout.continuous}


def unit_slices(layout: LatentLayout) -> dict[str, slice]:
    """Where each continuous group sits in a flat latent vector (layout order)."""
    out, start = {}, 0
    for g in layout.continuous:
        out[g.name] = slice(start, start + g.size)
        start += g.size
    return out


def flatten(layout: LatentLayout, z: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(*lead, D): the continuous groups of ``z`` flattened and concatenated in layout order."""
    parts = [z[g.name].reshape(*z[g.name].shape[:z[g.name].dim() - len(g.shape)], g.size) for g in layout.continuous]
    if not parts:  # no continuous group (a VQ-VAE, a model of discrete latents only): (*lead, 0)
        g = layout.groups[0]
        v = z[g.name]
        return v.new_zeros(*v.shape[:v.dim() - len(g.shape)], 0)
    return torch.cat(parts, -1)


def unflatten(layout: LatentLayout, v: torch.Tensor) -> Latents:
    """The inverse of ``flatten``: {continuous group: (*lead, *shape)} from v (*lead, D)."""
    if v.shape[-1] != layout.continuous_size:
        raise ValueError(f"latent vectors need {layout.continuous_size} values each, got shape {tuple(v.shape)}")
    return {name: v[..., s].reshape(*v.shape[:-1], *layout[name].shape) for name, s in unit_slices(layout).items()}


def gaussian_prior(p: Distribution) -> bool:
    """Is ``p`` a diagonal Gaussian (an ``Independent`` of ``Normal``s), whose prior units whiten it exactly?"""
    return isinstance(p, Independent) and isinstance(p.base_dist, Normal)


def to_prior_units(model: Any, z: Mapping[str, torch.Tensor]) -> Latents:
    """{group: u_g}: each continuous group with a Gaussian prior whitened by it given its parent's value in ``z``;
    a group with another prior (a mixture, a flow) keeps z."""
    out: Latents = {}
    for g in model.layout.groups:
        if g.kind != "continuous":
            out[g.name] = z[g.name]
            continue
        p = model.group_prior(g.name, z)
        out[g.name] = (z[g.name] - p.mean) / p.stddev if gaussian_prior(p) else z[g.name]
    return out


def from_prior_units(model: Any, u: Mapping[str, torch.Tensor]) -> Latents:
    """{group: z_g}, top-down: z_g = mu_p(z_parent) + sigma_p(z_parent) u_g for a Gaussian prior, u_g itself for
    another; discrete groups as given."""
    z: Latents = {}
    for g in model.layout.top_down():
        if g.kind != "continuous":
            z[g.name] = u[g.name]
        elif hasattr(model, "group_from_units"):  # a prior over the group's own earlier steps (a latent path)
            z[g.name] = model.group_from_units(g.name, u[g.name], z)
        else:
            p = model.group_prior(g.name, z)
            z[g.name] = p.mean + p.stddev * u[g.name] if gaussian_prior(p) else u[g.name]
    return z


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def temperatures(layout: LatentLayout, temperature: float | Mapping[str, float]) -> dict[str, float]:
    """{continuous group: T_g}: one temperature for all, or one per group (NVAE's and VDVAE's per-group
    temperatures; a group the mapping leaves out is at T = 1). An unknown group name is a ValueError."""
    names = [g.name for g in layout.continuous]
    if not isinstance(temperature, Mapping):
        return dict.fromkeys(names, float(temperature))
    unknown = [k for k in temperature if k not in names]
    if unknown:
        raise ValueError(f"temperature for unknown latent group {unknown[0]!r}; the groups are {', '.join(names)}")
    out = {name: float(temperature.get(name, 1.0)) for name in names}
    if min(out.values()) < 0:
        raise ValueError(f"temperatures must be >= 0, got {dict(temperature)}")
    return out


def sample_latents(model: Any, n: int, temperature: float | Mapping[str, float] = 1.0,
                   generator: torch.Generator | None = None) -> Latents:
    """Ancestral draws from the prior with every continuous group's s.d. scaled by its temperature T_g:
    z_g = mu_p + T_g sigma_p eps, eps ~ N(0, I) (the global RNG on the model's device, or ``generator`` on its own
    device); discrete groups drawn from their priors. ``temperature``: one T for every group, or {group: T_g}
    (groups left out at 1); a group with another prior is drawn by ``draw_from_prior``."""
    dev = _device(model)
    temps = temperatures(model.layout, temperature)
    z: Latents = {}
    for g in model.layout.top_down():
        if g.kind == "continuous" and hasattr(model, "group_from_units"):
            p = None  # the prior over a latent path depends on its own steps: drawn step by step below
        else:
            p = model.group_prior(g.name, z)
        if g.kind != "continuous":
            z[g.name] = p.sample((n,)) if p.batch_shape == () else p.sample()
            continue
        if p is not None and not gaussian_prior(p):
            z[g.name] = draw_from_prior(p, n, temps[g.name], generator).to(dev)
            continue
        if generator is None:
            eps = torch.randn(n, *g.shape, device=dev)
        else:
            eps = torch.randn(n, *g.shape, generator=generator, device=generator.device).to(dev)
        if hasattr(model, "group_from_units"):
            z[g.name] = model.group_from_units(g.name, temps[g.name] * eps, z)
        else:
            z[g.name] = p.mean + temps[g.name] * p.stddev * eps
    return z


def describe_prior_draws(model: Any) -> str:
    """What ``sample_latents`` (and a model's ``sample(n, T)``) draws, in words short enough for a figure's title:
    each top group's prior at temperature T, then how the groups below are drawn given their parents."""
    words, below = [], False
    for g in model.layout.top_down():
        if g.kind != "continuous":
            words.append(f"{g.name} from its prior (T does not apply)")
        elif hasattr(model, "group_from_units"):
            words.append(f"{g.name} step by step, each step ~ N(μ_p, (T σ_p)²) given the one before")
        elif g.parent is not None:
            below = True
        else:
            with torch.no_grad():
                p = model.group_prior(g.name, {})
            if gaussian_prior(p):
                std = bool((p.mean == 0).all() and (p.stddev == 1).all())
                words.append(f"{g.name} ~ N(0, T² I)" if std else f"{g.name} ~ N(μ, T² σ²), learned")
            else:
                words.append(f"{g.name}: {getattr(p, 'temperature_note', f'its {type(p).__name__} prior (T = 1 only)')}")
    if below:
        words.append("each lower group ~ N(μ_p, (T σ_p)²) given its parent" if GAUSSIAN_PRIOR in model.capabilities
                     else "each lower group from its prior given its parent")
    return "; ".join(words)


def draw_from_prior(p: Distribution, n: int, temperature: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws from a prior that is not a diagonal Gaussian: its ``sample_at_temperature`` (a mixture scales
    its components' s.d.s, a flow its base noise), or its plain ``sample`` at T = 1 (ValueError otherwise)."""
    if hasattr(p, "sample_at_temperature"):
        return p.sample_at_temperature((n,) if p.batch_shape == () else (), temperature, generator)
    if temperature != 1.0:
        raise ValueError(f"a {type(p).__name__} prior is sampled at temperature 1 only; got {temperature}")
    return p.sample((n,)) if p.batch_shape == () else p.sample()


def encode_units(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z|x) in prior units along the mean pass, flat: (mean (B, D), s.d. (B, D)), each group measured against
    its prior at its parent's posterior mean."""
    require(model, CONTINUOUS, "prior-unit coordinates")
    qs = model.posteriors(x)
    means = {name: _mean(q) for name, q in qs.items()}
    mu, sd = {}, {}
    for g in model.layout.continuous:
        p = model.group_prior(g.name, means)
        scale = p.stddev if gaussian_prior(p) else 1.0  # another prior: coordinates in z
        mu[g.name] = (means[g.name] - p.mean) / scale if gaussian_prior(p) else means[g.name]
        sd[g.name] = _std(qs[g.name]) / scale
    return flatten(model.layout, mu), flatten(model.layout, sd)


def decode_units(model: Any, u: torch.Tensor) -> Distribution:
    """p(x|z) at the latents whose prior units are the flat u (B, D)."""
    require(model, CONTINUOUS, "decoding prior-unit coordinates")
    return model.decode(from_prior_units(model, unflatten(model.layout, u)))


@torch.no_grad()
def decode_mean(model: Any, u: torch.Tensor) -> torch.Tensor:
    """E[x|z] (B, *data_shape) at flat prior units u (B, D)."""
    return decode_units(model, u).mean


class LatentUsesMixin:
    """``embed``, ``sample`` and ``reconstruct`` from the four primitives, for a family with no faster way."""

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D): the continuous groups' posterior means, flattened in layout order."""
        return flatten(self.layout, posterior_means(self, x))

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """Means of p(x|z) at n ancestral draws from the prior at temperature T."""
        return self.decode(sample_latents(self, n, temperature)).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z) at the posterior means."""
        return self.decode(posterior_means(self, x)).mean
