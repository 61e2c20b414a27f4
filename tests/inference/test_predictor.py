"""The Predictor: an ensemble of detectors, the 2-class filter, the lung crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thoracic.detect import DetectorConfig, OnnxDetector
from thoracic.errors import ConfigError
from thoracic.inference.predictor import PredictConfig, Predictor
from thoracic.models.runtime import onnx_backend


def test_ensemble_of_two_copies_equals_one_model(detector_onnx, chest_png):
    # NMS at 0.5 and WBF at 0.8: no two boxes one model keeps fuse with each other (clipping to
    # the image can raise the IoU of boxes NMS kept apart, hence the margin)
    scores = np.unique(OnnxDetector.load(detector_onnx).predict(chest_png, DetectorConfig(conf=0.0001, max_det=300)).scores)
    conf = float(scores[::-1][min(20, len(scores) - 1)])
    one = Predictor.load([detector_onnx], config=PredictConfig(conf=conf, iou=0.5), use_classifier=False).predict(chest_png)
    cfg = PredictConfig(conf=conf, iou=0.5, wbf_iou=0.8, weights=(1.0, 2.0))
    two = Predictor.load([detector_onnx, detector_onnx], config=cfg, use_classifier=False).predict(chest_png)
    assert len(one.detections) > 0 and len(two.detections) == len(one.detections)
    o1 = np.lexsort((one.detections.boxes[:, 0], one.detections.class_ids))
    o2 = np.lexsort((two.detections.boxes[:, 0], two.detections.class_ids))
    np.testing.assert_allclose(two.detections.boxes[o2], one.detections.boxes[o1], atol=1e-3)
    np.testing.assert_allclose(two.detections.scores[o2], one.detections.scores[o1], atol=1e-5)


def test_classifier_filter(detector_onnx, classifier_onnx, chest_png):
    keep = Predictor.load([detector_onnx], classifier_onnx, PredictConfig(conf=0.001, low=0.0)).predict(chest_png)
    drop = Predictor.load([detector_onnx], classifier_onnx, PredictConfig(conf=0.001, low=1.0)).predict(chest_png)
    plain = Predictor.load([detector_onnx], config=PredictConfig(conf=0.001), use_classifier=False).predict(chest_png)
    assert keep.p_abnormal is not None and 0.0 <= keep.p_abnormal <= 1.0
    assert len(keep.detections) == len(plain.detections) > 0 and not keep.filtered
    assert len(drop.detections) == 0 and drop.filtered
    assert keep.no_finding_score == pytest.approx(1.0 - keep.p_abnormal)
    assert plain.no_finding_score == pytest.approx(1.0 - float(plain.detections.scores.max()))


def test_lung_roi_maps_boxes_back_to_the_original(detector_onnx, chest_png):
    pytest.importorskip("thoracic.anatomy")
    pred = Predictor.load([detector_onnx], config=PredictConfig(conf=0.001, lung_roi=True), use_classifier=False).predict(chest_png)
    assert pred.roi is not None and len(pred.detections) > 0
    x0, y0, x1, y1 = pred.roi
    b = pred.detections.boxes
    assert pred.detections.image_size == (1024, 1024)
    assert (b[:, 0] >= max(x0, 0) - 1).all() and (b[:, 2] <= min(x1, 1024) + 1).all()
    assert (b[:, 1] >= max(y0, 0) - 1).all() and (b[:, 3] <= min(y1, 1024) + 1).all()


# --- one lung crop, never two -------------------------------------------------------------------
@pytest.fixture(scope="module")
def lung_models(tmp_path_factory, detector_onnx) -> dict[str, Path]:
    """The detector with other chains: ``crops`` (the paper's chain, its file saying
    ``lung_crop: true`` as the old docs told), ``researcher`` (``lung-roi-512``, exported with
    ``lung_crop: false``), ``legacy`` (no crop in the chain, only the old flag), ``display``
    (nothing before the letterbox)."""
    from helpers import model_with_meta

    from thoracic.preprocess import get_chain

    d = tmp_path_factory.mktemp("lung_models")
    return {
        "crops": model_with_meta(detector_onnx, d / "crops.onnx", get_chain("lung-roi-512-clahe"), lung_crop=True),
        "researcher": model_with_meta(detector_onnx, d / "researcher.onnx", get_chain("lung-roi-512"), lung_crop=False),
        "legacy": model_with_meta(detector_onnx, d / "legacy.onnx", lung_crop=True),
        "display": model_with_meta(detector_onnx, d / "display.onnx", get_chain("display")),
    }


@pytest.fixture()
def crops(monkeypatch) -> list[str]:
    """Every lung crop made (the chain's step and the predictor's own both cut with LungSegmenter.crop)."""
    from thoracic.anatomy import LungSegmenter

    made: list[str] = []
    real = LungSegmenter.crop

    def counting(self, radiograph, *args, **kwargs):
        made.append(radiograph.image_id)
        return real(self, radiograph, *args, **kwargs)

    monkeypatch.setattr(LungSegmenter, "crop", counting)
    return made


def test_lung_roi_is_refused_for_a_model_whose_chain_crops(lung_models, detector_onnx):
    for name in ("crops", "researcher", "legacy"):
        with pytest.raises(ConfigError, match=rf"would crop twice: the model {name}.onnx already crops, its chain "
                                              rf"is lung-roi.*lung_roi\(margin=0.05,size=\d+\)"):
            Predictor.load([lung_models[name]], config=PredictConfig(lung_roi=True), use_classifier=False)
    with pytest.raises(ConfigError, match="would crop twice"):  # in an ensemble too
        Predictor.load([detector_onnx, lung_models["crops"]], config=PredictConfig(lung_roi=True), use_classifier=False)


@pytest.mark.parametrize("name", ["crops", "researcher"])
def test_a_model_whose_chain_crops_is_cropped_once(lung_models, detector_onnx, chest_png, crops, name):
    from thoracic.inference.plan import read_plan

    p = Predictor.load([lung_models[name], detector_onnx], config=PredictConfig(conf=0.001), use_classifier=False)
    assert p.detectors[0].meta.lung_crop and not p.detectors[1].meta.lung_crop
    plan = read_plan(p)
    assert p.detectors[0].chain in plan.chains and plan.complete  # the reader's chain does the one crop
    assert all(opts.target_size is None for _, opts in plan.options)  # decoded in full for the lungs
    pred = p.predict(chest_png)
    assert len(crops) == 1 and len(pred.detections) > 0
    assert pred.roi is None  # no predictor crop


def test_a_file_that_only_set_the_flag_is_cropped_once_as_before(lung_models, detector_onnx, chest_png, crops):
    """The old meaning of ``lung_crop: true``: the lung square at its own size, then the chain; now the chain says so."""
    # float32 on both: two files of one network, and --precision auto may run only one in bf16 (its check is per file)
    with onnx_backend("auto", "f32"):
        new = Predictor.load([lung_models["legacy"]], config=PredictConfig(conf=0.001), use_classifier=False).predict(chest_png)
        assert len(crops) == 1
        old = Predictor.load([detector_onnx], config=PredictConfig(conf=0.001, lung_roi=True),
                             use_classifier=False).predict(chest_png)
    assert len(crops) == 2 and len(new.detections) == len(old.detections) > 0
    # the same boxes; the predictor's crop clipped them to the lung square, the chain's to the image
    x0, y0, x1, y1 = old.roi
    lo, hi = np.array([x0, y0, x0, y0], np.float32), np.array([x1, y1, x1, y1], np.float32)
    np.testing.assert_allclose(np.clip(new.detections.boxes, lo, hi), old.detections.boxes, atol=1e-3)
    np.testing.assert_allclose(new.detections.scores, old.detections.scores, atol=1e-5)


@pytest.fixture(scope="module")
def exported_png(tmp_path_factory, chest_png) -> dict[str, Path]:
    """``chest_png`` as ``dataset export`` writes it through a chain (pixels and text chunk)."""
    from thoracic.batch.runner import write_png
    from thoracic.io.raster import CHAIN_TEXT_KEY, chain_text
    from thoracic.preprocess import get_chain

    d = tmp_path_factory.mktemp("exported")
    out = {}
    for name in ("lung-roi-512-clahe", "yolo-512-clahe", "display"):
        chain = get_chain(name)
        write_png(d / f"{name}.png", chain.load(chest_png).to_uint8(), None, {CHAIN_TEXT_KEY: chain_text(name, chain.spec())})
        out[name] = d / f"{name}.png"
    return out


def test_an_exported_image_is_refused_where_it_would_be_preprocessed_again(lung_models, detector_onnx, exported_png,
                                                                           crops):
    from thoracic.errors import PreprocessedImageError

    crop_png = exported_png["lung-roi-512-clahe"]
    for models, cfg in (([lung_models["crops"]], PredictConfig()),  # cropped twice
                        ([detector_onnx], PredictConfig()),  # CLAHE twice
                        ([lung_models["display"]], PredictConfig(lung_roi=True))):  # the predictor's crop
        p = Predictor.load(models, config=cfg, use_classifier=False)
        with pytest.raises(PreprocessedImageError, match=r"written by `dataset export` through chain lung-roi-512-clahe "
                                                         r"\(lung_roi\(margin=0.05,size=512\)\|clahe.*predict the original"):
            p.predict(crop_png)
    assert crops == []  # refused before any crop
    with pytest.raises(PreprocessedImageError, match="yolo-512-clahe"):
        Predictor.load([detector_onnx], use_classifier=False).predict(exported_png["yolo-512-clahe"])
    # nothing is applied twice: a model with no steps before its letterbox, or a file with no steps
    assert Predictor.load([lung_models["display"]], use_classifier=False).predict(crop_png).image_id == "lung-roi-512-clahe"
    assert Predictor.load([detector_onnx], use_classifier=False).predict(exported_png["display"]).image_id == "display"


def _with_trained(src, out, trained):
    """A copy of the detector ``src`` whose metadata says it was trained on ``trained`` (``None``:
    no ``trained_classes`` recorded)."""
    import json
    from dataclasses import replace

    onnx = pytest.importorskip("onnx")
    from thoracic.models.meta import META_KEY, ModelMeta
    from thoracic.models.runtime import write_meta

    proto = onnx.load(str(src))
    meta = ModelMeta.from_metadata({e.key: e.value for e in proto.metadata_props})
    write_meta(proto, replace(meta, trained_classes=tuple(trained or ())))
    if trained is None:
        entry = next(e for e in proto.metadata_props if e.key == META_KEY)
        data = json.loads(entry.value)
        del data["trained_classes"]
        entry.value = json.dumps(data)
    onnx.save(proto, str(out))
    return out


def test_an_ensemble_outputs_only_classes_a_member_was_trained_on(tiny_onnx, chest_png, tmp_path):
    from thoracic.boxes import weighted_boxes_fusion
    from thoracic.labels import CLASS_IDS, FINDINGS

    a = _with_trained(tiny_onnx, tmp_path / "a.onnx", FINDINGS[:3])
    b = _with_trained(tiny_onnx, tmp_path / "b.onnx", FINDINGS[3:5])  # neither knows ILD (FINDINGS[5])
    cfg = PredictConfig(conf=0.001, max_det=300)
    raw = OnnxDetector.load(a).predict(chest_png, DetectorConfig(conf=0.001, max_det=300))
    assert set(raw.class_ids.tolist()) - set(range(5)), "the tiny head scores untrained classes too"
    ids = {CLASS_IDS[n] for n in FINDINGS[:5]}
    both = Predictor.load([a, b], config=cfg, use_classifier=False).predict(chest_png)
    assert len(both.detections) and set(both.detections.class_ids.tolist()) <= ids
    assert "ILD" not in both.detections.labels
    # a single model too: only its own classes
    one = Predictor.load([a], config=cfg, use_classifier=False).predict(chest_png)
    assert len(one.detections) and set(one.detections.labels) <= set(FINDINGS[:3])
    # a class one member knows is fused over that member alone (its score is not halved by the other)
    found = OnnxDetector.load(a).predict(chest_png, cfg.detector_config()).only(range(3))
    _, alone, _ = weighted_boxes_fusion([found.boxes], [found.scores], [found.class_ids], found.image_size,
                                        iou_thr=cfg.wbf_iou, clip=True)
    in_both = np.sort(both.detections.only(range(3)).scores)[::-1]
    assert len(in_both) > 0
    np.testing.assert_allclose(in_both, np.sort(alone[alone >= cfg.conf])[::-1][: len(in_both)], atol=1e-6)
    # a member with no trained classes recorded counts with all its names
    c = _with_trained(tiny_onnx, tmp_path / "c.onnx", None)
    assert OnnxDetector.load(c).meta.trained_classes == tuple(FINDINGS)
    all3 = Predictor.load([a, b, c], config=cfg, use_classifier=False)
    assert all3.trained_ids()[2] == frozenset(range(14))
    assert set(all3.predict(chest_png).detections.class_ids.tolist()) - ids


def test_identical_boxes_are_written_once(detector_onnx, chest_png):
    # at wbf_iou 1 nothing fuses: two copies of one model would give every box twice
    cfg = PredictConfig(conf=0.01, wbf_iou=1.0)
    two = Predictor.load([detector_onnx, detector_onnx], config=cfg, use_classifier=False).predict(chest_png).detections
    one = Predictor.load([detector_onnx], config=PredictConfig(conf=0.005), use_classifier=False).predict(chest_png).detections
    assert len(two) > 0
    key = np.concatenate([two.class_ids[:, None], two.boxes], axis=1)
    assert len(np.unique(key, axis=0)) == len(two)
    assert len(two) <= len(one)


def test_a_multilabel_classifier_adds_per_finding_probabilities_and_maps(detector_onnx, lite_classifier, chest_png):
    import pickle

    from thoracic.classify import OnnxClassifier

    _, path = lite_classifier
    clf = OnnxClassifier.load(path, threads=1)
    want = clf.classify(chest_png)
    pred = Predictor([OnnxDetector.load(detector_onnx, threads=1)], clf).predict(chest_png)
    assert pred.p_abnormal == pytest.approx(want.p_abnormal, abs=1e-6)
    assert list(pred.finding_probabilities) == list(clf.labels[1:])  # the head's findings, in its order
    assert pred.finding_probabilities == pytest.approx(want.findings, abs=1e-6)
    # without a heatmap nothing of the maps is kept, and the prediction pickles (Ray)
    assert pred.classification is None and pred.map_labels == ()
    with pytest.raises(ConfigError, match="no per-finding maps"):
        pred.finding_map("Cardiomegaly")
    assert pickle.loads(pickle.dumps(pred)).finding_probabilities == pred.finding_probabilities
    hot = Predictor([OnnxDetector.load(detector_onnx, threads=1)], clf).predict(chest_png, heatmap=True)
    assert hot.map_labels == ("abnormal", *clf.labels[1:]) and hot.heatmap is not None
    heat = hot.finding_map("Pleural effusion")
    assert heat.shape == hot.heatmap.shape == (hot.height, hot.width) and heat.max() == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(heat, want_map := clf.classify(chest_png, features=True).finding_map("Pleural effusion"))
    assert want_map.std() > 0.01
    back = pickle.loads(pickle.dumps(hot))
    np.testing.assert_array_equal(back.finding_map("Pleural effusion"), heat)
    with pytest.raises(ConfigError, match="unknown finding map"):
        hot.finding_map("Hernia")


def test_a_two_class_classifier_adds_nothing(detector_onnx, classifier_onnx, chest_png):
    from thoracic.classify import OnnxClassifier

    pred = Predictor([OnnxDetector.load(detector_onnx, threads=1)],
                     OnnxClassifier.load(classifier_onnx, threads=1)).predict(chest_png, heatmap=True)
    assert pred.p_abnormal is not None and pred.heatmap is not None
    assert pred.finding_probabilities == {} and pred.classification is None and pred.map_labels == ()
