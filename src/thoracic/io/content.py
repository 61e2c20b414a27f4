"""Is this a frontal chest radiograph? A check on the pixels, for inputs without a DICOM header
that could say so (and for headers that say nothing useful).

The check answers from what every reader produces (the display pixels) plus how colourful a
raster image was before it became grey:

- **colour**: more than :attr:`ContentModel.max_colour` of the pixels carry colour (a photo, a
  screenshot, a figure); a radiograph saved as RGB has equal channels.
- **pattern** (one-class): the image, with uniform borders trimmed, shrunk to a 24 x 24 thumbnail
  (per-image z-scored) and ten intensity quantiles, lies far from the frontal chest films the
  model was built on: the Mahalanobis distance in the first principal components plus the
  residual outside them, each over its median on the training films. Natural photos, pages,
  screenshots, CT slices and lateral views score high.
- **class** (discriminative): a logistic regression on :func:`shape_features` (thumbnails at two
  scales, column and row profiles, where the brightest vertical band lies, symmetry, edge
  orientations, fine detail, quantiles, aspect), trained on frontal films against negatives made
  for it (photos, pages, screens, synthetic images, CT-like slices, lateral-like films, and frontal
  films turned, halved or cut to one lung), gives P(chest); refused below the model's ``min_p_chest``.

The model is a JSON of coefficients, ``models/content/content.json`` (built by
``scripts/build_content_check.py``; its card is ``models/content/MODEL_CARD.md``), read once per
process: no ONNX Runtime, a few milliseconds per image.

>>> import numpy as np
>>> rows, cols = np.mgrid[0:256, 0:256]
>>> board = (((rows // 32) + (cols // 32)) % 2).astype(np.float32)
>>> content_score(board) > load_content_model().threshold
True
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from thoracic.errors import NON_CHEST_HINT, ConfigError, NotChestRadiographError
from thoracic.transform import longest_side_size

__all__ = [
    "CONTENT_MODEL_PATH",
    "SHAPE_FEATURES",
    "ContentModel",
    "check_content",
    "colour_fraction",
    "content_features",
    "content_score",
    "load_content_model",
    "shape_features",
    "take_shrunk",
]

#: The shipped coefficients (package data beside the ONNX models; read as a file, nothing imported).
CONTENT_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "content" / "content.json"
_SMALL = 128  # the working size: every feature is computed on a 128 x 128 area-filtered copy
_STEP = 512  # larger images are area-filtered to this longest side first (a chain's first resize)
_TRIM_TOLERANCE = 0.04  # a border row/column whose values span less than this is padding
_CHROMA = 24 / 255  # a pixel "has colour" when its channels differ by more than this


#: The last longest-side-512 image the content check made in this thread, for the chain that
#: resizes the same pixels to the same size next (:func:`take_shrunk`).
_SHRUNK = threading.local()


def _small(pixels: np.ndarray, reference_size: tuple[int, int] | None = None, *, keep: bool = False) -> np.ndarray:
    """The 128 x 128 working image: area-filtered to a longest side of 512 first when the image is
    larger (``reference_size``, the original ``(width, height)`` of pixels decoded at a reduced
    resolution, sets that size as a chain's ``resize_longest`` does), then to 128 x 128.

    The two steps give the single area filter's image to within a few thousandths (on whole
    multiples, as 1024 to 512 to 128, to float rounding); the first is the resize the detector's
    and classifier's chain makes next, so with ``keep`` it is left for :func:`take_shrunk`.
    """
    img: np.ndarray = np.asarray(pixels, dtype=np.float32)
    h, w = img.shape[:2]
    rw, rh = reference_size if reference_size is not None else (w, h)
    mw, mh = longest_side_size(rw, rh, _STEP)
    if mw < w and mh < h:
        mid = cv2.resize(img, (mw, mh), interpolation=cv2.INTER_AREA)
        if keep:
            _SHRUNK.entry = (weakref.ref(img), (mw, mh), mid)
        img = mid
    return cv2.resize(img, (_SMALL, _SMALL), interpolation=cv2.INTER_AREA)


def take_shrunk(img: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """The area-filtered ``width x height`` image of ``img`` if the content check of this thread
    just made it (then it is handed over once: the caller owns it), else ``None``."""
    entry = getattr(_SHRUNK, "entry", None)
    if entry is None:
        return None
    source, size, mid = entry
    if source() is not img or size != (int(width), int(height)):
        return None
    _SHRUNK.entry = None
    return mid


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


_LEVELS = np.linspace(0.05, 0.95, 10)


def _trimmed(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The trimmed image and its ten quantiles: what both feature sets start from."""
    t = _trim(small)
    return t, np.quantile(t, _LEVELS)


def _features(small: np.ndarray, thumb: int, trimmed: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    t, q = trimmed if trimmed is not None else _trimmed(small)
    u = cv2.resize(t, (thumb, thumb), interpolation=cv2.INTER_AREA)
    z = (u - u.mean()) / max(float(u.std()), 1e-3)
    return np.concatenate([z.ravel(), q]).astype(np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(float(np.sqrt((a * a).sum() * (b * b).sum())), 1e-6))


def shape_features(pixels: np.ndarray) -> np.ndarray:
    """The classifier's features of display pixels (2-D, ``[0, 1]``); see :func:`_shape_features`."""
    return _shape_features(_small(pixels), pixels.shape[1] / max(pixels.shape[0], 1))


def _shape_features(small: np.ndarray, aspect: float, trimmed: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """What tells a frontal chest film from a page, a CT slice, a rotated or halved film: the
    trimmed image as z-scored thumbnails (16 x 16 and 8 x 8), its column and row profiles (the
    mediastinum is a bright vertical band near the middle), where the brightest column and row
    lie, left-right and top-bottom symmetry, a histogram of edge orientations, the amount of fine
    detail, intensity quantiles, and the aspect ratios of the image and of its trimmed content."""
    t, q = trimmed if trimmed is not None else _trimmed(small)
    th, tw = t.shape
    u = cv2.resize(t, (32, 32), interpolation=cv2.INTER_AREA)
    sd = max(float(u.std()), 1e-3)
    z = (u - u.mean()) / sd
    z16 = cv2.resize(z, (16, 16), interpolation=cv2.INTER_AREA)
    z8 = cv2.resize(z, (8, 8), interpolation=cv2.INTER_AREA)
    col = z[6:26].mean(axis=0)
    row = z[:, 6:26].mean(axis=1)
    smooth = np.array([0.25, 0.5, 0.25], dtype=np.float32)
    cs, rs = np.convolve(col, smooth, mode="same"), np.convolve(row, smooth, mode="same")
    cpos, rpos = float(np.argmax(cs[2:-2]) + 2) / 31, float(np.argmax(rs[2:-2]) + 2) / 31
    g = cv2.resize(t, (64, 64), interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    weights = np.bincount(np.minimum((angle / np.pi * 8).astype(np.int64), 7).ravel(), weights=mag.ravel(), minlength=8)
    hist = weights / max(float(weights.sum()), 1e-6)
    tsd = max(float(t.std()), 1e-3)
    lap = float(np.abs(cv2.Laplacian(t, cv2.CV_32F)).mean()) / tsd
    scalars = [
        cpos, abs(cpos - 0.5), float(cs.max()), rpos, abs(rpos - 0.5), float(rs.max()),
        _corr(z, z[:, ::-1]), _corr(z, z[::-1]), float(np.abs(z - z[:, ::-1]).mean()), float(np.abs(z - z[::-1]).mean()),
        float(mag.mean()) / tsd, float((mag > 4 * tsd).mean()), lap,
        float(t.std()), float((t < 0.02).mean()), float((t > 0.98).mean()),
        float(np.log(max(aspect, 1e-3))), float(np.log(tw / th)), th * tw / small.size,
    ]
    return np.concatenate([z16.ravel(), z8.ravel(), col, row, hist, q, scalars]).astype(np.float32)


#: How many features :func:`shape_features` returns.
SHAPE_FEATURES = 256 + 64 + 32 + 32 + 8 + 10 + 19


def colour_fraction(rgb: np.ndarray) -> float:
    """Fraction of pixels (on a 128 x 128 copy) whose channels differ by more than 24 of 255.

    ``rgb``: ``(H, W, 3)`` in 0..255 (any dtype).
    """
    small = cv2.resize(np.asarray(rgb, dtype=np.float32), (_SMALL, _SMALL), interpolation=cv2.INTER_AREA) / 255.0
    return float((np.ptp(small, axis=2) > _CHROMA).mean())


@dataclass(frozen=True)
class ContentModel:
    """The coefficients of the content check and its operating points (see the module docstring).

    Two parts, each with its own threshold; an image is refused when either says so:

    - one-class (``pattern``): ``score = mahalanobis / mahalanobis_median + residual /
      residual_median``, refused above ``threshold``;
    - discriminative (``class``): ``P(chest)`` of a logistic regression on :func:`shape_features`,
      refused below ``min_p_chest``.

    Both are judged on the image and on its negative and the more chest-like answer kept, so a
    film whose grey scale is inverted (a MONOCHROME1 header over MONOCHROME2 pixels) is judged by
    its anatomy, not its polarity.
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
    lr_mean: np.ndarray | None = None
    lr_scale: np.ndarray | None = None
    lr_weights: np.ndarray | None = None
    lr_bias: float = 0.0
    min_p_chest: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> ContentModel:
        try:
            arr = {k: np.asarray(data[k], dtype=np.float32) for k in ("mean", "scale", "components", "variances")}
            lr = ({k: np.asarray(data[k], dtype=np.float32) for k in ("lr_mean", "lr_scale", "lr_weights")}
                  if "lr_weights" in data else {})
            model = cls(thumb=int(data["thumb"]), **arr,
                        mahalanobis_median=float(data["mahalanobis_median"]),
                        residual_median=float(data["residual_median"]),
                        threshold=float(data["threshold"]), max_colour=float(data["max_colour"]),
                        info=dict(data.get("info", {})), **lr,
                        lr_bias=float(data.get("lr_bias", 0.0)), min_p_chest=float(data.get("min_p_chest", 0.0)))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"not a thoracic content check model: {err}") from err
        n = model.thumb * model.thumb + 10
        if model.mean.shape != (n,) or model.components.ndim != 2 or model.components.shape[1] != n:
            raise ConfigError("not a thoracic content check model: coefficient shapes do not match")
        if model.lr_weights is not None and not (
                model.lr_weights.shape == model.lr_mean.shape == model.lr_scale.shape == (SHAPE_FEATURES,)):  # type: ignore[union-attr]
            raise ConfigError("not a thoracic content check model: the classifier's shapes do not match")
        return model

    def to_dict(self) -> dict:
        def r(a: np.ndarray) -> list:
            return np.round(a.astype(np.float64), 6).tolist()

        out = {"format": "thoracic-content/2", "thumb": self.thumb, "mean": r(self.mean), "scale": r(self.scale),
               "components": r(self.components), "variances": r(self.variances),
               "mahalanobis_median": self.mahalanobis_median, "residual_median": self.residual_median,
               "threshold": self.threshold, "max_colour": self.max_colour}
        if self.lr_weights is not None and self.lr_mean is not None and self.lr_scale is not None:
            out.update(lr_mean=r(self.lr_mean), lr_scale=r(self.lr_scale), lr_weights=r(self.lr_weights),
                       lr_bias=self.lr_bias, min_p_chest=self.min_p_chest)
        out["info"] = self.info
        return out

    def assess(self, pixels: np.ndarray, reference_size: tuple[int, int] | None = None, *,
               keep: bool = False) -> tuple[float, float]:
        """``(score, p_chest)`` of display pixels: the one-class score (higher = less like a
        frontal chest film) and the classifier's P(chest) (1.0 for a model without one).
        ``reference_size`` and ``keep``: see :func:`_small`."""
        small = _small(pixels, reference_size, keep=keep)
        aspect = pixels.shape[1] / max(pixels.shape[0], 1)
        both = [(s, _trimmed(s)) for s in (small, 1.0 - small)]  # as it is, and inverted
        score = min(self._score(_features(s, self.thumb, tq)) for s, tq in both)
        if self.lr_weights is None:
            return score, 1.0
        return score, max(self._p_chest(_shape_features(s, aspect, tq)) for s, tq in both)

    def score(self, pixels: np.ndarray) -> float:
        """The one-class score of ``pixels`` (see :meth:`assess`)."""
        small = _small(pixels)
        return min(self._score(_features(small, self.thumb)), self._score(_features(1.0 - small, self.thumb)))

    def _score(self, features: np.ndarray) -> float:
        z = (features - self.mean) / self.scale
        c = self.components @ z
        resid = z - c @ self.components
        mahalanobis = float(np.sqrt(np.sum(c * c / self.variances) / len(c)))
        residual = float(np.sqrt(np.mean(resid * resid)))
        return mahalanobis / self.mahalanobis_median + residual / self.residual_median

    def _p_chest(self, features: np.ndarray) -> float:
        assert self.lr_weights is not None and self.lr_mean is not None and self.lr_scale is not None
        logit = float(((features - self.lr_mean) / self.lr_scale) @ self.lr_weights) + self.lr_bias
        return float(1.0 / (1.0 + np.exp(-np.clip(logit, -50.0, 50.0))))


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
                  model: ContentModel | None = None, reference_size: tuple[int, int] | None = None,
                  keep: bool = False) -> tuple[str, ...]:
    """Refuse pixels that are not a frontal chest radiograph (unless ``allow``); the flags of what was overridden.

    ``reference_size``: the original ``(width, height)`` when ``pixels`` were decoded at a reduced
    resolution; ``keep``: leave the image's longest-side-512 copy to the chain that makes it next
    (:func:`take_shrunk`; :func:`thoracic.io.read` does).

    Flags: ``content:colour`` (``colour``, the :func:`colour_fraction`, above the model's limit),
    ``content:pattern`` (the one-class score above its threshold) and ``content:class`` (the
    classifier's P(chest) below its minimum), each as ``tag=value``.

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
    score, p_chest = model.assess(pixels, reference_size, keep=keep)
    if score > model.threshold:
        problems.append((f"content:pattern={score:.2f}",
                         (f"its pixels do not look like a frontal chest radiograph (score {score:.2f} > "
                          f"{model.threshold:.2f}: a photo, a document, a CT slice, a lateral view?)")))
    if p_chest < model.min_p_chest:
        problems.append((f"content:class={p_chest:.3f}",
                         (f"its pixels are not laid out as a frontal chest radiograph (P(chest) {p_chest:.3f} < "
                          f"{model.min_p_chest:.3f}: a turned, halved or cropped film, a lateral view, a page?)")))
    if problems and not allow:
        raise NotChestRadiographError(
            "; ".join(msg for _, msg in problems) + NON_CHEST_HINT,
            path=path,
            reason=problems[0][0].split("=")[0],
        )
    return tuple(tag for tag, _ in problems)
