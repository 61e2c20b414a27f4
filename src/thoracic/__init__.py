"""thoracic: localize and classify thoracic abnormalities on chest radiographs.

The subpackages are the floors of the pipeline, each importing only the floors below it
(``docs/architecture.md``):

- foundations: :mod:`thoracic.errors`, :mod:`thoracic.transform` (affine maps with inverses),
  :mod:`thoracic.boxes` (IoU, NMS, weighted boxes fusion), :mod:`thoracic.labels` (the 14
  VinDr-CXR findings and "No finding");
- :mod:`thoracic.io`: DICOM, PNG, JPEG and TIFF into one :class:`Radiograph`;
- :mod:`thoracic.preprocess`: windows, CLAHE, denoising, geometry with inverses, named chains;
- :mod:`thoracic.models`: the registry of shipped model files, their one metadata contract, the
  one loader (and ONNX Runtime session factory); :mod:`thoracic.explain`: Eigen-CAM heatmaps;
- :mod:`thoracic.anatomy` (lungs and the lung-ROI crop), :mod:`thoracic.detect` (findings),
  :mod:`thoracic.classify` (normal/abnormal): one model kind and its protocol each, inference only;
- :mod:`thoracic.inference`: :class:`Predictor` (ensembles, flip TTA, the 2-class filter),
  :class:`Analyzer` (findings, lungs and heatmap of one image), :class:`BatchPredictor`;
  :mod:`thoracic.data`: annotation tables, reader fusion, folds;
- :mod:`thoracic.evaluate`, :mod:`thoracic.batch` (convert, segment, export),
  :mod:`thoracic.dicom` (SR, GSPS, SEG, de-identification), :mod:`thoracic.train` (the
  ``train`` extra);
- :mod:`thoracic.report`, :mod:`thoracic.serve` (HTTP API and viewer), :mod:`thoracic.node`
  (DICOM node), :mod:`thoracic.cli` (the ``thoracic`` command).

A program that analyses image after image calls :func:`keep_freed_memory` once, as thoracic's own
commands do (freed image-sized blocks are reused instead of faulted in again: ``docs/benchmarks.md``).

>>> import thoracic
>>> an = thoracic.Analyzer.load(threads=1)                # the shipped models  # doctest: +SKIP
>>> an.analyze("chest.dcm").findings()                    # above the operating points  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

import thoracic.anatomy.segmenter  # noqa: F401  (registers the lung_roi step and the lung-ROI chains: every process has them)
from thoracic._lazy import lazy
from thoracic._process import keep_freed_memory
from thoracic._version import __version__
from thoracic.errors import ThoracicError
from thoracic.transform import Affine

if TYPE_CHECKING:
    from thoracic.anatomy import LungMask, LungSegmenter
    from thoracic.inference import (
        Analysis,
        Analyzer,
        BatchPredictor,
        BatchResult,
        ImagePrediction,
        PipelineConfig,
        PredictConfig,
        Predictor,
    )
    from thoracic.io import Radiograph, ReadConfig, image_id, read
    from thoracic.preprocess import Chain, get_chain
else:  # imported when first asked for (thoracic._lazy): `import thoracic.io` does not load the models
    __getattr__, __dir__ = lazy(__name__, {
        "thoracic.anatomy": ("LungMask", "LungSegmenter"),
        "thoracic.inference": ("Analysis", "Analyzer", "BatchPredictor", "BatchResult", "ImagePrediction",
                               "PipelineConfig", "PredictConfig", "Predictor"),
        "thoracic.io": ("Radiograph", "ReadConfig", "image_id", "read"),
        "thoracic.preprocess": ("Chain", "get_chain"),
    })

__all__ = [
    "Affine",
    "Analysis",
    "Analyzer",
    "BatchPredictor",
    "BatchResult",
    "Chain",
    "ImagePrediction",
    "LungMask",
    "LungSegmenter",
    "PipelineConfig",
    "PredictConfig",
    "Predictor",
    "Radiograph",
    "ReadConfig",
    "ThoracicError",
    "__version__",
    "get_chain",
    "image_id",
    "keep_freed_memory",
    "read",
]
