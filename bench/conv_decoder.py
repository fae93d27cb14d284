"""CPU cost of one training step of the dSprites conv VAE with each decoder output layer, side by side.

``model.conv_out=conv3x3`` keeps 32 channels up to 64x64 and ends in a 3x3 conv; ``deconv`` ends in the
transposed conv that gives the image channel itself (Higgins et al. 2017; disentanglement_lib). Times forward
and backward of the ELBO on a batch of 64 random 64x64 binary images, in CPU seconds of the process
(``time.process_time``), so a busy machine changes the wall clock, not the figure.

Usage: python bench/conv_decoder.py [--threads 1] [--steps 10] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from vaekit.config import ModelConfig
from vaekit.objectives import ELBO
from vaekit.registry import build_model


def step_cost(conv_out: str, batch: int, steps: int) -> tuple[float, int]:
    gen = torch.Generator().manual_seed(0)
    model = build_model(ModelConfig(arch="conv", latent_dim=10, hidden=[256], conv_channels=[32, 32, 64, 64],
                                    conv_out=conv_out), (1, 64, 64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = (torch.rand(batch, 1, 64, 64, generator=gen) < 0.1).float()  # (B, 1, 64, 64)
    objective = ELBO()
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            start = time.process_time()
        opt.zero_grad()
        objective(model, x).loss.backward()
        opt.step()
    return (time.process_time() - start) / steps, sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    before = torch.get_num_threads()
    torch.set_num_threads(a.threads)
    try:
        rows = {name: step_cost(name, a.batch, a.steps) for name in ("conv3x3", "deconv")}
    finally:
        torch.set_num_threads(before)
    print(f"dSprites conv VAE, batch {a.batch}, {a.threads} thread(s), {a.steps} steps, CPU s per step:")
    for name, (sec, n) in rows.items():
        print(f"  conv_out={name:8s} {sec:7.3f} s/step  {a.batch / sec:7.1f} images/s  {n:,} parameters")
    print(f"  deconv is {rows['conv3x3'][0] / rows['deconv'][0]:.2f}x cheaper")


if __name__ == "__main__":
    main()
