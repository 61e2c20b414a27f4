"""Eigen-CAM and class activation maps from a feature map, mapped to original-image pixels."""

from __future__ import annotations

import cv2
import numpy as np

from thoracic.errors import ConfigError
from thoracic.transform import Affine

__all__ = ["blend", "class_activation_maps", "colorize", "eigencam", "finding_map", "to_original"]


def eigencam(feature: np.ndarray) -> np.ndarray:
    """The Eigen-CAM of a ``C x h x w`` feature map: ``h x w`` float32 in ``[0, 1]``.

    Each location's ``C``-vector is centred over all locations and projected on the first right
    singular vector. The singular vector's sign is arbitrary; it is chosen so that the map
    correlates positively with the mean activation (strongly activated places come out bright).
    Negative projections are clipped to 0 and the result scaled to ``[0, 1]``; a map without any
    variation is all zeros.

    >>> f = np.zeros((4, 3, 3), np.float32); f[:, 1, 2] = 5.0
    >>> cam = eigencam(f)
    >>> cam.shape, float(cam[1, 2]), float(cam[0, 0])
    ((3, 3), 1.0, 0.0)
    """
    f = np.asarray(feature)
    if f.ndim != 3 or min(f.shape) < 1:
        raise ConfigError(f"a feature map must be C x h x w, got shape {f.shape}")
    c, h, w = f.shape
    x = np.nan_to_num(f.reshape(c, h * w).T.astype(np.float32, copy=False))  # (hw, C)
    x = x - x.mean(axis=0, keepdims=True)
    if not np.any(x):
        return np.zeros((h, w), np.float32)
    # the first right singular vector from the small C x C Gram matrix (C is 64-256)
    gram = x.T @ x
    vals, vecs = np.linalg.eigh(gram.astype(np.float64))
    v = vecs[:, -1].astype(np.float32)
    proj = x @ v
    mean_act = f.reshape(c, h * w).mean(axis=0)
    if float(np.dot(proj - proj.mean(), mean_act - mean_act.mean())) < 0:
        proj = -proj
    proj = np.maximum(proj, 0.0)
    top = float(proj.max())
    cam = proj / top if top > 0 else np.zeros_like(proj)
    return cam.reshape(h, w).astype(np.float32)


def class_activation_maps(feature: np.ndarray, weights: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """The class activation map of every label: ``CAM_c = ReLU(sum_k w_ck F_k)`` (Zhou et al. 2016).

    ``feature`` is the ``C x h x w`` last feature map of a classifier whose head is one linear
    layer over its global average (a thoracic multi-label classifier's ``features`` output) and
    ``weights`` that layer's ``L x C`` weights (its ``cam_weights`` output). The mean of the
    unclipped map of label ``c`` plus its bias is the label's logit. Returns ``L x h x w``
    float32; with ``normalize`` each map is divided by its maximum (``[0, 1]``; a map that is
    nowhere positive is all zeros).

    >>> f = np.zeros((2, 3, 3), np.float32); f[0, 0, 0] = 1.0; f[1, 2, 2] = 1.0
    >>> cams = class_activation_maps(f, np.array([[1.0, 0.0], [0.0, 2.0]]))
    >>> cams.shape, float(cams[0, 0, 0]), float(cams[1, 2, 2]), float(cams[1, 0, 0])
    ((2, 3, 3), 1.0, 1.0, 0.0)
    """
    f = np.asarray(feature, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)
    if f.ndim != 3 or min(f.shape) < 1:
        raise ConfigError(f"a feature map must be C x h x w, got shape {f.shape}")
    if w.ndim != 2 or w.shape[1] != f.shape[0]:
        raise ConfigError(f"head weights must be L x C with C = {f.shape[0]}, got shape {w.shape}")
    c, h, wd = f.shape
    cams = np.maximum(w @ np.nan_to_num(f).reshape(c, h * wd), 0.0).reshape(w.shape[0], h, wd)
    if normalize:
        top = cams.reshape(len(cams), -1).max(axis=1)
        cams = np.divide(cams, top[:, None, None], out=np.zeros_like(cams), where=top[:, None, None] > 0)
    return cams.astype(np.float32, copy=False)


def finding_map(feature: np.ndarray, weights: np.ndarray, index: int, input_size: int | tuple[int, int],
                to_orig: Affine, size: tuple[int, int]) -> np.ndarray:
    """The class activation map of label ``index`` on the original image (``height x width``, ``[0, 1]``).

    :func:`class_activation_maps` of that label, mapped through the chain's inverse transform
    with :func:`to_original` (places the model input does not cover are 0).
    """
    w = np.asarray(weights)
    if w.ndim != 2 or not 0 <= int(index) < w.shape[0]:
        raise ConfigError(f"label index {index} is not one of the head's {w.shape[0] if w.ndim == 2 else 0} labels")
    cam = class_activation_maps(feature, w[int(index):int(index) + 1])[0]
    return to_original(cam, input_size, to_orig, size)


def to_original(cam: np.ndarray, input_size: int | tuple[int, int], to_orig: Affine,
                size: tuple[int, int]) -> np.ndarray:
    """Map a map over a model's ``input_size`` input onto the original image.

    Parameters
    ----------
    cam:
        ``h x w`` map covering the whole model input (a feature grid: each cell is a
        ``input/h``-pixel block).
    input_size:
        Side (or ``(width, height)``) of the model input in pixels.
    to_orig:
        The transform from model-input pixel coordinates to original pixels (the
        ``Prepared.to_original`` of the chain, composed with any crop's inverse).
    size:
        ``(width, height)`` of the original image.

    Returns ``height x width`` float32; places the model input does not cover are 0.
    """
    iw, ih = (input_size, input_size) if isinstance(input_size, int) else input_size
    w, h = int(size[0]), int(size[1])
    gh, gw = cam.shape
    # feature cell (i, j) covers input pixels [j*iw/gw, (j+1)*iw/gw): cell centres at (j + 0.5) * sx
    # grid -> input: x_in = (j + 0.5) * sx  in pixel-centre convention, i.e. x_in = sx * j + (sx/2)
    # pixel-edge coordinates: a point at grid-edge coordinate u maps to u * sx
    grid_to_input = Affine(iw / gw, ih / gh, 0.0, 0.0)
    m = grid_to_input.then(to_orig)
    # cv2 maps pixel centres: dst(x + 0.5) = m(src(u + 0.5)) in edge coordinates
    a = np.array([[m.sx, 0.0, m.tx + 0.5 * m.sx - 0.5], [0.0, m.sy, m.ty + 0.5 * m.sy - 0.5]], np.float64)
    # replicate the edge cells (no fading towards 0 at the borders), then blank what the input does not cover
    out = cv2.warpAffine(cam.astype(np.float32), a, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    x0, y0, x1, y1 = to_orig.apply_boxes(np.array([[0.0, 0.0, iw, ih]]))[0]
    cols = (np.arange(w) + 0.5 >= x0) & (np.arange(w) + 0.5 <= x1)
    rows = (np.arange(h) + 0.5 >= y0) & (np.arange(h) + 0.5 <= y1)
    out[~rows, :] = 0.0
    out[:, ~cols] = 0.0
    return np.clip(out, 0.0, 1.0)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """An RGB ``uint8`` picture of a ``[0, 1]`` map (the JET colour map)."""
    u8 = np.clip(np.asarray(heatmap, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def blend(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The heatmap laid over a grey (``H x W``, float ``[0, 1]`` or ``uint8``) or RGB image."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(img.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[:2] != heatmap.shape[:2]:
        raise ConfigError(f"heatmap is {heatmap.shape[1]}x{heatmap.shape[0]}, image {img.shape[1]}x{img.shape[0]}")
    colour = colorize(heatmap).astype(np.float32)
    weight = (alpha * np.asarray(heatmap, np.float32))[:, :, None]
    return np.clip(img.astype(np.float32) * (1 - weight) + colour * weight + 0.5, 0, 255).astype(np.uint8)
