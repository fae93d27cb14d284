"""`vaekit` command line: parse, build a config, call the library, set the exit code.

Exit codes: 0 success, 2 bad input (a one-line message, no traceback), 1 training that could not go on.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time

from vaekit.cli.common import add_device_argument
from pathlib import Path

__all__ = ["main"]

# modules that add sub-commands: each has register(subparsers) -> {command: handler(args) -> exit code};
# heavy imports stay inside the handlers so `vaekit --help` is fast
_EXTENSIONS = ("vaekit.cli.plots", "vaekit.cli.apps", "vaekit.cli.compare", "vaekit.cli.serve",
               "vaekit.cli.disentangle", "vaekit.cli.restore")
_HANDLERS: dict = {}
ALL_KEYS = ("run", "data", "model", "train", "eval")  # the config sections `vaekit train` takes keys of

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in ``--help``: appended as "(default: X)" unless its help already names one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS:  # -h and -V have no default to show
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text  # a required positional has no default
        return f"{text} (default: %(default)s)".strip()


# help for the options many commands share, where a command gives none
_COMMON_HELP = {
    "run_dir": "run folder written by `vaekit train`", "run_dirs": "run folders written by `vaekit train`",
    "checkpoint": "the run's checkpoint to use", "data_dir": "data directory (default $VAEKIT_DATA_DIR)",
    "split": "data split", "json": "print JSON only", "seed": "random seed", "n": "number of images",
    "lr": "Adam learning rate of the per-point optimisation", "what": "what to embed",
    "normal_split": "split of the normal data the threshold is set on", "iw_samples": "importance samples K",
    "elbo_samples": "samples per ELBO estimate",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser without prefix matching: ``--data`` is never read as an abbreviation of ``--data-dir``.

    ``keys``: the config sections whose keys the command takes; its help ends with them, generated from their
    declarations (``vaekit.config_help``) when the help is shown, laid out as generated."""

    def __init__(self, *args, keys: tuple[str, ...] = (), **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.keys = keys

    def format_help(self) -> str:
        if not self.keys:
            return super().format_help()
        from vaekit.config_help import keys_help

        width = max(60, min(120, shutil.get_terminal_size().columns - 2))
        return super().format_help().rstrip("\n") + "\n\n" + keys_help(self.keys, width)


def _parser() -> argparse.ArgumentParser:
    from vaekit import __version__

    p = _Parser(prog="vaekit", description="Train, measure and use variational autoencoders.",
                formatter_class=HelpFormatter)
    p.add_argument("-V", "--version", action="version", version=f"vaekit {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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

    e = sub.add_parser("evaluate", help="ELBO, importance-sampled log p(x) ± s.e., bits/dim, active units",
                       keys=("data",))
    e.add_argument("run_dir")
    add_device_argument(e)
    e.add_argument("--iw-samples", type=int, default=None, help="importance samples K (default eval.iw_samples)")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--limit", type=int, default=None,
                   help="evaluate N examples drawn at random (a fixed seed: the same N for every run) across the split")
    e.add_argument("--first", type=int, default=None,
                   help="evaluate the first N examples in file order (binarized MNIST's test set is ordered by digit)")
    e.add_argument("--checkpoint", default="best", choices=["best", "last"])
    e.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="the decoder's precision for the importance samples: bf16 (fast on GPUs and CPUs with "
                        "native bf16, tiny bias) or fp16 (GPUs); log-densities stay float32")
    e.add_argument("--bf16", dest="precision", action="store_const", const="bf16", default=argparse.SUPPRESS,
                   help="the same as --precision bf16")
    e.add_argument("--threads", type=int, default=None, help="CPU threads for the evaluation (default: torch's)")
    e.add_argument("--json", action="store_true", help="print JSON only")
    e.add_argument("--data-dir", default=None)
    e.add_argument("overrides", nargs="*", metavar="data.key=value", help="change the data (e.g. data.name=mnist)")

    s = sub.add_parser("sample", help="draw samples from the prior and save an image grid")
    s.add_argument("run_dir")
    add_device_argument(s)
    s.add_argument("-n", type=int, default=64)
    s.add_argument("-o", "--output", default=None,
                   help="PNG file to write (default: RUN_DIR/samples-T<temperature>-seed<seed>.png)")
    s.add_argument("--temperature", type=float, default=1.0, help="scale of the prior's standard deviation")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.add_argument("--sampler", default="prior", choices=["prior", "gmm", "flow", "two-stage"],
                   help="draw z from the prior, or from a Gaussian mixture, a flow or a second-stage VAE fitted to "
                        "the training set's posterior means (fitted once, saved in RUN_DIR/samplers/ and reused)")
    s.add_argument("--components", type=int, default=10, help="--sampler gmm: mixture components")
    s.add_argument("--fit-steps", type=int, default=2000, help="--sampler flow/two-stage: Adam steps of the fit")
    s.add_argument("--fit-examples", type=int, default=10000,
                   help="fit to the posterior means of this many training examples (a fixed random subset)")
    s.add_argument("--threads", type=int, default=None,
                   help="CPU threads for fitting and sampling (default: the run's train.threads, else torch's)")
    s.add_argument("--data-dir", default=None)

    r = sub.add_parser("reconstruct", help="save inputs and their reconstructions as an image grid")
    r.add_argument("run_dir")
    add_device_argument(r)
    r.add_argument("-n", type=int, default=32)
    r.add_argument("-o", "--output", default=None,
                   help="PNG file to write (default: RUN_DIR/reconstructions-<split>-n<n>.png)")
    r.add_argument("--split", default="test", choices=["train", "val", "test"])
    r.add_argument("--checkpoint", default="best", choices=["best", "last"])
    r.add_argument("--data-dir", default=None)

    d = sub.add_parser("datasets", help="list datasets, whether their files are present, and where they are looked for")
    d.add_argument("--data-dir", default=None)
    d.add_argument("--download", default=None, metavar="NAME", help="download and verify a dataset (needs internet)")
    d.add_argument("--prepare", default=None, metavar="PATH", help="convert a folder, .zip or .tar of images once into "
                   "uint8 .npy shards (train on them with data.name=arrays data.path=OUT data.storage=mmap)")
    d.add_argument("--out", default=None, help="--prepare: the new folder to write the shards into")
    d.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="--prepare: resize the images to H x W")
    d.add_argument("--grayscale", action="store_true", help="--prepare: one channel")
    d.add_argument("--shard-size", type=int, default=10_000, help="--prepare: images per shard")
    d.add_argument("--workers", type=int, default=2, help="--prepare: decoding processes")

    sub.add_parser("presets", help="list the named presets")
    for ext in _EXTENSIONS:  # figures/report and the uses of a trained model live in their own modules
        _HANDLERS.update(importlib.import_module(ext).register(sub))
    for command in sub.choices.values():  # sub-commands (also the extensions') show their defaults too
        command.formatter_class = HelpFormatter
        for action in command._actions:  # noqa: SLF001 - argparse offers no public list of a parser's actions
            if not action.help and action.default is not argparse.SUPPRESS:  # argparse shows nothing without help
                action.help = _COMMON_HELP.get(action.dest, action.dest.replace("_", " "))
    return p


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


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
    best = (f"best val ELBO {summary['best_val_elbo']:.3f}" if summary.get("best_val_elbo") is not None else
            f"best val accuracy {100 * summary.get('best_val_accuracy', float('nan')):.2f} %")
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


def _load_eval_data(cfg, split: str, overrides: list[str], data_dir: str | None):
    from vaekit.config import apply_overrides
    from vaekit.runs import prepare

    bad = [o for o in overrides if not o.startswith("data.")]
    if bad:
        raise ValueError(f"only data.* overrides are allowed here, got {bad[0]!r}")
    cfg = apply_overrides(cfg, overrides)
    if data_dir:
        cfg.data.dir = data_dir
    p = prepare(cfg, build=False)
    part = getattr(p.splits, split)
    x = part.x
    if p.transform is not None:  # a fixed binarisation/dequantisation of the evaluation data
        import torch

        x = p.transform(x, torch.Generator(device=x.device).manual_seed(cfg.seed + 4))
    return x, p.splits


def _cmd_evaluate(a: argparse.Namespace) -> int:
    import torch

    from vaekit.evaluation import evaluate
    from vaekit.runs import load_run

    cfg, model, doc = load_run(a.run_dir, a.checkpoint, a.device)
    from vaekit.evaluation import decoder_dtype_for
    from vaekit.utils import model_device

    decoder_dtype_for(a.precision, model_device(model))  # fp16 on a CPU without it: refused before the data load
    x, splits = _load_eval_data(cfg, a.split, a.overrides, a.data_dir)
    if len(x) == 0:
        raise ValueError(f"the {a.split} split of this run is empty (data.merge_val=true folds val into training); "
                         "use --split test")
    from vaekit.data import subset_index

    idx = subset_index(len(x), a.limit, a.first)
    x = x[idx]
    y = getattr(splits, a.split).y
    y = y[idx] if y is not None else None
    model.check_input(x)
    k = a.iw_samples if a.iw_samples is not None else cfg.eval.iw_samples
    if k < 1:
        raise ValueError(f"--iw-samples must be at least 1, got {k}")
    if a.threads is not None and a.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {a.threads}")
    from vaekit.tuning import tune_malloc

    tune_malloc()  # large per-call temporaries stay in the heap instead of being mmap'ed and trimmed each call
    from vaekit.training.distributed import init_from_env

    info = init_from_env(torch.device("cpu"))  # torchrun: the importance sampling is split across ranks
    if info.world == 1 and not a.json:
        _print_estimate(lambda xs: evaluate(model, xs, k=k, n_levels=splits.n_levels, dequantized=cfg.data.dequantize,
                                            precision=a.precision, num_threads=a.threads, seed=cfg.seed,
                                            batch_size=cfg.eval.batch_size), x, k)
    t0 = time.perf_counter()
    res = evaluate(model, x, k=k, n_levels=splits.n_levels, dequantized=cfg.data.dequantize, precision=a.precision,
                   num_threads=a.threads, seed=cfg.seed, shard=info,
                   batch_size=cfg.eval.batch_size)  # the batches of the run's own test ELBO: the same numbers
    res.update({"split": a.split, "checkpoint": a.checkpoint, "run": str(a.run_dir), "seconds": time.perf_counter() - t0,
                "processes": info.world})
    if not info.is_main:
        return 0
    import math

    if not (math.isfinite(res["elbo"]) and math.isfinite(res["log_px"])):
        raise ValueError(f"the model of {str(a.run_dir)!r} gives a non-finite ELBO or log p(x) on these data (ELBO "
                         f"{res['elbo']}, log p(x) {res['log_px']}): the run diverged; retrain it with a lower "
                         f"train.lr or with train.grad_clip")
    from vaekit.models.contract import CLASSIFIER

    if CLASSIFIER in model.capabilities and y is not None:  # a classifier q(y|x)
        from vaekit.evaluation.metrics import classification_error

        res["error"] = classification_error(model, x, y)
    dequantized = bool(cfg.data.dequantize and splits.n_levels)
    if dequantized:  # log P(discrete x) >= E_u log p(x + u) - D log(levels): the dequantisation bound
        values = res["observed_values"] / res["n"] if "observed_values" in res else x[0].numel()  # per example
        res["log_px_discrete"] = res["log_px"] - values * math.log(splits.n_levels)
    if a.json:
        print(json.dumps(res, default=float))
        return 0
    dens = " (continuous density of the dequantised data)" if dequantized else ""
    print(f"{a.run_dir} [{a.checkpoint}] on {splits.name}/{a.split} (n = {res['n']}); ± is the standard error of "
          f"the mean over the {res['n']} examples")
    print(f"  ELBO              {res['elbo']:.3f} ± {res['elbo_stderr']:.3f} nats{dens} (one sample per example, "
          f"seed {cfg.seed})")
    print(f"  log p(x), K={k:<5} {res['log_px']:.3f} ± {res['log_px_stderr']:.3f} nats{dens}; Monte Carlo s.e. "
          f"of the estimate {res.get('log_px_mc_stderr', float('nan')):.3f}")
    if dequantized:
        print(f"  discrete log P(x) {res['log_px_discrete']:.3f} nats (a lower bound: continuous log p(x) minus "
              f"D log {splits.n_levels})")
    if "neg_elbo_per_step" in res:
        print(f"  per observed step -ELBO {res['neg_elbo_per_step']:.4f}, -log p(x) {res['neg_log_px_per_step']:.4f} "
              f"nats ({res['observed_steps']} steps, padding excluded)")
    if res.get("bits_per_dim") is not None:
        over = f" (over the {res['observed_values']} observed values)" if "observed_values" in res else ""
        print(f"  bits/dim          {res['bits_per_dim']:.4f}{over}")
    if res["precision"] != "fp32":
        print(f"  precision         {res['precision']} decoder for the importance samples")
    print(f"  active units      {res['active_units']} / {model.latent_dim}")
    if "error" in res:
        print(f"  error of q(y|x)   {100 * res['error']:.2f} % (argmax q(y|x) against the labels)")
    print(f"  time              {res['seconds']:.1f} s")
    return 0


ESTIMATE_ABOVE_S = 5.0  # an evaluation expected to take longer says so before it starts
PROBE_EXAMPLES = 16  # examples timed to extrapolate from


def _print_estimate(run_on, x, k: int) -> None:
    """Time the evaluation of a first few examples and, when the whole split is expected to take longer than
    ``ESTIMATE_ABOVE_S``, say how long before it starts (on stderr: stdout holds the results)."""
    n = len(x)
    if n <= 2 * PROBE_EXAMPLES:
        return
    t0 = time.perf_counter()
    run_on(x[:PROBE_EXAMPLES])
    per_example = (time.perf_counter() - t0) / PROBE_EXAMPLES
    expected = per_example * n
    if expected > ESTIMATE_ABOVE_S:
        print(f"evaluating {n} examples with K={k} importance samples: about {_duration(expected)} (timed on the "
              f"first {PROBE_EXAMPLES}; --limit N evaluates fewer)", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _writing_into_run(run_dir: str, into_run: bool):
    """The run folder's lock while a default output is written into it (atomically); nothing for a user's -o."""
    if not into_run:
        return contextlib.nullcontext()
    from vaekit.runfolder import run_lock

    return run_lock(run_dir)


def _check_image_request(n: int, output: str) -> None:
    if n < 1:
        raise ValueError("-n must be at least 1")
    if not output.lower().endswith(".png"):
        raise ValueError(f"output file {output!r} must end in .png")


def _cmd_sample(a: argparse.Namespace) -> int:
    import torch

    from vaekit.plots import save_image_grid
    from vaekit.runs import load_run

    kind = "" if a.sampler == "prior" else f"{a.sampler}-"
    output = a.output or str(Path(a.run_dir) / f"samples-{kind}T{a.temperature:g}-seed{a.seed}.png")
    _check_image_request(a.n, output)
    for name in ("components", "fit_steps", "fit_examples"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    cfg, model, doc = load_run(a.run_dir, a.checkpoint, a.device)
    if len(model.data_shape) not in (2, 3):
        raise ValueError("this run models tabular data; samples cannot be drawn as images")
    if a.sampler == "prior":
        torch.manual_seed(a.seed)
        x = model.sample(a.n, temperature=a.temperature)
        if len(model.data_shape) == 2:  # (T, D) sequences (piano rolls): one grey image per example
            x = x.unsqueeze(1)
        with _writing_into_run(a.run_dir, a.output is None):
            save_image_grid(x, output, nrow=min(a.n, 8) if a.n <= 64 else None)
        print(f"wrote {a.n} samples (temperature {a.temperature}) to {output}")
        return 0
    threads = a.threads if a.threads is not None else cfg.train.threads
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)  # small fits: a second thread only adds contention on a shared CPU
    from vaekit.apps.samplers import fitted_sampler, sample_images
    from vaekit.data import subset_index
    from vaekit.models.contract import CONTINUOUS, require

    require(model, CONTINUOUS, f"--sampler {a.sampler}")
    from vaekit.runfolder import run_lock

    with run_lock(a.run_dir):  # the fitted sampler is saved in the run folder
        x_train, _ = _load_eval_data(cfg, "train", [], a.data_dir)
        if x_train.shape[0] > a.fit_examples:
            x_train = x_train[subset_index(x_train.shape[0], a.fit_examples)]
        fitted_on = {"checkpoint": a.checkpoint, "step": doc.get("step"), "examples": int(x_train.shape[0])}
        opts = {"components": a.components} if a.sampler == "gmm" else {}
        sampler, reused = fitted_sampler(model, a.sampler, x_train, run_dir=a.run_dir, fitted_on=fitted_on,
                                         fit_steps=a.fit_steps, **opts)  # a fixed fitting seed: one fit per run
        torch.manual_seed(a.seed)
        x = sample_images(model, sampler, a.n, a.temperature)
        if len(model.data_shape) == 2:
            x = x.unsqueeze(1)
        save_image_grid(x, output, nrow=min(a.n, 8) if a.n <= 64 else None)
    how = "reused" if reused else "fitted to"
    print(f"wrote {a.n} samples (sampler {a.sampler}, {how} the posterior means of {x_train.shape[0]} training "
          f"examples; temperature {a.temperature}) to {output}")
    return 0


def _cmd_reconstruct(a: argparse.Namespace) -> int:
    import torch

    from vaekit.plots import save_image_grid
    from vaekit.runs import load_run

    output = a.output or str(Path(a.run_dir) / f"reconstructions-{a.split}-n{a.n}.png")
    _check_image_request(a.n, output)
    cfg, model, _ = load_run(a.run_dir, a.checkpoint, a.device)
    x, _ = _load_eval_data(cfg, a.split, [], a.data_dir)
    x = x[: a.n]
    model.check_input(x)
    if len(model.data_shape) not in (2, 3):
        raise ValueError("this run models tabular data; reconstructions cannot be drawn as images")
    rec = model.reconstruct(x)
    if len(model.data_shape) == 2:  # (T, D) sequences (piano rolls): one grey image per example
        x, rec = x.unsqueeze(1), rec.unsqueeze(1)
    rows = []
    for i in range(0, x.shape[0], 8):
        rows += [x[i:i + 8], rec[i:i + 8]]
    with _writing_into_run(a.run_dir, a.output is None):
        save_image_grid(torch.cat(rows), output, nrow=8)
    print(f"wrote {x.shape[0]} inputs (odd rows) and reconstructions (even rows) to {output}")
    return 0


def _cmd_datasets(a: argparse.Namespace) -> int:
    from vaekit.data import dataset_status

    if a.download:
        from vaekit.data import download

        try:
            path = download(a.download, a.data_dir)
        except RuntimeError as e:  # every mirror failed: no network, or a damaged copy on each
            raise ValueError(f"{str(e).splitlines()[0][:300]}; check the network connection (nothing was kept)") from None
        print(f"downloaded and verified {a.download} into {path}")
        return 0
    if a.prepare:
        from vaekit.data.prepare import prepare_shards

        if not a.out:
            raise ValueError("--prepare needs --out FOLDER (a new folder for the shards)")
        done = prepare_shards(a.prepare, a.out, image_size=tuple(a.image_size) if a.image_size else None,
                              grayscale=True if a.grayscale else None, shard_size=a.shard_size, workers=a.workers)
        print(f"wrote {done['images']} images {tuple(done['shape'])} as {done['shards']} uint8 shard(s) into "
              f"{done['out']} ({done['skipped']} unreadable skipped); train with data.name=arrays "
              f"data.path={done['out']} data.storage=mmap")
        return 0
    rows = dataset_status(a.data_dir)
    for r in rows:
        mark = "yes" if r["available"] else "no "
        print(f"{r['name']:<16} {mark}  {r['description']}")
        print(f"{'':<16}      looked for: {r['where']}")
        if not r["available"] and r.get("how_to_get"):
            print(f"{'':<16}      get it: {r['how_to_get']}")
    return 0


def _cmd_presets(a: argparse.Namespace) -> int:
    from vaekit.presets import list_presets  # reads the YAML files only: no torch import

    import textwrap

    presets = list_presets()
    width = max(60, min(120, shutil.get_terminal_size().columns))
    col = max(map(len, presets), default=0) + 2
    for name, desc in presets.items():  # whole descriptions, wrapped beside the name
        lines = textwrap.wrap(desc, max(30, width - col), break_on_hyphens=False) or [""]
        print(f"{name:<{col}}{lines[0]}")
        for line in lines[1:]:
            print(f"{'':<{col}}{line}")
    return 0


_ERRNO_HINTS = {
    errno.ENOSPC: ("no space left on the device", "free some space and run the command again"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and run the command again"),
    errno.EROFS: ("the file system is read-only", "choose a writable folder"),
    errno.EACCES: ("permission denied", "choose a folder you can write to"),
    errno.EPERM: ("operation not permitted", "choose a folder you can write to"),
    errno.EEXIST: ("a file of that name already exists where a folder is needed", "choose another path"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another path"),
    errno.EISDIR: ("it is a directory, not a file", "give a file name"),
    errno.ENOENT: ("no such file or folder", "check the path"),
}


def os_error_message(e: OSError) -> str:
    """One line for an OSError: what failed, on which path, and what to do; files already on disk are unchanged
    (every write goes to a temporary file first)."""
    if e.errno is None or e.errno not in _ERRNO_HINTS:
        text = e.strerror or str(e) or type(e).__name__
        return f"{text}{f' ({str(e.filename)!r})' if e.filename else ''}"
    what, todo = _ERRNO_HINTS[e.errno]
    where = f" at {str(e.filename)!r}" if e.filename else ""
    kept = "; files already there were not changed" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"{what}{where}{kept}; {todo}"


def _lazy_errors(module: str, name: str) -> tuple[type[BaseException], ...]:
    """(the exception class ``module.name``,) if that module has been imported, else () — an exception of a
    module never imported cannot have been raised, and `vaekit presets` must not import torch to find out."""
    mod = sys.modules.get(module)
    return (getattr(mod, name),) if mod is not None else ()


def _in_process_group() -> bool:
    """Whether this process is in a torch.distributed group (without importing torch when nothing has)."""
    d = sys.modules.get("torch.distributed")
    return d is not None and d.is_available() and d.is_initialized()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vaekit`` command."""
    parser = _parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return 2
    _setup_logging(getattr(a, "quiet", False) or getattr(a, "json", False))
    if a.command not in ("datasets", "presets"):  # an application may tune its process; the library never does
        from vaekit.tuning import flush_denormals

        flush_denormals()  # before the first parallel op, so every OpenMP thread inherits it

    handlers = {"train": _cmd_train, "evaluate": _cmd_evaluate, "sample": _cmd_sample,
                "reconstruct": _cmd_reconstruct, "datasets": _cmd_datasets, "presets": _cmd_presets, **_HANDLERS}
    had_group, ok = _in_process_group(), False
    try:
        code = handlers[a.command](a)
        sys.stdout.flush()  # a closed pipe shows up here, inside the try, not at interpreter exit
        ok = True
        return code
    except BrokenPipeError:  # `vaekit datasets | head -1`: the reader has gone; stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the signal ended
    except (ValueError, *_lazy_errors("vaekit.training.checkpoint", "CheckpointError")) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"vaekit {a.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:  # a missing file, a read-only folder, a full disk, a path that is a file or a folder
        print(f"vaekit {a.command}: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyError as e:  # a file missing an entry it must have; name what is missing
        print(f"vaekit {a.command}: error: missing entry {e} in an input file (written by another program or "
              f"an incompatible vaekit?)", file=sys.stderr)
        return 2
    except _lazy_errors("vaekit.training.trainer", "TrainingError") as e:
        print(f"vaekit {a.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vaekit {a.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if not had_group and _in_process_group():  # the torchrun group this command joined, not a caller's
            from vaekit.training.distributed import leave

            leave(wait=ok)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
