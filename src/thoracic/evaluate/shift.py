"""The shift test: the same images as other devices would deliver them, scored beside the clean ones.

A detector that learnt one hospital's films can fail on another's for reasons that have nothing to
do with the patient: another window, another bit depth, a smaller matrix, a portable film's flat
look, a patient not quite straight. :func:`shift_test` predicts every image of a truth table once as
it is (``clean``) and once per shift, each shifted image delivered as a file (PNG, or a DICOM for
``dicom-12bit``) and read back through :func:`thoracic.io.read` as any input is, and scores each
condition with :func:`thoracic.evaluate.evaluate` (Kaggle mAP@0.4, findings-only mAP, AP per finding).

The shifts (:data:`SHIFTS`; each starts from the display read of the image, ``[0, 1]`` white = dense):

- ``window-narrow``: a narrower VOI window, the central 70 % of the grey range (darks and brights clip);
- ``window-wide``: a wider one, the grey range into 15-85 % (a flat, low-contrast film);
- ``dicom-12bit``: the pixels written as a 12-bit MONOCHROME2 DICOM (DX, 0-4095, its full-range
  window in the header), read back by ``thoracic.io``;
- ``half-resolution``: downsampled by 2 (area) and back (bilinear), as a lower-resolution detector
  then resized;
- ``portable``: gamma 1.4, contrast reduced to 70 % about the mean and Gaussian noise (sd 2 % of the
  range, seeded per image): a bedside film;
- ``rotate-5``: rotated 5 degrees (counter-clockwise) about the centre on the same canvas, black
  corners; the truth boxes are rotated too (the box enclosing each rotated box, clipped to the
  image), so the truth is somewhat looser than the original.

Every shift is deterministic (the noise from ``seed`` and the image id).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import cv2
import numpy as np

from thoracic.data.annotations import Annotations
from thoracic.errors import ConfigError, ThoracicError
from thoracic.labels import NO_FINDING

__all__ = [
    "CLEAN",
    "DEFAULT_SHIFTS",
    "SHIFTS",
    "ShiftResult",
    "ShiftedImage",
    "dicom_12bit",
    "render_shift",
    "rotation_matrix",
    "shift_boxes",
    "shift_test",
]

CLEAN = "clean"
#: Every shift by name, with what it imitates.
SHIFTS: Mapping[str, str] = MappingProxyType(
    {
        "window-narrow": "narrower VOI window (central 70 % of the range)",
        "window-wide": "wider VOI window (range into 15-85 %)",
        "dicom-12bit": "12-bit DICOM round trip through thoracic.io",
        "half-resolution": "downsampled by 2 and back",
        "portable": "portable look: gamma 1.4, contrast x0.7, noise sd 0.02",
        "rotate-5": "rotated 5 degrees",
    }
)
DEFAULT_SHIFTS: tuple[str, ...] = tuple(SHIFTS)

_ANGLE = 5.0


@dataclass(frozen=True)
class ShiftedImage:
    """One image as a shift delivers it: the file's bytes, its suffix, and the truth boxes mapped."""

    data: bytes
    suffix: str
    boxes: np.ndarray


def _png(x: np.ndarray) -> bytes:
    img = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise ConfigError("PNG encoding failed")
    return buf.tobytes()


def dicom_12bit(pixels: np.ndarray) -> bytes:
    """``[0, 1]`` pixels as a 12-bit MONOCHROME2 DX DICOM (uncompressed, explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    dx = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    values = np.clip(np.rint(np.asarray(pixels, dtype=np.float64) * 4095.0), 0, 4095).astype("<u2")
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = dx
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["thoracic-shift", values.tobytes()[:4096].hex()])
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = dx
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = values.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def rotation_matrix(width: int, height: int, degrees: float = _ANGLE) -> np.ndarray:
    """The ``2 x 3`` matrix rotating an image ``degrees`` counter-clockwise about its centre (cv2's convention)."""
    return cv2.getRotationMatrix2D((width / 2 - 0.5, height / 2 - 0.5), float(degrees), 1.0)


def shift_boxes(name: str, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Truth boxes ``(N, 4)`` xyxy in the image a shift delivers (only the rotation moves them).

    A rotated box becomes the box enclosing its four rotated corners, clipped to the image.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if name != "rotate-5" or not len(b):
        return b.copy()
    m = rotation_matrix(width, height)
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)  # (N, 4, 2)
    pts = corners @ m[:, :2].T + m[:, 2]
    out = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def render_shift(name: str, pixels: np.ndarray, boxes: np.ndarray | None = None, *, seed: int = 0,
                 key: str = "") -> ShiftedImage:
    """One image as shift ``name`` delivers it (see the module docstring).

    Parameters
    ----------
    pixels:
        ``H x W`` float in ``[0, 1]`` (a :class:`~thoracic.io.Radiograph`'s pixels).
    boxes:
        ``(N, 4)`` xyxy truth boxes in the image's pixels (mapped for ``rotate-5``).
    seed, key:
        The noise of ``portable`` comes from both (``key``: the image id).

    Raises
    ------
    ConfigError
        An unknown shift or pixels that are not a 2-D image.
    """
    if name not in SHIFTS:
        raise ConfigError.unknown("shift", name, SHIFTS)
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim != 2 or x.size == 0:
        raise ConfigError(f"a shift takes an H x W image, got shape {x.shape}")
    x = np.clip(np.nan_to_num(x), 0.0, 1.0)
    h, w = x.shape
    b = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if name == "dicom-12bit":
        return ShiftedImage(dicom_12bit(x), ".dcm", b.copy())
    if name == "window-narrow":
        y = np.clip((x - 0.15) / 0.7, 0.0, 1.0)
    elif name == "window-wide":
        y = 0.15 + 0.7 * x
    elif name == "half-resolution":
        small = cv2.resize(x, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
        y = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    elif name == "portable":
        rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
        y = x ** 1.4
        y = (y - y.mean()) * 0.7 + y.mean()
        y = y + rng.normal(0.0, 0.02, y.shape).astype(np.float32)
    else:  # rotate-5
        y = cv2.warpAffine(x, rotation_matrix(w, h), (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return ShiftedImage(_png(np.clip(y, 0.0, 1.0)), ".png", shift_boxes(name, b, w, h))


class _Predicts(Protocol):
    def predict(self, src: Any, *, image_id: str | None = None) -> Any: ...


@dataclass(frozen=True)
class ShiftResult:
    """Scores per condition (``clean`` first), as :func:`thoracic.evaluate.evaluate` gives them.

    ``rows[condition]`` holds ``images``, ``kaggle_map``, ``findings_map``, ``per_class_ap``,
    ``failed`` (images the condition could not predict: read or refused, scored as misses) and,
    for every shift, ``drop`` and ``drop_pct`` of the Kaggle mAP against ``clean``.
    """

    rows: Mapping[str, Mapping[str, Any]]
    failures: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"conditions": {k: dict(v) for k, v in self.rows.items()},
                "failures": {k: list(v) for k, v in self.failures.items()}}

    def markdown(self) -> str:
        """The table: one row per condition, the mAPs, the drop, then AP per finding."""
        labels = sorted({lab for r in self.rows.values() for lab in r["per_class_ap"] if lab != NO_FINDING})
        head = ["condition", "Kaggle mAP@0.4", "change", "findings mAP", "findings change", *labels, "failed"]
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, r in self.rows.items():
            ap = r["per_class_ap"]
            cells = [name, _f(r["kaggle_map"]), _pct(r.get("drop_pct")), _f(r["findings_map"]),
                     _pct(r.get("findings_drop_pct")), *(_f(ap.get(lab)) for lab in labels), str(r["failed"])]
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out) + "\n"


def _f(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f}"


def _pct(v: Any) -> str:
    return "" if v is None else f"{float(v):+.1f} %"


def _rows_of(iid: str, pred: Any) -> list[tuple]:
    det = pred.detections
    rows: list[tuple] = [(iid, lab, *b, "", float(s)) for lab, s, b in zip(det.labels, det.scores.tolist(), det.boxes.tolist(), strict=True)]
    rows.append((iid, NO_FINDING, 0.0, 0.0, 1.0, 1.0, "", float(pred.no_finding_score)))
    return rows


def _score(truth: Annotations, rows: list[tuple]) -> dict[str, Any]:
    from thoracic.evaluate.evaluate import EvaluationConfig, evaluate

    preds = Annotations.from_rows(truth.images, rows, name="shift")
    m = evaluate(truth, preds, EvaluationConfig(bootstrap=0, coco=False)).metrics
    findings = [v for k, v in m["ap"].items() if k != NO_FINDING and v is not None]
    return {"images": m["images"], "kaggle_map": m["map"],
            "findings_map": float(np.mean(findings)) if findings else None, "per_class_ap": dict(m["ap"])}


def shift_test(
    predictor: _Predicts,
    truth: Annotations,
    shifts: Sequence[str] = DEFAULT_SHIFTS,
    *,
    seed: int = 0,
    read: Callable[[str], np.ndarray] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ShiftResult:
    """Predict every image of ``truth`` clean and under each shift; score each condition.

    Parameters
    ----------
    predictor:
        A :class:`~thoracic.inference.Predictor` (its detectors, TTA, classifier as configured).
    truth:
        The truth (fuse readers first); every image needs its ``source`` file. Only images with
        rows are scored (as ``thoracic evaluate`` does with a truth CSV).
    shifts:
        Names from :data:`SHIFTS`.
    read:
        ``source -> [0, 1] pixels`` the shifts start from (default: :func:`thoracic.io.read`'s
        display read).
    progress:
        Called with ``(condition, done, total)`` after each image.

    Raises
    ------
    ConfigError
        An unknown shift, an empty truth, or an image without a source file.
    """
    for s in shifts:
        if s not in SHIFTS:
            raise ConfigError.unknown("shift", s, SHIFTS)
    ids = sorted(set(truth.image_id.tolist()))
    if not ids:
        raise ConfigError("the truth has no rows: nothing to score")
    truth = truth.select_images(ids)
    no_source = [i for i in ids if not truth.images[i].source]
    if no_source:
        raise ConfigError(f"{len(no_source)} truth image(s) have no image file, e.g. {no_source[0]} (give the image folder)")
    if read is None:
        from thoracic.io import read as io_read

        def read(src: str) -> np.ndarray:
            return io_read(src).pixels

    conditions = [CLEAN, *shifts]
    rows: dict[str, list[tuple]] = {c: [] for c in conditions}
    truth_rows: dict[str, list[tuple]] = {c: [] for c in conditions}
    failures: dict[str, list[str]] = {c: [] for c in conditions}
    for n, iid in enumerate(ids, 1):
        src = str(truth.images[iid].source)
        sel = np.flatnonzero(truth.image_id == iid)
        pixels: np.ndarray | None = None
        for c in conditions:
            box = truth.boxes[sel]
            finding = truth.label[sel] != NO_FINDING
            try:
                if c == CLEAN:
                    pred = predictor.predict(src, image_id=iid)
                else:
                    if pixels is None:
                        pixels = read(src)
                    shifted = render_shift(c, pixels, box[finding], seed=seed, key=iid)
                    box = box.copy()
                    box[finding] = shifted.boxes
                    pred = predictor.predict(shifted.data, image_id=iid)
                rows[c].extend(_rows_of(iid, pred))
            except ThoracicError as err:
                failures[c].append(f"{iid}: {err}")
            for j, k in enumerate(sel):
                truth_rows[c].append((iid, truth.label[k], *box[j], truth.reader[k]))
            if progress is not None:
                progress(c, n, len(ids))
    out: dict[str, dict[str, Any]] = {}
    for c in conditions:
        t = Annotations.from_rows(truth.images, truth_rows[c], name=f"truth-{c}")
        out[c] = {**_score(t, rows[c]), "failed": len(failures[c])}
    base, base_f = out[CLEAN]["kaggle_map"], out[CLEAN]["findings_map"]
    for c in shifts:
        r = out[c]
        r["drop"] = base - r["kaggle_map"]
        r["drop_pct"] = 100.0 * (r["kaggle_map"] - base) / base if base else None
        r["findings_drop_pct"] = (100.0 * (r["findings_map"] - base_f) / base_f
                                  if base_f and r["findings_map"] is not None else None)
    return ShiftResult(out, {c: tuple(v) for c, v in failures.items() if v})
