"""The routes of the API (the viewer page and static files are the app's: :mod:`thoracic.serve.app`).

Each /v1 route takes the token through :func:`authorized` (401 for a token that is not one of
the service's, 429 with ``Retry-After`` beyond the token's request budget); the service (models,
gate, store, budgets, audit log) is the app's ``state.service``, set when the app starts. Route
functions raise :class:`~thoracic.serve.errors.ApiError` (the app answers it as JSON) and never
log anything read from an upload. Each analysis request, refused or not, leaves one line in the
audit log when there is one (:mod:`thoracic.serve.audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import ClientDisconnect

from thoracic._version import __version__
from thoracic.errors import ThoracicError
from thoracic.serve.errors import ApiError, from_thoracic
from thoracic.serve.schemas import ERRORS, UPLOAD_BODY, AnalyzeResponse, HealthResponse, ModelsResponse
from thoracic.serve.service import DICOM_OBJECTS, Service, not_dicom
from thoracic.serve.store import Entry, new_id
from thoracic.serve.upload import check_headers, read_upload

__all__ = ["add_routes", "authorized", "current_service"]

log = logging.getLogger("thoracic.serve")

bearer = HTTPBearer(auto_error=False, description="the token given to `thoracic serve`")


def current_service(request: Request) -> Service:
    """The app's service (503 before the app has started)."""
    try:
        return request.app.state.service
    except AttributeError:  # pragma: no cover - only without the lifespan
        raise ApiError(503, "starting", "the service is starting; retry in a moment",
                       headers={"Retry-After": "5"}) from None


def _client(svc: Service, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The client (its token's id) once its token is one of the service's (401 otherwise)."""
    presented = None if credentials is None else credentials.credentials
    client = svc.client(presented)
    if client is None:
        what = "missing" if presented is None else "wrong"
        raise ApiError(401, "unauthorized", f"{what} API token: send 'Authorization: Bearer <token>'",
                       headers={"WWW-Authenticate": 'Bearer realm="thoracic"'})
    return client


def _within_budget(svc: Service, client: str) -> None:
    """Count the request against the client's budget (429 with ``Retry-After`` beyond it)."""
    refusal = svc.over_budget(client)
    if refusal is not None:
        raise refusal


def authorized(svc: Service = Depends(current_service),
               credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Service:
    """The service, once the request's Bearer token is one of the service's (401 otherwise) and
    within its budget (429 otherwise)."""
    _within_budget(svc, _client(svc, credentials))
    return svc


def _parse_outputs(value: str) -> tuple[str, ...]:
    """The DICOM results asked for by ``outputs`` (``sr,gsps,seg``, ``dicom`` or ``all``), in order."""
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


async def health(svc: Service = Depends(current_service)) -> dict[str, Any]:
    """Liveness: version, models loaded and the current load (no token needed)."""
    return {
        "status": "ok",
        "version": __version__,
        "models": [{k: m[k] for k in ("role", "name", "file", "sha256")} for m in svc.models],
        "in_flight": svc.gate.in_flight,
        "running": svc.gate.running,
        "capacity": svc.gate.capacity,
        "results": len(svc.store),
    }


async def models(svc: Service = Depends(authorized)) -> dict[str, Any]:
    """Every model of the analysis: role, file, sha256, the classes it covers and its model card."""
    return {"models": svc.models, "thoracic_version": __version__}


async def analyze(
    request: Request,
    svc: Service = Depends(current_service),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    min_score: float | None = Query(None, ge=0.0, le=1.0,
                                    description="show every finding from this score instead of the detector's "
                                                "operating points (default: the operating points)"),
    heatmap: bool = Query(True, description="compute the Eigen-CAM heatmap"),
    lungs: bool = Query(True, description="segment the lungs (lung square and lungs.png)"),
    outputs: str = Query("", description="DICOM results to make now: sr,gsps,seg (or dicom); DICOM uploads only"),
    dicom_min_score: float | None = Query(None, ge=0.0, le=1.0,
                                          description="the SR and GSPS carry every finding from this score instead "
                                                      "of the detector's operating points (default: the operating points)"),
) -> JSONResponse:
    """Analyze one radiograph: findings, lung square, heatmap and model identities.

    `findings` are the clinical findings: each finding above the operating point stored in the
    detector's metadata (a model without them: every finding from `thoracic.detect.clinical.DEFAULT_MIN_SCORE`), overlapping boxes of
    one finding merged; `operating_points` says which were applied.

    The image is the multipart field `file` or the raw body (DICOM, PNG, JPEG, TIFF). Answers
    413 beyond the upload limit, 415/400 for files that cannot be read, 422 for images that
    are not single chest radiographs (and for DICOM outputs asked of a PNG/JPEG) and 429 with
    `Retry-After` when all analysis slots are taken or the token's request budget is used up.
    """
    note = _Note()
    try:
        response = await _analyze(request, svc, credentials, note, min_score, heatmap, lungs, outputs,
                                  dicom_min_score)
    except ApiError as err:
        await asyncio.to_thread(_audit, svc, note, err.status, err.type)
        raise
    except BaseException as err:  # interrupted (cancelled): recorded here, on this thread, then on its way
        with contextlib.suppress(ApiError):
            _audit(svc, note, 499, type(err).__name__)
        raise
    await asyncio.to_thread(_audit, svc, note, 200, None)
    return response


@dataclass
class _Note:
    """What the audit line of an analysis request needs, filled in as the request goes."""

    started: float = field(default_factory=time.perf_counter)
    client: str | None = None
    data: bytes | None = None
    rid: str | None = None
    models: list[dict[str, Any]] | None = None


def _audit(svc: Service, note: _Note, status: int, kind: str | None) -> None:
    """Write the analysis's audit line (on a worker thread); 503 when it cannot be written: no
    unaudited answer leaves."""
    if svc.audit is None:
        return
    try:
        svc.audit_analysis(client=note.client, data=note.data, status=status, type=kind,
                           seconds=time.perf_counter() - note.started, rid=note.rid, models=note.models)
    except OSError as err:
        log.error("cannot write the audit log (%s: %s); answered 503", type(err).__name__, err.strerror or "")
        raise ApiError(503, "audit_log_unavailable",
                       "the analysis could not be recorded in the audit log; nothing is answered without it "
                       "(the operator is told in the service log); retry later",
                       headers={"Retry-After": "60"}) from None


async def _analyze(request: Request, svc: Service, credentials: HTTPAuthorizationCredentials | None,
                   note: _Note, min_score: float | None, heatmap: bool, lungs: bool, outputs: str,
                   dicom_min_score: float | None) -> JSONResponse:
    note.client = _client(svc, credentials)
    _within_budget(svc, note.client)
    kinds = _parse_outputs(outputs)
    check_headers(request, svc.settings.max_upload_bytes)  # what needs no body, before taking a slot
    if not svc.gate.try_enter():
        raise svc.busy()
    handed_over = False
    rid = note.rid = new_id()
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
        note.data = data
        if not data:
            raise ApiError(400, "empty_file", "the upload is empty: send a DICOM, PNG, JPEG or TIFF file")
        if kinds:
            from thoracic.io.raster import looks_like_raster

            fmt = looks_like_raster(data[:16])
            if fmt:
                raise not_dicom(fmt)
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
    note.models = entry.summary.get("models")
    return JSONResponse(entry.summary, headers={"Cache-Control": "no-store"})


def _entry(svc: Service, rid: str) -> Entry:
    entry = svc.store.get(rid)
    if entry is None:
        raise ApiError(404, "unknown_result",
                       "no such result: ids are random and only the most recent results are kept; analyze again")
    return entry


async def result(rid: str, svc: Service = Depends(authorized)) -> JSONResponse:
    """The JSON of a kept result."""
    return JSONResponse(_entry(svc, rid).summary, headers={"Cache-Control": "no-store"})


def _png_route(name: str, what: str) -> Callable[..., Awaitable[Response]]:
    """The download of the PNG ``name`` of a result."""

    async def route(rid: str, svc: Service = Depends(authorized)) -> Response:
        entry = _entry(svc, rid)
        data = entry.files.get(name)
        if data is None:
            raise ApiError(404, "not_available", f"this result has no {what} (it was not asked for or not made)")
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    route.__doc__ = f"The {what} as a PNG at the display size (`display` of the result)."
    return route


async def heatmap(
    rid: str,
    svc: Service = Depends(authorized),
    finding: str | None = Query(None, description="the classifier's class activation map of this label (one of the "
                                                  "result's classifier.maps: a finding's name or snake_case, or "
                                                  "abnormal) instead of the detector's Eigen-CAM"),
) -> Response:
    """The heatmap as a transparent colour overlay (PNG) at the display size (`display` of the result):
    the detector's Eigen-CAM, or with `finding` the multi-label classifier's map of that finding."""
    entry = _entry(svc, rid)
    if finding is None:
        data = entry.files.get("heatmap.png")
        if data is None:
            raise ApiError(404, "not_available", "this result has no heatmap (it was not asked for or not made)")
    else:
        data = await asyncio.to_thread(svc.finding_heatmap, entry, finding)
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


def _dicom_route(kind: str, what: str) -> Callable[..., Awaitable[Response]]:
    """The download of the DICOM result ``kind`` of a result, built on first request."""

    async def route(rid: str, request: Request, svc: Service = Depends(authorized)) -> Response:
        entry = _entry(svc, rid)
        if not entry.is_dicom:
            raise not_dicom(entry.summary.get("format", ""))
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
    return route


#: The PNG downloads of a result: file name, what it shows.
_PNGS = (
    ("image.png", "display image (the windowed radiograph)"),
    ("heatmap.png", "heatmap (transparent colour overlay)"),
    ("lungs.png", "lung mask (transparent green overlay)"),
)
#: The DICOM downloads of a DICOM upload's result: kind, what it is.
_DICOMS = (
    ("sr", "DICOM SR (TID 1500 measurement report)"),
    ("gsps", "DICOM grayscale softcopy presentation state with the boxes"),
    ("seg", "DICOM segmentation of the lungs"),
)


def add_routes(app: FastAPI) -> None:
    """Register the API's routes on ``app`` (paths, response models and OpenAPI details)."""
    app.get("/health", response_model=HealthResponse, tags=["service"])(health)
    # the same answer under the API's prefix, for clients that put every call under /v1
    app.get("/v1/health", response_model=HealthResponse, tags=["service"], name="health_v1")(health)
    app.get("/v1/models", response_model=ModelsResponse, responses=ERRORS, tags=["models"])(models)
    app.post("/v1/analyze", response_model=AnalyzeResponse, responses=ERRORS, openapi_extra=UPLOAD_BODY,
             tags=["analysis"])(analyze)
    app.get("/v1/results/{rid}", response_model=AnalyzeResponse, responses=ERRORS, tags=["results"])(result)
    for name, what in _PNGS:
        route = heatmap if name == "heatmap.png" else _png_route(name, what)
        app.get(f"/v1/results/{{rid}}/{name}", responses={200: {"content": {"image/png": {}}}, **ERRORS},
                response_class=Response, tags=["results"], name=name.split(".")[0])(route)
    for kind, what in _DICOMS:
        app.get(f"/v1/results/{{rid}}/{kind}", responses={200: {"content": {"application/dicom": {}}}, **ERRORS},
                response_class=Response, tags=["results"], name=kind)(_dicom_route(kind, what))


def _log_fault(where: str, rid: str, err: BaseException) -> None:
    """Log an unexpected error by type and code location only (its message could quote the upload)."""
    frames = traceback.extract_tb(err.__traceback__)
    where_from = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-6:]))
    log.error("unexpected %s in %s (result id %s) at %s", type(err).__name__, where, rid, where_from)
