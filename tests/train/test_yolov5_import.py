"""The original-YOLOv5 importer: counts, shapes, weights and the original forward.

A fake checkpoint in the original repository's format is built here: the layers of a seeded
ultralytics yolov5n (0-23) re-classed as ``models.common.*`` / ``models.yolo.*`` classes that
exist only while it is pickled, plus an anchor-based ``Detect`` head (anchors + 3 convs with
3 * (80 + 5) outputs), half precision as the original ``train.py`` saved it. The real
``yolov5n-coco.pt`` of ../shared is checked too when it is there (CI has it beside the clone).
"""

from __future__ import annotations

import copy
import hashlib
import sys
import types
from pathlib import Path

import pytest
from helpers import ROOT

REAL = ROOT.parent / "shared" / "weights" / "yolov5n-coco.pt"
REAL_SHA256 = "4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3"


def _fake_original(torch, path: Path) -> None:
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(1)
    src = DetectionModel("yolov5n.yaml", nc=80, verbose=False).eval()
    for bn in src.modules():  # non-trivial BN statistics so the forward check means something
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    common = types.ModuleType("models.common")
    yolo = types.ModuleType("models.yolo")
    pkg = types.ModuleType("models")
    pkg.common, pkg.yolo = common, yolo
    classes = {}

    def fake(name: str, module: types.ModuleType) -> type:
        if name not in classes:
            cls = type(name, (torch.nn.Module,), {"__module__": module.__name__})
            setattr(module, name, cls)
            classes[name] = cls
        return classes[name]

    def reclass(m):
        name = type(m).__name__
        if name in ("Conv", "C3", "Bottleneck", "SPPF", "Concat"):
            m.__class__ = fake(name, common)
        for child in m.children():
            reclass(child)

    layers = copy.deepcopy(list(src.model)[:24])
    for m in layers:
        reclass(m)
    detect = fake("Detect", yolo)()
    detect.m = torch.nn.ModuleList(torch.nn.Conv2d(c, 3 * 85, 1) for c in (64, 128, 256))
    detect.register_buffer("anchors", torch.rand(3, 3, 2))
    detect.i, detect.f = 24, [17, 20, 23]
    model = fake("Model", yolo)()
    model.model = torch.nn.Sequential(*layers, detect)
    model.yaml = {"nc": 80}
    sys.modules.update({"models": pkg, "models.common": common, "models.yolo": yolo})
    try:
        torch.save({"epoch": -1, "model": model.half(), "ema": None, "optimizer": None, "date": "test"}, path)
    finally:
        for k in ("models", "models.common", "models.yolo"):
            sys.modules.pop(k, None)


@pytest.fixture(scope="module")
def fake_ckpt(tmp_path_factory, require) -> Path:
    torch = require("torch")
    require("ultralytics")
    from thoracic.train._ultralytics import load_ultralytics

    load_ultralytics("tests", threads=1)
    path = tmp_path_factory.mktemp("orig") / "yolov5n-original.pt"
    _fake_original(torch, path)
    assert "models.common" not in sys.modules  # the code is really gone when importing
    return path


def _ultralytics_features(model, x, layers=(17, 20, 23)):
    import torch

    y = []
    out = x
    with torch.no_grad():
        for m in model.model:
            if m.f != -1:
                out = y[m.f] if isinstance(m.f, int) else [out if j == -1 else y[j] for j in m.f]
            out = m(out)
            y.append(out)
            if m.i == max(layers):
                break
    return [y[i] for i in layers]


def _check_import(path: Path) -> None:
    import torch

    from thoracic.train.yolov5_import import (
        import_yolov5,
        load_original_checkpoint,
        original_features,
        original_state_dict,
    )

    ckpt = load_original_checkpoint(path)
    model, report = import_yolov5(ckpt, "yolov5n.yaml", nc=14)
    assert (report.n_matched, report.total) == (342, 349)
    assert report.layers == tuple(i for i in range(24) if i not in (11, 12, 15, 16, 19, 22))  # no Upsample/Concat weights
    assert report.shape_mismatch == ()
    assert set(report.missing_in_target) == {"model.24.anchors"} | {f"model.24.m.{i}.{k}" for i in range(3) for k in ("weight", "bias")}
    source = original_state_dict(ckpt)
    dest = model.state_dict()
    for name in report.matched:  # same shape, same values
        assert dest[name].shape == source[name].shape
        assert torch.equal(dest[name].float(), source[name]), name
    # the original network's forward (rebuilt from the stand-ins) equals the imported model's
    model.eval()
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    for ours, theirs in zip(_ultralytics_features(model, x), original_features(ckpt, x), strict=True):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    with torch.no_grad():
        a, b = model(x)[0], model(x)[0]
    assert torch.isfinite(a).all() and torch.equal(a, b)


def test_import_fake_original_checkpoint(fake_ckpt):
    _check_import(fake_ckpt)


def test_refuses_foreign_globals(tmp_path, require):
    require("torch")
    import pickle

    from thoracic.errors import CorruptFileError
    from thoracic.train.yolov5_import import load_original_checkpoint

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    import torch

    torch.save({"model": Evil()}, path, pickle_module=pickle)
    with pytest.raises(CorruptFileError):
        load_original_checkpoint(path)


def test_report_summary_is_readable(fake_ckpt):
    from thoracic.train.yolov5_import import import_yolov5

    _, report = import_yolov5(fake_ckpt)
    assert report.summary().startswith("342 of 349 tensors matched")
    assert len(report.sha256) == 64


@pytest.mark.skipif(not REAL.is_file(), reason="needs ../shared/weights/yolov5n-coco.pt (present in CI beside the clone)")
def test_real_yolov5n_coco_checkpoint(require):
    """SHARED DATA: the real COCO checkpoint of the original repository maps 342 of 349 tensors."""
    require("torch")
    require("ultralytics")
    assert hashlib.sha256(REAL.read_bytes()).hexdigest() == REAL_SHA256
    _check_import(REAL)
