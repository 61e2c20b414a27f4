"""The FastAPI application of ``thoracic serve``: the analysis API and the web viewer.

Routes (all JSON errors are ``{"error": {"type": ..., "message": ...}}``):

- ``GET /``: the viewer (a static page; it asks for the token and sends it as a Bearer header).
- ``GET /health`` (also ``GET /v1/health``): liveness, version, loaded models and load (no token needed).
- ``GET /v1/models``: each model's role, file, sha256, classes and model card.
- ``POST /v1/analyze``: a DICOM, PNG, JPEG or TIFF (multipart field ``file`` or the raw body)
  to findings; ``outputs=sr,gsps,seg`` also makes the DICOM results of a DICOM upload.
- ``GET /v1/results/{id}`` and its downloads ``image.png``, ``heatmap.png``, ``lungs.png``,
  ``sr``, ``gsps``, ``seg``: the kept results of recent analyses.
- ``GET /openapi.json``: the OpenAPI description.

The analyzer runs in a bounded pool (:class:`~thoracic.serve.gate.Gate`): beyond
``concurrency + queue`` requests in flight the service answers 429 with ``Retry-After``.
Request logs carry the method, route, status, sizes, timing and the random result id, never
file names or anything read from an upload.

This module wires the app (lifespan, error handlers, middleware, the viewer and its static files);
the routes are in :mod:`~thoracic.serve.routes`, the models of their JSON in
:mod:`~thoracic.serve.schemas`, and what they share in :mod:`~thoracic.serve.service`.

>>> app = create_app(ServeConfig(token="t"), analyzer=object())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from thoracic._version import __version__
from thoracic.serve.config import ServeConfig
from thoracic.serve.errors import ApiError, error_body
from thoracic.serve.routes import add_routes
from thoracic.serve.service import Service

__all__ = ["create_app"]

log = logging.getLogger("thoracic.serve")

STATIC = Path(__file__).with_name("static")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
]


# --- ASGI middleware: security headers and a PHI-free request log ---------------------------------
class _Guard:
    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        sent = 0

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/static/*" if scope["path"].startswith("/static/") else "<unmatched>")
            rid = scope.get("state", {}).get("result_id", "-")
            received = next((v for k, v in scope.get("headers", []) if k == b"content-length"), b"-").decode("latin-1")
            log.info("%s %s %d in=%s out=%d id=%s %.1f ms", scope["method"], path, status, received, sent, rid,
                     (time.perf_counter() - start) * 1000.0)


# --- the app ------------------------------------------------------------------------------------------
def create_app(settings: ServeConfig | None = None, *, analyzer: Any = None) -> FastAPI:
    """The ASGI application.

    Parameters
    ----------
    settings:
        How the service runs (token, limits, pool sizes); defaults to :class:`ServeConfig`.
    analyzer:
        A loaded :class:`thoracic.inference.analyzer.Analyzer` (or anything with its ``analyze`` and
        ``models``); by default the shipped models are loaded when the app starts.
    """
    settings = settings or ServeConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        an = analyzer
        if an is None:
            from thoracic.inference.analyzer import Analyzer

            an = Analyzer.load(settings.models, settings.classifier, threads=settings.threads, preset=settings.preset)
        service = Service(settings, an)
        app.state.service = service
        log.info("thoracic %s serving: %d model(s), concurrency %d, queue %d, upload limit %.1f MiB",
                 __version__, len(service.models), settings.concurrency, settings.queue, settings.max_upload_mb)
        if service.token_ids:
            log.info("API tokens: %d (ids %s); request budget per token: %s; audit log: %s", len(service.token_ids),
                     ", ".join(service.token_ids), settings.rate_limit.describe() if settings.rate_limit else "none",
                     "on" if settings.audit_log else "off")
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="thoracic",
        version=__version__,
        description="Localize and classify thoracic abnormalities on chest radiographs. Send "
        "`Authorization: Bearer <token>` with every /v1 request.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; the spec is at /openapi.json
        redoc_url=None,
    )

    # -- errors --
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(error_body(err.type, err.message), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for e in err.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse(error_body("invalid_parameter", "; ".join(parts) or "invalid request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        detail = err.detail if isinstance(err.detail, str) else "request refused"
        return JSONResponse(error_body(kind, detail), status_code=err.status_code, headers=err.headers)

    # -- the viewer and its static files, then the API --
    @app.get("/", include_in_schema=False)
    async def viewer() -> FileResponse:
        return FileResponse(STATIC / "viewer.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_routes(app)
    app.add_middleware(_Guard)
    return app
