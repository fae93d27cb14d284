"""A generative classifier: one VAE per class, prediction by the largest log p(x | c) + log p(c).

Bayes' rule with class-conditional density models (the "generative" side of Ng & Jordan 2002, "On
Discriminative vs. Generative Classifiers"): p(c|x) = p(x|c) p(c) / sum_c' p(x|c') p(c'). With a VAE per class,
log p(x|c) is the importance-sampled estimate of Burda et al. 2016, Eq. 8 (K samples; a lower bound in
expectation whose bias shrinks with K) or, cheaper, the ELBO (Kingma & Welling 2014, Eq. 3); log p(c) is the
class frequency in the training data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from vaekit.apps._common import as_data_tensor, per_example_elbo

__all__ = ["CLASS_SCORES", "GenerativeClassifier", "load_class_runs", "accuracy", "classification_report"]

CLASS_SCORES = ("loglik", "elbo")


class GenerativeClassifier:
    """Class-conditional models ``models[i]`` for ``classes[i]`` with prior weights ``counts`` (training-set
    sizes per class; None = uniform prior)."""

    def __init__(self, models: Sequence[nn.Module], classes: Sequence[int],
                 counts: Sequence[float] | None = None) -> None:
        if len(models) != len(classes):
            raise ValueError(f"got {len(models)} models for {len(classes)} classes; give one model per class")
        if len(models) < 2:
            raise ValueError("a classifier needs models for at least two classes")
        if len(set(int(c) for c in classes)) != len(classes):
            raise ValueError(f"classes {list(classes)} repeat a class; give one model per class")
        shapes = {tuple(getattr(m, "data_shape", ())) for m in models}
        if len(shapes) > 1:
            raise ValueError(f"the class models are built for different data shapes {sorted(shapes)}; "
                             f"train them on the same data")
        self.models, self.classes = list(models), [int(c) for c in classes]
        if counts is None:
            counts = [1.0] * len(models)
        c = torch.tensor([float(v) for v in counts], dtype=torch.float64)
        if c.numel() != len(models) or bool((c <= 0).any()):
            raise ValueError(f"class counts must be one positive number per class, got {list(counts)}")
        self.log_prior = (c / c.sum()).log()  # (C,) log p(c)

    def log_likelihoods(self, x: Any, score: str = "loglik", k: int = 100, elbo_samples: int = 10,
                        seed: int = 0, batch_size: int = 1) -> torch.Tensor:
        """(N, C) float64 log p(x | c) per class: importance-sampled with ``k`` samples ("loglik", ``batch_size``
        points per call as in ``estimate_log_likelihood``) or the ELBO with ``elbo_samples`` samples ("elbo")."""
        from vaekit.evaluation import estimate_log_likelihood

        if score not in CLASS_SCORES:
            raise ValueError(f"unknown classifier score {score!r}; choose from {', '.join(CLASS_SCORES)}")
        x = as_data_tensor(x)
        self.models[0].check_input(x)
        cols = []
        for m in self.models:
            if score == "loglik":
                cols.append(estimate_log_likelihood(m, x, k=k, batch_size=batch_size, seed=seed,
                                                    check=False).per_example)  # (N,)
            else:
                cols.append(per_example_elbo(m, x, elbo_samples, seed=seed))  # (N,)
        return torch.stack(cols, 1)

    def log_posterior(self, log_lik: torch.Tensor) -> torch.Tensor:
        """(N, C) log p(c | x) from (N, C) log p(x | c): log p(x|c) + log p(c) normalised over c."""
        joint = log_lik + self.log_prior  # (N, C)
        return joint - torch.logsumexp(joint, 1, keepdim=True)

    def predict(self, x: Any, **kwargs: Any) -> torch.Tensor:
        """(N,) int64 predicted class labels argmax_c log p(x|c) + log p(c) (keyword arguments as in
        ``log_likelihoods``)."""
        joint = self.log_likelihoods(x, **kwargs) + self.log_prior
        return torch.tensor(self.classes, dtype=torch.int64)[joint.argmax(1)]


def load_class_runs(run_dirs: Sequence[str | Path], checkpoint: str = "best", device: str | None = None
                    ) -> tuple[GenerativeClassifier, list[Any], list[dict[str, Any]]]:
    """A GenerativeClassifier from run folders trained with ``data.classes=[k]`` (one class each); the prior is
    the runs' training-set sizes (``n_train`` in the checkpoint document). Returns (classifier, configs, docs)."""
    from vaekit.run import load_run

    if len(run_dirs) < 2:
        raise ValueError("classify needs one run folder per class (at least two), each trained with "
                         "data.classes=[k]")
    models, classes, counts, cfgs, docs = [], [], [], [], []
    for d in run_dirs:
        cfg, model, doc = load_run(d, checkpoint, device)
        cls = cfg.data.classes
        if not cls:
            raise ValueError(f"run {str(d)!r} was trained without data.classes, so it models no single class "
                             f"(it has no class label); train one run per class with data.classes=[k]")
        if len(cls) != 1:
            raise ValueError(f"run {str(d)!r} was trained on classes {list(cls)}; a class model needs exactly one "
                             f"(data.classes=[k])")
        models.append(model)
        classes.append(int(cls[0]))
        counts.append(doc.get("data", {}).get("n_train"))
        cfgs.append(cfg)
        docs.append(doc)
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ValueError(f"several runs model class {dup[0]}; give one run per class")
    names = {(c.data.name, c.data.path) for c in cfgs}
    if len(names) > 1:
        raise ValueError(f"the runs were trained on different data {sorted(map(str, names))}; use runs of one dataset")
    prior = None if any(n is None for n in counts) else counts
    return GenerativeClassifier(models, classes, prior), cfgs, docs


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``pred`` equal to ``y``."""
    return float((pred == y).double().mean()) if y.numel() else math.nan


def classification_report(pred: torch.Tensor, y: torch.Tensor, classes: Sequence[int]) -> dict[str, Any]:
    """accuracy over the examples whose label is one of ``classes`` (None if there are none), n_scored (their
    number) and per_class {class: accuracy on that class's examples}."""
    known = torch.isin(y, torch.tensor(list(classes)))
    return {"accuracy": accuracy(pred[known], y[known]) if known.any() else None, "n_scored": int(known.sum()),
            "per_class": {int(c): accuracy(pred[y == c], y[y == c]) for c in classes if (y == c).any()}}
