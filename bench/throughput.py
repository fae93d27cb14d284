"""Training throughput (samples/s) of the mnist-mlp-sized model (784-400-20, Bernoulli, batch 128, Adam) on
MNIST, four setups side by side, each in its own process (process-wide settings cannot leak):

  vaekit      vaekit's Trainer with its defaults (metrics record and 'last' checkpoint once per epoch; no
              validation split, so no validation pass), in a process tuned at start-up as the CLI does
              (vaekit.tuning: denormals flushed, glibc malloc thresholds raised)
  vaekit-compile  the same with train.compile=true (torch.compile of the objective's forward; --no-compile
              leaves it out)
  minimal     a hand-written loop over tensors in memory (index_select batches, fused Adam, BCE-with-logits,
              denormals flushed from start-up on, so in every OpenMP thread, glibc malloc thresholds raised)
  dataloader  the pytorch/examples way: a per-item Dataset doing what torchvision's MNIST.__getitem__ and
              ToTensor() do (uint8 tensor -> PIL image -> CHW float tensor, int target), DataLoader(shuffle=True,
              num_workers=0 as on a CPU-only machine), BCE on sigmoid outputs, loss.item() every step

The processes take turns: after 50 warm-up steps each runs --chunk steps while the others wait, in a
rotating order, until each has run --epochs epochs. A host that speeds up or slows down over the run (shared
machines do, by 20-30 % over minutes) then slows all three alike, so the ratios are steadier than the figures
of setups run one after another. samples/s = measured steps x 128 / the summed time of that setup's chunks.

The ratios are those of the totals (every epoch's metrics record and checkpoint included); the rate of the median
chunk (most chunks hold no epoch end) is printed beside each as the steady-state figure. BENCH_DUMP=FILE writes
every chunk's seconds as JSON.

Usage: python bench/throughput.py [--epochs 4] [--chunk 50]
MNIST is read from $VAEKIT_DATA_DIR/mnist (random data of the same shape when absent, said in the output).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
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


class Gate:
    """The worker's side of the turn-taking: at the end of the warm-up and of every chunk, report and wait.

    Call with the number of steps done so far after each step; returns True when the measured steps are done.
    Prints '@@ready' after the warm-up and '@@<seconds>' after each chunk (the time since its turn began).
    """

    def __init__(self, steps: int, chunk: int) -> None:
        self.end, self.chunk, self.t = WARMUP + steps, chunk, 0.0

    def _turn(self) -> None:
        if sys.stdin.readline().strip() != "go":
            sys.exit(0)  # the parent went away
        self.t = time.perf_counter()

    def __call__(self, done: int) -> bool:
        if done == WARMUP:
            print("@@ready", flush=True)
            self._turn()
        elif done > WARMUP and ((done - WARMUP) % self.chunk == 0 or done == self.end):
            print(f"@@{time.perf_counter() - self.t:.6f}", flush=True)
            if done < self.end:
                self._turn()
        return done >= self.end


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


def run_dataloader(x: torch.Tensor, steps: int, gate: Gate) -> None:
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
    done, total, finished = 0, 0.0, False
    while not finished:
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
            finished = gate(done)
            if finished:
                break


def minimal_step(model: torch.nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor) -> None:
    """One step of the minimal loop: BCE-with-logits plus the closed-form Gaussian KL, Adam."""
    logits, mu, logvar = model(xb)
    bce = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    loss = (bce + kld) / xb.shape[0]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run_minimal(x: torch.Tensor, steps: int, gate: Gate) -> None:
    from vaekit.tuning import tune_malloc

    tune_malloc()
    model = ExamplesVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(0)
    n, done, finished = x.shape[0], 0, False
    while not finished:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, BATCH):
            xb = x.index_select(0, perm[i:i + BATCH])
            minimal_step(model, opt, xb)
            done += 1
            finished = gate(done)
            if finished:
                break


def run_vaekit(x: torch.Tensor, steps: int, gate: Gate, compile: bool = False) -> None:
    from vaekit.config import TrainConfig
    from vaekit.models import build_vae
    from vaekit.objectives import ELBO
    from vaekit.training import Trainer
    from vaekit.tuning import tune_malloc

    tune_malloc()  # as `vaekit train` does (train.malloc_tuning, on by default) and as the minimal loop does
    torch.manual_seed(0)
    model = build_vae((784,), arch="mlp", latent_dim=20, hidden=(400,), likelihood="bernoulli")

    def turn_taking(trainer, rec):
        gate(rec["step"])

    with tempfile.TemporaryDirectory() as tmp:
        settings = TrainConfig(steps=steps + WARMUP, batch_size=BATCH, lr=1e-3, progress=True, compile=compile)
        Trainer(model, ELBO(), x, None, settings=settings, run_dir=tmp, callbacks=[turn_taking]).fit()


def run_vaekit_compiled(x: torch.Tensor, steps: int, gate: Gate) -> None:
    run_vaekit(x, steps, gate, compile=True)


SETUPS = {"vaekit": run_vaekit, "minimal": run_minimal, "dataloader": run_dataloader,
          "vaekit-compile": run_vaekit_compiled}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=4.0, help="measured epochs per setup (after 50 warm-up steps)")
    ap.add_argument("--chunk", type=int, default=50, help="steps a setup runs per turn")
    ap.add_argument("--setup", choices=list(SETUPS), help=argparse.SUPPRESS)
    ap.add_argument("--no-compile", action="store_true", help="leave out the train.compile=true setup")
    a = ap.parse_args()
    if a.setup:  # each worker is an application: tune at start-up, before any parallel op (OpenMP threads
        from vaekit.tuning import flush_denormals  # inherit the denormal flag), as the vaekit CLI does

        flush_denormals()
    x, source = load_x()
    steps = int(a.epochs * x.shape[0] / BATCH)
    if a.setup:  # a worker: run when told to, report each chunk's time
        SETUPS[a.setup](x, steps, Gate(steps, a.chunk))
        return
    print(f"data: {source}; batch {BATCH}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{steps} measured steps ({a.epochs:g} epochs) per setup, in turns of {a.chunk} steps")
    names = [n for n in SETUPS if not (a.no_compile and n == "vaekit-compile")]
    with tempfile.TemporaryDirectory() as tmp:
        errs = {n: open(os.path.join(tmp, n + ".err"), "w+") for n in names}
        procs = {n: subprocess.Popen([sys.executable, __file__, "--setup", n, "--epochs", str(a.epochs),
                                      "--chunk", str(a.chunk)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=errs[n], text=True, env={**os.environ}) for n in names}

        def report(n: str) -> str:
            for line in procs[n].stdout:
                if line.startswith("@@"):
                    return line[2:].strip()
            for p in procs.values():
                p.kill()
            errs[n].seek(0)
            sys.exit(f"setup {n} failed:\n{errs[n].read()}")

        for n in names:  # every worker has warmed up before any measuring starts
            report(n)
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(math.ceil(steps / a.chunk)):
            for n in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
                procs[n].stdin.write("go\n")
                procs[n].stdin.flush()
                times[n].append(float(report(n)))
        for p in procs.values():
            p.wait()
        for f in errs.values():
            f.close()
    if os.environ.get("BENCH_DUMP"):  # each chunk's seconds, per setup, for a closer look
        with open(os.environ["BENCH_DUMP"], "w") as f:
            json.dump(times, f)
    rate = {n: steps * BATCH / sum(times[n]) for n in names}
    full = {n: statistics.median(a.chunk * BATCH / t for t in times[n][:steps // a.chunk]) for n in names}
    for n in names:
        print(f"{n:<11} {rate[n]:>9.0f} samples/s   (median chunk {full[n]:.0f})")
    print(f"vaekit / dataloader = {rate['vaekit'] / rate['dataloader']:.2f}x (target >= 2.5x)"
          f"   median chunks {full['vaekit'] / full['dataloader']:.2f}x")
    print(f"vaekit / minimal    = {rate['vaekit'] / rate['minimal']:.2f}x (target >= 0.9x)"
          f"   median chunks {full['vaekit'] / full['minimal']:.2f}x")
    if "vaekit-compile" in rate:
        print(f"vaekit-compile / vaekit = {rate['vaekit-compile'] / rate['vaekit']:.2f}x"
              f"   median chunks {full['vaekit-compile'] / full['vaekit']:.2f}x (train.compile=true)")


if __name__ == "__main__":
    main()
