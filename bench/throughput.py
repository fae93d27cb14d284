"""Training throughput (samples/s) of the mnist-mlp-sized model (784-400-20, Bernoulli, batch 128, Adam) on
MNIST, three setups side by side, each in its own fresh process (process-wide settings cannot leak):

  vaekit      vaekit's Trainer with its defaults (metrics record and 'last' checkpoint once per epoch; no
              validation split, so no validation pass)
  minimal     a hand-written loop over tensors in memory (index_select batches, fused Adam, BCE-with-logits,
              denormals flushed, glibc malloc thresholds raised)
  dataloader  the pytorch/examples way: a per-item Dataset doing what torchvision's MNIST.__getitem__ and
              ToTensor() do (uint8 tensor -> PIL image -> CHW float tensor, int target), DataLoader(shuffle=True,
              num_workers=0 as on a CPU-only machine), BCE on sigmoid outputs, loss.item() every step

Usage: python bench/throughput.py [--epochs 2] [--rounds 2]
MNIST is read from $VAEKIT_DATA_DIR/mnist (random data of the same shape when absent, said in the output).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn
from torch.nn import functional as F

BATCH, WARMUP = 128, 50


def load_x() -> tuple[torch.Tensor, str]:
    try:
        from vaekit.data import load_data

        s = load_data("mnist", val_fraction=0.0)
        return s.train.x.reshape(-1, 784).contiguous(), "MNIST train"
    except Exception as e:  # noqa: BLE001 - a benchmark falls back to random data and says so
        g = torch.Generator().manual_seed(0)
        return torch.rand(60000, 784, generator=g), f"random data (MNIST not found: {str(e).splitlines()[0][:80]})"


class ExamplesVAE(nn.Module):
    """The 784-400-20 model as pytorch/examples writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.fc4(F.relu(self.fc3(z))), mu, logvar


def run_dataloader(x: torch.Tensor, steps: int) -> float:
    import numpy as np
    from PIL import Image

    # held as torchvision's MNIST holds it: one uint8 tensor of images and an int64 tensor of targets
    images = (x.reshape(-1, 28, 28) * 255).round().to(torch.uint8)
    targets = torch.zeros(images.shape[0], dtype=torch.int64)

    class DS(torch.utils.data.Dataset):
        """Per item, the steps of torchvision's MNIST.__getitem__ followed by transforms.ToTensor()."""

        def __len__(self):
            return images.shape[0]

        def __getitem__(self, i):
            img, target = images[i], int(targets[i])
            img = Image.fromarray(img.numpy(), mode="L")
            t = torch.from_numpy(np.array(img, np.uint8, copy=True))  # ToTensor: PIL -> HWC uint8 -> CHW float
            t = t.view(img.size[1], img.size[0], 1).permute((2, 0, 1)).contiguous()
            return t.to(dtype=torch.get_default_dtype()).div(255), target

    model = ExamplesVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(DS(), batch_size=BATCH, shuffle=True)
    done, t0, total = 0, None, 0.0
    while done < steps + WARMUP:
        for xb, _ in loader:
            xb = xb.view(-1, 784)
            logits, mu, logvar = model(xb)
            bce = F.binary_cross_entropy(torch.sigmoid(logits), xb, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (bce + kld) / xb.shape[0]
            opt.zero_grad()
            loss.backward()
            total += loss.item()  # pytorch/examples accumulates the epoch's loss this way
            opt.step()
            done += 1
            if done == WARMUP:
                t0 = time.perf_counter()
            if done == steps + WARMUP:
                break
    return steps * BATCH / (time.perf_counter() - t0)


def run_minimal(x: torch.Tensor, steps: int) -> float:
    from vaekit.training.perf import tune_malloc

    tune_malloc()
    torch.set_flush_denormal(True)
    model = ExamplesVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(0)
    n, done, t0 = x.shape[0], 0, None
    while done < steps + WARMUP:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, BATCH):
            xb = x.index_select(0, perm[i:i + BATCH])
            logits, mu, logvar = model(xb)
            bce = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (bce + kld) / xb.shape[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == WARMUP:
                t0 = time.perf_counter()
            if done == steps + WARMUP:
                break
    return steps * BATCH / (time.perf_counter() - t0)


def run_vaekit(x: torch.Tensor, steps: int) -> float:
    from vaekit.config import TrainConfig
    from vaekit.models import build_vae
    from vaekit.objectives import ELBO
    from vaekit.training import Trainer

    torch.manual_seed(0)
    model = build_vae((784,), arch="mlp", latent_dim=20, hidden=(400,), likelihood="bernoulli")
    marks: dict[int, float] = {}

    def clock(trainer, rec):
        if rec["step"] in (WARMUP, WARMUP + steps):
            marks[rec["step"]] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        settings = TrainConfig(steps=steps + WARMUP, batch_size=BATCH, lr=1e-3, progress=True)
        tr = Trainer(model, ELBO(), x, None, settings=settings, run_dir=tmp, callbacks=[clock])
        tr.fit()
    return steps * BATCH / (marks[WARMUP + steps] - marks[WARMUP])


SETUPS = {"vaekit": run_vaekit, "minimal": run_minimal, "dataloader": run_dataloader}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=2.0, help="measured epochs per setup (after 50 warm-up steps)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each setup is kept")
    ap.add_argument("--setup", choices=list(SETUPS), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.setup:
        x, _ = load_x()
        steps = int(a.epochs * x.shape[0] / BATCH)
        print(json.dumps({"samples_per_s": SETUPS[a.setup](x, steps)}))
        return
    _, source = load_x()
    print(f"data: {source}; batch {BATCH}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{a.rounds} rounds of {a.epochs} epochs per setup")
    best = {k: 0.0 for k in SETUPS}
    for _ in range(a.rounds):
        for name in SETUPS:
            out = subprocess.run([sys.executable, __file__, "--setup", name, "--epochs", str(a.epochs)],
                                 capture_output=True, text=True, env={**os.environ})
            if out.returncode != 0:
                sys.exit(f"setup {name} failed:\n{out.stderr}")
            best[name] = max(best[name], json.loads(out.stdout.strip().splitlines()[-1])["samples_per_s"])
    for name in SETUPS:
        print(f"{name:<11} {best[name]:>9.0f} samples/s")
    print(f"vaekit / dataloader = {best['vaekit'] / best['dataloader']:.2f}x (target >= 2.5x)")
    print(f"vaekit / minimal    = {best['vaekit'] / best['minimal']:.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()
