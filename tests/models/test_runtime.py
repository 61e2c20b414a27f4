"""The one loader: every kind of model, the shipped ones and bad files, sessions on the asked device."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thoracic.errors import ConfigError, MissingDependencyError
from thoracic.models import (
    LungsMeta,
    ModelMeta,
    OnnxModel,
    file_sha256,
    load_model,
    model_path,
    onnx_device,
    runtime,
    write_meta,
)
from thoracic.models.runtime import (
    CACHE_ENV,
    execution_providers,
    onnx_backend,
    onnx_metadata,
    onnx_session,
    openvino_available,
    openvino_cache_dir,
    openvino_session,
    precision_check,
    resolve_backend,
    resolve_precision,
)


def _plain_onnx(onnx, path):
    """The shipped lungs model without its metadata: a valid ONNX model, but not a thoracic one."""
    proto = onnx.load(str(model_path("lungs")))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))
    return proto


@pytest.mark.parametrize("kind", ["detector", "classifier", "lungs"])
def test_each_shipped_model_loads_through_the_one_loader(kind):
    m = load_model(kind=kind, threads=1)
    assert m.meta.kind == kind and m.path == str(model_path(kind))
    assert m.sha256 == file_sha256(model_path(kind))
    assert m.session.get_inputs()[0].name
    assert load_model(model_path(kind), threads=1).meta == m.meta  # by path, kind not asked


def test_the_model_classes_load_through_it_and_meet_their_protocols():
    from thoracic.anatomy import LungSegmenter, Segmenter
    from thoracic.classify import Classifier, OnnxClassifier
    from thoracic.detect import Detector, OnnxDetector

    det = OnnxDetector.load(model_path("detector"), threads=1)
    clf = OnnxClassifier.load(model_path("classifier"), threads=1)
    seg = LungSegmenter.load(threads=1)
    assert isinstance(det, Detector) and isinstance(clf, Classifier) and isinstance(seg, Segmenter)
    assert not isinstance(det, Segmenter) and not isinstance(seg, Detector)
    assert seg.sha256 == file_sha256(model_path("lungs")) and seg.id == seg.sha256[:12]
    assert isinstance(seg.meta, LungsMeta) and seg.contract is seg.meta
    for model in (det, clf, seg):  # one identity for every kind
        assert isinstance(model, OnnxModel) and model.meta.kind == model.kind and model.id == model.sha256[:12]


@pytest.mark.parametrize("load", ["detector", "classifier", "lungs"])
def test_a_missing_file_is_the_same_error_for_every_kind(tmp_path, load):
    from thoracic.anatomy import LungSegmenter
    from thoracic.classify import OnnxClassifier
    from thoracic.detect import OnnxDetector

    loader = {"detector": OnnxDetector.load, "classifier": OnnxClassifier.load, "lungs": LungSegmenter.load}[load]
    missing = tmp_path / "nope.onnx"
    with pytest.raises(ConfigError, match=f"^model file {missing} does not exist$"):
        loader(missing)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load ONNX model") as info:
        loader(bad)
    assert info.value.path == str(bad)


def test_a_file_that_is_not_a_thoracic_model_is_refused(tmp_path, require):
    onnx = require("onnx")
    path = tmp_path / "plain.onnx"
    _plain_onnx(onnx, path)
    for kind in (None, "detector", "lungs"):
        with pytest.raises(ConfigError, match="not a thoracic model .*'thoracic'.*'thoracic.contract'") as info:
            load_model(path, kind)
        assert info.value.path == str(path)


def test_a_model_of_another_kind_is_refused():
    from thoracic.anatomy import LungSegmenter
    from thoracic.detect import OnnxDetector

    with pytest.raises(ConfigError, match="expected a lungs model, got a detector"):
        LungSegmenter.load(model_path("detector"), threads=1)
    with pytest.raises(ConfigError, match="expected a detector, got a lungs model"):
        OnnxDetector.load(model_path("lungs"), threads=1)
    with pytest.raises(ConfigError, match="give a model file"):
        load_model()


def test_metadata_written_with_write_meta_is_what_the_loader_reads(tmp_path, require):
    onnx = require("onnx")
    proto = _plain_onnx(onnx, tmp_path / "plain.onnx")
    meta = LungsMeta(name="other", chain=LungsMeta.default(192).chain, normalization="unit", output="probabilities")
    write_meta(proto, meta)
    write_meta(proto, meta)  # replaces, never appends
    assert [p.key for p in proto.metadata_props] == ["thoracic.contract"]
    onnx.save(proto, str(tmp_path / "other.onnx"))
    m = load_model(tmp_path / "other.onnx", "lungs", threads=1)
    assert m.meta == meta and isinstance(m.meta, ModelMeta)


def test_every_kind_honours_the_device(monkeypatch):
    """The lungs model too: its session comes from ``onnx_session``, on the device of ``onnx_device``."""
    import onnxruntime as ort

    from thoracic.anatomy import LungSegmenter

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    auto = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
    with onnx_backend("onnxruntime"):  # (on the CPU, auto picks OpenVINO where it is installed)
        assert LungSegmenter.load(threads=1).session.get_providers()[0] == auto
        with onnx_device("cpu"):
            for kind in ("detector", "classifier", "lungs"):
                assert load_model(kind=kind, threads=1).session.get_providers() == ["CPUExecutionProvider"]
            assert LungSegmenter.load(threads=1).session.get_providers() == ["CPUExecutionProvider"]
        if not cuda:
            with onnx_device("cuda"), pytest.raises(ConfigError, match="no CUDA"):
                LungSegmenter.load(threads=1)
    # with CUDA offered, the lungs session asks for it first (whatever this onnxruntime build has),
    # and auto picks ONNX Runtime there even where OpenVINO is installed
    seen = []
    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None):
        seen.append(providers)
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", spy)
    with onnx_device("cuda:1"):
        LungSegmenter.load(threads=1)
    assert seen == [[("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]]


# --- ONNX Runtime devices -----------------------------------------------------------------------
CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_auto_prefers_cuda_when_onnxruntime_has_it():
    assert execution_providers("auto", WITH_CUDA) == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert execution_providers("auto", CPU_ONLY) == ["CPUExecutionProvider"]
    assert execution_providers("cpu", WITH_CUDA) == ["CPUExecutionProvider"]
    assert execution_providers("CUDA:2", WITH_CUDA) == [("CUDAExecutionProvider", {"device_id": 2}), "CPUExecutionProvider"]


def test_explicit_cuda_without_it_and_unknown_devices_are_errors():
    with pytest.raises(ConfigError, match="no CUDA execution provider.*--device cpu"):
        execution_providers("cuda", CPU_ONLY)
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        execution_providers("gpu", WITH_CUDA)
    with pytest.raises(ConfigError, match="unknown device"):
        execution_providers("cuda:x", WITH_CUDA)
    with pytest.raises(ConfigError):
        with onnx_device("tpu"):
            pass


def test_sessions_follow_the_device_context(detector_onnx):
    import onnxruntime as ort

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    auto = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
    assert onnx_session(detector_onnx, 1).get_providers()[0] == auto
    with onnx_device("cpu"):
        assert onnx_session(detector_onnx, 1).get_providers() == ["CPUExecutionProvider"]
        assert onnx_session(detector_onnx, 1, device="auto").get_providers()[0] == auto  # an explicit device wins
    if not cuda:
        with onnx_device("cuda"), pytest.raises(ConfigError, match="no CUDA"):
            onnx_session(detector_onnx, 1)


def test_only_multithreaded_sessions_spin(detector_onnx):
    def spins(session) -> str:
        return session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    assert spins(onnx_session(detector_onnx, 2)) == "1"  # one image's latency: ONNX Runtime's default
    assert spins(onnx_session(detector_onnx, 1)) == "0"  # the batch predictor's side-by-side sessions
    assert spins(onnx_session(detector_onnx, 2, spin=False)) == "0"
    assert onnx_session(detector_onnx, 0).get_session_options().intra_op_num_threads == 1


# --- back-ends and precision ---------------------------------------------------------------------
def test_backend_and_precision_names_are_checked():
    with pytest.raises(ConfigError, match="backend"), onnx_backend("tensorrt"):
        pass
    with pytest.raises(ConfigError, match="precision"), onnx_backend("auto", "int4"):
        pass
    assert resolve_backend("onnxruntime", "cuda") == "onnxruntime"
    with pytest.raises(ConfigError, match="needs the OpenVINO back-end"):
        resolve_precision("onnxruntime", "bf16")
    assert resolve_precision("onnxruntime", "auto") == "f32"


def test_onnxruntime_backend_is_named_in_every_model(detector_onnx):
    from thoracic.detect import OnnxDetector

    with onnx_backend("onnxruntime"), onnx_device("cpu"):
        assert load_model(kind="lungs", threads=1).backend == "onnxruntime-cpu"
        assert OnnxDetector.load(detector_onnx, threads=1).backend == "onnxruntime-cpu"


def test_auto_picks_openvino_on_the_cpu_when_installed(require, monkeypatch):
    require("openvino")
    assert openvino_available()
    assert resolve_backend("auto", "cpu") == "openvino"
    assert resolve_backend("openvino", "auto") == "openvino"
    with onnx_device("cpu"):
        m = load_model(kind="classifier", threads=1)  # backend and precision auto
    # bf16 passed its check for this file: the default runs it in bf16 where the CPU has bf16
    # (which precision auto picks where: tests/models/test_precision.py)
    has_bf16 = runtime._cpu_has_bf16(runtime._ov_core())
    assert m.backend == ("openvino-bf16" if has_bf16 else "openvino-f32")
    assert m.session.get_providers() == ["OpenVINO:CPU"]
    with pytest.raises(ConfigError, match="runs on the CPU"):
        resolve_backend("openvino", "cuda:0")
    # the same metadata and interface as ONNX Runtime's session
    with onnx_backend("onnxruntime"):
        ref = load_model(kind="classifier", threads=1)
    assert m.meta == ref.meta and m.sha256 == ref.sha256
    assert [o.name for o in m.session.get_outputs()] == [o.name for o in ref.session.get_outputs()]
    assert m.session.get_inputs()[0].name == ref.session.get_inputs()[0].name
    with pytest.raises(ConfigError, match="no output"):
        m.session.run(["nope"], {m.session.get_inputs()[0].name: np.zeros((1, 3, 320, 320), np.float32)})
    # without the package, auto is ONNX Runtime and asking for OpenVINO names the extra
    monkeypatch.setattr(runtime, "openvino_available", lambda: False)
    assert resolve_backend("auto", "cpu") == "onnxruntime"
    with onnx_device("cpu"):
        assert load_model(kind="classifier", threads=1).backend == "onnxruntime-cpu"
    with pytest.raises(MissingDependencyError, match="fast"):
        resolve_backend("openvino", "cpu")


def test_the_onnx_metadata_reader_gives_what_onnx_runtime_reads(tmp_path, detector_onnx):
    """OpenVINO compiles from the file's path (its cache then skips the graph); the metadata come
    from a small reader of the protobuf's top level: the same keys and values as ONNX Runtime's."""
    from helpers import model_with_meta

    extra = model_with_meta(detector_onnx, tmp_path / "extra.onnx", extra={"operating_points": {"Nodule/Mass": 0.25}})
    for path in (*(model_path(k) for k in ("detector", "classifier", "lungs")), detector_onnx, extra):
        if not path.is_file():
            continue
        ref = onnx_session(path, 1).get_modelmeta().custom_metadata_map
        assert onnx_metadata(path) == ref, path
    for bad in (b"not an onnx model at all\n", b"\x0a\xff\xff\xff", bytes(range(256))):
        (tmp_path / "bad.onnx").write_bytes(bad)
        with pytest.raises(ValueError):
            onnx_metadata(tmp_path / "bad.onnx")


def test_openvino_keeps_compiled_models_in_its_cache(require, tmp_path, monkeypatch):
    """A model compiled once is loaded from the cache by later sessions; a damaged blob is compiled
    again; ``off`` or a folder that cannot be made means no cache, and loading still works."""
    require("openvino")
    cache = tmp_path / "ov"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert openvino_cache_dir() == cache
    x = {"images": np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)}
    first = openvino_session(model_path("classifier"), 1, "f32")
    blobs = list(cache.glob("*.blob"))
    assert len(blobs) == 1 and blobs[0].stat().st_size > 100_000
    stamp = blobs[0].stat().st_mtime_ns
    ref = first.run(None, x)[0]
    again = openvino_session(model_path("classifier"), 1, "f32")
    assert list(cache.glob("*.blob")) == blobs and blobs[0].stat().st_mtime_ns == stamp  # read, not written
    np.testing.assert_array_equal(again.run(None, x)[0], ref)
    blobs[0].chmod(0o600)
    blobs[0].write_bytes(b"not a compiled model" * 10)
    repaired = openvino_session(model_path("classifier"), 1, "f32")
    np.testing.assert_array_equal(repaired.run(None, x)[0], ref)
    assert blobs[0].stat().st_size > 100_000  # compiled again and rewritten
    assert len(list(cache.glob("*.blob"))) == 1
    openvino_session(model_path("classifier"), 1, "bf16" if runtime._cpu_has_bf16(runtime._ov_core()) else "f32")
    monkeypatch.setenv(CACHE_ENV, "off")
    assert openvino_cache_dir() is None
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a-file" / "cache"))
    assert openvino_cache_dir() is None
    np.testing.assert_array_equal(openvino_session(model_path("classifier"), 1, "f32").run(None, x)[0], ref)
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert openvino_cache_dir() == tmp_path / "xdg" / "thoracic" / "openvino"


def test_auto_precision_follows_the_recorded_accuracy_check(require, tmp_path):
    require("openvino")
    checks = tmp_path / "precision.json"
    checks.write_text(json.dumps({"models": {"abc": {"bf16": {"passed": True}}, "def": {"bf16": {"passed": False}}}}))
    assert precision_check("abc", "bf16", checks) and not precision_check("def", "bf16", checks)
    assert not precision_check("abc", "bf16", tmp_path / "none.json")


def _both(load):
    """The same model loaded on ONNX Runtime and on OpenVINO, both in float32 on the CPU."""
    with onnx_device("cpu"):
        with onnx_backend("onnxruntime", "f32"):
            ref = load()
        with onnx_backend("openvino", "f32"):
            ov = load()
    return ref, ov


def test_openvino_f32_gives_the_same_findings_and_csv_rows(require, sample_radiographs):
    """Detector and 2-class filter on the bundled samples: scores within 1e-4, boxes within
    0.5 px, the same CSV rows (image, label, order) at the default thresholds."""
    require("openvino")
    from thoracic.batch.predictions import _pred_rows
    from thoracic.inference.predictor import Predictor

    ref, ov = _both(lambda: Predictor.load(threads=1))
    assert [m.backend for m in ref.models] == ["onnxruntime-cpu", "onnxruntime-cpu"]
    assert [m.backend for m in ov.models] == ["openvino-f32", "openvino-f32"]
    for name, rg in sample_radiographs.items():
        a, b = ref.predict(rg), ov.predict(rg)
        assert a.p_abnormal is not None and b.p_abnormal is not None
        assert abs(a.p_abnormal - b.p_abnormal) < 1e-4, name
        assert a.filtered == b.filtered
        da, db = a.detections, b.detections
        assert len(da.scores) == len(db.scores), name
        assert np.array_equal(da.class_ids, db.class_ids), name
        assert np.abs(da.scores - db.scores).max(initial=0) < 1e-4, name
        assert np.abs(da.boxes - db.boxes).max(initial=0) < 0.5, name
        rows_a, rows_b = _pred_rows(a), _pred_rows(b)
        assert [(r["image_id"], r["label"]) for r in rows_a] == [(r["image_id"], r["label"]) for r in rows_b]
        for ra, rb in zip(rows_a, rows_b, strict=True):
            assert abs(float(ra["score"]) - float(rb["score"])) <= 2e-6 + 1e-4
            for k in ("x_min", "y_min", "x_max", "y_max"):
                assert abs(float(ra[k]) - float(rb[k])) <= 0.5


def test_openvino_f32_gives_the_same_lung_masks(require, sample_radiographs):
    require("openvino")
    from thoracic.anatomy import LungSegmenter

    ref, ov = _both(lambda: LungSegmenter.load(threads=1))
    assert (ref.backend, ov.backend) == ("onnxruntime-cpu", "openvino-f32")
    for name, rg in sample_radiographs.items():
        a, b = ref.segment(rg).mask > 0, ov.segment(rg).mask > 0
        dice = 2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())
        assert dice >= 0.999, (name, dice)
        assert np.abs(ref.probability(rg) - ov.probability(rg)).max() < 1e-4, name


def test_openvino_sessions_are_safe_to_share_between_threads(require, sample_radiographs):
    require("openvino")
    from concurrent.futures import ThreadPoolExecutor

    from thoracic.detect import OnnxDetector

    with onnx_backend("openvino", "f32"):
        det = OnnxDetector.load(model_path("detector"), threads=1)
    images = list(sample_radiographs.values())[:3] * 2
    alone = [det.predict(rg).scores for rg in images]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda rg: det.predict(rg).scores, images))
    for x, y in zip(alone, together, strict=True):
        assert np.array_equal(x, y)


def test_auto_knows_an_onnxruntime_without_cuda_from_its_files(tmp_path, monkeypatch):
    """``--backend auto`` decides OpenVINO vs ONNX Runtime on the CPU without importing onnxruntime
    (a cold start's 70 ms) when the installed build has no CUDA provider library; with one it asks
    onnxruntime as before."""
    import importlib.machinery
    import importlib.util

    package = tmp_path / "onnxruntime"
    (package / "capi").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    spec = importlib.machinery.ModuleSpec("onnxruntime", None, origin=str(package / "__init__.py"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "onnxruntime" else real(name, *a))
    assert not runtime._onnxruntime_may_have_cuda()
    (package / "capi" / "libonnxruntime_providers_cuda.so").write_bytes(b"")
    assert runtime._onnxruntime_may_have_cuda()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert not runtime._onnxruntime_may_have_cuda()
