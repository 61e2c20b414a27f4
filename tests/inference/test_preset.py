"""Presets: a detector ensemble and how it runs, by name or in one JSON file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from thoracic.errors import ConfigError
from thoracic.inference.analyzer import Analyzer
from thoracic.inference.predictor import PredictConfig, Predictor
from thoracic.inference.preset import SHIPPED, Preset, PresetMember, load_preset, members_of, write_preset
from thoracic.models.registry import model_path
from thoracic.models.runtime import file_sha256


@pytest.fixture()
def two_members(detector_onnx, tmp_path):
    folder = tmp_path / "cv" / "models"
    folder.mkdir(parents=True)
    a, b = folder / "fold_1.onnx", folder / "fold_2.onnx"
    shutil.copy(detector_onnx, a)
    shutil.copy(detector_onnx, b)
    return a, b


def test_a_written_preset_reads_back_with_paths_relative_to_its_folder(two_members, tmp_path):
    a, b = two_members
    preset = Preset("cv", (PresetMember(a, 2.0, file_sha256(a)), PresetMember(b, 1.0)), tta=True, wbf_iou=0.6,
                    classifier=None, description="two folds")
    path = write_preset(tmp_path / "cv" / "ensemble.json", preset)
    data = json.loads(path.read_text())
    assert data["format"] == "thoracic-preset" and data["version"] == 1
    assert [d["path"] for d in data["detectors"]] == ["models/fold_1.onnx", "models/fold_2.onnx"]
    assert "sha256" in data["detectors"][0] and "sha256" not in data["detectors"][1]
    # moved with its folder, it still finds its members
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "cv", moved)
    back = load_preset(moved / "ensemble.json")
    assert back.detector_paths == (moved / "models" / "fold_1.onnx", moved / "models" / "fold_2.onnx")
    assert (back.name, back.tta, back.wbf_iou, back.classifier, back.description) == ("cv", True, 0.6, None, "two folds")
    assert back.weights == (2.0, 1.0)
    assert not list(moved.glob(".*.tmp")), "no temporary file left"


def test_a_member_that_changed_or_is_missing_is_refused(two_members, tmp_path):
    a, b = two_members
    path = write_preset(tmp_path / "e.json", Preset("e", members_of([a, b])))
    b.write_bytes(a.read_bytes()[:-10])
    with pytest.raises(ConfigError, match="fold_2.onnx is not the file the preset was written for"):
        load_preset(path)
    b.unlink()
    with pytest.raises(ConfigError, match="no detector file .*fold_2.onnx"):
        load_preset(path)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot read the preset"),
    ('{"detectors": []}', "not a thoracic preset"),
    ('{"format": "thoracic-preset", "version": 2}', "version 2 is not supported"),
    ('{"format": "thoracic-preset", "version": 1, "tta": "yes"}', "'tta' has the wrong type"),
    ('{"format": "thoracic-preset", "version": 1, "wbf_iou": true}', "'wbf_iou' has the wrong type"),
    ('{"format": "thoracic-preset", "version": 1, "wbf_iou": 1.5}', "wbf_iou must lie in"),
    ('{"format": "thoracic-preset", "version": 1, "detectors": [{"weight": 1}]}', r"detectors\[0\] needs a \"path\""),
    ('{"format": "thoracic-preset", "version": 1, "detectors": [{"path": "a.onnx", "weight": "2"}]}', "'weight' has the wrong type"),
    ('{"format": "thoracic-preset", "version": 1, "detectors": [{"path": "a.onnx", "weight": 0}]}', "must be positive"),
    ('{"format": "thoracic-preset", "version": 1, "classifier": 3}', "'classifier' must be null"),
    ('{"format": "thoracic-preset", "version": 1, "classifier": "nowhere.onnx"}', "no classifier file"),
])
def test_a_malformed_preset_file_is_a_config_error(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_preset(path)


def test_names_and_missing_files():
    assert load_preset("fast").detectors == () and load_preset("fast").classifier == SHIPPED
    with pytest.raises(ConfigError, match="unknown preset 'fats'.*choices: a preset JSON file, fast"):
        load_preset("fats")
    with pytest.raises(ConfigError, match="no preset file"):
        load_preset("runs/missing/ensemble.json")


def test_the_fast_preset_is_the_default_predictor():
    if not model_path("detector").is_file():
        pytest.skip("no shipped detector in this checkout")
    assert Predictor.from_preset("fast", threads=1).models == Predictor.load(threads=1).models
    bare = Preset("bare", classifier=None)
    assert [m.role for m in Predictor.from_preset(bare, threads=1).models] == ["detector"]


def test_a_preset_predicts_as_the_same_models_and_settings_given_one_by_one(two_members, classifier_onnx, chest_png,
                                                                             tmp_path):
    a, b = two_members
    path = write_preset(tmp_path / "e.json", Preset("e", (PresetMember(a, 2.0), PresetMember(b, 1.0)), tta=True,
                                                    wbf_iou=0.6, classifier=str(classifier_onnx)))
    base = PredictConfig(conf=0.01, low=0.0)
    from_preset = Predictor.from_preset(path, base, threads=1)
    assert from_preset.config.tta and from_preset.config.weights == (2.0, 1.0) and from_preset.config.wbf_iou == 0.6
    by_hand = Predictor.load([a, b], classifier_onnx, PredictConfig(conf=0.01, low=0.0, tta=True, weights=(2.0, 1.0),
                                                                    wbf_iou=0.6), threads=1)
    assert from_preset.models == by_hand.models
    p, q = from_preset.predict(chest_png), by_hand.predict(chest_png)
    assert len(p.detections) > 0
    np.testing.assert_array_equal(p.detections.boxes, q.detections.boxes)
    np.testing.assert_array_equal(p.detections.scores, q.detections.scores)
    assert p.p_abnormal == q.p_abnormal


def test_the_analyzer_takes_a_preset_or_files_not_both(two_members, tmp_path):
    a, b = two_members
    path = write_preset(tmp_path / "e.json", Preset("e", members_of([a, b]), classifier=None))
    an = Analyzer.load(preset=path, lungs=False, threads=1)
    assert [m.role for m in an.models] == ["detector", "detector"]
    with pytest.raises(ConfigError, match="not both"):
        Analyzer.load([a], preset=path, lungs=False, threads=1)
