"""The declarative vocabulary of vaekit's configuration: typed dataclass fields with a doc and, where it applies,
a range, a length, named choices or a syntax. Validation, ``--help`` and the docs read the same declarations.

    @dataclass
    class LadderOptions:
        latent_dims: list[int] = option(default_factory=lambda: [64, 32], doc="sizes, bottom to top", min=1)
        merge: bool = option(True, doc="precision-weighted merge of the bottom-up and top-down Gaussians")

Types: ``bool``, ``int``, ``float`` (always finite), ``str``, ``Literal[...]`` (the allowed values), ``X | None``
(null allowed), unions of those (``int | Literal["all"]``), ``list[X]`` and ``dict[str, Any]``.
Field metadata (all optional but ``doc``):

- ``min`` / ``max`` (inclusive), ``gt`` / ``lt`` (exclusive): the range of a number, or of each entry of a list;
- ``length``: how many entries a list holds;
- ``choices``: a callable giving the allowed names of a ``str`` (a registry's names, read when needed);
- ``syntax``: ``(regex, how to write it)`` for a ``str`` with a form (``cuda:N``);
- ``schema``: for an options mapping, ``(selector field, callable name -> options dataclass)``: the mapping is
  the options of the component the selector names (``model.likelihood_options`` of ``model.likelihood``);
- ``path``: a file or folder, recorded as an absolute path when a run starts.

An options dataclass may define ``check(self, model, key)`` for rules across keys (``model.arch=mlp`` for M2).
Imports nothing heavy: ``vaekit train --help`` is generated from these declarations without torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from dataclasses import MISSING, Field
from typing import Any, Callable, Iterable, Literal

__all__ = ["ConfigError", "Activation", "option", "nearest", "coerce", "check_field", "check_dataclass",
           "parse_options", "type_text", "default_text", "describe", "field_hints"]


class ConfigError(ValueError):
    """A bad configuration: unknown key, wrong type, impossible value."""


#: the activation names ``vaekit.nn.mlp.activation`` builds (``model.act``, the IAF's ``act``)
Activation = Literal["relu", "tanh", "elu", "gelu", "silu", "softplus", "leaky_relu"]


def option(default: Any = MISSING, *, doc: str, default_factory: Callable[[], Any] | Any = MISSING,
           **rules: Any) -> Any:
    """A dataclass field with its doc and rules (module docstring) in the field's metadata."""
    known = {"min", "max", "gt", "lt", "length", "choices", "syntax", "schema", "path"}
    assert set(rules) <= known, set(rules) - known  # a typo in a declaration is a bug, not user input
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"doc": doc, **rules})


def nearest(name: Any, names: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the closest of ``names``, or ""."""
    close = difflib.get_close_matches(str(name), list(names), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


@functools.lru_cache(maxsize=None)
def field_hints(cls: type) -> dict[str, Any]:
    """The resolved type annotations of a dataclass (cached)."""
    return typing.get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _arms(tp: Any) -> tuple[list[Any], bool]:
    """(the non-null types of ``tp``, whether null is allowed)."""
    if _is_union(tp):
        args = typing.get_args(tp)
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp`` (an int for a float, a scalar for a one-entry list), or ConfigError naming ``key``."""
    arms, nullable = _arms(tp)
    if value is None:
        if nullable or tp is Any:
            return None
        raise ConfigError(f"{key} must be {_words(tp)}, got null")
    if len(arms) == 1:
        return _coerce_one(value, arms[0], key)
    for arm in sorted(arms, key=lambda a: typing.get_origin(a) is not Literal):  # 'all' before int
        try:
            return _coerce_one(value, arm, key)
        except ConfigError:
            continue
    raise ConfigError(f"{key} must be {_words(tp)}, got {value!r}")


def _words(tp: Any) -> str:
    """A type for a message: "an integer, 'all' or null"."""
    arms, nullable = _arms(tp)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    plural = {int: "integers", float: "numbers", str: "strings", bool: "true or false values"}
    parts = [" or ".join(repr(v) for v in typing.get_args(a)) if typing.get_origin(a) is Literal
             else f"a list of {plural.get(typing.get_args(a)[0], 'names')}" if typing.get_origin(a) is list
             else names.get(a, "a mapping") for a in arms] + (["null"] if nullable else [])
    return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]


def _coerce_one(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}{nearest(value, args)}")
    if origin is list:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]  # train.loggers=mlflow means [mlflow]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce_one(v, args[0], key) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping like {{name: value}}, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or int(value) != value:
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise AssertionError(f"undeclared type {tp!r} of {key}")  # the vocabulary lacks it: a bug


def _range_text(meta: typing.Mapping[str, Any], short: bool = False) -> str:
    """The declared range in words ("at least 1", "in [0, 1)"), or as symbols (">= 1") when ``short``."""
    lo = ("[", meta["min"]) if "min" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["max"]) if "max" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return (">= " if short else "at least ") + str(lo[1]) if lo[0] == "[" else \
            ("> " if short else "greater than ") + str(lo[1])
    if hi:
        return ("<= " if short else "at most ") + str(hi[1]) if hi[0] == "]" else \
            ("< " if short else "less than ") + str(hi[1])
    return ""


def _in_range(v: float, meta: typing.Mapping[str, Any]) -> bool:
    return (("min" not in meta or v >= meta["min"]) and ("max" not in meta or v <= meta["max"])
            and ("gt" not in meta or v > meta["gt"]) and ("lt" not in meta or v < meta["lt"]))


def check_field(value: Any, tp: Any, meta: typing.Mapping[str, Any], key: str) -> Any:
    """``value`` coerced to ``tp`` and checked against the field's rules; ConfigError naming ``key``."""
    value = coerce(value, tp, key)
    if value is None:
        return None
    null = " (or null)" if _arms(tp)[1] else ""
    numbers = [v for v in (value if isinstance(value, list) else [value])
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    bad = [v for v in numbers if not _in_range(v, meta)]
    if bad:
        if isinstance(value, list):
            raise ConfigError(f"every entry of {key} must be {_range_text(meta)}, got {value!r}")
        raise ConfigError(f"{key} must be {_range_text(meta)}{null}, got {value!r}")
    if "length" in meta and isinstance(value, list) and len(value) != meta["length"]:
        raise ConfigError(f"{key} must hold {meta['length']} values, got {value!r}")
    if "choices" in meta and isinstance(value, str):
        names = list(meta["choices"]())
        if value not in names:
            raise ConfigError(f"unknown {key} {value!r}{nearest(value, names)} (choose from {', '.join(names)})")
    if "syntax" in meta and isinstance(value, str):
        pattern, how = meta["syntax"]
        if not re.fullmatch(pattern, value):
            raise ConfigError(f"{key} must be {how}, got {value!r}")
    return value


def check_dataclass(obj: Any, prefix: str) -> Any:
    """A copy of a dataclass instance with every field checked (``check_field``; keys ``prefix + name``)."""
    hints = field_hints(type(obj))
    values = {f.name: check_field(getattr(obj, f.name), hints[f.name], f.metadata, prefix + f.name)
              for f in dataclasses.fields(obj) if f.init}
    return dataclasses.replace(obj, **values)


def parse_options(cls: type, mapping: Any, key: str, what: str) -> Any:
    """The options dataclass ``cls`` from a mapping (``model.posterior_options``), every field checked; a name
    ``cls`` lacks is an error naming the key, the nearest valid name and what to do. ``what``: "iaf posterior"."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{key} must be a mapping like {{name: value}}, got {mapping!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    for k in mapping:
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            takes = ", ".join(names) if names else "no options"
            raise ConfigError(f"{key} has {k!r}, which the {what} does not take ({hint}it takes: {takes}); "
                              f"remove it, e.g. {key}={{}}")
    hints = field_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return cls(**{k: check_field(v, hints[k], fields[k].metadata, f"{key}.{k}") for k, v in mapping.items()})


# -- how a declaration reads in --help and the docs --------------------------------------------------------


def type_text(tp: Any, meta: typing.Mapping[str, Any] | None = None) -> str:
    """A declared type (and its rules) in words: ``int >= 1``, ``mlp | conv``, ``list of int >= 1 or null``."""
    meta = meta or {}
    arms, nullable = _arms(tp)
    text = " or ".join(_arm_text(a, meta) for a in arms)
    return text + " or null" if nullable else text


def _arm_text(tp: Any, meta: typing.Mapping[str, Any]) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin is list:
        n = f"{meta['length']} " if "length" in meta else ""
        return f"list of {n}{_arm_text(args[0], meta)}"
    if origin is dict or tp is dict:
        return "mapping"
    if tp is bool:
        return "true | false"
    if tp is str:
        if "choices" in meta:
            return " | ".join(meta["choices"]())
        return meta["syntax"][1] if "syntax" in meta else "str"
    if tp is Any:
        return "any"
    rng = _range_text(meta, short=True)
    name = tp.__name__
    return f"{name} {rng}" if rng else name


def default_text(f: Field) -> str:
    """A field's default as YAML would write it (``null``, ``true``, ``[256]``, ``{}``)."""
    value = f.default_factory() if f.default_factory is not MISSING else f.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value).replace('"', "")
    return str(value)


def describe(cls: type, prefix: str) -> list[tuple[str, str, str, str]]:
    """(key, type in words, default, doc) of each field of an options dataclass."""
    hints = field_hints(cls)
    return [(prefix + f.name, type_text(hints[f.name], f.metadata), default_text(f), f.metadata.get("doc", ""))
            for f in dataclasses.fields(cls) if f.init and "doc" in f.metadata]
