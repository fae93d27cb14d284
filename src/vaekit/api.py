"""The high-level Python API: train a VAE on your own arrays or tensors, save it, load it back.

    import numpy as np, vaekit
    x = np.random.default_rng(0).normal(size=(1000, 20)).astype("float32")     # your data, (N, *shape)
    model = vaekit.fit(x, model={"latent_dim": 4, "likelihood": "sigma-vae"}, train={"steps": 500})
    vaekit.save(model, "model.safetensors")                                    # weights + JSON header
    model = vaekit.load("model.safetensors")                                   # or a run folder
    print(vaekit.estimate_log_likelihood(model, x[:100], k=100))               # numpy in, nats out

``fit`` runs vaekit's one training loop (the same as ``vaekit train``) and leaves the process as it found it
(thread count, global RNGs, denormal flag; glibc malloc settings untouched). A saved model is a safetensors file
of weights whose header holds a JSON document (format name and version, the model config, the data shape,
package versions), with a readable copy beside it as ``.json``; loading never unpickles.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from vaekit.config import (ConfigError, RunConfig, apply_overrides, config_from_dict, config_to_dict, load_config,
                           validate)
from vaekit.process_state import preserve_process_state

__all__ = ["FORMAT", "FORMAT_VERSION", "fit", "save", "load", "push_to_hub", "write_hub_folder"]

FORMAT = "vaekit.model"
FORMAT_VERSION = 1
_SECTIONS = ("data", "model", "train", "eval")


def _config(preset: str | None, config: Any, sections: Mapping[str, Any], overrides: Sequence[str],
            seed: int | None) -> tuple[RunConfig, set[str]]:
    """The RunConfig: preset (or the defaults), then config (RunConfig / mapping / YAML file), then the
    keyword sections, then ``key=value`` overrides, validated (``vaekit.config.validate``). Also returns the
    train keys the caller set explicitly."""
    unknown = set(sections) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"unknown keyword {sorted(unknown)[0]!r}; fit takes config sections "
                          f"{', '.join(_SECTIONS)} (e.g. model={{'latent_dim': 8}})")
    if preset is not None:
        from vaekit.registry import load_preset

        cfg = load_preset(preset)
    else:
        cfg = RunConfig(name="python")
    explicit: set[str] = set()
    if isinstance(config, RunConfig):
        cfg = config_from_dict(config_to_dict(config))
    elif isinstance(config, Mapping):
        cfg = config_from_dict(dict(config), cfg)
        explicit |= set(dict(config).get("train", {}) or {})
    elif config is not None:
        cfg = load_config(config, cfg)
    cfg = config_from_dict({k: dict(v) for k, v in sections.items()}, cfg)
    explicit |= set(sections.get("train", {}) or {})
    cfg = apply_overrides(cfg, list(overrides))
    explicit |= {o.split("=", 1)[0].strip().removeprefix("train.") for o in overrides}
    if seed is not None:
        cfg.seed = int(seed)
    return validate(cfg), explicit


def _split(x: torch.Tensor, val: Any, cfg: RunConfig, y: torch.Tensor | None = None,
           val_y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, Any, Any]:
    """(train x, val x, train y, val y): the given val, else a seeded held-out part of x (and of y with it)."""
    from vaekit.data.base import split_indices
    from vaekit.utils import as_data_tensor

    if val is not None:
        v = as_data_tensor(val).float()
        if tuple(v.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"val has examples of shape {tuple(v.shape[1:])}, x of shape {tuple(x.shape[1:])}")
        return x, v, y, val_y
    if val_y is not None:
        raise ValueError("val_y labels the examples of val; give val too (or neither: a part of x and y is held out)")
    if cfg.data.val_fraction == 0 or cfg.data.merge_val:
        return x, None, y, None
    train, held, _ = split_indices(x.shape[0], test_fraction=0.0, val_fraction=cfg.data.val_fraction, seed=cfg.seed)
    tr, he = torch.from_numpy(train), torch.from_numpy(held)
    pick = (lambda t, i: None if t is None else t[i])
    return x[tr], (x[he] if len(held) else None), pick(y, tr), (pick(y, he) if len(held) else None)


def _labels(y: Any, n: int, n_classes: int, name: str) -> torch.Tensor:
    """(n,) int64 class ids in 0..K-1, -1 for an unlabelled example (scikit-learn's semi-supervised convention)."""
    import numpy as np

    raw = y.values if hasattr(y, "values") else y
    try:
        t = raw if isinstance(raw, torch.Tensor) else torch.as_tensor(np.asarray(raw))
    except (TypeError, ValueError, RuntimeError):  # text labels, objects, ragged lists
        try:
            kind = type(next(iter(raw))).__name__.rstrip("_")  # numpy's str_ reads as str
        except (TypeError, StopIteration):
            kind = type(raw).__name__
        raise ValueError(f"{name} must hold integer class ids 0..{n_classes - 1} (-1 for an unlabelled example), "
                         f"one per example; got {kind} values: map the labels to ids first (e.g. with "
                         f"sklearn.preprocessing.LabelEncoder)") from None
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must hold one label per example, shape ({n},), got {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        if t.is_floating_point() and bool((t == t.round()).all()):
            t = t.round()
        else:
            raise ValueError(f"{name} must hold integer class ids (-1 for unlabelled), got {t.dtype}")
    t = t.long()
    bad = (t < -1) | (t >= n_classes)
    if bool(bad.any()):
        raise ValueError(f"{name} holds {int(t[bad][0])}; labels are class ids 0..{n_classes - 1} (model.n_classes) "
                         "or -1 for an unlabelled example")
    return t


def _needs_labels(cfg: RunConfig, y: Any, val_y: Any) -> bool:
    """Check y against the objective: a semi-supervised one (model.objective=m2) needs it, the others refuse it."""
    from vaekit.objectives.registry import OBJECTIVES

    spec = OBJECTIVES.get(cfg.model.objective)
    supervised = spec is not None and spec.supervised
    if not supervised:
        if y is not None or val_y is not None:
            raise ValueError(f"y= labels the examples for a semi-supervised model (model={{'family': 'm2', "
                             f"'objective': 'm2'}}); model.objective={cfg.model.objective} trains on x alone")
        return False
    if y is None:
        raise ValueError(f"model.objective={cfg.model.objective} trains with labels: give y= (one class id per "
                         "example, -1 where unlabelled)")
    return True


def fit(x: Any, y: Any = None, *, val: Any = None, val_y: Any = None, preset: str | None = None, config: Any = None,
        overrides: Sequence[str] = (), seed: int | None = None, run_dir: str | Path | None = None,
        progress: bool = True, verbose: bool = False, **sections: Mapping[str, Any]) -> nn.Module:
    """Train a VAE on ``x`` and return it (the best validation weights; the last ones without validation).

    x: (N, *shape) numpy array, pandas DataFrame or tensor of numbers: (N, D) tabular rows or (N, C, H, W)
        images. A Bernoulli
        likelihood (the default) needs values in [0, 1]; for real-valued data choose e.g.
        ``model={"likelihood": "sigma-vae"}`` (README "Choosing a likelihood").
    y: labels for a semi-supervised model only (``model={"family": "m2", "objective": "m2", "n_classes": K}``,
        Kingma et al. 2014): (N,) class ids 0..K-1 (an array, a list or a pandas Series), -1 where an example
        is unlabelled (scikit-learn's convention); every label known is the conditional VAE. The labelled examples' bound and q(y|x)'s loss
        join each step (``vaekit.objectives.semi_supervised``). The checkpoint: the best accuracy of q(y|x) on
        the labelled validation examples (val_y, or the held-out part of y), the best validation ELBO if none.
    val: validation data of the same shape; None holds out ``data.val_fraction`` (0.1) of x (and of y), seeded.
    val_y: labels of val (-1 allowed), for the validation accuracy of a semi-supervised model.
    preset: a named preset (``vaekit presets``) as the starting point (its model and training settings);
        config: a RunConfig, a nested mapping or a YAML file on top; then the keyword sections
        (``model={...}``, ``train={...}``, ``data={...}``, ``eval={...}``) and ``key=value`` ``overrides``.
        The data section's ``val_fraction``, ``merge_val`` and ``binarize`` ("none" or "dynamic") apply.
    seed: overrides the config's seed (initialisation, data order, sampling).
    run_dir: keep the run folder there (config.yaml, metrics.jsonl, best/last checkpoints, what
        ``train.loggers`` write); ``vaekit.load(run_dir)`` and ``vaekit sample RUN`` read it. None: a temporary
        folder, removed at the end.
    progress: a progress bar where someone watches (terminal, notebook).
    verbose: vaekit's log lines while training (one per validation: step, loss, ELBO), as ``vaekit train``
        prints them where no bar is shown. False (the default): none at INFO level (warnings still show).

    The returned model has ``history_``: the training records, one dict per validation (``step``, ``epoch``,
    ``loss``, ``rec``, ``kl``, ``val_elbo`` with validation data, ...), as the run folder's metrics.jsonl holds
    them; ``pandas.DataFrame(model.history_)`` tabulates them.
    """
    from vaekit.utils import as_data_tensor

    cfg, explicit = _config(preset, config, sections, overrides, seed)
    if "malloc_tuning" not in explicit:
        cfg.train.malloc_tuning = False  # process-wide and cannot be undone: only when asked for
    if cfg.train.malloc_tuning:
        from vaekit.tuning import tune_malloc

        tune_malloc()
    cfg.train.progress = bool(progress) and cfg.train.progress
    if run_dir is None and "checkpoint_every" not in explicit:
        cfg.train.checkpoint_every = 2**31 - 1  # nobody resumes a temporary folder: 'last' only at the end
    x, val = _from_frame(x), _from_frame(val)
    data = as_data_tensor(x).float()
    if not torch.isfinite(data).all():
        raise ValueError("x holds NaN or infinite values; remove or impute them before training")
    if _needs_labels(cfg, y, val_y):
        y = _labels(y, len(data), cfg.model.n_classes, "y")
        if val_y is not None and val is not None:  # val_y without val: _split says so
            val_y = _labels(val_y, len(as_data_tensor(val)), cfg.model.n_classes, "val_y")
    train_x, val_x, y, val_y = _split(data, val, cfg, y, val_y)
    if cfg.data.binarize not in ("none", "dynamic") or cfg.data.dequantize:
        raise ConfigError("fit takes data.binarize=none or dynamic and no data.dequantize (your arrays have no "
                          "known number of levels); prepare the data before calling fit")
    from vaekit.runs import train_arrays

    with preserve_process_state(), _quiet(not verbose):
        cfg, model, history = train_arrays(cfg, train_x, val_x, None if run_dir is None else Path(run_dir),
                                           labels=None if y is None else (y, val_y))
    model.history_ = history
    return _tag(model, config_to_dict(cfg)["model"], train_x.shape[1:])


def _from_frame(x: Any) -> Any:
    """A pandas DataFrame or Series as its numpy array (its index and column names dropped); anything else as
    it is. (``as_data_tensor`` reads an object's ``.x``: a DataFrame's column named x must not be taken for it.)"""
    if type(x).__module__.startswith("pandas") and hasattr(x, "to_numpy"):
        from pandas.api.types import is_numeric_dtype

        arr = x.to_numpy()
        if arr.dtype.kind not in "biuf":
            bad = [str(c) for c, d in x.dtypes.items() if not is_numeric_dtype(d)] if hasattr(x, "columns") else []
            raise ValueError("expected numbers, got a DataFrame with non-numeric columns "
                             f"({', '.join(bad[:3]) or arr.dtype}); encode or drop them first")
        return arr
    return x


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """Below WARNING, the ``vaekit`` logger says nothing for the block; its level is put back afterwards."""
    if not quiet:
        yield
        return
    logger = logging.getLogger("vaekit")
    old = logger.level
    logger.setLevel(max(old, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(old)


def _model_dict(model_config: Any) -> dict[str, Any]:
    """The model section as a plain dict, every key validated (a ModelConfig or a mapping of its keys)."""
    from vaekit.config import ModelConfig

    if isinstance(model_config, ModelConfig):
        return config_to_dict(RunConfig(model=model_config))["model"]
    return config_to_dict(config_from_dict({"model": dict(model_config)}))["model"]


def _tag(model: nn.Module, model_config: dict[str, Any], data_shape: Sequence[int]) -> nn.Module:
    """Remember how to rebuild the model (``save`` writes it into the file's header)."""
    model.vaekit_spec = {"model": dict(model_config), "data_shape": [int(s) for s in data_shape]}
    return model


def save(model: nn.Module, path: str | Path, *, model_config: Any = None,
         data_shape: Sequence[int] | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors; the JSON document in its header and beside it as
    ``.json``), atomically. Models from ``fit`` and ``load`` know their config; for a model built by hand pass
    ``model_config`` (a ``ModelConfig`` or mapping of its keys) and ``data_shape``. Returns the path."""
    from vaekit.training.checkpoint import save_checkpoint

    spec = getattr(model, "vaekit_spec", None)
    if model_config is not None:
        mc = _model_dict(model_config)
        shape = data_shape if data_shape is not None else getattr(model, "data_shape", None)
        if shape is None:
            raise ValueError("save needs data_shape for this model")
        spec = {"model": dict(mc), "data_shape": [int(s) for s in shape]}
    if spec is None:
        raise ValueError("this model does not know its config (it was not made by vaekit.fit or vaekit.load); "
                         "pass model_config=ModelConfig(...) and data_shape=... to save")
    path = Path(path)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": spec["model"],
           "data": {"shape": spec["data_shape"]}}
    save_checkpoint(path, {f"model.{k}": v for k, v in model.state_dict().items()}, doc)
    return path


def load(path: str | Path, checkpoint: str = "best") -> nn.Module:
    """A model (eval mode) from a file ``save`` wrote, a run checkpoint (``best.safetensors``), a run folder
    (its ``checkpoint``: best or last), or a model shared on the Hugging Face Hub: ``"hf://user/name"`` (or
    ``"hf://user/name@revision"``; ``vaekit.push_to_hub``, needs ``pip install 'vaekit[hub]'``). CheckpointError for
    a missing, corrupt or newer-format file."""
    if isinstance(path, str) and path.startswith("hf://"):
        from vaekit.hub import hub_download

        path = hub_download(path)
    from vaekit.registry import build_model
    from vaekit.runs import load_run
    from vaekit.training.checkpoint import CheckpointError, check_saved_model, load_checkpoint

    path = Path(path)
    with preserve_process_state():  # building a model seeds torch's RNG
        if path.is_dir():
            cfg, model, doc = load_run(path, checkpoint)
            return _tag(model, config_to_dict(cfg)["model"], doc["data"]["shape"])
        tensors, doc = load_checkpoint(path)
        check_saved_model(doc, path)  # bounded before anything is built from the header
        if doc.get("format") == FORMAT:
            if int(doc.get("format_version", 0)) > FORMAT_VERSION:
                raise CheckpointError(f"{str(path)!r} has format version {doc['format_version']}; this vaekit reads "
                                      f"up to {FORMAT_VERSION}: upgrade vaekit")
            mc, shape = doc["model"], doc["data"]["shape"]
        elif "config" in doc and "shape" in doc.get("data", {}):
            mc, shape = doc["config"].get("model", {}), doc["data"]["shape"]
        else:
            raise CheckpointError(f"{str(path)!r} is a safetensors file but not a vaekit model or checkpoint")
        model = build_model(config_from_dict({"model": dict(mc)}).model, shape)
        try:
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        except RuntimeError as e:
            raise CheckpointError(f"{str(path)!r} does not match its model config ({str(e).splitlines()[0]})") from None
        return _tag(model.eval(), _model_dict(mc), shape)


def write_hub_folder(model: nn.Module, folder: str | Path, *, repo_id: str = "user/model",
                     card: str | None = None) -> Path:
    """Write what ``push_to_hub`` uploads into ``folder``: model.safetensors and model.json (``save``) and a model
    card README.md (``vaekit.hub.model_card``, or ``card``). Returns the folder."""
    from vaekit.hub import WEIGHTS_NAME, model_card
    from vaekit.utils import atomic_write_text

    folder = Path(folder)
    save(model, folder / WEIGHTS_NAME)  # model.json beside it
    atomic_write_text(folder / "README.md", card if card is not None else
                      model_card(getattr(model, "vaekit_spec", None) or {}, repo_id))
    return folder


def push_to_hub(model: nn.Module, repo_id: str, *, private: bool | None = None, token: str | None = None,
                revision: str | None = None, commit_message: str = "Upload vaekit model",
                card: str | None = None) -> Any:
    """Share ``model`` (made by ``fit`` or ``load``) on the Hugging Face Hub as ``repo_id`` ("user/name"; the
    repository is created if missing, ``private`` as given): model.safetensors, model.json and a model card
    README.md (``card`` replaces the generated one). Returns huggingface_hub's commit info (its ``commit_url``).
    ``vaekit.load("hf://user/name")`` reads it back. Needs ``pip install 'vaekit[hub]'``."""
    import tempfile

    from vaekit.hub import parse_hub_id, require_hub, upload_folder

    repo_id, _ = parse_hub_id(repo_id)
    require_hub()
    with tempfile.TemporaryDirectory(prefix="vaekit-hub-") as tmp:
        folder = write_hub_folder(model, tmp, repo_id=repo_id, card=card)
        return upload_folder(folder, repo_id, private=private, token=token, revision=revision,
                             commit_message=commit_message)
