"""The SR: a TID 1500 measurement report with one planar ROI group per box.

Content tree (``Comprehensive 3D SR``)::

    Imaging Measurement Report (TID 1500)
    ├─ Language, Observation Context: device observer "thoracic" (model name, detector sha256)
    ├─ Procedure reported: Plain chest X-ray (SCT 399208008)
    ├─ Image Library: the source radiograph
    └─ Imaging Measurements
       ├─ Measurement group (TID 1501, image level): finding "Abnormal",
       │    Probability = P(abnormal) (when a classifier ran),
       │    CAD Processing and Findings Summary = with / without findings
       ├─ with a multi-label classifier, one Measurement group (TID 1501, image level) per finding
       │    of its head: tracking id "image <label>", finding type (codes.FINDING_CODES), finding
       │    category, algorithm, Probability = the classifier's image-level probability
       └─ one Measurement group (TID 1410) per box: tracking id "finding-N <label>",
            finding type (codes.FINDING_CODES), finding category, algorithm (thoracic + sha256s),
            SCOORD closed POLYLINE (the box) on the source image, Certainty of Finding = score
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from thoracic.dicom.codes import REPORT_CODES, finding_code

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

from thoracic.dicom.context import Finding, ResultContext

__all__ = ["box_polyline", "build_sr", "note_flags"]


def box_polyline(box: tuple[float, float, float, float]) -> np.ndarray:
    """The closed polyline ``(column, row)`` of an ``xyxy`` box, as SCOORD and GSPS take it.

    Both put (0, 0) at the top-left corner of the top-left pixel and (Columns, Rows) at the
    bottom-right corner of the last one (PS3.3 C.18.6.1.2, C.10.5.1.2), exactly thoracic's box
    convention, so the corners are copied as they are.

    >>> box_polyline((0, 0, 10, 20)).tolist()
    [[0.0, 0.0], [10.0, 0.0], [10.0, 20.0], [0.0, 20.0], [0.0, 0.0]]
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)


def _algorithm(ctx: ResultContext, hd: Any):
    name, sha = ctx.models.get("detector", ("detector", ""))
    params = [f"{role}={mname} sha256:{msha}" for role, (mname, msha) in sorted(ctx.models.items())]
    return hd.sr.AlgorithmIdentification(
        name="thoracic",
        version=f"{ctx.thoracic_version} {name} sha256:{sha[:16]}",
        parameters=params or None,
        family=REPORT_CODES["algorithm_family"].code(),
        manufacturer=ctx.manufacturer,
    )


def _observer(ctx: ResultContext, hd: Any):
    from pydicom.sr.codedict import codes

    from thoracic.dicom.uids import hashed_uid

    # one device UID per (version, models): the same software gives the same observer
    identity = ctx.software_version + "|" + "|".join(f"{r}:{s}" for r, (_, s) in sorted(ctx.models.items()))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=hashed_uid(identity, b"thoracic-device"),
        name="thoracic",
        manufacturer_name=ctx.manufacturer,
        model_name=f"thoracic {ctx.thoracic_version}",
        serial_number=ctx.model_serial,
    )
    return hd.sr.ObserverContext(observer_type=codes.DCM.Device, observer_identifying_attributes=device)


def _image_group(ctx: ResultContext, hd: Any, source_image: Any, algorithm: Any):
    measurements = []
    if ctx.p_abnormal is not None:
        measurements.append(
            hd.sr.Measurement(
                name=REPORT_CODES["p_abnormal"].code(),
                value=round(float(ctx.p_abnormal), 6),
                unit=REPORT_CODES["score_unit"].code(),
            )
        )
    summary = REPORT_CODES["with_findings" if ctx.findings else "without_findings"]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="image"),
        finding_type=REPORT_CODES["abnormal"].code(),
        algorithm_id=algorithm,
        measurements=measurements or None,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=REPORT_CODES["summary"].code(), value=summary.code())
        ],
        source_images=[source_image],
    )


def _image_finding_groups(ctx: ResultContext, hd: Any, source_image: Any, algorithm: Any) -> list[Any]:
    """One image-level group per finding a multi-label classifier scored (none for a 2-class one)."""
    return [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"image {label}"[:64]),
            finding_type=finding_code(label).code(),
            finding_category=REPORT_CODES["finding_category"].code(),
            algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=REPORT_CODES["p_abnormal"].code(), value=round(float(p), 6),
                                             unit=REPORT_CODES["score_unit"].code())],
            source_images=[source_image],
        )
        for label, p in ctx.finding_probabilities.items()
    ]


def _finding_group(i: int, f: Finding, hd: Any, source: Any, algorithm: Any):
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=box_polyline(f.box),
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=source.SOPInstanceUID,
        ),
    )
    score = hd.sr.Measurement(
        name=REPORT_CODES["score"].code(),
        value=round(float(f.score), 6),
        unit=REPORT_CODES["score_unit"].code(),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"finding-{i} {f.label}"[:64]),
        referenced_region=region,
        finding_type=finding_code(f.label).code(),
        finding_category=REPORT_CODES["finding_category"].code(),
        algorithm_id=algorithm,
        measurements=[score],
    )


_PROJECTION = ("CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA")


def _library_image(source: Any) -> Any:
    """The source as the Image Library (TID 1600) describes it.

    For projection radiographs highdicom adds TID 1603 (patient orientation, imager pixel
    spacing), which needs both attributes; many CR/DX files lack ImagerPixelSpacing or leave
    PatientOrientation empty. Then the library entry is made from a copy without the Modality
    attribute's projection flag: its modality code comes from the SOP class all the same, and
    only the TID 1603 items (which the source cannot fill) are left out.
    """
    if str(source.get("Modality", "")) not in _PROJECTION:
        return source
    orientation = source.get("PatientOrientation")
    spacing = source.get("ImagerPixelSpacing")
    if orientation is not None and len(orientation) == 2 and spacing is not None and len(spacing) == 2:
        return source
    from pydicom.dataset import Dataset

    entry = Dataset()
    entry.update(source)
    entry.Modality = "OT"
    return entry


def build_sr(ctx: ResultContext, series_number: int, instance_number: int) -> Dataset:
    """The Comprehensive 3D SR of the findings (see the module docstring for its tree)."""
    import highdicom as hd

    source = ctx.source
    algorithm = _algorithm(ctx, hd)
    source_image = hd.sr.SourceImageForMeasurementGroup(
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID,
    )
    groups = [_image_group(ctx, hd, source_image, algorithm), *_image_finding_groups(ctx, hd, source_image, algorithm)]
    groups += [_finding_group(i, f, hd, source, algorithm) for i, f in enumerate(ctx.findings, 1)]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=_observer(ctx, hd)),
        procedure_reported=REPORT_CODES["procedure"].code(),
        imaging_measurements=groups,
        referenced_images=[_library_image(source)],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=ctx.manufacturer,
        institution_name=ctx.institution_name,
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    sr.SeriesDescription = "thoracic findings (SR)"
    sr.SoftwareVersions = ctx.software_version
    sr.ManufacturerModelName = "thoracic"
    return sr


def note_flags(sr: Dataset, flags: tuple[str, ...] | list[str]) -> None:
    """Say in ``sr`` that its image was flagged (read with ``allow_non_chest``: the content or
    header check would have refused it): a TEXT "Comment" (DCM 121106) in the image-level
    measurement group, naming the flags (``content:pattern=4.71``, ...). Nothing for no flags."""
    if not flags:
        return
    import highdicom as hd
    from pydicom.sr.codedict import codes

    note = hd.sr.TextContentItem(
        name=codes.DCM.Comment,
        value=("Flagged: the image may not be a frontal chest radiograph; analyzed anyway (allow non-chest). "
               "Flags: " + ", ".join(flags))[:1024],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    measurements = next(item for item in sr.ContentSequence
                        if item.ConceptNameCodeSequence[0].CodeValue == "126010")  # Imaging Measurements
    measurements.ContentSequence[0].ContentSequence.append(note)  # the image-level group
