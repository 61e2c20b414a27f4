"""Fixtures of the detection tests: tiny models built in the test session (nothing downloaded).

``tiny_pt``/``tiny_onnx`` need torch and ultralytics (the ``train`` extra): they skip locally
without them and fail in CI. ``detector_onnx`` is the shipped detector when the package has one,
else the tiny model; tests that only need *a* detector use it and run on a core install.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from thoracic.models.registry import model_path

TINY_SIZE = 256


def _build_tiny(require, out: Path) -> Path:
    """A seeded random yolov5n (nc=14, VinDr names) with calibrated BN and a lively head."""
    require("torch")
    require("ultralytics")
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


@pytest.fixture(scope="session")
def tiny_pt(tmp_path_factory, require_session) -> Path:
    return _build_tiny(require_session, tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def require_session():
    """The ``require`` helper of tests/conftest.py, for session fixtures (skip locally, fail in CI)."""

    def _require(module: str):
        try:
            return importlib.import_module(module)
        except ImportError:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"{module} is required in CI but cannot be imported")
            pytest.skip(f"{module} is not installed")

    return _require


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
    """A real chest radiograph (a bundled NIH sample) as PNG."""
    import cv2

    src = sorted(samples_dir.glob("*.jpg"))[0]
    path = tmp_path_factory.mktemp("chest") / f"{src.stem}.png"
    cv2.imwrite(str(path), cv2.imread(str(src), cv2.IMREAD_GRAYSCALE))
    return path


assert sys.version_info >= (3, 11)


def _build_tiny_classifier(require, out: Path) -> Path:
    """A small random normal/abnormal classifier ONNX with thoracic metadata (needs torch + onnx)."""
    torch = require("torch")
    require("onnx")
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
def classifier_onnx(request, tmp_path_factory, require_session) -> Path:
    """The shipped classifier, or a tiny random one when none is shipped (needs torch then)."""
    shipped = model_path("classifier")
    if shipped.is_file():
        return shipped
    return _build_tiny_classifier(require_session, tmp_path_factory.mktemp("clf"))
