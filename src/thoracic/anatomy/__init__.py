"""Anatomy: lung segmentation (a compact UNet run with ONNX Runtime) and the lung ROI crop.

Any lung segmenter is a :class:`Segmenter`; :class:`LungSegmenter` runs the shipped model.

>>> from thoracic.io import read
>>> from thoracic.anatomy import LungSegmenter
>>> seg = LungSegmenter.load()                       # doctest: +SKIP
>>> rg = read("chest.dcm")                           # doctest: +SKIP
>>> lungs = seg.segment(rg)                          # doctest: +SKIP
>>> crop = seg.crop(rg, size=512, lungs=lungs)       # doctest: +SKIP
>>> crop.transform.inverse().apply_boxes(boxes_on_crop)  # doctest: +SKIP

Training (``thoracic.train.lungs``, ``thoracic.train.unet``) needs torch and is not
imported here.
"""

from typing import TYPE_CHECKING

from thoracic._lazy import lazy

# `overlay` and `postprocess` name both a function and its module: imported here, so the function
# is what `thoracic.anatomy.overlay` is once the module has been loaded (a lazy name would lose to it)
from thoracic.anatomy.overlay import demo_panel, overlay
from thoracic.anatomy.postprocess import fill_holes, keep_largest, postprocess

if TYPE_CHECKING:
    from thoracic.anatomy.protocol import Segmenter
    from thoracic.anatomy.roi import LungRoi, RoiConfig, lung_roi, lung_roi_crop
    from thoracic.anatomy.segmenter import (
        PAPER_CHAIN,
        LungCrop,
        LungMask,
        LungSegmenter,
        default_segmenter,
        lung_roi_step,
    )
else:  # each imported when first asked for (thoracic._lazy): the segmenter does not load the drawing
    __getattr__, __dir__ = lazy(__name__, {
        "thoracic.anatomy.protocol": ("Segmenter",),
        "thoracic.anatomy.roi": ("LungRoi", "RoiConfig", "lung_roi", "lung_roi_crop"),
        "thoracic.anatomy.segmenter": ("PAPER_CHAIN", "LungCrop", "LungMask", "LungSegmenter", "default_segmenter",
                                       "lung_roi_step"),
    })

__all__ = [
    "LungCrop",
    "LungMask",
    "LungRoi",
    "LungSegmenter",
    "PAPER_CHAIN",
    "RoiConfig",
    "Segmenter",
    "default_segmenter",
    "demo_panel",
    "fill_holes",
    "keep_largest",
    "lung_roi",
    "lung_roi_crop",
    "lung_roi_step",
    "overlay",
    "postprocess",
]
