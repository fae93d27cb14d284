"""Typed run configuration: dataclasses, YAML load/dump, ``key=value`` overrides.

Unknown keys are errors naming the closest valid key; values are coerced to the field's type, so a missing
key never silently becomes None.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "TrainConfig", "EvalConfig", "RunConfig",
           "load_config", "apply_overrides", "config_to_dict", "config_from_dict", "dump_config", "valid_keys",
           "check_values", "YamlLoader", "parse_yaml", "check_yaml_bounds", "check_bounds"]


class ConfigError(ValueError):
    """A bad configuration: unknown key, wrong type, impossible value."""


class YamlLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with YAML 1.2's floats: ``1e-3``, ``2E-3``, ``1e3``, ``.5e-2`` are numbers.

    PyYAML follows YAML 1.1, whose float pattern needs a dot and a signed exponent (``1.0e-3``), so the
    scientific notation everyone types is read as a string. Only the float resolver changes (the implicit
    resolvers are copied, not shared with SafeLoader); ``1_000``, booleans and the rest read as before.
    """


YamlLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


#: bounds on YAML text, checked on its event stream before a Python object is made: its length (characters; a
#: config file's size in bytes), nesting depth, and values with every alias expanded (an alias bomb's size)
MAX_YAML_CHARS = 1 << 18
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 10_000


def parse_yaml(text: str, where: str = "the YAML text") -> Any:
    """``yaml.safe_load`` with scientific notation read as numbers (``YamlLoader``), after ``check_yaml_bounds``
    (ConfigError naming ``where``)."""
    check_yaml_bounds(text, where)
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def check_yaml_bounds(text: str, where: str) -> None:
    """ConfigError when ``text`` is longer than MAX_YAML_CHARS, nests collections deeper than MAX_YAML_DEPTH or
    holds more than MAX_YAML_NODES values once its aliases are expanded. Reads PyYAML's event stream (its parser
    keeps no recursion and builds nothing), so a bomb or a 1000-deep mapping costs its length, not its expansion;
    syntax errors are left to the loader (a YAMLError)."""
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"{where} is {len(text)} characters long, above the limit of {MAX_YAML_CHARS}; a config "
                          f"is a few kilobytes")
    anchors: dict[Any, tuple[int, int]] = {}  # anchor -> (values in it, collection levels in it)
    stack: list[list[Any]] = []  # open collections: [anchor, values before it, tallest child's levels]
    nodes = 0

    def add(count: int, levels: int) -> None:
        nonlocal nodes
        nodes += count
        if len(stack) + levels > MAX_YAML_DEPTH:
            raise ConfigError(f"{where} nests collections more than {MAX_YAML_DEPTH} levels deep; flatten it")
        if nodes > MAX_YAML_NODES:
            raise ConfigError(f"{where} holds more than {MAX_YAML_NODES} values once its aliases (*name) are "
                              f"expanded; a config is a few hundred")
        if stack:
            stack[-1][2] = max(stack[-1][2], levels)

    try:
        for ev in yaml.parse(text, Loader=YamlLoader):
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                add(0, 1)
                stack.append([ev.anchor, nodes, 0])
                nodes += 1
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, start, tallest = stack.pop()
                if anchor is not None:
                    anchors[anchor] = (nodes - start, tallest + 1)
                add(0, tallest + 1)
            elif isinstance(ev, yaml.ScalarEvent):
                if ev.anchor is not None:
                    anchors[ev.anchor] = (1, 0)
                add(1, 0)
            elif isinstance(ev, yaml.AliasEvent):
                add(*anchors.get(ev.anchor, (1, 0)))
    except yaml.YAMLError:
        return  # the loader reports it, with its line and column


@dataclass
class DataConfig:
    name: str = "digits"            # registry name (vaekit datasets lists them)
    dir: str | None = None           # data directory; default $VAEKIT_DATA_DIR or ~/.cache/vaekit/data
    path: str | None = None          # file or folder for image-folder / arrays
    binarize: str = "none"           # none | static | dynamic
    dequantize: bool = False         # uniform dequantisation of 8-bit data (continuous likelihoods)
    val_fraction: float = 0.1        # held out from train when a dataset has no validation split
    image_size: list[int] | None = None
    grayscale: bool | None = None
    classes: list[int] | None = None  # keep only these labels (e.g. one model per class)
    labels: int | str | None = None   # semi-supervised (model.family=m2): N labelled training examples, or "all"
    merge_val: bool = False          # train on train + val (no validation: 'best' is the last weights)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # per dataset, e.g. dsprites {n_train: 100000}


@dataclass
class ModelConfig:
    family: str = "vae"              # vae | ladder
    arch: str = "mlp"                # mlp | conv
    latent_dim: int = 10
    latent_dims: list[int] = field(default_factory=lambda: [64, 32])   # ladder: bottom to top
    hidden: list[int] = field(default_factory=lambda: [256])
    act: str = "relu"
    dropout: float = 0.0             # mlp decoder: dropout after each hidden layer (regularises p(x|z))
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])
    conv_out: str = "conv3x3"        # vae, conv: conv3x3 | deconv (last transposed conv gives the image channels)
    likelihood: str = "bernoulli"
    likelihood_options: dict[str, Any] = field(default_factory=dict)  # e.g. {sigma: 0.1}
    posterior: str = "gaussian"      # gaussian | iaf
    posterior_options: dict[str, Any] = field(default_factory=dict)   # e.g. {steps: 2, context: 50}
    batch_norm: bool = False         # ladder
    merge: bool = True               # ladder: precision-weighted merge (False: bottom-up only)
    n_classes: int = 10              # m2: classes of y
    m1_run: str | None = None        # m2: a trained VAE run whose posterior means M2 models (M1+M2)
    m1_units: list[int] | str | None = None  # m2 with m1_run: M1's units M2 models: all (None), active, [i, ...]
    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0
    n_samples: int = 1
    objective: str = "elbo"          # elbo | beta-tcvae | factor-vae (vaekit.objectives.registry)
    objective_options: dict[str, Any] = field(default_factory=dict)  # e.g. {gamma: 10} for factor-vae


@dataclass
class TrainConfig:
    epochs: int = 10
    steps: int | None = None         # overrides epochs when set
    time_limit: float | None = None  # seconds of training; stops cleanly at the next step
    time_clock: str = "wall"         # what time_limit counts: wall | cpu (the process's CPU seconds, all threads)
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"    # constant | cosine | exponential
    lr_decay: float = 1.0            # exponential: factor per epoch
    min_lr: float = 0.0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam's (beta1, beta2); Pyro's SS-VAE: [0.95, 0.999]
    grad_clip: float | None = None
    val_every: int | None = None     # steps between validations; default once per epoch
    patience: int | None = None      # early stopping after this many validations without improvement
    checkpoint_every: int | None = None  # steps between 'last' checkpoints; default at each validation
    max_bad_steps: int = 10          # stop after this many non-finite steps in a row
    threads: int | None = None
    device: str = "cpu"              # cpu | cuda | auto (exact resume is guaranteed on CPU)
    progress: bool = True
    malloc_tuning: bool = True       # `vaekit train` raises glibc's malloc thresholds at start-up (vaekit.tuning)
    fused_adam: bool = True
    ema_decay: float | None = None   # average the weights (e.g. 0.999) for validation, 'best' and evaluation
    snapshot_every: int | None = None  # steps between saved posterior means of a fixed subset (latent GIF)
    tensorboard: bool = False        # also log scalars and image grids to run_dir/tensorboard
    precision: str = "fp32"          # fp32 | bf16 | fp16 (autocast; fp16 with a GradScaler; densities in float32)
    compile: bool = False            # torch.compile the objective's forward (opt-in; needs a C++ compiler on CPU)
    loggers: list[str] = field(default_factory=list)  # experiment trackers: tensorboard, mlflow, wandb
    logger_options: dict[str, Any] = field(default_factory=dict)  # {mlflow: {tracking_uri, experiment}, wandb: {...}}


@dataclass
class EvalConfig:
    iw_samples: int = 1000
    batch_size: int = 500


@dataclass
class RunConfig:
    seed: int = 0
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def valid_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """All dotted keys of a config class (``model.beta``, ...)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            keys += valid_keys(t, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else "; `vaekit train --help` lists the keys"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for a in inner[1:]:  # int | str: the first type that takes the value as it is
            if a in (int, str) and isinstance(value, a) and not isinstance(value, bool):
                return value
        return _coerce(value, inner[0], key)
    if origin is list:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]  # train.loggers=mlflow means [mlflow]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping like {{name: value}}, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def config_from_dict(d: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Merge a nested mapping into a copy of ``base`` (default RunConfig()), validating every key."""
    cfg = dataclasses.replace(base) if base is not None else RunConfig()
    cfg = config_from_flat(_flatten(d), cfg)
    return cfg


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        key = prefix + str(k)
        if isinstance(v, dict) and not key.endswith("_options"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_from_flat(flat: dict[str, Any], cfg: RunConfig) -> RunConfig:
    """Set dotted keys on a deep copy of cfg."""
    cfg = config_from_plain(config_to_dict(cfg))
    keys = set(valid_keys())
    for key, value in flat.items():
        if key not in keys:
            raise _unknown(key)
        *parents, leaf = key.split(".")
        obj = cfg
        for p in parents:
            obj = getattr(obj, p)
        tp = typing.get_type_hints(type(obj))[leaf]
        setattr(obj, leaf, _coerce(value, tp, key))
    return cfg


def config_from_plain(d: dict[str, Any]) -> RunConfig:
    cfg = RunConfig()
    for f in dataclasses.fields(RunConfig):
        if f.name in d:
            v = d[f.name]
            if dataclasses.is_dataclass(getattr(cfg, f.name)):
                setattr(cfg, f.name, type(getattr(cfg, f.name))(**v))
            else:
                setattr(cfg, f.name, v)
    return cfg


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``key=value`` strings (values parsed as YAML: ``model.hidden=[200,200]``, ``train.steps=null``)."""
    flat: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=5)")
        key, raw = item.split("=", 1)
        try:
            value = parse_yaml(raw, f"the value of {key.strip()}") if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        flat[key.strip()] = value
    return check_bounds(config_from_flat(flat, cfg))


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a YAML file of nested keys on top of ``base``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found")
    size = p.stat().st_size
    if size > MAX_YAML_CHARS:  # refused before it is read
        raise ConfigError(f"config file {str(p)!r} is {size} bytes, above the limit of {MAX_YAML_CHARS}; a config is "
                          f"a few kilobytes")
    try:
        d = parse_yaml(p.read_text(encoding="utf-8"), f"config file {str(p)!r}") or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {e.start}: {e.reason}); save it as "
                          f"UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {_yaml_problem(e)}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of keys")
    return check_bounds(config_from_dict(d, base))


def check_bounds(cfg: RunConfig) -> RunConfig:
    """ConfigError naming the key when the config asks for more than ``vaekit.limits`` allows (a latent size or
    width above 65536, more than 64 layers, networks of over 2**30 weights, ...), before anything is built from
    it. Returns ``cfg``."""
    from vaekit.limits import MAX_LIST, MAX_SIZE, model_problem

    problem = model_problem(config_to_dict(cfg)["model"])
    size, classes = cfg.data.image_size, cfg.data.classes
    if problem is None and size is not None and any(not abs(n) <= MAX_SIZE for n in size):
        problem = f"data.image_size = {size!r} has a side above the limit of {MAX_SIZE}"
    if problem is None and classes is not None and len(classes) > MAX_LIST:
        problem = f"data.classes lists {len(classes)} entries, above the limit of {MAX_LIST}"
    if problem is not None:
        raise ConfigError(f"{problem}; use a smaller value")
    return cfg


def _yaml_problem(e: yaml.YAMLError) -> str:
    """'<problem> at line L, column C' from a PyYAML error (its first line alone names no place)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else what


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


# (key, smallest allowed value, None allowed): numbers that must be positive counts or sizes
_AT_LEAST = (("train.epochs", 1, False), ("train.steps", 1, True), ("train.batch_size", 1, False),
             ("train.threads", 1, True), ("train.val_every", 1, True), ("train.patience", 1, True),
             ("train.checkpoint_every", 1, True), ("train.max_bad_steps", 1, False),
             ("train.snapshot_every", 1, True), ("model.latent_dim", 1, False), ("model.n_samples", 1, False),
             ("model.warmup_steps", 0, False), ("eval.iw_samples", 1, False), ("eval.batch_size", 1, False))
_POSITIVE = ("train.lr", "train.time_limit", "train.grad_clip")
_NON_NEGATIVE = ("model.beta", "model.free_bits", "train.weight_decay", "train.min_lr")
_SIZES = ("model.hidden", "model.latent_dims", "model.conv_channels", "data.image_size")


def _get(cfg: RunConfig, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def check_values(cfg: RunConfig) -> RunConfig:
    """ConfigError naming the key when a value is of the right type but impossible (``train.steps=-5``,
    ``model.latent_dim=0``, ``model.hidden=[-5]``, ``train.threads=0``, a NaN learning rate). Returns ``cfg``."""
    import math

    for key, low, nullable in _AT_LEAST:
        v = _get(cfg, key)
        if v is None and nullable:
            continue
        if v is None or v < low:
            raise ConfigError(f"{key} must be at least {low}{' (or null)' if nullable else ''}, got {v!r}")
    for key in _POSITIVE + _NON_NEGATIVE:
        v = _get(cfg, key)
        if v is None and key in _POSITIVE and key != "train.lr":
            continue
        if v is None or not math.isfinite(v) or (v <= 0 if key in _POSITIVE else v < 0):
            what = "a positive number" if key in _POSITIVE else "zero or more"
            raise ConfigError(f"{key} must be {what}, got {v!r}")
    for key in _SIZES:
        v = _get(cfg, key)
        if v is not None and any(n < 1 for n in v):
            raise ConfigError(f"{key} must hold positive sizes, got {v!r}")
    if cfg.data.image_size is not None and len(cfg.data.image_size) != 2:
        raise ConfigError(f"data.image_size must be [H, W], got {cfg.data.image_size!r}")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.model.dropout!r}")
    b = cfg.train.betas
    if len(b) != 2 or not all(isinstance(v, (int, float)) and 0.0 <= v < 1.0 for v in b):
        raise ConfigError(f"train.betas must be two numbers in [0, 1) (Adam's beta1, beta2), got {b!r}")
    if cfg.train.time_clock not in ("wall", "cpu"):
        raise ConfigError(f"train.time_clock must be wall or cpu, got {cfg.train.time_clock!r}")
    lab = cfg.data.labels
    if lab is not None and not ((isinstance(lab, int) and lab >= 1) or lab == "all"):
        raise ConfigError(f"data.labels must be a number of labelled examples (at least 1) or 'all', got {lab!r}")
    if lab is not None and cfg.model.family != "m2":
        raise ConfigError("data.labels applies to model.family=m2 (semi-supervised training); remove it")
    u = cfg.model.m1_units
    if u is not None and not cfg.model.m1_run:
        raise ConfigError("model.m1_units picks units of an M1 run (M1+M2); set model.m1_run or remove it")
    if isinstance(u, str) and u != "active":
        raise ConfigError(f"model.m1_units must be active or a list of unit indices, got {u!r}")
    if isinstance(u, list) and (not u or len(set(u)) != len(u) or min(u) < 0):
        raise ConfigError(f"model.m1_units must be distinct unit indices >= 0 (at least one), got {u!r}")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction!r}")
    return cfg
