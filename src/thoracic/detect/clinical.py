"""What a clinician sees: the findings above their operating points, overlapping boxes merged.

The research output (``thoracic predict``'s CSV, the Kaggle format) keeps every box scoring at
least ``--conf`` (0.01), up to ``--max-det`` (100) per image: that is what mAP and FROC need. A
person reading a radiograph needs the opposite: few boxes, each one the model is confident of.
Every clinical output (the DICOM SR and GSPS, the API's findings and its viewer, ``predict
--overlays``, the demo page) takes its boxes from one call, :meth:`OperatingPoints.select`:

1. **Operating points.** A box is kept when its score reaches the operating point of its finding.
   A detector's operating points are stored in its metadata (``extra["operating_points"]``: finding
   name -> score; see :attr:`ModelMeta.operating_points
   <thoracic.models.meta.ModelMeta.operating_points>`), chosen per finding on validation data (the
   shipped detector's model card says how). A finding without an operating point in such a model
   is never shown. A model without operating points (or an ensemble of several detectors, whose
   fused scores no single model's points were chosen for) shows every finding at
   :data:`DEFAULT_MIN_SCORE`, the one documented default.
2. **One box per finding and place.** The kept boxes of one finding that overlap with IoU above
   :data:`MERGE_IOU` are merged into one by weighted boxes fusion (:func:`thoracic.boxes.weighted_boxes_fusion`,
   ``conf_type="max"``): the merged box is the score-weighted mean of the stack, and it scores
   what its best box scored, so merging never lowers a finding below its operating point.

A caller may ask for one score for every finding instead (the API's ``min_score``, ``dicom-node
--min-score``, ``predict --overlay-conf``): :meth:`OperatingPoints.uniform`; boxes are merged the
same way.

>>> import numpy as np
>>> from thoracic.detect.types import Detections
>>> stack = Detections([[10, 10, 50, 50], [12, 11, 52, 50], [70, 70, 90, 90]], [0.6, 0.5, 0.2], [10, 10, 10],
...                    (100, 100))
>>> shown = OperatingPoints({"Pleural effusion": 0.4}).select(stack)
>>> shown.labels, [round(s, 2) for s in shown.scores.tolist()], [[round(v, 1) for v in b] for b in shown.boxes.tolist()]
(('Pleural effusion',), [0.6], [[10.9, 10.5, 50.9, 50.0]])
>>> OperatingPoints.default_points().threshold("Cardiomegaly") == DEFAULT_MIN_SCORE
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from thoracic.boxes import weighted_boxes_fusion
from thoracic.detect.types import Detections
from thoracic.errors import ConfigError
from thoracic.labels import CLASS_IDS, LABELS

if TYPE_CHECKING:  # pragma: no cover
    from thoracic.models.meta import ModelMeta

__all__ = ["DEFAULT_MIN_SCORE", "MERGE_IOU", "OperatingPoints"]

#: The one default operating point: every finding of a model without operating points in its
#: metadata is shown at a score of at least this.
DEFAULT_MIN_SCORE = 0.3

#: float32 scores at an operating point count as reaching it (0.42 is 0.41999998 in float32).
_EPS = 1e-6

#: Boxes of one finding overlapping with an IoU above this are merged into one.
MERGE_IOU = 0.4


@dataclass(frozen=True)
class OperatingPoints:
    """Per-finding minimum scores of the clinical outputs, and how overlapping boxes merge.

    Attributes
    ----------
    scores:
        Finding name (VinDr) -> the score from which it is shown. When not empty, a finding that
        has no entry is never shown.
    default:
        The score of every finding when ``scores`` is empty (:data:`DEFAULT_MIN_SCORE`).
    merge_iou:
        Boxes of one finding overlapping above this IoU are merged (:data:`MERGE_IOU`).
    source:
        Where the points come from: ``"model"`` (the detector's metadata), ``"default"`` or
        ``"min_score"`` (one score asked for).
    """

    scores: Mapping[str, float] = field(default_factory=dict)
    default: float = DEFAULT_MIN_SCORE
    merge_iou: float = MERGE_IOU
    source: str = "model"

    def __post_init__(self) -> None:
        scores = {str(k): float(v) for k, v in dict(self.scores).items()}
        unknown = sorted(k for k in scores if k not in CLASS_IDS)
        if unknown:
            raise ConfigError(f"operating points for unknown finding(s) {unknown}")
        for name, value in scores.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"an operating point must lie in [0, 1], got {value} for {name}")
        if not float(self.default) >= 0.0:  # above 1: nothing is shown
            raise ConfigError(f"a minimum score must not be negative, got {self.default}")
        if not 0.0 <= float(self.merge_iou) <= 1.0:
            raise ConfigError(f"the merge IoU must lie in [0, 1], got {self.merge_iou}")
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "default", float(self.default))
        object.__setattr__(self, "merge_iou", float(self.merge_iou))

    @classmethod
    def default_points(cls) -> OperatingPoints:
        """Every finding at :data:`DEFAULT_MIN_SCORE` (a model without operating points)."""
        return cls({}, DEFAULT_MIN_SCORE, source="default")

    @classmethod
    def uniform(cls, min_score: float) -> OperatingPoints:
        """Every finding at ``min_score`` (a caller's explicit threshold), boxes merged as usual."""
        return cls({}, float(min_score), source="min_score")

    @classmethod
    def of(cls, metas: ModelMeta | list[ModelMeta] | tuple[ModelMeta, ...]) -> OperatingPoints:
        """The operating points of one detector's metadata; several detectors (an ensemble, whose
        fused scores no single model's points were chosen for) or a model without points get
        :meth:`default_points`."""
        items = list(metas) if isinstance(metas, (list, tuple)) else [metas]
        if len(items) != 1 or not items[0].operating_points:
            return cls.default_points()
        return cls(items[0].operating_points, source="model")

    def threshold(self, label: str) -> float | None:
        """The score from which ``label`` is shown, or ``None`` when it is never shown."""
        if self.scores:
            return self.scores.get(label)
        return self.default

    def select(self, detections: Detections) -> Detections:
        """The boxes a clinician sees: each at or above its finding's operating point, overlapping
        boxes of one finding merged into one (best first; no feature map)."""
        size = detections.image_size
        if len(detections) == 0:
            return Detections.empty(size)
        thresholds = np.array([np.inf if (t := self.threshold(LABELS[int(c)])) is None else t
                               for c in detections.class_ids.tolist()], dtype=np.float64)
        keep = detections.scores.astype(np.float64) >= thresholds - _EPS
        boxes, scores, ids = detections.boxes[keep], detections.scores[keep], detections.class_ids[keep]
        if len(scores) == 0:
            return Detections.empty(size)
        w, h = (float(v) for v in size)
        if not (w > 0 and h > 0):  # no image size: the boxes' own extent
            w, h = float(max(boxes[:, 2].max(), 1.0)), float(max(boxes[:, 3].max(), 1.0))
        fb, fs, fl = weighted_boxes_fusion([boxes], [scores], [ids], (w, h), iou_thr=self.merge_iou,
                                           conf_type="max", clip=True)
        order = np.argsort(-fs, kind="stable")
        return Detections(fb[order], fs[order], fl[order], size)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the API's answer: source, per-finding scores (or the default), merge IoU."""
        out: dict[str, Any] = {"source": self.source, "merge_iou": self.merge_iou}
        if self.scores:
            out["scores"] = dict(sorted(self.scores.items()))
        else:
            out["min_score"] = self.default
        return out

    def describe(self) -> str:
        """A short text for result objects (at most 40 characters)."""
        if self.scores:
            return "at the detector's operating points"
        return f"with score >= {self.default:g}"
