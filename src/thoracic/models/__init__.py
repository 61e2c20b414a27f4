"""Models: the shipped model files, their one metadata contract, and the one session factory.

- :mod:`.registry`: shipped model files by name (:func:`model_path`, :func:`list_models`,
  :func:`model_card`, :func:`default_model_path`);
- :mod:`.meta`: :class:`ModelMeta`, the input contract and label list a detector or classifier
  carries in its ONNX metadata; :mod:`.contract`: :class:`ModelContract`, the lungs model's;
- :mod:`.runtime`: :func:`onnx_session` (every model's ONNX Runtime session, on the device of
  :func:`onnx_device`), :func:`read_meta`, :func:`file_sha256`.

>>> "lungs" in list_models()
True
>>> model_path("lungs").name
'lungs.onnx'
"""

from thoracic.models.contract import METADATA_KEY, ModelContract
from thoracic.models.meta import META_KEY, MODEL_KINDS, ModelMeta
from thoracic.models.registry import DEFAULT_MODELS, default_model_path, list_models, model_card, model_path
from thoracic.models.runtime import execution_providers, file_sha256, onnx_device, onnx_session, read_meta

__all__ = [
    "DEFAULT_MODELS",
    "METADATA_KEY",
    "META_KEY",
    "MODEL_KINDS",
    "ModelContract",
    "ModelMeta",
    "default_model_path",
    "execution_providers",
    "file_sha256",
    "list_models",
    "model_card",
    "model_path",
    "onnx_device",
    "onnx_session",
    "read_meta",
]
