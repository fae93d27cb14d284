"""`vaekit disentanglement RUN`: disentanglement_lib's metrics of a run trained on data with known factors."""

from __future__ import annotations

import argparse
import json
from typing import Callable

from vaekit.cli.common import add_device_argument

__all__ = ["register"]

_HEAD = {"beta_vae": "beta_vae", "factor_vae": "factor_vae", "mig": "mig", "sap": "sap",
         "dci": "dci_disentanglement", "modularity": "modularity"}


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the command to ``sub``; return {command name: handler}."""
    p = sub.add_parser("disentanglement", help="disentanglement metrics of a run on data with known factors (dsprites)",
                       description="BetaVAE, FactorVAE, MIG, SAP, DCI and modularity scores of the run's posterior "
                                   "means, with disentanglement_lib's definitions and sample sizes (10,000 training "
                                   "/ 5,000 evaluation points), and traversal figures labelled with the factor each "
                                   "latent dimension tracks most. DCI's gradient boosting takes minutes on 2 cores.")
    p.add_argument("run_dir")
    add_device_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    p.add_argument("--metrics", nargs="+", default=list(_HEAD), choices=list(_HEAD), metavar="NAME",
                   help=f"which metrics (default all: {' '.join(_HEAD)})")
    p.add_argument("--num-train", type=int, default=None, help="training points per metric (default 10000)")
    p.add_argument("--num-eval", type=int, default=None, help="evaluation points per metric (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--figures", default=None, metavar="DIR",
                   help="folder for the figures (default RUN_DIR/figures); --no-figures to skip them")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for encoding and processes for DCI's classifiers (default: torch's threads; "
                        "one DCI process per core)")
    return {"disentanglement": _cmd}


def _cmd(a: argparse.Namespace) -> int:
    for flag, v in (("--num-train", a.num_train), ("--num-eval", a.num_eval)):
        if v is not None and v < 2:
            raise ValueError(f"{flag} must be at least 2, got {v}")
    if a.threads is not None and a.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {a.threads}")
    import torch

    threads = torch.get_num_threads()
    try:
        if a.threads is not None:
            torch.set_num_threads(a.threads)
        return _run(a)
    finally:
        torch.set_num_threads(threads)  # as found, for a caller of main() in its own process


def _run(a: argparse.Namespace) -> int:
    from pathlib import Path

    from vaekit.data import ground_truth
    from vaekit.evaluation.disentanglement import draw_disentanglement_figures, evaluate_disentanglement
    from vaekit.runs import load_run
    from vaekit.tuning import tune_malloc
    from vaekit.utils import atomic_write_text

    tune_malloc()  # encoding the whole grid in batches of 1,024: buffers above 32 MiB stay in the heap
    cfg, model, _ = load_run(a.run_dir, a.checkpoint, a.device)
    truth = ground_truth(cfg.data.name, path=cfg.data.path, data_dir=a.data_dir or cfg.data.dir)
    res = evaluate_disentanglement(model, truth, seed=a.seed, metrics=a.metrics, num_train=a.num_train,
                                   num_eval=a.num_eval, workers=a.threads)
    res["run"] = str(a.run_dir)
    if not a.no_figures:
        out = Path(a.figures) if a.figures else Path(a.run_dir) / "figures"
        res["figures"] = {k: str(v) for k, v in draw_disentanglement_figures(model, truth, res["codes"], out,
                                                                                seed=a.seed).items()}
    atomic_write_text(Path(a.run_dir) / "disentanglement.json", json.dumps(res, indent=1) + "\n")
    if a.json:
        print(json.dumps(res))
        return 0
    sizes = res["sizes"]
    print(f"disentanglement of {a.run_dir} ({sizes['num_train']} / {sizes['num_eval']} points, seed {a.seed})")
    for name in a.metrics:
        m = res["metrics"][name]
        extra = "  ".join(f"{k} {v:.3f}" for k, v in m.items() if k not in (_HEAD[name], "seconds")
                          and isinstance(v, float))
        print(f"  {name:<11} {m[_HEAD[name]]:.3f}   {extra}  ({m['seconds']:.0f} s)")
    print("  dimension -> factor it tracks most (MI / H): " + ", ".join(
        f"z{j} {f} {max(row):.2f}" for j, (f, row) in enumerate(zip(res["codes"]["dim_to_factor"],
                                                                  res["codes"]["nmi"]))))
    for k, v in res.get("figures", {}).items():
        print(f"  figure {k:<12} {v}")
    return 0
