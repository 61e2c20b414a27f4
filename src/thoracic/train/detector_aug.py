"""Intensity augmentation for detector training: other devices' films, inside ultralytics' pipeline.

ultralytics moves, scales, flips and mosaics the training images (its geometric augmentation,
boxes included); it has no grey-level augmentation for a radiograph (HSV hue and saturation mean
nothing on grey, and its optional albumentations step is not installed with thoracic). This module
adds :func:`thoracic.train.augment.augment` without its geometry (window, gamma, contrast, a device's
CLAHE on some images, blur, noise, JPEG quality) as one more transform, after ultralytics' own and
before it makes tensors: :func:`detector_trainer` returns a ``DetectionTrainer`` whose training data
set carries :class:`IntensityAugment`, and keeps it when ultralytics rebuilds the transforms for its
last epochs without mosaic (``close_mosaic``).

Every image's draw comes from the run's seed and the image's own pixels (after ultralytics'
augmentation, which ``deterministic=True`` fixes), so it is the same whatever loader process or
batch order handles it.

``strength`` scales the ranges of :class:`~thoracic.train.augment.AugmentConfig` (1: the
classifier's defaults, window cut up to 10 %, gamma 0.7-1.4, contrast +-20 %, ...); the step
probabilities stay, and 0 turns the augmentation off.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import replace
from typing import Any

import numpy as np

from thoracic.errors import ConfigError
from thoracic.train.augment import AugmentConfig, augment

__all__ = ["IntensityAugment", "detector_trainer", "intensity_config"]

#: The largest strength: twice the default ranges.
MAX_STRENGTH = 2.0


def intensity_config(strength: float) -> AugmentConfig:
    """The intensity-only :class:`AugmentConfig` of a strength in ``[0, 2]`` (0: off)."""
    s = float(strength)
    if not 0.0 <= s <= MAX_STRENGTH:
        raise ConfigError(f"intensity augmentation strength must lie in [0, {MAX_STRENGTH:g}], got {strength}")
    if s == 0.0:
        return AugmentConfig.off()
    d = AugmentConfig()
    g0, g1 = d.gamma
    lo_q = round(d.jpeg_quality[1] - (d.jpeg_quality[1] - d.jpeg_quality[0]) * min(s, 1.5))
    return replace(
        d,
        p_geometry=0.0,  # ultralytics moves the boxes with its own geometry
        window=min(d.window * s, 0.3),
        gamma=(float(np.exp(np.log(g0) * s)), float(np.exp(np.log(g1) * s))),
        contrast=min(d.contrast * s, 0.6),
        clahe_clip=(d.clahe_clip[0], 1.0 + (d.clahe_clip[1] - 1.0) * s),
        blur_sigma=(d.blur_sigma[0] * s, d.blur_sigma[1] * s),
        noise_sd=(d.noise_sd[0] * s, d.noise_sd[1] * s),
        jpeg_quality=(max(5, lo_q), d.jpeg_quality[1]),
    )


class IntensityAugment:
    """An ultralytics transform (``labels -> labels``) that augments ``labels["img"]``'s grey levels.

    The image is ``H x W x 3`` ``uint8`` (grey radiographs: three equal channels) or ``H x W``;
    the first channel is augmented and repeated. Boxes are not touched.
    """

    def __init__(self, config: AugmentConfig, seed: int = 0) -> None:
        if config.p_geometry:
            raise ConfigError("IntensityAugment moves no boxes: its config needs p_geometry=0")
        self.config = config
        self.seed = int(seed)

    def rng(self, gray: np.ndarray) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(np.ascontiguousarray(gray).tobytes())])

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        img = labels["img"]
        gray = img[..., 0] if img.ndim == 3 else img
        out = augment(np.ascontiguousarray(gray), self.rng(gray), self.config)
        labels["img"] = np.repeat(out[..., None], img.shape[2], axis=2) if img.ndim == 3 else out
        return labels

    def __repr__(self) -> str:
        return f"IntensityAugment(seed={self.seed})"


def _insert(dataset: Any, step: IntensityAugment) -> None:
    """Put ``step`` just before the data set's final step (ultralytics' ``Format``: to tensors)."""
    transforms = dataset.transforms.transforms
    if not any(isinstance(t, IntensityAugment) for t in transforms):
        transforms.insert(len(transforms) - 1, step)


def _close_mosaic(dataset: Any, step: IntensityAugment, hyp: Any) -> None:
    type(dataset).close_mosaic(dataset, hyp)  # rebuilds the transforms without our step
    _insert(dataset, step)


def detector_trainer(strength: float, seed: int = 0) -> Any:
    """A ``DetectionTrainer`` subclass whose training images get :class:`IntensityAugment` (``train`` extra)."""
    from thoracic.train._ultralytics import load_ultralytics

    load_ultralytics("detector training")
    from ultralytics.models.yolo.detect import DetectionTrainer

    step = IntensityAugment(intensity_config(strength), seed)

    class ThoracicDetectionTrainer(DetectionTrainer):  # type: ignore[misc]
        def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None) -> Any:
            dataset = super().build_dataset(img_path, mode, batch)
            if mode == "train":
                _insert(dataset, step)
                dataset.close_mosaic = functools.partial(_close_mosaic, dataset, step)
            return dataset

    return ThoracicDetectionTrainer
