"""GPU figures side by side in one run: training samples/s of the mnist-mlp and mnist-conv models in fp32 / bf16 /
fp16 against a minimal hand-written loop of the same model, and importance-sampled log p(x) points/s at K = 5000.

Usage: python bench/gpu_check.py [--device cuda] [--steps 300] [--n-eval 200]
MNIST from $VAEKIT_DATA_DIR/mnist (random data of the same shape when absent, said in the output). Called by
bench/gpu_check.sh, which also runs the suite on the GPU and a 1-GPU torchrun training.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F


def load(device: torch.device) -> tuple[torch.Tensor, str]:
    try:
        from vaekit.data import load_data

        s = load_data("mnist", val_fraction=0.0)
        return (s.train.x > 0.5).float().to(device), "MNIST train (binarised at 0.5)"
    except Exception as e:  # noqa: BLE001 - a benchmark falls back to random data and says so
        g = torch.Generator().manual_seed(0)
        return (torch.rand(60000, 1, 28, 28, generator=g) < 0.2).float().to(device), f"random data ({e})"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def vaekit_rate(x: torch.Tensor, arch: str, precision: str, steps: int) -> float:
    from vaekit.config import ModelConfig, TrainConfig
    from vaekit.objectives import ELBO
    from vaekit.registry import build_model
    from vaekit.training import Trainer

    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, latent_dim=20 if arch == "mlp" else 32, hidden=[400] if arch == "mlp" else [256])
    model = build_model(cfg, x.shape[1:]).to(x.device)
    times: list[float] = []

    def clock(trainer, rec):
        sync(x.device)
        times.append(time.perf_counter())

    s = TrainConfig(steps=steps + 20, batch_size=128, progress=False, precision=precision, device=str(x.device),
                    val_every=10**9, checkpoint_every=10**9)
    Trainer(model, ELBO(), x, None, settings=s, run_dir=None, callbacks=[clock]).fit()
    return steps * 128 / (times[-1] - times[19])


def minimal_rate(x: torch.Tensor, arch: str, steps: int) -> float:
    from vaekit.models import build_vae

    torch.manual_seed(0)
    m = build_vae(x.shape[1:], arch=arch, latent_dim=20 if arch == "mlp" else 32,
                  hidden=(400,) if arch == "mlp" else (256,)).to(x.device)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, fused=x.device.type == "cuda")
    n = x.shape[0]
    t0 = None
    for i in range(steps + 20):
        if i == 20:
            sync(x.device)
            t0 = time.perf_counter()
        xb = x[torch.randint(0, n, (128,), device=x.device)]
        mu, raw = m.posterior.linear(m.encoder(xb)).chunk(2, -1)
        logvar = raw.clamp(-12, 8)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        logits = m.decoder(z).reshape(xb.shape)
        rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum()
        loss = (rec + kl) / 128
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(x.device)
    return steps * 128 / (time.perf_counter() - t0)


def iw_rate(x: torch.Tensor, n: int, bf16: bool) -> float:
    from vaekit.evaluation import estimate_log_likelihood
    from vaekit.models import build_vae

    torch.manual_seed(0)
    m = build_vae(x.shape[1:], latent_dim=20, hidden=(400,)).to(x.device)
    sync(x.device)
    t0 = time.perf_counter()
    estimate_log_likelihood(m, x[:n], k=5000, seed=0, bf16=bf16)
    sync(x.device)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--n-eval", type=int, default=200)
    a = ap.parse_args()
    dev = torch.device(a.device)
    x, source = load(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
    print(f"device {name}; torch {torch.__version__}; data {source}; batch 128, {a.steps} timed steps")
    for arch in ("mlp", "conv"):
        row = {"minimal fp32": minimal_rate(x, arch, a.steps)}
        for prec in ("fp32", "bf16", "fp16"):
            try:
                row[f"vaekit {prec}"] = vaekit_rate(x, arch, prec, a.steps)
            except (ValueError, RuntimeError) as e:
                row[f"vaekit {prec}"] = float("nan")
                print(f"  {arch} {prec}: {str(e).splitlines()[0]}")
        print(f"train mnist-{arch:<4} " + "  ".join(f"{k} {v:,.0f}/s" for k, v in row.items()))
    for bf16 in (False, True):
        print(f"log p(x), K=5000, {'bf16 decoder' if bf16 else 'fp32'}: {iw_rate(x, a.n_eval, bf16):.1f} points/s")


if __name__ == "__main__":
    main()
