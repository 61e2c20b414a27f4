"""Models: the shipped model files, their one metadata contract, and the one loader.

- :mod:`.registry`: the shipped models by name (:func:`model_path`, :func:`list_models`,
  :func:`model_card`);
- :mod:`.meta`: :class:`ModelMeta`, what every thoracic model file declares (kind, names, input
  contract, provenance), with the lungs model's part in :class:`LungsMeta`;
- :mod:`.runtime`: :func:`load_model` (session, metadata and sha256 of any thoracic model),
  :class:`OnnxModel` (what the detector, classifier and lungs model classes share),
  :func:`onnx_session` (every model's ONNX Runtime session, on the device of
  :func:`onnx_device`), :func:`read_meta`, :func:`write_meta`, :func:`file_sha256`.

>>> "lungs" in list_models()
True
>>> model_path("lungs").name
'lungs.onnx'
"""

from thoracic.models.meta import LUNGS_META_KEY, META_KEY, MODEL_KINDS, NORMALIZATIONS, LungsMeta, ModelMeta
from thoracic.models.registry import SHIPPED_MODELS, list_models, model_card, model_path
from thoracic.models.runtime import (
    LoadedModel,
    OnnxModel,
    execution_providers,
    file_sha256,
    load_model,
    onnx_device,
    onnx_session,
    read_meta,
    write_meta,
)

__all__ = [
    "LUNGS_META_KEY",
    "LoadedModel",
    "LungsMeta",
    "META_KEY",
    "MODEL_KINDS",
    "ModelMeta",
    "NORMALIZATIONS",
    "OnnxModel",
    "SHIPPED_MODELS",
    "execution_providers",
    "file_sha256",
    "list_models",
    "load_model",
    "model_card",
    "model_path",
    "onnx_device",
    "onnx_session",
    "read_meta",
    "write_meta",
]
