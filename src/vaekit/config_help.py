"""The config keys in words, generated from their declarations: the key lists of ``vaekit train --help`` (and of
every command that takes keys) and of the docs. Imports no torch."""

from __future__ import annotations

import textwrap
from typing import Iterable

from vaekit.options import describe

__all__ = ["ALL", "keys_help", "key_rows"]

INTRO = ("config keys: key=value after the command (values are YAML: model.hidden=[200,200], train.steps=null), "
         "or nested in a --config YAML file. Each key: its type, its default, what it does.")


def _section_rows(title: str, rows: list[tuple[str, str, str, str]]) -> list[tuple[str, list]]:
    return [(title, rows)] if rows else []


ALL = ("run", "data", "model", "train", "eval")


def key_rows(sections: Iterable[str] = ALL) -> list[tuple[str, list]]:
    """(heading, [(key, type, default, doc), ...]) for each group of keys: run, data, the model keys every family
    shares, each family's keys, each likelihood's, posterior's and objective's options, train, eval."""
    from vaekit.config import DataConfig, EvalConfig, RunConfig, TrainConfig
    from vaekit.model_config import ModelConfig

    groups: list[tuple[str, list]] = []
    if "run" in sections:
        groups += _section_rows("run", describe(RunConfig, ""))
    if "data" in sections:
        groups += _section_rows("data", describe(DataConfig, "data."))
    if "model" in sections:
        groups += _model_rows(ModelConfig)
    if "train" in sections:
        groups += _section_rows("train", describe(TrainConfig, "train."))
    if "eval" in sections:
        groups += _section_rows("eval", describe(EvalConfig, "eval."))
    return groups


def _model_rows(model_cls: type) -> list[tuple[str, list]]:
    from vaekit.likelihoods.registry import LIKELIHOOD_SPECS
    from vaekit.models.registry import FAMILIES
    from vaekit.objectives.registry import OBJECTIVES
    from vaekit.posteriors.registry import POSTERIOR_SPECS

    readers: dict[str, list[str]] = {}
    for name, spec in OBJECTIVES.items():
        for key in spec.reads:
            readers.setdefault(key, []).append(name)
    shared = [(k, t, d, doc + (f" (model.objective={'/'.join(readers[k[6:]])})" if k[6:] in readers else ""))
              for k, t, d, doc in describe(model_cls, "model.")]
    groups = [("model: keys every family shares", shared)]
    for fam in FAMILIES.values():
        groups += _section_rows(f"model: model.family={fam.name} ({fam.doc})", describe(fam.options, "model."))
    for what, specs, key in (("likelihood", LIKELIHOOD_SPECS, "likelihood_options"),
                             ("posterior", POSTERIOR_SPECS, "posterior_options"),
                             ("objective", OBJECTIVES, "objective_options")):
        plain = []
        for name, spec in specs.items():
            rows = describe(spec.options, "")
            if not rows:
                plain.append(name)
                continue
            doc = getattr(spec, "doc", None) or getattr(spec, "description", "")
            groups.append((f"model.{key} of model.{what}={name} ({doc}), e.g. model.{key}={{{rows[0][0]}: "
                           f"{rows[0][2]}}}", rows))
        if plain:
            groups.append((f"model.{what}={'/'.join(plain)} takes no model.{key}", []))
    return groups


def keys_help(sections: Iterable[str] = ALL, width: int = 100) -> str:
    """The groups of ``key_rows`` as text: a heading per group, then one wrapped entry per key."""
    out = textwrap.wrap(INTRO, width) + [""]
    for heading, rows in key_rows(tuple(sections)):
        out += textwrap.wrap(heading, width)
        for key, tp, default, doc in rows:
            out += textwrap.wrap(f"{key}  {tp}, default {default}: {doc}", width, initial_indent="  ",
                                 subsequent_indent="      ", break_on_hyphens=False)
        out.append("")
    return "\n".join(out).rstrip() + "\n"
