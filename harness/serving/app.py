"""The FastAPI scaffold of the service: it wires the endpoint logic of sessions 14 and 15 into an app.

    from harness.serving.app import ServingSettings, create_app
    app = create_app(ServingSettings("runs/bundles/ml-100k-laptop"))                # the reference's logic
    app = create_app(ServingSettings(path, impl="sessions", batching=True))         # yours, micro-batched

What the scaffold provides and what the sessions write:

==========================  ===================================================================
provided here               routes (``POST /recommend``, ``GET /health``), their OpenAPI
                            documentation, the JSON of every 4xx (:mod:`harness.serving.errors`),
                            a request-body size limit (413, before parsing), a ``Server-Timing``
                            header, and the batched request path (a :class:`Job` per request,
                            queued in session 15's ``MicroBatcher``)
session 14 (``s14``)        ``request_model(limits)`` and ``response_model()`` (the schemas),
                            ``resolve_query``, ``rank_candidates``, ``recommend``, ``lifespan``
                            (loads the bundle once), ``recommend_endpoint`` and ``health``
session 15 (``s15``)        ``collect_batch`` and ``MicroBatcher`` (the queue), ``rank_batch``
                            (one forward pass for many requests)
==========================  ===================================================================

The logic comes from ``load_session(14, settings.impl)`` (and 15), or from ``logic=`` /
``batch_logic=``: any object with those attributes, such as a notebook's own namespace.

**Two request paths.** Unbatched (``batching=False``): the route awaits session 14's
``recommend_endpoint``, which runs ``recommend`` in a worker thread. Batched: the route resolves
the request (a 4xx is raised here, before anything is queued), answers a cold visitor at once
(popularity, no model), and otherwise submits a :class:`Job` to the app's ``MicroBatcher``, whose
batch function runs session 15's ``rank_batch`` over every queued job in one forward pass.

``Server-Timing`` (read by the load tests): ``app`` is the time inside the app, from the request
to the response headers; batched requests add ``queue`` (waiting for their batch), ``model`` (the
batch's forward pass) and ``batch`` (its size, as ``desc``).
"""
import json
import math
import os
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from .bundle import DEFAULT_SERVING, read_manifest
from .errors import NotReady, PayloadTooLarge, ServingError
from .glue import Query, response_body

SETTINGS_ENV = "HARNESS_SERVE_SETTINGS"  # JSON of ServingSettings, for uvicorn's app factory (and its workers)


@dataclass(frozen=True)
class ServingLimits:
    """What one request may ask for: the bounds the request model puts in the schema."""

    max_k: int = DEFAULT_SERVING["max_k"]  # k in 1..max_k
    max_history: int = DEFAULT_SERVING["max_history"]  # at most this many item ids in "history"
    max_body_bytes: int = DEFAULT_SERVING["max_body_bytes"]  # larger request bodies get a 413, unparsed

    @classmethod
    def from_manifest(cls, manifest: dict) -> "ServingLimits":
        serving = {**DEFAULT_SERVING, **manifest.get("serving", {})}
        return cls(int(serving["max_k"]), int(serving["max_history"]), int(serving["max_body_bytes"]))


@dataclass
class ServingSettings:
    """How to serve: which bundle, whose code, batched or not."""

    bundle_path: str
    impl: str = "solutions"  # whose sessions 14/15 serve: "solutions" (reference) or "sessions" (yours)
    batching: bool = False
    max_batch: int = 32  # micro-batching: a batch closes when this many requests wait...
    max_wait_ms: float = 1.0  # ... or this long after its first request arrived
    expect_fingerprint: str | None = None  # refuse a bundle built from other data
    allow_version_mismatch: bool = False
    threads: int = 1  # torch and FAISS threads per server process

    @property
    def load_options(self) -> dict:
        """Keyword arguments for ``load_bundle(settings.bundle_path, **settings.load_options)``."""
        return {"expect_fingerprint": self.expect_fingerprint, "allow_version_mismatch": self.allow_version_mismatch}

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServingSettings":
        return cls(**json.loads(text))


class ErrorMessage(BaseModel):
    """The body of a 404, 413 or 503: what went wrong and what to send instead."""

    detail: str


@dataclass
class Job:
    """One request waiting in the micro-batcher: what to rank, and the timings its batch reports."""

    query: Query
    k: int
    submitted: float = field(default_factory=time.perf_counter)
    started: float | None = None  # when its batch's forward pass began
    finished: float | None = None
    batch_size: int = 0


def run_jobs(rank_batch, bundle, jobs: list[Job]) -> list:
    """The micro-batcher's batch function: session 15's ``rank_batch`` over the jobs, timed."""
    start = time.perf_counter()
    out = rank_batch(bundle, [job.query for job in jobs], [job.k for job in jobs])
    stop = time.perf_counter()
    for job in jobs:
        job.started, job.finished, job.batch_size = start, stop, len(jobs)
    return out


class _BodyLimitAndTiming:
    """ASGI middleware: refuse bodies over the limit (413) before any parsing; add ``Server-Timing``."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                if declared is not None and declared > self.max_bytes:
                    return await _send_error(send, PayloadTooLarge(declared, self.max_bytes))
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            body, more = b"", True
            while more:  # read the body here (it is small) so that its size is known before parsing
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_bytes:
                    return await _send_error(send, PayloadTooLarge(None, self.max_bytes))
            replayed = False

            async def receive_again():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()
        else:
            receive_again = receive
        state = scope.setdefault("state", {})

        async def send_with_timing(message):
            if message["type"] == "http.response.start":
                parts = [f"app;dur={(time.perf_counter() - start) * 1e3:.3f}"]
                job = state.get("job")
                if job is not None and job.started is not None:
                    parts += [f"queue;dur={(job.started - job.submitted) * 1e3:.3f}",
                              f"model;dur={(job.finished - job.started) * 1e3:.3f}", f'batch;desc="{job.batch_size}"']
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"server-timing", ", ".join(parts).encode())]}
            await send(message)

        await self.app(scope, receive_again, send_with_timing)


async def _send_error(send, err: ServingError) -> None:
    body = json.dumps({"detail": err.detail}).encode()
    await send({"type": "http.response.start", "status": err.status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _logic(number: int, tree: str, given):
    if given is not None:
        return given
    from ..autograder.loader import load_session

    return load_session(number, tree)


def create_app(settings: ServingSettings, *, logic: Any = None, batch_logic: Any = None) -> FastAPI:
    """The app for ``settings``; its lifespan (session 14's) loads the bundle once, at start-up.

    ``logic`` / ``batch_logic``: where sessions 14 / 15's functions come from (default: the notebook
    of ``settings.impl``). Only the manifest is read here (for the limits in the schema).
    """
    s14 = _logic(14, settings.impl, logic)
    s15 = _logic(15, settings.impl, batch_logic) if settings.batching else None
    limits = ServingLimits.from_manifest(read_manifest(settings.bundle_path))
    RecommendRequest = s14.request_model(limits)
    RecommendResponse = s14.response_model()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _set_threads(settings.threads)
        async with s14.lifespan(app):
            if s15 is not None:
                batcher = s15.MicroBatcher(lambda jobs: run_jobs(s15.rank_batch, app.state.bundle, jobs),
                                           max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)
                await batcher.start()
                app.state.batcher = batcher
            try:
                yield
            finally:
                if s15 is not None:
                    await app.state.batcher.stop()

    mode = (f"micro-batched (max_batch {settings.max_batch}, max_wait {settings.max_wait_ms:g} ms)"
            if settings.batching else "one request at a time")
    app = FastAPI(title="Workbook recommender", version="1.0", lifespan=lifespan,
                  description=f"Retrieve (two-tower + FAISS) -> rank (DLRM) -> top-k; {mode}; "
                              f"code: {settings.impl}/. Bundle: {Path(settings.bundle_path).name}.")
    app.state.settings, app.state.limits, app.state.bundle = settings, limits, None
    app.add_middleware(_BodyLimitAndTiming, max_bytes=limits.max_body_bytes)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, err: ServingError):
        return JSONResponse(status_code=err.status_code, content={"detail": err.detail})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        # FastAPI's own 422, except that an echoed NaN or Infinity (valid in Python's JSON parser,
        # not in JSON) is written as a string: otherwise rendering the 422 itself would fail with a 500
        return JSONResponse(status_code=422, content={"detail": _json_safe(jsonable_encoder(err.errors()))})

    errors = {400: {"model": ErrorMessage, "description": "the request body could not be decoded"},
              404: {"model": ErrorMessage, "description": "unknown user id"},
              413: {"model": ErrorMessage, "description": "request body over the size limit"},
              503: {"model": ErrorMessage, "description": "the model bundle is not loaded"}}

    if settings.batching:
        async def recommend(body: RecommendRequest, request: Request):
            return await batched_recommend(s14, body, request)
    else:
        async def recommend(body: RecommendRequest, request: Request):
            return await s14.recommend_endpoint(body, request)
    recommend.__doc__ = ("Recommend k items for a known user (`user_id`) or an explicit `history` (item ids, most "
                         "recent last). Neither: a cold visitor, answered with the popularity list (`fallback`).")
    app.post("/recommend", response_model=RecommendResponse, responses=errors, summary="recommend k items")(recommend)

    async def health(request: Request):
        return await s14.health(request)
    health.__doc__ = "200 with the bundle's summary once the models are loaded; 503 before."
    app.get("/health", responses={503: errors[503]}, summary="readiness")(health)
    return app


async def batched_recommend(s14, body, request: Request):
    """The batched request path (see the module docstring)."""
    bundle = request.app.state.bundle
    if bundle is None:
        raise NotReady()
    query = s14.resolve_query(bundle, body)  # unknown user / items: a 4xx now, never in a batch
    if query.cold:
        return s14.recommend(bundle, body)  # the popularity fallback runs no model
    job = Job(query, body.k)
    request.scope.setdefault("state", {})["job"] = job
    ids, scores = await request.app.state.batcher.submit(job)
    return response_body(bundle, query, ids, scores, fallback=False)


def _json_safe(value):
    """``value`` with every non-finite float replaced by its name ("NaN", "Infinity", "-Infinity")."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _set_threads(n: int) -> None:
    import faiss
    import torch

    torch.set_num_threads(max(1, n))
    if hasattr(faiss, "omp_set_num_threads"):
        faiss.omp_set_num_threads(max(1, n))


def app_from_env() -> FastAPI:
    """uvicorn's app factory: the settings come from ``HARNESS_SERVE_SETTINGS`` (JSON)."""
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise RuntimeError(f"{SETTINGS_ENV} is not set; start the server with `python -m harness serve`")
    return create_app(ServingSettings.from_json(text))


__all__ = ["ErrorMessage", "Job", "ServingLimits", "ServingSettings", "app_from_env", "batched_recommend",
           "create_app", "run_jobs"]
