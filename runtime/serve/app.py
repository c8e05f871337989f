"""The routes under /v1/ and the app that holds them: one VAE, one Batcher, the metrics, the settings.

Each model route reads its body (bounded in bytes and in time), parses and checks it (in a worker thread unless it
is small: the event loop never spends more than tens of microseconds on one body or answer), hands the checked
array to the batcher and waits for the answer, the request's
timeout or the client's disconnect, whichever comes first, then renders the result as the Accept header asks.
Bad input of any kind is a 4xx of one line ({"error": "..."}), never a 500.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import secrets
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ... import __version__
from .. import inputs, score
from .. import threshold as thresholds
from ..errors import RuntimeInputError
from . import codecs, openapi
from .batcher import Batcher, Job, QueueFull
from .codecs import JSON, NPY, PNG, HTTPError
from .guard import Guard
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("vae_serve")
# Bodies and answers this small are parsed and rendered on the event loop (tens of microseconds); larger ones in a
# worker thread, which costs a thread hop (docs/serving.md measures both).
INLINE_BODY = 16 * 1024
INLINE_VALUES = 4096
IMAGE_OUT = (JSON, NPY, PNG)
ARRAY_OUT = (JSON, NPY)
SCORE_OPTIONS = ("k", "seed", "bits_per_dim")
FLAGS = {"true": True, "1": True, "false": False, "0": False}  # bits_per_dim in a query


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


@dataclass(frozen=True)
class Threshold:
    """A vae-score threshold the server flags scores against, and the k and unit its scores were computed with."""
    value: float
    k: int
    bits_per_dim: bool


class Service:
    """What the routes share: the loaded VAE, its batcher, the metrics, the settings, the threshold, whether it is
    draining."""

    def __init__(self, vae, settings: Settings):
        self.vae, self.settings = vae, settings
        self.metrics = Metrics()
        self.batcher = Batcher(vae, settings.max_batch, settings.max_wait_ms / 1e3, settings.max_queue, self.metrics)
        self.token = _read_token(settings.token_file) if settings.token_file else None
        self.threshold = _read_threshold(settings.threshold, vae) if settings.threshold else None
        self.draining = False

    def drain(self) -> None:
        """From now on new requests get 503 and /v1/ready says so; those accepted finish."""
        if not self.draining:
            log.info("draining: new requests get 503, those in flight finish")
        self.draining = True


def _read_token(path: str) -> bytes:
    token = Path(path).read_bytes().strip()
    if not token or b"\n" in token or len(token) < 16:
        raise RuntimeInputError(f"{path} must hold one token of at least 16 characters on one line")
    return token


def _read_threshold(path: str, vae) -> Threshold:
    """The threshold in path, refused in one line where vae-score would refuse it for this model, precision or pixel
    rule; k and the unit are matched per request."""
    if not vae.can_score:
        raise score.missing(vae.folder)
    saved = thresholds.check(thresholds.read(Path(path)), Path(path),
                             {"precision": vae.precision, "pixel_rule": vae.pixel_rule},
                             thresholds.model_files(vae), matched=("precision", "pixel_rule"))
    k, unit, units = saved.get("k"), saved.get("units"), (thresholds.units(False), thresholds.units(True))
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or unit not in units:
        raise RuntimeInputError(f"--threshold {path} records no valid k and units; calibrate again with vae-score")
    return Threshold(saved["threshold"], k, unit == units[1])


# -- reading a request -----------------------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPError(413, f"the body is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _digits(text: str) -> bool:
    """Plain ASCII digits, few enough for int() (which refuses '²', an isdigit(), and 4,301 digits or more)."""
    return text.isascii() and text.isdigit() and len(text) <= 20


def _nrow(request: Request) -> int:
    text = request.query_params.get("nrow", "8")
    if not _digits(text) or not 1 <= int(text) <= 1024:
        raise HTTPError(422, f"nrow must be an integer from 1 to 1024, got {text[:20]!r}")
    return int(text)


def _fields(body: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise HTTPError(422, f"unknown field {unknown[0]!r}; this route takes {', '.join(allowed)}")


def _rows(a: np.ndarray, limit: int, what: str) -> None:
    if a.ndim >= 1 and a.shape[0] > limit:
        raise HTTPError(413, f"{a.shape[0]} {what} in one request; at most {limit} are accepted")


def parse_sample(body: bytes, content_type: str, settings: Settings) -> tuple:
    if content_type not in (JSON, "") and body.strip():
        raise HTTPError(415, f"sample takes a JSON body, not {content_type!r}")
    fields = codecs.read_json(body)
    _fields(fields, ("n", "seed", "temperature"))
    n = inputs.check_count(fields.get("n", 1), "n")
    if n > settings.max_n:
        raise HTTPError(422, f"n must be at most {settings.max_n}, got {n}")
    seed = inputs.check_seed(fields.get("seed"))
    temperature = inputs.check_temperature(fields.get("temperature", 1.0))
    return n, secrets.randbelow(inputs.SEED_LIMIT) if seed is None else seed, temperature


def read_array(body: bytes, content_type: str, field: str, settings: Settings, accepted: tuple[str, ...],
               options: tuple[str, ...] = ()) -> tuple[np.ndarray, dict]:
    """The array of an .npy body, or of a JSON body's field (nested lists), at most max_n rows; and the JSON
    body's options ({} for an .npy body)."""
    fields: dict = {}
    if content_type == NPY:
        a = codecs.read_npy(body, f"the {field}")
    elif content_type == JSON:
        fields = codecs.read_json(body)
        _fields(fields, (field, *options))
        a = codecs.json_array(fields.pop(field, None), field)
    else:
        raise HTTPError(415, f"this route takes {', '.join(accepted)}, not {content_type or 'no content type'!r}")
    _rows(a, settings.max_n, field)
    return a, fields


def parse_latents(body: bytes, content_type: str, vae, settings: Settings) -> np.ndarray:
    z, _ = read_array(body, content_type, "latents", settings, (JSON, NPY))
    return inputs.finite_latents(inputs.latents(z, vae.latent_dim))


def parse_images(body: bytes, content_type: str, vae, settings: Settings,
                 options: tuple[str, ...] = ()) -> tuple[np.ndarray, dict]:
    """The checked pixels of a JSON, .npy or image body, float32 (N, C, H, W); and the JSON body's options."""
    fields: dict = {}
    if content_type in codecs.IMAGE_TYPES:
        x = codecs.read_image(body, vae.input_shape, settings.max_pixels, vae.background)
    else:
        x, fields = read_array(body, content_type, "images", settings, (JSON, NPY, *codecs.IMAGE_TYPES), options)
    x, _ = inputs.images(x, vae.input_shape)
    return inputs.pixels(x, vae.input_shape), fields


def parse_score(body: bytes, content_type: str, service: "Service", query) -> tuple:
    """(images, k, seed, bits_per_dim): the images as encode takes them; the options from the query string (any
    body) or the JSON body's fields, not both. Without a seed the server draws one; with a threshold, k and the
    unit default to its own, and others are refused (its flags would mean nothing)."""
    x, fields = parse_images(body, content_type, service.vae, service.settings, SCORE_OPTIONS)
    twice = sorted(set(fields) & set(query))
    if twice:
        raise HTTPError(422, f"{twice[0]} is given twice, in the query and in the body; give it once")
    t = service.threshold
    k = inputs.check_count(fields["k"] if "k" in fields else _query_count(query, "k", t.k if t else 1), "k")
    seed = inputs.check_seed(fields["seed"] if "seed" in fields else _query_count(query, "seed", None))
    bits = fields["bits_per_dim"] if "bits_per_dim" in fields else _query_flag(query, "bits_per_dim",
                                                                               t.bits_per_dim if t else False)
    if not isinstance(bits, bool):
        raise HTTPError(422, f"bits_per_dim must be true or false, got {bits!r}")
    limit = service.settings.max_score_samples
    if len(x) * k > limit:
        raise HTTPError(422, f"k x images must be at most {limit} in one request (--max-score-samples), got "
                             f"{k} x {len(x)}")
    if t is not None and (k, bits) != (t.k, t.bits_per_dim):
        raise HTTPError(422, f"this server flags scores against a threshold made with k {t.k} in "
                             f"{thresholds.units(t.bits_per_dim)}; ask with those (or leave k and bits_per_dim out)")
    return x, k, secrets.randbelow(inputs.SEED_LIMIT) if seed is None else seed, bits


def _query_count(query, name: str, default):
    text = query.get(name)
    if text is None:
        return default
    if not _digits(text):
        raise HTTPError(422, f"{name} must be an integer from 0 to 2^53 - 1, got {text[:20]!r}")
    return int(text)


def _query_flag(query, name: str, default: bool) -> bool:
    text = query.get(name)
    if text is None:
        return default
    if text.lower() not in FLAGS:
        raise HTTPError(422, f"{name} must be true or false, got {text[:20]!r}")
    return FLAGS[text.lower()]


# -- answering -------------------------------------------------------------------------------------------------
def render_images(images: np.ndarray, media: str, nrow: int, extra: dict) -> Response:
    if media == NPY:
        return Response(codecs.npy_bytes(images), media_type=NPY)
    if media == PNG:
        return Response(codecs.png_bytes(images, nrow), media_type=PNG)
    return JSONResponse({**extra, "shape": list(images.shape), "images": images.tolist()})


def render_latents(mu: np.ndarray, logvar: np.ndarray, media: str) -> Response:
    if media == NPY:  # one array: [mu, logvar], (2, N, latent_dim)
        return Response(codecs.npy_bytes(np.stack([mu, logvar])), media_type=NPY)
    return JSONResponse({"shape": list(mu.shape), "mu": mu.tolist(), "logvar": logvar.tolist()})


def render_scores(scores: np.ndarray, media: str, extra: dict, threshold: Threshold | None) -> Response:
    if media == NPY:  # float64 (N,); the flags are the JSON answer's
        return Response(codecs.npy_bytes(scores), media_type=NPY)
    flags = {} if threshold is None else {"threshold": threshold.value, "flags": (scores > threshold.value).tolist()}
    return JSONResponse({"scores": scores.tolist(), **extra, **flags})


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def run_job(service: Service, request: Request, job: Job, deadline: float):
    """Queue the job and wait for its answer, the deadline or the client's leaving, whichever comes first."""
    try:
        future = service.batcher.submit(job)
    except QueueFull:
        raise HTTPError(503, f"the queue is full ({service.settings.max_queue} requests waiting); retry shortly",
                        {"Retry-After": "1"}) from None
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        done, _ = await asyncio.wait({future, gone}, timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if future in done:
        return future.result()
    job.abandoned = True
    future.cancel()
    if gone in done:
        raise ClientGone
    raise HTTPError(503, f"no answer within the request timeout ({service.settings.timeout_s:g} s)",
                    {"Retry-After": "1"})


async def off_loop(heavy: bool, fn, *args):
    return await run_in_threadpool(fn, *args) if heavy else fn(*args)


def model_route(parse, offers: tuple[str, ...]):
    """A POST route: body -> checked array -> the batcher -> a response (parsing and rendering in a thread when
    large)."""
    async def route(request: Request) -> Response:
        service: Service = request.app.state.service
        settings = service.settings
        deadline = time.monotonic() + settings.timeout_s
        try:
            media = codecs.negotiate(request.headers.get("accept"), offers)
            nrow = _nrow(request)
            try:
                body = await asyncio.wait_for(read_body(request, settings.max_body), settings.timeout_s)
            except asyncio.TimeoutError:
                raise HTTPError(408, f"the body did not arrive within {settings.timeout_s:g} s") from None
            content_type = codecs.media_type(request.headers.get("content-type"))
            job = await off_loop(len(body) > INLINE_BODY, parse, body, content_type, service, request.query_params)
            result = await run_job(service, request, job, deadline)
            return await respond(service, job, result, media, nrow)
        except HTTPError as e:
            return JSONResponse({"error": e.message}, e.status, headers=e.headers)
        except RuntimeInputError as e:
            return JSONResponse({"error": str(e)}, 422)
        except (ClientGone, ClientDisconnect):  # answered to no one: counted as 499 in the metrics
            return Response(status_code=499)

    return route


async def respond(service: Service, job: Job, result, media: str, nrow: int) -> Response:
    """The job's result in the negotiated format (rendered in a thread when large); a seed drawn or given goes in
    X-Seed too."""
    if job.kind == "encode":
        mu, logvar = result
        return await off_loop(mu.size > INLINE_VALUES, render_latents, mu, logvar, media)
    if job.kind == "score":
        _, k, seed, bits = job.args
        extra = {"k": k, "seed": seed, "units": thresholds.units(bits), "pixel_rule": service.vae.pixel_rule}
        response = await off_loop(result.size > INLINE_VALUES, render_scores, result, media, extra,
                                  service.threshold)
    else:
        extra = dict(zip(("n", "seed", "temperature"), job.args)) if job.kind == "sample" else {}
        response = await off_loop(result.size > INLINE_VALUES, render_images, result, media, nrow, extra)
    if "seed" in extra:
        response.headers["X-Seed"] = str(extra["seed"])
    return response


def _sample(body, content_type, service, query) -> Job:
    args = parse_sample(body, content_type, service.settings)
    return Job("sample", args[0], args)


def _decode(body, content_type, service, query) -> Job:
    z = parse_latents(body, content_type, service.vae, service.settings)
    return Job("decode", len(z), (z,))


def _encode(body, content_type, service, query) -> Job:
    x, _ = parse_images(body, content_type, service.vae, service.settings)
    return Job("encode", len(x), (x,))


def _score(body, content_type, service, query) -> Job:
    if not service.vae.can_score:
        raise HTTPError(501, str(score.missing(service.vae.folder)))
    args = parse_score(body, content_type, service, query)
    return Job("score", len(args[0]), args)


# -- the GET routes --------------------------------------------------------------------------------------------
async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    service: Service = request.app.state.service
    if service.draining or not service.batcher.alive:
        return JSONResponse({"status": "draining" if service.draining else "stopped"}, 503,
                            headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", "queue_depth": service.batcher.pending})


def info_document(service: Service) -> dict:
    import starlette
    import uvicorn
    from ..sessions import ort

    vae, meta = service.vae, service.vae.meta
    return {
        "vae_edge": __version__,
        "pid": os.getpid(),
        "model": {"folder": str(vae.folder), "bundled": vae.bundled, "precision": vae.precision,
                  "format_version": meta.get("format_version"), "arch": meta["model"].get("arch"),
                  "input_shape": list(vae.input_shape), "latent_dim": vae.latent_dim, "prior": vae.prior,
                  "dataset": meta.get("dataset"), "metrics": meta.get("metrics"), "versions": meta.get("versions")},
        "onnxruntime": {"version": ort.__version__, "providers": vae.providers,
                        "threads": service.settings.threads if service.settings.threads else
                        "onnxruntime's default (one per physical core)"},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "starlette": starlette.__version__, "uvicorn": uvicorn.__version__},
        "batching": {"coalesced": service.batcher.coalesce,
                     "together_against_alone": service.batcher.differences},
        "score": {"route": service.vae.can_score, "pixel_rule": service.vae.pixel_rule,
                  "threshold": None if service.threshold is None else asdict(service.threshold)},
        "settings": service.settings.public(),
    }


async def info(request: Request) -> Response:
    return JSONResponse(info_document(request.app.state.service))


async def metrics(request: Request) -> Response:
    return PlainTextResponse(request.app.state.service.metrics.text(), media_type="text/plain; version=0.0.4")


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi.document(request.app.state.service.settings))


async def docs(request: Request) -> Response:
    return HTMLResponse(openapi.page(openapi.document(request.app.state.service.settings)))


# -- the app ---------------------------------------------------------------------------------------------------
def create_app(vae, settings: Settings) -> Starlette:
    """The ASGI app on a loaded VAE. Its lifespan starts the onnxruntime thread, chains SIGTERM and SIGINT so that
    the server drains before uvicorn stops it, and ends the thread once every connection is done."""
    service = Service(vae, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.batcher.start()
        _chain_signals(service)
        yield
        service.drain()
        await run_in_threadpool(service.batcher.stop)

    routes = [Route("/v1/sample", model_route(_sample, IMAGE_OUT), methods=["POST"]),
              Route("/v1/decode", model_route(_decode, IMAGE_OUT), methods=["POST"]),
              Route("/v1/encode", model_route(_encode, ARRAY_OUT), methods=["POST"]),
              Route("/v1/score", model_route(_score, ARRAY_OUT), methods=["POST"]),
              Route("/v1/health", health), Route("/v1/ready", ready), Route("/v1/info", info),
              Route("/v1/metrics", metrics), Route("/v1/openapi.json", openapi_json), Route("/v1/docs", docs)]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        404: lambda request, exc: JSONResponse({"error": f"no route {request.url.path}"}, 404),
        405: lambda request, exc: JSONResponse({"error": f"{request.method} is not allowed here"}, 405)})
    app.state.service = service
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization", "X-Request-ID"],
                           expose_headers=["X-Request-ID", "X-Seed"])
    app.add_middleware(Guard, service=service)
    return app


def _chain_signals(service: Service) -> None:
    """Mark the service draining on SIGTERM or SIGINT, then let uvicorn's own handler stop the server."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if callable(previous):
            signal.signal(sig, _draining_then(service, previous))


def _draining_then(service: Service, previous):
    def handler(sig, frame):
        service.drain()
        previous(sig, frame)

    return handler


def from_environment() -> Starlette:
    """uvicorn's factory in each worker process (vae-serve --workers N, or uvicorn --factory ... directly)."""
    from .cli import load, logging_setup

    logging_setup()
    settings = Settings.from_environment()
    return create_app(load(settings), settings)
