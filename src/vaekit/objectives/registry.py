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
           "ELBOOptions", "BetaTCVAEOptions", "FactorVAEOptions", "M2ObjectiveOptions", "IWAEOptions",
           "MIWAEOptions", "CIWAEOptions", "InfoVAEOptions", "WAEOptions", "VQOptions"]


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


def _dreg_check(opts: object, m: ModelConfig, key: str) -> None:
    """DReG's encoder gradient (and PIWAE's) is taken at one latent vector's samples: a family without the
    capability 'single-vector' is refused before anything is built."""
    from vaekit.models.registry import FAMILIES
    from vaekit.options import ConfigError

    if getattr(opts, "dreg", False) and "single-vector" not in FAMILIES[m.family].capabilities:
        takers = "/".join(n for n, f in FAMILIES.items() if "single-vector" in f.capabilities)
        raise ConfigError(f"{key}.dreg=true needs a single-vector model (model.family={takers}), not "
                          f"model.family={m.family}; set {key}.dreg=false or change the family")


@dataclass
class IWAEOptions:
    """``iwae`` (Burda et al. 2016): the importance-weighted bound IWAE_k."""

    k: int = option(5, doc="importance samples per example in the bound", min=1)
    dreg: bool = option(False, doc="the encoder's doubly reparameterised gradient (Tucker et al. 2019)")

    def check(self, m: ModelConfig, key: str) -> None:
        _dreg_check(self, m, key)


@dataclass
class MIWAEOptions:
    """``miwae`` / ``piwae`` (Rainforth et al. 2018): M groups of K samples."""

    m: int = option(8, doc="groups of samples (M: gradient estimates averaged)", min=1)
    k: int = option(8, doc="importance samples in each group (K)", min=1)
    dreg: bool = option(False, doc="the encoder's doubly reparameterised gradient (Tucker et al. 2019)")

    def check(self, m: ModelConfig, key: str) -> None:
        _dreg_check(self, m, key)


@dataclass
class CIWAEOptions:
    """``ciwae`` (Rainforth et al. 2018): beta ELBO + (1 - beta) IWAE_k on the same k samples."""

    k: int = option(8, doc="importance samples per example", min=1)
    beta: float = option(0.5, doc="weight of the ELBO (1: the ELBO, 0: IWAE_k)", min=0, max=1)


@dataclass
class InfoVAEOptions:
    """``info-vae-mmd`` (Zhao et al. 2019): (1 - alpha) KL + (alpha + lambda - 1) MMD^2(q(z), p(z))."""

    alpha: float = option(0.0, doc="InfoVAE's alpha (0: the full KL kept, 1: no KL)", max=1)
    lam: float = option(1000.0, doc="InfoVAE's lambda (alpha + lambda - 1 weighs the MMD; >= 1 - alpha)", min=0)
    kernel: Literal["rbf", "imq"] = option("rbf", doc="MMD kernel: RBF or inverse multiquadratic")
    scale: float = option(1.0, doc="kernel bandwidth: RBF's s^2, IMQ's C / (2 D)", gt=0)
    scales: list[float] = option(default_factory=lambda: [1.0], doc="factors of the bandwidth, kernels summed",
                                 gt=0)
    unbiased: bool = option(False, doc="the U-statistic (true) or the V-statistic of MMD^2")

    def check(self, m: ModelConfig, key: str) -> None:
        from vaekit.options import ConfigError

        if self.alpha + self.lam - 1 < 0:
            raise ConfigError(f"{key}: alpha + lam - 1 weighs the MMD and must be >= 0, got "
                              f"{self.alpha + self.lam - 1:g}; raise {key}.lam")


@dataclass
class WAEOptions:
    """``wae-mmd`` (Tolstikhin et al. 2018): reconstruction cost + lambda MMD^2(q(z), p(z))."""

    lam: float = option(10.0, doc="weight of the MMD (the paper's lambda)", min=0)
    kernel: Literal["rbf", "imq"] = option("imq", doc="MMD kernel: RBF or inverse multiquadratic")
    scale: float = option(1.0, doc="kernel bandwidth: RBF's s^2, IMQ's C / (2 D) (the prior's variance)", gt=0)
    scales: list[float] = option(default_factory=lambda: [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0],
                                 doc="factors of the bandwidth, kernels summed", gt=0)
    unbiased: bool = option(True, doc="the U-statistic (true) or the V-statistic of MMD^2")
@dataclass
class VQOptions:
    """``vq``: the VQ-VAE loss (van den Oord et al. 2017, Eq. 3)."""

    commitment: float = option(0.25, doc="beta of the commitment term ||z_e - sg(e)||^2 (the encoder's side)", min=0)
    codebook_weight: float = option(1.0, doc="weight of the codebook term ||sg(z_e) - e||^2 (codebook_update="
                                             "gradient)", min=0)


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


def _iwae(m: ModelConfig, o: IWAEOptions, **run: Any) -> Objective:
    from vaekit.objectives.iw_bounds import MultiSampleBound

    return MultiSampleBound(k=o.k, dreg=o.dreg, name="iwae")


def _miwae(m: ModelConfig, o: MIWAEOptions, **run: Any) -> Objective:
    from vaekit.objectives.iw_bounds import MultiSampleBound

    return MultiSampleBound(k=o.k, m=o.m, dreg=o.dreg, name="miwae")


def _piwae(m: ModelConfig, o: MIWAEOptions, **run: Any) -> Objective:
    from vaekit.objectives.iw_bounds import MultiSampleBound

    return MultiSampleBound(k=o.k, m=o.m, piwae=True, dreg=o.dreg, name="piwae")


def _ciwae(m: ModelConfig, o: CIWAEOptions, **run: Any) -> Objective:
    from vaekit.objectives.iw_bounds import MultiSampleBound

    return MultiSampleBound(k=o.k, beta=o.beta, name="ciwae")


def _info(m: ModelConfig, o: InfoVAEOptions, **run: Any) -> Objective:
    from vaekit.objectives.mmd import MMDAutoencoder

    return MMDAutoencoder(1 - o.alpha, o.alpha + o.lam - 1, o.kernel, o.scale, o.scales, o.unbiased,
                          name="info-vae-mmd")


def _wae(m: ModelConfig, o: WAEOptions, **run: Any) -> Objective:
    from vaekit.objectives.mmd import MMDAutoencoder

    return MMDAutoencoder(0.0, o.lam, o.kernel, o.scale, o.scales, o.unbiased, name="wae-mmd")
def _vq(m: ModelConfig, o: VQOptions, **run: Any) -> Objective:
    from vaekit.objectives.vq import VQObjective

    return VQObjective(commitment=o.commitment, codebook_weight=o.codebook_weight)


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
    "iwae": ObjectiveSpec("IWAE_k (Burda et al. 2016); dreg: the encoder's doubly reparameterised gradient "
                          "(Tucker et al. 2019, single-vector models)", _iwae, IWAEOptions),
    "miwae": ObjectiveSpec("MIWAE(M, K) (Rainforth et al. 2018): the mean of M IWAE_K bounds", _miwae, MIWAEOptions),
    "piwae": ObjectiveSpec("PIWAE(M, K) (Rainforth et al. 2018): the decoder trains on IWAE_MK, the encoder on "
                           "MIWAE(M, K)", _piwae, MIWAEOptions, needs=frozenset({"single-vector"})),
    "ciwae": ObjectiveSpec("CIWAE (Rainforth et al. 2018): beta ELBO + (1 - beta) IWAE_k", _ciwae, CIWAEOptions),
    "info-vae-mmd": ObjectiveSpec("InfoVAE (Zhao et al. 2019): (1 - alpha) KL + (alpha + lambda - 1) MMD between "
                                  "q(z) and p(z)", _info, InfoVAEOptions, needs=frozenset({"single-vector"})),
    "wae-mmd": ObjectiveSpec("WAE-MMD (Tolstikhin et al. 2018): reconstruction cost + lambda MMD between q(z) and "
                             "p(z)", _wae, WAEOptions, needs=frozenset({"single-vector"})),
    "vq": ObjectiveSpec("VQ-VAE (van den Oord et al. 2017, Eq. 3): -log p(x|z_q) + commitment x ||z_e - sg(e)||^2 "
                        "+ the codebook term (+ -log p(z_q) of a learned prior)", _vq, VQOptions,
                        needs=frozenset({"quantised"})),
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
