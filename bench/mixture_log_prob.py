"""log p(z) of a 500-component Gaussian mixture (the VampPrior of the `binarized-mnist-vamp` preset: K = 500,
D = 40) on the shapes an importance-sampled log p(x) evaluates, two ways side by side: torch's elementwise
``MixtureSameFamily.log_prob``, which builds (N, K, D) tensors, and ``GaussianMixture.log_prob``, the quadratic form
as matrix products in float64. Prints CPU seconds per call (median of --reps) and the largest difference.

    python bench/mixture_log_prob.py [--n 20000] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.distributions import MixtureSameFamily

from vaekit.priors import GaussianMixture


def cpu(fn, reps: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(reps):
        t = time.process_time()
        with torch.no_grad():
            out = fn()
        times.append(time.process_time() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="samples (importance samples x images in one chunk)")
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--d", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(args.k, args.d, generator=g)
    scale = 0.05 + torch.rand(args.k, args.d, generator=g)
    mix = GaussianMixture(torch.zeros(args.k), loc, scale)
    z = loc[torch.randint(args.k, (args.n,), generator=g)] + 0.3 * torch.randn(args.n, args.d, generator=g)
    t_elem, a = cpu(lambda: MixtureSameFamily.log_prob(mix, z), args.reps)
    t_mm, b = cpu(lambda: mix.log_prob(z), args.reps)
    print(f"N={args.n} K={args.k} D={args.d}, {args.threads} thread(s): elementwise {t_elem:.3f} CPU s, "
          f"matrix products {t_mm:.3f} CPU s ({t_elem / t_mm:.1f}x); largest difference "
          f"{float((a.double() - b.double()).abs().max()):.2e} nats")


if __name__ == "__main__":
    main()
