"""`vaekit train`: a preset, a config file and key=value overrides into a run folder; Ctrl-C or SIGTERM stops it
cleanly, with the command that continues it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from vaekit.cli.common import add_device_argument

__all__ = ["register", "ALL_KEYS", "Terminated"]

ALL_KEYS = ("run", "data", "model", "train", "eval")  # the config sections `vaekit train` takes keys of


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the ``train`` sub-command to ``sub``; return {command name: handler}."""
    t = sub.add_parser("train", help="train a model (default: the digits-quick preset)", keys=ALL_KEYS)
    t.add_argument("--preset", default=None, help="named preset (see `vaekit presets`); default digits-quick")
    t.add_argument("--config", default=None, help="YAML config file (applied on top of the preset)")
    t.add_argument("--out", default=None, help="run folder to create (default runs/<name>-<time>: the preset's name, or the data's for "
                        "data.path)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--data-dir", default=None, help="data directory (default $VAEKIT_DATA_DIR)")
    add_device_argument(t, default=None, help="where to train: cpu, cuda, cuda:N, mps or auto; sets train.device "
                                              "(default: the config's train.device)")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument("--tensorboard", action="store_true",
                   help="also log scalars and image grids to RUN_DIR/tensorboard (pip install 'vaekit[tensorboard]')")
    t.add_argument("--print-config", action="store_true",
                   help="print the resolved config (preset + --config + key=value) as YAML and exit; writes nothing")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-3")
    return {"train": _cmd_train}


def _cmd_train(a: argparse.Namespace) -> int:
    from vaekit.config import apply_overrides, load_config, validate
    from vaekit.registry import load_preset

    if a.resume:
        run_dir = Path(a.resume)
        if a.out and Path(a.out).resolve() != run_dir.resolve():
            raise ValueError(f"--resume continues {a.resume!r} in place; drop --out {a.out!r} (copy the folder "
                             f"first to continue it elsewhere)")
        if a.preset or a.config:
            raise ValueError("--resume takes the run's own config; give only key=value overrides (e.g. train.steps=)")
        if not (run_dir / "config.yaml").is_file():
            from vaekit.runfolder import MARKER

            if (run_dir / MARKER).is_file():  # killed while the run was being set up: nothing to resume
                raise FileNotFoundError(f"cannot resume: {str(run_dir)!r} was stopped before its config was written;"
                                        f" start it again with `vaekit train --out {run_dir} ...`")
            raise FileNotFoundError(f"cannot resume: {str(run_dir / 'config.yaml')!r} not found (not a run folder)")
        cfg = load_config(run_dir / "config.yaml")
    else:
        cfg = load_preset(a.preset or "digits-quick")
        if a.config:
            cfg = load_config(a.config, cfg)
    cfg = apply_overrides(cfg, a.overrides)
    if not a.resume and cfg.data.path and not _data_name_given(a):
        _pick_reader(cfg)
    if not a.resume and _own_data(cfg) and not _key_given(a, "name"):
        cfg.name = _name_of_path(cfg.data.path)  # runs/<data>-<time>, not the preset's name
    if a.data_dir:
        cfg.data.dir = a.data_dir
    if a.device is not None:
        cfg.train.device = a.device
    if a.quiet:
        cfg.train.progress = False
    if a.tensorboard:
        cfg.train.tensorboard = True
    cfg = validate(cfg)  # every value, before anything is printed, loaded or written
    if a.print_config:
        from vaekit.config import dump_config

        print(dump_config(cfg), end="")
        return 0
    from vaekit.runs import train_run
    from vaekit.training.distributed import barrier, init_from_env, launched

    main_rank = int(os.environ.get("RANK", "0")) == 0
    if launched() and not a.out and not a.resume:
        raise ValueError("under torchrun give --out DIR: every rank must name the same run folder")
    if not a.resume:
        run_dir = Path(a.out) if a.out else Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if launched():  # join the group now; train_run checks the folder on rank 0 before it writes anything
        from vaekit.runs import resolve_device

        init_from_env(resolve_device(cfg.train.device))
        barrier()
    if cfg.train.malloc_tuning:
        from vaekit.tuning import tune_malloc

        tune_malloc()
    if main_rank:
        if _own_data(cfg):
            named = "" if cfg.name == _name_of_path(cfg.data.path) else f" {cfg.name}"
            print(f"training{named} on {Path(cfg.data.path).name} ({cfg.data.name}) into {run_dir}", file=sys.stderr)
        else:
            print(f"training {cfg.name} on {cfg.data.name} into {run_dir}", file=sys.stderr)
    try:
        with _sigterm_as_interrupt():
            summary = train_run(cfg, run_dir, resume=bool(a.resume))  # checks everything before writing anything
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: a clean stop, with where the run can go on from
        if main_rank:
            print(f"vaekit train: {_stopped_message(e, run_dir)}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    if not main_rank:
        return 0
    test = summary.get("test", {})
    skipped = summary.get("bad_steps", 0)
    best = _best_line(summary)
    print(f"done: {summary['steps']} steps in {summary['train_seconds']:.1f} s ({summary['stopped']}; "
          f"{skipped} skipped as non-finite"
          + (f", {summary['skipped_updates']} updates above train.skip_threshold" if summary.get("skipped_updates")
             else "") + f"); {best} at step "
          f"{summary['best_step']}; test ELBO {test.get('elbo', float('nan')):.3f} nats (the best checkpoint on "
          f"the {test.get('n', 0)} test examples, one sample each, seed {test.get('seed', cfg.seed)})"
          + (" (a continuous density: the data were dequantised)" if cfg.data.dequantize else ""))
    _warn_huge_loss(run_dir)
    if "error" in test:
        print(f"classifier q(y|x): test error {100 * test['error']:.2f} % on {test['n']} test examples")
    if "knn_recon_accuracy" in test:
        print(f"reconstructions: a {test['k']}-NN fitted on {test['n_train']} training inputs labels "
              f"{100 * test['knn_recon_accuracy']:.1f} % of {test['n_test']} test reconstructions correctly "
              f"(those {test['n_test']} test inputs themselves: {100 * test['knn_input_accuracy']:.1f} %)")
    print(f"run folder: {run_dir}")
    if summary.get("report"):
        print(f"report: {summary['report']}")
    return 0


def _best_line(summary: dict) -> str:
    """What picked the 'best' checkpoint and its value: the validation ELBO, an M2 classifier's accuracy, or a
    multi-sample objective's own bound (IWAE, MIWAE, PIWAE, CIWAE)."""
    if summary.get("best_val_elbo") is not None:
        return f"best val ELBO {summary['best_val_elbo']:.3f}"
    if summary.get("best_val_bound") is not None:
        return f"best val bound {summary['best_val_bound']:.3f} (the training objective's)"
    return f"best val accuracy {100 * summary.get('best_val_accuracy', float('nan')):.2f} %"


def _key_given(a: argparse.Namespace, key: str) -> bool:
    """Whether the user set ``key`` (dotted; a key=value or the --config file), not only the preset."""
    if any(o.split("=", 1)[0].strip() == key for o in a.overrides):
        return True
    if a.config:
        from vaekit.config import read_config_file

        doc = read_config_file(a.config)
        *sections, last = key.split(".")
        for part in sections:
            doc = doc.get(part) if isinstance(doc, dict) else None
        return isinstance(doc, dict) and last in doc
    return False


def _data_name_given(a: argparse.Namespace) -> bool:
    return _key_given(a, "data.name")


def _own_data(cfg) -> bool:
    """Whether the run reads the user's own files (``data.path`` of a dataset that needs one)."""
    from vaekit.data.registry import DATASETS

    spec = DATASETS.get(cfg.data.name)
    return bool(cfg.data.path) and spec is not None and spec.needs_path


def _name_of_path(path: str) -> str:
    """A run name from a data path: the folder's or the file's name without its suffix, safe in a folder name."""
    import re

    p = Path(path).expanduser()
    stem = (p.name if p.is_dir() else p.stem) or Path(os.path.abspath(p)).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "data"


def _pick_reader(cfg) -> None:
    """``data.path`` given without ``data.name``: the reader follows what the path points at (said in one line), or a
    one-line error names the ``data.name`` to add. The preset's own dataset is never read from a user's path."""
    from vaekit.data.files import ARRAY_SUFFIXES, reader_for_path
    from vaekit.data.registry import DATASETS

    spec = DATASETS.get(cfg.data.name)
    if spec is not None and spec.reads_path:  # the preset's dataset reads the path itself (dSprites' file)
        return
    path = cfg.data.path
    name = reader_for_path(path)
    if name is None:
        p = Path(path).expanduser()
        if not p.exists():
            raise ValueError(f"data.path {path!r} does not exist; check the path")
        raise ValueError(f"cannot tell which reader data.path {path!r} needs (not a folder of images nor a "
                         f"{'/'.join(ARRAY_SUFFIXES)} file); add data.name=image-folder or data.name=arrays")
    if name != cfg.data.name:
        what = "a folder of images" if name == "image-folder" else "an array file"
        print(f"data.path {path} is {what}: reading it with data.name={name}", file=sys.stderr)
    cfg.data.name = name


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that training stops as cleanly as on Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While training: SIGTERM raises ``Terminated`` (a KeyboardInterrupt) instead of ending the process at once,
    so the run folder's lock is released and the command says where the run can be continued from."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _stopped_message(e: KeyboardInterrupt, run_dir: Path) -> str:
    """What a stopped training says: the signal, the last saved step and the command that continues the run."""
    how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
    try:
        step = int(json.loads((run_dir / "last.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        step = None
    if step is not None:
        return f"{how}; the last checkpoint is at step {step}; continue with `vaekit train --resume {shlex.quote(str(run_dir))}`"
    if (run_dir / "config.yaml").is_file():
        return (f"{how} before the first checkpoint; `vaekit train --resume {shlex.quote(str(run_dir))}` trains it again from "
                f"step 0")
    return f"{how} before the run was set up; nothing was saved"


HUGE_LOSS = 1e10  # nats per example: finite, but no model of real data is this bad


def _warn_huge_loss(run_dir: Path) -> None:
    """Warn when the last recorded training loss is finite but absurd (a diverging run the NaN guard lets by)."""
    try:
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        loss = float(last.get("loss", 0.0))
    except (OSError, ValueError, IndexError):
        return
    if abs(loss) > HUGE_LOSS:
        print(f"warning: the training loss ended at {loss:.3g} nats per example: the run diverged; lower train.lr or "
              f"set train.grad_clip", file=sys.stderr)
