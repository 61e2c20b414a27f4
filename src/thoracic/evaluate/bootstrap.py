"""Bootstrap confidence intervals over images, vectorized.

Resampling images with replacement is expressed as integer weights: row ``b`` of the weight
matrix says how many times each image was drawn in resample ``b``. Matching is done per image,
so it does not change under resampling; every metric becomes a weighted sum over the same sorted
arrays, computed for a chunk of resamples at once. Weighted AP equals the AP of the data with each
image's rows repeated ``weight`` times (repeats of a hit raise precision along the way, so only
the last repeat's point matters, and repeats of a false positive lie below the envelope).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from thoracic.errors import ConfigError

__all__ = [
    "bootstrap_intervals",
    "resample_weights",
    "weighted_ap",
    "weighted_auc",
    "weighted_froc",
]

_CHUNK = 50


def resample_weights(n: int, resamples: int, seed: int, chunk: int = _CHUNK) -> Iterator[np.ndarray]:
    """Yield ``(<= chunk, n)`` int32 draw counts, ``resamples`` rows in all, reproducibly.

    Each row is a multinomial draw of ``n`` images with equal probability (sampling with
    replacement). The sequence depends only on ``n``, ``resamples``, ``seed`` and ``chunk``.
    """
    if n <= 0:
        raise ConfigError("the bootstrap needs at least one image")
    rng = np.random.default_rng(seed)
    p = np.full(n, 1.0 / n)
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        yield rng.multinomial(n, p, size=k).astype(np.int32)
        done += k


def weighted_ap(w: np.ndarray, hits: np.ndarray, n_truth: np.ndarray) -> np.ndarray:
    """VOC all-point AP per resample.

    Parameters
    ----------
    w:
        ``(B, K)`` weights of the class's predictions, already in ranking order (descending
        score, ties in input order).
    hits:
        ``(K,)`` bool, true positives.
    n_truth:
        ``(B,)`` weighted number of truth boxes of the class.

    Returns
    -------
    ``(B,)`` AP; ``nan`` where ``n_truth`` is 0.
    """
    w = w.astype(np.float64)
    tp = np.cumsum(w * hits, axis=1)
    fp = np.cumsum(w * ~hits, axis=1)
    n = tp + fp
    prec = np.divide(tp, n, out=np.zeros_like(tp), where=n > 0)
    env = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
    total = (env * w * hits).sum(axis=1)
    nt = n_truth.astype(np.float64)
    return np.divide(total, nt, out=np.full(nt.shape, np.nan), where=nt > 0)


def weighted_auc(w: np.ndarray, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties half) per resample; ``w`` is ``(B, N)``, ``y`` and ``scores`` ``(N,)``.

    ``nan`` where a resample has no positives or no negatives.
    """
    order = np.argsort(scores, kind="stable")
    s, yy, ww = scores[order], y[order].astype(bool), w[:, order].astype(np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1] if s.size else np.zeros(0, dtype=int)
    if s.size == 0:
        return np.full(w.shape[0], np.nan)
    neg = np.add.reduceat(ww * ~yy, starts, axis=1)
    pos = np.add.reduceat(ww * yy, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    wp, wn = pos.sum(axis=1), neg.sum(axis=1)
    num = ((below + 0.5 * neg) * pos).sum(axis=1)
    den = wp * wn
    return np.divide(num, den, out=np.full(den.shape, np.nan), where=den > 0)


def weighted_froc(
    w: np.ndarray, hits: np.ndarray, ends: np.ndarray, n_truth: np.ndarray, n_images: int, rates: Sequence[float]
) -> np.ndarray:
    """Mean FROC sensitivity over ``rates`` per resample.

    ``w`` ``(B, K)`` prediction weights in ranking order; ``ends`` the indices of the last
    prediction of each distinct score; ``n_truth`` ``(B,)``. ``nan`` where ``n_truth`` is 0.
    """
    w = w.astype(np.float64)
    tp = np.cumsum(w * hits, axis=1)[:, ends]
    fp = np.cumsum(w * ~hits, axis=1)[:, ends]
    nt = n_truth.astype(np.float64)
    out = np.zeros(w.shape[0])
    for r in rates:
        count = (fp <= r * n_images + 1e-9).sum(axis=1)
        got = np.where(count > 0, tp[np.arange(w.shape[0]), np.maximum(count - 1, 0)], 0.0)
        out += got
    out /= len(rates)
    return np.divide(out, nt, out=np.full(nt.shape, np.nan), where=nt > 0)


def bootstrap_intervals(
    n_images: int,
    statistic: Callable[[np.ndarray], Mapping[str, npt.NDArray[np.float64]]],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap intervals of several statistics at once.

    Parameters
    ----------
    n_images:
        Number of images resampled.
    statistic:
        Takes ``(B, n_images)`` draw counts and returns ``name -> (B,)`` values (``nan`` where
        undefined in a resample; such resamples are left out of that statistic's interval).
    resamples, seed, level:
        Number of resamples, the random seed, the coverage (0.95 for 95 % intervals).

    Returns
    -------
    dict
        ``name -> (low, high)``, or ``None`` when a statistic was undefined in every resample.
    """
    if not 0 < level < 1:
        raise ConfigError(f"the interval level must be in (0, 1), got {level}")
    parts: dict[str, list[np.ndarray]] = {}
    for w in resample_weights(n_images, resamples, seed):
        for name, values in statistic(w).items():
            parts.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    alpha = (1 - level) / 2 * 100
    out: dict[str, tuple[float, float] | None] = {}
    for name, chunks in parts.items():
        v = np.concatenate(chunks)
        v = v[np.isfinite(v)]
        out[name] = None if v.size == 0 else (float(np.percentile(v, alpha)), float(np.percentile(v, 100 - alpha)))
    return out
