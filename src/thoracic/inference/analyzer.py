"""The whole analysis of one radiograph in one call: findings, lungs and a heatmap.

This is what the services build on (``thoracic serve``, ``thoracic dicom-node``): an
:class:`Analyzer` loads the models once (the shipped detector, normal/abnormal classifier and
lungs model unless told otherwise) and :meth:`Analyzer.analyze` turns one image into an
:class:`Analysis`: the display read of the image (with its DICOM header for DICOM inputs), the
findings (boxes in pixels of the original image), the lung mask and lung square, an Eigen-CAM
heatmap, and the identity of every model used (file and sha256) with the thoracic version.

``analyze`` may be called from several threads at once (ONNX Runtime sessions are thread-safe).

>>> from thoracic.inference.analyzer import Analyzer
>>> from thoracic.demo import sample_paths
>>> an = Analyzer.load(threads=1)
>>> a = an.analyze(sample_paths()[0])
>>> sorted(m.role for m in a.models)
['classifier', 'detector', 'lungs']
>>> a.heatmap.shape == a.lungs.mask.shape == (a.height, a.width)
True
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from thoracic._version import __version__
from thoracic.anatomy.segmenter import LungMask, LungSegmenter
from thoracic.detect.clinical import OperatingPoints
from thoracic.detect.types import Detections
from thoracic.errors import ConfigError
from thoracic.inference.predictor import ImagePrediction, ModelInfo, PredictConfig, Predictor
from thoracic.inference.preset import Preset
from thoracic.io.radiograph import Radiograph, ReadConfig
from thoracic.io.read import Source

__all__ = ["Analysis", "Analyzer"]


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything thoracic found on one radiograph.

    Attributes
    ----------
    image_id:
        The image id (the SOP Instance UID's digest for DICOM, the file stem otherwise; see
        :func:`thoracic.io.image_id`).
    radiograph:
        The display read (``"window"`` normalization when a model asked for it); for DICOM
        inputs ``radiograph.dataset`` is the header (without pixel data), else ``None``.
    prediction:
        The findings: ``prediction.detections`` in pixels of the original image, best first,
        ``p_abnormal``, ``no_finding_score`` and whether the 2-class filter removed all boxes.
    lungs:
        The lung mask (``uint8`` 0/255 at the original size) and lung square, or ``None``.
    heatmap:
        Eigen-CAM of the detectors (``float32`` ``[0, 1]`` at the original size), or ``None``.
    models:
        The model files used (detectors, classifier, lungs).
    operating_points:
        What the clinical outputs show of ``prediction.detections`` (:meth:`clinical`): the
        detector's operating points, or the default.
    finding_thresholds:
        A multi-label classifier's operating threshold of each finding (its metadata's
        ``thresholds``; empty without them).
    """

    image_id: str
    radiograph: Radiograph = field(repr=False)
    prediction: ImagePrediction = field(repr=False)
    lungs: LungMask | None = field(default=None, repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    models: tuple[ModelInfo, ...] = ()
    thoracic_version: str = __version__
    seconds: float = 0.0
    operating_points: OperatingPoints = field(default_factory=OperatingPoints.default_points)
    finding_thresholds: Mapping[str, float] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return self.radiograph.original_width

    @property
    def height(self) -> int:
        return self.radiograph.original_height

    @property
    def is_dicom(self) -> bool:
        return self.radiograph.dataset is not None

    def points(self, min_score: float | None = None) -> OperatingPoints:
        """The operating points of the clinical outputs: the analysis's own, or ``min_score`` for
        every finding when given."""
        return self.operating_points if min_score is None else OperatingPoints.uniform(min_score)

    def clinical(self, min_score: float | None = None) -> Detections:
        """The findings a clinician sees (:meth:`OperatingPoints.select
        <thoracic.detect.clinical.OperatingPoints.select>`): each finding above its operating point
        (or above ``min_score`` when given), overlapping boxes of one finding merged."""
        return self.points(min_score).select(self.prediction.detections)

    def findings(self, min_score: float | None = None) -> list[dict[str, Any]]:
        """The findings of :meth:`clinical`: label, class id, score, ``box`` ``[x0, y0, x1, y1]``."""
        det = self.clinical(min_score)
        out = []
        for label, cid, score, box in zip(det.labels, det.class_ids.tolist(), det.scores.tolist(),
                                          det.boxes.tolist(), strict=True):
            out.append({"label": label, "class_id": int(cid), "score": round(float(score), 6),
                        "box": [round(float(v), 2) for v in box]})
        return out

    def classifier_findings(self) -> dict[str, Any] | None:
        """A multi-label classifier's image-level findings: ``findings`` (label -> probability, in
        the model's order), ``thresholds`` (label -> operating threshold, those the model stores)
        and ``maps`` (the labels with a class activation map, ``abnormal`` first; empty when no
        heatmap was made). ``None`` with a 2-class classifier or none."""
        p = self.prediction
        if not p.finding_probabilities:
            return None
        return {
            "findings": {k: round(float(v), 6) for k, v in p.finding_probabilities.items()},
            "thresholds": {k: round(float(self.finding_thresholds[k]), 6) for k in p.finding_probabilities
                           if k in self.finding_thresholds},
            "maps": list(p.map_labels),
        }

    def to_dict(self, min_score: float | None = None) -> dict[str, Any]:
        """A JSON-able summary (no patient data: only ids, sizes, findings and model identities);
        ``findings`` are those of :meth:`clinical`, ``operating_points`` says which were applied.
        With a multi-label classifier it has ``classifier`` too (:meth:`classifier_findings`); the
        summary of a 2-class classifier has no such key."""
        p = self.prediction
        roi = None
        if self.lungs is not None:
            roi = {"box": [int(v) for v in self.lungs.roi.box], "fallback": bool(self.lungs.fallback),
                   "lung_fraction": round(float(self.lungs.lung_fraction), 6)}
        out: dict[str, Any] = {
            "image_id": self.image_id,
            "width": self.width,
            "height": self.height,
            "format": self.radiograph.format,
            "findings": self.findings(min_score),
            "operating_points": self.points(min_score).to_dict(),
            "p_abnormal": None if p.p_abnormal is None else round(float(p.p_abnormal), 6),
            "no_finding_score": round(float(p.no_finding_score), 6),
            "filtered": bool(p.filtered),
            "lung_roi": roi,
            "heatmap": self.heatmap is not None,
            "flags": list(self.radiograph.flags),
            "models": [m.to_dict() for m in self.models],
            "thoracic_version": self.thoracic_version,
            "seconds": round(float(self.seconds), 4),
        }
        clf = self.classifier_findings()
        if clf is not None:
            out["classifier"] = clf
        return out


class Analyzer:
    """The models of a full analysis, loaded once."""

    def __init__(self, predictor: Predictor, segmenter: LungSegmenter | None = None) -> None:
        self.predictor = predictor
        self.segmenter = segmenter
        if segmenter is not None and predictor.segmenter is None:
            predictor.segmenter = segmenter  # a lung-crop detector uses the same lungs model, not a second copy
        lungs = (ModelInfo.of("lungs", segmenter.path, segmenter.sha256, getattr(segmenter, "backend", "")),) if segmenter is not None else ()
        self.models: tuple[ModelInfo, ...] = predictor.models + lungs

    @classmethod
    def load(
        cls,
        detectors: Sequence[str | PathLike[str]] = (),
        classifier: str | PathLike[str] | None = None,
        config: PredictConfig | None = None,
        *,
        use_classifier: bool = True,
        lungs: bool | str | PathLike[str] = True,
        threads: int = 2,
        preset: str | PathLike[str] | Preset | None = None,
    ) -> Analyzer:
        """Load the models: with no ``detectors`` the shipped detector and classifier.

        ``lungs`` is ``True`` for the shipped lungs model, a path for another, ``False`` for none.
        ``preset`` (a name or a preset file, :mod:`thoracic.inference.preset`) chooses the detectors,
        their fusion and the classifier instead of ``detectors`` and ``classifier``
        (:meth:`Predictor.from_preset`).
        """
        if preset is not None:
            if detectors or classifier is not None:
                raise ConfigError("give a preset or detector and classifier files, not both")
            predictor = Predictor.from_preset(preset, config, threads=threads)
        else:
            predictor = Predictor.load(detectors, classifier, config, use_classifier=use_classifier, threads=threads)
        segmenter = None
        if lungs is not False:
            segmenter = LungSegmenter.load(None if lungs is True else lungs, threads=threads)
        return cls(predictor, segmenter)

    @property
    def model_ids(self) -> str:
        """The sha256 prefixes of all model files, joined with ``+`` (detectors, classifier, lungs)."""
        return ModelInfo.ids(self.models)

    def analyze(self, src: Source | Radiograph, *, image_id: str | None = None, read: ReadConfig | None = None,
                heatmap: bool = True, lungs: bool = True) -> Analysis:
        """Analyze one image (a path, bytes, a binary file or a :class:`~thoracic.io.Radiograph`).

        Raises the typed errors of :func:`thoracic.io.read` for unreadable or unsuitable input.
        """
        t0 = time.perf_counter()
        radiographs = self.predictor.read(src, image_id, read)
        prediction = self.predictor.predict_read(radiographs, heatmap=heatmap)
        display = radiographs.get("window") or next(iter(radiographs.values()))
        mask = self.segmenter.segment(display) if lungs and self.segmenter is not None else None
        return Analysis(
            image_id=display.image_id,
            radiograph=display,
            prediction=prediction,
            lungs=mask,
            heatmap=prediction.heatmap,
            models=self.models,
            seconds=time.perf_counter() - t0,
            operating_points=self.predictor.operating_points,
            finding_thresholds=clf.thresholds if (clf := self.predictor.classifier) is not None else {},
        )
