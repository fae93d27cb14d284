"""The disentanglement experiment of issue 18: β-VAE (β = 1, 4, 8) and β-TCVAE (β = 6) on generated dSprites,
3 seeds each; MIG, FactorVAE score and DCI disentanglement as mean ± s.d. over seeds.

    VAEKIT_DATA_DIR=... python bench/disentanglement.py --out runs/dis --budget 3600 --jobs 2

Budget: ``--budget`` seconds of training per run (``train.time_limit``; the presets' 300,000 steps are the
literature's GPU budget, Locatello et al. 2019), ``--jobs`` runs side by side with one thread each. 12 runs at
the default 3,600 s on 2 cores is 6 hours of training plus the metrics (each run's metrics: about 10-30 minutes on
one core with the rendering cache, DCI's gradient boosting the largest part). The first call renders all 737,280
images into the cache (``vaekit.data.dsprites.build_cache``, about 15 minutes on one core). Results go to
OUT/results.json and a markdown table on stdout; a finished run or metric file is reused when the command is
run again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SETTINGS = {  # name -> (preset, overrides)
    "beta-vae-1": ("dsprites-beta-vae", ["model.beta=1"]),
    "beta-vae-4": ("dsprites-beta-vae", ["model.beta=4"]),
    "beta-vae-8": ("dsprites-beta-vae", ["model.beta=8"]),
    "beta-tcvae-6": ("dsprites-beta-tcvae", ["model.beta=6"]),
}
HEAD = {"mig": "mig", "factor_vae": "factor_vae", "dci": "dci_disentanglement"}


def one(out: Path, name: str, seed: int, budget: float, extra: list[str], metric_args: list[str]) -> dict:
    run = out / f"{name}-s{seed}"
    preset, over = SETTINGS[name]
    if not (run / "summary.json").exists():
        cmd = [sys.executable, "-m", "vaekit", "train", "--quiet", "--preset", preset, "--out", str(run),
               f"seed={seed}", f"train.time_limit={budget}", "train.threads=1", *over,
               "data.dataset_options={n_train: 100000, n_val: 5000, n_test: 5000}", *extra]
        subprocess.run(cmd, check=True)
    res_file = run / "disentanglement.json"
    if not res_file.exists():
        cmd = [sys.executable, "-m", "vaekit", "disentanglement", str(run), "--metrics", *HEAD, *metric_args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    doc = json.loads(res_file.read_text())
    return {m: doc["metrics"][m][k] for m, k in HEAD.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=3600, help="training seconds per run (default 3600)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--num-train", type=int, default=None, help="metric points (default disentanglement_lib's)")
    ap.add_argument("--num-eval", type=int, default=None)
    ap.add_argument("--override", nargs="*", default=[], help="extra key=value for every training run")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from vaekit.data.api import resolve_data_dir
    from vaekit.data.dsprites import CACHE_FILE, build_cache
    from vaekit.utils import atomic_write_text

    cache = resolve_data_dir()[0] / "dsprites" / CACHE_FILE
    if not cache.exists():
        print(f"rendering all dSprites images into {cache} ...", flush=True)
        build_cache(cache)
    margs = [*(["--num-train", str(a.num_train)] if a.num_train else []),
             *(["--num-eval", str(a.num_eval)] if a.num_eval else [])]
    jobs = [(n, s) for n in a.settings for s in a.seeds]
    with ThreadPoolExecutor(a.jobs) as ex:
        scores = list(ex.map(lambda j: one(out, j[0], j[1], a.budget, a.override, margs), jobs))
    table: dict[str, dict] = {}
    for (name, seed), sc in zip(jobs, scores):
        table.setdefault(name, {})[seed] = sc
    summary = {}
    print(f"\n| setting | {' | '.join(HEAD)} | per seed (MIG) |\n| --- |{' --- |' * len(HEAD)} --- |")
    for name, per in table.items():
        row = {}
        for m in HEAD:
            v = [per[s][m] for s in sorted(per)]
            row[m] = (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
        summary[name] = {"mean_sd": row, "per_seed": per}
        cells = " | ".join(f"{mu:.3f} ± {sd:.3f}" for mu, sd in row.values())
        migs = ", ".join(f"{per[s]['mig']:.3f}" for s in sorted(per))
        print(f"| {name} | {cells} | {migs} |")
    doc = {"budget_s": a.budget, "seeds": a.seeds, "metric_sizes": margs or "defaults (10000/5000)",
           "results": summary}
    atomic_write_text(out / "results.json", json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
