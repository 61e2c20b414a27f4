"""Lung segmentation with ONNX Runtime (no torch): radiograph in, lung mask at the original size out.

>>> from thoracic.io import read
>>> from thoracic.anatomy import LungSegmenter
>>> seg = LungSegmenter.load()                 # the shipped model  # doctest: +SKIP
>>> lungs = seg.segment(read("chest.dcm"))     # doctest: +SKIP
>>> lungs.mask.shape == lungs.image_size[::-1], lungs.lung_fraction, lungs.roi.box  # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from thoracic.anatomy.postprocess import postprocess
from thoracic.anatomy.roi import LungRoi, RoiConfig, lung_roi, lung_roi_crop
from thoracic.errors import ConfigError
from thoracic.io.radiograph import Radiograph
from thoracic.models.meta import LungsMeta
from thoracic.models.runtime import OnnxModel, load_model
from thoracic.preprocess.chain import LUNG_ROI_STEP, Chain, Step, register_chain, register_step
from thoracic.transform import Affine

__all__ = ["PAPER_CHAIN", "LungCrop", "LungMask", "LungSegmenter", "default_segmenter", "lung_roi_step"]


@dataclass(frozen=True, eq=False)
class LungMask:
    """The lungs of one radiograph.

    Attributes
    ----------
    mask:
        ``uint8`` 0/255 at the original image size (``height x width``), post-processed.
    roi:
        The lung square (:func:`~thoracic.anatomy.lung_roi`) and whether it fell back to the
        full image.
    probability:
        ``float32`` lung probability at the original size, when asked for.
    """

    image_id: str
    mask: np.ndarray = field(repr=False)
    roi: LungRoi
    components: int
    probability: np.ndarray | None = field(default=None, repr=False)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of the original image."""
        return int(self.mask.shape[1]), int(self.mask.shape[0])

    @property
    def lung_fraction(self) -> float:
        return self.roi.lung_fraction

    @property
    def fallback(self) -> bool:
        return self.roi.fallback


@dataclass(frozen=True, eq=False)
class LungCrop:
    """A radiograph cut to its lung square (:meth:`LungSegmenter.crop`).

    Attributes
    ----------
    radiograph:
        The crop as a radiograph of its own (its original size is the crop's size), with the
        source's id, source, format and normalization.
    transform:
        Original-image coordinates to the crop's; ``transform.inverse()`` maps boxes found on
        the crop back to the original image.
    lungs:
        The lungs the square was drawn around.
    """

    radiograph: Radiograph = field(repr=False)
    transform: Affine
    lungs: LungMask = field(repr=False)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The lung square in pixels of the original image (:attr:`LungRoi.box`)."""
        return self.lungs.roi.box


class LungSegmenter(OnnxModel):
    """A lung model loaded into ONNX Runtime or OpenVINO; create once and reuse (the session is thread-safe)."""

    kind = "lungs"
    meta: LungsMeta

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, threads: int = 2) -> LungSegmenter:
        """Load an ONNX lung model (default: the shipped one) and its metadata (its input contract)."""
        m = load_model(path, cls.kind, threads=threads)
        return cls(m.session, m.meta, path=m.path, sha256=m.sha256, backend=m.backend)

    @property
    def contract(self) -> LungsMeta:
        """The model's input contract and mask settings (its :attr:`meta`)."""
        return self.meta

    def predict_small(self, batch: np.ndarray) -> np.ndarray:
        """Lung probabilities at the model's input size for a ``(N, 1, H, W)`` model input."""
        out = self.session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[0][:, 0]
        if self.meta.output == "logits":
            out = 1.0 / (1.0 + np.exp(-out))
        return out.astype(np.float32)

    def probability(self, radiograph: Radiograph) -> np.ndarray:
        """Lung probability at the original image size (before post-processing)."""
        prepared = self.meta.prepare(radiograph)
        small = self.predict_small(self.meta.to_input(prepared.pixels))[0]
        w, h = radiograph.original_size
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    def segment(
        self,
        radiograph: Radiograph,
        roi: RoiConfig | None = None,
        *,
        keep_probability: bool = False,
    ) -> LungMask:
        """The post-processed lung mask at the original size, and the lung square."""
        prob = self.probability(radiograph)
        c = self.meta
        mask = postprocess(prob, c.threshold, c.keep_components, c.fill_holes)
        n = cv2.connectedComponents(mask, connectivity=8)[0] - 1  # a 0/255 uint8 mask: nonzero is lung
        return LungMask(
            image_id=radiograph.image_id,
            mask=mask,
            roi=lung_roi(mask, roi),
            components=int(n),
            probability=prob if keep_probability else None,
        )

    def crop(
        self,
        radiograph: Radiograph,
        size: int | None = None,
        roi: RoiConfig | None = None,
        *,
        lungs: LungMask | None = None,
    ) -> LungCrop:
        """Cut ``radiograph`` to its lung square: segment it (unless ``lungs`` is given), crop, resize.

        Parameters
        ----------
        radiograph:
            The image (its pixels may be decoded at a reduced resolution).
        size:
            Side of the output square; ``None`` keeps the square's side in original pixels.
        roi:
            How the square is drawn (:class:`RoiConfig`) when segmenting here.
        lungs:
            This radiograph's lungs when they are already segmented.
        """
        lungs = self.segment(radiograph, roi) if lungs is None else lungs
        pixels, transform = lung_roi_crop(radiograph, lungs.roi, size=lungs.roi.side if size is None else size)
        crop = Radiograph(pixels=pixels, image_id=radiograph.image_id, source=radiograph.source,
                          format=radiograph.format, original_width=pixels.shape[1], original_height=pixels.shape[0],
                          normalize=radiograph.normalize)
        return LungCrop(crop, transform, lungs)


_default: LungSegmenter | None = None
_lock = threading.Lock()


def default_segmenter() -> LungSegmenter:
    """The shipped lung model, loaded once per process."""
    global _default
    with _lock:
        if _default is None:
            _default = LungSegmenter.load()
        return _default


def lung_roi_step(img: np.ndarray, size: int = 512, margin: float = 0.05) -> tuple[np.ndarray, Affine]:
    """A preprocessing step: segment ``img`` (2-D, ``[0, 1]``) with the shipped model and cut out the lung square.

    Registered in :data:`thoracic.preprocess.STEPS` as ``lung_roi(size=512,margin=0.05)``: like every
    geometric step it returns the image and the transform from its input to its output. Falls back
    to the square enclosing the whole image when the mask is empty or implausible. ``size=0``
    keeps the square's side in pixels of ``img`` (how models whose metadata only said
    ``lung_crop: true`` were cropped before their chain).

    A chain with this step crops (:attr:`Chain.crops <thoracic.preprocess.Chain.crops>`); a model
    with such a chain is never cropped again (the predictor refuses ``lung_roi`` for it), and a
    chain holds the step at most once.
    """
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 2:
        raise ConfigError(f"the lung ROI step works on 2-D grayscale images, got shape {arr.shape}")
    if int(size) < 0:
        raise ConfigError(f"lung_roi size must be >= 0 (0 keeps the lung square's side), got {size}")
    h, w = arr.shape
    rg = Radiograph(pixels=arr, image_id="chain", source="chain", format="array", original_width=w, original_height=h)
    crop = default_segmenter().crop(rg, int(size) or None, RoiConfig(margin=margin))
    return crop.radiograph.pixels, crop.transform


#: The paper's full input: lung square at 512, then CLAHE at that size (as ``yolo-512-clahe`` on
#: the whole image).
PAPER_CHAIN = "lung-roi-512-clahe"

# the paper's crop as a preprocessing step and its named chains; the step segments the image it is
# given, so use it on full-size images (``thoracic/__init__`` imports this package, so every chain
# can name it). ``lung-roi-512`` is the crop alone; its description stays as it was, so that
# exports made with it still resume.
register_step(LUNG_ROI_STEP, lung_roi_step, geometric=True, params=("size", "margin"))
register_chain(Chain(
    "lung-roi-512",
    (Step.of(LUNG_ROI_STEP, size=512, margin=0.05),),
    "window",
    "The paper's input: file window, lung segmentation, smallest square around the lungs, 512x512.",
))
register_chain(Chain(
    PAPER_CHAIN,
    (Step.of(LUNG_ROI_STEP, size=512, margin=0.05), Step.of("clahe", clip_limit=2.0, tile_grid=8)),
    "window",
    "The paper's input: file window, lung segmentation, smallest square around the lungs, 512x512, "
    "then CLAHE (clip 2, 8x8 tiles) at that size.",
))
