"""Model families by name: ``model.family`` -> builder with its typed options.

A family's options are a dataclass declared next to its entry (``VAEOptions``, ...); in config files they sit
flat under ``model.`` beside the keys every family shares (``vaekit.config.ModelConfig``). A key of another
family is an error naming the key and its family (``vaekit.config``). A family also declares its capabilities,
which objectives ask for (``vaekit.objectives.registry.ObjectiveSpec.needs``).

A new family is its own module under ``models/`` that speaks the contract, one ``register_family`` call here
(or in its module), and its presets. Read without torch: a family's module loads when a model is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from vaekit.options import ConfigError, option
from vaekit.posteriors.registry import posterior_names, posterior_options
from vaekit.priors.registry import prior_names, prior_options

if TYPE_CHECKING:
    from torch import nn

    from vaekit.config import ModelConfig

__all__ = ["Family", "FAMILIES", "register_family", "build_family", "load_m1", "VAEOptions", "LadderOptions",
           "M2Options", "DMMOptions", "VRNNOptions", "VQVAEOptions", "HVAEOptions", "DiscreteOptions"]


@dataclass(frozen=True)
class Family:
    """name; build(model_config, data_shape) -> model; options: the dataclass of the family's own keys;
    doc: one line; capabilities: what its models offer objectives ("single-vector": one sampled latent vector,
    "classifier": a discrete class group y)."""

    name: str
    build: Callable[[ModelConfig, Sequence[int]], nn.Module]
    options: type
    doc: str
    capabilities: frozenset[str] = frozenset()
    #: hook run when a run starts, before the model is built: (config, training examples) -> the config to build
    #: and record (e.g. M1+M2's ``m1_units=active`` resolved from the data); None: the config as it is
    prepare: Callable[[Any, Any], Any] | None = None


FAMILIES: dict[str, Family] = {}


def register_family(name: str, options: type, doc: str, capabilities: Sequence[str] = (),
                    prepare: Callable[[Any, Any], Any] | None = None):
    """Decorator registering ``build(m: ModelConfig, data_shape) -> nn.Module`` as family ``name`` (with its
    options dataclass, one line of doc, its capabilities and an optional ``prepare`` hook, see ``Family``)."""

    def deco(build: Callable[[ModelConfig, Sequence[int]], nn.Module]):
        FAMILIES[name] = Family(name, build, options, doc, frozenset(capabilities), prepare)
        return build

    return deco


def build_family(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    """Build the model a validated ModelConfig describes (``vaekit.registry.build_model`` validates first)."""
    try:
        return FAMILIES[m.family].build(m, data_shape)
    except TypeError as e:  # a wrong value type deep inside a module
        raise ConfigError(f"bad model option: {e}") from None


def _kwargs(m: ModelConfig, kind: str) -> dict[str, Any]:
    """The constructor arguments of the model's likelihood, posterior or prior: every option its registry
    declares, the given ones from ``model.<kind>_options`` and the declared defaults for the rest."""
    from vaekit.likelihoods.registry import likelihood_options
    from vaekit.options import parse_options

    name = getattr(m, kind)
    cls = {"likelihood": likelihood_options, "posterior": posterior_options, "prior": prior_options}[kind](name)
    return dataclasses.asdict(parse_options(cls, getattr(m, f"{kind}_options"), f"model.{kind}_options",
                                            f"{name} {kind}"))


# -- the families shipped with vaekit (their modules load when a model is built) --------------------------


@dataclass
class VAEOptions:
    """``model.family=vae``: one latent vector z with a standard normal or learned prior."""

    latent_dim: int = option(10, doc="size of the latent vector z", min=1)
    posterior: str = option("gaussian", doc="the posterior head q(z|x)", choices=posterior_names)
    posterior_options: dict[str, Any] = option(default_factory=dict, doc="options of the posterior (below)",
                                               schema=("posterior", posterior_options))
    prior: str = option("standard", doc="the prior p(z)", choices=prior_names)
    prior_options: dict[str, Any] = option(default_factory=dict, doc="options of the prior (below)",
                                           schema=("prior", prior_options))
    dropout: float = option(0.0, doc="dropout after each hidden layer of the MLP decoder", min=0, lt=1)
    conv_out: Literal["conv3x3", "deconv"] = option(
        "conv3x3", doc="arch=conv: the decoder ends in a 3x3 conv, or in its last transposed conv (deconv)")

    def check(self, m: ModelConfig, key: str) -> None:
        """Rules across keys: the conv decoder's ending and dropout need the matching arch; the VampPrior a Gaussian
        posterior; the vMF posterior and the sphere prior each other."""
        if self.conv_out != "conv3x3" and m.arch != "conv":
            raise ConfigError(f"model.conv_out={self.conv_out} shapes the conv decoder; set model.arch=conv or "
                              f"remove model.conv_out")
        if self.dropout > 0 and m.arch != "mlp":
            raise ConfigError("model.dropout regularises the mlp decoder only; set model.arch=mlp or "
                              "model.dropout=0")
        if self.prior == "vamp" and self.posterior != "gaussian":
            raise ConfigError(f"model.prior=vamp mixes diagonal Gaussian posteriors; set model.posterior=gaussian "
                              f"(got {self.posterior})")
        if self.posterior == "vmf" and self.prior != "sphere":
            raise ConfigError(f"model.posterior=vmf puts z on the sphere S^(D-1); set model.prior=sphere, the uniform "
                              f"prior on it (got {self.prior})")
        if self.prior == "sphere" and self.posterior != "vmf":
            raise ConfigError(f"model.prior=sphere is a prior on the sphere S^(D-1); set model.posterior=vmf, a "
                              f"posterior on it (got {self.posterior})")
        if self.prior == "sphere" and self.latent_dim < 2:
            raise ConfigError(f"model.prior=sphere puts z on the sphere S^(D-1), which needs model.latent_dim >= 2 "
                              f"(got {self.latent_dim})")


@register_family("vae", VAEOptions, "one latent vector, Gaussian or IAF posterior, standard normal or learned prior; "
                 "or a vMF posterior with the uniform prior on a sphere",
                 capabilities=("single-vector",))
def _vae(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.models.build import build_vae

    try:
        return build_vae(data_shape, arch=m.arch, latent_dim=m.latent_dim, hidden=m.hidden, act=m.act,
                         conv_channels=m.conv_channels, likelihood=m.likelihood,
                         likelihood_kwargs=_kwargs(m, "likelihood"), posterior=m.posterior,
                         posterior_kwargs=_kwargs(m, "posterior"), dropout=m.dropout, conv_out=m.conv_out,
                         prior=m.prior, prior_kwargs=_kwargs(m, "prior"))
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclass
class LadderOptions:
    """``model.family=ladder``: a hierarchy of Gaussian layers (Sønderby et al. 2016)."""

    latent_dims: list[int] = option(default_factory=lambda: [64, 32], doc="latent sizes, bottom to top", min=1)
    batch_norm: bool = option(False, doc="batch norm in the deterministic blocks")
    merge: bool = option(True, doc="precision-weighted merge of bottom-up and top-down Gaussians (false: "
                                   "bottom-up only)")


@register_family("ladder", LadderOptions,
                 "Ladder VAE (Sønderby et al. 2016): a hierarchy of Gaussian layers, precision-weighted merge")
def _ladder(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.models.ladder import build_ladder

    try:
        return build_ladder(data_shape, arch=m.arch, latent_dims=m.latent_dims, hidden=m.hidden, act=m.act,
                            conv_channels=m.conv_channels, likelihood=m.likelihood,
                            likelihood_kwargs=_kwargs(m, "likelihood"), batch_norm=m.batch_norm, merge=m.merge)
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclass
class HVAEOptions:
    """``model.family=hvae``: a deep hierarchy of (C, H, W) latent groups (VDVAE, Child 2021; NVAE, Vahdat &
    Kautz 2020). Resolution 0 is the data's, each next one half of it (rounded up); model.act is the blocks'."""

    width: int = option(32, doc="channels of the encoder's and the top-down pass's residual stream", min=1)
    enc_blocks: list[int] = option(default_factory=lambda: [2, 2, 2],
                                   doc="residual blocks of the encoder per resolution, full resolution first", min=0)
    dec_groups: list[int] = option(default_factory=lambda: [2, 2, 2],
                                   doc="latent groups (one top-down block each) per resolution, full resolution "
                                       "first", min=0)
    latent_channels: int = option(4, doc="channels C of every latent group's (C, H, W) map", min=1)
    bottleneck: float = option(0.25, doc="hidden width of a residual block as a fraction of width", gt=0)
    residual_posterior: bool = option(True, doc="q as a residual of the prior, N(mu_p + dmu, (sigma_p dsigma)^2) "
                                                "(NVAE Sec. 3.2); false: q read directly")
    scale_floor: float = option(1e-3, doc="floor added to every softplus-parameterised scale", gt=0)
    spectral_reg: float = option(0.0, doc="lambda of NVAE's spectral regularisation: lambda times the sum of "
                                          "every convolution's largest singular value (power iteration) is added "
                                          "to each training step's loss; 0: off", min=0)

    def check(self, m: ModelConfig, key: str) -> None:
        """One count per resolution in both lists, and at least one latent group."""
        if len(self.enc_blocks) != len(self.dec_groups) or not self.enc_blocks:
            raise ConfigError(f"model.enc_blocks and model.dec_groups need one count per resolution (the same "
                              f"length), got {self.enc_blocks} and {self.dec_groups}")
        if sum(self.dec_groups) < 1:
            raise ConfigError("model.dec_groups needs at least one latent group")


@register_family("hvae", HVAEOptions,
                 "deep hierarchical VAE (VDVAE / NVAE): residual conv encoder, top-down latent maps at several "
                 "resolutions")
def _hvae(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.models.hvae import build_hvae

    try:
        return build_hvae(data_shape, likelihood=m.likelihood, likelihood_kwargs=_kwargs(m, "likelihood"),
                          width=m.width, enc_blocks=m.enc_blocks, dec_groups=m.dec_groups,
                          latent_channels=m.latent_channels, bottleneck=m.bottleneck, act=m.act,
                          residual_posterior=m.residual_posterior, scale_floor=m.scale_floor,
                          spectral_reg=m.spectral_reg)
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclass
class M2Options:
    """``model.family=m2`` (Kingma et al. 2014): classifier q(y|x), style z, decoder p(x|y, z)."""

    latent_dim: int = option(10, doc="size of the style vector z", min=1)
    n_classes: int = option(10, doc="number of classes K of y", min=2)
    m1_run: str | None = option(None, doc="a trained vae run whose posterior means M2 models (M1+M2)", path=True)
    m1_units: list[int] | Literal["active"] | None = option(
        None, doc="with m1_run: M1's units M2 models: all (null), active, or a list of indices", min=0)

    def check(self, m: ModelConfig, key: str) -> None:
        """Rules across keys: MLP nets; m1_units picks distinct units of an m1_run."""
        if m.arch != "mlp":
            raise ConfigError("model.family=m2 is built from MLPs; use model.arch=mlp")
        u = self.m1_units
        if u is not None and not self.m1_run:
            raise ConfigError("model.m1_units picks units of an M1 run (M1+M2); set model.m1_run or remove it")
        if isinstance(u, list) and (not u or len(set(u)) != len(u)):
            raise ConfigError(f"model.m1_units must be distinct unit indices (at least one), got {u!r}")


def _m2_prepare(cfg: Any, train_x: Any, n: int = 1000) -> Any:
    """``cfg`` with ``model.m1_units=active`` spelled out as the indices of the M1 run's active units, so the run
    folder rebuilds the same model; other configs unchanged. Active as in Kingma et al. 2014's M1+M2 code
    (learn_yz_x_ss.py): the s.d. over ``n`` training examples (``subset_index``'s fixed draw) of the posterior
    mean above 0.1, i.e. Burda et al.'s A_u > 0.01 (``vaekit.evaluation.metrics.active_units``)."""
    if cfg.model.m1_units != "active":
        return cfg
    import copy
    import logging

    import torch

    from vaekit.data import subset_index
    from vaekit.evaluation.metrics import active_units

    m1 = load_m1(cfg.model.m1_run, train_x.shape[1:], type(cfg.model))
    au = active_units(m1, train_x[subset_index(train_x.shape[0], n)], threshold=0.01, seed=cfg.seed)
    units = [int(i) for i in torch.nonzero(au.variance > au.threshold).flatten()]
    if not units:
        raise ConfigError(f"model.m1_units=active: the M1 run {cfg.model.m1_run} has no active unit (no posterior "
                          f"mean varies with s.d. > 0.1); train M1 longer or set model.m1_units to indices")
    logging.getLogger("vaekit.run").info("model.m1_units=active: %d of M1's %d units (%s)", len(units),
                                         m1.latent_dim, units)
    cfg = copy.deepcopy(cfg)
    cfg.model.m1_units = units
    return cfg


@register_family("m2", M2Options,
                 "M2 (Kingma et al. 2014): classifier q(y|x), style z, p(x|y,z); semi-supervised, conditional, M1+M2",
                 capabilities=("classifier",), prepare=_m2_prepare)
def _m2(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.likelihoods import build_likelihood
    from vaekit.models.m2 import M2

    m1 = load_m1(m.m1_run, data_shape, type(m)) if m.m1_run else None
    units = m.m1_units
    if units == "active":
        raise ConfigError("model.m1_units=active is resolved from the training data when a run starts "
                          "(the m2 family's prepare hook); give the unit indices to build the model directly")
    if units is not None and m1 is not None and max(units) >= m1.latent_dim:
        raise ConfigError(f"model.m1_units={units} names units beyond the M1 run's {m1.latent_dim} "
                          f"(indices 0..{m1.latent_dim - 1})")
    feat_shape = ((m1.latent_dim if units is None else len(units)),) if m1 is not None else tuple(data_shape)
    try:
        lik = build_likelihood(m.likelihood, feat_shape, **_kwargs(m, "likelihood"))
        return M2(tuple(data_shape), lik, m.latent_dim, m.n_classes, list(m.hidden), act=m.act, m1=m1,
                  m1_units=units)
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclass
class DMMOptions:
    """``model.family=dmm`` (Krishnan et al. 2017): gated transition, MLP emitter, backward-RNN combiner; sequence
    data (T, D + 1) with the step mask last. Defaults: Pyro's DMM example."""

    latent_dim: int = option(100, doc="size of z_t, the latent state at each step", min=1)
    transition_dim: int = option(200, doc="hidden width of the gated transition p(z_t | z_{t-1})", min=1)
    emission_dim: int = option(100, doc="hidden width of the emitter p(x_t | z_t) (two layers)", min=1)
    rnn_dim: int = option(600, doc="state size of the backward RNN over x_{t:T}", min=1)
    rnn_cell: Literal["rnn", "gru"] = option("rnn", doc="the backward RNN: ReLU RNN (as Pyro's) or GRU")
    iaf_steps: int = option(0, doc="inverse autoregressive flow steps on each step's posterior q(z_t | z_{t-1}, "
                            "x_{t:T}) (Kingma et al. 2016; Pyro's --num-iafs); 0: the Gaussian posterior, KL in "
                            "closed form; K > 0: a Monte Carlo KL", min=0)
    iaf_dim: int = option(100, doc="hidden width of each IAF step's MADE (one hidden layer)", min=1)


def _sequence_model(build: Callable[[Any], nn.Module], m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.likelihoods import build_likelihood

    if len(data_shape) != 2 or data_shape[1] < 2:
        raise ConfigError(f"model.family={m.family} models sequences: data of shape (T, D + 1) (steps, features, "
                          f"the step mask last), got {tuple(data_shape)}; use data.name=jsb-chorales, moving-mnist, "
                          f"sines or sequences")
    try:
        return build(build_likelihood(m.likelihood, (int(data_shape[1]) - 1,), **_kwargs(m, "likelihood")))
    except ValueError as e:
        raise ConfigError(str(e)) from None


@register_family("dmm", DMMOptions, "deep Markov model (Krishnan et al. 2017): a latent state per step, "
                 "structured posterior q(z_t | z_{t-1}, x_{t:T}); sequence data")
def _dmm(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.models.dmm import DMM

    return _sequence_model(lambda lik: DMM(data_shape, lik, m.latent_dim, m.transition_dim, m.emission_dim,
                                           m.rnn_dim, m.rnn_cell, act=m.act, iaf_steps=m.iaf_steps,
                                           iaf_dim=m.iaf_dim), m, data_shape)


@dataclass
class VRNNOptions:
    """``model.family=vrnn`` (Chung et al. 2015): a GRU whose steps carry a latent z_t with a learned prior
    p(z_t | h_{t-1}); sequence data (T, D + 1) with the step mask last."""

    latent_dim: int = option(16, doc="size of z_t, the latent at each step", min=1)
    rnn_dim: int = option(128, doc="state size of the GRU", min=1)
    phi_dim: int = option(128, doc="width of the feature nets phi_x, phi_z and of the prior/encoder/decoder MLPs",
                          min=1)
    dropout: float = option(0.0, doc="dropout after the hidden layers of phi_x and of the emission net (training "
                            "only)", min=0, lt=1)


@register_family("vrnn", VRNNOptions, "variational RNN (Chung et al. 2015): a latent per step of a GRU, prior "
                 "p(z_t | h_{t-1}); sequence data")
def _vrnn(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.models.vrnn import VRNN

    return _sequence_model(lambda lik: VRNN(data_shape, lik, m.latent_dim, m.rnn_dim, m.phi_dim, act=m.act,
                                            dropout=m.dropout), m,
                           data_shape)


@dataclass
class SRNNOptions:
    """``model.family=srnn`` (Fraccaro et al. 2016): a state space model p(z_t | z_{t-1}, d_t) on a GRU over the
    observed past, smoothing posterior q(z_t | z_{t-1}, a_t) from a backward GRU; sequence data (T, D + 1) with
    the step mask last. Defaults: the paper's music setting."""

    latent_dim: int = option(100, doc="size of z_t, the latent state at each step", min=1)
    rnn_dim: int = option(300, doc="state size of the forward GRU (d_t) and of the backward GRU (a_t)", min=1)
    phi_dim: int = option(500, doc="width of the input net phi (two layers), the prior and posterior heads and the "
                          "emission net's hidden layer", min=1)
    residual_posterior: bool = option(True, doc="q's mean as the prior's mean plus a learned correction (the "
                                      "paper's Resq)")
    dropout: float = option(0.0, doc="dropout on phi, on d_t where it is read and after the emission net's hidden "
                            "layer (training only)", min=0, lt=1)
    emission_uses_d: bool = option(True, doc="the emission reads d_t beside z_t, p(x_t | z_t, d_t) (the paper); "
                                   "false: p(x_t | z_t), so the latent path carries what the emission needs")


@register_family("srnn", SRNNOptions, "stochastic RNN (Fraccaro et al. 2016): a latent state space model on a "
                 "GRU over the past, smoothing posterior; sequence data")
def _srnn(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.models.srnn import SRNN

    return _sequence_model(lambda lik: SRNN(data_shape, lik, m.latent_dim, m.rnn_dim, m.phi_dim, act=m.act,
                                            residual_posterior=m.residual_posterior, dropout=m.dropout,
                                            emission_uses_d=m.emission_uses_d),
                           m, data_shape)


@dataclass
class DiscreteOptions:
    """``model.family=discrete``: N categorical (or Bernoulli) latents through the Gumbel-softmax relaxation."""

    latent: Literal["categorical", "bernoulli"] = option("categorical", doc="categorical variables of "
                                                         "model.categories values, or Bernoulli bits")
    n_latents: int = option(20, doc="number of discrete latent variables N", min=1)
    categories: int = option(10, doc="values K of each categorical variable (bernoulli: 2)", min=2)
    temperature: float = option(1.0, doc="Gumbel-softmax temperature τ at the start", gt=0)
    min_temperature: float = option(0.5, doc="the temperature the annealing ends at", gt=0)
    anneal_steps: int = option(0, doc="steps over which τ decays exponentially to min_temperature (0: constant)",
                               min=0)
    straight_through: bool = option(False, doc="one-hot values forward, the relaxed sample's gradients backward")

    def check(self, m: ModelConfig, key: str) -> None:
        """MLP nets; Bernoulli latents have two values; the temperature decreases."""
        if m.arch != "mlp":
            raise ConfigError("model.family=discrete is built from MLPs; use model.arch=mlp")
        if self.latent == "bernoulli" and self.categories != 2:
            raise ConfigError(f"model.latent=bernoulli has 2 values; set model.categories=2 (got {self.categories})")
        if self.min_temperature > self.temperature:
            raise ConfigError(f"model.min_temperature ({self.min_temperature}) must not exceed model.temperature "
                              f"({self.temperature})")


@register_family("discrete", DiscreteOptions,
                 "discrete latents (categorical or Bernoulli) through the Gumbel-softmax relaxation (Jang et al. 2017)",
                 capabilities=("discrete",))
def _discrete(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.likelihoods import build_likelihood
    from vaekit.models.discrete import DiscreteVAE

    try:
        lik = build_likelihood(m.likelihood, tuple(data_shape), **_kwargs(m, "likelihood"))
        return DiscreteVAE(tuple(data_shape), lik, m.n_latents, m.categories, list(m.hidden), act=m.act,
                           bernoulli=m.latent == "bernoulli", temperature=m.temperature,
                           min_temperature=m.min_temperature, anneal_steps=m.anneal_steps,
                           straight_through=m.straight_through)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def load_m1(run_dir: str, data_shape: Sequence[int], config_cls: type) -> nn.Module:
    """The trained model of an M1 run folder (its config.yaml's model section, built as ``config_cls``, the
    ModelConfig class, and its best weights), for M1+M2: a family with one latent vector."""
    from pathlib import Path

    import yaml

    from vaekit.training.checkpoint import load_weights

    d = Path(run_dir)
    ckpt = d / "best.safetensors" if (d / "best.safetensors").is_file() else d / "last.safetensors"
    if not (d / "config.yaml").is_file() or not ckpt.is_file():
        raise ConfigError(f"model.m1_run={run_dir!r} is not a trained vaekit run (no config.yaml and checkpoint "
                          f"there); train the M1 VAE first, e.g. `vaekit train --preset mnist-m1 --out {run_dir}`")
    section = (yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8")) or {}).get("model") or {}
    m = config_cls(**section)  # the run's own, checked when it was trained
    if "single-vector" not in FAMILIES[m.family].capabilities:
        takers = ", ".join(f.name for f in FAMILIES.values() if "single-vector" in f.capabilities)
        raise ConfigError(f"model.m1_run={run_dir!r} is a {m.family} run; M1+M2 needs a run with one "
                          f"latent vector (model.family={takers})")
    m1 = build_family(m, data_shape)
    load_weights(m1, ckpt, f"model.m1_run={run_dir!r}: its checkpoint, for data of shape {tuple(data_shape)},")
    return m1.eval()


@dataclass
class VQVAEOptions:
    """``model.family=vqvae`` (van den Oord et al. 2017): a map of discrete codes, trained with model.objective=vq."""

    codebook_size: int = option(512, doc="number of codes K (quantiser=vq)", min=2)
    code_dim: int = option(64, doc="dimension D of a code (quantiser=vq; low, e.g. 8, with cosine codes)", min=1)
    quantiser: Literal["vq", "fsq"] = option("vq", doc="a learned codebook (vq) or finite scalar quantisation "
                                                       "(fsq, Mentzer et al. 2023: no codebook)")
    fsq_levels: list[int] = option(default_factory=lambda: [8, 5, 5, 5], doc="quantiser=fsq: levels per channel "
                                                                            "(K = their product)", min=2)
    codebook_update: Literal["ema", "gradient"] = option("ema", doc="codebook by moving averages (App. A.1) or by "
                                                                    "the gradient of its loss term")
    ema_decay: float = option(0.99, doc="codebook_update=ema: the decay", min=0, lt=1)
    kmeans_init: bool = option(True, doc="the codebook starts at k-means centres of the first batch's encodings")
    restart_after: int = option(0, doc="re-seed codes unused for this many training steps from encoder outputs "
                                       "(0: never)", min=0)
    cosine: bool = option(False, doc="l2-normalised encodings and codes (cosine similarity; Yu et al. 2022)")
    positions: int = option(4, doc="arch=mlp: number of codes per example", min=1)
    levels: int = option(1, doc="1, or 2 for a VQ-VAE-2 (Razavi et al. 2019; arch=conv): a top map of half the "
                                "size, quantised first, conditions the bottom map; each its own quantiser",
                         min=1, max=2)
    code_prior: Literal["uniform", "transformer"] = option("uniform", doc="the prior over code maps: uniform, or a "
                                                                          "causal transformer (second stage)")
    prior_of: str | None = option(None, doc="a finished vqvae run whose frozen model the prior is trained on "
                                            "(its architecture is used)", path=True)
    prior_width: int = option(64, doc="code_prior=transformer: width", min=8)
    prior_layers: int = option(2, doc="code_prior=transformer: blocks", min=1)
    prior_heads: int = option(4, doc="code_prior=transformer: attention heads (dividing the width)", min=1)

    def check(self, m: ModelConfig, key: str) -> None:
        """Rules across keys: the VQ objective; a second stage has a learned prior."""
        if m.objective != "vq":
            raise ConfigError(f"model.family=vqvae trains with its commitment term: set model.objective=vq "
                              f"(got {m.objective})")
        if self.prior_of and self.code_prior == "uniform":
            raise ConfigError("model.prior_of trains a prior over a finished run's codes; set "
                              "model.code_prior=transformer")
        if self.levels == 2 and m.arch != "conv":
            raise ConfigError(f"model.levels=2 (a VQ-VAE-2 hierarchy of code maps) needs model.arch=conv "
                              f"(got {m.arch})")
        if self.prior_width % self.prior_heads:
            raise ConfigError(f"model.prior_width={self.prior_width} must be a multiple of model.prior_heads="
                              f"{self.prior_heads}")


_PRIOR_KEYS = ("code_prior", "prior_of", "prior_width", "prior_layers", "prior_heads")


def _vqvae_prepare(cfg: Any, train_x: Any) -> Any:
    """A second stage (``model.prior_of=RUN``) records the first stage's model section with its own prior keys,
    so its config.yaml says what is built; it must train on the first stage's data. Other configs unchanged."""
    if not cfg.model.prior_of:
        return cfg
    import copy
    from pathlib import Path

    import yaml

    first = _first_stage_config(cfg.model.prior_of, type(cfg.model)).to_dict()  # or a one-line error
    doc = yaml.safe_load((Path(cfg.model.prior_of) / "config.yaml").read_text(encoding="utf-8")) or {}
    for key in ("name", "binarize", "path"):
        theirs = (doc.get("data") or {}).get(key)
        if theirs is not None and theirs != getattr(cfg.data, key, None):
            raise ConfigError(f"model.prior_of={cfg.model.prior_of!r} was trained with data.{key}={theirs}; the "
                              f"prior must see the same data: set data.{key}={theirs}")
    first.update({k: getattr(cfg.model, k) for k in _PRIOR_KEYS})
    cfg = copy.deepcopy(cfg)
    cfg.model = type(cfg.model)(**first)
    return cfg


@register_family("vqvae", VQVAEOptions,
                 "VQ-VAE (van den Oord et al. 2017): discrete code maps, EMA codebook, dead-code restart, FSQ; two "
                 "levels (VQ-VAE-2); a second-stage prior with model.prior_of", capabilities=("quantised",),
                 prepare=_vqvae_prepare)
def _vqvae(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    model = _vqvae_from(m, data_shape)
    if m.prior_of:  # the first stage's weights (the same architecture: the prepare hook recorded it), frozen
        _load_weights_of(model, m.prior_of, data_shape)
    if m.code_prior == "transformer":
        model.set_prior(m.prior_width, m.prior_layers, m.prior_heads)
    if m.prior_of:
        model.freeze()
    return model


def _vqvae_from(m: ModelConfig, data_shape: Sequence[int]) -> nn.Module:
    from vaekit.models.vqvae import build_vqvae

    try:
        return build_vqvae(data_shape, arch=m.arch, hidden=m.hidden, act=m.act, conv_channels=m.conv_channels,
                           likelihood=m.likelihood, likelihood_kwargs=_kwargs(m, "likelihood"),
                           quantiser=m.quantiser, codebook_size=m.codebook_size, code_dim=m.code_dim,
                           fsq_levels=m.fsq_levels, codebook_update=m.codebook_update, ema_decay=m.ema_decay,
                           kmeans_init=m.kmeans_init, restart_after=m.restart_after, cosine=m.cosine,
                           positions=m.positions, levels=m.levels)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _run_files(run_dir: str, key: str, hint: str):
    from pathlib import Path

    d = Path(run_dir)
    ckpt = d / "best.safetensors" if (d / "best.safetensors").is_file() else d / "last.safetensors"
    if not (d / "config.yaml").is_file() or not ckpt.is_file():
        raise ConfigError(f"{key}={run_dir!r} is not a trained vaekit run (no config.yaml and checkpoint there); "
                          f"{hint}")
    return d, ckpt


def _first_stage_config(run_dir: str, config_cls: type) -> ModelConfig:
    import yaml

    d, _ = _run_files(run_dir, "model.prior_of", "train the VQ-VAE first, e.g. `vaekit train --preset mnist-vqvae "
                                                 f"--out {run_dir}`")
    section = (yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8")) or {}).get("model") or {}
    m = config_cls(**section)
    if m.family != "vqvae" or m.prior_of:
        raise ConfigError(f"model.prior_of={run_dir!r} is a {m.family} run{' with a prior of its own' if m.prior_of else ''}; "
                          f"a second-stage prior needs a finished vqvae run")
    return m


def _load_weights_of(model: nn.Module, run_dir: str, data_shape: Sequence[int]) -> None:
    """The best (else last) weights of the run folder ``run_dir`` into ``model``."""
    from vaekit.training.checkpoint import load_weights

    _, ckpt = _run_files(run_dir, "model.prior_of", "train it first")
    load_weights(model, ckpt, f"model.prior_of={run_dir!r}: its checkpoint, for data of shape {tuple(data_shape)},")
