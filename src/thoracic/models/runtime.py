"""Every thoracic model loads here: one loader, one session factory, one device setting, one metadata reader.

:func:`load_model` opens a detector, classifier or lungs model file (or a shipped one by kind):
its session on the back-end of :func:`onnx_backend` (ONNX Runtime, :func:`onnx_session`, on the
device of :func:`onnx_device`; or OpenVINO on the CPU, :func:`openvino_session`, with the same
call interface), its :class:`~thoracic.models.meta.ModelMeta` and its sha256, with one error type
(:class:`~thoracic.errors.ConfigError`) for a file that is missing, not an ONNX model, not a
thoracic model or not of the kind asked for.

Back-ends (``--backend``): ``auto`` runs OpenVINO when it is installed (``thoracic[fast]``) and
the models run on the CPU, ONNX Runtime otherwise and on CUDA. Precision (``--precision``):
``auto`` (the default) runs a model in bf16 where that is the back-end's fastest and holds:
OpenVINO on a CPU that reports ``BF16``, for a model file whose accuracy check passed
(:data:`PRECISION_CHECKS`, keyed by sha256); float32 everywhere else (ONNX Runtime always).
``f32`` gives ONNX Runtime's findings on either back-end (the parity tests); ``bf16`` asks for
bf16 whatever the check said.

OpenVINO and threads: OpenVINO's Python bindings build some C++ function-local statics on first
use, and the initialiser of one of them (the element type to numpy dtype table behind
``Tensor.data``, first reached by a model's first inference) runs Python and gives up the GIL
while it holds the static's guard. A second thread reaching the same static then waits in
``__cxa_guard_acquire`` holding the GIL, and neither ever moves: two inference workers starting
their first image at once hung ``thoracic predict`` this way. So every OpenVINO call that can
reach a first-use initialiser (creating the Core, reading and compiling a model, a thread's first
inference on a model) runs under one process-wide lock (``_OV_LOCK``); a thread's later
inferences on the same model meet only statics its first one built, and run in parallel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import mmap
import os
import threading
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
    "BACKENDS",
    "CACHE_ENV",
    "PRECISIONS",
    "LoadedModel",
    "OnnxModel",
    "OpenVinoSession",
    "accepted_precisions",
    "execution_providers",
    "file_sha256",
    "import_openvino",
    "load_model",
    "onnx_backend",
    "onnx_device",
    "onnx_metadata",
    "onnx_session",
    "openvino_available",
    "openvino_cache_dir",
    "openvino_session",
    "precision_check",
    "read_meta",
    "resolve_backend",
    "resolve_precision",
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
    except Exception as err:
        raise ConfigError(f"cannot load ONNX model: {err}", path=str(path)) from err


# --- back-ends and precision ---------------------------------------------------------------------
#: The back-ends a model can run on (``auto``: OpenVINO on the CPU when installed, else ONNX Runtime).
BACKENDS = ("auto", "onnxruntime", "openvino")
#: The inference precisions (``auto``: bf16 only for a model file whose accuracy check passed).
PRECISIONS = ("auto", "f32", "bf16")

#: The back-end and precision of the sessions :func:`load_model` creates in this context.
_BACKEND: ContextVar[tuple[str, str]] = ContextVar("thoracic_backend", default=("auto", "auto"))

#: The accuracy checks of reduced precision (``bench/precision_check.py`` writes it): per model
#: file sha256, per precision, whether the check passed, with its numbers and command.
PRECISION_CHECKS = Path(__file__).with_name("precision.json")


def openvino_available() -> bool:
    """Whether the ``openvino`` package is installed (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


@contextmanager
def onnx_backend(backend: str = "auto", precision: str = "auto") -> Iterator[None]:
    """Load the models created inside on ``backend`` at ``precision`` (see :data:`BACKENDS`,
    :data:`PRECISIONS`); scoped to this thread/context, as :func:`onnx_device`::

        with onnx_backend("openvino", "f32"):
            predictor = Predictor.load()
    """
    backend, precision = str(backend).strip().lower(), str(precision).strip().lower()
    if backend not in BACKENDS:
        raise ConfigError.unknown("backend", backend, BACKENDS)
    if precision not in PRECISIONS:
        raise ConfigError.unknown("precision", precision, PRECISIONS)
    token = _BACKEND.set((backend, precision))
    try:
        yield
    finally:
        _BACKEND.reset(token)


def resolve_backend(backend: str | None = None, device: str | None = None) -> str:
    """The back-end a model loads on: ``"onnxruntime"`` or ``"openvino"``.

    ``auto`` (the default, or that of the enclosing :func:`onnx_backend`): OpenVINO when it is
    installed and the device (:func:`onnx_device`) resolves to the CPU, else ONNX Runtime.
    ``openvino`` without the package, or with a CUDA device, is a typed error.
    """
    backend = (backend or _BACKEND.get()[0]).strip().lower()
    device = device or _DEVICE.get()
    if backend not in BACKENDS:
        raise ConfigError.unknown("backend", backend, BACKENDS)
    if backend == "onnxruntime":
        return backend
    name = str(device).strip().lower()
    if backend == "openvino":
        if not openvino_available():
            raise MissingDependencyError.for_feature("--backend openvino", "openvino", "fast")
        if name not in ("auto", "cpu"):
            raise ConfigError(f"--backend openvino runs on the CPU, not on device {device!r}: use --device cpu "
                              "or --backend onnxruntime")
        return backend
    if not openvino_available():
        return "onnxruntime"
    if name in ("auto", "cpu") and not _onnxruntime_may_have_cuda():
        return "openvino"  # known without importing onnxruntime (~70 ms of a cold start)
    return "openvino" if execution_providers(device) == ["CPUExecutionProvider"] else "onnxruntime"


def _onnxruntime_may_have_cuda() -> bool:
    """Whether the installed onnxruntime carries its CUDA provider library (``onnxruntime-gpu``
    does, the CPU build does not), looked up on disk without importing onnxruntime."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.origin:
        return False
    capi = Path(spec.origin).parent / "capi"
    return any(capi.glob("*onnxruntime_providers_cuda*"))


def _cpu_has_bf16(core: Any) -> bool:
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - an old plugin without the property
        return False


def _precision_checks(sha256: str, checks: str | PathLike[str] | None) -> dict[str, Any]:
    """The recorded checks of the model file ``sha256``: ``{precision: {"passed": ..., ...}}`` ({} when none)."""
    path = Path(checks) if checks is not None else PRECISION_CHECKS
    try:
        entry = json.loads(path.read_text(encoding="utf-8")).get("models", {}).get(sha256, {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: v for k, v in entry.items() if isinstance(v, dict)} if isinstance(entry, dict) else {}


def precision_check(sha256: str, precision: str, checks: str | PathLike[str] | None = None) -> bool:
    """Whether the accuracy check of ``precision`` passed for the model file ``sha256``."""
    return bool(_precision_checks(sha256, checks).get(precision, {}).get("passed"))


def accepted_precisions(sha256: str, checks: str | PathLike[str] | None = None) -> tuple[str, ...]:
    """The reduced precisions whose accuracy check passed for the model file ``sha256`` (sorted)."""
    return tuple(sorted(p for p, v in _precision_checks(sha256, checks).items() if v.get("passed")))


def resolve_precision(backend: str, precision: str | None = None, *, sha256: str = "", core: Any = None) -> str:
    """The precision a model runs at on ``backend``: ``"f32"`` or ``"bf16"``.

    ``auto``: bf16 on OpenVINO when the CPU reports ``BF16`` and the model file's accuracy check
    passed (:func:`precision_check`), else f32. ``bf16`` on ONNX Runtime, or on a CPU without
    bf16, is a typed error.
    """
    precision = (precision or _BACKEND.get()[1]).strip().lower()
    if precision not in PRECISIONS:
        raise ConfigError.unknown("precision", precision, PRECISIONS)
    if precision == "f32":
        return precision
    if backend != "openvino":
        if precision == "bf16":
            raise ConfigError("--precision bf16 needs the OpenVINO back-end (--backend openvino)")
        return "f32"
    if core is None:
        core = _ov_core()
    with _OV_LOCK:
        has_bf16 = _cpu_has_bf16(core)
    if precision == "bf16":
        if not has_bf16:
            raise ConfigError("--precision bf16: this CPU does not report bf16 support to OpenVINO; use f32")
        return precision
    return "bf16" if has_bf16 and sha256 and precision_check(sha256, "bf16") else "f32"


class _NoTelemetry:
    """Stands in for ``openvino_telemetry.Telemetry`` (the calls ``openvino.tools.ovc`` makes): nothing is sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _nothing(self, *args: Any, **kwargs: Any) -> None:
        return None

    init = start_session = end_session = force_shutdown = _nothing
    send_event = send_error = send_stack_trace = _nothing


def import_openvino() -> Any:
    """``import openvino`` with its usage telemetry switched off for this process.

    ``import openvino`` imports ``openvino.tools.ovc``, which sends an event to Google Analytics
    through the ``openvino-telemetry`` package unless ``CI=true`` or the user opted out in
    ``~/intel``: a hospital machine must not, and thoracic never contacts the network. The
    package's ``Telemetry`` class is replaced before the import (nothing is written anywhere).
    """
    try:
        import openvino_telemetry  # type: ignore[import-untyped]
    except ImportError:  # openvino then uses its own no-op stub
        pass
    else:
        openvino_telemetry.Telemetry = _NoTelemetry
    import openvino

    return openvino


class _Port:
    """An input or output of an :class:`OpenVinoSession` (``name``, ``shape``), as ONNX Runtime's."""

    def __init__(self, name: str, shape: list[Any]) -> None:
        self.name = name
        self.shape = shape

    def __repr__(self) -> str:
        return f"_Port({self.name!r}, {self.shape})"


class _ModelMetadata:
    def __init__(self, metadata: dict[str, str]) -> None:
        self.custom_metadata_map = metadata


_OV_CORE: Any = None
#: Held by every OpenVINO call that may run one of its bindings' first-use initialisers (see the
#: module docstring): creating the Core, reading and compiling a model, and each thread's first
#: inference on each model. Re-entrant: loading a model creates the Core.
_OV_LOCK = threading.RLock()


def _ov_core() -> Any:
    """The one OpenVINO ``Core`` of this process (created under ``_OV_LOCK``)."""
    global _OV_CORE
    with _OV_LOCK:
        if _OV_CORE is None:
            _OV_CORE = import_openvino().Core()
        return _OV_CORE


class OpenVinoSession:
    """An ONNX file compiled by OpenVINO on the CPU, with the calls thoracic makes of an
    ``onnxruntime.InferenceSession``: ``run(output_names, {input_name: array})`` (a list of arrays,
    all outputs for ``None``), ``get_inputs()``, ``get_outputs()``, ``get_modelmeta()`` (the ONNX
    file's metadata, unchanged) and ``get_providers()``. Thread-safe: each thread infers on its own
    request of the one compiled model; a thread's first inference on it runs alone (under
    ``_OV_LOCK``: see the module docstring), the later ones in parallel.
    """

    def __init__(self, compiled: Any, metadata: dict[str, str], precision: str, threads: int) -> None:
        self.compiled = compiled
        self.precision = precision
        self.threads = threads
        self._metadata = metadata
        self._inputs = [_Port(i.get_any_name(), [d.get_length() if d.is_static else None for d in i.get_partial_shape()])
                        for i in compiled.inputs]
        self._outputs = [_Port(o.get_any_name(), [d.get_length() if d.is_static else None for d in o.get_partial_shape()])
                         for o in compiled.outputs]
        self._index = {o.name: k for k, o in enumerate(self._outputs)}
        self._local = threading.local()

    def get_inputs(self) -> list[_Port]:
        return list(self._inputs)

    def get_outputs(self) -> list[_Port]:
        return list(self._outputs)

    def get_modelmeta(self) -> _ModelMetadata:
        return _ModelMetadata(dict(self._metadata))

    def get_providers(self) -> list[str]:
        return ["OpenVINO:CPU"]

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, Any]) -> list[Any]:
        request = getattr(self._local, "request", None)
        if request is None:
            # this thread's first inference on this model: alone, so that no other thread is inside
            # a first-use initialiser of the bindings while it may run one (module docstring)
            with _OV_LOCK:
                request = self.compiled.create_infer_request()
                result = self._infer(request, feeds)
            self._local.request = request  # only once a whole inference went through
        else:
            result = self._infer(request, feeds)
        if output_names is None:
            return list(result)
        try:
            return [result[self._index[n]] for n in output_names]
        except KeyError as err:
            raise ConfigError(f"the model has no output {err.args[0]!r} (it has {', '.join(self._index)})") from err

    @staticmethod
    def _infer(request: Any, feeds: dict[str, Any]) -> tuple[Any, ...]:
        # the inputs are read in place (the call is synchronous: nothing keeps them afterwards); the
        # outputs are copied, since the request's own buffers are overwritten by its next inference
        return tuple(request.infer(feeds, share_inputs=True, share_outputs=False).to_tuple())


def _varint(buf: Any, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def onnx_metadata(path: str | PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (key -> value), read from the top level of its
    protobuf without parsing the graph (which is skipped over, memory-mapped): what
    ``onnxruntime``'s ``custom_metadata_map`` and OpenVINO's ``rt_info["framework"]`` give, in a
    tenth of a millisecond. ``ValueError`` when the file is not a well-formed protobuf.
    """
    out: dict[str, str] = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        i, n = 0, len(buf)
        while i < n:
            tag, i = _varint(buf, i)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _, i = _varint(buf, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 2:
                length, i = _varint(buf, i)
                if field == 14:  # ModelProto.metadata_props: StringStringEntryProto {key = 1; value = 2}
                    entry, j, kv = buf[i:i + length], 0, {}
                    while j < len(entry):
                        key_tag, j = _varint(entry, j)
                        size, j = _varint(entry, j)
                        kv[key_tag >> 3] = bytes(entry[j:j + size]).decode("utf-8")
                        j += size
                    out[kv.get(1, "")] = kv.get(2, "")
                i += length
            else:
                raise ValueError(f"not an ONNX protobuf (wire type {wire})")
        if i != n:
            raise ValueError("truncated ONNX protobuf")
    return out


#: Where OpenVINO keeps compiled models between processes: a path, or ``off`` (default:
#: ``$XDG_CACHE_HOME/thoracic/openvino``, ``~/.cache`` when unset).
CACHE_ENV = "THORACIC_OPENVINO_CACHE"


def openvino_cache_dir() -> Path | None:
    """The folder of OpenVINO's compiled-model cache, or ``None`` (switched off, or not writable).

    A model compiled once is stored there (OpenVINO's ``CACHE_DIR``: one blob per model file,
    precision and OpenVINO version, named by a hash of them) and loaded from it by later processes,
    which cuts the CPU's compile step of a cold start. A damaged blob is compiled again and
    rewritten by OpenVINO. The blobs hold the networks' compiled weights, nothing of any image.
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in ("off", "0", "no", "false", "none"):
        return None
    if value:
        folder = Path(value).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(base) / "thoracic" / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def openvino_session(path: str | PathLike[str], threads: int = 2, precision: str = "f32") -> OpenVinoSession:
    """The ONNX file ``path`` compiled by OpenVINO for the CPU: ``threads`` inference threads,
    the latency hint (one image at a time) and ``precision`` (``f32`` or ``bf16``) as its
    inference precision hint; through the compiled-model cache (:func:`openvino_cache_dir`)."""
    try:
        core = _ov_core()
    except ImportError as err:
        raise MissingDependencyError.for_feature("the OpenVINO back-end", "openvino", "fast") from err
    threads = max(1, int(threads))
    config: dict[str, Any] = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision,
    }
    cache = openvino_cache_dir()
    if cache is not None:
        config["CACHE_DIR"] = str(cache)
    with _OV_LOCK:  # one thread at a time in OpenVINO's first-use initialisers (module docstring)
        try:
            # from the file's path: with the cache, OpenVINO then skips reading the ONNX graph
            compiled = core.compile_model(str(path), "CPU", config)
            try:
                metadata = onnx_metadata(path)
            except (OSError, ValueError):  # OpenVINO read what this small reader cannot: ask OpenVINO
                framework = core.read_model(str(path)).get_rt_info().get("framework", {})
                metadata = {str(k): str(v.astype(str)) if hasattr(v, "astype") else str(v) for k, v in framework.items()}
        except Exception as err:  # openvino raises its own types
            raise ConfigError(f"cannot load ONNX model into OpenVINO: {err}", path=str(path)) from err
        return OpenVinoSession(compiled, metadata, precision, threads)


def _backend_label(session: Any) -> str:
    if isinstance(session, OpenVinoSession):
        return f"openvino-{session.precision}"
    providers = session.get_providers() if hasattr(session, "get_providers") else ["CPUExecutionProvider"]
    return "onnxruntime-cuda" if providers and providers[0] == "CUDAExecutionProvider" else "onnxruntime-cpu"


def model_session(path: str | PathLike[str], threads: int = 2, *, sha256: str = "") -> tuple[Any, str]:
    """The session of a model file on the back-end and precision of the enclosing
    :func:`onnx_backend` (and device of :func:`onnx_device`), with its label: ``openvino-f32``,
    ``openvino-bf16``, ``onnxruntime-cpu`` or ``onnxruntime-cuda``. ``--precision auto`` is bf16
    on OpenVINO only where :func:`resolve_precision` allows it (a bf16 CPU, a passed check)."""
    backend = resolve_backend()
    if backend == "openvino":
        precision = resolve_precision(backend, sha256=sha256, core=_ov_core())
        return openvino_session(path, threads, precision), f"openvino-{precision}"
    resolve_precision(backend)  # bf16 asked of ONNX Runtime is an error
    session = onnx_session(path, threads)
    return session, _backend_label(session)


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
    backend:
        Where it runs: ``openvino-f32``, ``openvino-bf16``, ``onnxruntime-cpu`` or ``onnxruntime-cuda``.
    """

    session: Any
    meta: ModelMeta
    path: str
    sha256: str
    backend: str = "onnxruntime-cpu"


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
        Inference threads of the session (its back-end and precision are those of the enclosing
        :func:`onnx_backend`, its device that of the enclosing :func:`onnx_device`).

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
    sha256 = file_sha256(p)
    session, backend = model_session(p, threads, sha256=sha256)
    meta = read_meta(session, p)
    if kind is not None:
        meta.require(kind, p)
    return LoadedModel(session, meta, str(p), sha256, backend)


class OnnxModel:
    """What every thoracic model holds: its session (ONNX Runtime or OpenVINO), metadata, file identity
    and back-end.

    :class:`~thoracic.detect.OnnxDetector`, :class:`~thoracic.classify.OnnxClassifier` and
    :class:`~thoracic.anatomy.LungSegmenter` build on it (each loads with :func:`load_model`);
    create one once and reuse it (the session is thread-safe).
    """

    #: The kind of model a subclass runs (``meta.kind`` must match).
    kind: ClassVar[str] = ""

    def __init__(self, session: Any, meta: ModelMeta, *, path: str = "", sha256: str = "",
                 backend: str = "") -> None:
        meta.require(self.kind, path)
        self.session = session
        self.meta = meta
        self.path = path
        self.sha256 = sha256
        #: where the session runs (:attr:`LoadedModel.backend`)
        self.backend = backend or _backend_label(session)
        self._input = session.get_inputs()[0].name

    @property
    def id(self) -> str:
        """A short identity of the model file (the first 12 hex digits of its sha256)."""
        return self.sha256[:12]
