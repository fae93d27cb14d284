"""Bounds on what a config or a saved model's header may ask for, checked before anything is built from it.

A model config is a recipe for allocations: ``model.latent_dim: 1000000000`` or ``model.hidden: [65536, 65536]``
would ask for hundreds of gigabytes before any other check ran. These limits are far above any model vaekit
trains (the largest preset has under a million weights) and far below what would exhaust a machine:

- ``MAX_SIZE``: any one size — ``model.latent_dim``, ``model.n_classes``, each width in ``model.hidden``,
  ``model.latent_dims``, ``model.conv_channels``, each side in ``data.image_size``, every whole number among
  ``model.likelihood_options`` / ``model.posterior_options`` and every number in a list among any ``*_options``;
- ``MAX_LAYERS``: entries of a layer list (``model.hidden``, ``model.latent_dims``, ``model.conv_channels``, a
  list inside an options mapping); ``MAX_LIST``: entries of any other list (``model.m1_units``, ``data.classes``);
- ``MAX_DATA_ELEMENTS``: values per example of the data shape a saved model records (1 to 4 dimensions);
- ``MAX_WEIGHTS``: the weights of the networks a model section describes, estimated from its widths
  (``estimate_weights``, meant to over-estimate: 1.1 to 6.4 times the real count for the presets).

No vaekit imports: ``vaekit.config`` and ``vaekit.training.checkpoint`` both use it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

__all__ = ["MAX_SIZE", "MAX_LAYERS", "MAX_LIST", "MAX_DATA_ELEMENTS", "MAX_WEIGHTS", "model_problem",
           "shape_problem", "estimate_weights"]

MAX_SIZE = 2 ** 16
MAX_LAYERS = 64
MAX_LIST = 2 ** 16
MAX_DATA_ELEMENTS = 2 ** 26
MAX_WEIGHTS = 2 ** 30  # 4 GiB of float32

_SIZES = ("latent_dim", "n_classes")
_LAYERS = ("hidden", "latent_dims", "conv_channels")
_OPTIONS = ("likelihood_options", "posterior_options", "objective_options")
_DEFAULTS = {"latent_dim": 10, "n_classes": 10, "hidden": [256], "latent_dims": [64, 32], "conv_channels": [32, 64]}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _whole(v: Any) -> bool:
    """An int, or a float with no fraction (1e5, and infinity: a size nobody can have)."""
    if isinstance(v, float):
        return v.is_integer() or math.isinf(v)
    return isinstance(v, int) and not isinstance(v, bool)


def _size(name: str, v: Any) -> str | None:
    """A problem when v is a number outside [-MAX_SIZE, MAX_SIZE] (or NaN); other types are the type checks'."""
    if _number(v) and not abs(v) <= MAX_SIZE:
        return f"{name} = {v!r} is above the limit of {MAX_SIZE}"
    return None


def _list(name: str, v: Any, limit: int, entries: bool) -> str | None:
    if not isinstance(v, (list, tuple)):
        return None
    if len(v) > limit:
        return f"{name} lists {len(v)} entries, above the limit of {limit}"
    for x in v if entries else ():
        if (p := _size(name, x)) is not None:
            return p
    return None


def _options_problem(name: str, opts: Any, scalars: bool) -> str | None:
    """Lists inside an options mapping (at any depth) hold at most MAX_LAYERS numbers of at most MAX_SIZE; with
    ``scalars``, every whole number too (the options of likelihoods and posteriors are sizes and counts)."""
    stack: list[tuple[str, Any]] = [(name, opts)]
    while stack:
        key, v = stack.pop()
        if isinstance(v, Mapping):
            stack += [(f"{key}.{k}", u) for k, u in v.items()]
        elif isinstance(v, (list, tuple)):
            if (p := _list(key, v, MAX_LAYERS, entries=True)) is not None:
                return p
            stack += [(key, u) for u in v if isinstance(u, (Mapping, list, tuple))]
        elif scalars and _whole(v) and (p := _size(key, v)) is not None:
            return p
    return None


def shape_problem(shape: Any) -> str | None:
    """A problem with a data shape: not 1 to 4 positive whole numbers, or over MAX_DATA_ELEMENTS values."""
    if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 4 or not all(
            _whole(s) and 1 <= s <= MAX_DATA_ELEMENTS for s in shape):
        return f"data shape {shape!r} is not 1 to 4 positive whole numbers of at most {MAX_DATA_ELEMENTS}"
    n = math.prod(int(s) for s in shape)
    if n > MAX_DATA_ELEMENTS:
        return f"data shape {list(shape)} has {n} values per example, above the limit of {MAX_DATA_ELEMENTS}"
    return None


def _ints(v: Any) -> list[int]:
    return [int(x) for x in v if _whole(x) and math.isfinite(x)] if isinstance(v, (list, tuple)) else []


def _chain(widths: Sequence[int]) -> int:
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def estimate_weights(model: Mapping[str, Any], data_shape: Sequence[int] | None = None) -> int:
    """An over-estimate of the weights of the networks ``model`` (a model section, bounded by ``model_problem``'s
    other checks) describes for data of ``data_shape`` (None: the data's own layers are left out): encoder and
    decoder of every latent layer over the data, ``model.hidden`` and twice the latent size, the conv stack, an
    IAF's MADE steps."""
    g = lambda k: model.get(k, _DEFAULTS.get(k))  # noqa: E731
    hidden = _ints(g("hidden"))
    size = lambda v: int(v) if _whole(v) and math.isfinite(v) else 0  # noqa: E731
    # whatever the family: a hierarchy's layer sizes where given, else one latent vector; a class group too
    latents = _ints(model["latent_dims"]) if "latent_dims" in model else [size(g("latent_dim"))]
    latent = sum(latents) + (size(model["n_classes"]) if "n_classes" in model else 0)
    shape = _ints(data_shape) if data_shape is not None else []
    d = math.prod(shape) if shape else 1
    total = 0
    if model.get("arch", "mlp") == "conv" and len(shape) == 3:
        channels = [shape[0], *_ints(g("conv_channels"))]
        total += 2 * 16 * _chain(channels)  # 4 x 4 kernels, encoder and decoder
        d = channels[-1] * max(1, shape[1] >> (len(channels) - 1)) * max(1, shape[2] >> (len(channels) - 1))
    total += max(1, len(latents)) * (_chain([d, *hidden, 2 * latent]) + _chain([latent, *hidden[::-1], 2 * d]))
    post = model.get("posterior_options")
    if isinstance(post, Mapping):
        steps = size(post.get("steps", 2))
        ctx = size(post.get("context", 64))
        made = _ints(post.get("hidden", [320, 320]))
        total += 2 * steps * _chain([latent + ctx, *made, 2 * latent])  # MADE nets and their context inputs
    return total


def model_problem(model: Any, data_shape: Any = None) -> str | None:
    """The first bound a model section (a mapping, as in config.yaml or a saved model's header) and the data
    shape it is for (None: not known yet) break, as one phrase naming the key; None when within every bound.
    Values of a wrong type are left to the config's type checks."""
    if not isinstance(model, Mapping):
        return f"model section is a {type(model).__name__}, not a mapping of keys"
    for key in _SIZES:
        if (p := _size(f"model.{key}", model.get(key))) is not None:
            return p
    for key in _LAYERS:
        if (p := _list(f"model.{key}", model.get(key), MAX_LAYERS, entries=True)) is not None:
            return p
    if (p := _list("model.m1_units", model.get("m1_units"), MAX_LIST, entries=False)) is not None:
        return p
    for key in _OPTIONS:
        if (p := _options_problem(f"model.{key}", model.get(key), key != "objective_options")) is not None:
            return p
    if data_shape is not None and (p := shape_problem(data_shape)) is not None:
        return p
    n = estimate_weights(model, data_shape)
    if n > MAX_WEIGHTS:
        return (f"model's sizes (model.hidden, model.latent_dim, ...) describe networks of about {n:.2g} weights, "
                f"above the limit of 2**30 ({MAX_WEIGHTS})")
    return None
