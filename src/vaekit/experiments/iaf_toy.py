"""Toy experiment: diagonal Gaussian vs IAF posteriors on four data points (Kingma et al. 2016, Figure 1).

A VAE with a 2-D latent space, a standard normal prior and a Bernoulli likelihood is fitted to the four one-hot
vectors of length 4 (one "class" each). The best any model can do on this data set is log p(x) = -log 4 for
every point, and ELBO = log p(x) - KL(q(z|x) || p(z|x)): to approach -log 4 the four posteriors must tile the
prior without overlapping, which axis-aligned Gaussians cannot do but IAF posteriors can. Both models share the
encoder/decoder architecture, seed, optimiser and number of steps; only the posterior head differs.

    python -m vaekit.experiments.iaf_toy --out DIR      # writes DIR/iaf_toy.png and DIR/iaf_toy.json
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from vaekit.models import VAE, build_vae
from vaekit.objectives import ELBO, IWAE, log_weights

__all__ = ["ToySettings", "toy_data", "build_toy_vae", "train_toy", "evaluate_toy", "run", "main"]


@dataclass
class ToySettings:
    """Everything that defines a run (saved in the JSON next to the results)."""

    steps: int = 3000
    lr: float = 5e-3
    batch_repeats: int = 32  # each step sees the 4 points repeated this many times (one z sample each)
    hidden: Sequence[int] = (64, 64)
    iaf_steps: int = 4
    iaf_hidden: Sequence[int] = (32, 32)
    iaf_context: int = 16
    forget_bias: float = 2.0
    eval_samples: int = 5000
    plot_samples: int = 600
    seed: int = 0
    posteriors: Sequence[str] = field(default_factory=lambda: ("gaussian", "iaf"))


def toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The four one-hot vectors of length 4 (4, 4) and their class labels (4,)."""
    return torch.eye(4), torch.arange(4)


def build_toy_vae(posterior: str, s: ToySettings) -> VAE:
    """The shared encoder/decoder (MLP, ELU) with a 2-D latent and the named posterior head."""
    kwargs = {}
    if posterior == "iaf":
        kwargs = dict(steps=s.iaf_steps, hidden=tuple(s.iaf_hidden), context=s.iaf_context,
                      forget_bias=s.forget_bias)
    return build_vae((4,), latent_dim=2, hidden=tuple(s.hidden), act="elu", likelihood="bernoulli",
                     posterior=posterior, posterior_kwargs=kwargs)


def train_toy(posterior: str, s: ToySettings) -> VAE:
    """Fit one model with vaekit's Trainer (Adam, cosine schedule) on the negative ELBO, in memory: every step
    sees the 4 points repeated ``batch_repeats`` times (seeded; identical for both posteriors except the head)."""
    from vaekit.config import TrainConfig
    from vaekit.training import Trainer

    torch.manual_seed(s.seed)
    model = build_toy_vae(posterior, s)
    x, _ = toy_data()
    batch = x.repeat(s.batch_repeats, 1)  # (4 R, 4): one batch per step
    settings = TrainConfig(steps=s.steps, batch_size=batch.shape[0], lr=s.lr, lr_schedule="cosine", progress=False,
                           val_every=s.steps)
    Trainer(model, ELBO(), batch, None, settings=settings, run_dir=None, seed=s.seed).fit()
    return model.eval()


@torch.no_grad()
def evaluate_toy(model: VAE, s: ToySettings) -> dict[str, float]:
    """ELBO (mean over the 4 points, ``eval_samples`` samples each) with its standard error, and IWAE_1000."""
    torch.manual_seed(s.seed + 1)
    x, _ = toy_data()
    elbo_samples = log_weights(model, x, s.eval_samples)  # (S, 4): log p(x|z) + log p(z) - log q(z|x)
    elbo = elbo_samples.mean(0)  # (4,)
    se = elbo_samples.std(0).square().sum().sqrt() / (4 * math.sqrt(s.eval_samples))
    iwae = IWAE(k=1000).bound(model, x)  # (4,)
    return {"elbo": float(elbo.mean()), "elbo_se": float(se), "log_px_iwae1000": float(iwae.mean()),
            "elbo_per_point": [float(v) for v in elbo]}


@torch.no_grad()
def posterior_samples(model: VAE, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples of q(z|x) per data point: z (4 n, 2) and labels (4 n,)."""
    x, labels = toy_data()
    z, _ = model.encode(x).rsample_and_log_prob((n,))  # (n, 4, 2)
    return z.reshape(-1, 2), labels.repeat(n)


def run(out_dir: str | Path, settings: ToySettings | None = None, plot: bool = True) -> dict:
    """Train both models, write ``iaf_toy.json`` (and ``iaf_toy.png``) into out_dir and return the results."""
    s = settings or ToySettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    results: dict = {"settings": asdict(s), "optimum": -math.log(4.0), "units": "nats per data point"}
    panels = []
    names = {"gaussian": "Diagonal Gaussian posterior", "iaf": f"IAF posterior ({s.iaf_steps} steps)"}
    for posterior in s.posteriors:
        model = train_toy(posterior, s)
        results[posterior] = evaluate_toy(model, s)
        if plot:
            torch.manual_seed(s.seed + 2)
            z, labels = posterior_samples(model, s.plot_samples)
            r = results[posterior]
            panels.append((f"{names[posterior]}\nELBO = {r['elbo']:.3f} nats (optimum {-math.log(4):.3f})",
                           z.numpy(), labels.numpy()))
    from vaekit.utils import atomic_write_text

    atomic_write_text(out_dir / "iaf_toy.json", json.dumps(results, indent=2) + "\n")
    if plot:
        from vaekit.plots.iaf_toy import plot_aggregate_posteriors

        plot_aggregate_posteriors(panels, out_dir / "iaf_toy.png",
                                  class_names=[f"x = e{k + 1}" for k in range(4)])
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vaekit.experiments.iaf_toy", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder for iaf_toy.png and iaf_toy.json")
    parser.add_argument("--steps", type=int, default=ToySettings.steps, help="Adam steps per model")
    parser.add_argument("--seed", type=int, default=ToySettings.seed)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    res = run(args.out, ToySettings(steps=args.steps, seed=args.seed))
    for name in ("gaussian", "iaf"):
        r = res[name]
        print(f"{name:9s} ELBO {r['elbo']:.4f} +- {r['elbo_se']:.4f}   IWAE_1000 {r['log_px_iwae1000']:.4f}")
    print(f"optimum -log 4 = {res['optimum']:.4f}; wrote {Path(args.out) / 'iaf_toy.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
