"""A generative classifier: one VAE per class, prediction by the largest log p(x | c) + log p(c).

Bayes' rule with class-conditional density models (the "generative" side of Ng & Jordan 2002, "On
Discriminative vs. Generative Classifiers"): p(c|x) = p(x|c) p(c) / sum_c' p(x|c') p(c'). With a VAE per class,
log p(x|c) is the importance-sampled estimate of Burda et al. 2016, Eq. 8 (K samples; a lower bound in
expectation whose bias shrinks with K) or, cheaper, the ELBO (Kingma & Welling 2014, Eq. 3); log p(c) is the
class frequency in the training data.

A model with a class latent y (M2: Kingma, Rezende, Mohamed & Welling 2014, "Semi-Supervised Learning with Deep
Generative Models") classifies on its own (``ClassLatentClassifier``): by its inference network, argmax_y q(y|x)
(their Sec. 3.1.2, the classifier whose error they report), or by the generative rule argmax_y log p(x|y) + log p(y),
log p(x|y) from the labelled bound L(x, y) (their Eq. 6) or importance-sampled with y observed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from vaekit.apps._common import as_data_tensor, per_example_elbo

__all__ = ["CLASS_SCORES", "LATENT_CLASS_SCORES", "GenerativeClassifier", "ClassLatentClassifier", "has_class_latent",
           "load_class_runs", "load_classifier_runs", "accuracy", "classification_report"]

CLASS_SCORES = ("loglik", "elbo")  # one run per class
LATENT_CLASS_SCORES = ("q", "elbo", "loglik")  # one model with a class latent (M2): q(y|x), or the generative rule


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


def has_class_latent(model: nn.Module) -> bool:
    """Whether ``model`` declares a classifier q(y|x) over a class group (the capability ``classifier``)."""
    from vaekit.models.contract import CLASSIFIER

    return CLASSIFIER in getattr(model, "capabilities", frozenset()) and model.layout.class_group() is not None


class ClassLatentClassifier:
    """Classes 0..K-1 of one model with a class latent y (M2); ``log_prior`` is its p(y) (uniform for M2).

    ``log_posterior(x, "q")`` is log q(y|x), the model's inference network; "elbo" and "loglik" apply Bayes' rule
    to log p(x|y) + log p(y), log p(x|y) bounded by the labelled ELBO L(x, y) (Kingma et al. 2014, Eq. 6) or
    importance-sampled with y observed (Burda et al. 2016, Eq. 8)."""

    def __init__(self, model: nn.Module) -> None:
        from vaekit.models.contract import CLASSIFIER, require

        require(model, CLASSIFIER, "classifying with the model's own q(y|x)")
        self.model = model
        group = model.layout.class_group()
        self.classes = list(range(int(group.shape[0])))
        prior = model.group_prior(group.name, {}).logits  # (K,)
        self.log_prior = torch.log_softmax(prior.detach().double().cpu(), -1)  # (K,) log p(y)

    def log_likelihoods(self, x: Any, score: str = "elbo", k: int = 100, elbo_samples: int = 10, seed: int = 0,
                        batch_size: int = 100) -> torch.Tensor:
        """(N, K) float64 log p(x | y) per class: the labelled ELBO with ``elbo_samples`` samples ("elbo") or
        importance-sampled with ``k`` samples ("loglik"), y observed, ``batch_size`` points per call."""
        from vaekit.objectives import elbo_terms, log_weights
        from vaekit.utils import batches, evaluation_context, model_device

        if score not in ("elbo", "loglik"):
            raise ValueError(f"unknown generative score {score!r}; choose elbo or loglik")
        x = as_data_tensor(x)
        self.model.check_input(x)
        rows = []
        with evaluation_context(self.model, seed):
            for xb in batches(x, batch_size, model_device(self.model)):
                cols = []
                for c in self.classes:
                    yb = torch.full((xb.shape[0],), c, dtype=torch.int64, device=xb.device)  # (B,)
                    if score == "elbo":
                        cols.append(elbo_terms(self.model, xb, elbo_samples, check=False, y=yb).elbo)  # (B,)
                    else:
                        lw = log_weights(self.model, xb, k, y=yb)  # (K, B)
                        cols.append(torch.logsumexp(lw.double(), 0) - math.log(k))  # (B,)
                rows.append(torch.stack(cols, 1).double().cpu())  # (B, C)
        return torch.cat(rows)

    def log_posterior(self, x: Any, score: str = "q", batch_size: int = 100, **kwargs: Any) -> torch.Tensor:
        """(N, K) float64 log p(y | x): log q(y|x) ("q") or Bayes' rule on ``log_likelihoods`` (keyword
        arguments as there)."""
        from vaekit.utils import batches, evaluation_context, model_device

        if score not in LATENT_CLASS_SCORES:
            raise ValueError(f"unknown classifier score {score!r}; choose from {', '.join(LATENT_CLASS_SCORES)}")
        if score != "q":
            joint = self.log_likelihoods(x, score, batch_size=batch_size, **kwargs) + self.log_prior  # (N, K)
            return joint - torch.logsumexp(joint, 1, keepdim=True)
        x = as_data_tensor(x)
        self.model.check_input(x)
        with evaluation_context(self.model):
            return torch.cat([torch.log_softmax(self.model.class_logits(xb).double(), -1).cpu()
                              for xb in batches(x, batch_size, model_device(self.model))])

    def predict(self, x: Any, score: str = "q", **kwargs: Any) -> torch.Tensor:
        """(N,) int64 argmax_y of ``log_posterior``."""
        return self.log_posterior(x, score, **kwargs).argmax(1)


def load_classifier_runs(run_dirs: Sequence[str | Path], checkpoint: str = "best", device: str | None = None
                         ) -> tuple[GenerativeClassifier | ClassLatentClassifier, list[Any], list[dict[str, Any]]]:
    """What `vaekit classify` classifies with: one run of a model with a class latent (M2) gives a
    ``ClassLatentClassifier``; one run per class (``data.classes=[k]``) a ``GenerativeClassifier``, as in
    ``load_class_runs``. Returns (classifier, configs, docs)."""
    from vaekit.runs import load_run

    if not run_dirs:
        raise ValueError("classify needs a run folder")
    loaded = [(d, *load_run(d, checkpoint, device)) for d in run_dirs]
    latent = [str(d) for d, _, model, _ in loaded if has_class_latent(model)]
    if latent and len(loaded) > 1:
        raise ValueError(f"run {latent[0]!r} has its own classifier q(y|x) (an M2 run): give it alone, not with "
                         f"other runs (several runs are one run per class, each trained with data.classes=[k])")
    if latent:
        _, cfg, model, doc = loaded[0]
        return ClassLatentClassifier(model), [cfg], [doc]
    return _class_runs(loaded)


def load_class_runs(run_dirs: Sequence[str | Path], checkpoint: str = "best", device: str | None = None
                    ) -> tuple[GenerativeClassifier, list[Any], list[dict[str, Any]]]:
    """A GenerativeClassifier from run folders trained with ``data.classes=[k]`` (one class each); the prior is
    the runs' training-set sizes (``n_train`` in the checkpoint document). Returns (classifier, configs, docs)."""
    from vaekit.runs import load_run

    if len(run_dirs) < 2:
        _class_runs([])  # the error for too few runs
    return _class_runs([(d, *load_run(d, checkpoint, device)) for d in run_dirs])


def _class_runs(loaded: Sequence[tuple[Any, Any, nn.Module, dict[str, Any]]]
                ) -> tuple[GenerativeClassifier, list[Any], list[dict[str, Any]]]:
    """``load_class_runs`` on (run_dir, config, model, doc) of runs already loaded."""
    if len(loaded) < 2:
        raise ValueError("classify needs one run folder per class (at least two), each trained with "
                         "data.classes=[k], or a single run whose model has the capability 'classifier' "
                         "(a classifier q(y|x), e.g. model.family=m2)")
    models, classes, counts, cfgs, docs = [], [], [], [], []
    for d, cfg, model, doc in loaded:
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
    """accuracy over the examples whose label is one of ``classes`` (None if there are none), error (1 - accuracy),
    n_scored (their number), per_class {class: accuracy on that class's examples} and confusion: counts
    [i][j] of examples of class classes[i] predicted as classes[j] (rows: true class; labels outside ``classes``
    and predictions outside them are not counted)."""
    cls = [int(c) for c in classes]
    known = torch.isin(y, torch.tensor(cls))
    acc = accuracy(pred[known], y[known]) if known.any() else None
    confusion = [[int(((y == a) & (pred == b)).sum()) for b in cls] for a in cls]
    return {"accuracy": acc, "error": None if acc is None else 1.0 - acc, "n_scored": int(known.sum()),
            "per_class": {c: accuracy(pred[y == c], y[y == c]) for c in cls if (y == c).any()},
            "confusion": confusion}
