"""Is this a frontal chest radiograph? A check on the pixels, for inputs without a DICOM header
that could say so (and for headers that say nothing useful).

The check answers from what every reader produces (the display pixels) plus how colourful a
raster image was before it became grey:

- **colour**: more than :attr:`ContentModel.max_colour` of the pixels carry colour (a photo, a
  screenshot, a figure); a radiograph saved as RGB has equal channels.
- **pattern**: the image, with uniform borders trimmed, shrunk to a 24 x 24 thumbnail (per-image
  z-scored) and ten intensity quantiles, lies far from the frontal chest films the model was
  built on: the Mahalanobis distance in the first principal components plus the residual outside
  them, each over its median on the training films. Natural photos, pages, screenshots, CT slices
  and lateral views score high.

The model is a JSON of coefficients, ``models/content/content.json`` (built by
``scripts/build_content_check.py``; its card is ``models/content/MODEL_CARD.md``), read once per
process: no ONNX Runtime, about a millisecond per image.

>>> import numpy as np
>>> rows, cols = np.mgrid[0:256, 0:256]
>>> board = (((rows // 32) + (cols // 32)) % 2).astype(np.float32)
>>> content_score(board) > load_content_model().threshold
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from thoracic.errors import ConfigError, NotChestRadiographError

__all__ = [
    "CONTENT_MODEL_PATH",
    "ContentModel",
    "check_content",
    "colour_fraction",
    "content_features",
    "content_score",
    "load_content_model",
]

#: The shipped coefficients (package data beside the ONNX models; read as a file, nothing imported).
CONTENT_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "content" / "content.json"
_SMALL = 128  # the working size: every feature is computed on a 128 x 128 area-filtered copy
_TRIM_TOLERANCE = 0.04  # a border row/column whose values span less than this is padding
_CHROMA = 24 / 255  # a pixel "has colour" when its channels differ by more than this


def _small(pixels: np.ndarray) -> np.ndarray:
    return cv2.resize(np.asarray(pixels, dtype=np.float32), (_SMALL, _SMALL), interpolation=cv2.INTER_AREA)


def _trim(t: np.ndarray) -> np.ndarray:
    """``t`` without uniform border rows and columns (black or white padding, collimation bands)."""
    rows = np.flatnonzero(np.ptp(t, axis=1) > _TRIM_TOLERANCE)
    cols = np.flatnonzero(np.ptp(t, axis=0) > _TRIM_TOLERANCE)
    if rows.size < 8 or cols.size < 8:
        return t
    return t[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def content_features(pixels: np.ndarray, thumb: int = 24) -> np.ndarray:
    """The feature vector of display pixels (2-D, ``[0, 1]``): a ``thumb`` x ``thumb`` z-scored
    thumbnail of the trimmed image, then ten intensity quantiles (5 % .. 95 %)."""
    return _features(_small(pixels), thumb)


def _features(small: np.ndarray, thumb: int) -> np.ndarray:
    t = _trim(small)
    u = cv2.resize(t, (thumb, thumb), interpolation=cv2.INTER_AREA)
    z = (u - u.mean()) / max(float(u.std()), 1e-3)
    q = np.quantile(t, np.linspace(0.05, 0.95, 10))
    return np.concatenate([z.ravel(), q]).astype(np.float32)


def colour_fraction(rgb: np.ndarray) -> float:
    """Fraction of pixels (on a 128 x 128 copy) whose channels differ by more than 24 of 255.

    ``rgb``: ``(H, W, 3)`` in 0..255 (any dtype).
    """
    small = cv2.resize(np.asarray(rgb, dtype=np.float32), (_SMALL, _SMALL), interpolation=cv2.INTER_AREA) / 255.0
    return float((np.ptp(small, axis=2) > _CHROMA).mean())


@dataclass(frozen=True)
class ContentModel:
    """The coefficients of the content check and its operating point (see the module docstring).

    ``score = mahalanobis / mahalanobis_median + residual / residual_median``; an image scoring
    above ``threshold`` is not a frontal chest radiograph.
    """

    thumb: int
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    mahalanobis_median: float
    residual_median: float
    threshold: float
    max_colour: float
    info: dict

    @classmethod
    def from_dict(cls, data: dict) -> ContentModel:
        try:
            arr = {k: np.asarray(data[k], dtype=np.float32) for k in ("mean", "scale", "components", "variances")}
            model = cls(thumb=int(data["thumb"]), **arr,
                        mahalanobis_median=float(data["mahalanobis_median"]),
                        residual_median=float(data["residual_median"]),
                        threshold=float(data["threshold"]), max_colour=float(data["max_colour"]),
                        info=dict(data.get("info", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"not a thoracic content check model: {err}") from err
        n = model.thumb * model.thumb + 10
        if model.mean.shape != (n,) or model.components.ndim != 2 or model.components.shape[1] != n:
            raise ConfigError("not a thoracic content check model: coefficient shapes do not match")
        return model

    def to_dict(self) -> dict:
        def r(a: np.ndarray) -> list:
            return np.round(a.astype(np.float64), 5).tolist()

        return {"format": "thoracic-content/1", "thumb": self.thumb, "mean": r(self.mean), "scale": r(self.scale),
                "components": r(self.components), "variances": r(self.variances),
                "mahalanobis_median": self.mahalanobis_median, "residual_median": self.residual_median,
                "threshold": self.threshold, "max_colour": self.max_colour, "info": self.info}

    def score(self, pixels: np.ndarray) -> float:
        """How far ``pixels`` lie from frontal chest films (higher = less like one): the lower
        score of the image and of its negative, so a film whose grey scale is inverted (a
        MONOCHROME1 header over MONOCHROME2 pixels) is judged by its anatomy, not its polarity."""
        small = _small(pixels)
        return min(self._score(_features(small, self.thumb)), self._score(_features(1.0 - small, self.thumb)))

    def _score(self, features: np.ndarray) -> float:
        z = (features - self.mean) / self.scale
        c = self.components @ z
        resid = z - c @ self.components
        mahalanobis = float(np.sqrt(np.sum(c * c / self.variances) / len(c)))
        residual = float(np.sqrt(np.mean(resid * resid)))
        return mahalanobis / self.mahalanobis_median + residual / self.residual_median


@lru_cache(maxsize=4)
def load_content_model(path: str | None = None) -> ContentModel:
    """The content model at ``path`` (default: the shipped one), read once per process."""
    where = Path(path) if path else CONTENT_MODEL_PATH
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"the content check model cannot be read ({err})", path=where) from err
    return ContentModel.from_dict(data)


def content_score(pixels: np.ndarray) -> float:
    """The shipped model's score of display pixels (see :class:`ContentModel`)."""
    return load_content_model().score(pixels)


def check_content(pixels: np.ndarray, *, colour: float = 0.0, allow: bool = False, path: str | None = None,
                  model: ContentModel | None = None) -> tuple[str, ...]:
    """Refuse pixels that are not a frontal chest radiograph (unless ``allow``); the flags of what was overridden.

    Flags: ``content:colour`` (``colour``, the :func:`colour_fraction`, above the model's limit) and
    ``content:pattern`` (the score above the threshold), each as ``tag=value``.

    Raises
    ------
    thoracic.errors.NotChestRadiographError
        With ``reason`` the first tag, unless ``allow``.
    """
    model = model or load_content_model()
    problems: list[tuple[str, str]] = []
    if colour > model.max_colour:
        problems.append((f"content:colour={colour:.2f}",
                         f"{colour:.0%} of its pixels are coloured; radiographs are grey (a photo, a screenshot?)"))
    score = model.score(pixels)
    if score > model.threshold:
        problems.append((f"content:pattern={score:.2f}",
                         (f"its pixels do not look like a frontal chest radiograph (score {score:.2f} > "
                          f"{model.threshold:.2f}: a photo, a document, a CT slice, a lateral view?)")))
    if problems and not allow:
        raise NotChestRadiographError(
            "; ".join(msg for _, msg in problems) + ". Use allow_non_chest (--allow-non-chest) to analyze it anyway",
            path=path,
            reason=problems[0][0].split("=")[0],
        )
    return tuple(tag for tag, _ in problems)
