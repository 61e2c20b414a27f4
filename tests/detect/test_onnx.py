"""The ONNX detector: export and inference against ultralytics' own predictor on the same image; TTA."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY_SIZE

from thoracic.detect import DetectorConfig, OnnxDetector
from thoracic.labels import FINDINGS
from thoracic.models.meta import META_KEY


@pytest.mark.parametrize(("n", "iou"), [(30, 0.7), (60, 0.5)])
def test_parity_with_ultralytics_predict(tiny_pt, tiny_onnx, chest_crop_png, n, iou):
    """Same boxes (within 1 px) and scores (within 1e-3) as ``YOLO(pt).predict`` on a 1024x800 PNG."""
    from ultralytics import YOLO

    yolo = YOLO(str(tiny_pt))

    def ultra(conf):
        r = yolo.predict(str(chest_crop_png), imgsz=TINY_SIZE, conf=conf, iou=iou, rect=False, max_det=300, verbose=False)[0]
        return r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int)

    # a threshold half-way between two scores, below which about n boxes survive NMS
    levels = np.unique(ultra(0.001)[1])[::-1]
    conf = float((levels[n] + levels[n + 1]) / 2)
    ub, us, uc = ultra(conf)
    det = OnnxDetector.load(tiny_onnx).predict(chest_crop_png, DetectorConfig(conf=conf, iou=iou, max_det=300))
    assert len(ub) >= 10 and len(det) == len(ub)
    assert np.abs(det.boxes - ub).max() <= 1.0  # pixels of the original image
    assert np.abs(det.scores - us).max() <= 1e-3
    assert (det.class_ids == uc).all()  # the tiny model's names are the 14 findings in Kaggle order


def test_metadata(tiny_onnx):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    meta = json.loads(props[META_KEY])
    assert meta["kind"] == "detector" and meta["names"] == list(FINDINGS)
    assert meta["labels"] == {str(i): n for i, n in enumerate(FINDINGS)}
    assert meta["trained_classes"] == list(FINDINGS[:7])
    assert meta["chain"]["steps"][-1] == {"name": "letterbox", "params": {"interpolation": "linear", "size": TINY_SIZE}}
    assert meta["lung_crop"] is False and meta["imgsz"] == TINY_SIZE and meta["feature_output"] == "features"


def test_outputs_and_feature_map(tiny_onnx, test_png):
    det = OnnxDetector.load(tiny_onnx)
    names = [o.name for o in det.session.get_outputs()]
    assert names == ["predictions", "features"]
    found = det.predict(test_png, DetectorConfig(conf=0.5), features=True)
    assert found.feature is not None and found.feature.shape == (64, TINY_SIZE // 8, TINY_SIZE // 8)
    assert found.image_size == (400, 300)
    assert (found.boxes[:, 2] <= 400).all() and (found.boxes[:, 3] <= 300).all()


def test_export_needs_the_training_chain(tiny_pt, tmp_path):
    """No chain.json beside the recorded data set: an error, not a silently wrong default chain.

    A model trained on another machine (the GPU run of bench/gpu) records a data YAML that is not
    here; ``data=`` points at a local copy of the data set and gives both chain and trained classes.
    """
    import onnx as onnx_lib

    from thoracic.errors import ConfigError
    from thoracic.preprocess import get_chain
    from thoracic.train.export import export_detector_onnx

    with pytest.raises(ConfigError, match="chain the model was trained with is unknown"):
        export_detector_onnx(tiny_pt, tmp_path / "x.onnx", imgsz=256)
    with pytest.raises(ConfigError, match="does not exist"):
        export_detector_onnx(tiny_pt, tmp_path / "x.onnx", imgsz=256, data=tmp_path / "missing.yaml")
    data = tmp_path / "set" / "data_0.yaml"
    (data.parent / "labels").mkdir(parents=True)
    data.write_text("path: .\nnc: 14\n")
    (data.parent / "chain.json").write_text(get_chain("yolo-512-clahe").to_json())
    (data.parent / "labels" / "a.txt").write_text("3 0.5 0.5 0.2 0.2\n8 0.3 0.3 0.1 0.1\n")

    def meta(path):
        return json.loads({p.key: p.value for p in onnx_lib.load(str(path)).metadata_props}[META_KEY])

    m = meta(export_detector_onnx(tiny_pt, tmp_path / "d.onnx", imgsz=256, data=data))
    assert m["chain"]["name"] == "yolo-512-clahe+letterbox256"
    assert [s["name"] for s in m["chain"]["steps"]] == ["resize_longest", "clahe", "letterbox"]
    assert m["trained_classes"] == [FINDINGS[3], FINDINGS[8]]
    # a chain.json file as the chain; no data set here, so all classes count as trained
    m = meta(export_detector_onnx(tiny_pt, tmp_path / "e.onnx", imgsz=256, chain=data.parent / "chain.json"))
    assert m["chain"]["name"] == "yolo-512-clahe+letterbox256" and m["trained_classes"] == list(FINDINGS)


def test_tta_is_mirror_symmetric(detector_onnx, pair):
    """TTA on the mirrored image gives the mirrored boxes.

    The model's own input is mirrored (a Prepared image), since intensity steps of a chain such as
    CLAHE are not exactly mirror-symmetric in 8 bits; the image is at the model's input size, so
    the chain's geometry is the identity.
    """
    from thoracic.preprocess import Prepared

    det = OnnxDetector.load(detector_onnx)
    pa = det.prepare(pair[0])
    assert pa.transform.is_identity
    pb = Prepared(np.ascontiguousarray(pa.pixels[:, ::-1]), pa.transform, pa.radiograph)
    # a threshold that keeps ~20 boxes (a random test model has plateaus of tied low scores,
    # where any fusion depends on input order)
    scores = np.unique(det.predict(pa, DetectorConfig(conf=0.0001, max_det=300)).scores)[::-1]
    conf = float(scores[min(20, len(scores) - 1)])
    cfg = DetectorConfig(conf=conf, tta=True)
    a, b = det.predict(pa, cfg), det.predict(pb, cfg)
    w = a.image_size[0]
    assert len(a) > 0 and len(a) == len(b)
    mirrored = np.stack([w - b.boxes[:, 2], b.boxes[:, 1], w - b.boxes[:, 0], b.boxes[:, 3]], axis=1)
    order_a = np.lexsort((a.boxes[:, 0], a.class_ids, -np.round(a.scores, 4)))
    order_b = np.lexsort((mirrored[:, 0], b.class_ids, -np.round(b.scores, 4)))
    np.testing.assert_allclose(a.boxes[order_a], mirrored[order_b], atol=1.0)
    np.testing.assert_allclose(a.scores[order_a], b.scores[order_b], atol=1e-3)
    # TTA changes the result compared with one pass
    plain = det.predict(pa, DetectorConfig(conf=conf))
    assert len(plain) != len(a) or not np.allclose(plain.scores, a.scores)


def test_export_derives_the_lung_crop_from_the_chain(tiny_pt, tmp_path):
    from thoracic.errors import ConfigError
    from thoracic.preprocess import get_chain
    from thoracic.train.export import check_lung_crop, export_detector_onnx, with_letterbox

    with pytest.raises(ConfigError, match=r"--lung-crop contradicts the chain: yolo-512-clahe\+letterbox256 .* does not crop"):
        export_detector_onnx(tiny_pt, tmp_path / "x.onnx", imgsz=256, chain="yolo-512-clahe", lung_crop=True)
    assert not (tmp_path / "x.onnx").exists()
    paper = with_letterbox(get_chain("lung-roi-512-clahe"), 256)
    check_lung_crop(paper, True)  # agrees: fine
    check_lung_crop(paper, None)
    with pytest.raises(ConfigError, match="crops to the lungs"):
        check_lung_crop(paper, False)
