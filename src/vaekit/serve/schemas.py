"""Request and response bodies of the ``vaekit serve`` API (pydantic; they make its OpenAPI schema).

Every number a request carries is bounded here, so a request that passes validation is cheap to answer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH = 64     # latent vectors per decode, samples per request
MAX_STEPS = 32     # interpolation frames
MAX_DIM = 4096     # latent values per vector (the model's own latent_dim is checked in the handler)
MAX_IMAGE_CHARS = 3 * 1024 * 1024  # base64 characters of one upload

Coord = Annotated[float, Field(ge=-50.0, le=50.0, allow_inf_nan=False)]
Temperature = Annotated[float, Field(gt=0.0, le=5.0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EncodeRequest(_Body):
    """An image as a data URL (data:image/png;base64,...) or bare base64: PNG, JPEG, GIF, BMP or WebP."""

    image: Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_CHARS)]


class SampleRequest(_Body):
    n: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 16
    temperature: Temperature = 1.0
    seed: Seed = 0


def request_models(latent_dim: int, n_layers: int) -> SimpleNamespace:
    """The request bodies that carry latent vectors, with the model's exact sizes in their schema (so the OpenAPI
    schema, and a client generated from it, know them): DecodeRequest, InterpolateRequest, ResampleRequest."""
    if not 1 <= latent_dim <= MAX_DIM:
        raise ValueError(f"vaekit serve handles 1 to {MAX_DIM} latent dimensions, this model has {latent_dim}")
    vector = Annotated[list[Coord], Field(min_length=latent_dim, max_length=latent_dim)]

    class DecodeRequest(_Body):
        """Latent vectors u (prior units) to decode."""

        u: Annotated[list[vector], Field(min_length=1, max_length=MAX_BATCH)]  # type: ignore[valid-type]

    class InterpolateRequest(_Body):
        """From ua to ub in ``steps`` frames, linearly or along the great circle (slerp)."""

        ua: vector  # type: ignore[valid-type]
        ub: vector  # type: ignore[valid-type]
        steps: Annotated[int, Field(ge=2, le=MAX_STEPS)] = 8
        method: Literal["linear", "slerp"] = "linear"

    class ResampleRequest(_Body):
        """u with one layer's noise drawn anew at a temperature (a one-latent VAE has one layer, 0)."""

        u: vector  # type: ignore[valid-type]
        layer: Annotated[int, Field(ge=0, le=n_layers - 1)]
        temperature: Temperature = 1.0
        seed: Seed = 0

    return SimpleNamespace(DecodeRequest=DecodeRequest, InterpolateRequest=InterpolateRequest,
                           ResampleRequest=ResampleRequest)


class Images(BaseModel):
    images: list[str]


class Latents(BaseModel):
    u: list[list[float]]
    images: list[str]


class Encoded(BaseModel):
    mean: list[float]
    std: list[float]
    reconstruction: str
    input: str


class Point(BaseModel):
    index: int
    label: int | None
    u: list[float]
    image: str


class MapData(BaseModel):
    x: list[float]
    y: list[float]
    labels: list[int] | None
    mean: list[float]
    components: list[list[float]]
    xlabel: str
    ylabel: str


class Layer(BaseModel):
    name: str
    start: int
    dim: int


class Info(BaseModel):
    name: str
    family: str
    data_shape: list[int]
    latent_dim: int
    layers: list[Layer]
    kl: list[float] | None
    order: list[int]
    n_points: int
    limits: dict[str, int]
