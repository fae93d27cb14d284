"""Every measured figure of docs/results/apps.md (uses of a trained model), from the command line, on MNIST.

Trains (one process at a time, ``--threads`` threads, time budgets via train.time_limit; runs that already have a
summary.json are reused) and then measures with the `vaekit` app commands:

1. embedding probe: 10-dim VAE posterior means vs 10-dim PCA of the same training images, logistic regression
   and 5-nearest-neighbour accuracy on the test set (`vaekit embed`);
2. one-class-out anomaly detection: a VAE trained on all digits but one (``--held-out``, default 9 then 0), the
   test set scored, the held-out digit the anomaly: AUROC / AUPRC per score, thresholds for a 5 % false-positive
   rate on the validation images of the other digits (`vaekit anomaly`);
3. generative classifier: one VAE per digit, argmax log p(x|c) + log p(c) on the test set (`vaekit classify`);
4. inpainting: squared error on the masked pixels against the training mean image, and a figure (`vaekit inpaint`);
5. amortisation gap on test points (`vaekit refine`).

  VAEKIT_DATA_DIR=/path/to/data python bench/apps_mnist.py --out runs/apps   # ~41 CPU-minutes with the defaults (35 training)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VAEKIT = [sys.executable, "-m", "vaekit.cli"]


def sh(args: list[str], log: Path | None = None) -> str:
    """Run `vaekit ARGS`, echo the command, return stdout; exit with the log on failure."""
    print("$ vaekit " + " ".join(args), flush=True)
    p = subprocess.run(VAEKIT + args, capture_output=True, text=True)
    if log is not None:
        log.write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ''}")
    return p.stdout


def train(out: Path, name: str, seconds: float, threads: int, *extra: str) -> Path:
    run = out / name
    if not (run / "summary.json").exists():
        sh(["train", "--quiet", "--preset", "mnist-mlp", "--out", str(run), *extra, "train.epochs=1000",
            "train.lr_schedule=cosine", f"train.time_limit={seconds}", f"train.threads={threads}"],
           out / f"{name}.train.log")
    return run


def probe(run: Path, out: Path, threads: int) -> dict[str, float]:
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from vaekit.apps import load_inputs
    from vaekit.runs import load_run

    feats = {}
    for split in ("train", "test"):
        sh(["embed", str(run), "--split", split, "-o", str(out / f"embed-{split}.csv"), "--threads", str(threads)])
        t = np.loadtxt(out / f"embed-{split}.csv", delimiter=",", skiprows=1)
        feats[split] = (t[:, :-1], t[:, -1].astype(int))
    cfg, _, doc = load_run(run)
    raw = {s: load_inputs(cfg, doc, None, s) for s in ("train", "test")}  # the same images, grey levels
    pca = PCA(10, random_state=0).fit(raw["train"].x.flatten(1).numpy())
    feats_pca = {s: pca.transform(raw[s].x.flatten(1).numpy()) for s in ("train", "test")}
    res = {}
    for name, f in (("vae", {s: feats[s][0] for s in feats}), ("pca", feats_pca)):
        ytr, yte = feats["train"][1], feats["test"][1]
        for pname, clf in (("logreg", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
                           ("knn5", KNeighborsClassifier(5))):
            res[f"{name}_{pname}"] = float(clf.fit(f["train"], ytr).score(f["test"], yte))
    res["pca_explained_variance"] = float(pca.explained_variance_ratio_.sum())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/apps-mnist", help="folder for the runs and outputs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--embed-seconds", type=float, default=300, help="training budget of the 10-dim model")
    ap.add_argument("--anomaly-seconds", type=float, default=300, help="training budget of each one-class-out model")
    ap.add_argument("--held-out", type=int, nargs="+", default=[9, 0], help="digits held out in turn (anomalies)")
    ap.add_argument("--class-seconds", type=float, default=100, help="training budget of each per-digit model")
    ap.add_argument("-k", "--iw-samples", type=int, default=100, help="K for -log p(x) and the classifier")
    ap.add_argument("--inpaint-limit", type=int, default=1000)
    ap.add_argument("--refine-limit", type=int, default=1000)
    ap.add_argument("--refine-steps", type=int, default=100)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    th = ["--threads", str(a.threads)]
    t0 = time.time()
    embed_run = train(out, "embed10", a.embed_seconds, a.threads, "model.latent_dim=10")
    held = {d: train(out, f"no{d}", a.anomaly_seconds, a.threads,
                     "data.classes=[" + ",".join(str(c) for c in range(10) if c != d) + "]") for d in a.held_out}
    classes = [train(out, f"class{k}", a.class_seconds, a.threads, f"data.classes=[{k}]") for k in range(10)]
    results: dict[str, object] = {}

    results["probe"] = probe(embed_run, out, a.threads)
    results["anomaly"] = {d: json.loads(sh(["anomaly", str(run), "-k", str(a.iw_samples), "--fpr", "0.05", "--json",
                                            "-o", str(out / f"anomaly-no{d}.csv"), *th])) for d, run in held.items()}
    results["classify"] = {score: json.loads(sh(["classify", *map(str, classes), "--score", score, "-k",
                                                 str(a.iw_samples), "--json", "-o", str(out / f"classify-{score}.csv"),
                                                 *th]))
                           for score in ("loglik", "elbo")}
    results["inpaint"] = {}
    for mask in ("bottom", "right", "centre", "random:0.75"):  # the default method, optimize
        fig = out / f"inpaint-{mask.replace(':', '')}.png"
        results["inpaint"][mask] = json.loads(sh(["inpaint", str(embed_run), "--mask", mask, "--first",
                                                  str(a.inpaint_limit), "--figure", str(fig), "--json", *th]))
    results["inpaint"]["bottom, iterate"] = json.loads(sh(["inpaint", str(embed_run), "--mask", "bottom", "--method",
                                                          "iterate", "--first", str(a.inpaint_limit), "--json", *th]))
    results["refine"] = json.loads(sh(["refine", str(embed_run), "--first", str(a.refine_limit), "--steps",
                                       str(a.refine_steps), "--eval-samples", "200", "-k", "1000", "--json",
                                       "-o", str(out / "refine.csv"), *th]))
    results["seconds_total"] = time.time() - t0
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    import numpy as np

    p = results["probe"]
    print(f"\nembedding probe (10 dims, MNIST test accuracy): VAE logreg {p['vae_logreg']:.4f}, knn5 {p['vae_knn5']:.4f}; "
          f"PCA logreg {p['pca_logreg']:.4f}, knn5 {p['pca_knn5']:.4f} (PCA keeps {p['pca_explained_variance']:.3f} "
          f"of the variance)")
    for d, an in results["anomaly"].items():
        print(f"one-class-out anomaly detection, digit {d} held out ({an['n_anomalies']} of {an['n']} test images):")
        for s in an["scores"]:
            print(f"  {s['score']:<12} AUROC {s['auroc']:.4f}  AUPRC {s['auprc']:.4f}  at FPR target 0.05: "
                  f"test FPR {s['fpr']:.3f}, TPR {s['tpr']:.3f}")
        t = np.genfromtxt(out / f"anomaly-no{d}.csv", delimiter=",", names=True)
        print("  mean -log p(x) per test digit: " + ", ".join(
            f"{c}: {t['neg_log_px'][t['label'] == c].mean():.1f}" for c in range(10)))
    for score, c in results["classify"].items():
        print(f"generative classifier ({score}): test accuracy {c['accuracy']:.4f} (n = {c['n_scored']})")
    for mask, r in results["inpaint"].items():
        print(f"inpainting ({mask}, {r['n']} test images): masked-pixel MSE {r['mse_completion']:.4f} vs mean-image "
              f"fill {r['mse_fill']:.4f}")
    r = results["refine"]
    print(f"amortisation gap ({r['n']} test points, {r['steps']} steps): amortised ELBO {r['elbo_amortised']:.2f}, "
          f"refined {r['elbo_refined']:.2f}, gap {r['gap']:.3f} ± {r['gap_stderr']:.3f} nats (min {r['gap_min']:.3f}; "
          f"{r['kept_amortised']} points kept the amortised posterior); log p(x) (K=1000) {r['log_px']:.2f}, "
          f"approximation gap {r['approximation_gap']:.3f}")
    print(f"results in {out / 'results.json'}; {results['seconds_total']:.0f} s in all")


if __name__ == "__main__":
    main()
