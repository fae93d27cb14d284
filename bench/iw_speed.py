"""Speed of the importance-sampled log p(x) (K = 5000) for the 784-400-20 Bernoulli MLP VAE, float32 and bf16.

Times ``vaekit.evaluation.estimate_log_likelihood`` on ``--n`` binarized-MNIST test points for several
chunkings / thread counts, prints points/s and the projected time for the 10,000-point test set, then the
bf16-decoder speed and its bias against float32 on the same random samples (same seed, so the difference is
the bf16 rounding alone).

Usage: python bench/iw_speed.py [--n 200] [--k 5000] [--train-steps 300] [--skip-bf16] [--skip-compile]
Data: $VAEKIT_DATA_DIR/binarized_mnist/binarized_mnist.npz (random binary images of the same shape when
absent, said in the output). The weights are random, or trained for ``--train-steps`` Adam steps (default) so
the posterior is sharp and the bf16 bias is measured on a realistic model. One row times the opt-in
``compiled=True`` path (torch.compile of ``model.log_weights``).
glibc tip: large per-call temporaries are returned to the OS and faulted back in on every call; running with
MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824 (environment, read at start-up) avoids that.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vaekit.evaluation import auto_chunk_size, cpu_supports_bf16, estimate_log_likelihood
from vaekit.models import build_vae
from vaekit.objectives import ELBO


def load_binarized_mnist(n_train: int, n_test: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    root = os.environ.get("VAEKIT_DATA_DIR")
    path = Path(root) / "binarized_mnist" / "binarized_mnist.npz" if root else None
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as d:
            tr = torch.from_numpy(d["train"][:n_train].astype(np.float32))
            te = torch.from_numpy(d["test"][:n_test].astype(np.float32))
        return tr.reshape(-1, 1, 28, 28), te.reshape(-1, 1, 28, 28), f"binarized MNIST ({path})"
    g = torch.Generator().manual_seed(0)
    tr = (torch.rand(n_train, 1, 28, 28, generator=g) < 0.13).float()
    te = (torch.rand(n_test, 1, 28, 28, generator=g) < 0.13).float()
    return tr, te, "random binary images (set VAEKIT_DATA_DIR to a folder with binarized_mnist/ for real data)"


def build_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_vae((1, 28, 28), hidden=(400,), latent_dim=20, likelihood="bernoulli")


def train(model: torch.nn.Module, x: torch.Tensor, steps: int, batch: int = 100) -> float:
    if steps <= 0:
        return float("nan")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    obj = ELBO()
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        res = obj(model, x[idx], check=False)
        opt.zero_grad(set_to_none=True)
        res.loss.backward()
        opt.step()
    model.eval()
    return float(-res.loss.detach())


def timed(model, x, k, rounds, **kw) -> tuple[list[float], torch.Tensor]:
    """points/s of each of ``rounds`` equal slices of x (the best one is the least disturbed by other processes
    on a shared machine) and the (N,) estimates; slice r uses seed r, so equal kw give equal samples."""
    estimate_log_likelihood(model, x[:2], k=k, check=False, **kw)  # warm-up
    rates, out = [], []
    for r, xr in enumerate(x.chunk(rounds)):
        t0 = time.perf_counter()
        out.append(estimate_log_likelihood(model, xr, k=k, seed=r, **kw).per_example)
        rates.append(xr.shape[0] / (time.perf_counter() - t0))
    return rates, torch.cat(out)


def show(rates: list[float]) -> str:
    best, med = max(rates), statistics.median(rates)
    return f"best {best:5.1f} / median {med:5.1f} points/s -> 10,000 points in {10000 / best:5.0f} s (best)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="test points to time")
    ap.add_argument("--k", type=int, default=5000, help="importance samples per point")
    ap.add_argument("--train-steps", type=int, default=300, help="Adam steps on the training set first (0: random)")
    ap.add_argument("--chunks", default="auto,5000,1000", help="comma-separated chunk sizes to time ('auto')")
    ap.add_argument("--threads", default="2,1", help="comma-separated torch thread counts to time (auto chunk)")
    ap.add_argument("--batch-sizes", default="4", help="comma-separated points per call to time besides 1 (auto chunk)")
    ap.add_argument("--rounds", type=int, default=5, help="timed slices per setting (best and median shown)")
    ap.add_argument("--skip-bf16", action="store_true")
    ap.add_argument("--skip-compile", action="store_true", help="skip the torch.compile row")
    a = ap.parse_args()

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f} (other processes share the CPU: figures vary with load)")
    print(f"CPU native bf16 (avx512_bf16 / amx): {cpu_supports_bf16()}; malloc env: "
          f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', '-')} "
          f"MALLOC_TRIM_THRESHOLD_={os.environ.get('MALLOC_TRIM_THRESHOLD_', '-')}")
    x_train, x, source = load_binarized_mnist(20000, a.n)
    model = build_model()
    t0 = time.perf_counter()
    elbo = train(model, x_train, a.train_steps)
    print(f"data: {source}; model 784-400-20 Bernoulli, {a.train_steps} training steps "
          f"(train ELBO {elbo:.1f} nats, {time.perf_counter() - t0:.0f} s)")
    print(f"estimate_log_likelihood on {a.n} points, K = {a.k}, one point per call (batch_size=1)")

    base_threads = torch.get_num_threads()
    fp32 = None
    rows = [(c, base_threads, 1) for c in a.chunks.split(",")]
    rows += [("auto", int(t), 1) for t in a.threads.split(",") if int(t) != base_threads]
    rows += [("auto", base_threads, int(b)) for b in a.batch_sizes.split(",") if b and int(b) != 1]
    for chunk, threads, bs in rows:
        c = None if chunk == "auto" else int(chunk)
        rates, pe = timed(model, x, a.k, a.rounds, chunk_size=c, num_threads=threads, batch_size=bs)
        shown = f"auto={auto_chunk_size(a.k, bs, 784)}" if c is None else str(c)
        print(f"  fp32  batch {bs}  chunk {shown:>9}  threads {threads}: {show(rates)}; "
              f"log p(x) {pe.mean():.2f} nats")
        if c is None and threads == base_threads and bs == 1:
            fp32, fp32_rate = pe, max(rates)
    if not a.skip_compile:
        t0 = time.perf_counter()
        estimate_log_likelihood(model, x[:1], k=a.k, compiled=True, check=False)
        print(f"  (torch.compile of log_weights: {time.perf_counter() - t0:.0f} s, once per model and shape)")
        rates, pe = timed(model, x, a.k, a.rounds, compiled=True)
        print(f"  fp32  batch 1  chunk auto  compiled threads {base_threads}: {show(rates)}; "
              f"log p(x) {pe.mean():.2f} nats (inductor RNG: other samples than eager)")
    if not a.skip_bf16:
        rates, pe = timed(model, x, a.k, a.rounds, bf16=True)
        d = pe - fp32
        print(f"  bf16  batch 1  chunk      auto  threads {base_threads}: {show(rates)}; "
              f"speed-up x{max(rates) / fp32_rate:.2f} vs fp32 (best rates)")
        print(f"  bf16 - fp32 (same samples): mean {d.mean():+.4f} nats, s.e. {d.std() / math.sqrt(len(d)):.4f}, "
              f"max |diff| {d.abs().max():.4f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
