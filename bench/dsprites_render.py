"""dSprites rendering speed, the first renderer against the current one, and what it does to the disentanglement
metrics (docs/results/disentanglement.md, "Rendering and metric time").

    python bench/dsprites_render.py                          # images/s old vs new (1 thread), pixels compared
    python bench/dsprites_render.py --check-all              # ... and every one of the 737,280 images compared
    python bench/dsprites_render.py --run RUN --data-dir D   # ... and `vaekit disentanglement RUN` timed

images/s are per CPU-second of this process (``time.process_time``), so they hold on a shared machine; the
first renderer is kept below (``render_reference``) as it was. With ``--run``: each metric evaluated in this
process at ``--num-train`` / ``--num-eval`` (default disentanglement_lib's 10,000 / 5,000) with the first renderer
(no cache; skip with ``--no-old``) and with the current code (which renders the whole set once into
``D/dsprites`` when a metric draws many images), their values compared, then the command itself
(``vaekit disentanglement RUN --no-figures``, all six metrics, default sizes) timed in a child process.
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

import numpy as np
import torch

from vaekit.data import dsprites as ds


def render_reference(classes: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """The first renderer, unchanged: (B, P) sample grids for the whole chunk, boolean masks per shape."""
    def inside(shape, u, v, r):
        if shape == 0:
            return (u.abs() <= 0.8 * r) & (v.abs() <= 0.8 * r)
        if shape == 1:
            a, b = u / r, v / (0.5 * r)
            return a * a + b * b <= 1.0
        p, q = u / (0.85 * r), v / (0.85 * r) + 0.12
        s = p * p + q * q - 1.0
        return s * s * s - p * p * q * q * q <= 0.0

    classes = torch.as_tensor(classes, dtype=torch.int64)
    dev, f64, win, sup, size = classes.device, torch.float64, 26, 3, 64
    vals = ds.factor_values()
    cos_t = torch.tensor(np.cos(vals[2]), dtype=f64, device=dev)
    sin_t = torch.tensor(np.sin(vals[2]), dtype=f64, device=dev)
    scale_t = torch.tensor(vals[1], dtype=f64, device=dev)
    centre_t = 16.0 + 32.0 * torch.tensor(vals[3], dtype=f64, device=dev)
    offs = (torch.arange(sup, dtype=f64, device=dev) + 0.5) / sup
    local = (torch.arange(win, dtype=f64, device=dev)[:, None] + offs).reshape(-1)
    n_s = local.numel()
    lr = local[:, None].expand(-1, n_s).reshape(1, -1)
    lc = local[None, :].expand(n_s, -1).reshape(1, -1)
    pix = torch.arange(win, device=dev)
    out = torch.zeros(classes.shape[0], size * size, dtype=torch.float32, device=dev)
    for i in range(0, classes.shape[0], chunk):
        c = classes[i:i + chunk]
        cx, cy = centre_t[c[:, 3]][:, None], centre_t[c[:, 4]][:, None]
        col0, row0 = cx.floor() - 12.0, cy.floor() - 12.0
        dx, dy = (col0 + lc) - cx, cy - (row0 + lr)
        ct, st = cos_t[c[:, 2]][:, None], sin_t[c[:, 2]][:, None]
        u, v = ct * dx + st * dy, ct * dy - st * dx
        r = 10.0 * scale_t[c[:, 1]][:, None]
        hit = torch.zeros_like(u, dtype=torch.bool)
        for s in range(3):
            m = c[:, 0] == s
            if bool(m.any()):
                hit[m] = inside(s, u[m], v[m], r[m])
        count = hit.reshape(-1, win, sup, win, sup).sum(dim=(2, 4))
        on = (count * 2 > sup * sup).to(torch.float32)
        idx = (row0.long()[:, :, None] + pix[:, None]) * size + col0.long()[:, :, None] + pix
        out[i:i + chunk].scatter_(1, idx.reshape(len(c), -1), on.reshape(len(c), -1))
    return out.reshape(-1, 1, size, size)


def rate(fn, classes: torch.Tensor, batch: int) -> float:
    """Images per CPU-second of ``fn`` over ``classes`` in batches of ``batch``."""
    fn(classes[:batch])
    t0 = time.process_time()
    for i in range(0, len(classes), batch):
        fn(classes[i:i + batch])
    return len(classes) / (time.process_time() - t0)


def compare(classes: torch.Tensor, batch: int = 4096) -> int:
    """How many of the images differ between the two renderers."""
    return sum(int((render_reference(c) != ds.render(c)).flatten(1).any(1).sum())
               for c in classes.split(batch))


class Reference(ds.DSprites):
    """dSprites as the metrics drew it before: the first renderer on every call, no cache."""

    def images(self, classes: torch.Tensor) -> torch.Tensor:
        return render_reference(classes)

    def prepare(self, n: int) -> None:
        pass


def metric_times(run: str, data_dir: str, metrics: list[str], num_train, num_eval, old: bool) -> list[dict]:
    from vaekit.data import ground_truth
    from vaekit.evaluation.disentanglement import _represent
    from vaekit.metrics.disentanglement import disentanglement_scores, observations_drawn, _sizes
    from vaekit.runs import load_run

    _, model, _ = load_run(run, "best", "cpu")
    x = ds.render(ds.DSprites().sample_factors(640, torch.Generator().manual_seed(1)))
    with torch.no_grad():
        enc = rate(lambda c: _represent(model)(c), x, 64)  # the metrics' other per-image cost
    print(f"encoder: {enc:,.0f} images per CPU-second at batch 64", flush=True)
    rows = []
    for name in metrics:
        row = {"metric": name, "images": observations_drawn(name, _sizes(name, num_train, num_eval))}
        for tag, data in (("new", None), *((("old", Reference()),) if old else ())):
            data = data or ground_truth("dsprites", data_dir=data_dir)
            t0, c0 = time.perf_counter(), time.process_time()
            res = disentanglement_scores(data, _represent(model), seed=0, metrics=[name], num_train=num_train,
                                         num_eval=num_eval)[name]
            row[f"{tag}_s"], row[f"{tag}_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
            row[f"{tag}_values"] = {k: v for k, v in res.items() if k != "seconds"}
        if old:
            row["same_values"] = row["new_values"] == row["old_values"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8192, help="images per throughput figure (default 8192)")
    ap.add_argument("--check", type=int, default=20000, help="random images compared old vs new (default 20000)")
    ap.add_argument("--check-all", action="store_true", help="compare every one of the 737,280 images")
    ap.add_argument("--run", default=None, help="a dSprites run folder: time the disentanglement metrics on it")
    ap.add_argument("--data-dir", default=None, help="data folder for the rendering cache (default a temporary one)")
    ap.add_argument("--metrics", nargs="+", default=["beta_vae", "factor_vae", "mig", "sap", "dci", "modularity"])
    ap.add_argument("--num-train", type=int, default=None)
    ap.add_argument("--num-eval", type=int, default=None)
    ap.add_argument("--no-old", action="store_true", help="skip the metrics with the first renderer")
    ap.add_argument("--no-command", action="store_true", help="skip timing the CLI command")
    ap.add_argument("--no-render-all", action="store_true", help="skip timing the rendering of the whole set")
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    cl = ds.DSprites().sample_factors(a.images, g)
    print("| batch | first renderer (images/s) | current (images/s) | speed-up |\n| --- | --- | --- | --- |")
    for batch in (64, 256, 4096):
        old, new = rate(render_reference, cl, batch), rate(ds.render, cl, batch)
        print(f"| {batch} | {old:,.0f} | {new:,.0f} | {new / old:.1f}x |", flush=True)
    check = (torch.arange(ds.N_IMAGES) if a.check_all
             else torch.randint(0, ds.N_IMAGES, (a.check,), generator=g))
    differ = compare(ds.index_to_classes(check))
    print(f"images that differ between the renderers: {differ} of {len(check):,}")
    if not a.no_render_all:
        t0 = time.process_time()
        ds.render_all()
        print(f"rendering all {ds.N_IMAGES:,} images (the cache): {time.process_time() - t0:.1f} CPU-s on 1 thread")
    if a.run is None:
        return
    data_dir = a.data_dir or tempfile.mkdtemp(prefix="vaekit-dsprites-")
    metric_times(a.run, data_dir, a.metrics, a.num_train, a.num_eval, not a.no_old)
    if a.no_command:
        return
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vaekit", "disentanglement", a.run, "--no-figures", "--json",
                           "--data-dir", data_dir], check=True, stdout=subprocess.PIPE, text=True,
                          env={**os.environ})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    secs = {m: r["seconds"] for m, r in json.loads(done.stdout)["metrics"].items()}
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(f"vaekit disentanglement {a.run} --no-figures (default sizes, cache in {Path(data_dir) / 'dsprites'}): "
          f"{time.perf_counter() - t0:.0f} s wall, {cpu:.0f} CPU-s; per metric (s): {secs}")


if __name__ == "__main__":
    main()
