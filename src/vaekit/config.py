"""Typed run configuration: dataclasses, YAML load/dump, ``key=value`` overrides, and ``validate``.

Every key is a dataclass field declared with its type, default, doc and rules (``vaekit.options``); the model
section holds what every family shares plus the chosen family's options (declared with the family in
``vaekit.models.registry``), the likelihood's, posterior's and objective's options as mappings whose schema
their registries declare. Reading a file or overrides checks the keys and their types; ``validate`` checks
everything else (ranges, names, rules across keys) and runs before anything is loaded or written.
``vaekit train --help`` is generated from the same declarations (``vaekit.config_help.keys_help``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from vaekit.model_config import ModelConfig, component_options, family_keys, validate_model
from vaekit.options import ConfigError, check_dataclass, check_field, coerce, field_hints, nearest, option

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "TrainConfig", "EvalConfig", "RunConfig", "load_config",
           "apply_overrides", "config_to_dict", "config_from_dict", "dump_config", "valid_keys", "validate",
           "validate_model", "component_options", "read_config_file", "YamlLoader", "parse_yaml",
           "FILE_METADATA", "check_yaml_bounds", "check_bounds"]

#: top-level keys a config file may hold that are not config: what the file is (presets have one)
FILE_METADATA = ("description",)


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


def _dataset_names() -> list[str]:
    from vaekit.data.registry import DATASETS

    return list(DATASETS)


@dataclass
class DataConfig:
    """``data.*``: what to train on."""

    name: str = option("digits", doc="dataset (`vaekit datasets` lists them)", choices=_dataset_names)
    dir: str | None = option(None, doc="data directory (null: $VAEKIT_DATA_DIR, else ~/.cache/vaekit/data)")
    path: str | None = option(None, doc="file or folder of the image-folder and arrays datasets")
    binarize: Literal["none", "static", "dynamic"] = option("none", doc="binarise grey values: once, or per batch")
    dequantize: bool = option(False, doc="uniform dequantisation of 8-bit data (continuous likelihoods)")
    val_fraction: float = option(0.1, doc="held out from train when a dataset has no validation split", min=0, lt=1)
    image_size: list[int] | None = option(None, doc="resize images to [H, W]", min=1, length=2)
    grayscale: bool | None = option(None, doc="convert images to one channel (null: as stored)")
    classes: list[int] | None = option(None, doc="keep only these labels (e.g. one model per class)", min=0)
    labels: int | Literal["all"] | None = option(
        None, doc="a supervised objective: N labelled training examples, balanced over the classes, or all", min=1)
    merge_val: bool = option(False, doc="train on train + val (nothing to validate on: 'best' is the last weights)")
    dataset_options: dict[str, Any] = option(default_factory=dict, doc="per dataset, e.g. dsprites {n_train: 100000}")
    storage: Literal["auto", "float32", "memory", "mmap", "stream"] = option(
        "auto", doc="how training examples are held: memory (8-bit data as uint8, converted per batch), float32, "
        "mmap (.npy), stream (image files decoded in worker processes); auto: memory, or mmap/stream for user "
        "data over memory_limit_mb")
    memory_limit_mb: float = option(2048.0, doc="storage=auto: larger .npy data / image folders are not loaded "
                                    "into memory", gt=0)
    workers: int = option(2, doc="storage=stream: decoding worker processes (0: in the training process)", min=0)
    on_error: Literal["skip", "error"] = option("skip", doc="storage=stream: an unreadable image is skipped "
                                                "(counted in the log) or stops the run")


@dataclass
class TrainConfig:
    """``train.*``: how long and how to train."""

    epochs: int = option(10, doc="passes over the training data", min=1)
    steps: int | None = option(None, doc="optimiser steps; overrides epochs when set", min=1)
    time_limit: float | None = option(None, doc="seconds of training; stops cleanly at the next step", gt=0)
    time_clock: Literal["wall", "cpu"] = option("wall", doc="what time_limit counts (cpu: the process's CPU "
                                                            "seconds, all threads)")
    batch_size: int = option(128, doc="examples per step (the global batch under torchrun)", min=1)
    lr: float = option(1e-3, doc="Adam's learning rate", gt=0)
    lr_schedule: Literal["constant", "cosine", "exponential"] = option("constant", doc="learning-rate schedule")
    lr_decay: float = option(1.0, doc="exponential: factor per epoch", gt=0)
    min_lr: float = option(0.0, doc="cosine: the final learning rate", min=0)
    weight_decay: float = option(0.0, doc="Adam's L2 weight decay", min=0)
    betas: list[float] = option(default_factory=lambda: [0.9, 0.999], doc="Adam's (beta1, beta2)", min=0, lt=1,
                                length=2)
    grad_clip: float | None = option(None, doc="clip the gradient's global norm to this", gt=0)
    skip_threshold: float | None = option(None, doc="skip the update when the gradient's global norm (before "
                                                    "clipping) is above this (VDVAE); a skip counts as a bad step",
                                          gt=0)
    val_every: int | None = option(None, doc="steps between validations (null: once per epoch)", min=1)
    patience: int | None = option(None, doc="stop after this many validations without improvement", min=1)
    checkpoint_every: int | None = option(None, doc="steps between 'last' checkpoints (null: at each validation)",
                                          min=1)
    max_bad_steps: int = option(10, doc="stop after this many non-finite or skipped steps in a row", min=1)
    init_from: str | None = option(None, doc="start from the weights of another run's best checkpoint (a run "
                                             "folder; the same model); a fresh optimiser and schedule", path=True)
    threads: int | None = option(None, doc="CPU threads (null: torch's default)", min=1)
    device: str = option("cpu", doc="where to train (exact resume is guaranteed on CPU)",
                         syntax=(r"cpu|cuda(:\d+)?|mps|auto", "cpu, cuda, cuda:N, mps or auto"))
    progress: bool = option(True, doc="show a progress bar")
    malloc_tuning: bool = option(True, doc="raise glibc's malloc thresholds at start-up (vaekit.tuning)")
    fused_adam: bool = option(True, doc="use torch's fused Adam where the device has it")
    ema_decay: float | None = option(None, doc="average the weights (e.g. 0.999) for validation, 'best' and "
                                               "evaluation", min=0, lt=1)
    snapshot_every: int | None = option(None, doc="steps between saved posterior means of 1,000 validation points "
                                                  "(latent GIF)", min=1)
    tensorboard: bool = option(False, doc="also log scalars and image grids to RUN/tensorboard")
    precision: Literal["fp32", "bf16", "fp16"] = option("fp32", doc="autocast precision (fp16 with a GradScaler; "
                                                                    "densities stay float32)")
    compile: bool = option(False, doc="torch.compile the objective's forward (needs a C++ compiler on CPU)")
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = option(default_factory=list,
                                                                      doc="experiment trackers")
    logger_options: dict[str, Any] = option(default_factory=dict, doc="per tracker, e.g. {mlflow: {experiment: "
                                                                      "digits}, wandb: {project: vae}}")


@dataclass
class EvalConfig:
    """``eval.*``: how a run is measured."""

    iw_samples: int = option(1000, doc="importance samples K of the log p(x) estimate", min=1)
    batch_size: int = option(500, doc="examples per evaluation batch", min=1)


@dataclass
class RunConfig:
    """A whole run: a seed, a name and the four sections."""

    seed: int = option(0, doc="fixes data order, initialisation and sampling", min=0)
    name: str = option("run", doc="the run's name (the preset's; default folder runs/<name>-<time>)")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}


def valid_keys() -> list[str]:
    """Every dotted key a config can set: ``seed``, ``data.name``, ..., each family's ``model.*`` keys."""
    keys = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _SECTIONS]
    for section, cls in _SECTIONS.items():
        names = ModelConfig.keys() if cls is ModelConfig else [f.name for f in dataclasses.fields(cls)]
        keys += [f"{section}.{n}" for n in names]
    return keys


def _unknown(key: str) -> ConfigError:
    hint = nearest(key, valid_keys()) or "; `vaekit train --help` lists the keys"
    return ConfigError(f"unknown config key {key!r}{hint}")


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The nested plain mapping config.yaml holds (the model section flat)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(RunConfig):
        value = getattr(cfg, f.name)
        out[f.name] = (value.to_dict() if isinstance(value, ModelConfig)
                       else dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        key = prefix + str(k)
        if isinstance(v, dict) and not key.endswith("_options"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _section(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """A section dataclass from a mapping of its keys, each coerced to its declared type."""
    hints = field_hints(cls)
    return cls(**{k: coerce(v, hints[k], prefix + k) for k, v in values.items()})


def config_from_flat(flat: dict[str, Any], cfg: RunConfig) -> RunConfig:
    """A new RunConfig: ``cfg`` with dotted keys set (in any order); unknown keys and wrong types are errors."""
    d = config_to_dict(cfg)
    keys = set(valid_keys())
    family = flat.get("model.family")
    if family is not None and family != d["model"].get("family"):  # a new family: the old one's keys go with it
        owners = family_keys()  # (those the new family declares too, or set here, stay and are checked)
        d["model"] = {k: v for k, v in d["model"].items()
                      if k not in owners or family in owners[k] or f"model.{k}" in flat}
    for key, value in flat.items():
        if key not in keys:
            raise _unknown(key)
        section, _, leaf = key.rpartition(".")
        (d[section] if section else d)[leaf] = value
    top = field_hints(RunConfig)
    return RunConfig(**{k: coerce(d[k], top[k], k) for k in top if k not in _SECTIONS},
                     data=_section(DataConfig, d["data"], "data."), model=ModelConfig.parse(d["model"]),
                     train=_section(TrainConfig, d["train"], "train."), eval=_section(EvalConfig, d["eval"], "eval."))


def config_from_dict(d: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Merge a nested mapping into a copy of ``base`` (default RunConfig()), checking every key."""
    return config_from_flat(_flatten(d), base if base is not None else RunConfig())


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


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of keys a YAML config file holds, without its metadata (``FILE_METADATA``)."""
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
    return {k: v for k, v in d.items() if k not in FILE_METADATA}


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a YAML file of nested keys on top of ``base``."""
    return check_bounds(config_from_dict(read_config_file(path), base))


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
    """The config as YAML (what config.yaml and ``--print-config`` show)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def validate(cfg: RunConfig) -> RunConfig:
    """Check every value of ``cfg``: types, ranges, choices and names (with the nearest valid one), the chosen
    components' options and the rules across keys they declare. Returns the checked copy (numbers as their
    declared types); ConfigError, one line naming the key and what to do, at the first problem."""
    top = {f.name: check_field(getattr(cfg, f.name), field_hints(RunConfig)[f.name], f.metadata, f.name)
           for f in dataclasses.fields(RunConfig) if f.name not in _SECTIONS}
    out = RunConfig(**top, data=check_dataclass(cfg.data, "data."), model=validate_model(cfg.model),
                    train=check_dataclass(cfg.train, "train."), eval=check_dataclass(cfg.eval, "eval."))
    from vaekit.objectives.registry import OBJECTIVES

    if out.data.labels is not None and not OBJECTIVES[out.model.objective].supervised:
        takers = [n for n, s in OBJECTIVES.items() if s.supervised]
        raise ConfigError(f"data.labels labels training examples for a supervised objective (model.objective="
                          f"{'/'.join(takers)}), not model.objective={out.model.objective}; remove it (or set "
                          f"model.objective={takers[0]})")
    return out
