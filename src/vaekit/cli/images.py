"""`vaekit sample` and `vaekit reconstruct`: image grids of a run's samples (from the prior or a fitted sampler) and
reconstructions, written into the run folder (under its lock) or to a file of the user's.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Callable

from vaekit.cli.common import add_device_argument, load_eval_data

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the ``sample`` and ``reconstruct`` sub-commands to ``sub``; return {command name: handler}."""
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
    return {"sample": _cmd_sample, "reconstruct": _cmd_reconstruct}


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
        x_train, _ = load_eval_data(cfg, "train", [], a.data_dir)
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
    x, _ = load_eval_data(cfg, a.split, [], a.data_dir)
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
