"""The model contract every family speaks (written down in DESIGN.md, "Contracts everything hangs on").

For a batch x a model answers one question: what are your latent groups — for each, q and p as torch
Distributions (p conditioned on the sampled parent group for a hierarchy) and the sample(s) z — and what is
p(x|z)? It does not compute its own bound: ``vaekit.objectives`` turns the answer into per-example terms, and the
trainer, evaluator, figures and apps only ever see this contract and the objective's typed result.

Lead shapes: ``n_samples=None`` draws one sample without a sample axis (lead (B,)); an integer S draws S
samples (lead (S, B)). Each group's z is (*lead, D_g); p(x|z) has batch_shape lead.

A discrete group may be summed out exactly instead of sampled (``enumerated=True``, M2's class y): its z holds
every value, (K, B, K) one-hot rows, and every other group and p(x|z) carry that enumeration axis as their first
batch axis, lead (*S, K, B). The objective weights by q's probabilities (the ELBO) or by p's (log p(x)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Protocol, runtime_checkable

import torch
from torch.distributions import Distribution

__all__ = ["LatentGroup", "ModelOutput", "LatentVariableModel", "GroupLayout", "LatentLayout", "LatentUses",
           "MissingCapability", "require", "CONTINUOUS", "SINGLE_VECTOR", "GAUSSIAN_POSTERIOR", "GAUSSIAN_PRIOR",
           "HIERARCHICAL", "DISCRETE", "CLASS_CONDITIONAL", "CLASSIFIER", "DISCRETE_DATA", "QUANTISED", "CAPABILITIES"]


@dataclass
class LatentGroup:
    """One latent group z_g: its posterior q(z_g | x, parents), its prior p(z_g | parents), and samples.

    z: (*lead, D_g) reparameterised samples (made by ``vaekit.objectives.sample_latent``).
    log_q: (*lead,) log q(z_g) computed alongside the sample when the sampler had it (flows, the
        reparameterised Gaussian); log_q_dims: (*lead, D_g) the same split over dimensions when the posterior
        offers it (IAF), which lets free bits act per dimension with a Monte Carlo KL.
    kl_dims: (B, D_g) the closed-form KL per dimension when a registered fused sampler computed it together
        with z (the Gaussian head against N(0, I) in training); None otherwise.
    enumerated: a discrete group whose values are all in z (see the module docstring); at most one per model.
    """

    name: str
    q: Distribution
    p: Distribution
    z: torch.Tensor
    log_q: torch.Tensor | None = None
    log_q_dims: torch.Tensor | None = None
    kl_dims: torch.Tensor | None = None
    enumerated: bool = False

    @property
    def dim(self) -> int:
        return int(self.z.shape[-1])


@dataclass
class ModelOutput:
    """A model's answer for a batch: its latent groups (bottom layer first) and p(x|z) (batch_shape lead).

    sample_dims: 0 (one sample, lead (B,)) or 1 (lead (S, B)).
    target: what px is a density of when it is not x itself (M1+M2: M1's posterior means of x), else None.
    """

    groups: list[LatentGroup]
    px: Distribution
    sample_dims: int = 0
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    target: torch.Tensor | None = None


@runtime_checkable
class LatentVariableModel(Protocol):
    """What the objective, trainer, evaluator, figures and apps rely on (checked by tests/models/test_contract.py).

    forward(x, n_samples=1, *, posterior=None, decoder_dtype=None) -> ModelOutput: ``posterior`` replaces the
        encoder's q(z|x) of a one-group model (per-point refinement); ``decoder_dtype`` runs the decoder net
        under autocast in that dtype (log-densities stay float32).
    check_input(x): ValueError on data that does not fit the model (shape, NaN/inf, likelihood support).
    extra_stats() -> {name: float}: statistics the model reports itself (a learned sigma), logged by the trainer.
    sample(n, temperature), reconstruct(x), embed(x): the uses (decoder means; posterior means (B, latent_dim)).

    An optional hook for the training step: ``training_penalty() -> scalar tensor or None``, a regulariser of
    the weights (NVAE's spectral regularisation) that the trainer adds to each step's loss and logs as
    ``penalty``; never part of a bound.

    Two optional hooks for data whose examples are made of positions (the time steps of a sequence), used
    where a model has them and otherwise not (``vaekit.evaluation``):
    position_terms(x, out) -> (*lead, P): the negative ELBO of ``out`` (the model's forward pass on x) split
        over positions, -log p(x_p | z) + KL_p in nats, NaN at positions that are not observed; the observed
        positions sum to that sample's -ELBO (per-position anomaly scores).
    observed_units(x) -> (positions (B,), values (B,)): how many positions and data values each example really
        has (padding excluded): ``vaekit evaluate`` reports nats per position and bits/dim over those values
        (default without the hook: no per-position figure, bits/dim over the whole example).
    """

    data_shape: tuple[int, ...]
    latent_dim: int

    def forward(self, x: torch.Tensor, n_samples: int | None = 1, **options) -> ModelOutput: ...

    def check_input(self, x: torch.Tensor) -> None: ...

    def extra_stats(self) -> dict[str, float]: ...

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...


# -- the uses half ---------------------------------------------------------------------------------------------
#
# What everything besides the bound needs from a trained model: the latent layout, the posterior of each group
# (along the mean pass), p(x|z) from given groups, and each group's prior given its parent. Prior sampling at a
# temperature and coordinates in prior units are derived from those (``vaekit.models.uses``). A use asks for a
# capability with ``require`` and never names a family.

#: every group is continuous with values anywhere in R^D (not confined to a sphere), so prior-unit coordinates cover
#: the whole latent and may move freely (sliders, traversals, straight-line interpolation, fitted samplers, MAP in u)
CONTINUOUS = "continuous"
#: one continuous vector z with a fixed prior p(z), whose q(z|x) ``forward(x, posterior=q)`` can replace
SINGLE_VECTOR = "single-vector"
#: q(z|x) of every continuous group is a diagonal Gaussian (mean and s.d. in closed form; log-variances)
GAUSSIAN_POSTERIOR = "gaussian-posterior"
#: every continuous group's prior (given its parent) is a diagonal Gaussian, so prior units u = (z - mu_p) / sigma_p
#: are N(0, I) under the prior: what MAP estimation in u (restoration, inpainting) and the explorer's sampling assume
GAUSSIAN_PRIOR = "gaussian-prior"
#: more than one group, a group's prior conditioned on its parent's value
HIERARCHICAL = "hierarchical"
#: a group of K discrete values
DISCRETE = "discrete"
#: the decoder takes a class (a discrete group with role "class"): analogies, class-conditional samples
CLASS_CONDITIONAL = "class-conditional"
#: q(y|x) over classes, ``class_logits(x) -> (B, K)``: classification, a test error
CLASSIFIER = "classifier"
#: p(x|z) is a distribution over discrete values (a log-probability: bits/dim without dequantisation)
DISCRETE_DATA = "discrete-data"
#: a vector-quantised latent: ``quantiser`` (codebook_size, vectors(), lookup(codes)), ``codes(x) -> (B, H, W)``,
#: and per-example ``commitment`` and ``codebook_loss`` in ``ModelOutput.extras`` (the VQ objective's terms)
QUANTISED = "quantised"

CAPABILITIES = {
    CONTINUOUS: "every latent group is continuous, with values anywhere in R^D (not on a sphere)",
    SINGLE_VECTOR: "one latent vector with a fixed prior whose posterior can be replaced (model.family=vae)",
    GAUSSIAN_POSTERIOR: "diagonal Gaussian posteriors (model.posterior=gaussian)",
    GAUSSIAN_PRIOR: "Gaussian priors, so that prior units are N(0, I) (model.prior=standard)",
    HIERARCHICAL: "a hierarchy of latent groups",
    DISCRETE: "a discrete latent group",
    CLASS_CONDITIONAL: "a decoder that takes a class",
    CLASSIFIER: "a classifier q(y|x)",
    DISCRETE_DATA: "a likelihood over discrete values",
    QUANTISED: "a vector-quantised latent with a codebook (model.family=vqvae)",
}


@dataclass(frozen=True)
class GroupLayout:
    """One latent group as a use sees it.

    name: as in ``ModelOutput.groups``; shape: its event shape, (D,) for a vector or (C, H, W) for a map, (K,)
    one-hot values for a discrete group; kind: "continuous" or "discrete"; parent: the group its prior is
    conditioned on (None: a fixed prior); role: "class" for the discrete group a class-conditional decoder takes.
    """

    name: str
    shape: tuple[int, ...]
    kind: Literal["continuous", "discrete"] = "continuous"
    parent: str | None = None
    role: str = ""

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


@dataclass(frozen=True)
class LatentLayout:
    """The latent groups of a model, bottom (nearest x) first, as ``ModelOutput.groups`` lists them."""

    groups: tuple[GroupLayout, ...]

    def __getitem__(self, name: str) -> GroupLayout:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no latent group {name!r}; the groups are {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    @property
    def continuous(self) -> list[GroupLayout]:
        """The continuous groups, in layout order: their values, flattened and concatenated, are a model's
        latent vector (``embed``) and its prior-unit coordinates."""
        return [g for g in self.groups if g.kind == "continuous"]

    @property
    def continuous_size(self) -> int:
        return sum(g.size for g in self.continuous)

    def top_down(self) -> list[GroupLayout]:
        """The groups with every parent before its children (the order of ancestral sampling)."""
        done: list[GroupLayout] = []
        names: set[str] = set()
        while len(done) < len(self.groups):
            ready = [g for g in self.groups if g.name not in names and (g.parent is None or g.parent in names)]
            if not ready:
                raise ValueError(f"the latent layout has a cycle or an unknown parent: {self.groups}")
            done += ready
            names |= {g.name for g in ready}
        return done

    def class_group(self) -> GroupLayout | None:
        """The discrete group with role "class", if any."""
        return next((g for g in self.groups if g.kind == "discrete" and g.role == "class"), None)


class MissingCapability(ValueError):
    """A use asked a model for a capability its family does not declare."""


def require(model: object, capability: str, what: str) -> None:
    """MissingCapability (one line, naming the capability) unless ``model`` declares ``capability``."""
    caps = getattr(model, "capabilities", frozenset())
    if capability not in caps:
        has = ", ".join(sorted(caps)) or "none"
        raise MissingCapability(f"{what} needs a model with the capability {capability!r} "
                                f"({CAPABILITIES.get(capability, capability)}); this {type(model).__name__} "
                                f"has: {has}")


@runtime_checkable
class LatentUses(Protocol):
    """The uses half of the contract (checked for every family by tests/models/test_contract.py).

    layout: the latent groups (``LatentLayout``). capabilities: what the family offers (the constants above).
    posteriors(x, given=None) -> {group: q}: each group's posterior, batch (B,), along the mean pass (a child's
        q at its parent's posterior mean); ``given`` fixes some groups' values (e.g. the class of an M2).
    decode(z) -> p(x|z): z a mapping {group: (*lead, *shape)} or, for a model whose latent is one vector, that
        tensor; batch_shape lead.
    group_prior(name, z) -> p(z_name | parent): the parent's value read from the mapping z.
    group_from_units(name, u, z) -> z_name (optional): for a group whose prior depends on the group's own earlier
        steps (a latent path (T, D_z) of a sequence model), the path with z_t = mu_p(z_<t) + sigma_p(z_<t) u_t,
        solved step by step; ``vaekit.models.uses`` calls it for ancestral sampling and prior units, and
        ``group_prior(name, z)`` then gives p(z_t | z_<t) at the path z[name], all steps at once.
    embed(x) -> (B, D): the continuous groups' posterior means, flattened in layout order.
    sample(n, temperature), reconstruct(x): decoder means.
    """

    data_shape: tuple[int, ...]

    @property
    def layout(self) -> LatentLayout: ...

    @property
    def capabilities(self) -> frozenset[str]: ...

    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]: ...

    def decode(self, z: Mapping[str, torch.Tensor] | torch.Tensor) -> Distribution: ...

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution: ...

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...
