"""Image-level normal/abnormal classification on ONNX Runtime (core).

Any classifier is a :class:`Classifier`; :class:`OnnxClassifier` runs a thoracic ONNX model.

Training (:mod:`thoracic.train.classifier`) needs torch and is not imported here.
"""

from thoracic.classify.onnx import OnnxClassifier
from thoracic.classify.protocol import Classifier
from thoracic.classify.types import Classification

__all__ = ["Classification", "Classifier", "OnnxClassifier"]
