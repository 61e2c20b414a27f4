"""Image-level normal/abnormal classification on ONNX Runtime (core).

Training (:mod:`thoracic.train.classifier`) needs torch and is not imported here.
"""

from thoracic.classify.onnx import OnnxClassifier

__all__ = ["OnnxClassifier"]
