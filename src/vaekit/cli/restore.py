"""`vaekit restore`: super-resolution, deblurring, inpainting and denoising with a trained VAE, with baselines.

The command degrades clean images (``--data``, the run's test split by default) by ``--operator``, restores
them (``vaekit.apps.restore``) and scores the VAE and the classical baselines (``vaekit.apps.restore_baselines``)
by PSNR and SSIM against the originals. Bad input: ValueError, one line and exit code 2 from ``vaekit.cli``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from vaekit.cli.apps import _common, _start, _suffix
from vaekit.cli.common import add_device_argument

__all__ = ["register"]


def _mask_fill(cfg: Any, a: argparse.Namespace, obs: Any) -> None:
    """Start masked values at the training mean image, seen through the operators before the mask."""
    import torch

    from vaekit.apps import train_mean
    from vaekit.apps.operators import Mask, Observation

    ops = obs.ops[: next(i for i, op in enumerate(obs.ops) if isinstance(op, Mask))]
    obs.mask.fill = Observation(ops, obs.data_shape)(train_mean(cfg, a.data_dir)[None].to(torch.float32))[0]


def _figure(path: str, obs: Any, y: Any, x: Any, res: Any, base: dict) -> str:
    import torch

    from vaekit.apps.operators import Mask, Observation
    from vaekit.plots import save_image_grid

    n = min(8, len(x))
    grey = Observation([Mask(op.missing, op.spec, 0.5) if isinstance(op, Mask) else op for op in obs.ops],
                       obs.data_shape).batch(slice(0, n))
    rows, names = [grey.start(y[:n])], ["observed"]
    for k, v in base.items():
        rows.append(v[:n])
        names.append(k)
    rows.append(res.restored[:n])
    names.append("VAE MAP")
    if res.samples is not None:
        s = res.samples[:n]  # (n, S, *data_shape)
        rows += [s[:, j] for j in range(min(4, s.shape[1]))]
        names.append(f"{min(4, s.shape[1])} posterior samples")
        if s.shape[1] > 1:
            sd = s.std(1)  # (n, *data_shape)
            rows.append(sd / sd.amax().clamp_min(1e-12))
            names.append("sample std (scaled to its maximum)")
    rows.append(x[:n])
    names.append("original")
    save_image_grid(torch.cat([r.float() for r in rows]), path, nrow=n)
    return ", ".join(names)


def _save(path: str, res: Any, y: Any) -> None:
    import numpy as np

    from vaekit.utils import atomic_save_npy, atomic_write

    if path.lower().endswith(".npy"):
        atomic_save_npy(path, res.restored.numpy().astype(np.float32))
        return
    arrays = {"restored": res.restored, "observed": y, "z": res.z}
    for k in ("samples", "posterior_mean", "ess"):
        if getattr(res, k) is not None:
            arrays[k] = getattr(res, k)
    arrays = {k: v.numpy().astype(np.float32) for k, v in arrays.items()}

    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(path, w)


def _finite(v: Any) -> Any:
    import math

    if isinstance(v, dict):
        return {k: _finite(u) for k, u in v.items()}
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _cmd_restore(a: argparse.Namespace) -> int:
    import torch

    from vaekit.apps import load_inputs
    from vaekit.apps.operators import parse_operator
    from vaekit.apps.restore import restore
    from vaekit.apps.restore_baselines import require_skimage, baselines, image_metrics
    from vaekit.utils import check_output_path

    if a.output:
        _suffix(a.output, (".npy", ".npz"), "-o")
        check_output_path(a.output)  # before any work: a path that cannot be written fails at once
    if a.figure:
        _suffix(a.figure, (".png",), "--figure")
        check_output_path(a.figure)
    require_skimage("vaekit restore (PSNR and SSIM)")
    cfg, model, doc = _start(a)
    shape = tuple(doc["data"]["shape"])
    d = load_inputs(cfg, doc, a.data, a.split, data_dir=a.data_dir, limit=a.limit, first=a.first)
    model.check_input(d.x)
    obs = parse_operator(a.operator, shape, n=len(d.x), seed=a.seed)
    if obs.mask is not None:
        _mask_fill(cfg, a, obs)
    y = obs.observe(d.x, torch.Generator().manual_seed(a.seed + 1))  # (N, *obs_shape)
    res = restore(model, y, obs, steps=a.steps, lr=a.lr, restarts=a.restarts, init=a.init, likelihood=a.likelihood,
                  samples=a.samples, proposals=a.proposals, seed=a.seed)
    base = baselines(obs, y, seed=a.seed)
    methods = {"vae_map": image_metrics(res.restored, d.x)}
    if res.posterior_mean is not None:
        methods["vae_posterior_mean"] = image_metrics(res.posterior_mean, d.x)
    methods.update({k: image_metrics(v, d.x) for k, v in base.items()})
    doc_out: dict[str, Any] = {
        "operator": obs.spec, "task": obs.kind, "n": len(d.x), "data": d.source, "observed_shape": list(obs.obs_shape),
        "noise_sigma": obs.sigma, "likelihood": a.likelihood, "steps": a.steps, "lr": a.lr, "restarts": a.restarts,
        "init": a.init, "samples": a.samples, "seconds": round(res.seconds, 3), "methods": methods}
    if res.samples is not None:
        doc_out.update(proposals=a.proposals, ess_mean=float(res.ess.mean()), ess_min=float(res.ess.min()),
                       sample_std_mean=float(res.samples.std(1).mean()) if a.samples > 1 else 0.0)
    if a.output:
        _save(a.output, res, y)
    rows = _figure(a.figure, obs, y, d.x, res, base) if a.figure else None
    if a.json:  # strict JSON: an infinite PSNR (an exact restoration, e.g. the identity's input) becomes null
        print(json.dumps(_finite(doc_out), allow_nan=False))
        return 0
    print(f"{obs.kind} of {len(d.x)} images of {d.source}: y = {obs.spec}, {shape} -> {obs.obs_shape}; "
          f"{a.steps} Adam steps, {a.restarts} start(s) from the {a.init}, {res.seconds:.1f} s")
    for name, m in methods.items():
        print(f"  {name:<20} PSNR {m['psnr']:6.2f} ± {m['psnr_stderr']:.2f} dB   SSIM {m['ssim']:.4f} ± "
              f"{m['ssim_stderr']:.4f}")
    if res.samples is not None:
        print(f"  {a.samples} posterior samples per image from {a.proposals} proposals: effective sample size "
              f"{doc_out['ess_mean']:.1f} on average (min {doc_out['ess_min']:.1f}); mean per-pixel sample std "
              f"{doc_out['sample_std_mean']:.4f}")
    for what, path in (("restorations", a.output), (f"figure (rows: {rows})", a.figure)):
        if path:
            print(f"wrote {what} to {path}")
    return 0


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add `vaekit restore` to ``sub``; return {command name: handler}."""
    r = sub.add_parser("restore", help="super-resolution, deblurring, inpainting, denoising: MAP z, posterior "
                       "samples, baselines, PSNR/SSIM")
    r.add_argument("run_dir")
    add_device_argument(r)
    _common(r)
    r.add_argument("--operator", required=True,
                   help="y = A(x) + noise, operators chained with + in the order they act: downsample:K, blur:SIGMA, "
                   "mask:NAME|random:P|FILE.npy, noise:SIGMA, identity (e.g. downsample:4+noise:0.1)")
    r.add_argument("--samples", type=int, default=0, help="posterior samples per image (importance resampling "
                   "from the Laplace approximation at the MAP z; 0: MAP only)")
    r.add_argument("--proposals", type=int, default=256, help="importance proposals per image for --samples")
    r.add_argument("--steps", type=int, default=300, help="Adam steps on z")
    r.add_argument("--lr", type=float, default=0.05)
    r.add_argument("--restarts", type=int, default=1, help="starts per image (the first from --init, the rest drawn "
                   "from the prior); the best log-posterior is kept")
    r.add_argument("--init", default="encoder", choices=["encoder", "prior"],
                   help="first start: the encoder's mean of the pseudo-input, or the prior's mode z = 0")
    r.add_argument("--likelihood", default="auto", choices=["auto", "gaussian", "decoder"],
                   help="log p(y|z): Gaussian around A(decoder mean) (sigma: the noise's, else 0.02), the decoder's "
                   "own (masks only); auto: decoder for a noiseless mask or identity, else gaussian")
    r.add_argument("-o", "--output", default=None, help="FILE.npy (restorations) or FILE.npz (restored, observed, z, "
                   "samples, posterior_mean, ess)")
    r.add_argument("--figure", default=None, help="PNG: observed, baselines, VAE, samples, their spread, original "
                   "for the first 8")
    r.add_argument("--json", action="store_true", help="print one JSON document: each method's PSNR and SSIM")
    return {"restore": _cmd_restore}
