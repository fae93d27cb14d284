"""Train a VAE on your own arrays from Python, save it, load it back and use it.

    python examples/fit_save_load.py [--steps 2000] [--out model.safetensors]

The data here are scikit-learn's bundled 8x8 digits as a numpy array (no download); any (N, D) or (N, C, H, W)
array of numbers works the same way (for real-valued data choose model={"likelihood": "sigma-vae"}).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

import vaekit
from vaekit.apps import embed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="training steps")
    ap.add_argument("--out", default=None, help="where to save the model (default: a temporary folder)")
    a = ap.parse_args()

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)                     # (1797, 64) grey levels in [0, 1]
    x_train, x_test = x[:1500], x[1500:]

    # 1. train: config sections as keyword arguments (the same keys as `vaekit train key=value`)
    model = vaekit.fit(x_train, model={"latent_dim": 8, "hidden": [128], "likelihood": "bernoulli"},
                       train={"steps": a.steps, "lr": 2e-3, "batch_size": 64}, seed=0)

    # 2. save and load: safetensors weights, the JSON header says how to rebuild the model
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp()) / "digits-vae.safetensors"
    vaekit.save(model, out)
    model = vaekit.load(out)

    # 3. use it: numpy in, numbers out
    ll = vaekit.estimate_log_likelihood(model, x_test, k=100, seed=0)
    print(f"test log p(x) = {ll.mean:.2f} ± {ll.stderr:.2f} nats (K = {ll.k}, n = {len(x_test)})")
    res = vaekit.evaluate(model, x_test, k=10, seed=0)  # ELBO, log p(x), active units, KL per dimension
    print(f"test ELBO {res['elbo']:.2f} nats; active units {res['active_units']} / {model.latent_dim}")
    z_train, z_test = embed(model, x_train).numpy(), embed(model, x_test).numpy()  # posterior means (N, 8)
    knn = KNeighborsClassifier(5).fit(z_train, y[:1500])
    print(f"5-NN on the latent means: test accuracy {knn.score(z_test, y[1500:]):.3f}; model saved to {out}")


if __name__ == "__main__":
    main()
