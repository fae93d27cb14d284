"""`vaekit compare RUN_A RUN_B`: a paired comparison of two runs' log p(x) on the same examples.

The difference is taken per example, so the spread between images (which dominates each run's own ±) cancels:
the mean difference ± its standard error says whether one model is better on these data."""

from __future__ import annotations

import argparse
import json
from typing import Callable

from vaekit.cli.common import add_device_argument

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the ``compare`` sub-command to ``sub``; return {command name: handler}."""
    c = sub.add_parser("compare", help="paired comparison of two runs: mean difference of log p(x) ± its s.e.")
    c.add_argument("run_a")
    c.add_argument("run_b")
    add_device_argument(c)
    c.add_argument("-k", "--iw-samples", type=int, default=100, help="importance samples K per example")
    c.add_argument("--split", default="test", choices=["train", "val", "test"])
    c.add_argument("--limit", type=int, default=None, help="N examples drawn across the split (a fixed seed)")
    c.add_argument("--first", type=int, default=None, help="the first N examples in file order")
    c.add_argument("--checkpoint", default="best", choices=["best", "last"])
    c.add_argument("--data-dir", default=None)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true")
    return {"compare": _cmd_compare}


def _cmd_compare(a: argparse.Namespace) -> int:
    from vaekit.apps import load_inputs
    from vaekit.evaluation import estimate_log_likelihood
    from vaekit.runs import load_run
    from vaekit.utils import mean_and_stderr

    if a.iw_samples < 1:
        raise ValueError(f"--iw-samples must be at least 1, got {a.iw_samples}")
    cfg_a, model_a, doc_a = load_run(a.run_a, a.checkpoint, a.device)
    cfg_b, model_b, doc_b = load_run(a.run_b, a.checkpoint, a.device)
    keys = ("name", "path", "binarize", "dequantize", "image_size", "grayscale")
    diff = [k for k in keys if getattr(cfg_a.data, k) != getattr(cfg_b.data, k)]
    if diff or doc_a["data"]["shape"] != doc_b["data"]["shape"]:
        raise ValueError(f"the two runs were trained on different data ({', '.join(diff) or 'shape'} differ); a "
                         f"paired comparison needs the same examples")
    d = load_inputs(cfg_a, doc_a, None, a.split, data_dir=a.data_dir, limit=a.limit, first=a.first, evaluated=True,
                    keep_classes=True)
    if len(d.x) < 2:
        raise ValueError("a paired comparison needs at least 2 examples")
    lp_a = estimate_log_likelihood(model_a, d.x, k=a.iw_samples, seed=a.seed)
    lp_b = estimate_log_likelihood(model_b, d.x, k=a.iw_samples, seed=a.seed)
    mean, se = mean_and_stderr(lp_a.per_example - lp_b.per_example)
    res = {"n": len(d.x), "k": a.iw_samples, "log_px_a": lp_a.mean, "log_px_a_stderr": lp_a.stderr,
           "log_px_b": lp_b.mean, "log_px_b_stderr": lp_b.stderr, "difference": mean, "difference_stderr": se}
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"{d.source} (n = {res['n']}), log p(x) with K = {a.iw_samples}; ± is the s.e. over examples")
    print(f"  A {a.run_a}: {lp_a.mean:.3f} ± {lp_a.stderr:.3f} nats")
    print(f"  B {a.run_b}: {lp_b.mean:.3f} ± {lp_b.stderr:.3f} nats")
    print(f"  A - B (paired, same examples): {mean:.3f} ± {se:.3f} nats")
    return 0
