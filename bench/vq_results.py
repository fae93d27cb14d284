"""The measured numbers and figures of docs/results/vq.md from finished run folders (train them with the commands
on that page first). Prints one JSON document and writes the figures.

  VAEKIT_DATA_DIR=/path/to/data python bench/vq_results.py --runs runs/vq --names mnist-vq mnist-vq-norestart \\
      mnist-vae mnist-vq-prior --out docs/results --prefix mnist

For each run (its best checkpoint): the last validation's codebook use (a vqvae run), on the first --n-test test
images the reconstruction PSNR (the decoder mean against the image, 10 log10(1 / MSE) per image, averaged: pixels
in [0, 1]) and the bound in nats and bits/dim (log p(x|z_q) + log p(z_q) for a VQ-VAE, exact; the one-sample ELBO
for a VAE) and, for a VQ-VAE,
the bound with the uniform prior, log p(x|z_q) - H W log K, beside it. Figures: reconstructions, codebook use over
training, code maps of test images, samples (of a second-stage prior run).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch


def psnr(model, x: torch.Tensor, batch: int = 500) -> float:
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            mse = ((model.reconstruct(xb).clamp(0, 1) - xb) ** 2).flatten(1).mean(1)  # (B,)
            out.append(10 * torch.log10(1 / mse.clamp_min(1e-10)))
    return float(torch.cat(out).mean())


def test_bound(model, x: torch.Tensor, batch: int = 500) -> tuple[float, float]:
    """(mean bound, mean log p(x|z)) in nats over x: one sample (exact for a VQ-VAE's deterministic q)."""
    from vaekit.objectives import elbo_terms

    torch.manual_seed(0)
    b, r = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            t = elbo_terms(model, x[i:i + batch])
            b.append(t.elbo)
            r.append(t.log_px_z)
    return float(torch.cat(b).mean()), float(torch.cat(r).mean())


def measure(run: Path, out: Path, prefix: str, n_test: int) -> dict:
    from vaekit.plots.codes import plot_code_maps, plot_code_usage
    from vaekit.plots.curves import load_metrics
    from vaekit.plots.grid import save_image_grid
    from vaekit.runs import load_run
    from vaekit.runs.build import load_splits

    cfg, model, doc = load_run(run)
    splits, _ = load_splits(cfg)
    x = splits.test.x[:n_test]
    recs = load_metrics(run)
    last_val = [r for r in recs if "val_elbo" in r][-1]
    dims = math.prod(splits.shape)
    bound, log_px_z = test_bound(model, x)
    row = {"run": str(run), "step": doc["step"], "family": cfg.model.family, "n_test": int(x.shape[0]),
           "test_bound_nats": bound, "test_log_px_z": log_px_z, "test_kl_nats": log_px_z - bound,
           "test_bits_per_dim": -bound / (dims * math.log(2)), "kl_bits": (log_px_z - bound) / math.log(2),
           "psnr_db": psnr(model, x)}
    name = run.name
    torch.manual_seed(0)
    with torch.no_grad():
        rec = model.reconstruct(x[:8])
    save_image_grid(torch.cat([x[:8], rec.clamp(0, 1)]), out / f"vq-{prefix}-{name}-reconstructions.png", nrow=8)
    if cfg.model.family == "vqvae":
        groups = model.layout.groups  # one code map, or a two-level model's bottom and top
        k = groups[0].shape[-1]
        positions = sum(g.size // g.shape[-1] for g in groups)
        suffixes = [""] if len(groups) == 1 else [f"_{g.name}" for g in groups]
        row.update({f"{key}{sfx}": last_val[f"val_{key}{sfx}"] for sfx in suffixes
                    for key in ("codes_used", "dead_codes", "perplexity")})
        row.update({"K": k, "positions": positions, "latent_bits": positions * math.log2(k),
                    "uniform_bound_nats": log_px_z - positions * math.log(k),
                    "restarts": sum(int(getattr(model.quantiser_of(g.name), "restarts", 0)) for g in groups)})
        row["uniform_bits_per_dim"] = -row["uniform_bound_nats"] / (dims * math.log(2))
        if not cfg.model.prior_of:
            plot_code_usage(recs, out / f"vq-{prefix}-{name}-usage.png")
            with torch.no_grad():
                maps = model.code_maps(x[:8])
                plot_code_maps(x[:8], maps if len(maps) > 1 else maps[groups[0].name], k,
                               out / f"vq-{prefix}-{name}-codes.png")
        else:
            torch.manual_seed(0)
            save_image_grid(model.sample(32).clamp(0, 1), out / f"vq-{prefix}-{name}-samples.png", nrow=8)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, type=Path)
    ap.add_argument("--names", nargs="+", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--prefix", default="mnist")
    ap.add_argument("--n-test", type=int, default=2000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = {n: measure(a.runs / n, a.out, a.prefix, a.n_test) for n in a.names}
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
