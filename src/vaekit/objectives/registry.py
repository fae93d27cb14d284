"""Objective names a config can pick (``model.objective``) -> builders with typed options
(``model.objective_options``). ``vaekit.registry.build_objective`` is the one caller of ``make_objective``.

An entry declares, besides its options dataclass, which of the model keys every family shares it reads
(``reads``: ``model.beta``, ``model.warmup_steps``, ...), the capabilities it needs from the model family
(``needs``, matched against ``vaekit.models.registry.Family.capabilities``) and whether it trains with labels
(``supervised``: only then may ``data.labels`` be set). ``vaekit.config.validate`` checks all of it, so this
module names no model family. Read without torch: the objectives' classes load when one is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from vaekit.options import option

if TYPE_CHECKING:
    from vaekit.config import ModelConfig
    from vaekit.objectives.elbo import Objective

__all__ = ["ObjectiveSpec", "OBJECTIVES", "objective_names", "objective_options", "make_objective",
           "ELBOOptions", "BetaTCVAEOptions", "FactorVAEOptions", "M2ObjectiveOptions"]


@dataclass
class ELBOOptions:
    """``elbo``: reads model.beta, warmup_steps, free_bits, n_samples; KL balancing is its own option."""

    kl_balance: bool = option(False, doc="weigh each latent group's KL by NVAE's balancing coefficients during "
                                         "the KL warm-up (a hierarchy)")


@dataclass
class BetaTCVAEOptions:
    """``beta-tcvae`` (Chen et al. 2018); model.beta weighs the total correlation."""

    alpha: float = option(1.0, doc="weight of the index-code mutual information", min=0)
    gamma: float = option(1.0, doc="weight of the dimension-wise KL", min=0)
    estimator: Literal["mws", "mss"] = option("mws", doc="minibatch weighted (mws) or stratified (mss) sampling")
    dataset_size: int | None = option(None, doc="training set size N of the estimator (null: the run's)", min=1)


@dataclass
class FactorVAEOptions:
    """``factor-vae`` (Kim & Mnih 2018): ELBO + gamma x a discriminator's TC estimate."""

    gamma: float = option(10.0, doc="weight of the discriminator's total-correlation estimate", min=0)
    hidden: list[int] = option(default_factory=lambda: [1000] * 6, doc="hidden widths of the discriminator", min=1)
    disc_lr: float = option(1e-4, doc="the discriminator's Adam learning rate", gt=0)
    disc_betas: list[float] = option(default_factory=lambda: [0.5, 0.9], doc="the discriminator's Adam betas",
                                     min=0, lt=1, length=2)


@dataclass
class M2ObjectiveOptions:
    """``m2``: M2's semi-supervised bound (Kingma et al. 2014, Eq. 9)."""

    alpha: float | Literal["auto"] = option("auto", doc="weight of the classifier's loss (auto: 0.1 N)", min=0)
    labelled_batch: int = option(100, doc="labelled examples joining each step", min=1)
    generative: bool = option(True, doc="train the generative bound (false: the classifier alone, a baseline)")


@dataclass(frozen=True)
class ObjectiveSpec:
    """description; build(model config, options, n_train=, supervision=) -> Objective (n_train: the training set
    size, supervision: the labels of a supervised objective); options: the options dataclass; reads: the shared
    model keys it uses; needs: capabilities the family must have; supervised: trains with labels (data.labels)."""

    description: str
    build: Callable[..., Objective]
    options: type
    reads: tuple[str, ...] = ()
    needs: frozenset[str] = frozenset()
    supervised: bool = False


def _elbo(m: ModelConfig, o: ELBOOptions, **run: Any) -> Objective:
    from vaekit.objectives.elbo import ELBO

    return ELBO(beta=m.beta, warmup_steps=m.warmup_steps, free_bits=m.free_bits, n_samples=m.n_samples,
                kl_balance=o.kl_balance)


def _tc(m: ModelConfig, o: BetaTCVAEOptions, n_train: int | None = None, **run: Any) -> Objective:
    from vaekit.objectives.tc import BetaTCVAE

    size = o.dataset_size if o.dataset_size is not None else n_train
    return BetaTCVAE(beta=m.beta, alpha=o.alpha, gamma=o.gamma, dataset_size=size, estimator=o.estimator)


def _factor(m: ModelConfig, o: FactorVAEOptions, **run: Any) -> Objective:
    from vaekit.objectives.factor_vae import FactorVAE

    return FactorVAE(latent_dim=m.latent_dim, gamma=o.gamma, hidden=o.hidden, disc_lr=o.disc_lr,
                     disc_betas=o.disc_betas, beta=m.beta)


def _m2(m: ModelConfig, o: M2ObjectiveOptions, supervision: Any = None, **run: Any) -> Objective:
    from vaekit.objectives.semi_supervised import SemiSupervisedELBO

    if supervision is None:
        raise ValueError("model.objective=m2 needs labels: set data.labels=N (N labelled training examples, "
                         "balanced over the classes) or data.labels=all")
    return SemiSupervisedELBO(supervision, alpha=None if o.alpha == "auto" else o.alpha,
                              labelled_batch=o.labelled_batch, generative=o.generative)


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "elbo": ObjectiveSpec("negative ELBO with model.beta (β-VAE), KL warm-up, free bits", _elbo, ELBOOptions,
                          reads=("beta", "warmup_steps", "free_bits", "n_samples")),
    "beta-tcvae": ObjectiveSpec("β-TCVAE (Chen et al. 2018): model.beta weighs the minibatch-estimated total "
                                "correlation", _tc, BetaTCVAEOptions, reads=("beta",),
                                needs=frozenset({"single-vector"})),
    "factor-vae": ObjectiveSpec("FactorVAE (Kim & Mnih 2018): ELBO + gamma x a discriminator's TC estimate",
                                _factor, FactorVAEOptions, reads=("beta",), needs=frozenset({"single-vector"})),
    "m2": ObjectiveSpec("M2's semi-supervised bound (Kingma et al. 2014, Eq. 9): labelled bound + class-summed "
                        "unlabelled bound + alpha x the classifier's loss (alpha: auto = 0.1 N); needs data.labels",
                        _m2, M2ObjectiveOptions, needs=frozenset({"classifier"}), supervised=True),
}


def objective_names() -> list[str]:
    """The names ``model.objective`` can take."""
    return list(OBJECTIVES)


def objective_options(name: str) -> type:
    """The options dataclass of objective ``name`` (a known name)."""
    return OBJECTIVES[name].options


def make_objective(m: ModelConfig, n_train: int | None = None, supervision: Any = None) -> Objective:
    """The objective of a validated model config (``vaekit.config.validate_model``): ``n_train`` (the training
    set size) fills what comes from the run (beta-tcvae's dataset_size); ``supervision`` holds the labels of a
    supervised objective, which refuses to be built without them."""
    from vaekit.options import parse_options

    spec = OBJECTIVES[m.objective]
    opts = parse_options(spec.options, m.objective_options, "model.objective_options", f"{m.objective} objective")
    return spec.build(m, opts, n_train=n_train, supervision=supervision)
