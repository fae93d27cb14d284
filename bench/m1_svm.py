"""Kingma et al. 2014's "M1 + SVM" reference for M1+M2 (their Table 1 has M1 + TSVM): an RBF support-vector
machine on a trained M1 VAE's posterior means, fitted on N labelled training digits (the class-balanced subset
``data.labels=N`` gives M2 with the same seed), scored on the test set.

    VAEKIT_DATA_DIR=... python bench/m1_svm.py runs/mnist-m1 --labels 100 3000

It says how much of an M1+M2 run's error the M1 features alone explain: an M2 on M1 that does no better than
this has not used its unlabelled digits. scikit-learn's SVC with its defaults (C = 1, gamma "scale"); seconds.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="an M1 run folder (a VAE trained on the data without labels)")
    ap.add_argument("--labels", type=int, nargs="+", default=[100, 3000], help="labelled training digits")
    ap.add_argument("--seed", type=int, default=0, help="the subset's seed (an M2 run's own seed)")
    a = ap.parse_args()
    import torch
    from sklearn.svm import SVC

    from vaekit.apps import load_inputs
    from vaekit.apps.embed import embed
    from vaekit.objectives.semi_supervised import balanced_label_subset
    from vaekit.runs import load_run

    cfg, model, doc = load_run(a.run)
    feats = {}
    for split in ("train", "test"):
        d = load_inputs(cfg, doc, None, split)
        with torch.no_grad():
            feats[split] = (embed(model, d.x).numpy(), d.y.numpy())  # (N, latent_dim), (N,)
    (ztr, ytr), (zte, yte) = feats["train"], feats["test"]
    print(f"| labels | test error of an RBF SVM on {a.run}'s posterior means (n = {len(yte)}) |\n| --- | --- |")
    for n in a.labels:
        idx = balanced_label_subset(torch.as_tensor(ytr), n, a.seed).numpy()
        err = float(np.mean(SVC().fit(ztr[idx], ytr[idx]).predict(zte) != yte))
        print(f"| {n} | {100 * err:.2f} % |")


if __name__ == "__main__":
    main()
