"""The SEG: the lung mask as a binary DICOM segmentation of the source image.

One segment, "Lung" (SCT 39607008, category Anatomical Structure), algorithm type AUTOMATIC,
identified by the lungs model's name, the thoracic version and the model's sha256.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from thoracic.dicom.codes import REPORT_CODES

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

from thoracic.dicom.context import ResultContext

__all__ = ["build_seg"]


def build_seg(ctx: ResultContext, series_number: int, instance_number: int) -> Dataset:
    """The binary segmentation of the lungs (``ctx.mask`` nonzero = lung, at the source size)."""
    import highdicom as hd

    mask = np.asarray(ctx.mask)
    if mask.shape != (ctx.height, ctx.width):
        from thoracic.errors import ConfigError

        raise ConfigError(f"the lung mask has shape {mask.shape}, the source image is {ctx.height} x {ctx.width}")
    name, sha = ctx.models.get("lungs", ("lungs", ""))
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"thoracic {name}",
        family=REPORT_CODES["algorithm_family"].code(),
        version=f"{ctx.thoracic_version} sha256:{sha[:16]}" if sha else ctx.thoracic_version,
        source=ctx.manufacturer,
        parameters={"sha256": sha} if sha else None,
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lung",
        segmented_property_category=REPORT_CODES["anatomical_structure"].code(),
        segmented_property_type=REPORT_CODES["lung"].code(),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=hd.UID(),
        tracking_id="lungs",
    )
    seg = hd.seg.Segmentation(
        source_images=[ctx.source],
        pixel_array=(mask > 0).astype(np.uint8)[None],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        **ctx.instance(series_number, instance_number),
        content_label="LUNGS",
        content_description="thoracic lung segmentation",
        omit_empty_frames=False,
    )
    seg.SeriesDescription = "thoracic lungs (SEG)"
    if "PatientOrientation" not in seg:  # type 2C for images without a patient position
        orientation = ctx.source.get("PatientOrientation")
        seg.PatientOrientation = orientation if orientation is not None and len(orientation) == 2 else ""
    return seg
