"""pythae's reproduction table, row by row: train each row's vaekit preset on the same data, estimate test
log p(x) by importance sampling, and print vaekit, pythae and the paper side by side (negative log-likelihood in
nats; lower is better).

    python bench/reproductions.py                               # every row, each preset's own budget
    python bench/reproductions.py --rows iwae,miwae --budget 600 --iw-samples 500 --limit 1000

Rows (pythae: clementchadebec/benchmark_VAE, examples/scripts/reproducibility/README.md):

| row       | data                                   | pythae (IS)   | paper  | preset                        |
| VAE       | binarized MNIST (Larochelle & Murray)  | 89.78 (200)   | 89.9   | binarized-mnist-vae           |
| VampPrior | binarized MNIST, K = 500 pseudo-inputs | 85.79 (5000)  | 85.57  | binarized-mnist-vamp          |
| IWAE k=50 | binarized MNIST                        | 86.82 (5000)  | 87.1   | binarized-mnist-iwae          |
| MIWAE 8x8 | dynamically binarised MNIST            | 85.09 (5000)  | 84.97  | mnist-dynamic-miwae           |
| PIWAE 8x8 | dynamically binarised MNIST            | 84.58 (5000)  | 84.46  | mnist-dynamic-piwae           |
| CIWAE .05 | dynamically binarised MNIST            | 84.74 (5000)  | 84.57  | mnist-dynamic-ciwae           |

A row whose preset is not registered is skipped with a message. ``--budget`` sets each row's training budget in
CPU seconds of the training process (``train.time_clock=cpu``), ``--steps`` in optimiser steps (whichever ends
first); without either a row trains for its preset's budget (2 CPU-hours for the bound rows). Rows run one
after the other, never in parallel. ``--iw-samples`` and ``--limit`` (test images drawn across the split with a
fixed seed) trade the estimate's precision for time; the default is each row's pythae IS count on all 10,000 test
images. ``--json PATH`` writes the table's numbers. With ``--out``, a row's run cut short (a checkpoint, no
summary) is continued from its checkpoint by running the same command again.

``--warm-start F`` (the bound rows: IWAE, MIWAE, PIWAE, CIWAE) splits a row's budget in two, as Burda et al.
(2016, Sec. 5.2) continue a trained VAE: the row's network first trains on the ELBO (one sample per image, KL
warm-up over 10,000 steps) for F of the budget, then on the row's bound for the rest, from those weights
(``train.init_from``) at batch 20 with the learning rate from 3e-4. The two stages are ``OUT/KEY-warm/elbo`` and
``OUT/KEY-warm/KEY``; the second is evaluated.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Row", "ROWS", "main"]


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    preset: str
    data: str
    pythae: float
    pythae_is: int
    paper: float
    bound: bool = False  # trains a multi-sample bound (a warm start from the ELBO applies)


ROWS = [
    Row("vae", "VAE", "binarized-mnist-vae", "binarized MNIST", 89.78, 200, 89.9),
    Row("vamp", "VampPrior K=500", "binarized-mnist-vamp", "binarized MNIST", 85.79, 5000, 85.57),
    Row("iwae", "IWAE k=50", "binarized-mnist-iwae", "binarized MNIST", 86.82, 5000, 87.1, bound=True),
    Row("miwae", "MIWAE M=8 K=8", "mnist-dynamic-miwae", "dyn. binarised MNIST", 85.09, 5000, 84.97, bound=True),
    Row("piwae", "PIWAE M=8 K=8", "mnist-dynamic-piwae", "dyn. binarised MNIST", 84.58, 5000, 84.46, bound=True),
    Row("ciwae", "CIWAE beta=0.05", "mnist-dynamic-ciwae", "dyn. binarised MNIST", 84.74, 5000, 84.57, bound=True),
]


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _vaekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True, text=True)


def _steps(run_dir: Path) -> int:
    lines = (run_dir / "metrics.jsonl").read_text().strip().splitlines()
    return int(json.loads(lines[-1])["step"]) if lines else 0


def _stage(run_dir: Path, preset: str, over: list[str]) -> tuple[float, bool, str | None]:
    """Train one run of ``preset`` into ``run_dir`` with the overrides ``over``: (training CPU seconds, whether
    the folder held a run already, the error line or None). A run cut short there is continued (``vaekit train
    --resume``: its own settings and clock), a finished one left as it is; the CPU seconds are then the run's own
    training clock."""
    continued = (run_dir / "last.json").is_file()
    if continued:
        train = [] if (run_dir / "summary.json").is_file() else ["train", "--quiet", "--resume", str(run_dir)]
    else:
        train = ["train", "--quiet", "--preset", preset, "--out", str(run_dir), "train.progress=false", *over]
    c0 = _child_cpu()
    p = _vaekit(*train) if train else None
    train_cpu = _child_cpu() - c0
    if p is not None and p.returncode != 0:
        return train_cpu, continued, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "train failed"
    if continued:
        train_cpu = float(json.loads((run_dir / "summary.json").read_text())["train_cpu_seconds"])
    return train_cpu, continued, None


# the bound stage of a warm start: smaller steps for weights that are already trained (chosen once, not tuned)
WARM_BOUND_STAGE = ["train.batch_size=20", "train.lr=0.0003"]


def run_row(row: Row, out: Path, budget: float | None, steps: int | None, iw: int | None, limit: int | None,
            threads: int | None, warm_start: float | None = None) -> dict:
    """Train and evaluate one row; returns its numbers (or why it was skipped). A row whose run folder under
    ``out`` holds a checkpoint but no summary is continued (``vaekit train --resume``: the run's own settings and
    clock), one with a summary only evaluated; the train CPU column is then the run's own training clock.
    warm_start: the fraction of the budget trained on the ELBO before the row's bound (see the module's text)."""
    common = [f"train.threads={threads}"] if threads is not None else []
    if steps is not None:
        common += [f"train.steps={steps}"]
    extra: dict = {}
    if warm_start is None:
        run_dir = out / row.key
        over = [f"train.time_limit={budget}", "train.time_clock=cpu"] if budget is not None else []
        train_cpu, continued, err = _stage(run_dir, row.preset, over + common)
    else:
        if not row.bound:
            return {"row": row.key, "skipped": "trains the ELBO already: a warm start does not apply"}
        from vaekit.registry import load_preset

        total = budget if budget is not None else load_preset(row.preset).train.time_limit
        if not total:
            return {"row": row.key, "error": f"preset {row.preset} has no time budget: give --budget"}
        first = round(warm_start * total, 1)
        base = out / f"{row.key}-warm"
        elbo = ["model.objective=elbo", "model.objective_options={}", "model.warmup_steps=10000",
                f"train.time_limit={first}", "train.time_clock=cpu"]
        cpu1, continued, err = _stage(base / "elbo", row.preset, elbo + common)
        if err is None:
            run_dir = base / row.key
            bound = [f"train.init_from={base / 'elbo'}", f"train.time_limit={round(total - first, 1)}",
                     "train.time_clock=cpu", *WARM_BOUND_STAGE]
            cpu2, continued, err = _stage(run_dir, row.preset, bound + common)
            train_cpu = cpu1 + cpu2
            extra = {"warm_start": warm_start, "elbo_stage_steps": _steps(base / "elbo"),
                     "elbo_stage_cpu_s": round(cpu1, 1)}
    if err is not None:
        return {"row": row.key, "error": err}
    k = iw or row.pythae_is
    ev = ["evaluate", str(run_dir), "--iw-samples", str(k), "--json"]
    if limit is not None:
        ev += ["--limit", str(limit)]
    if threads is not None:
        ev += ["--threads", str(threads)]
    c1 = _child_cpu()
    e = _vaekit(*ev)
    eval_cpu = _child_cpu() - c1
    if e.returncode != 0:
        return {"row": row.key, "error": e.stderr.strip().splitlines()[-1] if e.stderr.strip() else "eval failed"}
    r = json.loads(e.stdout)
    nll = -float(r["log_px"])
    return {"row": row.key, "label": row.label, "preset": row.preset, "data": row.data, "nll": nll,
            "nll_stderr": float(r["log_px_stderr"]), "elbo": float(r["elbo"]), "iw_samples": k, "test_images": r["n"],
            "active_units": r.get("active_units"), "steps": _steps(run_dir), "train_cpu_s": round(train_cpu, 1),
            "eval_cpu_s": round(eval_cpu, 1), "pythae": row.pythae, "pythae_is": row.pythae_is, "paper": row.paper,
            "gap_to_pythae": round(nll - row.pythae, 2), "continued": continued, **extra}


def _table(results: list[dict]) -> str:
    head = ("| row | data | vaekit NLL (s.e.) | IS x test images | pythae (IS) | paper | vaekit - pythae | steps | "
            "train CPU s |")
    lines = [head, "|" + "---|" * 9]
    for r in results:
        if "nll" not in r:
            lines.append(f"| {r['row']} | skipped: {r.get('skipped') or r.get('error')} |||||||| ")
            continue
        lines.append(f"| {r['label']} | {r['data']} | {r['nll']:.2f} ({r['nll_stderr']:.2f}) | {r['iw_samples']} x "
                     f"{r['test_images']} | {r['pythae']:.2f} ({r['pythae_is']}) | {r['paper']:.2f} | "
                     f"{r['gap_to_pythae']:+.2f} | {r['steps']} | {r['train_cpu_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="all", help="comma-separated rows: " + ",".join(r.key for r in ROWS))
    ap.add_argument("--budget", type=float, default=None, help="training CPU seconds per row (default: the preset's)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per row (with --budget: what ends first)")
    ap.add_argument("--iw-samples", type=int, default=None, help="importance samples (default: pythae's per row)")
    ap.add_argument("--limit", type=int, default=None, help="test images, drawn across the split (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of training and evaluation")
    ap.add_argument("--out", default=None, help="folder for the runs (default: a temporary folder); a "
                    "row's unfinished run there is continued, a finished one only evaluated")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--warm-start", type=float, default=None, metavar="F",
                    help="bound rows: train on the ELBO for this fraction of the budget first, then on the bound")
    a = ap.parse_args(argv)
    if a.warm_start is not None and not 0 < a.warm_start < 1:
        print(f"reproductions: --warm-start must be a fraction between 0 and 1, not {a.warm_start}", file=sys.stderr)
        return 2
    keys = [r.key for r in ROWS]
    chosen = keys if a.rows == "all" else [k.strip() for k in a.rows.split(",") if k.strip()]
    bad = [k for k in chosen if k not in keys]
    if bad:
        print(f"reproductions: unknown row {bad[0]!r}; choose from {', '.join(keys)}", file=sys.stderr)
        return 2
    from vaekit.registry import list_presets

    presets = list_presets()
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="vaekit-repro-"))
    results = []
    for row in (r for r in ROWS if r.key in chosen):  # one after the other: never in parallel
        if row.preset not in presets:
            print(f"{row.label}: skipped, preset {row.preset!r} is not registered yet", flush=True)
            results.append({"row": row.key, "skipped": f"preset {row.preset} not registered"})
            continue
        print(f"{row.label}: training {row.preset} ...", flush=True)
        res = run_row(row, out, a.budget, a.steps, a.iw_samples, a.limit, a.threads, a.warm_start)
        print(json.dumps(res), flush=True)
        results.append(res)
    print(_table(results))
    if a.json:
        from vaekit.utils import atomic_write_text

        atomic_write_text(a.json, json.dumps({"argv": sys.argv[1:], "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
