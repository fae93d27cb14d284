"""`vaekit` sub-commands for the uses of a trained model (embed, anomaly, classify, inpaint, refine).

Every command reads a run folder and data (``--data``: the run's own dataset by default, all classes; a dataset
name; or a .npy/.npz/.csv/image file or image folder; see ``vaekit.apps.inputs``). Handlers raise ValueError /
FileNotFoundError for bad input, which ``vaekit.cli`` turns into a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from vaekit.cli.common import add_device_argument

__all__ = ["register"]

_DATA_HELP = ("dataset name (default: the run's own dataset, all classes) or a .npy/.npz/.csv/.png file or image "
              "folder")


def _common(p: argparse.ArgumentParser, *aliases: str, split: str = "test") -> None:
    p.add_argument("--data", *aliases, dest="data", default=None, metavar="DATA", help=_DATA_HELP)
    p.add_argument("--split", default=split, choices=["train", "val", "test"], help=f"split of a dataset (default {split})")
    p.add_argument("--limit", type=int, default=None,
                   help="use N examples drawn across the split (a fixed seed: the same N every time)")
    p.add_argument("--first", type=int, default=None, help="use the first N examples in file order")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--data-dir", default=None, help="data directory (default: the run's, else $VAEKIT_DATA_DIR)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")


def _threads(a: argparse.Namespace) -> None:
    import torch

    if a.threads is not None:
        if a.threads < 1:
            raise ValueError("--threads must be at least 1")
        torch.set_num_threads(a.threads)


def _start(a: argparse.Namespace) -> tuple[Any, Any, dict]:
    from vaekit.runs import load_run

    _threads(a)
    return load_run(a.run_dir, a.checkpoint, a.device)


def _suffix(path: str, allowed: tuple[str, ...], flag: str) -> str:
    s = Path(path).suffix.lower()
    if s not in allowed:
        raise ValueError(f"{flag} file {path!r} must end in {' or '.join(allowed)}")
    return s


# ----------------------------------------------------------------------------------------------- embed
def _cmd_embed(a: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.apps import embed, load_inputs, write_csv
    from vaekit.utils import atomic_save_npy

    kind = _suffix(a.output, (".npy", ".csv"), "-o")
    cfg, model, doc = _start(a)
    d = load_inputs(cfg, doc, a.data, a.split, data_dir=a.data_dir, limit=a.limit, first=a.first)
    z = embed(model, d.x, a.what, seed=a.seed).numpy().astype(np.float32)  # (N, D)
    if kind == ".npy":
        atomic_save_npy(a.output, z)
    else:
        write_csv(a.output, {"z": z, **({"label": d.y.numpy()} if d.y is not None else {})})
    print(f"wrote {z.shape[0]} x {z.shape[1]} posterior {a.what}s of {d.source} to {a.output}")
    return 0


# --------------------------------------------------------------------------------------------- anomaly
def _cmd_anomaly(a: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.apps import SCORES, anomaly_labels, anomaly_scores, load_inputs, threshold_report, write_csv
    from vaekit.utils import atomic_save_npy

    _suffix(a.output, (".csv",), "-o")
    if a.error_maps:
        _suffix(a.error_maps, (".npy",), "--error-maps")
    which = [s.strip() for s in a.scores.split(",") if s.strip()]
    bad = [s for s in which if s not in SCORES]
    if bad or not which:
        raise ValueError(f"unknown score {bad[0] if bad else a.scores!r} in --scores; choose from {', '.join(SCORES)}")
    if not 0.0 < a.fpr < 1.0:
        raise ValueError(f"--fpr must be in (0, 1), got {a.fpr}")
    cfg, model, doc = _start(a)
    d = load_inputs(cfg, doc, a.data, a.split, data_dir=a.data_dir, limit=a.limit, first=a.first, evaluated=True)
    normal = load_inputs(cfg, doc, a.normal_data, a.normal_split, data_dir=a.data_dir, evaluated=True,
                         keep_classes=True)
    kw = dict(k=a.iw_samples, elbo_samples=a.elbo_samples, seed=a.seed)
    s = anomaly_scores(model, d.x, which, error_map=bool(a.error_maps), **kw)
    s_norm = anomaly_scores(model, normal.x, which, positions=False, **kw)
    labels = None  # 1 = anomaly: the given --anomaly-classes, else labels outside the run's data.classes
    if d.y is not None and (a.anomaly_classes is not None or cfg.data.classes):
        labels = anomaly_labels(d.y.numpy(), anomalies=a.anomaly_classes, normal=cfg.data.classes)
    cols: dict[str, Any] = {"index": np.arange(len(d.x))}
    if d.y is not None:
        cols["label"] = d.y.numpy()
    if labels is not None:
        cols["anomaly"] = labels.astype(np.int64)
    rows = []
    for name in which:
        r = threshold_report(s[name], s_norm[name], a.fpr, labels)
        cols[name], cols[f"flag_{name}"] = s[name], (s[name] > r["threshold"]).astype(np.int64)
        rows.append({"score": name, **r})
    if "neg_elbo_step" in s:  # per position (a sequence's steps): columns neg_elbo_step0.., NaN at padding
        cols["neg_elbo_step"] = s["neg_elbo_step"]
    write_csv(a.output, cols)
    if a.error_maps:
        atomic_save_npy(a.error_maps, s["error_map"])
    if a.json:
        print(json.dumps({"n": len(d.x), "n_normal_calibration": len(normal.x), "fpr_target": a.fpr, "k": a.iw_samples,
                          "n_anomalies": None if labels is None else int(labels.sum()), "scores": rows}))
        return 0
    print(f"{a.run_dir} on {d.source} (n = {len(d.x)}); thresholds for FPR {a.fpr:g} from {normal.source} "
          f"(n = {len(normal.x)})" + (f"; -log p(x) with K = {a.iw_samples}" if "neg_log_px" in which else ""))
    for r in rows:
        extra = (f"  FPR {r['fpr']:.3f}  TPR {r['tpr']:.3f}  AUROC {r['auroc']:.4f}  AUPRC {r['auprc']:.4f}"
                 if "auroc" in r else "")
        print(f"  {r['score']:<12} threshold {r['threshold']:.4g}  flagged {r['flagged']:.3f}{extra}")
    if labels is None:
        print("  (no anomaly labels: give labelled data and --anomaly-classes, or use a run trained with data.classes)")
    print(f"wrote scores and flags to {a.output}" + (f", error maps to {a.error_maps}" if a.error_maps else ""))
    return 0


# -------------------------------------------------------------------------------------------- classify
def _cmd_classify(a: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vaekit.apps import (CLASS_SCORES, LATENT_CLASS_SCORES, ClassLatentClassifier, classification_report,
                             load_classifier_runs, load_inputs, write_csv)

    if a.output:
        _suffix(a.output, (".csv",), "-o")
    if a.score is not None and a.score not in set(CLASS_SCORES) | set(LATENT_CLASS_SCORES):
        raise ValueError(f"--score must be one of {', '.join(CLASS_SCORES)} (one run per class) or "
                         f"{', '.join(LATENT_CLASS_SCORES)} (an M2 run)")
    _threads(a)
    clf, cfgs, docs = load_classifier_runs(a.run_dirs, a.checkpoint, a.device)
    latent = isinstance(clf, ClassLatentClassifier)
    score = a.score or ("q" if latent else "loglik")
    if not latent and score not in CLASS_SCORES:
        raise ValueError(f"--score {score} is an M2 run's own classifier q(y|x); with one run per class use "
                         f"{' or '.join(CLASS_SCORES)}")
    if a.uniform_prior:
        clf.log_prior = torch.full_like(clf.log_prior, -float(np.log(len(clf.classes))))
    d = load_inputs(cfgs[0], docs[0], a.data, a.split, data_dir=a.data_dir, limit=a.limit, first=a.first,
                    evaluated=True)
    kw = dict(k=a.iw_samples, elbo_samples=a.elbo_samples, seed=a.seed)
    if latent:
        post = clf.log_posterior(d.x, score, **kw)  # (N, C) log q(y|x), or Bayes' rule on log p(x|y)
    else:
        post = clf.log_posterior(clf.log_likelihoods(d.x, score, **kw))  # (N, C)
    pred = torch.tensor(clf.classes)[post.argmax(1)]
    res: dict[str, Any] = {"n": len(d.x), "classes": clf.classes, "score": score, "k": a.iw_samples,
                           "log_prior": clf.log_prior.tolist()}
    if d.y is not None:
        res.update(classification_report(pred, d.y, clf.classes))
    if a.output:
        cols = {"index": np.arange(len(d.x)), **({"label": d.y.numpy()} if d.y is not None else {}),
                "pred": pred.numpy(), **{f"log_p_class_{c}": post[:, j].numpy() for j, c in enumerate(clf.classes)}}
        write_csv(a.output, cols)
    if a.json:
        print(json.dumps(res))
        return 0
    how = {"loglik": f"importance-sampled log p(x|c), K = {a.iw_samples}", "elbo": "ELBO"}
    if latent:
        by = {"elbo": f"by the ELBO ({a.elbo_samples} samples)", "loglik": f"importance-sampled, K = {a.iw_samples}"}
        rule = ("argmax q(y|x), its inference network" if score == "q" else
                f"the generative rule argmax_y log p(x|y) + log p(y), log p(x|y) {by.get(score)}")
        print(f"M2 classifier over classes {clf.classes[0]}..{clf.classes[-1]} of {a.run_dirs[0]} on {d.source} "
              f"(n = {len(d.x)}), {rule}")
    else:
        print(f"generative classifier over classes {clf.classes} on {d.source} (n = {len(d.x)}), {how[score]}")
    if res.get("accuracy") is not None:
        err = f" (error {100 * res['error']:.2f} %)" if latent else ""
        print(f"  accuracy {res['accuracy']:.4f}{err} on {res['n_scored']} labelled examples of these classes")
        print("  per class: " + "  ".join(f"{c}: {v:.3f}" for c, v in res["per_class"].items()))
        if latent:
            print(_confusion_text(res["confusion"], clf.classes))
    else:
        print("  (no labels of these classes in the data: accuracy not computed)")
    if a.output:
        print(f"wrote predictions and log p(class|x) to {a.output}")
    return 0


def _confusion_text(confusion: list[list[int]], classes: list[int]) -> str:
    """The confusion matrix as indented text: rows the true class, columns the predicted one."""
    w = max(4, max(len(str(v)) for row in confusion for v in row) + 1, max(len(str(c)) for c in classes) + 1)
    lines = ["  confusion matrix (rows: true class, columns: predicted class)",
             "  " + " " * (w + 1) + "".join(f"{c:>{w}}" for c in classes)]
    lines += [f"  {c:>{w}} " + "".join(f"{v:>{w}}" for v in row) for c, row in zip(classes, confusion)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- inpaint
def _cmd_inpaint(a: argparse.Namespace) -> int:
    import torch

    from vaekit.apps import denoise, inpaint, load_inputs, load_mask, masked_mse, train_mean

    if a.output:
        _suffix(a.output, (".npy",), "-o")
    if a.figure:
        _suffix(a.figure, (".png",), "--figure")
    if (a.mask is None) == (not a.denoise):
        raise ValueError("give either --mask (pixels to fill) or --denoise (every pixel observed, noisy)")
    cfg, model, doc = _start(a)
    d = load_inputs(cfg, doc, a.data, a.split, data_dir=a.data_dir, limit=a.limit, first=a.first)
    shape = tuple(doc["data"]["shape"])
    model.check_input(d.x)
    if a.denoise:
        out = denoise(model, d.x, steps=a.steps, lr=a.lr)
        mask, msg = None, f"denoised {len(d.x)} inputs of {d.source}"
    else:
        mask = load_mask(a.mask, len(d.x), shape, a.seed)
        if a.fill == "mean":
            fill = train_mean(cfg, a.data_dir)
        else:
            try:
                fill = float(a.fill)
            except ValueError:
                raise ValueError(f"--fill must be 'mean' or a number, got {a.fill!r}") from None
        out = inpaint(model, d.x, mask, method=a.method, fill=fill, iterations=a.iterations, steps=a.steps, lr=a.lr)
        base = torch.where(torch.as_tensor(mask).bool().expand_as(d.x), torch.as_tensor(fill).expand_as(d.x), d.x)
        e_out, e_fill = masked_mse(out, d.x, mask), masked_mse(base, d.x, mask)
        res = {"n": len(d.x), "mask": a.mask, "method": a.method, "mse_completion": e_out, "mse_fill": e_fill}
        msg = (f"inpainted {len(d.x)} inputs of {d.source} ({a.method}); squared error per masked pixel against the "
               f"input's own values: completion {e_out:.5f}, {a.fill} fill {e_fill:.5f}")
    if a.output:
        import numpy as np

        from vaekit.utils import atomic_save_npy

        atomic_save_npy(a.output, out.numpy().astype(np.float32))
    if a.figure:
        from vaekit.plots import save_image_grid

        if len(shape) != 3:
            raise ValueError("this run models tabular data; --figure needs images")
        n = min(8, len(d.x))
        shown = d.x[:n] if mask is None else torch.where(torch.as_tensor(mask).bool().expand_as(d.x)[:n], 0.5, d.x[:n])
        save_image_grid(torch.cat([shown, out[:n]] + ([d.x[:n]] if mask is not None else [])), a.figure, nrow=n)
    if a.json and mask is not None:
        print(json.dumps(res))
        return 0
    print(msg)
    for what, path in (("completions", a.output), ("figure (rows: input, completion, original)", a.figure)):
        if path:
            print(f"wrote {what} to {path}")
    return 0


# ---------------------------------------------------------------------------------------------- refine
def _cmd_refine(a: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.apps import load_inputs, refine, write_csv

    if a.output:
        _suffix(a.output, (".csv",), "-o")
    cfg, model, doc = _start(a)
    d = load_inputs(cfg, doc, a.data, a.split, data_dir=a.data_dir, limit=a.limit, first=a.first, evaluated=True)
    r = refine(model, d.x, steps=a.steps, lr=a.lr, n_samples=a.samples, eval_samples=a.eval_samples, seed=a.seed,
               init=a.init)
    res: dict[str, Any] = {**r.summary(), "steps": a.steps, "lr": a.lr, "eval_samples": a.eval_samples}
    cols: dict[str, Any] = {"index": np.arange(len(d.x)), "elbo_amortised": r.elbo_amortised.numpy(),
                            "elbo_refined": r.elbo_refined.numpy(), "gap": r.gap.numpy()}
    if a.iw_samples:
        from vaekit.evaluation import estimate_log_likelihood

        lp = estimate_log_likelihood(model, d.x, k=a.iw_samples, seed=a.seed + 1)
        res.update(log_px=lp.mean, log_px_stderr=lp.stderr, k=a.iw_samples,
                   approximation_gap=lp.mean - res["elbo_refined"], inference_gap=lp.mean - res["elbo_amortised"])
        cols["log_px"] = lp.per_example.numpy()
    if a.output:
        write_csv(a.output, cols)
    if a.json:
        print(json.dumps(res))
        return 0
    start = "the encoder's q(z|x) (semi-amortised)" if a.init == "encoder" else "the prior (mean-field)"
    print(f"{a.run_dir} on {d.source} (n = {res['n']}): {a.steps} Adam steps per point from {start}, ELBOs on "
          f"{a.eval_samples} common samples")
    print(f"  amortised ELBO    {res['elbo_amortised']:.3f} nats (encoder pass {res['seconds_amortised']:.3f} s)")
    if a.init == "prior":
        print(f"  prior start ELBO  {res['elbo_start']:.3f} nats")
    print(f"  refined ELBO      {res['elbo_refined']:.3f} nats ({a.steps} steps, {res['seconds']:.2f} s)")
    name = "amortisation gap" if a.init == "encoder" else "minus amortised"
    print(f"  {name:<16}  {res['gap']:.3f} ± {res['gap_stderr']:.3f} nats (min {res['gap_min']:.3f}, "
          f"max {res['gap_max']:.3f}; {res['kept_amortised']} points kept their starting posterior)")
    if a.iw_samples:
        print(f"  log p(x), K={a.iw_samples:<5} {res['log_px']:.3f} ± {res['log_px_stderr']:.3f}; approximation gap "
              f"{res['approximation_gap']:.3f}, inference gap {res['inference_gap']:.3f} nats")
    if a.output:
        print(f"wrote per-example ELBOs to {a.output}")
    return 0


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's sub-commands to ``sub``; return {command name: handler}."""
    e = sub.add_parser("embed", help="posterior means (or samples, log-variances) of data, to .npy or .csv")
    e.add_argument("run_dir")
    add_device_argument(e)
    _common(e)
    e.add_argument("-o", "--output", required=True, help="FILE.npy (N, D) or FILE.csv (z0..z{D-1}[,label])")
    e.add_argument("--what", default="mean", choices=["mean", "sample", "logvar"])

    an = sub.add_parser("anomaly", help="anomaly scores, thresholds for a false-positive rate, AUROC/AUPRC")
    an.add_argument("run_dir")
    add_device_argument(an)
    _common(an)
    an.add_argument("-o", "--output", required=True, help="CSV of scores and flags; a sequence model "
                    "adds the -ELBO per time step, columns neg_elbo_step0.. (nan at padded steps)")
    an.add_argument("--normal-data", default=None, help="held-out normal data for the thresholds (default: the run's "
                    "own validation split, its classes only)")
    an.add_argument("--normal-split", default="val", choices=["train", "val", "test"])
    an.add_argument("--fpr", type=float, default=0.05, help="target false-positive rate on the normal data")
    an.add_argument("--scores", default="neg_elbo,neg_log_px,recon_error", help="comma-separated score names")
    an.add_argument("-k", "--iw-samples", type=int, default=100, help="importance samples for -log p(x)")
    an.add_argument("--elbo-samples", type=int, default=10, help="samples for the -ELBO score")
    an.add_argument("--anomaly-classes", type=lambda s: [int(v) for v in s.split(",")], default=None,
                    help="labels that count as anomalies, e.g. 9 (default: labels not in the run's data.classes)")
    an.add_argument("--error-maps", default=None, help="also save per-pixel squared errors (N, *shape) to FILE.npy")
    an.add_argument("--json", action="store_true")

    c = sub.add_parser("classify", help="generative classifier from one run per class (data.classes=[k]), or an M2 "
                       "run's own classifier")
    c.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    add_device_argument(c)
    _common(c)
    c.add_argument("--score", default=None, help="one run per class: loglik (importance-sampled, K samples; default) "
                   "or elbo; an M2 run: q (argmax q(y|x); default), or the generative rule argmax_y log p(x|y) + "
                   "log p(y) with log p(x|y) by elbo or loglik")
    c.add_argument("-k", "--iw-samples", type=int, default=100)
    c.add_argument("--elbo-samples", type=int, default=10)
    c.add_argument("--uniform-prior", action="store_true", help="p(class) uniform instead of training frequencies")
    c.add_argument("-o", "--output", default=None, help="CSV of predictions and log p(class | x)")
    c.add_argument("--json", action="store_true")

    i = sub.add_parser("inpaint", help="fill masked pixels (or denoise) by optimising over z / iterating encode-decode")
    i.add_argument("run_dir")
    add_device_argument(i)
    _common(i, "--input")  # --input: the older name of --data
    i.add_argument("--mask", default=None, help="FILE.npy / FILE.png (1 or white = missing) or top, bottom, left, "
                   "right, centre, random:P")
    i.add_argument("--denoise", action="store_true", help="no mask: every pixel is a noisy observation")
    i.add_argument("--method", default="optimize", choices=["iterate", "optimize", "both"],
                   help="optimize: MAP z (default); iterate: encode-decode with observed pixels clamped; both: iterate, then optimize")
    i.add_argument("--fill", default="mean", help="start value of missing pixels: mean (training mean image) or a number")
    i.add_argument("--iterations", type=int, default=50, help="encode-decode iterations")
    i.add_argument("--steps", type=int, default=300, help="Adam steps on z")
    i.add_argument("--lr", type=float, default=0.05)
    i.add_argument("-o", "--output", default=None, help="completed inputs to FILE.npy")
    i.add_argument("--figure", default=None, help="PNG: input, completion, original for the first 8")
    i.add_argument("--json", action="store_true", help="print the masked-pixel errors as JSON")

    r = sub.add_parser("refine", help="per-point refinement of q(z|x) and the amortisation gap")
    r.add_argument("run_dir")
    add_device_argument(r)
    _common(r)
    r.add_argument("--steps", type=int, default=100, help="Adam steps per data point")
    r.add_argument("--lr", type=float, default=0.05)
    r.add_argument("--samples", type=int, default=4, help="samples per step")
    r.add_argument("--init", default="encoder", choices=["encoder", "prior"],
                   help="start from the encoder's q(z|x) (semi-amortised) or from the prior p(z) (mean-field)")
    r.add_argument("--eval-samples", type=int, default=100, help="common samples for the two ELBOs")
    r.add_argument("-k", "--iw-samples", type=int, default=0, help="also log p(x) with K samples (0: skip)")
    r.add_argument("-o", "--output", default=None, help="CSV of per-example ELBOs and gaps")
    r.add_argument("--json", action="store_true")
    return {"embed": _cmd_embed, "anomaly": _cmd_anomaly, "classify": _cmd_classify, "inpaint": _cmd_inpaint,
            "refine": _cmd_refine}
