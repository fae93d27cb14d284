"""The M2 model of Kingma, Rezende, Mohamed & Welling 2014, "Semi-Supervised Learning with Deep Generative Models".

Generative model (their Sec. 2.2, Eq. 2): p(y) = Cat(1/K), p(z) = N(0, I), p(x | y, z) from a decoder net.
Inference model (Eq. 4): q(y | x) = Cat(classifier(x)), q(z | x, y) = N(mu(x, y), diag sigma^2(x, y)).
For an unlabelled batch the class is a latent group summed out exactly (``LatentGroup.enumerated``): z and p(x|y,z)
are computed for every class at once, lead (*S, K, B), and ``vaekit.objectives`` weighs them by q(y|x) (Eq. 7).
For a labelled batch (``y=`` given) y is observed: one group z and p(x | y, z) (the conditional VAE when every
label is known). M1+M2 (their Sec. 3.2, "stacked"): with ``m1`` (a trained, frozen VAE) M2 models M1's latent z1
of x instead of x (drawn from q(z1|x) in training, its mean in evaluation); sample and reconstruct decode back
through M1's decoder. ``m1_units`` keeps only some of M1's units, as Kingma's code does with the units whose posterior
mean varies (s.d. > 0.1 over 1,000 digits, learn_yz_x_ss.py; ``vaekit.runs.resolve_m1_units``); decoding through
M1 sets the others to 0, their prior mean (his code drops their decoder weights, the same thing).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, OneHotCategorical

from vaekit.likelihoods.base import Likelihood
from vaekit.models.arrays import array_io
from vaekit.models.contract import (CLASS_CONDITIONAL, CLASSIFIER, DISCRETE, DISCRETE_DATA, GAUSSIAN_PRIOR,
                                    GroupLayout, LatentGroup, LatentLayout, ModelOutput)
from vaekit.models.vae import decoder_precision
from vaekit.nn import MLP
from vaekit.nn.mlp import activation
from vaekit.objectives.latents import sample_latent
from vaekit.posteriors.gaussian import GaussianPosterior
from vaekit.priors import StandardNormal
from vaekit.utils import full_precision

__all__ = ["M2"]


class M2(nn.Module):
    """M2 for data of shape ``data_shape`` with ``n_classes`` classes and a ``latent_dim``-dimensional style z.

    hidden: widths of the classifier q(y|x), of the encoder q(z|x,y) (its first layer takes x and y as two
    summed linear maps, so the K classes share the x part) and, reversed, of the decoder p(x|y,z).
    likelihood: p(x|y,z) over the modelled features (x itself, or M1's posterior means when ``m1`` is given).
    m1_units: indices of the M1 units modelled (default: all of them).
    """

    def __init__(self, data_shape: tuple[int, ...], likelihood: Likelihood, latent_dim: int, n_classes: int,
                 hidden: list[int], act: str = "relu", m1: nn.Module | None = None,
                 m1_units: Sequence[int] | None = None) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"model.n_classes must be at least 2, got {n_classes}")
        if not hidden:
            raise ValueError("the m2 family needs model.hidden with at least one width")
        self.data_shape = tuple(int(s) for s in data_shape)
        self.latent_dim, self.n_classes = int(latent_dim), int(n_classes)
        self.m1 = m1
        if m1 is not None:
            m1.requires_grad_(False)
        if m1_units is not None and m1 is None:
            raise ValueError("m1_units picks units of an M1 model; pass m1 too")
        units = torch.as_tensor(list(m1_units) if m1_units is not None else [], dtype=torch.long)
        self.register_buffer("m1_units", units if m1_units is not None else None, persistent=False)
        feat_shape = likelihood.data_shape
        n_feat = 1
        for s in feat_shape:
            n_feat *= s
        self.likelihood = likelihood
        self.classifier = MLP(feat_shape, hidden, n_classes, act=act)  # q(y|x) logits
        self.enc_x = MLP(feat_shape, [], hidden[0])  # first layer of q(z|x,y): the x part ...
        self.enc_y = nn.Linear(n_classes, hidden[0], bias=False)  # ... plus the y part
        rest: list[nn.Module] = [activation(act)]
        for a, b in zip(hidden[:-1], hidden[1:]):
            rest += [nn.Linear(a, b), activation(act)]
        self.enc_rest = nn.Sequential(*rest)
        self.posterior = GaussianPosterior(hidden[-1], latent_dim)
        self.decoder = MLP(latent_dim + n_classes, hidden[::-1], likelihood.params_per_channel * n_feat, act=act)
        self.prior = StandardNormal(latent_dim)
        self.register_buffer("log_py", torch.full((n_classes,), -float(torch.log(torch.tensor(float(n_classes))))),
                             persistent=False)

    def train(self, mode: bool = True) -> "M2":
        super().train(mode)
        if self.m1 is not None:
            self.m1.eval()  # the frozen M1 always gives its posterior means
        return self

    # -- the contract ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, n_samples: int | None = 1, *, y: torch.Tensor | None = None,
                posterior: Distribution | None = None, decoder_dtype: torch.dtype | None = None) -> ModelOutput:
        """Unlabelled (y None): groups z (lead (*S, K, B)) and y (enumerated); labelled: group z given y (B,).
        ``extras["y_logits"]``: (B, K) the logits of q(y|x)."""
        if posterior is not None:
            raise ValueError("the m2 family does not take a replacement posterior (per-point refinement)")
        f = self.features(x)  # (B, F)
        logits = full_precision(self.classifier(f))  # (B, K)
        hx = self.enc_x(f)  # (B, H)
        sd = 0 if n_samples is None else 1
        if y is None:
            eye = torch.eye(self.n_classes, dtype=hx.dtype, device=hx.device)  # (K, K)
            h = hx.unsqueeze(0) + self.enc_y(eye).unsqueeze(1)  # (K, B, H)
            g = sample_latent("z", self.posterior(self.enc_rest(h)), self.prior(), n_samples)  # z (*S, K, B, D)
            y_all = eye.unsqueeze(1).expand(-1, f.shape[0], -1)  # (K, B, K) every class for every example
            gy = LatentGroup("y", OneHotCategorical(logits=logits), self.prior_y(), y_all, enumerated=True)
            return ModelOutput([g, gy], self.decoded(g.z, y_all, decoder_dtype), sd, {"y_logits": logits},
                               target=None if self.m1 is None else f)
        y1 = self._one_hot(y, f)  # (B, K)
        g = sample_latent("z", self.posterior(self.enc_rest(hx + self.enc_y(y1))), self.prior(), n_samples)
        return ModelOutput([g], self.decoded(g.z, y1, decoder_dtype), sd, {"y_logits": logits},
                           target=None if self.m1 is None else f)

    def check_input(self, x: torch.Tensor) -> None:
        """ValueError on data that does not fit (shape, NaN/inf, likelihood support)."""
        if self.m1 is not None:
            self.m1.check_input(x)
        else:
            self.likelihood.check_batch(x)

    def extra_stats(self) -> dict[str, float]:
        return self.likelihood.stats()

    # -- building blocks ---------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What M2 models: x itself, or for M1+M2 M1's latent z1 (B, D1): a draw from q(z1 | x) in training (as
        in the paper; the posterior means of M1's inactive units are constant, a degenerate density for p(z1|y,z2)
        to chase) and the posterior mean E_q[z1 | x] in evaluation."""
        if self.m1 is None:
            return x
        with torch.no_grad():
            z1 = self.m1.posteriors(x)["z"].rsample() if self.training else self.m1.embed(x)  # (B, D1)
        return z1 if self.m1_units is None else z1.index_select(-1, self.m1_units)  # (B, F)

    def prior_y(self) -> OneHotCategorical:
        """p(y): uniform over the K classes."""
        return OneHotCategorical(logits=self.log_py)

    def _one_hot(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(y, device=like.device)
        if y.dtype not in (torch.int64, torch.int32) or y.dim() != 1 or y.shape[0] != like.shape[0]:
            raise ValueError(f"labels must be integers of shape ({like.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        if bool(((y < 0) | (y >= self.n_classes)).any()):
            raise ValueError(f"labels must be class ids in 0..{self.n_classes - 1}")
        return F.one_hot(y.long(), self.n_classes).to(like.dtype)

    def decoded(self, z: torch.Tensor, y1: torch.Tensor, decoder_dtype: torch.dtype | None = None) -> Distribution:
        """p(x|y,z) for z (*lead, D) and one-hot y broadcasting to (*lead, K): the likelihood's lazy Distribution."""
        y1 = y1.expand(*z.shape[:-1], self.n_classes)
        with decoder_precision(z, decoder_dtype):
            h = self.decoder(torch.cat([z, y1.to(z.dtype)], -1))
        if h.dtype != z.dtype:
            h = h.to(z.dtype)
        return self.likelihood.decoded(full_precision(h), z.shape[:-1])

    # -- the uses half of the contract -----------------------------------------------------------------
    @property
    def layout(self) -> LatentLayout:
        """The style "z" and the class "y" (K one-hot values), independent under the prior."""
        return LatentLayout((GroupLayout("z", (self.latent_dim,)),
                             GroupLayout("y", (self.n_classes,), "discrete", role="class")))

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {DISCRETE, CLASS_CONDITIONAL, CLASSIFIER, GAUSSIAN_PRIOR}
        lik = self.m1.likelihood if self.m1 is not None else self.likelihood
        if lik.discrete:
            caps.add(DISCRETE_DATA)
        return frozenset(caps)

    def group_prior(self, name: str, z: Mapping[str, torch.Tensor]) -> Distribution:
        """p(z) = N(0, I) or p(y) = Cat(1/K)."""
        return self.prior_y() if name == "y" else self.prior()

    def posteriors(self, x: torch.Tensor, given: Mapping[str, torch.Tensor] | None = None
                   ) -> dict[str, Distribution]:
        """{"z": q(z | x, y), "y": q(y|x)} with y the most probable class, or the one-hot ``given["y"]``."""
        f = self.features(x)  # (B, F)
        logits = self.classifier(f)  # (B, K)
        if given is not None and "y" in given:
            y1 = given["y"].to(f.dtype)  # (B, K)
        else:
            y1 = F.one_hot(logits.argmax(-1), self.n_classes).to(f.dtype)
        qz = self.posterior(self.enc_rest(self.enc_x(f) + self.enc_y(y1)))
        return {"z": qz, "y": OneHotCategorical(logits=logits)}

    def decode(self, z: Mapping[str, torch.Tensor]) -> Distribution:
        """p(x | y, z) for {"z": (*lead, D), "y": one-hot (*lead, K)}; for M1+M2, M1's p(x | z1) at the mean of
        the modelled units (the others at 0, their prior mean)."""
        zz, y1 = z["z"], z["y"]
        px = self.likelihood.decoded(self.decoder(torch.cat([zz, y1.to(zz.dtype)], -1)), zz.shape[:-1]).full
        if self.m1 is None:
            return px
        mean = px.mean
        if self.m1_units is not None:  # (B, F) -> (B, D1)
            mean = mean.new_zeros(*mean.shape[:-1], self.m1.latent_dim).index_copy(-1, self.m1_units, mean)
        return self.m1.decode(mean)

    # -- uses ----------------------------------------------------------------------------------------------
    @array_io
    @torch.no_grad()
    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K) logits of q(y|x)."""
        return self.classifier(self.features(x))

    @array_io
    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) argmax_y q(y|x)."""
        return self.class_logits(x).argmax(-1)

    @array_io
    @torch.no_grad()
    def style(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) E_q[z | x, y] at the given labels (default: the classifier's)."""
        f = self.features(x)
        y = self.classifier(f).argmax(-1) if y is None else y
        return self.posterior(self.enc_rest(self.enc_x(f) + self.enc_y(self._one_hot(y, f)))).mean

    @array_io
    @torch.no_grad()
    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, *data_shape) the mean of p(x|y,z) (decoded through M1 for M1+M2)."""
        return self.decode({"z": z, "y": self._one_hot(y, z)}).mean

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, y: torch.Tensor | None = None) -> torch.Tensor:
        """n draws from p(x|y,z) means with z ~ N(0, T^2 I) and y = 0, 1, ..., K-1, 0, ... (or the given labels)."""
        p = self.prior()
        z = p.loc + temperature * p.scale * torch.randn(n, self.latent_dim, device=p.loc.device)
        y = torch.arange(n, device=z.device) % self.n_classes if y is None else y
        return self.generate(z, y)

    @array_io
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|y,z) at the predicted class and z = E_q[z | x, y]."""
        y = self.predict(x)
        return self.generate(self.style(x, y), y)

    @array_io
    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The style E_q[z | x, argmax q(y|x)] (B, D)."""
        return self.style(x)
