"""Whole-image prediction: detectors (with flip TTA), their WBF ensemble and the 2-class filter.

:class:`Predictor` reads an image once, runs every detector on it (each through its own
preprocessing chain; with a lung crop when the model asks for one or ``lung_roi`` is set), fuses
the detectors' boxes with weighted boxes fusion (classes matched by name: every model's outputs
are VinDr names with Kaggle ids), and applies the normal/abnormal filter: when
``P(abnormal) < low`` all boxes are dropped. Boxes are in pixels of the original image.
The "No finding" score is ``1 - P(abnormal)`` with a classifier, else ``1 -`` the best box score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from thoracic.boxes import weighted_boxes_fusion
from thoracic.classify.onnx import OnnxClassifier
from thoracic.detect.onnx import DetectorConfig, OnnxDetector
from thoracic.detect.types import Detections
from thoracic.errors import ConfigError
from thoracic.io.radiograph import Radiograph, ReadOptions
from thoracic.models.registry import model_path
from thoracic.preprocess.chain import Chain, Prepared
from thoracic.preprocess.model_input import prepare_8bit_many
from thoracic.transform import Affine

__all__ = ["ImagePrediction", "PredictConfig", "Predictor"]


@dataclass(frozen=True)
class PredictConfig:
    """Settings of a prediction run.

    Attributes
    ----------
    conf, iou, max_det, tta:
        Per-detector post-processing (:class:`~thoracic.detect.DetectorConfig`); ``conf`` and
        ``max_det`` also bound the fused result.
    weights:
        One WBF weight per detector (default all 1).
    wbf_iou:
        IoU above which boxes of different detectors (or of a TTA pass) are fused.
    low:
        Filter threshold on P(abnormal); ``None`` takes the classifier's validated default.
    lung_roi:
        Crop every image to the lung square (the lungs model) before detection.
    """

    conf: float = 0.01
    iou: float = 0.7
    max_det: int = 100
    tta: bool = False
    weights: tuple[float, ...] = ()
    wbf_iou: float = 0.55
    low: float | None = None
    lung_roi: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if any(w <= 0 for w in self.weights):
            raise ConfigError("detector weights must be positive")
        if self.low is not None and not 0.0 <= self.low <= 1.0:
            raise ConfigError(f"the filter threshold must lie in [0, 1], got {self.low}")
        self.detector_config()  # validates the rest

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(conf=self.conf, iou=self.iou, max_det=self.max_det, tta=self.tta, tta_iou=self.wbf_iou)


@dataclass(frozen=True)
class ImagePrediction:
    """The result for one image; ``heatmap`` (when asked for) is ``height x width`` float32 in [0, 1]."""

    image_id: str
    detections: Detections
    p_abnormal: float | None
    no_finding_score: float
    filtered: bool = False
    roi: tuple[int, int, int, int] | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return self.detections.image_size[0]

    @property
    def height(self) -> int:
        return self.detections.image_size[1]


class Predictor:
    """Detectors + optional classifier, loaded once and reused for many images."""

    def __init__(
        self,
        detectors: Sequence[OnnxDetector],
        classifier: OnnxClassifier | None = None,
        config: PredictConfig | None = None,
    ) -> None:
        if not detectors:
            raise ConfigError("at least one detector is needed")
        self.detectors = list(detectors)
        self.classifier = classifier
        self.config = config or PredictConfig()
        if self.config.weights and len(self.config.weights) != len(self.detectors):
            raise ConfigError(f"{len(self.config.weights)} weight(s) for {len(self.detectors)} detector(s)")
        self._segmenter: Any = None

    @classmethod
    def load(
        cls,
        detectors: Sequence[str | PathLike[str]] = (),
        classifier: str | PathLike[str] | None = None,
        config: PredictConfig | None = None,
        *,
        use_classifier: bool = True,
        threads: int = 2,
    ) -> Predictor:
        """Load model files; with no detectors, the shipped defaults (and the shipped classifier)."""
        if not detectors:
            path = model_path("detector")
            if not path.is_file():
                raise ConfigError(f"no shipped detector at {path}; pass --models")
            detectors = [path]
            if classifier is None and use_classifier and model_path("classifier").is_file():
                classifier = model_path("classifier")
        dets = [OnnxDetector.load(p, threads=threads) for p in detectors]
        clf = OnnxClassifier.load(classifier, threads=threads) if classifier is not None and use_classifier else None
        return cls(dets, clf, config)

    @property
    def model_ids(self) -> str:
        """The sha256 prefixes of the model files used, joined with ``+`` (classifier last)."""
        ids = [d.id for d in self.detectors] + ([self.classifier.id] if self.classifier else [])
        return "+".join(ids)

    @property
    def low(self) -> float | None:
        if self.classifier is None:
            return None
        return self.config.low if self.config.low is not None else self.classifier.low

    def read(self, src: Any, image_id: str | None = None, read: ReadOptions | None = None) -> dict[str, Radiograph]:
        """Read ``src`` once per distinct normalization the models need: ``{normalize: Radiograph}``.

        The reading half of :meth:`predict` (no model runs): with :meth:`predict_read` it lets
        callers decode on other threads or processes while the models run.
        """
        return self._read(src, image_id, read)

    def _read(self, src: Any, image_id: str | None, read: ReadOptions | None) -> dict[str, Radiograph]:
        """One read per distinct normalization the models need."""
        from thoracic.io.read import read as read_file

        if isinstance(src, Radiograph):
            return {src.normalize: src}
        out: dict[str, Radiograph] = {}
        chains = [d.chain for d in self.detectors] + ([self.classifier.meta.chain] if self.classifier else [])
        for chain in chains:
            if chain.normalize not in out:
                opts = chain.read_options(read)
                opts = ReadOptions(normalize=opts.normalize, percentiles=opts.percentiles, target_size=None,
                                   allow_non_chest=opts.allow_non_chest, max_pixels=opts.max_pixels)
                out[chain.normalize] = read_file(src, opts, image_id=image_id)
        return out

    def _crop(self, rg: Radiograph) -> tuple[Radiograph, Affine, tuple[int, int, int, int]]:
        try:
            from thoracic.anatomy import default_segmenter, lung_roi_crop
        except ImportError as err:  # pragma: no cover - anatomy ships with the core
            raise ConfigError("lung ROI needs the lungs model (thoracic.anatomy), which is not installed") from err
        if self._segmenter is None:
            self._segmenter = default_segmenter()
        lungs = self._segmenter.segment(rg)
        side = lungs.roi.side
        pixels, t = lung_roi_crop(rg, lungs.roi, size=side)
        crop = Radiograph(pixels=pixels, image_id=rg.image_id, source=rg.source, format=rg.format,
                          original_width=pixels.shape[1], original_height=pixels.shape[0], normalize=rg.normalize)
        return crop, t, lungs.roi.box

    def predict(self, src: Any, *, image_id: str | None = None, read: ReadOptions | None = None,
                features: bool = False, heatmap: bool = False) -> ImagePrediction:
        """Predict one image (a path, bytes or a :class:`Radiograph`).

        ``features`` keeps each detector's feature map; ``heatmap`` adds the mean Eigen-CAM of
        the detectors at the original size (:mod:`thoracic.explain`).
        """
        return self.predict_read(self._read(src, image_id, read), features=features, heatmap=heatmap)

    def prepare(self, radiographs: Mapping[str, Radiograph]) -> dict[Chain, Prepared]:
        """Every model's input from what :meth:`read` returned, each shared preprocessing step once.

        Detectors on a lung crop are left out (their input needs the lungs model). Passing the
        result to :meth:`predict_read` lets callers preprocess on other threads or processes.
        """
        any_rg = next(iter(radiographs.values()))
        chains = [d.chain for d in self.detectors if not (self.config.lung_roi or d.meta.lung_crop)]
        if self.classifier is not None:
            chains.append(self.classifier.meta.chain)
        return prepare_8bit_many(chains, {c.normalize: radiographs.get(c.normalize) or any_rg for c in chains})

    def predict_read(self, radiographs: dict[str, Radiograph], *, features: bool = False,
                     heatmap: bool = False, prepared: Mapping[Chain, Prepared] | None = None) -> ImagePrediction:
        """Predict from what :meth:`read` returned (the model half of :meth:`predict`).

        ``prepared`` is :meth:`prepare`'s result for these radiographs, when the caller made it.
        """
        if not radiographs:
            raise ConfigError("no radiograph to predict")
        inputs = self.prepare(radiographs) if prepared is None else prepared
        want = features or heatmap
        cfg = self.config
        dcfg = cfg.detector_config()
        any_rg = next(iter(radiographs.values()))
        w, h = any_rg.original_size
        results: list[Detections] = []
        feats: dict[str, np.ndarray] = {}
        cams: list[np.ndarray] = []
        roi = None
        crops: dict[int, tuple[Radiograph, Affine, tuple[int, int, int, int]]] = {}  # segment once per image
        for det in self.detectors:
            rg = radiographs.get(det.chain.normalize) or any_rg
            if cfg.lung_roi or det.meta.lung_crop:
                if id(rg) not in crops:
                    crops[id(rg)] = self._crop(rg)
                crop, t, roi = crops[id(rg)]
                found = det.predict(crop, dcfg, features=want)
                boxes = t.inverse().apply_boxes(found.boxes) if len(found) else found.boxes
                ft = found.feature_transform.then(t.inverse()) if found.feature_transform is not None else None
                found = Detections(boxes, found.scores, found.class_ids, (w, h), found.feature, ft, found.feature_input)
            else:
                found = det.predict(inputs.get(det.chain, rg), dcfg, features=want)
            if features and found.feature is not None:
                feats[det.id] = found.feature
            if heatmap:
                cam = found.heatmap()
                if cam is not None:
                    cams.append(cam)
            results.append(found)
        fused = results[0] if len(results) == 1 else self._fuse(results, (w, h))
        fused = fused.above(cfg.conf).top(cfg.max_det)
        p_abn = None
        filtered = False
        if self.classifier is not None:
            rg = radiographs.get(self.classifier.meta.chain.normalize) or any_rg
            p_abn = self.classifier.p_abnormal(inputs.get(self.classifier.meta.chain, rg))
            low = self.low
            if low is not None and p_abn < low:
                fused = Detections.empty((w, h))
                filtered = True
        nf = 1.0 - p_abn if p_abn is not None else 1.0 - (float(fused.scores.max()) if len(fused) else 0.0)
        cam = None
        if cams:
            cam = cams[0] if len(cams) == 1 else np.mean(np.stack(cams), axis=0).astype(np.float32)
        return ImagePrediction(any_rg.image_id, fused, p_abn, float(nf), filtered, roi, feats, cam)

    def _fuse(self, results: list[Detections], size: tuple[int, int]) -> Detections:
        weights = self.config.weights or tuple(1.0 for _ in results)
        if not any(len(r) for r in results):
            return Detections.empty(size)
        boxes, scores, labels = weighted_boxes_fusion(
            [r.boxes for r in results], [r.scores for r in results], [r.class_ids for r in results], size,
            weights=list(weights), iou_thr=self.config.wbf_iou, skip_box_thr=0.0, clip=True,
        )
        return Detections(boxes, scores, labels, size)
