"""Data-layer figures side by side: peak resident memory (RSS) and training samples/s of the ways examples are
held (``data.storage``), each case in its own process (so its peak RSS is its own).

  folder   a generated folder of --images 64x64 RGB PNGs (kept in --folder for later runs), the mnist-conv
           preset's model (conv [32, 64], hidden [256], latent 32, Bernoulli on dynamically binarised pixels),
           batch 128, --steps timed steps after 10 warm-up steps:
             float32  today's in-memory path (every image decoded into one float32 tensor)
             memory   the same images as uint8 in memory, converted per batch
             stream   decoded per batch in --workers DataLoader worker processes (data.storage=stream)
             mmap     the folder converted once into uint8 .npy shards (vaekit datasets --prepare), memory-mapped
  mnist    MNIST ($VAEKIT_DATA_DIR) with the mnist-mlp model (784-400-20), batch 128: float32 vs uint8 storage

samples/s = timed steps x 128 / wall seconds of those steps (on a shared machine wall time is inflated; the
process CPU seconds per step, workers included, are printed beside). Peak RSS: VmHWM of the case's process;
"workers MB": ru_maxrss of its worker processes (forked copies: pages shared with the case process included).

Usage: python bench/data_throughput.py [--images 200000] [--steps 100] [--workers 2] [--folder DIR]
       [--cases folder,mnist] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 128
WARMUP = 10


def _make_image(args: tuple[str, int, int]) -> None:
    """One smooth-ish random RGB image (gradients plus noise: PNG sizes like photos', ~8 KB at 64x64)."""
    import numpy as np
    from PIL import Image

    path, seed, size = args
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6.28 * (rng.random() * xx + rng.random() * yy + rng.random())) for _ in range(3)], -1)
    img = (127.5 + 100 * base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)


def make_folder(folder: Path, n: int, size: int = 64) -> None:
    """``n`` images in 100 class folders (generated once; an existing complete folder is kept)."""
    from multiprocessing import Pool

    marker = folder / f".complete-{n}-{size}"
    if marker.exists():
        return
    for c in range(100):
        (folder / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder / f"c{i % 100:02d}" / f"{i:07d}.png"), i, size) for i in range(n)]
    t0 = time.perf_counter()
    with Pool(2) as pool:
        for k, _ in enumerate(pool.imap_unordered(_make_image, jobs, chunksize=256)):
            if k % 20000 == 0:
                print(f"  generating images: {k}/{n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    marker.write_text("")


def _peak_mb() -> tuple[float, float]:
    """Peak RSS of this process since it started (VmHWM: ru_maxrss would keep the high-water mark of the
    benchmark process it was forked from, across exec) and of its reaped children (workers: forked copies, so
    their figure includes the pages they share with this process), MB."""
    own = next(int(ln.split()[1]) for ln in Path("/proc/self/status").read_text().splitlines()
               if ln.startswith("VmHWM:")) / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, kids


def _cpu_s() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def run_case(case: str, a: argparse.Namespace) -> dict:
    """One case in this process: load, train --steps (+ warm-up) steps, report."""
    import torch

    from vaekit.config import TrainConfig
    from vaekit.data import load_data, make_batch_transform
    from vaekit.models import build_vae
    from vaekit.objectives import ELBO
    from vaekit.training import Trainer
    from vaekit.tuning import tune_malloc

    tune_malloc()
    kind, storage = case.split(":")
    steps = a.mnist_steps if kind == "mnist" else a.steps
    t0 = time.perf_counter()
    if kind == "mnist":
        d = load_data("mnist", storage=storage, val_fraction=0.1)
        model_kw = dict(arch="mlp", latent_dim=20, hidden=(400,), likelihood="bernoulli")
        transform = None
    else:
        if storage == "mmap":
            d = load_data("arrays", path=str(a.folder) + "-shards", storage="mmap", val_fraction=0.01)
        else:
            d = load_data("image-folder", path=str(a.folder), storage=storage, workers=a.workers, val_fraction=0.01)
        model_kw = dict(arch="conv", latent_dim=32, hidden=(256,), conv_channels=(32, 64), likelihood="bernoulli")
        transform = make_batch_transform("dynamic", False, d.n_levels)
    load_s = time.perf_counter() - t0
    x = d.train.x
    torch.manual_seed(0)
    model = build_vae(tuple(d.shape), **model_kw)
    times = []

    def clock(trainer, rec):
        times.append((time.perf_counter(), _cpu_s()))

    settings = TrainConfig(steps=steps + WARMUP, batch_size=BATCH, lr=1e-3, progress=False,
                           checkpoint_every=10**9, val_every=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(model, ELBO(), x, None, settings=settings, run_dir=tmp, transform=transform, callbacks=[clock]).fit()
    (w0, c0), (w1, c1) = times[WARMUP - 1], times[-1]
    own, kids = _peak_mb()
    return {"case": case, "n_train": len(d.train), "load_s": round(load_s, 1),
            "samples_per_s": round(steps * BATCH / (w1 - w0), 1), "cpu_s_per_step": round((c1 - c0) / steps, 4),
            "peak_rss_mb": round(own), "worker_peak_rss_mb": round(kids),
            "data_bytes_held_mb": round(getattr(x, "nbytes", 0) / 2**20 if not isinstance(x, torch.Tensor)
                                        else x.numel() * 4 / 2**20)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200_000, help="images in the generated folder")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per folder case (after 10 warm-up steps)")
    ap.add_argument("--mnist-steps", type=int, default=1000, help="timed steps per mnist case")
    ap.add_argument("--repeats", type=int, default=3, help="mnist: float32 and uint8 run in turn this many times "
                    "(the median samples/s is reported)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--folder", type=Path, default=None, help="where the images are generated (kept)")
    ap.add_argument("--cases", default="folder,mnist")
    ap.add_argument("--folder-cases", default="float32,memory,stream,mmap",
                    help="which storages the folder case runs (comma-separated)")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print its JSON
    a = ap.parse_args()
    a.folder = a.folder or Path(tempfile.gettempdir()) / f"vaekit-bench-images-{a.images}"
    if a.case:
        print(json.dumps(run_case(a.case, a)))
        return
    cases = []
    if "folder" in a.cases:
        make_folder(a.folder, a.images)
        shards = Path(str(a.folder) + "-shards")
        if "mmap" in a.folder_cases and not (shards / "labels.npy").exists():
            from vaekit.data.prepare import prepare_shards

            t0 = time.perf_counter()
            prepare_shards(a.folder, shards, workers=a.workers, progress=False)
            print(f"  prepared uint8 shards in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        cases += [f"folder:{c}" for c in a.folder_cases.split(",")]
    if "mnist" in a.cases:
        cases += ["mnist:float32", "mnist:memory"] * a.repeats
    runs = []
    for case in cases:
        print(f"  running {case} ...", file=sys.stderr)
        out = subprocess.run([sys.executable, __file__, "--case", case, "--images", str(a.images), "--steps",
                              str(a.steps), "--mnist-steps", str(a.mnist_steps), "--workers", str(a.workers),
                              "--folder", str(a.folder)],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            runs.append({"case": case, "error": out.stderr.strip().splitlines()[-1][:200]})
            continue
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = []  # one row per case: the run with the median samples/s
    for case in dict.fromkeys(cases):
        mine = sorted((r for r in runs if r["case"] == case), key=lambda r: r.get("samples_per_s", 0))
        row = dict(mine[len(mine) // 2])
        if len(mine) > 1:
            row["all_samples_per_s"] = [r.get("samples_per_s") for r in mine]
        results.append(row)
    print(f"images: {a.images} (64x64 RGB PNG) in {a.folder}; {a.steps} (folder) / {a.mnist_steps} (mnist, median "
          f"of {a.repeats} runs) timed steps of batch {BATCH}; workers {a.workers}; OMP_NUM_THREADS=1")
    head = f"{'case':<16}{'n_train':>9}{'load s':>8}{'samples/s':>11}{'CPU s/step':>12}{'peak RSS MB':>13}" \
           f"{'workers MB':>12}{'data held MB':>14}"
    print(head)
    for r in results:
        if "error" in r:
            print(f"{r['case']:<16} error: {r['error']}")
            continue
        print(f"{r['case']:<16}{r['n_train']:>9}{r['load_s']:>8}{r['samples_per_s']:>11}{r['cpu_s_per_step']:>12}"
              f"{r['peak_rss_mb']:>13}{r['worker_peak_rss_mb']:>12}{r['data_bytes_held_mb']:>14}")
    by = {r["case"]: r for r in results if "error" not in r}
    for kind, base in (("folder", "folder:float32"), ("mnist", "mnist:float32")):
        for r in (v for k, v in by.items() if k.startswith(kind) and k != base and base in by):
            print(f"{r['case']} / {base}: samples/s x{r['samples_per_s'] / by[base]['samples_per_s']:.2f}, "
                  f"peak RSS x{r['peak_rss_mb'] / by[base]['peak_rss_mb']:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
