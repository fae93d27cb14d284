"""The hierarchical VAE (model.family=hvae) on binarized MNIST: a budgeted run of its CPU preset, and the cost of a
training step against a hand-written loop of the same network.

  python bench/hvae.py --budget-steps N [--iw-samples K] [--eval-n N] [--run-dir DIR]
      trains the binarized-mnist-hvae preset for N steps (the cosine schedule over those N steps; the preset's
      2-hour limit still applies) into DIR (a fresh temporary folder when not given; an existing run folder is
      resumed up to N), then prints one table: steps, the training process's CPU seconds, test ELBO (all 10,000
      test images, one sample each), log p(x) (K importance samples on the first eval-n test images), the KL
      of every latent group on the test set, and the updates skipped above train.skip_threshold.
  python bench/hvae.py --throughput [--steps 20] [--chunk 5]
      seconds per step of vaekit's Trainer.train_step against a minimal loop over the same HierarchicalVAE
      module (bottom-up and top-down passes called directly, the Bernoulli log-likelihood and the Gaussian KLs
      written out, fused Adam), batch 64, in alternating chunks of --chunk steps in one process (a host that
      slows down slows both alike); the ratio of the totals is printed (target: vaekit >= 0.9x the minimal
      loop's samples/s).

Times are process CPU seconds (time.process_time), fair on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

PRESET = "binarized-mnist-hvae"


def _cli(*argv: str) -> None:
    from vaekit.cli import main

    code = main(list(argv))
    if code:
        sys.exit(code)


def budget(steps: int, k: int, n_eval: int, run_dir: str | None) -> None:
    from vaekit.evaluation import estimate_log_likelihood
    from vaekit.evaluation.metrics import per_example_terms
    from vaekit.runs import load_run
    from vaekit.runs.build import load_splits

    out = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="hvae-bench-"))
    t0 = time.process_time()
    if (out / "last.safetensors").exists():
        _cli("train", "--resume", str(out), f"train.steps={steps}")
    else:
        _cli("train", "--preset", PRESET, "--out", str(out), f"train.steps={steps}", "train.progress=false",
             f"train.val_every={steps}", "--quiet")
    train_cpu = time.process_time() - t0
    cfg, model, _ = load_run(out)
    x = load_splits(cfg)[0].test.x
    t = per_example_terms(model, x, batch_size=200, seed=0)
    ll = estimate_log_likelihood(model, x[:n_eval], k=k, seed=0)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    # one KL unit per (C, H, W) group (its closed-form KL does not split), in layout order
    groups = dict(zip(model.layout.names, (float(v) for v in t["kl_units"])))
    rows = [("steps", summary.get("steps", steps)), ("train CPU s (this process)", f"{train_cpu:.0f}"),
            ("test ELBO (10,000, 1 sample)", f"{float(t['elbo'].mean()):.2f}"),
            (f"log p(x) (K={k}, first {n_eval} test)", f"{ll.mean:.2f} ± {ll.stderr:.2f}"),
            ("skipped updates", summary.get("skipped_updates", "?"))]
    rows += [(f"KL {name}", f"{v:.2f}") for name, v in groups.items()]
    print(f"run folder: {out}")
    for a, b in rows:
        print(f"| {a:<34} | {b:>16} |")


def _minimal_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The negative ELBO of the same network, written out: closed-form Gaussian KLs at the sampled parents and
    the Bernoulli log-likelihood from logits."""
    acts = model.bottom_up(x)
    kl = x.new_zeros(x.shape[0])

    def pick(name, p, q):
        nonlocal kl
        mp, sp, mq, sq = p.base_dist.loc, p.base_dist.scale, q.base_dist.loc, q.base_dist.scale
        z = mq + sq * torch.randn_like(mq)
        kl = kl + (torch.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2) - 0.5).sum((1, 2, 3))
        return z

    h, _ = model._top_down((x.shape[0],), acts, pick)
    logits = model.out(h)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    return (rec + kl).mean()


def throughput(steps: int, chunk: int) -> None:
    from vaekit.config import TrainConfig
    from vaekit.data import load_data
    from vaekit.models.registry import build_family
    from vaekit.objectives import ELBO
    from vaekit.registry import load_preset
    from vaekit.training.perf import GradSums
    from vaekit.training.trainer import Trainer

    torch.set_num_threads(2)
    cfg = load_preset(PRESET)
    x = load_data("binarized-mnist").train.x[:6400].float()
    torch.manual_seed(0)
    m_vk = build_family(cfg.model, x.shape[1:])
    torch.manual_seed(0)
    m_min = build_family(cfg.model, x.shape[1:])
    s = TrainConfig(steps=10 ** 6, batch_size=64, lr=2e-3, progress=False)
    tr = Trainer(m_vk, ELBO(), x, None, settings=s, run_dir=None, seed=0)
    opt = torch.optim.Adam(m_min.parameters(), lr=2e-3, fused=True)
    g = torch.Generator().manual_seed(0)
    times = {"vaekit": 0.0, "minimal": 0.0}

    def vk_steps(n: int) -> None:
        with GradSums([]) as sums:
            for _ in range(n):
                tr.train_step(tr._next_batch(), sums)

    def min_steps(n: int) -> None:
        for _ in range(n):
            xb = x.index_select(0, torch.randint(0, x.shape[0], (64,), generator=g))
            loss = _minimal_loss(m_min, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    vk_steps(2), min_steps(2)  # warm-up
    done = 0
    while done < steps:
        for name, fn in (("vaekit", vk_steps), ("minimal", min_steps)):
            t0 = time.process_time()
            fn(chunk)
            times[name] += time.process_time() - t0
        done += chunk
    for name, t in times.items():
        print(f"| {name:<8} | {t / done:7.3f} CPU s/step | {64 * done / t:8.1f} samples/s |")
    print(f"vaekit / minimal samples/s: {times['minimal'] / times['vaekit']:.3f} (target >= 0.9)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-steps", type=int)
    ap.add_argument("--iw-samples", type=int, default=1000)
    ap.add_argument("--eval-n", type=int, default=10000)
    ap.add_argument("--run-dir")
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=5)
    a = ap.parse_args()
    if a.throughput:
        throughput(a.steps, a.chunk)
    elif a.budget_steps:
        budget(a.budget_steps, a.iw_samples, a.eval_n, a.run_dir)
    else:
        ap.error("give --budget-steps N or --throughput")


if __name__ == "__main__":
    main()
