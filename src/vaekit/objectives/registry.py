"""Objective names a config can pick (``model.objective``) -> builders with typed options
(``model.objective_options``). ``vaekit.registry.build_objective`` is the one caller."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from vaekit.objectives.elbo import ELBO, Objective

__all__ = ["ObjectiveSpec", "OBJECTIVES", "make_objective"]


@dataclass(frozen=True)
class ObjectiveSpec:
    """build(model options, objective options) -> Objective; options: the accepted keys and their defaults
    (a default's type is the option's type; None means "from the run": the training set size)."""

    description: str
    build: Callable[..., Objective]
    options: Mapping[str, Any]
    supervised: bool = False  # build(model, options, supervision): trains with labels (data.labels)


def _elbo(m: dict[str, Any], o: dict[str, Any]) -> Objective:
    return ELBO(beta=m["beta"], warmup_steps=m["warmup_steps"], free_bits=m["free_bits"], n_samples=m["n_samples"])


def _tc(m: dict[str, Any], o: dict[str, Any]) -> Objective:
    from vaekit.objectives.tc import BetaTCVAE

    return BetaTCVAE(beta=m["beta"], alpha=o["alpha"], gamma=o["gamma"], dataset_size=o["dataset_size"],
                     estimator=o["estimator"])


def _factor(m: dict[str, Any], o: dict[str, Any]) -> Objective:
    from vaekit.objectives.factor_vae import FactorVAE

    return FactorVAE(latent_dim=m["latent_dim"], gamma=o["gamma"], hidden=o["hidden"], disc_lr=o["disc_lr"],
                     disc_betas=o["disc_betas"], beta=m["beta"])


def _m2(m: dict[str, Any], o: dict[str, Any], supervision: Any) -> Objective:
    from vaekit.objectives.semi_supervised import SemiSupervisedELBO

    return SemiSupervisedELBO(supervision, alpha=None if o["alpha"] == "auto" else o["alpha"],
                              labelled_batch=o["labelled_batch"], generative=o["generative"])


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "elbo": ObjectiveSpec("negative ELBO with model.beta (β-VAE), KL warm-up, free bits", _elbo, {}),
    "beta-tcvae": ObjectiveSpec("β-TCVAE (Chen et al. 2018): model.beta weighs the minibatch-estimated total "
                                "correlation", _tc, {"alpha": 1.0, "gamma": 1.0, "estimator": "mws",
                                                     "dataset_size": None}),
    "factor-vae": ObjectiveSpec("FactorVAE (Kim & Mnih 2018): ELBO + gamma x a discriminator's TC estimate",
                                _factor, {"gamma": 10.0, "hidden": [1000] * 6, "disc_lr": 1e-4,
                                          "disc_betas": [0.5, 0.9]}),
    "m2": ObjectiveSpec("M2's semi-supervised bound (Kingma et al. 2014, Eq. 9): labelled bound + class-summed "
                        "unlabelled bound + alpha x the classifier's loss (alpha: auto = 0.1 N); needs data.labels",
                        _m2, {"alpha": "auto", "labelled_batch": 100, "generative": True}, supervised=True),
}


def _typed(name: str, key: str, value: Any, default: Any) -> Any:
    if default == "auto":  # a number, or "auto" for the objective's own choice
        ok = value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool))
        value = float(value) if ok and value != "auto" else value
    elif default is None:
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        want = "an integer" if default is None else f"like {default!r}"
        raise ValueError(f"model.objective_options.{key} of {name} must be {want}, got {value!r}")
    return value


def make_objective(name: str, model: dict[str, Any], options: Mapping[str, Any] | None,
                   n_train: int | None = None, supervision: Any = None) -> Objective:
    """The objective ``name`` built from the model config's fields and its options (unknown keys are errors
    naming the closest valid one). An option whose default is None (dataset_size) takes ``n_train``."""
    if name not in OBJECTIVES:
        close = difflib.get_close_matches(str(name), list(OBJECTIVES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown model.objective {name!r}; {hint}known: {', '.join(OBJECTIVES)}")
    spec = OBJECTIVES[name]
    opts = dict(spec.options)
    for k, v in (options or {}).items():
        if k not in spec.options:
            close = difflib.get_close_matches(str(k), list(spec.options), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{name} has no option {k!r}{hint} (its options: {', '.join(spec.options) or 'none'})")
        opts[k] = _typed(name, k, v, spec.options[k])
    for k, default in spec.options.items():
        if default is None and opts[k] is None:
            opts[k] = n_train
    if name != "elbo" and (model["free_bits"] or model["warmup_steps"] or model["n_samples"] != 1):
        raise ValueError(f"model.free_bits, model.warmup_steps and model.n_samples apply to objective=elbo only; "
                         f"drop them for {name}")
    if model.get("family") == "m2" and name not in ("m2", "elbo"):
        raise ValueError(f"model.family=m2 trains with objective m2 (semi-supervised) or elbo, not {name}")
    if spec.supervised:
        if supervision is None:
            raise ValueError(f"model.objective={name} needs labels: set data.labels=N (N labelled training "
                             f"examples, balanced over the classes) or data.labels=all")
        if model.get("family") != "m2":
            raise ValueError(f"model.objective={name} trains the m2 family; set model.family=m2")
        return spec.build(model, opts, supervision)
    return spec.build(model, opts)
