"""Names the CLI and configs can use -> builders: models and objectives from a ModelConfig, presets by name."""

from __future__ import annotations

import difflib
from importlib import resources
from typing import TYPE_CHECKING, Any, Sequence

from vaekit.config import ConfigError, ModelConfig, RunConfig, config_from_dict

if TYPE_CHECKING:
    from torch import nn

    from vaekit.objectives import Objective

__all__ = ["build_model", "build_objective", "list_presets", "load_preset"]


def build_model(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    """Build the model a ModelConfig describes for data of shape ``data_shape`` (``vaekit.models.registry``),
    after validating it (``vaekit.config.validate_model``)."""
    from vaekit.config import validate_model
    from vaekit.models.registry import build_family

    return build_family(validate_model(m), data_shape)


def build_objective(m: ModelConfig, n_train: int | None = None, supervision: Any = None) -> Objective:
    """The training objective a ModelConfig describes: ``model.objective`` (elbo: beta, KL warm-up, free bits,
    L samples; beta-tcvae; factor-vae; m2) with ``model.objective_options``, after validating the model section
    (``vaekit.config.validate_model``); ``n_train`` (the training set size) fills options that need it
    (beta-tcvae's dataset_size); ``supervision`` (``vaekit.objectives.semi_supervised.Supervision``) holds the
    labels of a semi-supervised objective."""
    from vaekit.config import validate_model
    from vaekit.objectives.registry import make_objective

    m = validate_model(m)
    try:
        return make_objective(m, n_train=n_train, supervision=supervision)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def list_presets() -> dict[str, str]:
    """Preset name -> its description (``vaekit.presets.list_presets``)."""
    from vaekit.presets import list_presets as _list

    return _list()


def load_preset(name: str) -> RunConfig:
    """The RunConfig of a named preset."""
    from vaekit.config import FILE_METADATA, parse_yaml

    presets = list_presets()
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint} (`vaekit presets` lists them)")
    text = resources.files("vaekit.presets").joinpath(name + ".yaml").read_text(encoding="utf-8")
    d = {k: v for k, v in (parse_yaml(text) or {}).items() if k not in FILE_METADATA}
    cfg = config_from_dict(d)
    cfg.name = name
    return cfg
