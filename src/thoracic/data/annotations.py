"""The one annotation table type: images, and per-reader labelled boxes on them.

Every loader (VinBigData, NIH, COCO, plain CSV) returns an :class:`Annotations`; fusion, export,
splits, statistics and evaluation all take one. Boxes follow the geometry contract: float
``x_min, y_min, x_max, y_max`` in pixels of the original image. A "No finding" statement is a row
with the label ``"No finding"`` and the competition's ``0 0 1 1`` box, so a reader who saw nothing
is recorded as such (an image with no row at all is simply unannotated by that reader).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from thoracic.errors import ConfigError
from thoracic.labels import CLASS_IDS, NO_FINDING

__all__ = ["Annotations", "ImageInfo", "Problem"]


@dataclass(frozen=True)
class ImageInfo:
    """One image of a data set.

    ``labels`` are image-level labels (e.g. NIH's report-mined findings) that need not have boxes;
    ``source`` is the image file when known.
    """

    image_id: str
    width: int | None = None
    height: int | None = None
    patient_id: str | None = None
    source: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Problem:
    """A bad input row, reported instead of silently clipped or dropped."""

    line: int | None  # 1-based line (or record index) in the source file; None if not applicable
    image_id: str
    message: str
    source: str = ""
    kind: str = ""  # what kind of problem: "" (a bad row), "outside" (a box beyond its image), "missing image"

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}: " if self.line is not None else (f"{self.source}: " if self.source else "")
        return f"{where}{self.image_id}: {self.message}"


def _col(values: Iterable[Any] | np.ndarray | None, n: int, dtype: npt.DTypeLike, default: Any) -> np.ndarray:
    if values is None:
        return np.full(n, default, dtype=dtype)
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=dtype)
    if arr.shape != (n,):
        raise ConfigError(f"column has shape {arr.shape}, expected ({n},)")
    return arr


@dataclass(frozen=True, eq=False)
class Annotations:
    """Images and their boxes, as parallel columns (one row per box per reader).

    Attributes
    ----------
    images:
        Every image of the set, by id, including images without any box.
    image_id, label, reader:
        ``(N,)`` string columns (``reader`` is ``""`` when unknown, e.g. after fusion).
    boxes:
        ``(N, 4)`` float64 ``xyxy`` in original-image pixels.
    score:
        ``(N,)`` float64 confidence, or ``NaN`` for human annotations.
    problems:
        Rows the loader refused, with their line numbers, and images whose file is missing.
    clipped:
        Boxes the loader clipped into their image (``clip=True``), with their line numbers.
    """

    images: Mapping[str, ImageInfo]
    image_id: np.ndarray
    label: np.ndarray
    boxes: np.ndarray
    reader: np.ndarray = field(default=None)  # type: ignore[arg-type]  # None: "" for every row
    score: np.ndarray = field(default=None)  # type: ignore[arg-type]  # None: NaN for every row
    problems: tuple[Problem, ...] = ()
    name: str = ""
    clipped: tuple[Problem, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.image_id)
        set_ = object.__setattr__
        set_(self, "images", MappingProxyType(dict(self.images)))
        set_(self, "image_id", _col(self.image_id, n, object, ""))
        set_(self, "label", _col(self.label, n, object, ""))
        set_(self, "reader", _col(self.reader, n, object, ""))
        set_(self, "score", _col(self.score, n, np.float64, np.nan))
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4) if n else np.zeros((0, 4))
        if boxes.shape != (n, 4):
            raise ConfigError(f"boxes have shape {boxes.shape}, expected ({n}, 4)")
        set_(self, "boxes", boxes)
        unknown = set(self.label.tolist()) - set(CLASS_IDS)
        if unknown:
            raise ConfigError(f"unknown labels {sorted(unknown)}; loaders report such rows as problems")
        missing = set(self.image_id.tolist()) - set(self.images)
        if missing:
            raise ConfigError(f"{len(missing)} box rows refer to images not in the table, e.g. {sorted(missing)[:3]}")

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_rows(
        cls,
        images: Mapping[str, ImageInfo] | Iterable[ImageInfo],
        rows: Iterable[tuple],
        *,
        problems: Iterable[Problem] = (),
        name: str = "",
        clipped: Iterable[Problem] = (),
    ) -> Annotations:
        """Build from rows ``(image_id, label, x_min, y_min, x_max, y_max[, reader[, score]])``."""
        imgs = dict(images) if isinstance(images, Mapping) else {i.image_id: i for i in images}
        ids, labels, boxes, readers, scores = [], [], [], [], []
        for row in rows:
            ids.append(row[0])
            labels.append(row[1])
            boxes.append(row[2:6])
            readers.append(row[6] if len(row) > 6 else "")
            scores.append(row[7] if len(row) > 7 else np.nan)
        return cls(imgs, np.asarray(ids, dtype=object), np.asarray(labels, dtype=object),
                   np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(readers, dtype=object),
                   np.asarray(scores, dtype=np.float64), tuple(problems), name, tuple(clipped))

    # --- views -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_id)

    @property
    def is_finding(self) -> np.ndarray:
        """``(N,)`` bool: rows that are finding boxes (not "No finding" statements)."""
        return self.label != NO_FINDING

    def subset(self, mask: np.ndarray) -> Annotations:
        """The rows where ``mask`` is true (all images kept)."""
        m = np.asarray(mask, dtype=bool)
        return Annotations(
            self.images, self.image_id[m], self.label[m], self.boxes[m], self.reader[m], self.score[m], self.problems, self.name,
            self.clipped,
        )

    def select_images(self, ids: Iterable[str]) -> Annotations:
        """Only the given images and their rows."""
        keep = set(ids)
        images = {k: v for k, v in self.images.items() if k in keep}
        m = np.fromiter((i in keep for i in self.image_id), dtype=bool, count=len(self))
        return Annotations(images, self.image_id[m], self.label[m], self.boxes[m], self.reader[m], self.score[m], self.problems, self.name,
                           self.clipped)

    def abnormal_images(self) -> set[str]:
        """Images with at least one finding box (any reader)."""
        return set(self.image_id[self.is_finding].tolist())

    def rows(self) -> Iterable[tuple[str, str, float, float, float, float, str, float]]:
        for i in range(len(self)):
            x0, y0, x1, y1 = self.boxes[i]
            yield (self.image_id[i], self.label[i], x0, y0, x1, y1, self.reader[i], self.score[i])

    def label_counts(self) -> dict[str, int]:
        if not len(self):
            return {}
        labels, counts = np.unique(self.label.astype(str), return_counts=True)
        return {str(k): int(v) for k, v in zip(labels, counts, strict=True)}
