"""Data parallel on one CPU machine: 2 ranks x 1 thread (torchrun, gloo) against 1 process x 2 threads, the same
mnist-mlp model, global batch and number of steps; prints each setup's training seconds and samples/s.

Usage: python bench/ddp_cpu.py [--steps 600] [--preset mnist-mlp]   (MNIST from $VAEKIT_DATA_DIR; run it alone)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def run(cmd: list[str], env: dict) -> None:
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--preset", default="mnist-mlp")
    a = ap.parse_args()
    common = ["--preset", a.preset, "--quiet", f"train.steps={a.steps}", "train.batch_size=128",
              f"train.val_every={a.steps}", f"train.checkpoint_every={a.steps}", "train.threads=null"]
    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env1 = {**os.environ, "OMP_NUM_THREADS": "1"}
        run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={port}",
             "-m", "vaekit", "train", "--out", f"{tmp}/ddp", *common], env1)
        env2 = {**os.environ, "OMP_NUM_THREADS": "2"}
        run([sys.executable, "-m", "vaekit", "train", "--out", f"{tmp}/one", *common], env2)
        for name in ("ddp", "one"):
            s = json.loads((Path(tmp) / name / "summary.json").read_text())
            label = "2 ranks x 1 thread " if name == "ddp" else "1 process x 2 threads"
            print(f"{label}: {s['train_seconds']:.1f} s for {s['steps']} steps of 128 "
                  f"({s['steps'] * 128 / s['train_seconds']:,.0f} samples/s); test ELBO {s['test']['elbo']:.2f}")


if __name__ == "__main__":
    main()
