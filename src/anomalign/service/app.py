"""The FastAPI application: detectors under ``/v1``, probes, metrics, and the web page at ``/``.

Routes:

* ``GET /v1/detectors`` and ``GET /v1/detectors/{name}``: what each loaded detector is.
* ``POST /v1/detectors/{name}/predict``: one or several images, as multipart (field
  ``file``, repeated) or as JSON ``{"images": [{"data": BASE64, "name": ...}], ...}``;
  ``?maps=true`` / ``?overlays=true`` add the 16-bit anomaly map / the overlay as base64 PNG.
* ``GET /healthz`` (the process answers), ``GET /readyz`` (loaded, warmed up, not draining),
  ``GET /metrics`` (Prometheus), ``/openapi.json``, ``/docs``, and ``/`` (the web page).

Detector names are looked up in the loaded table only; no path ever comes from a request.
Every error reply is ``{"error": CODE, "detail": TEXT}`` with its HTTP status.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anomalign import __version__
from anomalign.calibration import CONFIDENCE_RULE
from anomalign.errors import ConfigError
from anomalign.service.adapter import UNTRAINED_WARNING, BatchPrediction, ServedDetector
from anomalign.service.batching import MicroBatcher
from anomalign.service.config import ServiceConfig
from anomalign.service.errors import STATUS_CODES, ServiceError, error_body
from anomalign.service.images import decode_image
from anomalign.service.metrics import ServiceMetrics

log = logging.getLogger("anomalign.service")

STATIC_DIR = Path(__file__).parent / "static"
#: Paths that answer even while the service drains (probes must see the state).
PROBES = ("/healthz", "/readyz")
#: Paths that need the API key when one is set.
PROTECTED_PREFIXES = ("/v1/", "/metrics")


# -- request and response models -------------------------------------------------------


class JSONImage(BaseModel):
    """One image of a JSON request."""

    data: str = Field(description="the image file's bytes, base64 (a data: URL prefix is ok)")
    name: str | None = Field(None, description="a label echoed in the result")


class PredictJSON(BaseModel):
    """The JSON form of a predict request, for clients without multipart."""

    images: list[JSONImage] = Field(min_length=1)
    maps: bool = Field(False, description="add each anomaly map as a 16-bit PNG (base64)")
    overlays: bool = Field(False, description="add each heatmap overlay as a PNG (base64)")


class ImageResult(BaseModel):
    """The verdict on one image."""

    index: int
    name: str | None
    width: int
    height: int
    score: float = Field(description="image anomaly score (higher = more anomalous)")
    decision: Literal["anomalous", "normal"] | None = Field(
        description="anomalous when score >= threshold; null without a threshold"
    )
    threshold: float | None
    margin: float | None = Field(description="(score - threshold) / normal spread")
    confidence: float | None = Field(description=CONFIDENCE_RULE)
    map_png: str | None = Field(
        None, description="16-bit grey PNG, base64: the map on the calibrated range"
    )
    overlay_png: str | None = Field(None, description="heatmap overlay PNG, base64")


class PredictResponse(BaseModel):
    """The verdicts on all images of a request, in the order sent."""

    detector: str
    untrained_backbone: bool
    warning: str | None
    threshold: float | None
    results: list[ImageResult]
    seconds: float


class ErrorResponse(BaseModel):
    """Every error reply."""

    error: str
    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": code}
    for status, code in STATUS_CODES.items()
    if status in (400, 401, 404, 413, 415, 422, 503, 504)
}

PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "one or more images (repeat the field)",
                        }
                    },
                    "required": ["file"],
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictJSON"}},
        },
    }
}


# -- the service state -----------------------------------------------------------------


class Service:
    """The loaded detectors, their batchers, metrics and the lifecycle flags."""

    def __init__(self, detectors: Iterable[ServedDetector], config: ServiceConfig) -> None:
        self.config = config
        self.detectors: dict[str, ServedDetector] = {}
        for detector in detectors:
            if detector.name in self.detectors:
                raise ConfigError(f"Two detectors are named '{detector.name}'.")
            self.detectors[detector.name] = detector
        if not self.detectors:
            raise ConfigError("The service needs at least one detector.")
        self.metrics = ServiceMetrics()
        self.batchers = {
            name: MicroBatcher(
                detector,
                max_batch=config.max_batch,
                max_wait_ms=config.max_wait_ms,
                queue_size=config.queue_size,
                retry_after_s=config.retry_after_s,
                on_batch=self._batch_observer(name),
            )
            for name, detector in self.detectors.items()
        }
        self.ready = False
        self.draining = False
        self.warmup_error: str | None = None
        self.in_flight = 0
        self._warmup: asyncio.Task[None] | None = None

    def _batch_observer(self, name: str) -> Any:
        def observe(size: int, seconds: float) -> None:
            self.metrics.observe_batch(name, size, seconds)

        return observe

    def lookup(self, name: str) -> ServedDetector:
        """The detector called ``name`` in the loaded table (404 otherwise)."""
        detector = self.detectors.get(name)
        if detector is None:
            raise ServiceError(
                404,
                "unknown_detector",
                f"No detector named '{name}'; loaded: {', '.join(sorted(self.detectors))}.",
            )
        return detector

    def begin_drain(self) -> None:
        """Stop taking new requests (503); those in flight go on to the end."""
        self.draining = True
        self.ready = False

    async def _warm_up(self) -> None:
        try:
            for name, batcher in self.batchers.items():
                await batcher.run_in_thread(self.detectors[name].warm_up)
        except Exception as error:
            log.exception("warm-up failed")
            self.warmup_error = f"warm-up failed: {error}"
            return
        self.ready = not self.draining

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Start the batchers and warm up; at shutdown finish queued work, then stop."""
        self.draining = False
        for batcher in self.batchers.values():
            await batcher.start()
        if self.config.warmup:
            self._warmup = asyncio.create_task(self._warm_up())
        else:
            self.ready = True
        try:
            yield
        finally:
            self.begin_drain()
            if self._warmup is not None:
                await self._warmup
            for batcher in self.batchers.values():
                await batcher.stop()


# -- middleware ------------------------------------------------------------------------


async def _send_error(
    service: Service, send: Send, status: int, code: str, detail: str, **headers: str
) -> None:
    service.metrics.errors.labels(code).inc()
    response = JSONResponse(error_body(code, detail), status_code=status, headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class ServiceMiddleware:
    """Counts and times every request, refuses new ones while draining, and caps the body.

    The body cap is checked on ``Content-Length`` before anything is read, and again on
    the bytes actually received (chunked uploads), raising 413 as soon as it is passed.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.service
        started = time.perf_counter()
        scope.setdefault("state", {})["started"] = started
        status_seen: list[int] = []

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(int(message["status"]))
            await send(message)

        path = scope.get("path", "")
        try:
            service.in_flight += 1
            if service.draining and path not in PROBES:
                await _send_error(
                    service,
                    tracking_send,
                    503,
                    "shutting_down",
                    "The service is shutting down; retry on another instance.",
                    **{"Retry-After": str(service.config.retry_after_s)},
                )
                return
            limit = service.config.max_body_bytes
            length = _content_length(scope)
            if length is not None and length > limit:
                await _send_error(
                    service,
                    tracking_send,
                    413,
                    "payload_too_large",
                    f"The request body has {length} bytes; the limit is {limit}.",
                )
                return
            await self.app(scope, _limited(receive, limit), tracking_send)
        finally:
            service.in_flight -= 1
            status = status_seen[0] if status_seen else 500
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                path if path in ("/", *PROBES) else "unmatched"
            )
            service.metrics.requests.labels(template, scope.get("method", ""), str(status)).inc()
            service.metrics.latency.labels(template).observe(time.perf_counter() - started)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise ServiceError(
                    413,
                    "payload_too_large",
                    f"The request body exceeds the limit of {limit} bytes.",
                )
        return message

    return limited_receive


# -- request reading -------------------------------------------------------------------


Upload = tuple[str | None, bytes]


async def _read_multipart(request: Request) -> list[Upload]:
    form = await request.form()
    try:
        uploads: list[Upload] = []
        for entry in form.getlist("file"):
            if not isinstance(entry, UploadFile):
                raise ServiceError(
                    400, "bad_request", "The multipart field 'file' must hold files, not text."
                )
            uploads.append((entry.filename, await entry.read()))
        return uploads
    finally:
        await form.close()


def _b64decode(text: str, label: str) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ServiceError(400, "bad_base64", f"{label} is not valid base64: {error}") from error


async def _read_json(request: Request) -> tuple[list[Upload], bool, bool]:
    try:
        body = PredictJSON.model_validate_json(await request.body())
    except ValidationError as error:
        raise ServiceError(422, "invalid_request", _validation_summary(error.errors())) from error
    uploads = [
        (image.name, _b64decode(image.data, f"images[{index}]"))
        for index, image in enumerate(body.images)
    ]
    return uploads, body.maps, body.overlays


def _validation_summary(errors: Any) -> str:
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _label(index: int, name: str | None) -> str:
    return f"image {index}" + (f" ('{name}')" if name else "")


async def _read_images(
    request: Request, config: ServiceConfig, maps: bool, overlays: bool
) -> tuple[list[Upload], list[Any], bool, bool]:
    """The request's uploads, decoded (off the event loop), and the maps/overlays flags."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        uploads = await _read_multipart(request)
    elif content_type == "application/json":
        uploads, json_maps, json_overlays = await _read_json(request)
        maps, overlays = maps or json_maps, overlays or json_overlays
    else:
        raise ServiceError(
            415,
            "unsupported_media_type",
            "Send multipart/form-data with one or more 'file' fields, or application/json "
            f"with base64 images; got '{content_type or 'no content type'}'.",
        )
    if not uploads:
        raise ServiceError(400, "no_images", "The request has no images (field 'file').")
    if len(uploads) > config.max_images:
        raise ServiceError(
            413,
            "too_many_images",
            f"The request has {len(uploads)} images; the limit is {config.max_images}.",
        )
    rgbs = await asyncio.to_thread(
        lambda: [
            decode_image(data, config.max_pixels, _label(i, filename))
            for i, (filename, data) in enumerate(uploads)
        ]
    )
    return uploads, rgbs, maps, overlays


# -- the application -------------------------------------------------------------------


def create_app(
    detectors: Iterable[ServedDetector] | Mapping[str, ServedDetector],
    config: ServiceConfig | None = None,
) -> FastAPI:
    """The service over ``detectors`` (served under their ``name``)."""
    config = config or ServiceConfig()
    if isinstance(detectors, Mapping):
        detectors = list(detectors.values())
    service = Service(detectors, config)
    app = FastAPI(
        title="anomalign",
        version=__version__,
        summary="Visual anomaly detection with CLIP: scores, decisions and heatmaps.",
        lifespan=service.lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = service
    app.add_middleware(ServiceMiddleware, service=service)
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

    async def require_key(key: str | None = Security(api_key_header)) -> None:
        expected = config.api_key
        if expected is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
            raise ServiceError(
                401,
                "unauthorized",
                "Missing or wrong X-API-Key header.",
                {"WWW-Authenticate": "ApiKey"},
            )

    _add_error_handlers(app, service)
    protected = [Security(require_key)]

    @app.get("/v1/detectors", dependencies=protected, responses=ERROR_RESPONSES)
    async def list_detectors() -> dict[str, Any]:
        """Every loaded detector: method, backbone, threshold, calibration, fit record."""
        return {
            "detectors": [d.describe() for d in service.detectors.values()],
            "confidence_rule": CONFIDENCE_RULE,
            "limits": {
                "max_body_bytes": config.max_body_bytes,
                "max_pixels": config.max_pixels,
                "max_images": config.max_images,
            },
        }

    @app.get("/v1/detectors/{name}", dependencies=protected, responses=ERROR_RESPONSES)
    async def get_detector(name: str) -> dict[str, Any]:
        """One loaded detector."""
        return service.lookup(name).describe()

    @app.post(
        "/v1/detectors/{name}/predict",
        dependencies=protected,
        responses=ERROR_RESPONSES,
        openapi_extra=PREDICT_BODY,
    )
    async def predict(
        name: str,
        request: Request,
        maps: bool = Query(False, description="add the 16-bit anomaly maps"),
        overlays: bool = Query(False, description="add the overlay PNGs"),
    ) -> PredictResponse:
        """Score, decide and (on request) draw one or several images."""
        detector = service.lookup(name)
        batcher = service.batchers[name]
        with batcher.arriving():  # the batch being gathered waits for these images
            uploads, rgbs, maps, overlays = await _read_images(request, config, maps, overlays)
            futures = batcher.submit(rgbs)
        service.metrics.queue_depth.labels(name).set(batcher.pending)
        started = request.state.started
        remaining = config.deadline_s - (time.perf_counter() - started)
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), max(remaining, 0.0)
            )
        except TimeoutError as error:
            raise ServiceError(
                504,
                "deadline_exceeded",
                f"No answer within the deadline of {config.deadline_s:g} s; the service is "
                "overloaded or the images are too large.",
            ) from error
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        results = await asyncio.to_thread(
            _results, detector, uploads, rgbs, outcomes, maps, overlays
        )
        return PredictResponse(
            detector=name,
            untrained_backbone=detector.untrained_backbone,
            warning=UNTRAINED_WARNING if detector.untrained_backbone else None,
            threshold=detector.threshold,
            results=results,
            seconds=round(time.perf_counter() - started, 6),
        )

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process is alive and answering."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["probes"], responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        """Every detector is loaded and warmed up, and the service is not draining."""
        if service.draining:
            return JSONResponse(
                error_body("not_ready", "the service is shutting down"), status_code=503
            )
        if service.warmup_error:
            return JSONResponse(error_body("not_ready", service.warmup_error), status_code=503)
        if not service.ready:
            return JSONResponse(
                error_body("not_ready", "detectors are warming up"), status_code=503
            )
        return JSONResponse({"status": "ready", "detectors": sorted(service.detectors)})

    @app.get("/metrics", dependencies=protected, tags=["probes"])
    async def metrics() -> Response:
        """Prometheus metrics: requests, latency, errors, batch sizes, queue depth."""
        for detector_name, batcher in service.batchers.items():
            service.metrics.queue_depth.labels(detector_name).set(batcher.pending)
        service.metrics.in_flight.set(service.in_flight - 1)
        body, media_type = service.metrics.render()
        return Response(body, media_type=media_type)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="anomalign API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/docs-assets", StaticFiles(directory=_swagger_dir()), name="docs-assets")
    return app


def _swagger_dir() -> Path:
    """Swagger UI's files, shipped by the ``swagger-ui-bundle`` package (no CDN)."""
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def _results(
    detector: ServedDetector,
    uploads: list[Upload],
    rgbs: list[Any],
    outcomes: list[tuple[BatchPrediction, int]],
    maps: bool,
    overlays: bool,
) -> list[ImageResult]:
    threshold, calibration = detector.threshold, detector.calibration
    results = []
    for index, ((filename, _), rgb, (prediction, position)) in enumerate(
        zip(uploads, rgbs, outcomes, strict=True)
    ):
        score = prediction.scores[position]
        decided = prediction.decisions[position]
        results.append(
            ImageResult(
                index=index,
                name=filename,
                width=int(rgb.shape[1]),
                height=int(rgb.shape[0]),
                score=score,
                decision=None if decided is None else ("anomalous" if decided else "normal"),
                threshold=threshold,
                margin=calibration.margin(score, threshold),
                confidence=calibration.confidence(score, threshold),
                map_png=_b64(prediction.map_png(position)) if maps else None,
                overlay_png=_b64(prediction.overlay_png(position, rgb)) if overlays else None,
            )
        )
    return results


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _add_error_handlers(app: FastAPI, service: Service) -> None:
    def reply(status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        service.metrics.errors.labels(code).inc()
        return JSONResponse(error_body(code, detail), status_code=status, headers=headers)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return reply(error.status, error.code, error.detail, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(error.status_code, "http_error")
        return reply(error.status_code, code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return reply(422, "invalid_request", _validation_summary(error.errors()))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return reply(500, "internal_error", "The server met an unexpected error (see its log).")
