"""Names the CLI and configs can use -> builders. The only place a config object is unpacked into kwargs."""

from __future__ import annotations

import difflib
from importlib import resources
from typing import Sequence

from torch import nn

from vaekit.config import ConfigError, ModelConfig, RunConfig, config_from_dict
from vaekit.objectives import ELBO

__all__ = ["build_model", "build_objective", "list_presets", "load_preset", "MODEL_FAMILIES"]

MODEL_FAMILIES = ("vae", "ladder")


def build_model(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    """Build the model a ModelConfig describes for data of shape ``data_shape``."""
    try:
        if m.family == "vae":
            from vaekit.models import build_vae

            return build_vae(
                data_shape, arch=m.arch, latent_dim=m.latent_dim, hidden=m.hidden, act=m.act,
                conv_channels=m.conv_channels, likelihood=m.likelihood, likelihood_kwargs=m.likelihood_options,
                posterior=m.posterior, posterior_kwargs=m.posterior_options, dropout=m.dropout,
            )
        if m.family == "ladder":
            if m.dropout:
                raise ConfigError("model.dropout is for family=vae with the mlp decoder; set model.dropout=0")
            from vaekit.models.ladder import build_ladder

            return build_ladder(
                data_shape, arch=m.arch, latent_dims=m.latent_dims, hidden=m.hidden, act=m.act,
                conv_channels=m.conv_channels, likelihood=m.likelihood, likelihood_kwargs=m.likelihood_options,
                batch_norm=m.batch_norm, merge=m.merge,
            )
    except TypeError as e:  # an unknown entry in likelihood_options / posterior_options
        raise ConfigError(f"bad model option: {e}") from None
    raise ConfigError(f"unknown model.family {m.family!r}; choose from {', '.join(MODEL_FAMILIES)}")


def build_objective(m: ModelConfig) -> ELBO:
    """The training objective a ModelConfig describes (beta, KL warm-up, free bits, L samples)."""
    return ELBO(beta=m.beta, warmup_steps=m.warmup_steps, free_bits=m.free_bits, n_samples=m.n_samples)


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description (the YAML file's first comment line)."""
    out = {}
    for f in sorted(resources.files("vaekit.presets").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            lines = f.read_text().splitlines()
            out[f.name[:-5]] = lines[0].lstrip("# ").strip() if lines else ""
    return out


def load_preset(name: str) -> RunConfig:
    """The RunConfig of a named preset."""
    import yaml

    presets = list_presets()
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint} (`vaekit presets` lists them)")
    text = resources.files("vaekit.presets").joinpath(name + ".yaml").read_text()
    cfg = config_from_dict(yaml.safe_load(text) or {})
    cfg.name = name
    return cfg
