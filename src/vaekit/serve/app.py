"""The FastAPI application of ``vaekit serve``: a JSON API over an ``Explorer`` and the page that uses it.

Safe by default: request bodies are capped (``MAX_BODY_BYTES``, before they are read whole), every field is
bounded by its schema (``vaekit.serve.schemas``), uploads are validated (``vaekit.serve.images``), bad input is a
4xx with a message, the page and its script are held in memory (no request path reaches the file system), the
server writes nothing, and the Host header is checked against the names the server was started for (a web page
elsewhere cannot reach it through DNS rebinding).
"""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any, Sequence

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from vaekit.serve import schemas as S
from vaekit.serve.explorer import Explorer
from vaekit.serve.images import MAX_SIDE, MAX_UPLOAD_BYTES, UploadError, decode_upload, to_data_url

__all__ = ["create_app", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 4 * 1024 * 1024
_STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "style.css": "text/css; charset=utf-8"}
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"


class BodyLimit:
    """ASGI middleware: 413 for a request whose body is over ``limit`` bytes (by Content-Length, or counted
    while it streams in)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(send, self.limit)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body over {limit // 1024} KiB"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _static(name: str) -> bytes:
    return resources.files("vaekit.serve").joinpath("static", name).read_bytes()


def _images(x: torch.Tensor) -> list[str]:
    return [to_data_url(im) for im in x]


def create_app(explorer: Explorer, allowed_hosts: Sequence[str] | None = ("127.0.0.1", "localhost")) -> FastAPI:
    """The web application for ``explorer``. allowed_hosts: Host header names accepted (None: any)."""
    ex = explorer
    R = S.request_models(ex.latent_dim, len(ex.layer_dims))
    m = ex.latent_map()  # computed once: the test points do not change
    pool = ThreadPoolExecutor(1, thread_name_prefix="vaekit-serve")  # model work in arrival order, off the loop

    async def work(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    pages = {name: (_static(name), media) for name, media in _STATIC.items()}
    app = FastAPI(title="vaekit serve", version="1", summary=f"Explore the latent space of {ex.name}",
                  docs_url=None, redoc_url=None,  # Swagger UI and ReDoc pages load a CDN; /openapi.json stays
                  description="Latent vectors u are in prior units (see vaekit.serve). Images are PNG data URLs.")

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, e: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, e: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(e).splitlines()[0] if str(e) else "bad request"}, status_code=422)

    def page(name: str) -> Response:
        body, media = pages[name]
        return Response(body, media_type=media, headers={"Content-Security-Policy": _CSP,
                                                         "X-Content-Type-Options": "nosniff",
                                                         "Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return page("index.html")

    @app.get("/static/app.js", include_in_schema=False)
    def script() -> Response:
        return page("app.js")

    @app.get("/static/style.css", include_in_schema=False)
    def style() -> Response:
        return page("style.css")

    @app.get("/api/info", response_model=S.Info, summary="The run: shapes, layers, KL per dimension, limits")
    def info() -> S.Info:
        layers = [S.Layer(name=n, start=s.start, dim=s.stop - s.start) for n, s in zip(ex.group_names, ex.layer_slices)]
        return S.Info(name=ex.name, family=ex.family, data_shape=list(ex.data_shape),
                      latent_dim=ex.latent_dim, layers=layers, kl=ex.kl, order=ex.order(),
                      n_points=0 if ex.points_u is None else len(ex.points_u),
                      limits={"batch": S.MAX_BATCH, "steps": S.MAX_STEPS, "upload_bytes": MAX_UPLOAD_BYTES,
                              "image_side": MAX_SIDE, "body_bytes": MAX_BODY_BYTES})

    @app.get("/api/map", response_model=S.MapData, summary="The 2-D map of the test points")
    def latent_map() -> S.MapData:
        if m is None:
            raise HTTPException(404, "this server has no test data (start it where the run's data set is found)")
        return S.MapData(x=m.xy[:, 0].round(4).tolist(), y=m.xy[:, 1].round(4).tolist(), labels=m.labels,
                         mean=m.mean.tolist(), components=m.components.tolist(), xlabel=m.xlabel, ylabel=m.ylabel)

    @app.get("/api/points/{index}", response_model=S.Point, summary="One test point: its image and u")
    def point(index: int) -> S.Point:
        n = 0 if ex.points_u is None else len(ex.points_u)
        if not 0 <= index < n:
            raise HTTPException(404, f"no test point {index} (there are {n})")
        label = None if ex.y is None else int(ex.y.reshape(-1)[index])
        return S.Point(index=index, label=label, u=ex.points_u[index].tolist(), image=to_data_url(ex.x[index].cpu()))

    @app.post("/api/decode", response_model=S.Images, summary="Decode latent vectors u to images")
    async def decode(req: R.DecodeRequest) -> S.Images:
        return await work(lambda: S.Images(images=_images(ex.decode(req.u))))

    def _encode(image: str) -> S.Encoded:
        x = decode_upload(image, ex.data_shape, ex.binarize)
        ex.model.check_input(x)
        mean, std = ex.encode(x)
        return S.Encoded(mean=mean[0].tolist(), std=std[0].tolist(), reconstruction=to_data_url(ex.decode(mean)[0]),
                         input=to_data_url(x[0]))

    @app.post("/api/encode", response_model=S.Encoded, summary="q(z|x) of an image (mean and std in prior units)")
    async def encode(req: S.EncodeRequest) -> S.Encoded:
        return await work(_encode, req.image)

    def _latents(u: torch.Tensor) -> S.Latents:
        return S.Latents(u=u.tolist(), images=_images(ex.decode(u)))

    @app.post("/api/interpolate", response_model=S.Latents, summary="Linear or spherical interpolation")
    async def interpolate(req: R.InterpolateRequest) -> S.Latents:
        return await work(lambda: _latents(ex.interpolate(req.ua, req.ub, req.steps, req.method)))

    @app.post("/api/sample", response_model=S.Latents, summary="Samples at a temperature")
    async def sample(req: S.SampleRequest) -> S.Latents:
        return await work(lambda: _latents(ex.sample(req.n, req.temperature, req.seed)))

    @app.post("/api/resample", response_model=S.Latents, summary="Draw one layer's noise anew, keep the others")
    async def resample(req: R.ResampleRequest) -> S.Latents:
        return await work(lambda: _latents(ex.resample(req.u, req.layer, req.temperature, req.seed)))

    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app

