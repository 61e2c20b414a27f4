"""Whole-image prediction: detectors (with flip TTA), their WBF ensemble and the 2-class filter.

:class:`Predictor` reads an image once, runs every detector on it (each through its own
preprocessing chain, which crops to the lungs when the model was trained so; ``lung_roi`` crops
for a model whose chain does not, and is refused for one whose chain does), fuses
the detectors' boxes with weighted boxes fusion (classes matched by name: every model's outputs
are VinDr names with Kaggle ids; each detector contributes only the classes it was trained on, so
only those come out, each fused over the detectors trained on it), and applies the normal/abnormal filter: when
``P(abnormal) < low`` all boxes are dropped. Boxes are in pixels of the original image.
The "No finding" score is ``1 - P(abnormal)`` with a classifier, else ``1 -`` the best box score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

import numpy as np

from thoracic.anatomy.segmenter import LungCrop, LungSegmenter, default_segmenter
from thoracic.boxes import weighted_boxes_fusion
from thoracic.classify.onnx import OnnxClassifier
from thoracic.classify.types import Classification
from thoracic.detect.clinical import OperatingPoints
from thoracic.detect.onnx import DetectorConfig, OnnxDetector
from thoracic.detect.types import Detections
from thoracic.errors import ConfigError
from thoracic.inference.plan import ReadPlan, read_plan
from thoracic.inference.preset import SHIPPED, Preset, load_preset
from thoracic.io.radiograph import Radiograph, ReadConfig
from thoracic.io.read import Source
from thoracic.labels import CLASS_IDS
from thoracic.models.registry import model_path
from thoracic.models.runtime import file_sha256
from thoracic.preprocess.chain import Chain, Prepared
from thoracic.preprocess.model_input import refuse_preprocessed

__all__ = ["ImagePrediction", "ModelInfo", "PredictConfig", "Predictor"]


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
        Crop every image to the lung square (the lungs model) before detection, for detectors
        whose chain does not crop; a detector whose chain crops (:attr:`ModelMeta.lung_crop
        <thoracic.models.meta.ModelMeta.lung_crop>`) is never cropped twice: :class:`Predictor`
        refuses the setting for it.
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
class ModelInfo:
    """One model file a prediction or an analysis used.

    Attributes
    ----------
    role:
        ``"detector"``, ``"classifier"`` or ``"lungs"``.
    name:
        The file's stem (``detector`` for the shipped detector).
    file:
        The file name (no folders: paths of a deployment are not part of a result).
    sha256:
        The full hex sha256 of the file.
    backend:
        Where it ran: ``openvino-f32``, ``openvino-bf16``, ``onnxruntime-cpu`` or
        ``onnxruntime-cuda`` (:attr:`thoracic.models.runtime.LoadedModel.backend`; empty when unknown).
        Not part of :meth:`ids`: the same file is the same model on every back-end.
    """

    role: str
    name: str
    file: str
    sha256: str
    backend: str = ""

    @classmethod
    def of(cls, role: str, path: str | PathLike[str], sha256: str = "", backend: str = "") -> ModelInfo:
        p = Path(path)
        return cls(role, p.stem, p.name, sha256 or file_sha256(p), backend)

    @staticmethod
    def ids(models: Sequence[ModelInfo]) -> str:
        """The models' sha256 prefixes (12 hex digits) joined with ``+``, in order."""
        return "+".join(m.sha256[:12] for m in models)

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "name": self.name, "file": self.file, "sha256": self.sha256, "backend": self.backend}


@dataclass(frozen=True)
class ImagePrediction:
    """The result for one image; ``heatmap`` (when asked for) is ``height x width`` float32 in [0, 1].

    ``finding_probabilities`` are a multi-label classifier's image-level probabilities of each
    VinDr finding it has an output for, in its label order (empty with a 2-class classifier or
    none). ``classification`` is the classifier's result with its feature map, kept when a heatmap
    was asked for and the classifier makes class activation maps (:meth:`finding_map`).
    """

    image_id: str
    detections: Detections
    p_abnormal: float | None
    no_finding_score: float
    filtered: bool = False
    roi: tuple[int, int, int, int] | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    flags: tuple[str, ...] = ()
    finding_probabilities: Mapping[str, float] = field(default_factory=dict)
    classification: Classification | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return self.detections.image_size[0]

    @property
    def map_labels(self) -> tuple[str, ...]:
        """The labels :meth:`finding_map` can draw: ``abnormal`` and each finding of
        :attr:`finding_probabilities` (none without a kept :attr:`classification` with maps)."""
        c = self.classification
        if c is None or not c.has_maps or not self.finding_probabilities:
            return ()
        return tuple(k for k in ("abnormal", *self.finding_probabilities) if k in c.probabilities)

    def finding_map(self, label: str, size: tuple[int, int] | None = None) -> np.ndarray:
        """The classifier's class activation map of ``label`` (one of :attr:`map_labels`) on the
        original image, or at ``size`` ``(width, height)`` (``height x width`` float32 in [0, 1]).

        Raises :class:`~thoracic.errors.ConfigError` when the prediction kept no maps (no heatmap
        asked for, or a classifier without them) or the label is not one of them.
        """
        labels = self.map_labels
        if not labels or self.classification is None:
            raise ConfigError("no per-finding maps: predict with heatmaps, with a multi-label classifier that "
                              "outputs its feature map and head weights")
        if label not in labels:
            raise ConfigError.unknown("finding map", label, labels)
        return self.classification.finding_map(label, size)

    @property
    def height(self) -> int:
        return self.detections.image_size[1]


class Predictor:
    """Detectors + optional classifier, loaded once and reused for many images.

    ``segmenter`` is the lungs model of :attr:`PredictConfig.lung_roi`'s crop; when ``None`` the
    shipped one is loaded the first time a crop is needed. Pass (or set) the one an
    :class:`~thoracic.inference.analyzer.Analyzer` uses to share it. (A detector whose chain
    crops runs the chain's ``lung_roi`` step, which uses the shipped lungs model.)

    Raises :class:`~thoracic.errors.ConfigError` when ``lung_roi`` is set and a detector's chain
    already crops (that would crop twice).
    """

    def __init__(
        self,
        detectors: Sequence[OnnxDetector],
        classifier: OnnxClassifier | None = None,
        config: PredictConfig | None = None,
        segmenter: LungSegmenter | None = None,
    ) -> None:
        if not detectors:
            raise ConfigError("at least one detector is needed")
        self.detectors = list(detectors)
        self.classifier = classifier
        self.config = config or PredictConfig()
        if self.config.weights and len(self.config.weights) != len(self.detectors):
            raise ConfigError(f"{len(self.config.weights)} weight(s) for {len(self.detectors)} detector(s)")
        self.segmenter: LungSegmenter | None = segmenter
        if self.config.lung_roi:
            for det in self.detectors:
                if det.meta.lung_crop:
                    raise ConfigError(
                        f"lung_roi (--lung-roi) would crop twice: the model {Path(det.path).name or det.id or 'detector'} already crops, "
                        f"its chain is {det.chain.describe()}; predict without --lung-roi"
                    )

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

    @classmethod
    def from_preset(cls, preset: str | PathLike[str] | Preset, config: PredictConfig | None = None, *,
                    threads: int = 2) -> Predictor:
        """Load a preset (:mod:`thoracic.inference.preset`: a built-in name such as ``fast``, or a
        preset JSON file). ``config`` gives the rest (``conf``, ``iou``, ``max_det``, ``low``); the
        preset's ``wbf_iou`` and member weights replace its own, and TTA or the lung crop run when
        either asks for them."""
        p = load_preset(preset)
        cfg = replace(config or PredictConfig(), weights=p.weights, wbf_iou=p.wbf_iou,
                      tta=(config is not None and config.tta) or p.tta,
                      lung_roi=(config is not None and config.lung_roi) or p.lung_roi)
        if not p.detectors and p.classifier in (None, SHIPPED):  # the shipped detector, with or without its classifier
            return cls.load((), None, cfg, use_classifier=p.classifier == SHIPPED, threads=threads)
        detectors = p.detector_paths or (model_path("detector"),)
        classifier = model_path("classifier") if p.classifier == SHIPPED else p.classifier
        return cls.load(detectors, classifier, cfg, use_classifier=classifier is not None, threads=threads)

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        """The model files of the prediction: the detectors, then the classifier."""
        infos = [ModelInfo.of("detector", d.path, d.sha256, getattr(d, "backend", "")) for d in self.detectors]
        if self.classifier is not None:
            infos.append(ModelInfo.of("classifier", self.classifier.path, self.classifier.sha256,
                                       getattr(self.classifier, "backend", "")))
        return tuple(infos)

    @property
    def model_ids(self) -> str:
        """The sha256 prefixes of the model files used, joined with ``+`` (classifier last)."""
        return ModelInfo.ids(self.models)

    @property
    def operating_points(self) -> OperatingPoints:
        """What the clinical outputs show of this predictor's findings: the detector's operating
        points from its metadata (the default for a model without them, or an ensemble)."""
        return OperatingPoints.of([d.meta for d in self.detectors])

    @property
    def low(self) -> float | None:
        if self.classifier is None:
            return None
        return self.config.low if self.config.low is not None else self.classifier.low

    def plan(self, read: ReadConfig | None = None) -> ReadPlan:
        """How :meth:`read` reads an image and which model inputs :meth:`prepare` makes
        (:func:`~thoracic.inference.plan.read_plan`, always decoding in full)."""
        return read_plan(self, read, reduced_decode=False)

    def read(self, src: Source | Radiograph, image_id: str | None = None,
             read: ReadConfig | None = None) -> dict[str, Radiograph]:
        """Read ``src`` once per distinct normalization the models need: ``{normalize: Radiograph}``.

        The reading half of :meth:`predict` (no model runs): with :meth:`predict_read` it lets
        callers decode on other threads or processes while the models run. A radiograph is
        used as it is.
        """
        if isinstance(src, Radiograph):
            return {src.normalize: src}
        return self.plan(read).read(src, image_id)

    def _crop(self, rg: Radiograph) -> LungCrop:
        if self.segmenter is None:
            self.segmenter = default_segmenter()
        return self.segmenter.crop(rg)

    def predict(self, src: Source | Radiograph, *, image_id: str | None = None, read: ReadConfig | None = None,
                features: bool = False, heatmap: bool = False) -> ImagePrediction:
        """Predict one image (a path, bytes or a :class:`Radiograph`).

        ``features`` keeps each detector's feature map; ``heatmap`` adds the mean Eigen-CAM of
        the detectors at the original size (:mod:`thoracic.explain`) and, with a multi-label
        classifier that makes class activation maps, keeps what its per-finding maps need
        (:meth:`ImagePrediction.finding_map`).
        """
        return self.predict_read(self.read(src, image_id, read), features=features, heatmap=heatmap)

    def prepare(self, radiographs: Mapping[str, Radiograph]) -> dict[Chain, Prepared]:
        """Every model's input from what :meth:`read` returned, each shared preprocessing step once.

        Detectors on a lung crop are left out (their input needs the lungs model). Passing the
        result to :meth:`predict_read` lets callers preprocess on other threads or processes.
        """
        return self.plan().prepare(radiographs)

    def predict_read(self, radiographs: dict[str, Radiograph], *, features: bool = False,
                     heatmap: bool = False, prepared: Mapping[Chain, Prepared] | None = None) -> ImagePrediction:
        """Predict from what :meth:`read` returned (the model half of :meth:`predict`).

        ``prepared`` is :meth:`prepare`'s result for these radiographs, when the caller made it.
        """
        if not radiographs:
            raise ConfigError("no radiograph to predict")
        if self.config.lung_roi:
            for rg in radiographs.values():
                refuse_preprocessed(rg, "the lung crop of --lung-roi")
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
        crops: dict[int, LungCrop] = {}  # segment once per image
        for det in self.detectors:
            rg = radiographs.get(det.chain.normalize) or any_rg
            if cfg.lung_roi:  # never a detector whose chain crops (refused in __init__)
                if id(rg) not in crops:
                    crops[id(rg)] = self._crop(rg)
                crop = crops[id(rg)]
                t, roi = crop.transform, crop.box
                found = det.predict(crop.radiograph, dcfg, features=want)
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
        fused = self._fuse(results, (w, h))
        fused = fused.above(cfg.conf).top(cfg.max_det)
        p_abn = None
        filtered = False
        per_finding: dict[str, float] = {}
        kept: Classification | None = None
        if self.classifier is not None:
            clf = self.classifier
            rg = radiographs.get(clf.meta.chain.normalize) or any_rg
            maps = heatmap and clf.has_maps
            result = clf.classify(inputs.get(clf.meta.chain, rg), features=maps)
            p_abn, per_finding = result.p_abnormal, result.findings
            kept = result if maps and per_finding else None
            low = self.low
            if low is not None and p_abn < low:
                fused = Detections.empty((w, h))
                filtered = True
        nf = 1.0 - p_abn if p_abn is not None else 1.0 - (float(fused.scores.max()) if len(fused) else 0.0)
        cam = None
        if cams:
            cam = cams[0] if len(cams) == 1 else np.mean(np.stack(cams), axis=0).astype(np.float32)
        flags = tuple(dict.fromkeys(f for rg in radiographs.values() for f in rg.flags))  # --allow-non-chest
        return ImagePrediction(any_rg.image_id, fused, p_abn, float(nf), filtered, roi, feats, cam, flags, per_finding, kept)

    def trained_ids(self) -> list[frozenset[int]]:
        """The Kaggle ids of the classes each detector was trained on (its metadata's
        ``trained_classes``; all its names when it records none)."""
        out = []
        for det in self.detectors:
            names = det.meta.trained_classes or det.meta.names
            out.append(frozenset(CLASS_IDS[n] for n in names if n in CLASS_IDS))
        return out

    def _fuse(self, results: list[Detections], size: tuple[int, int]) -> Detections:
        """The detectors' boxes fused class by class over the detectors trained on that class.

        A detector's head scores all 14 findings, but the outputs of classes it was not trained
        on are noise (the shipped detector learnt 7 from NIH data): each detector contributes
        only its trained classes, so the result holds only classes some detector was trained on,
        and a class is fused (and its scores averaged) over the detectors that know it.
        """
        weights = self.config.weights or tuple(1.0 for _ in results)
        trained = self.trained_ids()
        if len(results) == 1:
            return _unique(results[0].only(trained[0]))
        groups: dict[tuple[int, ...], list[int]] = {}  # members -> the classes exactly they were trained on
        for cid in sorted(set().union(*trained)):
            groups.setdefault(tuple(i for i, t in enumerate(trained) if cid in t), []).append(cid)
        parts = []
        for members, classes in groups.items():
            found = [results[i].only(classes) for i in members]
            if not any(len(f) for f in found):
                continue
            boxes, scores, labels = weighted_boxes_fusion(
                [f.boxes for f in found], [f.scores for f in found], [f.class_ids for f in found], size,
                weights=[weights[i] for i in members], iou_thr=self.config.wbf_iou, skip_box_thr=0.0, clip=True,
            )
            parts.append(Detections(boxes, scores, labels, size))
        if not parts:
            return Detections.empty(size)
        merged = Detections(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]),
                            np.concatenate([p.class_ids for p in parts]), size)
        return _unique(merged.top(len(merged)))


def _unique(found: Detections) -> Detections:
    """``found`` without a box repeated exactly (same class and coordinates; the best score is kept).

    Fusion can leave identical boxes: at ``wbf_iou`` 1 nothing fuses, so two detectors (or a TTA
    pass) that agree on a box give it twice; a CSV row per box would repeat.
    """
    if len(found) < 2:
        return found
    key = np.concatenate([found.class_ids[:, None].astype(np.float64), found.boxes.astype(np.float64)], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    if len(first) == len(found):
        return found
    keep = np.sort(first)  # boxes come best first: the first of equal boxes scores best
    return Detections(found.boxes[keep], found.scores[keep], found.class_ids[keep], found.image_size, found.feature,
                      found.feature_transform, found.feature_input)
