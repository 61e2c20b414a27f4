"""Weighted box fusion and non-maximum suppression in plain NumPy.

These are re-implementations of ``ensemble_boxes.weighted_boxes_fusion`` and
``ensemble_boxes.nms`` (ZFTurbo, MIT licence) that follow the same arithmetic step by step (the
tests prove equal results to 1e-6 on random inputs), without their numba/pandas dependencies, so
prediction can fuse models and flips with the core install.

Coordinate contract: boxes go in and come out as float ``x_min, y_min, x_max, y_max`` in pixels of
the original image; ``image_size = (width, height)`` normalizes them to 0-1 internally, exactly
as ensemble-boxes expects its inputs. Unlike ensemble-boxes, nothing is fixed silently: inverted or
non-finite boxes raise :class:`~thoracic.errors.ConfigError`, and boxes outside the image raise
too unless ``clip=True`` (then they are clipped to the image, as ensemble-boxes does). Zero-area
boxes carry no evidence and are skipped, as in ensemble-boxes.

Human readers have no scores: give each of their boxes the score 1.0 (as the VinBigData
community did when fusing the three radiologists); a cluster's score is then the share of
readers (weights) that drew it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from thoracic.errors import ConfigError

__all__ = ["CONF_TYPES", "box_iou", "nms", "nms_xyxy", "weighted_boxes_fusion"]

#: How a fused box's confidence is computed (see :func:`weighted_boxes_fusion`).
CONF_TYPES = ("absent_model_aware_avg", "avg", "box_and_model_avg", "max")

ArrayLike = Sequence | np.ndarray


def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes, as an ``(N, M)`` float64 array.

    The one IoU of thoracic (fusion, NMS, matching in evaluation, reader agreement). Areas use the
    continuous formula ``(x_max - x_min) * (y_max - y_min)`` (no ``+ 1``); a pair whose union is
    not positive (two empty boxes) or not a number has IoU 0. Inputs are not checked: callers that
    take boxes from users check them first.

    >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]]).round(4).tolist()
    [[0.3333, 0.0]]
    >>> box_iou([[0, 0, 10, 10]], [[0, 0, 4, 10]]).tolist()  # exactly 0.4 in float arithmetic
    [[0.4]]
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _size(image_size: tuple[float, float]) -> np.ndarray:
    try:
        w, h = (float(v) for v in image_size)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"image_size must be (width, height), got {image_size!r}") from err
    if not (w > 0 and h > 0 and np.isfinite(w) and np.isfinite(h)):
        raise ConfigError(f"image_size must be positive (width, height), got {image_size!r}")
    return np.array([w, h, w, h], dtype=np.float64)


def _weights(weights: ArrayLike | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != n:
        raise ConfigError(f"got {len(w)} weights for {n} box lists; give one weight per model/reader")
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ConfigError(f"weights must be positive, got {w.tolist()}")
    return w


def _normalized(
    boxes_list: Sequence[ArrayLike],
    scores_list: Sequence[ArrayLike],
    labels_list: Sequence[ArrayLike],
    image_size: tuple[float, float],
    clip: bool,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if not (len(boxes_list) == len(scores_list) == len(labels_list)):
        raise ConfigError(
            f"boxes_list, scores_list and labels_list need one entry per model: got "
            f"{len(boxes_list)}, {len(scores_list)}, {len(labels_list)}"
        )
    size = _size(image_size)
    out = []
    for t, (b, s, lab) in enumerate(zip(boxes_list, scores_list, labels_list, strict=True)):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        lab = np.asarray(lab).reshape(-1)
        if not (len(b) == len(s) == len(lab)):
            raise ConfigError(f"model {t}: {len(b)} boxes, {len(s)} scores and {len(lab)} labels; they must match")
        if not np.isfinite(b).all() or not np.isfinite(s).all():
            raise ConfigError(f"model {t}: boxes and scores must be finite")
        if ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
            raise ConfigError(f"model {t}: boxes must be x_min, y_min, x_max, y_max with x_min <= x_max, y_min <= y_max")
        nb = b / size
        outside = ((nb < 0) | (nb > 1)).any(axis=1)
        if outside.any():
            if not clip:
                raise ConfigError(
                    f"model {t}: {int(outside.sum())} box(es) extend outside the {size[0]:g}x{size[1]:g} image; "
                    "pass clip=True to clip them to the image"
                )
            nb = np.clip(nb, 0.0, 1.0)
        out.append((nb, s, lab.astype(np.int64)))
    return out


def _prefilter(models: list[tuple[np.ndarray, np.ndarray, np.ndarray]], weights: np.ndarray, thr: float) -> dict[int, np.ndarray]:
    """Rows ``[label, score * weight, weight, model, x1, y1, x2, y2]`` by label, best score first."""
    rows: dict[int, list[list[float]]] = {}
    for t, (b, s, lab) in enumerate(models):
        for j in range(len(b)):
            score = s[j]
            if score < thr:
                continue
            x1, y1, x2, y2 = (float(v) for v in b[j])
            if (x2 - x1) * (y2 - y1) == 0.0:
                continue
            label = int(lab[j])
            rows.setdefault(label, []).append([label, float(score) * weights[t], weights[t], t, x1, y1, x2, y2])
    out = {}
    for label, r in rows.items():
        arr = np.array(r)
        out[label] = arr[arr[:, 1].argsort()[::-1]]
    return out


def _weighted_box(boxes: list[np.ndarray], conf_type: str) -> np.ndarray:
    # float32 accumulation, exactly as ensemble-boxes
    box = np.zeros(8, dtype=np.float32)
    conf = 0
    conf_list = []
    w = 0
    for b in boxes:
        box[4:] += b[1] * b[4:]
        conf += b[1]
        conf_list.append(b[1])
        w += b[2]
    box[0] = boxes[0][0]
    if conf_type == "max":
        box[1] = np.array(conf_list).max()
    else:
        box[1] = conf / len(boxes)
    box[2] = w
    box[3] = -1
    box[4:] /= conf
    return box


def _best_match(clusters: np.ndarray, box: np.ndarray, iou_thr: float) -> int:
    if clusters.shape[0] == 0:
        return -1
    ious = box_iou(clusters[:, 4:], box[4:])[:, 0]
    best = int(np.argmax(ious))
    return -1 if ious[best] <= iou_thr else best


def weighted_boxes_fusion(
    boxes_list: Sequence[ArrayLike],
    scores_list: Sequence[ArrayLike],
    labels_list: Sequence[ArrayLike],
    image_size: tuple[float, float],
    *,
    weights: ArrayLike | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
    allows_overflow: bool = False,
    clip: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse the boxes of several models (or readers) into consensus boxes, label by label.

    Parameters
    ----------
    boxes_list, scores_list, labels_list:
        One entry per model: ``(N_t, 4)`` xyxy boxes in image pixels, ``(N_t,)`` scores and
        ``(N_t,)`` integer labels. Use score 1.0 for human readers.
    image_size:
        ``(width, height)`` of the image the boxes are on.
    weights:
        One weight per model (default all 1).
    iou_thr:
        A box joins the cluster whose fused box it overlaps most when that IoU is above this.
    skip_box_thr:
        Boxes with a score below this are ignored.
    conf_type:
        ``'avg'`` (mean score, scaled by the share of models that contributed), ``'max'``,
        ``'box_and_model_avg'`` or ``'absent_model_aware_avg'``, as in ensemble-boxes.
    allows_overflow:
        With ``'avg'``, let a cluster with more boxes than models score above 1.
    clip:
        Clip boxes that extend outside the image instead of refusing them.

    Returns
    -------
    boxes, scores, labels:
        ``(M, 4)`` fused xyxy boxes in image pixels, ``(M,)`` scores and ``(M,)`` int labels,
        best score first.

    Examples
    --------
    Two readers who drew nearly the same box, and one who drew another:

    >>> b, s, l = weighted_boxes_fusion(
    ...     [[[10, 10, 50, 50]], [[12, 10, 52, 50]], [[70, 70, 90, 90]]],
    ...     [[1.0], [1.0], [1.0]], [[3], [3], [3]], (100, 100), iou_thr=0.4)
    >>> b.round(2).tolist(), s.round(4).tolist(), l.tolist()
    ([[11.0, 10.0, 51.0, 50.0], [70.0, 70.0, 90.0, 90.0]], [0.6667, 0.3333], [3, 3])
    """
    if conf_type not in CONF_TYPES:
        raise ConfigError.unknown("conf_type", conf_type, CONF_TYPES)
    if not 0.0 <= iou_thr <= 1.0:
        raise ConfigError(f"iou_thr must be in [0, 1], got {iou_thr}")
    models = _normalized(boxes_list, scores_list, labels_list, image_size, clip)
    w = _weights(weights, len(models))
    size = _size(image_size)
    filtered = _prefilter(models, w, skip_box_thr)
    if not filtered:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,), dtype=np.int64)

    overall = []
    for label, boxes in filtered.items():
        clusters: list[list[np.ndarray]] = []
        fused = np.empty((0, 8))
        for j in range(len(boxes)):
            index = _best_match(fused, boxes[j], iou_thr)
            if index != -1:
                clusters[index].append(boxes[j])
                fused[index] = _weighted_box(clusters[index], conf_type)
            else:
                clusters.append([boxes[j].copy()])
                fused = np.vstack((fused, boxes[j].copy()))
        for i, members in enumerate(clusters):
            m = np.array(members)
            if conf_type == "box_and_model_avg":
                fused[i, 1] = fused[i, 1] * len(m) / fused[i, 2]
                _, idx = np.unique(m[:, 3], return_index=True)
                fused[i, 1] = fused[i, 1] * m[idx, 2].sum() / w.sum()
            elif conf_type == "absent_model_aware_avg":
                present = np.unique(m[:, 3]).astype(int)
                absent = np.ones(len(w), dtype=bool)
                absent[present] = False
                fused[i, 1] = fused[i, 1] * len(m) / (fused[i, 2] + w[absent].sum())
            elif conf_type == "max":
                fused[i, 1] = fused[i, 1] / w.max()
            elif not allows_overflow:
                fused[i, 1] = fused[i, 1] * min(len(w), len(m)) / w.sum()
            else:
                fused[i, 1] = fused[i, 1] * len(m) / w.sum()
        overall.append(fused)
    result = np.concatenate(overall, axis=0)
    result = result[result[:, 1].argsort()[::-1]]
    return result[:, 4:] * size, result[:, 1].copy(), result[:, 0].astype(np.int64)


def nms(
    boxes_list: Sequence[ArrayLike],
    scores_list: Sequence[ArrayLike],
    labels_list: Sequence[ArrayLike],
    image_size: tuple[float, float],
    *,
    weights: ArrayLike | None = None,
    iou_thr: float = 0.5,
    clip: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-wise non-maximum suppression over the boxes of all models.

    As ``ensemble_boxes.nms``: with ``weights``, each model's scores are multiplied by its weight
    and divided by the sum of weights; per label (ascending), the best box is kept and every box
    overlapping it with IoU above ``iou_thr`` is dropped. Equal scores keep the order NumPy's
    ``argsort`` gives, reversed (deterministic). Same coordinate contract and returns as
    :func:`weighted_boxes_fusion`.

    >>> b, s, l = nms([[[10, 10, 50, 50], [12, 10, 52, 50]]], [[0.9, 0.8]], [[1, 1]], (100, 100))
    >>> b.tolist(), s.tolist(), l.tolist()
    ([[10.0, 10.0, 50.0, 50.0]], [0.9], [1])
    """
    if not 0.0 <= iou_thr <= 1.0:
        raise ConfigError(f"iou_thr must be in [0, 1], got {iou_thr}")
    models = _normalized(boxes_list, scores_list, labels_list, image_size, clip)
    size = _size(image_size)
    if weights is not None:
        w = _weights(weights, len(models))
        models = [(b, s * w[t] / w.sum(), lab) for t, (b, s, lab) in enumerate(models)]
    if not models:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,), dtype=np.int64)
    boxes = np.concatenate([m[0] for m in models]).reshape(-1, 4)
    scores = np.concatenate([m[1] for m in models])
    labels = np.concatenate([m[2] for m in models])
    keep_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
    boxes, scores, labels = boxes[keep_area], scores[keep_area], labels[keep_area]
    out_b, out_s, out_l = [], [], []
    for label in np.unique(labels):
        sel = labels == label
        b, s = boxes[sel], scores[sel]
        keep = _suppress(b, s.argsort()[::-1], iou_thr)
        out_b.append(b[keep])
        out_s.append(s[keep])
        out_l.append(np.full(len(keep), label, dtype=np.int64))
    if not out_b:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,), dtype=np.int64)
    return np.concatenate(out_b) * size, np.concatenate(out_s), np.concatenate(out_l)


def _suppress(boxes: np.ndarray, order: np.ndarray, iou_thr: float) -> np.ndarray:
    """Greedy NMS: walking ``order``, keep each box not overlapping a kept one with IoU above ``iou_thr``."""
    keep: list[int] = []
    order = np.asarray(order, dtype=np.int64)
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest])[0] <= iou_thr]
    return np.asarray(keep, dtype=np.int64)


def nms_xyxy(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS (as ``torchvision.ops.nms``): indices kept, best score first, equal scores in input order.

    >>> nms_xyxy(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]]), np.array([0.8, 0.9, 0.7]), 0.5).tolist()
    [1, 2]
    """
    return _suppress(boxes, np.argsort(-np.asarray(scores), kind="stable"), iou)
