"""`vaekit evaluate`: ELBO, importance-sampled log p(x) ± its standard error, bits/dim and active units of a run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

from vaekit.cli.common import add_device_argument, load_eval_data

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the ``evaluate`` sub-command to ``sub``; return {command name: handler}."""
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
    return {"evaluate": _cmd_evaluate}


def _cmd_evaluate(a: argparse.Namespace) -> int:
    import torch

    from vaekit.evaluation import evaluate
    from vaekit.runs import load_run

    cfg, model, doc = load_run(a.run_dir, a.checkpoint, a.device)
    from vaekit.evaluation import decoder_dtype_for
    from vaekit.utils import model_device

    decoder_dtype_for(a.precision, model_device(model))  # fp16 on a CPU without it: refused before the data load
    x, splits = load_eval_data(cfg, a.split, a.overrides, a.data_dir)
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
