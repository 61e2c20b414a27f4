"""Inference: the models of an analysis run together on one image or on many.

- :mod:`.predictor`: :class:`Predictor` (detectors with flip TTA, their WBF ensemble, the
  normal/abnormal filter), :class:`ImagePrediction` and :class:`ModelInfo` (a model file's identity);
- :mod:`.analyzer`: :class:`Analyzer`, the whole analysis of one image (findings, lungs,
  heatmap, model identities) that the services build on;
- :mod:`.preset`: :class:`Preset`, the detectors of a prediction and how they run, by name
  (``fast``) or in a JSON file such as the ``ensemble.json`` of ``thoracic train cv``;
- :mod:`.plan`: :class:`ReadPlan`, the one decision of how an image is read and which model
  inputs a reader can prepare (the predictor and the batch predictor both follow it);
- :mod:`.batch`: :class:`BatchPredictor`, many images with decoding overlapped with inference;
- :mod:`.ray`: the same on Ray Data (the ``ray`` extra; not imported here).
"""

from typing import TYPE_CHECKING

from thoracic._lazy import lazy

if TYPE_CHECKING:
    from thoracic.inference.analyzer import Analysis, Analyzer
    from thoracic.inference.batch import BatchPredictor, BatchResult, PipelineConfig, default_workers
    from thoracic.inference.plan import ReadPlan, read_plan
    from thoracic.inference.predictor import ImagePrediction, ModelInfo, PredictConfig, Predictor
    from thoracic.inference.preset import Preset, load_preset, write_preset
else:  # each imported when first asked for (thoracic._lazy): one module does not load its siblings
    __getattr__, __dir__ = lazy(__name__, {
        "thoracic.inference.analyzer": ("Analysis", "Analyzer"),
        "thoracic.inference.batch": ("BatchPredictor", "BatchResult", "PipelineConfig", "default_workers"),
        "thoracic.inference.plan": ("ReadPlan", "read_plan"),
        "thoracic.inference.predictor": ("ImagePrediction", "ModelInfo", "PredictConfig", "Predictor"),
        "thoracic.inference.preset": ("Preset", "load_preset", "write_preset"),
    })

__all__ = [
    "Analysis",
    "Analyzer",
    "BatchPredictor",
    "BatchResult",
    "ImagePrediction",
    "ModelInfo",
    "PipelineConfig",
    "PredictConfig",
    "Predictor",
    "Preset",
    "ReadPlan",
    "default_workers",
    "load_preset",
    "read_plan",
    "write_preset",
]
