"""Names the CLI and configs can use -> builders. The only place a config object is unpacked into kwargs."""

from __future__ import annotations

import difflib
from importlib import resources
from typing import Sequence

from torch import nn

from vaekit.config import ConfigError, ModelConfig, RunConfig, config_from_dict
from vaekit.objectives import ELBO

__all__ = ["build_model", "build_objective", "list_presets", "load_preset"]

def build_model(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    """Build the model a ModelConfig describes for data of shape ``data_shape`` (``vaekit.models.registry``)."""
    from vaekit.models.registry import build_family

    return build_family(m, data_shape)


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
