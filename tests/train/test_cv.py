"""Cross-validation in one call: folds, training, out-of-fold predictions on the original images, scores, resume."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import read_rows, vindr_standin

from thoracic.data import load_vinbigdata, read_folds
from thoracic.errors import ConfigError
from thoracic.evaluate.evaluate import EvaluationConfig, evaluate
from thoracic.evaluate.tables import read_predictions, read_truth
from thoracic.models.runtime import file_sha256
from thoracic.train.cv import CrossValConfig

TINY = {"epochs": 1, "imgsz": 64, "batch": 4, "mosaic": 0.0, "threads": 1}


def test_config_validates(tmp_path):
    with pytest.raises(ConfigError, match="at least 2 folds"):
        CrossValConfig(out=str(tmp_path), folds=1)
    with pytest.raises(ConfigError, match="test_fold"):
        CrossValConfig(out=str(tmp_path), folds=4, test_fold=4)
    with pytest.raises(ConfigError, match="sets data, name itself"):
        CrossValConfig(out=str(tmp_path), detector={"data": "x.yaml", "name": "n"})
    with pytest.raises(ConfigError, match="unknown fusion"):
        CrossValConfig(out=str(tmp_path), fuse="mean")
    assert CrossValConfig(out=str(tmp_path), folds=4, test_fold=0).cv_folds == [1, 2, 3]


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, require):
    require("torch")
    require("ultralytics")
    from thoracic.train.cv import cross_validate

    root = tmp_path_factory.mktemp("vindr")
    ann = load_vinbigdata(vindr_standin(root, 16))
    cfg = CrossValConfig(out=str(root / "cv"), folds=4, test_fold=0, detector=TINY, bootstrap=20, workers=1)
    steps: list[tuple[str, dict]] = []
    result = cross_validate(ann, cfg, images=root / "train", progress=lambda s, i: steps.append((s, dict(i))))
    return root, ann, cfg, result, steps


def test_every_cv_fold_is_trained_and_predicted_out_of_fold(cv_run):
    root, ann, _cfg, result, steps = cv_run
    out = root / "cv"
    folds = read_folds(out / "folds.csv")
    assert set(folds) == set(ann.images) and set(folds.values()) == {0, 1, 2, 3}
    test_ids = {i for i, f in folds.items() if f == 0}
    assert (out / "test_images.txt").read_text().split() == sorted(test_ids)
    assert [s for s, _ in steps if s == "train"] == ["train"] * 3 and [f["fold"] for f in result.folds] == [1, 2, 3]
    # the test fold is never exported, trained on or predicted
    exported = {r["image_id"] for r in read_rows(out / "data" / "manifest.csv")}
    assert exported == set(ann.images) - test_ids
    oof = read_predictions(out / "oof.csv")
    assert set(oof.images) == set(ann.images) - test_ids
    for k in (1, 2, 3):
        side = read_rows(out / "oof" / f"fold_{k}.images.csv")
        # fold k's images, predicted from the original DICOMs (not the exported PNGs) by model k
        assert {r["image_id"] for r in side} == {i for i, f in folds.items() if f == k}
        assert all(r["source"].endswith(".dicom") and r["status"] == "ok" for r in side)
        assert {r["models"] for r in side} == {file_sha256(out / "models" / f"fold_{k}.onnx")[:12]}
        train_list = (out / "data" / f"train_{k}.txt").read_text()
        assert not any(r["image_id"] in train_list for r in side)


def test_scores_are_those_of_evaluate_on_the_same_files(cv_run):
    root, _ann, _cfg, result, _ = cv_run
    out = root / "cv"
    truth = read_truth(out / "truth.csv")
    pooled = evaluate(truth, read_predictions(out / "oof.csv"), EvaluationConfig(bootstrap=0, coco=False)).metrics
    assert result.pooled["kaggle_map"] == pytest.approx(pooled["map"])
    assert result.pooled["images"] == 12
    lo, hi = result.pooled["ci"]["kaggle_map"]
    assert lo <= result.pooled["kaggle_map"] <= hi
    for f in result.folds:
        part = read_predictions(out / "oof" / f"fold_{f['fold']}.csv")
        m = evaluate(truth.select_images(part.images), part, EvaluationConfig(bootstrap=0, coco=False)).metrics
        assert f["kaggle_map"] == pytest.approx(m["map"]) and f["images"] == 4
    saved = json.loads((out / "cv.json").read_text())
    assert saved["pooled"]["kaggle_map"] == pytest.approx(result.pooled["kaggle_map"])
    assert "Kaggle mAP@0.4" in (out / "cv.md").read_text()


def test_a_second_run_resumes_without_training(cv_run):
    from thoracic.train.cv import cross_validate

    root, ann, cfg, result, _ = cv_run
    best = root / "cv" / "runs" / "fold_1" / "weights" / "best.pt"
    before = best.stat().st_mtime_ns
    steps: list[tuple[str, dict]] = []
    again = cross_validate(ann, cfg, images=root / "train", progress=lambda s, i: steps.append((s, dict(i))))
    assert not [s for s, _ in steps if s in ("train", "epoch", "predicted")]
    assert all(i["resumed"] for s, i in steps if s == "trained")
    assert best.stat().st_mtime_ns == before
    assert again.pooled["kaggle_map"] == pytest.approx(result.pooled["kaggle_map"])


def test_other_settings_in_the_same_folder_are_refused(cv_run):
    from thoracic.train.cv import cross_validate

    root, ann, cfg, _, _ = cv_run
    other = CrossValConfig(out=cfg.out, folds=4, test_fold=1, detector=TINY)
    with pytest.raises(ConfigError, match="other settings .*test_fold"):
        cross_validate(ann, other, images=root / "train")


def test_images_without_a_file_are_an_error_before_any_training(tmp_path, require):
    require("torch")
    from thoracic.train.cv import cross_validate

    ann = load_vinbigdata(vindr_standin(tmp_path, 8))
    gone = min((tmp_path / "train").iterdir())
    gone.unlink()
    with pytest.raises(ConfigError, match="1 image.* have no file"):
        cross_validate(ann, CrossValConfig(out=str(tmp_path / "cv"), folds=2, detector=TINY), images=tmp_path / "train")
    assert not (tmp_path / "cv" / "runs").exists()
    with open(tmp_path / "cv" / "folds.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 8


def test_the_fold_models_are_written_as_a_preset(cv_run):
    from thoracic.inference.predictor import Predictor
    from thoracic.inference.preset import load_preset

    root, _ann, _cfg, result, _ = cv_run
    preset = load_preset(root / "cv" / "ensemble.json")  # checks every member's sha256
    assert result.files["ensemble"] == str(root / "cv" / "ensemble.json")
    assert preset.detector_paths == tuple(root / "cv" / "models" / f"fold_{k}.onnx" for k in (1, 2, 3))
    assert all(m.sha256 == file_sha256(m.path) for m in preset.detectors)
    assert (preset.tta, preset.classifier, preset.weights) == (False, None, ())
    assert [m.role for m in Predictor.from_preset(preset, threads=1).models] == ["detector"] * 3
