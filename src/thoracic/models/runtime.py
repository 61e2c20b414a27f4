"""Every thoracic model loads here: one loader, one session factory, one device setting, one metadata reader.

:func:`load_model` opens a detector, classifier or lungs model file (or a shipped one by kind):
its ONNX Runtime session (:func:`onnx_session`, on the device of :func:`onnx_device`), its
:class:`~thoracic.models.meta.ModelMeta` and its sha256, with one error type
(:class:`~thoracic.errors.ConfigError`) for a file that is missing, not an ONNX model, not a
thoracic model or not of the kind asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar

from thoracic.errors import ConfigError, MissingDependencyError
from thoracic.models.meta import ModelMeta
from thoracic.models.registry import model_path

__all__ = [
    "LoadedModel",
    "OnnxModel",
    "execution_providers",
    "file_sha256",
    "load_model",
    "onnx_device",
    "onnx_session",
    "read_meta",
    "write_meta",
]


def file_sha256(path: str | PathLike[str]) -> str:
    """The sha256 of a file (hex)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: The device of the ONNX Runtime sessions created in this context (see :func:`onnx_device`).
_DEVICE: ContextVar[str] = ContextVar("thoracic_onnx_device", default="auto")


def execution_providers(device: str = "auto", available: Sequence[str] | None = None) -> list[Any]:
    """ONNX Runtime execution providers for ``device``, best first.

    ``"auto"``: CUDA (GPU 0) when this onnxruntime build offers it, else the CPU; ``"cpu"``: the
    CPU only; ``"cuda"`` or ``"cuda:N"``: GPU N (an error when CUDA is not available). The CPU
    provider always comes last, so operators CUDA lacks still run. ``available`` defaults to
    ``onnxruntime.get_available_providers()``.

    >>> execution_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    [('CUDAExecutionProvider', {'device_id': 0}), 'CPUExecutionProvider']
    >>> execution_providers("auto", ["CPUExecutionProvider"])
    ['CPUExecutionProvider']
    >>> execution_providers("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    [('CUDAExecutionProvider', {'device_id': 1}), 'CPUExecutionProvider']
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    name = str(device).strip().lower()
    if name == "cpu":
        return ["CPUExecutionProvider"]
    has_cuda = "CUDAExecutionProvider" in available
    if name == "auto":
        return [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"] if has_cuda else ["CPUExecutionProvider"]
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not has_cuda:
            raise ConfigError(
                f"device {device!r}: this onnxruntime has no CUDA execution provider (it offers "
                f"{', '.join(available) or 'none'}); install onnxruntime-gpu or use --device cpu"
            )
        return [("CUDAExecutionProvider", {"device_id": int(name[5:] or 0)}), "CPUExecutionProvider"]
    raise ConfigError.unknown("device", str(device), ("auto", "cpu", "cuda", "cuda:N"))


@contextmanager
def onnx_device(device: str) -> Iterator[None]:
    """Run the sessions created inside on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Scoped to this thread/context, so model loaders need no device argument::

        with onnx_device("cpu"):
            predictor = Predictor.load()
    """
    execution_providers(device, ["CUDAExecutionProvider", "CPUExecutionProvider"])  # validates the name
    token = _DEVICE.set(device)
    try:
        yield
    finally:
        _DEVICE.reset(token)


def onnx_session(path: str | PathLike[str], threads: int = 2, *, device: str | None = None,
                 spin: bool | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` with ``threads`` intra-op threads on the CPU.

    ``device`` (default: that of the enclosing :func:`onnx_device`, else ``"auto"``) picks the
    execution providers (:func:`execution_providers`): CUDA first when available. ``spin``: let
    idle intra-op threads busy-wait between operators (ONNX Runtime's default); by default only
    with several threads, where it cuts one image's latency (~6% for the shipped detector on 2
    cores). The batch predictor runs 1-thread sessions side by side, which never spin.
    """
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - a core dependency
        raise MissingDependencyError.for_feature("ONNX inference", "onnxruntime") from err
    providers = execution_providers(device or _DEVICE.get(), ort.get_available_providers())
    opts = ort.SessionOptions()
    threads = max(1, int(threads))
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # spinning threads save a wake-up per operator but steal CPU from anything else running
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if (threads > 1 if spin is None else spin) else "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
        raise ConfigError(f"cannot load ONNX model: {err}", path=str(path)) from err


def read_meta(session: Any, path: str | PathLike[str] = "") -> ModelMeta:
    """The :class:`ModelMeta` stored in a session's model (either stored form)."""
    return ModelMeta.from_metadata(session.get_modelmeta().custom_metadata_map, path=str(path) or None)


def write_meta(proto: Any, meta: ModelMeta) -> None:
    """Store ``meta`` as the metadata of an ``onnx.ModelProto`` (replacing what was there)."""
    del proto.metadata_props[:]
    for key, value in meta.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A thoracic model file loaded into ONNX Runtime.

    Attributes
    ----------
    session:
        The ``onnxruntime.InferenceSession`` (thread-safe: share it).
    meta:
        Its metadata (a :class:`~thoracic.models.meta.LungsMeta` for a lungs model).
    path:
        The file it was loaded from.
    sha256:
        The file's sha256 (hex), its identity in every output.
    """

    session: Any
    meta: ModelMeta
    path: str
    sha256: str


def load_model(path: str | PathLike[str] | None = None, kind: str | None = None, *, threads: int = 2) -> LoadedModel:
    """Load a thoracic ONNX model: its session, metadata and sha256.

    Parameters
    ----------
    path:
        The model file; ``None`` loads the shipped model of ``kind``
        (:func:`~thoracic.models.registry.model_path`).
    kind:
        ``"detector"``, ``"classifier"`` or ``"lungs"``: the kind the file must hold (any when ``None``).
    threads:
        Intra-op threads of the session (:func:`onnx_session`; its device is that of the enclosing
        :func:`onnx_device`).

    Raises
    ------
    ConfigError
        The file is missing, not an ONNX model, not a thoracic model, or a model of another kind.
    """
    if path is None:
        if kind is None:
            raise ConfigError("give a model file or the kind of the shipped model to load")
        path = model_path(kind)
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"model file {p} does not exist")
    session = onnx_session(p, threads)
    meta = read_meta(session, p)
    if kind is not None:
        meta.require(kind, p)
    return LoadedModel(session, meta, str(p), file_sha256(p))


class OnnxModel:
    """What every thoracic model on ONNX Runtime holds: its session, metadata and file identity.

    :class:`~thoracic.detect.OnnxDetector`, :class:`~thoracic.classify.OnnxClassifier` and
    :class:`~thoracic.anatomy.LungSegmenter` build on it (each loads with :func:`load_model`);
    create one once and reuse it (the session is thread-safe).
    """

    #: The kind of model a subclass runs (``meta.kind`` must match).
    kind: ClassVar[str] = ""

    def __init__(self, session: Any, meta: ModelMeta, *, path: str = "", sha256: str = "") -> None:
        meta.require(self.kind, path)
        self.session = session
        self.meta = meta
        self.path = path
        self.sha256 = sha256
        self._input = session.get_inputs()[0].name

    @property
    def id(self) -> str:
        """A short identity of the model file (the first 12 hex digits of its sha256)."""
        return self.sha256[:12]
