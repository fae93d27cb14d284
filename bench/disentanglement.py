"""The disentanglement experiment of docs/results/disentanglement.md: β-VAE (β = 1, 4, 8) and β-TCVAE (β = 6)
on generated dSprites, 3 seeds each; MIG, FactorVAE score and DCI disentanglement as mean ± s.d. over seeds.

    VAEKIT_DATA_DIR=... python bench/disentanglement.py --out runs/dis --budget 3600 --jobs 2

Budget: ``--budget`` seconds of training per run (``train.time_limit``; the presets' 300,000 steps are the
literature's GPU budget, Locatello et al. 2019), ``--jobs`` runs side by side with one thread each. 12 runs at
the default 3,600 s on 2 cores is 6 hours of training plus the metrics. Metrics per run on one core with the
rendering cache: MIG well under a minute, DCI several minutes (gradient boosting); the FactorVAE score at its
default 10,000 / 5,000 votes encodes 960,000 images (about 25 minutes for the dSprites conv encoder), so
``--factor-vae-sizes`` and ``--dci-sizes`` shrink those two alone. The first call renders all 737,280 images
into the cache (``vaekit.data.dsprites.build_cache``, 3 to 15 minutes on one core, machine by machine).
Results go to OUT/results.json and a markdown table on stdout; a finished run or metric file is reused when the
command is run again.
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

import yaml

from vaekit.config import ModelConfig

SETTINGS = {  # name -> (preset, overrides)
    "beta-vae-1": ("dsprites-beta-vae", ["model.beta=1"]),
    "beta-vae-4": ("dsprites-beta-vae", ["model.beta=4"]),
    "beta-vae-8": ("dsprites-beta-vae", ["model.beta=8"]),
    "beta-tcvae-6": ("dsprites-beta-tcvae", ["model.beta=6"]),
}
HEAD = {"mig": "mig", "factor_vae": "factor_vae", "dci": "dci_disentanglement"}


def one(out: Path, name: str, seed: int, budget: float, extra: list[str], metric_args: list[str],
        fvae_args: list[str], dci_args: list[str], device: str = "cpu") -> dict:
    from vaekit.utils import atomic_write_text

    run = out / f"{name}-s{seed}"
    preset, over = SETTINGS[name]
    if not (run / "summary.json").exists():
        cmd = [sys.executable, "-m", "vaekit", "train", "--quiet", "--preset", preset, "--out", str(run),
               f"seed={seed}", f"train.time_limit={budget}", "train.threads=1", f"train.device={device}", *over,
               "data.dataset_options={n_train: 100000, n_val: 5000, n_test: 5000}", *extra]
        subprocess.run(cmd, check=True)
    summ = json.loads((run / "summary.json").read_text())
    # test ELBO and KL say whether a run has left the mean image (ELBO near -465 nats and KL near 0 there)
    scores = {"steps": summ["steps"], "test_elbo": summ["test"]["elbo"], "test_kl": summ["test"]["kl"],
              "conv_out": yaml.safe_load((run / "config.yaml").read_text())["model"].get("conv_out", ModelConfig.conv_out)}
    for tag, metrics, sizes in (("factor-vae", ["factor_vae"], fvae_args), ("dci", ["dci"], dci_args),
                                ("mig", ["mig"], metric_args)):
        res_file = run / f"disentanglement-{tag}.json"  # one file per call: each call rewrites disentanglement.json
        if not res_file.exists():
            cmd = [sys.executable, "-m", "vaekit", "disentanglement", str(run), "--json", "--device", device,
                   "--metrics", *metrics,
                   *sizes, *(["--no-figures"] if tag != "mig" else [])]
            done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            atomic_write_text(res_file, done.stdout)
        doc = json.loads(res_file.read_text())
        scores.update({m: doc["metrics"][m][HEAD[m]] for m in metrics})
        scores.update({f"{m}_seconds": doc["metrics"][m]["seconds"] for m in metrics})
        scores[f"{tag}_sizes"] = doc["sizes"]
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=3600, help="training seconds per run (default 3600)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--num-train", type=int, default=None, help="metric points (default disentanglement_lib's)")
    ap.add_argument("--num-eval", type=int, default=None)
    ap.add_argument("--factor-vae-sizes", type=int, nargs=2, default=None, metavar=("TRAIN", "EVAL"),
                    help="votes for the FactorVAE score (default its 10000 / 5000: 960,000 images to encode, "
                         "about 25 minutes per run on one core for the dSprites conv encoder)")
    ap.add_argument("--dci-sizes", type=int, nargs=2, default=None, metavar=("TRAIN", "TEST"),
                    help="points for DCI (default 10000 / 5000: gradient boosting of 113 class-trees per round, "
                         "several minutes per run on one core)")
    ap.add_argument("--override", nargs="*", default=[], help="extra key=value for every training run")
    ap.add_argument("--device", default="cpu", help="train.device and the metrics' --device (e.g. cuda)")
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
    def sized(v: list[int] | None) -> list[str]:
        return margs if v is None else ["--num-train", str(v[0]), "--num-eval", str(v[1])]

    fargs, dargs = sized(a.factor_vae_sizes), sized(a.dci_sizes)
    jobs = [(n, s) for s in a.seeds for n in a.settings]  # seed by seed: an interrupted call leaves whole seeds
    with ThreadPoolExecutor(a.jobs) as ex:
        scores = list(ex.map(lambda j: one(out, j[0], j[1], a.budget, a.override, margs, fargs, dargs, a.device),
                             jobs))
    table: dict[str, dict] = {}
    for (name, seed), sc in zip(jobs, scores):
        table.setdefault(name, {})[seed] = sc
    summary = {}
    print(f"\n| setting | {' | '.join(HEAD)} | per seed (MIG) | steps | test ELBO |\n"
          f"| --- |{' --- |' * len(HEAD)} --- | --- | --- |")
    for name, per in table.items():
        row = {}
        for m in HEAD:
            v = [per[s][m] for s in sorted(per)]
            row[m] = (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
        summary[name] = {"mean_sd": row, "per_seed": per}
        cells = " | ".join(f"{mu:.3f} ± {sd:.3f}" for mu, sd in row.values())
        migs = ", ".join(f"{per[s]['mig']:.3f}" for s in sorted(per))
        steps = ", ".join(str(per[s]["steps"]) for s in sorted(per))
        elbos = ", ".join(f"{per[s]['test_elbo']:.0f}" for s in sorted(per))
        print(f"| {name} | {cells} | {migs} | {steps} | {elbos} |")
    target = None
    if "beta-tcvae-6" in table and "beta-vae-1" in table:  # the target, seed by seed
        tc, v1 = table["beta-tcvae-6"], table["beta-vae-1"]
        common = sorted(set(tc) & set(v1))
        target = {"tcvae_mig_at_least_0.2": all(tc[s]["mig"] >= 0.2 for s in common),
                  "tcvae_mig_above_beta1": all(tc[s]["mig"] > v1[s]["mig"] for s in common), "seeds": common}
        print(f"\ntarget on seeds {common}: beta-TCVAE MIG >= 0.2 in every seed: {target['tcvae_mig_at_least_0.2']}; "
              f"above the beta = 1 VAE in every seed: {target['tcvae_mig_above_beta1']}")
    doc = {"budget_s": a.budget, "seeds": a.seeds, "overrides": a.override, "target": target,
           "metric_sizes": margs or "defaults (10000/5000)", "factor_vae_sizes": fargs or "defaults (10000/5000)",
           "dci_sizes": dargs or "defaults (10000/5000)",
           "results": summary}
    atomic_write_text(out / "results.json", json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
