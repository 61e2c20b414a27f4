"""The Analyzer: every shipped model on one image, as the service and the DICOM outputs use it."""

from __future__ import annotations

import json

import pytest


def test_analysis_of_a_dicom(analyzer, samples_dir):
    from thoracic.models import model_path
    from thoracic.models.runtime import file_sha256

    a = analyzer.analyze(samples_dir / "RG1_J2KI.dcm")
    assert a.is_dicom and "PixelData" not in a.radiograph.dataset
    assert a.heatmap.shape == a.lungs.mask.shape == (a.height, a.width) == (1955, 1841)
    assert 0.0 <= a.heatmap.min() and a.heatmap.max() <= 1.0 and a.heatmap.max() > 0.5
    # the detector's feature map sees the lungs: the heatmap is hotter inside the lung mask
    lung = a.lungs.mask > 0
    assert a.heatmap[lung].mean() > 2 * a.heatmap[~lung].mean()
    d = json.loads(json.dumps(a.to_dict()))
    assert {m["role"]: m["sha256"] for m in d["models"]} == {
        role: file_sha256(model_path(role)) for role in ("detector", "classifier", "lungs")
    }
    # the findings are the clinical ones: the shipped detector's operating points, stacks merged
    assert a.operating_points.source == "model" and d["operating_points"]["scores"] == a.operating_points.scores
    assert len(d["findings"]) == len(a.clinical()) <= len(a.prediction.detections)
    assert all(f["score"] >= a.operating_points.scores[f["label"]] - 1e-6 for f in d["findings"])
    everything = a.to_dict(min_score=0.0)["findings"]
    assert len(d["findings"]) < len(everything) <= len(a.prediction.detections)
    assert all(f["box"][0] < f["box"][2] <= a.width and f["box"][1] < f["box"][3] <= a.height for f in everything)
    assert len(a.findings(min_score=1.01)) == 0
    assert analyzer.model_ids == "+".join(m["sha256"][:12] for m in d["models"])


def test_analysis_of_a_png_has_no_dicom_header(analyzer, samples_dir):
    a = analyzer.analyze((samples_dir / "00001437_012.jpg").read_bytes(), image_id="upload", lungs=False, heatmap=False)
    assert not a.is_dicom and a.image_id == "upload" and a.lungs is None and a.heatmap is None
    assert a.to_dict()["lung_roi"] is None and a.to_dict()["heatmap"] is False


#: The keys of an analysis summary: those of a 2-class classifier (unchanged), and ``classifier``
#: added by a multi-label one.
SUMMARY_KEYS = {"image_id", "width", "height", "format", "findings", "operating_points", "p_abnormal",
                "no_finding_score", "filtered", "lung_roi", "heatmap", "flags", "models", "thoracic_version", "seconds"}


def test_a_two_class_classifier_summary_is_unchanged(analyzer, samples_dir):
    a = analyzer.analyze(samples_dir / "00001437_012.jpg", lungs=False)
    assert set(a.to_dict()) == SUMMARY_KEYS and a.classifier_findings() is None
    assert a.prediction.finding_probabilities == {} and a.finding_thresholds == {}


def test_a_multilabel_classifier_summary_lists_each_finding(lite_analyzer, lite_classifier, samples_dir):
    from thoracic.classify import OnnxClassifier

    src = samples_dir / "00001437_012.jpg"
    clf = OnnxClassifier.load(lite_classifier[1], threads=1)
    want = clf.classify(src)
    d = json.loads(json.dumps(lite_analyzer.analyze(src).to_dict()))
    assert set(d) == SUMMARY_KEYS | {"classifier"}
    c = d["classifier"]
    assert list(c["findings"]) == list(clf.labels[1:])
    assert c["findings"] == {k: pytest.approx(v, abs=1e-6) for k, v in want.findings.items()}
    assert c["thresholds"] == {k: pytest.approx(clf.thresholds[k]) for k in clf.labels[1:]}
    assert c["maps"] == ["abnormal", *clf.labels[1:]] and d["heatmap"] is True
    assert d["p_abnormal"] == pytest.approx(want.p_abnormal, abs=1e-6)
    # no heatmap asked for: the probabilities, and no maps
    d = lite_analyzer.analyze(src, heatmap=False).to_dict()
    assert d["classifier"]["maps"] == [] and d["classifier"]["findings"] == c["findings"]
