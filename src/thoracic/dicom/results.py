"""The three DICOM result objects of one analysis, built together and saved together.

:func:`build_results` turns an :class:`~thoracic.inference.analyzer.Analysis` of a DICOM radiograph into:

- an SR (Comprehensive 3D SR, TID 1500 measurement report): one finding per box with its coded
  concept, its region (SCOORD rectangle on the source image), its score and the algorithm;
- a GSPS (grayscale softcopy presentation state): the boxes and "label score" texts as graphic
  annotations, so any viewer shows them over the source image;
- a SEG (binary segmentation): the lung mask, when the analysis has one.

All three share the source's Study Instance UID and patient, each in a new series.
"""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from thoracic.dicom.context import DEFAULT_MIN_SCORE, DEFAULT_SERIES_NUMBER, OBJECTS, Finding, ResultContext
from thoracic.dicom.errors import NotDicomSourceError
from thoracic.dicom.uids import safe_uid_name
from thoracic.errors import ConfigError, MissingDependencyError, ReadError
from thoracic.labels import FINDINGS

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from thoracic.inference.analyzer import Analysis

__all__ = ["DEFAULT_MIN_SCORE", "DicomResults", "Finding", "ResultContext", "build_results"]


@dataclass(frozen=True, eq=False)
class DicomResults:
    """The DICOM result objects of one analysis.

    Attributes
    ----------
    sr:
        The Comprehensive 3D SR measurement report (TID 1500), or ``None`` if not asked for.
    gsps:
        The grayscale softcopy presentation state with the boxes, or ``None`` if not asked for.
    seg:
        The lung segmentation, or ``None`` when the analysis has no lung mask (or not asked for).
    findings:
        The boxes the SR and GSPS carry (the analysis's clinical findings: each above its
        operating point, or ``min_score`` when given, overlapping boxes of one finding merged;
        best first, clipped to the image).
    """

    sr: Dataset | None = field(default=None, repr=False)
    gsps: Dataset | None = field(default=None, repr=False)
    seg: Dataset | None = field(default=None, repr=False)
    findings: tuple[Finding, ...] = ()

    def datasets(self) -> dict[str, Dataset]:
        """The objects that exist, by kind (``"sr"``, ``"gsps"``, ``"seg"``)."""
        return {k: ds for k, ds in (("sr", self.sr), ("gsps", self.gsps), ("seg", self.seg)) if ds is not None}

    def save(self, folder: str | PathLike[str]) -> dict[str, Path]:
        """Write each object as ``<SOP Instance UID>.dcm`` into ``folder`` (created if needed).

        The UIDs are checked by :func:`~thoracic.dicom.safe_uid_name` (digits and dots only), so a
        name can never leave ``folder``. Returns the path written for each kind.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        named = {kind: out / safe_uid_name(ds.SOPInstanceUID) for kind, ds in self.datasets().items()}
        written: dict[str, Path] = {}
        for kind, ds in self.datasets().items():
            path = named[kind]
            tmp = path.with_name(path.name + ".part")
            ds.save_as(tmp, enforce_file_format=True)
            tmp.replace(path)
            written[kind] = path
        return written


def _highdicom():
    try:
        import highdicom
    except ImportError as err:
        raise MissingDependencyError.for_feature("DICOM results (SR, GSPS, SEG)", "highdicom", "dicom") from err
    return highdicom


def _findings(analysis: Analysis, min_score: float | None, max_findings: int) -> tuple[Finding, ...]:
    """The clinical findings (:meth:`Analysis.clinical <thoracic.inference.analyzer.Analysis.clinical>`),
    best first, clipped to the image (a DICOM coordinate cannot leave it)."""
    det = analysis.clinical(min_score)
    w, h = float(analysis.width), float(analysis.height)
    out = []
    for box, score, cid in zip(det.boxes.tolist(), det.scores.tolist(), det.class_ids.tolist(), strict=True):
        if not 0 <= int(cid) < len(FINDINGS) or not np.all(np.isfinite(box)):
            continue
        x0, y0, x1, y1 = (min(max(float(v), 0.0), lim) for v, lim in zip(box, (w, h, w, h), strict=True))
        if x1 <= x0 or y1 <= y0:
            continue  # nothing of the box lies on the image
        out.append(Finding(FINDINGS[int(cid)], int(cid), float(score), (x0, y0, x1, y1)))
    out.sort(key=lambda f: -f.score)
    return tuple(out[:max_findings])


def _source_header(analysis: Analysis, source: Any) -> Any:
    import pydicom

    if source is not None:
        if isinstance(source, pydicom.Dataset):
            return source
        from pydicom.errors import InvalidDicomError

        try:
            return pydicom.dcmread(source, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as err:
            raise ReadError(f"cannot read the source DICOM header ({type(err).__name__})", path=source) from err
    ds = getattr(analysis.radiograph, "dataset", None)
    if ds is None:
        raise NotDicomSourceError(
            f"image {analysis.image_id!r} was not read from a DICOM file ({analysis.radiograph.format}); "
            "DICOM results (SR, GSPS, SEG) need a DICOM source: analyze the DICOM, or use the JSON/PNG outputs",
            path=analysis.radiograph.source or None,
        )
    return ds


def build_results(
    analysis: Analysis,
    *,
    min_score: float | None = None,
    max_findings: int = 100,
    objects: Iterable[str] = OBJECTS,
    series_number: int = DEFAULT_SERIES_NUMBER,
    instance_number: int = 1,
    manufacturer: str = "thoracic",
    institution_name: str | None = None,
    deidentify: bool = False,
    salt: str | bytes | None = None,
    source: Dataset | str | PathLike[str] | None = None,
) -> DicomResults:
    """Build the SR, GSPS and SEG of an analysis of a DICOM radiograph.

    Parameters
    ----------
    analysis:
        The result of :meth:`thoracic.inference.analyzer.Analyzer.analyze` on a DICOM file.
    min_score:
        ``None`` (default): the SR and GSPS carry the analysis's clinical findings, each finding
        above the operating point stored in the detector's metadata (every finding at
        :data:`DEFAULT_MIN_SCORE` for a model without them), overlapping boxes of one finding
        merged (:mod:`thoracic.detect.clinical`). A score: every finding from this score instead.
    max_findings:
        At most this many boxes (the best ones).
    objects:
        Which objects to build, among ``"sr"``, ``"gsps"``, ``"seg"``.
    series_number:
        The SR's series number; the GSPS takes the next one and the SEG the one after.
    instance_number, manufacturer, institution_name:
        Written into every object (``institution_name`` is left out when de-identifying).
    deidentify:
        Build the objects from the de-identified source header (:func:`thoracic.dicom.deidentify`
        with the same ``salt``): patient and study attributes are dummies and every reference
        points to the source's hashed UIDs, exactly those of :func:`thoracic.dicom.deidentify_file`
        applied to the source with that ``salt``.
    salt:
        The secret of the hashed UIDs (see :func:`thoracic.dicom.deidentify`).
    source:
        The source header (a dataset or a path) to use instead of ``analysis.radiograph.dataset``.

    Raises
    ------
    NotDicomSourceError
        The analysis came from a PNG/JPEG (no DICOM header to refer to).
    ConfigError
        An unknown object kind or a bad setting.
    MissingDependencyError
        highdicom is not installed (``pip install 'thoracic[dicom]'``).

    Examples
    --------
    >>> from thoracic.inference.analyzer import Analyzer                    # doctest: +SKIP
    >>> a = Analyzer.load().analyze("chest.dcm")                 # doctest: +SKIP
    >>> results = build_results(a, min_score=0.3)                # doctest: +SKIP
    >>> paths = results.save("out/")   # {"sr": out/<uid>.dcm, "gsps": ..., "seg": ...}  # doctest: +SKIP
    """
    kinds = tuple(dict.fromkeys(objects))
    for kind in kinds:
        if kind not in OBJECTS:
            raise ConfigError.unknown("DICOM result object", str(kind), OBJECTS)
    if min_score is not None and not 0.0 <= float(min_score) <= 1.0:
        raise ConfigError(f"min_score must lie in [0, 1], got {min_score}")
    if max_findings < 0:
        raise ConfigError(f"max_findings must not be negative, got {max_findings}")
    if not 1 <= series_number <= 2**31 - 3 or not 1 <= instance_number < 2**31:
        raise ConfigError("series_number and instance_number must be positive 32-bit integers")
    header = _source_header(analysis, source)
    _highdicom()
    from thoracic.dicom import gsps as gsps_mod
    from thoracic.dicom import seg as seg_mod
    from thoracic.dicom import sr as sr_mod
    from thoracic.dicom.deid import deidentify as deid

    header = _prepare_header(header)
    if deidentify:
        header = deid(header, salt=salt)
        institution_name = None
    _check_header(header, analysis)
    mask = analysis.lungs.mask if analysis.lungs is not None else None
    pred = analysis.prediction
    ctx = ResultContext(
        source=header,
        findings=_findings(analysis, None if min_score is None else float(min_score), int(max_findings)),
        p_abnormal=None if pred.p_abnormal is None else float(pred.p_abnormal),
        no_finding_score=float(pred.no_finding_score),
        filtered=bool(pred.filtered),
        mask=mask,
        models={m.role: (m.name, m.sha256) for m in analysis.models},
        thoracic_version=str(analysis.thoracic_version),
        manufacturer=manufacturer,
        institution_name=institution_name,
        selection=analysis.points(None if min_score is None else float(min_score)).describe(),
        window=_window(analysis.radiograph),
        finding_probabilities=dict(getattr(pred, "finding_probabilities", None) or {}),
    )
    sr = sr_mod.build_sr(ctx, series_number, instance_number) if "sr" in kinds else None
    if sr is not None:
        sr_mod.note_flags(sr, analysis.radiograph.flags)
    gsps = gsps_mod.build_gsps(ctx, series_number + 1, instance_number) if "gsps" in kinds else None
    seg = seg_mod.build_seg(ctx, series_number + 2, instance_number) if "seg" in kinds and mask is not None else None
    if deidentify:
        for ds in (sr, gsps, seg):
            if ds is not None:
                _mark_deidentified(ds, header)
    return DicomResults(sr=sr, gsps=gsps, seg=seg, findings=ctx.findings)


#: Patient and study attributes highdicom copies from the source (type 2: may be empty, not absent).
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")


def _prepare_header(ds: Any) -> Any:
    """A copy of the source header with the type 2 attributes highdicom reads present.

    A person name of one component without ``^`` ("ward") is the retired PN form; it is written
    as the same name with the separator ("ward^": family name "ward"), which highdicom and
    validators accept without a warning.
    """
    out = copy.deepcopy(ds)
    _drop_invalid(out)
    for elem in out:
        if elem.VR == "PN" and elem.value not in (None, ""):
            names = [str(v) for v in (elem.value if elem.VM > 1 else [elem.value])]
            fixed = [n + "^" if n and "^" not in n and "=" not in n else n for n in names]
            if fixed != names:
                elem.value = fixed if elem.VM > 1 else fixed[0]
    for keyword in _TYPE2:
        if keyword not in out:
            setattr(out, keyword, "")
    if "SamplesPerPixel" not in out:
        out.SamplesPerPixel = 1
    return out


_VALID = {"AS": re.compile(r"\d{3}[DWMY]"), "DA": re.compile(r"\d{8}"),
          "TM": re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")}


def _real_date(vr: str, value: str) -> bool:
    """A DA value is a calendar date (``19231317`` has the right form but month 13)."""
    if vr != "DA":
        return True
    try:
        datetime.datetime.strptime(value, "%Y%m%d")
    except ValueError:
        return False
    return True


def _drop_invalid(ds: Any) -> None:
    """Remove source values the results would copy but that their VR forbids (e.g. an age "62").

    Also drops a pixel spacing with a zero or non-finite value (some CR writers put 0\\0),
    which would otherwise be copied into the SEG as a meaningless geometry.
    """
    for elem in list(ds):
        if elem.VR in _VALID and elem.value not in (None, ""):
            values = elem.value if elem.VM > 1 else [elem.value]
            if not all(_VALID[elem.VR].fullmatch(str(v).strip()) and _real_date(elem.VR, str(v).strip())
                       for v in values):
                del ds[elem.tag]
    # an enumerated patient sex other than M, F, O (e.g. "zebediah") is dropped: it is type 2, so empty
    if str(ds.get("PatientSex", "") or "").strip() not in ("", "M", "F", "O"):
        del ds["PatientSex"]
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is None:
            continue
        try:
            ok = len(value) == 2 and all(np.isfinite(float(v)) and float(v) > 0 for v in value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            del ds[keyword]


def _mark_deidentified(ds: Any, header: Any) -> None:
    """Carry the de-identification attributes of the source onto a result object.

    The object's own dates (when it was made, so about when the patient was imaged) get the same
    treatment as the image's: dummies where required, removed where optional.
    """
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
                    "LongitudinalTemporalInformationModified"):
        if keyword in header:
            setattr(ds, keyword, copy.deepcopy(header[keyword].value))
    for keyword, dummy in (("ContentDate", "19000101"), ("ContentTime", "000000"),
                           ("PresentationCreationDate", "19000101"), ("PresentationCreationTime", "000000")):
        if keyword in ds:
            setattr(ds, keyword, dummy)
    for keyword in ("InstanceCreationDate", "InstanceCreationTime", "SeriesDate", "SeriesTime",
                    "AcquisitionDateTime"):
        if keyword in ds:
            del ds[keyword]
    for item in ds.get("ContributingEquipmentSequence", []):  # highdicom stamps its contribution
        if "ContributionDateTime" in item:
            del item.ContributionDateTime


def _window(rg: Any) -> tuple[float, float] | None:
    c, w = getattr(rg, "window_center", None), getattr(rg, "window_width", None)
    if c is None or w is None or not np.isfinite(c) or not np.isfinite(w) or w <= 0:
        return None
    return float(c), float(w)


def _check_header(ds: Any, analysis: Analysis) -> None:
    from thoracic.dicom.uids import is_valid_uid

    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not is_valid_uid(str(ds.get(keyword, ""))):
            raise NotDicomSourceError(
                f"the source DICOM has no valid {keyword}; DICOM results cannot refer to it",
                path=analysis.radiograph.source or None,
            )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as err:
        raise NotDicomSourceError("the source DICOM has no Rows/Columns",
                                  path=analysis.radiograph.source or None) from err
    if (cols, rows) != (analysis.width, analysis.height):
        raise ConfigError(
            f"the source header is {cols}x{rows} but the analysis is {analysis.width}x{analysis.height}; "
            "pass the header of the analyzed image"
        )
