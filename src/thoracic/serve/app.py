"""The FastAPI application of ``thoracic serve``: the analysis API and the web viewer.

Routes (all JSON errors are ``{"error": {"type": ..., "message": ...}}``):

- ``GET /``: the viewer (a static page; it asks for the token and sends it as a Bearer header).
- ``GET /health``: liveness, version, loaded models and load (no token needed).
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

>>> app = create_app(ServeSettings(token="t"), analyzer=object())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import io
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from thoracic._version import __version__
from thoracic.dicom import DEFAULT_MIN_SCORE
from thoracic.errors import ConfigError, ThoracicError
from thoracic.serve.errors import ApiError, error_body, from_thoracic
from thoracic.serve.gate import Gate
from thoracic.serve.render import gray_png, heatmap_png, lungs_png, png_size
from thoracic.serve.settings import ServeSettings
from thoracic.serve.store import Entry, ResultStore, new_id
from thoracic.serve.upload import check_headers, read_upload

__all__ = ["DICOM_OBJECTS", "QUIET_LOGGERS", "create_app"]

log = logging.getLogger("thoracic.serve")

STATIC = Path(__file__).with_name("static")
#: The DICOM result objects a DICOM upload can have.
DICOM_OBJECTS = ("sr", "gsps", "seg")
_DICOM_MIN_SCORE = DEFAULT_MIN_SCORE  # thoracic.dicom's display threshold, not a validated operating point
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


# --- documentation models (responses are built as dicts; these describe them in OpenAPI) -------
class ErrorDetail(BaseModel):
    type: str = Field(description="machine-readable tag, e.g. too_large, busy, not_chest_radiograph")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class FindingModel(BaseModel):
    label: str
    class_id: int
    score: float
    box: list[float] = Field(description="x0, y0, x1, y1 in pixels of the original image")


class ModelInfoModel(BaseModel):
    role: str
    name: str
    file: str
    sha256: str


class AnalyzeResponse(BaseModel):
    id: str = Field(description="random result id for the download routes")
    image_id: str
    width: int
    height: int
    format: str
    findings: list[FindingModel]
    p_abnormal: float | None
    no_finding_score: float
    filtered: bool
    lung_roi: dict[str, Any] | None
    heatmap: bool
    flags: list[str]
    models: list[ModelInfoModel]
    thoracic_version: str
    seconds: float
    dicom: bool = Field(description="the upload was a DICOM: SR, GSPS and SEG can be downloaded")
    display: dict[str, int] = Field(description="size of image.png, heatmap.png and lungs.png")
    links: dict[str, str]


class ModelCard(ModelInfoModel):
    classes: list[str]
    outputs: list[str]
    card: str = Field(description="the model card (Markdown)")


class ModelsResponse(BaseModel):
    models: list[ModelCard]
    thoracic_version: str


class HealthResponse(BaseModel):
    status: str
    version: str
    models: list[ModelInfoModel]
    in_flight: int
    running: int
    capacity: int
    results: int


_ERRORS = {
    s: {"model": ErrorResponse}
    for s in (400, 401, 404, 408, 413, 415, 422, 429)
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image: a multipart form with the field `file`, or the raw file as the body",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            **{
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("application/dicom", "image/png", "image/jpeg", "image/tiff", "application/octet-stream")
            },
        },
    }
}


# --- the service state ---------------------------------------------------------------------------
def _model_listing(analyzer: Any) -> list[dict[str, Any]]:
    """Role, file, sha256, classes and card of every model the analyzer uses."""
    pred = getattr(analyzer, "predictor", None)
    seg = getattr(analyzer, "segmenter", None)
    details: dict[tuple[str, str], tuple[list[str], list[str], str]] = {}
    if pred is not None:
        for det in pred.detectors:
            meta = det.meta
            details[("detector", det.sha256)] = (list(meta.trained_classes or meta.names), list(meta.names), det.path)
        clf = pred.classifier
        if clf is not None:
            details[("classifier", clf.sha256)] = (list(clf.meta.names), list(clf.meta.names), clf.path)
    out = []
    for m in getattr(analyzer, "models", ()):
        classes, outputs, path = details.get((m.role, m.sha256), ([], [], ""))
        if m.role == "lungs" and seg is not None:
            label = getattr(seg.contract, "label", "lung")
            classes, outputs, path = [label], [label], seg.path
        card = ""
        if path:
            card_path = Path(path).with_name("MODEL_CARD.md")
            if card_path.is_file():
                card = card_path.read_text(encoding="utf-8")
        out.append({**m.to_dict(), "classes": classes, "outputs": outputs, "card": card})
    return out


#: Libraries whose info/debug output quotes identifying data (highdicom names the source's SOP
#: Instance UID): the service keeps them at WARNING whatever the log level.
QUIET_LOGGERS = ("highdicom",)


def _quiet_identifying_loggers() -> None:
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:  # NOTSET would follow the root logger down
            logger.setLevel(logging.WARNING)


class Service:
    """What the routes share: settings, the analyzer, the worker gate and the result store."""

    def __init__(self, settings: ServeSettings, analyzer: Any) -> None:
        _quiet_identifying_loggers()
        self.settings = settings
        self.analyzer = analyzer
        self.gate = Gate(settings.concurrency, settings.queue, retry_after_max=settings.retry_after_max)
        self.store = ResultStore(settings.results, int(settings.results_mb * (1 << 20)))
        self.models = _model_listing(analyzer)
        self._token = None if settings.token is None else hashlib.sha256(settings.token.encode()).digest()

    def token_ok(self, presented: str | None) -> bool:
        """Whether ``presented`` is the token (compared in constant time, on digests)."""
        if self._token is None:
            return True
        if presented is None:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest(), self._token)

    def busy(self) -> ApiError:
        seconds = self.gate.retry_after()
        return ApiError(
            429,
            "busy",
            f"all {self.gate.capacity} analysis slots are taken; retry after {seconds} s",
            headers={"Retry-After": str(seconds)},
        )

    # -- work done on the worker threads --
    def analyze(self, data: bytes, rid: str, min_score: float, heatmap: bool, lungs: bool,
                outputs: tuple[str, ...], dicom_min_score: float) -> Entry:
        read = None
        if self.settings.allow_non_chest:
            from thoracic.io.radiograph import ReadOptions

            read = ReadOptions(allow_non_chest=True)
        a = self.analyzer.analyze(data, image_id=rid, read=read, heatmap=heatmap, lungs=lungs)
        is_dicom = a.radiograph.dataset is not None
        if outputs and not is_dicom:  # a DICOM without preamble sniffed as something else
            raise _not_dicom(a.radiograph.format)
        image = gray_png(a.radiograph.pixels)
        size = png_size(image)
        files = {"image.png": image}
        if a.heatmap is not None:
            files["heatmap.png"] = heatmap_png(a.heatmap, size)
        if a.lungs is not None:
            files["lungs.png"] = lungs_png(a.lungs.mask, size)
        summary = a.to_dict(min_score)
        base = f"/v1/results/{rid}"
        links = {"self": base, **{name.split(".")[0]: f"{base}/{name}" for name in files}}
        if is_dicom:
            links.update({kind: f"{base}/{kind}" for kind in DICOM_OBJECTS})
        summary = {"id": rid, **summary, "dicom": is_dicom,
                   "display": {"width": size[0], "height": size[1]}, "links": links}
        entry = Entry(rid, summary, is_dicom, files, analysis=_slim(a) if is_dicom else None,
                      dicom_min_score=dicom_min_score)
        if outputs:
            self._build_dicom(entry)
        return entry

    def build_dicom(self, entry: Entry) -> None:
        self._build_dicom(entry)
        self.store.resize(entry)

    def _build_dicom(self, entry: Entry) -> None:
        with entry.lock:
            if entry.analysis is None:
                return  # built by another request
            try:
                from thoracic.dicom import build_results
            except ImportError as err:
                raise ApiError(501, "not_available",
                               "DICOM results need the 'dicom' extra: pip install 'thoracic[dicom]'") from err
            try:
                results = build_results(entry.analysis, min_score=entry.dicom_min_score)
            except ConfigError as err:  # e.g. a source without valid UIDs: nothing a result can refer to
                raise ApiError(422, "dicom_results_unavailable", err.message) from None
            for kind, ds in results.datasets().items():
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                entry.files[kind] = buf.getvalue()
            entry.analysis = None  # the images and header are no longer needed


def _slim(a: Any) -> Any:
    """The analysis without what the DICOM results do not need (pixels, heatmaps, feature maps).

    A kept DICOM analysis then costs its lung mask (1 byte a pixel) instead of about 9 bytes a pixel.
    """
    try:
        radiograph = dataclasses.replace(a.radiograph, pixels=np.zeros((1, 1), np.float32))
        prediction = a.prediction
        if getattr(prediction, "heatmap", None) is not None or getattr(prediction, "features", None):
            prediction = dataclasses.replace(prediction, heatmap=None, features={})
        return dataclasses.replace(a, radiograph=radiograph, prediction=prediction, heatmap=None)
    except (TypeError, ValueError):  # not the dataclasses we know: keep it whole
        return a


def _not_dicom(fmt: str) -> ApiError:
    return ApiError(
        422,
        "not_dicom",
        f"DICOM results (SR, GSPS, SEG) refer to the DICOM image they describe, and this upload is a "
        f"{fmt or 'non-DICOM'} image; upload the DICOM file to get them (findings, image.png, heatmap.png "
        "and lungs.png work for any upload)",
    )


def _parse_outputs(value: str) -> tuple[str, ...]:
    kinds: list[str] = []
    for part in value.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part in ("dicom", "all"):
            kinds.extend(DICOM_OBJECTS)
        elif part in DICOM_OBJECTS:
            kinds.append(part)
        else:
            raise ApiError(400, "bad_request", f"unknown output {part!r}; choose among sr, gsps, seg (or dicom for all)")
    return tuple(dict.fromkeys(kinds))


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
def create_app(settings: ServeSettings | None = None, *, analyzer: Any = None) -> FastAPI:
    """The ASGI application.

    Parameters
    ----------
    settings:
        How the service runs (token, limits, pool sizes); defaults to :class:`ServeSettings`.
    analyzer:
        A loaded :class:`thoracic.inference.analyzer.Analyzer` (or anything with its ``analyze`` and
        ``models``); by default the shipped models are loaded when the app starts.
    """
    settings = settings or ServeSettings()
    holder: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        an = analyzer
        if an is None:
            from thoracic.inference.analyzer import Analyzer

            an = Analyzer.load(settings.models, threads=settings.threads)
        service = Service(settings, an)
        holder["service"] = service
        app.state.service = service
        log.info("thoracic %s serving: %d model(s), concurrency %d, queue %d, upload limit %.1f MiB",
                 __version__, len(service.models), settings.concurrency, settings.queue, settings.max_upload_mb)
        try:
            yield
        finally:
            service.gate.close()

    app = FastAPI(
        title="thoracic",
        version=__version__,
        description="Localize and classify thoracic abnormalities on chest radiographs. Send "
        "`Authorization: Bearer <token>` with every /v1 request.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; the spec is at /openapi.json
        redoc_url=None,
    )
    bearer = HTTPBearer(auto_error=False, description="the token given to `thoracic serve`")

    def service() -> Service:
        try:
            return holder["service"]
        except KeyError:  # pragma: no cover - only without the lifespan
            raise ApiError(503, "starting", "the service is starting; retry in a moment",
                           headers={"Retry-After": "5"}) from None

    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Service:
        svc = service()
        presented = None if credentials is None else credentials.credentials
        if not svc.token_ok(presented):
            what = "missing" if presented is None else "wrong"
            raise ApiError(401, "unauthorized", f"{what} API token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": 'Bearer realm="thoracic"'})
        return svc

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

    # -- routes --
    @app.get("/", include_in_schema=False)
    async def viewer() -> FileResponse:
        return FileResponse(STATIC / "viewer.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness: version, models loaded and the current load (no token needed)."""
        svc = service()
        return {
            "status": "ok",
            "version": __version__,
            "models": [{k: m[k] for k in ("role", "name", "file", "sha256")} for m in svc.models],
            "in_flight": svc.gate.in_flight,
            "running": svc.gate.running,
            "capacity": svc.gate.capacity,
            "results": len(svc.store),
        }

    @app.get("/v1/models", response_model=ModelsResponse, responses=_ERRORS, tags=["models"])
    async def models(svc: Service = Depends(authorized)) -> dict[str, Any]:
        """Every model of the analysis: role, file, sha256, the classes it covers and its model card."""
        return {"models": svc.models, "thoracic_version": __version__}

    @app.post(
        "/v1/analyze",
        response_model=AnalyzeResponse,
        responses=_ERRORS,
        openapi_extra=_UPLOAD_BODY,
        tags=["analysis"],
    )
    async def analyze(
        request: Request,
        svc: Service = Depends(authorized),
        min_score: float = Query(0.0, ge=0.0, le=1.0, description="leave out findings scoring below this"),
        heatmap: bool = Query(True, description="compute the Eigen-CAM heatmap"),
        lungs: bool = Query(True, description="segment the lungs (lung square and lungs.png)"),
        outputs: str = Query("", description="DICOM results to make now: sr,gsps,seg (or dicom); DICOM uploads only"),
        dicom_min_score: float = Query(_DICOM_MIN_SCORE, ge=0.0, le=1.0,
                                       description="leave out findings below this from the SR and GSPS"),
    ) -> JSONResponse:
        """Analyze one radiograph: findings, lung square, heatmap and model identities.

        The image is the multipart field `file` or the raw body (DICOM, PNG, JPEG, TIFF). Answers
        413 beyond the upload limit, 415/400 for files that cannot be read, 422 for images that
        are not single chest radiographs (and for DICOM outputs asked of a PNG/JPEG) and 429 with
        `Retry-After` when all analysis slots are taken.
        """
        kinds = _parse_outputs(outputs)
        check_headers(request, svc.settings.max_upload_bytes)  # what needs no body, before taking a slot
        if not svc.gate.try_enter():
            raise svc.busy()
        handed_over = False
        rid = new_id()
        request.scope.setdefault("state", {})["result_id"] = rid
        try:
            try:
                async with asyncio.timeout(svc.settings.upload_timeout):
                    data = await read_upload(request, svc.settings.max_upload_bytes)
            except TimeoutError:
                raise ApiError(408, "upload_timeout",
                               f"the upload took longer than {svc.settings.upload_timeout:g} s; send it again") from None
            except ClientDisconnect:
                raise ApiError(400, "client_disconnected", "the client went away during the upload") from None
            if not data:
                raise ApiError(400, "empty_file", "the upload is empty: send a DICOM, PNG, JPEG or TIFF file")
            if kinds:
                from thoracic.io.raster import looks_like_raster

                fmt = looks_like_raster(data[:16])
                if fmt:
                    raise _not_dicom(fmt)
            handed_over = True
            entry = await svc.gate.run(svc.analyze, data, rid, min_score, heatmap, lungs, kinds, dicom_min_score)
        except ApiError:
            raise
        except ThoracicError as err:
            raise from_thoracic(err) from None
        except Exception as err:  # a fault of ours: a typed 500, logged without the message (it could quote the file)
            _log_fault("analyze", rid, err)
            raise ApiError(500, "internal_error", f"the analysis failed unexpectedly (result id {rid})") from None
        finally:
            if not handed_over:
                svc.gate.leave()
        svc.store.put(entry)
        return JSONResponse(entry.summary, headers={"Cache-Control": "no-store"})

    def _entry(svc: Service, rid: str) -> Entry:
        entry = svc.store.get(rid)
        if entry is None:
            raise ApiError(404, "unknown_result",
                           "no such result: ids are random and only the most recent results are kept; analyze again")
        return entry

    @app.get("/v1/results/{rid}", response_model=AnalyzeResponse, responses=_ERRORS, tags=["results"])
    async def result(rid: str, svc: Service = Depends(authorized)) -> JSONResponse:
        """The JSON of a kept result."""
        return JSONResponse(_entry(svc, rid).summary, headers={"Cache-Control": "no-store"})

    def _png_route(name: str, what: str) -> None:
        async def route(rid: str, svc: Service = Depends(authorized)) -> Response:
            entry = _entry(svc, rid)
            data = entry.files.get(name)
            if data is None:
                raise ApiError(404, "not_available", f"this result has no {what} (it was not asked for or not made)")
            return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

        route.__doc__ = f"The {what} as a PNG at the display size (`display` of the result)."
        app.get(f"/v1/results/{{rid}}/{name}", responses={200: {"content": {"image/png": {}}}, **_ERRORS},
                response_class=Response, tags=["results"], name=name.split(".")[0])(route)

    _png_route("image.png", "display image (the windowed radiograph)")
    _png_route("heatmap.png", "heatmap (transparent colour overlay)")
    _png_route("lungs.png", "lung mask (transparent green overlay)")

    def _dicom_route(kind: str, what: str) -> None:
        async def route(rid: str, request: Request, svc: Service = Depends(authorized)) -> Response:
            entry = _entry(svc, rid)
            if not entry.is_dicom:
                raise _not_dicom(entry.summary.get("format", ""))
            if kind not in entry.files and entry.analysis is not None:
                if not svc.gate.try_enter():
                    raise svc.busy()
                try:
                    await svc.gate.run(svc.build_dicom, entry)
                except ApiError:
                    raise
                except ThoracicError as err:
                    raise from_thoracic(err) from None
                except Exception as err:
                    _log_fault(kind, rid, err)
                    raise ApiError(500, "internal_error", f"building the {kind.upper()} failed (result id {rid})") from None
            data = entry.files.get(kind)
            if data is None:
                raise ApiError(404, "not_available", f"this result has no {what} (for a SEG: no lung mask was made)")
            return Response(data, media_type="application/dicom", headers={
                "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{rid}-{kind}.dcm"',
            })

        route.__doc__ = f"The {what} of a DICOM upload (application/dicom); 422 for PNG/JPEG uploads."
        app.get(f"/v1/results/{{rid}}/{kind}", responses={200: {"content": {"application/dicom": {}}}, **_ERRORS},
                response_class=Response, tags=["results"], name=kind)(route)

    _dicom_route("sr", "DICOM SR (TID 1500 measurement report)")
    _dicom_route("gsps", "DICOM grayscale softcopy presentation state with the boxes")
    _dicom_route("seg", "DICOM segmentation of the lungs")

    app.add_middleware(_Guard)
    return app


def _log_fault(where: str, rid: str, err: BaseException) -> None:
    """Log an unexpected error by type and code location only (its message could quote the upload)."""
    frames = traceback.extract_tb(err.__traceback__)
    where_from = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-6:]))
    log.error("unexpected %s in %s (result id %s) at %s", type(err).__name__, where, rid, where_from)
