"""Augmentations of an 8-bit model input for other hospitals and devices (numpy and cv2 only).

:func:`augment` changes one ``S x S`` ``uint8`` image (a chain's output, letterboxed) the way
another site's films differ: a small rotation and scale, a different window, gamma and
contrast, a device's own CLAHE, blur, noise and JPEG compression. Every draw comes from the
``numpy.random.Generator`` passed in, so an image's augmentation is fixed by its seed
(:func:`rng_for` gives one per seed, epoch and image, whatever the batch order).

>>> img = np.full((32, 32), 128, np.uint8)
>>> a = augment(img, rng_for(0, 0, 3)); b = augment(img, rng_for(0, 0, 3))
>>> a.shape, a.dtype, bool((a == b).all())
((32, 32), dtype('uint8'), True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from thoracic.errors import ConfigError

__all__ = ["AugmentConfig", "augment", "rng_for"]

#: The letterbox's grey: what a rotation or a shrink brings in at the borders.
PAD = 114


@dataclass(frozen=True)
class AugmentConfig:
    """How strongly :func:`augment` changes an image (each step's probability and range).

    Attributes
    ----------
    rotate:
        Largest rotation in degrees (uniform in ``[-rotate, rotate]``); with ``scale``, applied with
        probability ``p_geometry``.
    scale:
        Largest relative zoom (uniform in ``[1 - scale, 1 + scale]``).
    window:
        Largest cut of the grey range at each end (0.1: the new black point in ``[0, 0.1]``, the
        white point in ``[0.9, 1]``).
    gamma:
        Range of the gamma exponent (log-uniform).
    contrast:
        Largest relative contrast change about the mean.
    p_intensity:
        Probability of the window, gamma and contrast change (together).
    p_clahe, clahe_clip:
        Probability of a device-style CLAHE (8x8 tiles) and its clip-limit range. The model's
        chain may already apply CLAHE (``yolo-512-clahe``): then this adds a second one, as a
        site that enhances its films before sending them would; a chain without CLAHE gets the
        plain on/off.
    p_blur, blur_sigma:
        Probability of a Gaussian blur and its sigma range (pixels).
    p_noise, noise_sd:
        Probability of Gaussian noise and its standard deviation range (in ``0..1`` units).
    p_jpeg, jpeg_quality:
        Probability of a JPEG round trip and its quality range.
    """

    rotate: float = 7.0
    scale: float = 0.1
    p_geometry: float = 0.8
    window: float = 0.1
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: float = 0.2
    p_intensity: float = 0.8
    p_clahe: float = 0.3
    clahe_clip: tuple[float, float] = (1.0, 3.0)
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    p_noise: float = 0.3
    noise_sd: tuple[float, float] = (0.005, 0.03)
    p_jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)

    def __post_init__(self) -> None:
        for name in ("p_geometry", "p_intensity", "p_clahe", "p_blur", "p_noise", "p_jpeg"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"augmentation {name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.scale < 1.0 or not 0.0 <= self.window < 0.5 or not 0.0 <= self.contrast < 1.0:
            raise ConfigError("augmentation scale and contrast must lie in [0, 1), window in [0, 0.5)")
        for name in ("gamma", "clahe_clip", "blur_sigma", "noise_sd", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(f"augmentation {name} must be a range 0 <= low <= high, got {(lo, hi)}")
        if self.gamma[0] <= 0 or self.jpeg_quality[1] > 100:
            raise ConfigError("augmentation gamma must be > 0 and JPEG quality <= 100")

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all."""
        return cls(p_geometry=0.0, p_intensity=0.0, p_clahe=0.0, p_blur=0.0, p_noise=0.0, p_jpeg=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def rng_for(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of image ``index`` in ``epoch`` of a run seeded ``seed``."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None) -> np.ndarray:
    """An augmented copy of a ``uint8`` ``H x W`` image (same shape and type)."""
    cfg = config or AugmentConfig()
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ConfigError(f"augment takes a uint8 H x W image, got {img.dtype} {img.shape}")
    h, w = img.shape
    # one fixed sequence of draws per image, whatever is applied
    u = rng.random(6)
    angle, zoom = rng.uniform(-cfg.rotate, cfg.rotate), rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    lo, hi = rng.uniform(0, cfg.window), rng.uniform(1 - cfg.window, 1)
    gamma = float(np.exp(rng.uniform(np.log(cfg.gamma[0]), np.log(cfg.gamma[1]))))
    contrast = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    clip = rng.uniform(*cfg.clahe_clip)
    sigma = rng.uniform(*cfg.blur_sigma)
    noise_sd = rng.uniform(*cfg.noise_sd)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    noise_seed = int(rng.integers(0, 2**31 - 1))

    out = img
    if u[0] < cfg.p_geometry:
        m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), float(angle), float(zoom))
        out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=PAD)
    if u[1] < cfg.p_intensity:
        x = out.astype(np.float32) / 255.0
        x = np.clip((x - lo) / (hi - lo), 0.0, 1.0) ** gamma
        x = np.clip((x - x.mean()) * contrast + x.mean(), 0.0, 1.0)
        out = (x * 255.0 + 0.5).astype(np.uint8)
    if u[2] < cfg.p_clahe:
        out = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(8, 8)).apply(out)
    if u[3] < cfg.p_blur and sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), float(sigma))
    if u[4] < cfg.p_noise and noise_sd > 0:
        noise = np.random.default_rng(noise_seed).normal(0.0, noise_sd * 255.0, out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if u[5] < cfg.p_jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return np.ascontiguousarray(out)
