"""Image-level normal/abnormal classification on ONNX Runtime (core).

Training (:mod:`thoracic.classify.train`) needs torch and is not imported here.
"""

from .onnx import OnnxClassifier

__all__ = ["OnnxClassifier"]
