"""`vaekit` sub-commands for figures and the run report (plot, report)."""

from __future__ import annotations

import argparse
from typing import Callable

from vaekit.cli.common import add_device_argument

__all__ = ["register"]

# kept in step with vaekit.plots.run_figures.KINDS (a test checks)
KINDS = ("reconstructions", "samples", "traversals", "interpolation", "latent-map", "manifold", "analogies",
         "class-samples", "curves", "kl", "latent-gif", "code-usage", "code-maps", "all")


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's sub-commands to ``sub``; return {command name: handler}."""
    p = sub.add_parser("plot", help="draw a run's figures (PNG) into RUN_DIR/figures",
                       description="Draw the standard figures of a trained run. Figures that need labels (latent-map) "
                                   "are drawn without colours when the data have none.")
    p.add_argument("run_dir")
    add_device_argument(p)
    p.add_argument("--kind", default="all", choices=KINDS, help="which figure (default all)")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for the figures (default RUN_DIR/figures)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--seed", type=int, default=0, help="seed of the prior draws (samples) and Monte Carlo KL")
    p.add_argument("--temperature", type=float, nargs="+", default=[0.7, 1.0],
                   help="prior temperatures for samples (one panel each; default 0.7 1.0)")
    p.add_argument("--index", type=int, default=None,
                   help="traversals around the posterior mean of this test input (default: the origin)")
    p.add_argument("--map-axes", default="auto", choices=["auto", "pca", "kl"],
                   help="latent map of >2 latent dims: PCA (auto) or the two largest-KL dims")
    p.add_argument("--grid", default="both", choices=["linear", "ppf", "both"],
                   help="manifold grid: equally spaced in [-3, 3], inverse normal CDF, or both")
    p.add_argument("--data-dir", default=None)

    r = sub.add_parser("report", help="write a self-contained HTML report of a run (config, metrics, figures)")
    r.add_argument("run_dir")
    add_device_argument(r)
    r.add_argument("-o", "--output", default=None, help="HTML file (default RUN_DIR/report.html)")
    r.add_argument("--checkpoint", default="best", choices=["best", "last"])
    r.add_argument("--data-dir", default=None)
    return {"plot": _cmd_plot, "report": _cmd_report}


def _cmd_plot(a: argparse.Namespace) -> int:
    from vaekit.runs import run_figures

    if any(t <= 0 for t in a.temperature):
        raise ValueError(f"--temperature values must be positive, got {a.temperature}")
    written, skipped = run_figures(a.run_dir, (a.kind,), a.out, checkpoint=a.checkpoint, data_dir=a.data_dir,
                                   seed=a.seed, temperatures=a.temperature, map_axes=a.map_axes, grid=a.grid,
                                   around=a.index, device=a.device)
    for name, path in written.items():
        print(f"{name:<16} {path}")
    for kind, why in skipped.items():
        print(f"{kind:<16} not drawn: {why}")
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from vaekit.runs import build_report

    path = build_report(a.run_dir, a.output, checkpoint=a.checkpoint, data_dir=a.data_dir, device=a.device)
    print(f"report: {path}")
    return 0
