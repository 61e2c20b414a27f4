"""The GSPS: the boxes and their "label score" texts as graphic annotations over the source image.

One graphic layer ``FINDINGS`` holds, per box, a closed POLYLINE rectangle and a text object
anchored at the box's top-left corner; the display window (VOI) is the source's own, or the one
thoracic used when the source has none; MONOCHROME1 sources get an INVERSE presentation LUT so
they look as they do without the presentation state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

from thoracic.dicom.context import ResultContext
from thoracic.dicom.sr import box_polyline

__all__ = ["LAYER", "build_gsps", "label_text"]

#: The graphic layer of the findings.
LAYER = "FINDINGS"


def label_text(label: str, score: float) -> str:
    """The text shown next to a box.

    >>> label_text("Cardiomegaly", 0.8765)
    'Cardiomegaly 0.88'
    """
    return f"{label} {score:.2f}"


def _voi(ctx: ResultContext, hd: Any):
    source = ctx.source
    if "WindowCenter" in source or "VOILUTSequence" in source or ctx.window is None:
        return None  # highdicom copies the source's own VOI
    center, width = ctx.window
    return [hd.pr.SoftcopyVOILUTTransformation(
        window_center=float(center), window_width=max(float(width), 1.0), window_explanation="thoracic display window",
    )]


def build_gsps(ctx: ResultContext, series_number: int, instance_number: int) -> Dataset:
    """The grayscale softcopy presentation state of the findings."""
    import highdicom as hd

    source = ctx.source
    layer = hd.pr.GraphicLayer(
        layer_name=LAYER,
        order=1,
        description="thoracic findings",
        display_color=hd.color.CIELabColor(60.0, 80.0, 60.0),  # an orange-red, readable on grey
    )
    annotations = []
    if ctx.findings:
        graphics, texts = [], []
        for i, f in enumerate(ctx.findings, 1):
            graphics.append(hd.pr.GraphicObject(
                graphic_type=hd.pr.GraphicTypeValues.POLYLINE,
                graphic_data=box_polyline(f.box),
                units=hd.pr.AnnotationUnitsValues.PIXEL,
                tracking_id=f"finding-{i}",
                tracking_uid=hd.UID(),
            ))
            x0, y0 = f.box[0], f.box[1]
            texts.append(hd.pr.TextObject(
                text_value=label_text(f.label, f.score),
                units=hd.pr.AnnotationUnitsValues.PIXEL,
                anchor_point=(float(x0), float(y0)),
                anchor_point_visible=False,
                text_justification=hd.pr.TextJustificationValues.LEFT,
                tracking_id=f"finding-{i}-label",
                tracking_uid=hd.UID(),
            ))
        annotations.append(hd.pr.GraphicAnnotation(
            referenced_images=[source], graphic_layer=layer, graphic_objects=graphics, text_objects=texts,
        ))
    lut = None
    if str(source.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        lut = hd.PresentationLUTTransformation(presentation_lut_shape=hd.PresentationLUTShapeValues.INVERSE)
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[source],
        **ctx.instance(series_number, instance_number),
        content_label="THORACIC",
        content_description=f"thoracic: {len(ctx.findings)} finding(s) {ctx.selection}"[:64],
        graphic_annotations=annotations or None,
        graphic_layers=[layer],
        institution_name=ctx.institution_name,
        voi_lut_transformations=_voi(ctx, hd),
        presentation_lut_transformation=lut,
    )
    gsps.SeriesDescription = "thoracic findings (GSPS)"
    # General Series: Laterality is type 2C for paired body parts; naming the (unpaired) body part
    # lets a validator see that it is not needed
    for keyword in ("BodyPartExamined", "Laterality"):
        if keyword in ctx.source:
            setattr(gsps, keyword, ctx.source[keyword].value)
    if not gsps.get("BodyPartExamined"):
        gsps.BodyPartExamined = "CHEST"  # thoracic reads chest radiographs only
    return gsps
