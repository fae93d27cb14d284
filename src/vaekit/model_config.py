"""The model section of a run config: what every family shares, plus the chosen family's options.

In files the section is flat (``model.latent_dim: 10``, ``model.merge: true``); in memory the keys every family
shares are fields of ``ModelConfig`` and the family's own keys live in ``options``, the dataclass its registry
entry declares (``VAEOptions``, ``LadderOptions``, ...). Both read and write as before: ``m.latent_dim`` is
``m.options.latent_dim``, and ``ModelConfig(family="ladder", merge=False)`` puts ``merge`` into LadderOptions.

A key of another family is kept aside (``misplaced``) when its value differs from that family's default, so
``validate_model`` can name it and its family; at its default it is dropped, which is how the flat 24-key model
sections of older config files and saved models load. Reading a key of another family gives its declared
default (code written against the flat config keeps working).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from vaekit.options import Activation, ConfigError, check_dataclass, check_field, coerce, field_hints, nearest, \
    option, parse_options

__all__ = ["ModelConfig", "validate_model", "component_options", "model_fields", "family_keys"]


def _families() -> dict[str, Any]:
    from vaekit.models.registry import FAMILIES

    return FAMILIES


def _family_names() -> list[str]:
    return list(_families())


def _likelihood_names() -> list[str]:
    from vaekit.likelihoods.registry import likelihood_names

    return likelihood_names()


def _likelihood_options(name: str) -> type:
    from vaekit.likelihoods.registry import likelihood_options

    return likelihood_options(name)


def _objective_names() -> list[str]:
    from vaekit.objectives.registry import objective_names

    return objective_names()


def _objective_options(name: str) -> type:
    from vaekit.objectives.registry import objective_options

    return objective_options(name)


def family_keys() -> dict[str, list[str]]:
    """Each family-owned key -> the families that declare it, in registry order."""
    owners: dict[str, list[str]] = {}
    for fam in _families().values():
        for f in dataclasses.fields(fam.options):
            owners.setdefault(f.name, []).append(fam.name)
    return owners


def _default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _at_owner_default(key: str, value: Any) -> bool:
    fams = _families()
    return any(value == _default(fams[n].options, key) for n in family_keys().get(key, ()))


@dataclass(init=False)
class ModelConfig:
    """``model.*``: the keys every family shares; the family's own keys in ``options`` (module docstring)."""

    family: str = option("vae", doc="the model family; its own keys are listed below", choices=_family_names)
    arch: Literal["mlp", "conv"] = option("mlp", doc="MLP, or convolutional encoder and decoder")
    hidden: list[int] = option(default_factory=lambda: [256], doc="widths of the MLP's hidden layers (after a "
                                                                  "conv stem: its fully connected layers)", min=1)
    act: Activation = option("relu", doc="activation of the nets")
    conv_channels: list[int] = option(default_factory=lambda: [32, 64], doc="arch=conv: channels of the "
                                                                            "stride-2 conv layers", min=1)
    likelihood: str = option("bernoulli", doc="the p(x|z) head", choices=_likelihood_names)
    likelihood_options: dict[str, Any] = option(default_factory=dict, doc="options of the likelihood (below)",
                                                schema=("likelihood", _likelihood_options))
    beta: float = option(1.0, doc="weight of the KL term (β-VAE); 1 is the ELBO", min=0)
    warmup_steps: int = option(0, doc="ramp β linearly from 0 over this many steps (KL warm-up)", min=0)
    free_bits: float = option(0.0, doc="nats per latent dimension below which its KL is not pushed down", min=0)
    n_samples: int = option(1, doc="latent samples per example in the bound", min=1)
    objective: str = option("elbo", doc="the training objective", choices=_objective_names)
    objective_options: dict[str, Any] = option(default_factory=dict, doc="options of the objective (below)",
                                               schema=("objective", _objective_options))
    options: Any = dataclasses.field(default=None, repr=True)       # the family's options dataclass
    misplaced: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)  # keys of other families

    def __init__(self, family: str = "vae", *, options: Any = None, misplaced: dict[str, Any] | None = None,
                 **keys: Any) -> None:
        for f in _shared_fields():
            value = keys.pop(f.name) if f.name in keys else _default(ModelConfig, f.name)
            object.__setattr__(self, f.name, value)
        object.__setattr__(self, "family", family)
        unknown = [k for k in keys if k not in family_keys()]
        if unknown:
            raise ConfigError(f"unknown config key 'model.{unknown[0]}'{nearest('model.' + unknown[0], _all_keys())}")
        given = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
        self._route({**given, **(misplaced or {}), **keys})

    def _route(self, keys: dict[str, Any]) -> None:
        """Set ``options`` from the family's keys in ``keys``; keep the others' non-default values aside."""
        fam = _families().get(self.family)
        own = {f.name for f in dataclasses.fields(fam.options)} if fam else set()
        object.__setattr__(self, "options", fam.options(**{k: v for k, v in keys.items() if k in own})
                           if fam else None)
        object.__setattr__(self, "misplaced", {k: v for k, v in keys.items()
                                               if k not in own and (fam is None or not _at_owner_default(k, v))})

    def __getattr__(self, name: str) -> Any:  # only for names that are not fields: the family's keys
        if name.startswith("__") or name in ("options", "misplaced"):
            raise AttributeError(name)
        opts, misplaced = self.__dict__.get("options"), self.__dict__.get("misplaced", {})
        if opts is not None and name in {f.name for f in dataclasses.fields(opts)}:
            return getattr(opts, name)
        if name in misplaced:
            return misplaced[name]
        owners = family_keys().get(name)
        if owners:
            return _default(_families()[owners[0]].options, name)
        raise AttributeError(f"ModelConfig has no key {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "family":
            object.__setattr__(self, "family", value)
            self._route({**self._own(), **self.misplaced})
        elif name in {f.name for f in dataclasses.fields(self)}:
            object.__setattr__(self, name, value)
        elif self.options is not None and name in {f.name for f in dataclasses.fields(self.options)}:
            setattr(self.options, name, value)
        elif name in family_keys():
            self.misplaced[name] = value
        else:
            raise AttributeError(f"ModelConfig has no key {name!r}")

    def _own(self) -> dict[str, Any]:
        return dataclasses.asdict(self.options) if self.options is not None else {}

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping a config file holds: the family, its keys, the shared keys, then any misplaced ones."""
        import copy

        shared = {f.name: copy.deepcopy(getattr(self, f.name)) for f in _shared_fields()}
        return {"family": self.family, **self._own(), **shared, **copy.deepcopy(self.misplaced)}

    @classmethod
    def keys(cls) -> list[str]:
        """Every key the section can hold: the shared ones, then each family's (in registry order)."""
        return _all_keys()

    @classmethod
    def parse(cls, values: dict[str, Any]) -> ModelConfig:
        """A ModelConfig from a flat mapping (a file's model section), each value coerced to its declared type
        (a family key by its family's declaration); unknown keys are errors naming the nearest valid one."""
        values = dict(values)
        hints, shared = field_hints(cls), {f.name for f in _shared_fields()}
        family = coerce(values.pop("family", "vae"), str, "model.family")
        fams, owners = _families(), family_keys()
        out: dict[str, Any] = {}
        for k, v in values.items():
            if k in shared:
                out[k] = coerce(v, hints[k], f"model.{k}")
            elif k in owners:
                fam = fams[family] if family in fams and family in owners[k] else fams[owners[k][0]]
                out[k] = coerce(v, field_hints(fam.options)[k], f"model.{k}")
            else:
                raise ConfigError(f"unknown config key 'model.{k}'{nearest('model.' + k, _all_keys())}")
        return cls(family, **out)


def _shared_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(ModelConfig) if "doc" in f.metadata]


def _all_keys() -> list[str]:
    return [f.name for f in _shared_fields()] + list(family_keys())


def model_fields(m: ModelConfig) -> Iterator[tuple[Any, dataclasses.Field]]:
    """(the object holding it, the field) for every key of the model: the shared ones, then the family's."""
    for obj in (m, m.options):
        for f in dataclasses.fields(obj):
            if "doc" in f.metadata:
                yield obj, f


def component_options(m: ModelConfig, kind: str) -> Any:
    """The typed options of the model's chosen ``kind`` ("likelihood", "posterior", "objective"): its options
    mapping (``model.<kind>_options``) read as the dataclass the component's registry declares."""
    for obj, f in model_fields(m):
        selector, resolve = f.metadata.get("schema", (None, None))
        if selector == kind:
            name = getattr(obj, selector)
            return parse_options(resolve(name), getattr(obj, f.name), f"model.{f.name}", f"{name} {kind}")
    raise KeyError(f"model.family={m.family} has no {kind}")


def _misplaced_error(m: ModelConfig) -> ConfigError:
    key = next(iter(m.misplaced))
    owners = family_keys()[key]
    return ConfigError(f"model.{key} applies to model.family={'/'.join(owners)}, not model.family={m.family}; "
                       f"remove it (or set model.family={owners[0]})")


def validate_model(m: ModelConfig) -> ModelConfig:
    """The model section checked (``vaekit.config.validate``'s part): every shared key and every key of the
    family, the options of its likelihood, posterior and objective, the rules the family's options declare
    (``check``), what the objective reads from the shared keys and needs from the family. Returns a checked
    copy."""
    from vaekit.objectives.registry import OBJECTIVES

    shared = {f.name: check_field(getattr(m, f.name), field_hints(ModelConfig)[f.name], f.metadata, f"model.{f.name}")
              for f in _shared_fields()}
    if m.misplaced:
        raise _misplaced_error(m)
    fam = _families()[shared["family"]]
    out = ModelConfig(**shared, options=check_dataclass(m.options, "model."))
    for obj, f in model_fields(out):  # each component's options, then the rules they declare
        if "schema" in f.metadata:
            typed = component_options(out, f.metadata["schema"][0])
            getattr(typed, "check", lambda *_: None)(out, f"model.{f.name}")
            object.__setattr__(obj, f.name, {k: getattr(typed, k) for k in getattr(obj, f.name) or {}})
    getattr(out.options, "check", lambda *_: None)(out, "model")
    spec = OBJECTIVES[out.objective]
    for need in sorted(spec.needs - fam.capabilities):
        takers = [n for n, f in _families().items() if need in f.capabilities]
        raise ConfigError(f"model.objective={out.objective} needs a {need} model (model.family="
                          f"{'/'.join(takers) or 'none'}), not model.family={fam.name}; change one of them")
    for key in dict.fromkeys(k for s in OBJECTIVES.values() for k in s.reads):
        if key not in spec.reads and getattr(out, key) != _default(ModelConfig, key):
            readers = [n for n, s in OBJECTIVES.items() if key in s.reads]
            raise ConfigError(f"model.{key} applies to model.objective={'/'.join(readers)}, not "
                              f"model.objective={out.objective}; remove it (or set model.objective={readers[0]})")
    return out
