"""What the routes of ``thoracic serve`` share: the settings, the analyzer and its models, the
worker gate and the result store, and the work done on the worker threads."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from thoracic.errors import ConfigError
from thoracic.serve.audit import AuditLog, now_utc, subject
from thoracic.serve.config import ServeConfig
from thoracic.serve.errors import ApiError
from thoracic.serve.gate import Gate
from thoracic.serve.limits import RateLimiter, token_id
from thoracic.serve.render import gray_png, heatmap_png, lungs_png, png_size
from thoracic.serve.store import Entry, ResultStore

__all__ = ["ANONYMOUS", "DICOM_OBJECTS", "QUIET_LOGGERS", "Service", "not_dicom"]

#: The client of a service without tokens (authentication off): one budget for everyone.
ANONYMOUS = "anonymous"

#: The DICOM result objects a DICOM upload can have.
DICOM_OBJECTS = ("sr", "gsps", "seg")


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
    """What the routes share: settings, the analyzer, the worker gate, the result store, the
    clients' request budgets and the audit log."""

    def __init__(self, settings: ServeConfig, analyzer: Any) -> None:
        _quiet_identifying_loggers()
        self.settings = settings
        self.analyzer = analyzer
        self.gate = Gate(settings.concurrency, settings.queue, retry_after_max=settings.retry_after_max)
        self.store = ResultStore(settings.results, int(settings.results_mb * (1 << 20)))
        self.models = _model_listing(analyzer)
        self._tokens = [(_digest(t), token_id(t)) for t in settings.all_tokens]
        self.limiter = None if settings.rate_limit is None else RateLimiter(settings.rate_limit)
        self.audit = None if settings.audit_log is None else AuditLog(settings.audit_log)

    @property
    def token_ids(self) -> list[str]:
        """The ids (:func:`~thoracic.serve.limits.token_id`) of the accepted tokens."""
        return [tid for _, tid in self._tokens]

    def client(self, presented: str | None) -> str | None:
        """The id of the token ``presented`` (``None``: not one of ours); every token is compared,
        in constant time, on digests. Without tokens everyone is :data:`ANONYMOUS`."""
        if not self._tokens:
            return ANONYMOUS
        if presented is None:
            return None
        digest = _digest(presented)
        found = None
        for known, tid in self._tokens:
            if hmac.compare_digest(digest, known) and found is None:
                found = tid
        return found

    def token_ok(self, presented: str | None) -> bool:
        """Whether ``presented`` is one of the tokens."""
        return self.client(presented) is not None

    def over_budget(self, client: str) -> ApiError | None:
        """Count a request of ``client`` against its budget: ``None`` when admitted, else the 429."""
        if self.limiter is None:
            return None
        seconds = self.limiter.take(client)
        if not seconds:
            return None
        return ApiError(429, "rate_limited",
                        f"this token's budget of {self.limiter.limit.describe()} is used up; retry after {seconds} s",
                        headers={"Retry-After": str(seconds)})

    def audit_analysis(self, *, client: str | None, data: bytes | None, status: int, type: str | None,
                       seconds: float, rid: str | None, models: list[dict[str, Any]] | None = None) -> None:
        """Append the audit line of one analysis request (nothing without an audit log); runs on a
        worker thread (hashing the upload, reading a DICOM header). Raises ``OSError`` when the
        line cannot be written."""
        if self.audit is None:
            return
        kind, digest = subject(data) if data else (None, None)
        outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
        self.audit.write({
            "time": now_utc(),
            "token": None if client is None or client == ANONYMOUS else client,
            "subject": kind,
            "sha256": digest,
            "models": [f"{m['role']}:{m['sha256'][:12]}" for m in (models if models is not None else self.models)],
            "outcome": outcome,
            "type": type,
            "status": status,
            "seconds": round(seconds, 3),
            "id": rid,
        })

    def close(self) -> None:
        self.gate.close()
        if self.audit is not None:
            self.audit.close()

    def busy(self) -> ApiError:
        seconds = self.gate.retry_after()
        return ApiError(
            429,
            "busy",
            f"all {self.gate.capacity} analysis slots are taken; retry after {seconds} s",
            headers={"Retry-After": str(seconds)},
        )

    # -- work done on the worker threads --
    def analyze(self, data: bytes, rid: str, min_score: float | None, heatmap: bool, lungs: bool,
                outputs: tuple[str, ...], dicom_min_score: float | None) -> Entry:
        from thoracic.io.radiograph import ReadConfig

        read = ReadConfig(allow_non_chest=self.settings.allow_non_chest, check_content=True)  # 422 when refused
        a = self.analyzer.analyze(data, image_id=rid, read=read, heatmap=heatmap, lungs=lungs)
        is_dicom = a.radiograph.dataset is not None
        if outputs and not is_dicom:  # a DICOM without preamble sniffed as something else
            raise not_dicom(a.radiograph.format)
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
        pred = getattr(a, "prediction", None)
        maps = _slim_prediction(pred) if getattr(pred, "map_labels", ()) else None
        if maps is not None:  # the classifier's map of one label: ?finding=<label or its slug>
            links["heatmap_finding"] = f"{base}/heatmap.png?finding={{label}}"
        entry = Entry(rid, summary, is_dicom, files, analysis=_slim(a) if is_dicom else None,
                      dicom_min_score=dicom_min_score, maps=maps)
        if outputs:
            self._build_dicom(entry)
        return entry

    def finding_heatmap(self, entry: Entry, finding: str) -> bytes:
        """The PNG of the classifier's map of ``finding`` (a label of the result's ``classifier.maps``,
        or its slug) at the display size, rendered once and kept with the result."""
        from thoracic.labels import label_slug

        maps = entry.maps
        labels = tuple(getattr(maps, "map_labels", ()))
        if not labels:
            raise ApiError(404, "not_available", "this result has no per-finding heatmaps (they need a multi-label "
                                                 "classifier with maps, and heatmap=true)")
        by_name = {**{label_slug(k): k for k in labels}, **{k.lower(): k for k in labels}}
        label = by_name.get(finding.strip().lower()) or by_name.get(label_slug(finding))
        if label is None:
            raise ApiError(404, "not_available", f"this result has no heatmap of {finding!r}; it has "
                                                 + ", ".join(labels))
        name = f"heatmap-{label_slug(label)}.png"
        with entry.lock:
            data = entry.files.get(name)
            if data is None:
                display = entry.summary.get("display") or {}
                size = (int(display.get("width", 0)), int(display.get("height", 0)))
                data = entry.files[name] = heatmap_png(maps.finding_map(label, size), size)
        self.store.resize(entry)
        return data

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


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


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


def _slim_prediction(prediction: Any) -> Any:
    """The prediction without its pixel-sized arrays (heatmap, detector feature maps): what its
    per-finding maps need (the classifier's small feature map) and its boxes."""
    try:
        return dataclasses.replace(prediction, heatmap=None, features={})
    except (TypeError, ValueError):
        return prediction


def not_dicom(fmt: str) -> ApiError:
    """422: DICOM results were asked of an upload that is not a DICOM."""
    return ApiError(
        422,
        "not_dicom",
        f"DICOM results (SR, GSPS, SEG) refer to the DICOM image they describe, and this upload is a "
        f"{fmt or 'non-DICOM'} image; upload the DICOM file to get them (findings, image.png, heatmap.png "
        "and lungs.png work for any upload)",
    )
