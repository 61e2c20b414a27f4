"""thoracic: localize and classify thoracic abnormalities on chest radiographs.

Subpackages follow the pipeline: :mod:`thoracic.io` (read DICOM/PNG/JPEG into one radiograph
type) -> :mod:`thoracic.preprocess` (windows, contrast, geometry with inverses, named chains) ->
detection and evaluation (to come) -> :mod:`thoracic.cli`.
"""

from ._version import __version__
from .errors import ThoracicError
from .io import Radiograph, ReadOptions, image_id, read
from .preprocess import Chain, get_chain
from .transform import Affine

__all__ = [
    "Affine",
    "Chain",
    "Radiograph",
    "ReadOptions",
    "ThoracicError",
    "__version__",
    "get_chain",
    "image_id",
    "read",
]
