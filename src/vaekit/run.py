"""Run orchestration: data + model + objective built from a RunConfig, trained into a run folder, loaded back,
and its figures and report drawn. Sits above training/, evaluation/ and plots/; none of them imports it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from vaekit.models.contract import CLASSIFIER
from vaekit.config import ConfigError, RunConfig, config_from_dict, config_to_dict, dump_config, load_config
from vaekit.registry import build_model, build_objective
from vaekit.training.checkpoint import CheckpointError, load_checkpoint
from vaekit.training.trainer import Trainer
from vaekit.utils import atomic_write_text

__all__ = ["Prepared", "prepare", "train_run", "check_resume_config", "state_dict_problem",
           "with_recorded_constants", "resolve_m1_units", "check_run_folder", "start_fresh",
           "load_run", "resolve_device", "write_images", "load_test_data",
           "run_figures", "build_report"]

log = logging.getLogger("vaekit.run")


@dataclass
class Prepared:
    cfg: RunConfig
    splits: Any                      # vaekit.data.DataSplits
    model: nn.Module
    transform: Callable | None
    device: torch.device


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """cpu | cuda | cuda:N | mps | auto -> a torch.device that exists here (ConfigError naming ``key`` if not).

    Under torchrun, "cuda" means cuda:LOCAL_RANK (one GPU per process)."""
    import os

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown {key} {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={name} but no CUDA device is available here; use {key}=cpu")
        if dev.index is None and "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if (dev.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"{key}={name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}={name} but MPS (Apple GPU) is not available here; use {key}=cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported {key} {name!r}; use cpu, cuda, cuda:N, mps or auto")
    return dev


def with_recorded_constants(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` whose component options (``model.likelihood_options``, and the family's, e.g. the vae's
    ``model.posterior_options``) spell out every declared option of the chosen component (e.g. the posterior's
    log-variance clamp), so the run folder rebuilds the same model even if a later vaekit changes a default, and
    whose path options (``model.m1_run``) are absolute, so the run loads from any working directory. Given
    values are kept."""
    import dataclasses

    from vaekit.config import component_options, validate
    from vaekit.model_config import model_fields

    cfg = validate(cfg)  # a checked copy: every component is known
    m = cfg.model
    for obj, f in model_fields(m):
        value = getattr(obj, f.name)
        if "schema" in f.metadata:
            value = {**dataclasses.asdict(component_options(m, f.metadata["schema"][0])), **(value or {})}
        elif f.metadata.get("path") and value:
            value = str(Path(value).expanduser().resolve())
        object.__setattr__(obj, f.name, value)
    return cfg


def resolve_m1_units(cfg: RunConfig, train_x: torch.Tensor, n: int = 1000) -> RunConfig:
    """``cfg`` with ``model.m1_units=active`` spelled out as the indices of the M1 run's active units, so the run
    folder rebuilds the same model; other configs unchanged. Active as in Kingma et al. 2014's M1+M2 code
    (learn_yz_x_ss.py): the s.d. over ``n`` training examples (``subset_index``'s fixed draw) of the posterior mean above 0.1,
    i.e. Burda et al.'s A_u > 0.01 (``vaekit.evaluation.metrics.active_units``)."""
    if cfg.model.m1_units != "active":
        return cfg
    import copy

    from vaekit.data import subset_index
    from vaekit.evaluation.metrics import active_units
    from vaekit.models.registry import load_m1

    m1 = load_m1(cfg.model.m1_run, train_x.shape[1:])
    au = active_units(m1, train_x[subset_index(train_x.shape[0], n)], threshold=0.01, seed=cfg.seed)
    units = [int(i) for i in torch.nonzero(au.variance > au.threshold).flatten()]
    if not units:
        raise ConfigError(f"model.m1_units=active: the M1 run {cfg.model.m1_run} has no active unit (no posterior "
                          f"mean varies with s.d. > 0.1); train M1 longer or set model.m1_units to indices")
    log.info("model.m1_units=active: %d of M1's %d units (%s)", len(units), m1.latent_dim, units)
    cfg = copy.deepcopy(cfg)
    cfg.model.m1_units = units
    return cfg


def prepare(cfg: RunConfig, *, build: bool = True) -> Prepared:
    """Check the config (``vaekit.config.validate``), load the data it names and build its model (seeded) and
    batch transform."""
    from vaekit.config import validate
    from vaekit.data import load_data, make_batch_transform

    cfg = validate(cfg)

    d = cfg.data
    splits = load_data(
        d.name, data_dir=d.dir, path=d.path, val_fraction=d.val_fraction, seed=cfg.seed, binarize=d.binarize,
        image_size=tuple(d.image_size) if d.image_size else None, grayscale=d.grayscale,
        options=d.dataset_options,
    )
    if d.classes is not None:
        splits = splits.select_classes(d.classes)
    if d.merge_val:
        splits = splits.merge_val()
    device = resolve_device(cfg.train.device)
    if build:
        cfg = resolve_m1_units(cfg, splits.train.x)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, splits.shape).to(device) if build else None
    transform = make_batch_transform(d.binarize, d.dequantize, splits.n_levels)
    return Prepared(cfg, splits, model, transform, device)


def write_images(model: nn.Module, x: torch.Tensor, run_dir: Path, n: int = 64, seed: int = 0) -> None:
    """samples.png (prior samples) and reconstructions.png (inputs in odd rows, reconstructions below them)."""
    from vaekit.plots import save_image_grid

    if len(model.data_shape) != 3:
        return  # tabular data: no images
    from vaekit.utils import evaluation_context

    with evaluation_context(model, seed):
        save_image_grid(model.sample(n), run_dir / "samples.png", nrow=8)
        xs = x[torch.linspace(0, x.shape[0] - 1, min(32, x.shape[0])).round().long()]  # spread: files may be ordered by class
        rec = model.reconstruct(xs)
        rows = []
        for i in range(0, xs.shape[0], 8):
            rows += [xs[i:i + 8], rec[i:i + 8]]
        save_image_grid(torch.cat(rows), run_dir / "reconstructions.png", nrow=8)


# what --resume may change: how long and how to train, not what is trained on what
RESUMABLE_PREFIXES = ("train.", "eval.")
RESUMABLE_KEYS = ("data.dir", "name")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not k.endswith("_options"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def check_resume_config(old: RunConfig, new: RunConfig) -> None:
    """ConfigError if ``new`` changes anything of ``old`` that a resumed run cannot change (the model, the data,
    the seed): only ``train.*``, ``eval.*``, ``data.dir`` and ``name`` may differ."""
    a, b = _flat(config_to_dict(old)), _flat(config_to_dict(new))
    for key in b:
        if key in RESUMABLE_KEYS or key.startswith(RESUMABLE_PREFIXES):
            continue
        if a.get(key) != b[key]:
            raise ConfigError(f"--resume cannot change {key} ({a.get(key)!r} -> {b[key]!r}): the checkpoint holds "
                              f"a model trained with the old value; start a new run with --out instead")


def state_dict_problem(e: Exception) -> str:
    """The useful part of a ``load_state_dict`` error: its first detail line (and how many more there are)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    details = [ln for ln in lines if not ln.startswith("Error(s) in loading state_dict")]
    if not details:
        return lines[0] if lines else type(e).__name__
    first = details[0].split(". ")[0].rstrip(".")
    more = f"; and {len(details) - 1} more" if len(details) > 1 else ""
    return first + more


def _restore(trainer: Trainer, ckpt: Path) -> None:
    """trainer.restore with every way a checkpoint can fail turned into a one-line CheckpointError."""
    try:
        trainer.restore(ckpt)
    except CheckpointError:
        raise
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {str(ckpt)!r} does not match the run's model config "
                              f"({state_dict_problem(e)})") from None
    except (KeyError, TypeError, IndexError) as e:
        raise CheckpointError(f"checkpoint {str(ckpt)!r} lacks part of the training state ({type(e).__name__}: "
                              f"{e}); it was not written by this vaekit's trainer") from None


def start_fresh(run_dir: Path, cfg: RunConfig) -> None:
    """A new run, or one killed before its first checkpoint: clear vaekit's own leftovers (never other files),
    mark the folder as a run and write its config."""
    from vaekit.runfolder import RUN_FILES, write_marker

    write_marker(run_dir)
    for name in RUN_FILES:
        if name != "config.yaml" and (run_dir / name).is_file():
            (run_dir / name).unlink()
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))


def _check_folder(run_dir: Path, resume: bool, cfg: RunConfig, locked: bool = False) -> str:
    """The folder's state (``folder_state``) once it is known to be usable as asked; nothing is written."""
    from vaekit.runfolder import RunFolderError, check_not_in_use, describe_foreign, folder_state

    state = folder_state(run_dir)
    if state == "foreign":
        raise RunFolderError(describe_foreign(run_dir))
    if state in ("run", "new-run") and not locked:
        check_not_in_use(run_dir)
    if resume:
        if state in ("missing", "empty"):
            raise RunFolderError(f"cannot resume: {str(run_dir)!r} is not a run folder (no vaekit run there)")
        if (run_dir / "config.yaml").is_file():
            check_resume_config(load_config(run_dir / "config.yaml"), cfg)
        if state == "run" and not (run_dir / "last.safetensors").is_file():
            raise CheckpointError(f"cannot resume: {str(run_dir / 'last.safetensors')!r} not found (only 'best' "
                                  f"is left); evaluate the run, or start a new one with --out")
    elif state == "run":
        raise RunFolderError(f"run folder {str(run_dir)!r} already holds a run; use --resume {run_dir} or choose "
                             f"another --out")
    return state


def check_run_folder(run_dir: str | Path, *, locked: bool = False) -> str:
    """Check that a new run may be written into ``run_dir`` (missing, empty, or a vaekit run killed before its
    first checkpoint; not in use, not someone's own files, not a finished run); returns its ``folder_state``."""
    return _check_folder(Path(run_dir), False, RunConfig(), locked=locked)


def train_run(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False,
              callbacks: list | None = None) -> dict[str, Any]:
    """Train the run a config describes into ``run_dir`` (or resume it from its last checkpoint).

    Everything is checked before anything is written: the folder (a new or empty one, or a vaekit run; never a
    folder of the user's own files), a resume's config against the run's (``check_resume_config``), the data,
    the model and the checkpoint. The folder is locked while the run is written (``vaekit.runfolder``). A run
    killed before its first checkpoint is started again from step 0, by a resume or a new training into it.
    """
    import contextlib
    import os

    from vaekit.runfolder import run_lock

    run_dir = Path(run_dir)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 checks and writes the folder
    state = _check_folder(run_dir, resume, cfg) if main_rank else "run"
    if not resume or not (run_dir / "last.safetensors").is_file():  # a new model: record all its constants
        cfg = with_recorded_constants(cfg)
    p = prepare(cfg)
    cfg, splits, model = p.cfg, p.splits, p.model  # p.cfg: model.m1_units=active resolved
    train_x = splits.train.x.to(p.device)
    model.check_input(train_x)  # shape, NaN/inf and likelihood support, once for the whole split
    if len(splits.test) == 0:
        raise ValueError(f"the test split of {splits.name} is empty; give more examples")
    val_x = splits.val.x.to(p.device) if splits.val is not None else None
    doc = {"config": config_to_dict(cfg),
           "data": {"name": splits.name, "shape": list(splits.shape), "n_levels": splits.n_levels,
                    "source": splits.source, "n_train": int(train_x.shape[0])}}
    from vaekit.training.callbacks import run_callbacks
    from vaekit.training.distributed import barrier, init_from_env

    info = init_from_env(p.device)  # torchrun: every rank computes, rank 0 alone writes
    watched = splits.val if val_x is not None and val_x.shape[0] > 0 else splits.train  # snapshot points
    callbacks = list(callbacks or [])
    if info.is_main:
        callbacks += run_callbacks(cfg.train, run_dir, labels=watched.y, config=doc["config"])
    supervision, train_x = _supervision(cfg, p, train_x)
    objective = build_objective(cfg.model, n_train=len(train_x), supervision=supervision)
    trainer = Trainer(model, objective, train_x, val_x, settings=cfg.train, run_dir=run_dir,
                      seed=cfg.seed, transform=p.transform, doc=doc, callbacks=callbacks, dist_info=info)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir) if info.is_main else contextlib.nullcontext():  # rank 0 alone writes
        if info.is_main:
            state = _check_folder(run_dir, resume, cfg, locked=True)  # again, now that no other process can
        if resume and (run_dir / "last.safetensors").is_file():
            _restore(trainer, run_dir / "last.safetensors")
            if info.is_main:
                atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
            log.info("resumed %s at step %d", run_dir, trainer.state.step)
        elif info.is_main:
            if resume or state == "new-run":
                log.info("%s was stopped before its first checkpoint: training it from step 0", run_dir)
            start_fresh(run_dir, cfg)
        summary = trainer.fit()
        barrier()
        if not info.is_main:  # the other ranks are done: rank 0 evaluates and writes the images and the report
            summary["rank"] = info.rank
            return summary
        _finish(run_dir, cfg, p, model, summary)
    return summary


def _supervision(cfg: RunConfig, p: Prepared, train_x: torch.Tensor):
    """(the labels a semi-supervised objective trains with, the unlabelled examples the trainer iterates over):
    ``data.labels=N`` takes N training examples, balanced over the classes (seeded), with their labels and
    leaves the rest unlabelled; ``all`` labels every example (the conditional VAE). (None, train_x) otherwise."""
    from vaekit.objectives.registry import OBJECTIVES
    from vaekit.objectives.semi_supervised import balanced_label_subset, supervision_from_labels

    spec = OBJECTIVES.get(cfg.model.objective)
    if spec is None or not spec.supervised:
        return None, train_x
    labels = cfg.data.labels
    y = p.splits.train.y
    if labels is None:
        raise ConfigError(f"model.objective={cfg.model.objective} trains with labels: set data.labels=N (N labelled "
                          f"training examples, balanced over the classes) or data.labels=all")
    if y is None:
        raise ConfigError(f"data.labels needs labelled data, but {p.splits.name!r} has no labels")
    y = y.to(train_x.device).long()
    if labels != "all":  # N labelled, balanced over the classes (seeded); the others -1
        try:
            keep = balanced_label_subset(y.cpu(), int(labels), cfg.seed).to(train_x.device)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        y = torch.full_like(y, -1).index_copy(0, keep, y[keep])
    val = p.splits.val
    return supervision_from_labels(train_x, y, p.transform, cfg.seed,
                                   val.y if val is not None and len(val) > 0 else None)


def _finish(run_dir: Path, cfg: RunConfig, p: Prepared, model: nn.Module, summary: dict[str, Any]) -> None:
    """With the best weights: images, test ELBO, the reconstruction probe, summary.json and the report (added
    to ``summary``)."""
    splits = p.splits
    best = run_dir / "best.safetensors"
    if best.exists():
        tensors, _ = load_checkpoint(best)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    test_x = p.splits.test.x.to(p.device)
    if p.transform is not None:
        test_x = p.transform(test_x, torch.Generator(device=test_x.device).manual_seed(cfg.seed + 4))
    from vaekit.evaluation import elbo_dataset

    model.eval()
    summary["test"] = elbo_dataset(model, test_x, batch_size=cfg.eval.batch_size, seed=cfg.seed + 5)
    if CLASSIFIER in model.capabilities and splits.test.y is not None:  # a classifier q(y|x)
        from vaekit.evaluation.metrics import classification_error

        summary["test"]["error"] = classification_error(model, test_x, splits.test.y)
    if splits.train.y is not None and splits.test.y is not None and len(model.data_shape) == 3:
        from vaekit.evaluation.probe import reconstruction_knn_accuracy

        train_x = splits.train.x if p.transform is None else p.transform(
            splits.train.x, torch.Generator(device=splits.train.x.device).manual_seed(cfg.seed + 4))
        summary["test"].update(reconstruction_knn_accuracy(model, train_x, splits.train.y, test_x,
                                                           splits.test.y, seed=cfg.seed))
    write_images(model, test_x, run_dir, seed=cfg.seed)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1, default=float) + "\n")
    summary["report"] = _write_report(run_dir, model, test_x, p.splits.test.y, cfg.seed)


def _write_report(run_dir: Path, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, seed: int) -> str | None:
    """Figures and report.html at the end of training; a failure is logged, never loses the trained run."""
    try:
        return str(build_report(run_dir, model=model, x=x, y=y, seed=seed))
    except Exception as e:  # noqa: BLE001 - the run is saved; the report can be rebuilt with `vaekit report`
        log.warning("could not write the run report (%s: %s); try `vaekit report %s`", type(e).__name__, e, run_dir)
        return None


def load_test_data(cfg: RunConfig, data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x, y) of a run's test split, x given the evaluation's fixed binarisation/dequantisation (seed + 4)."""
    if data_dir:
        cfg.data.dir = data_dir
    p = prepare(cfg, build=False)
    x = p.splits.test.x
    if p.transform is not None:
        x = p.transform(x, torch.Generator(device=x.device).manual_seed(cfg.seed + 4))
    return x, p.splits.test.y


def run_figures(run_dir: str | Path, kinds: Sequence[str] = ("all",), out_dir: str | Path | None = None, *,
                model: nn.Module | None = None, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                checkpoint: str = "best", data_dir: str | None = None, device: str | None = None, **options: Any):
    """``vaekit.plots.make_figures`` for a run folder: the model (``checkpoint``) and its test data are loaded
    from the folder when the kinds need them and the caller did not hand them over."""
    from vaekit.plots.run_figures import KINDS, NEEDS_DATA, NEEDS_MODEL, make_figures

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} not found")
    todo = set(KINDS) if "all" in kinds else set(kinds)
    cfg = None
    if model is None and NEEDS_MODEL & todo:
        cfg, model, _ = load_run(run_dir, checkpoint, device)
    if x is None and NEEDS_DATA & todo:
        cfg = cfg if cfg is not None else load_config(run_dir / "config.yaml")
        x, y = load_test_data(cfg, data_dir)
    snapshots = None
    if "latent-gif" in todo:
        from vaekit.training.callbacks import SNAPSHOT_FILE, load_snapshots

        try:
            snapshots = load_snapshots(run_dir / SNAPSHOT_FILE)
        except FileNotFoundError:
            if "all" not in kinds:
                raise
    return make_figures(run_dir, kinds, out_dir, model=model, x=x, y=y, snapshots=snapshots, **options)


def build_report(run_dir: str | Path, out: str | Path | None = None, *, model: nn.Module | None = None,
                 x: torch.Tensor | None = None, y: torch.Tensor | None = None, seed: int = 0,
                 checkpoint: str = "best", data_dir: str | None = None, device: str | None = None) -> Path:
    """Draw every figure into ``run_dir/figures`` and write the report (default ``run_dir/report.html``)."""
    from vaekit.plots.report import check_report_path, write_report

    if out is not None:
        check_report_path(out)
    figures, skipped = run_figures(run_dir, ("all",), model=model, x=x, y=y, seed=seed, checkpoint=checkpoint,
                                   data_dir=data_dir, device=device)
    return write_report(run_dir, figures, skipped, out)


def load_run(run_dir: str | Path, which: str = "best",
             device: str | torch.device | None = None) -> tuple[RunConfig, nn.Module, dict[str, Any]]:
    """(config, model with the chosen checkpoint's weights, checkpoint document) of a run folder; the model on
    ``device`` (cpu, cuda, cuda:N, mps, auto; default cpu), in eval mode."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {str(run_dir)!r} not found")
    ckpt = run_dir / f"{which}.safetensors"
    if which == "best" and not ckpt.exists():
        ckpt = run_dir / "last.safetensors"
    tensors, doc = load_checkpoint(ckpt)
    cfg_path = run_dir / "config.yaml"
    cfg = load_config(cfg_path) if cfg_path.exists() else config_from_dict(doc.get("config", {}))
    shape = doc.get("data", {}).get("shape") if isinstance(doc.get("data"), dict) else None
    if not isinstance(shape, list) or not shape:
        raise CheckpointError(f"checkpoint {str(ckpt)!r} records no data shape in its JSON document; it was not "
                              f"written by vaekit's trainer")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, shape)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {str(ckpt)!r} does not match the run's model config "
                              f"({state_dict_problem(e)})") from None
    model.eval()
    if device is not None:
        model.to(resolve_device(str(device), "--device"))
    return cfg, model, doc
