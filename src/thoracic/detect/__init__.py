"""Detection: ONNX Runtime inference (core) and training, export, checkpoint import (``train`` extra).

Any detector is a :class:`Detector`; :class:`OnnxDetector` runs a thoracic ONNX model.

>>> from thoracic.detect import OnnxDetector, DetectorConfig
>>> det = OnnxDetector.load("detector.onnx")                 # doctest: +SKIP
>>> found = det.predict("chest.dcm", DetectorConfig(tta=True))  # doctest: +SKIP
>>> found.boxes, found.scores, found.labels                  # doctest: +SKIP

Training (:mod:`thoracic.train.detector`), export (:mod:`thoracic.train.export`) and the
original-YOLOv5 importer (:mod:`thoracic.train.yolov5_import`) need torch and are not imported
here.
"""

from thoracic.detect.onnx import DetectorConfig, OnnxDetector
from thoracic.detect.overlay import draw_findings
from thoracic.detect.protocol import Detector
from thoracic.detect.types import Detections

__all__ = [
    "Detections",
    "Detector",
    "DetectorConfig",
    "OnnxDetector",
    "draw_findings",
]
