"""Detection: ONNX Runtime inference (core) and training, export, checkpoint import (``train`` extra).

>>> from thoracic.detect import OnnxDetector, DetectorConfig
>>> det = OnnxDetector.load("detector.onnx")                 # doctest: +SKIP
>>> found = det.predict("chest.dcm", DetectorConfig(tta=True))  # doctest: +SKIP
>>> found.boxes, found.scores, found.labels                  # doctest: +SKIP

Training (:mod:`thoracic.detect.train`), export (:mod:`thoracic.detect.export_onnx`) and the
original-YOLOv5 importer (:mod:`thoracic.detect.yolov5_import`) need torch and are not imported
here.
"""

from .meta import META_KEY, ModelMeta
from .overlay import draw_findings
from .onnx import DetectorConfig, OnnxDetector, file_sha256, nms_xyxy, prepare_8bit
from .types import Detections

__all__ = [
    "Detections",
    "DetectorConfig",
    "META_KEY",
    "ModelMeta",
    "OnnxDetector",
    "draw_findings",
    "file_sha256",
    "nms_xyxy",
    "prepare_8bit",
]
