"""Model families by name: ``model.family`` -> builder with the config keys it reads (its typed options).

A new family is its own module under ``models/`` that speaks the contract, one ``register_family`` call here
(or in its module), and its presets. Keys of ``ModelConfig`` that belong to another family must keep their
defaults, so a misplaced option is an error naming the key rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from vaekit.config import ConfigError, ModelConfig

__all__ = ["Family", "FAMILIES", "register_family", "build_family", "check_options", "load_m1"]

#: keys every family reads (the likelihood, the nets' shared settings, the objective's settings)
COMMON_KEYS = ("family", "arch", "hidden", "act", "conv_channels", "likelihood", "likelihood_options", "beta",
               "warmup_steps", "free_bits", "n_samples", "objective", "objective_options")


@dataclass(frozen=True)
class Family:
    """name; build(model_config, data_shape) -> model; keys: the family's own ModelConfig keys; doc: one line."""

    name: str
    build: Callable[[ModelConfig, Sequence[int]], nn.Module]
    keys: tuple[str, ...]
    doc: str


FAMILIES: dict[str, Family] = {}


def register_family(name: str, keys: Sequence[str], doc: str):
    """Decorator registering ``build(m: ModelConfig, data_shape) -> nn.Module`` as family ``name``."""

    def deco(build: Callable[[ModelConfig, Sequence[int]], nn.Module]):
        FAMILIES[name] = Family(name, build, tuple(keys), doc)
        return build

    return deco


def check_options(what: str, key: str, cls: type, options: Mapping[str, Any], skip: int = 0) -> None:
    """ConfigError when ``options`` has a name ``cls.__init__`` does not take (after ``skip`` positional
    arguments): names the config key, the nearest valid name and what to do."""
    params = [p for p in list(inspect.signature(cls.__init__).parameters.values())[1 + skip:]
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [p.name for p in params]
    for k in options:
        if k not in names:
            close = difflib.get_close_matches(k, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            takes = ", ".join(names) if names else "no options"
            raise ConfigError(f"{key} has {k!r}, which the {what} does not take ({hint}it takes: {takes}); "
                              f"remove it, e.g. {key}={{}}")


def build_family(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    """Build the model a ModelConfig describes, after checking that every set key belongs to its family."""
    if m.family not in FAMILIES:
        close = difflib.get_close_matches(m.family, list(FAMILIES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown model.family {m.family!r}; {hint}choose from {', '.join(FAMILIES)}")
    fam = FAMILIES[m.family]
    defaults = ModelConfig()
    for f in dataclasses.fields(ModelConfig):
        if f.name in COMMON_KEYS or f.name in fam.keys:
            continue
        if getattr(m, f.name) != getattr(defaults, f.name):
            owners = [x.name for x in FAMILIES.values() if f.name in x.keys]
            where = f"family={'/'.join(owners)}" if owners else "another family"
            raise ConfigError(f"model.{f.name} applies to model.{where}, not model.family={m.family}; remove it "
                              f"(or set model.family={owners[0] if owners else '...'})")
    from vaekit.likelihoods import LIKELIHOODS

    if m.likelihood in LIKELIHOODS:
        check_options(f"{m.likelihood} likelihood", "model.likelihood_options", LIKELIHOODS[m.likelihood],
                      m.likelihood_options, skip=1)
    try:
        return fam.build(m, data_shape)
    except TypeError as e:  # a wrong value type inside an options mapping
        raise ConfigError(f"bad model option: {e}") from None


# -- the families shipped with vaekit (their modules load when a model is built) --------------------------


@register_family("vae", ("latent_dim", "posterior", "posterior_options", "dropout", "conv_out"),
                 "one latent vector, Gaussian or IAF posterior, standard normal prior")
def _vae(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.models.build import build_vae
    from vaekit.posteriors import POSTERIORS

    if m.posterior in POSTERIORS:
        check_options(f"{m.posterior} posterior", "model.posterior_options", POSTERIORS[m.posterior],
                      m.posterior_options, skip=2)
    try:
        return build_vae(
            data_shape, arch=m.arch, latent_dim=m.latent_dim, hidden=m.hidden, act=m.act,
            conv_channels=m.conv_channels, likelihood=m.likelihood, likelihood_kwargs=m.likelihood_options,
            posterior=m.posterior, posterior_kwargs=m.posterior_options, dropout=m.dropout,
            conv_out=m.conv_out,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


@register_family("ladder", ("latent_dims", "batch_norm", "merge"),
                 "Ladder VAE (Sønderby et al. 2016): a hierarchy of Gaussian layers, precision-weighted merge")
def _ladder(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.models.ladder import build_ladder

    try:
        return build_ladder(
            data_shape, arch=m.arch, latent_dims=m.latent_dims, hidden=m.hidden, act=m.act,
            conv_channels=m.conv_channels, likelihood=m.likelihood, likelihood_kwargs=m.likelihood_options,
            batch_norm=m.batch_norm, merge=m.merge,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


@register_family("m2", ("latent_dim", "n_classes", "m1_run", "m1_units"),
                 "M2 (Kingma et al. 2014): classifier q(y|x), style z, p(x|y,z); semi-supervised, conditional, M1+M2")
def _m2(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.likelihoods import build_likelihood
    from vaekit.models.m2 import M2

    if m.arch != "mlp":
        raise ConfigError("model.family=m2 is built from MLPs; use model.arch=mlp")
    m1 = load_m1(m.m1_run, data_shape) if m.m1_run else None
    units = m.m1_units
    if units == "active":
        raise ConfigError("model.m1_units=active is resolved from the training data when a run starts "
                          "(vaekit.run.resolve_m1_units); give the unit indices to build the model directly")
    if units is not None and m1 is not None and max(units) >= m1.latent_dim:
        raise ConfigError(f"model.m1_units={units} names units beyond the M1 run's {m1.latent_dim} "
                          f"(indices 0..{m1.latent_dim - 1})")
    feat_shape = ((m1.latent_dim if units is None else len(units)),) if m1 is not None else tuple(data_shape)
    try:
        lik = build_likelihood(m.likelihood, feat_shape, **(m.likelihood_options or {}))
        return M2(tuple(data_shape), lik, m.latent_dim, m.n_classes, list(m.hidden), act=m.act, m1=m1,
                  m1_units=units)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def load_m1(run_dir: str, data_shape: Sequence[int]) -> nn.Module:
    """The trained VAE of an M1 run folder (its config and best weights), for M1+M2."""
    from pathlib import Path

    from vaekit.config import load_config
    from vaekit.training.checkpoint import CheckpointError, load_checkpoint

    d = Path(run_dir)
    ckpt = d / "best.safetensors" if (d / "best.safetensors").is_file() else d / "last.safetensors"
    if not (d / "config.yaml").is_file() or not ckpt.is_file():
        raise ConfigError(f"model.m1_run={run_dir!r} is not a trained vaekit run (no config.yaml and checkpoint "
                          f"there); train the M1 VAE first, e.g. `vaekit train --preset mnist-m1 --out {run_dir}`")
    cfg = load_config(d / "config.yaml")
    if cfg.model.family != "vae":
        raise ConfigError(f"model.m1_run={run_dir!r} is a {cfg.model.family} run; M1+M2 needs a vae run")
    m1 = build_family(cfg.model, data_shape)
    tensors, _ = load_checkpoint(ckpt)
    try:
        m1.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as e:
        raise CheckpointError(f"model.m1_run={run_dir!r}: its checkpoint does not fit data of shape "
                              f"{tuple(data_shape)} ({str(e).splitlines()[0]})") from None
    return m1.eval()
