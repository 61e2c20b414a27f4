"""SR, GSPS and SEG of an analysis: built, written, read back, compared and validated (dciodvfy)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_helpers import (
    BOXES,
    all_text,
    built_analysis,
    dciodvfy_errors,
    dciodvfy_unexplained,
    lung_mask,
    sr_findings,
)
from helpers import ROOT, SAMPLES

from thoracic.dicom import (
    DEFAULT_MIN_SCORE,
    FINDING_CODES,
    NotDicomSourceError,
    build_results,
    finding_label,
)
from thoracic.errors import ConfigError, ReadError

CASES = ("RG1_J2KI.dcm", "siim_cr_jpeg_baseline.dcm", "built")


@pytest.fixture
def case(request, require, sample_analyses, phi_analysis):
    require("highdicom")
    return phi_analysis if request.param == "built" else sample_analyses[request.param]


def _expected(analysis, min_score):
    """The clinical findings at ``min_score`` (merged: tests/detect/test_clinical.py checks how), clipped."""
    det = analysis.clinical(min_score)
    boxes = det.boxes.astype(np.float64)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, analysis.width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, analysis.height)
    return boxes, det.scores, list(det.labels)


@pytest.mark.parametrize("case", CASES, indirect=True)
def test_objects_read_back_and_validate(case, tmp_path):
    """Every object is written, read back with pydicom, matches the analysis and passes dciodvfy."""
    min_score = 0.02  # low, so that the real samples have boxes to compare
    results = build_results(case, min_score=min_score)
    paths = results.save(tmp_path)
    assert set(paths) == {"sr", "gsps", "seg"}
    source = case.radiograph.dataset
    boxes, scores, labels = _expected(case, min_score)
    assert len(results.findings) == len(boxes)

    sr = pydicom.dcmread(paths["sr"])
    gsps = pydicom.dcmread(paths["gsps"])
    seg = pydicom.dcmread(paths["seg"])
    for ds in (sr, gsps, seg):
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert paths[{"SR": "sr", "PR": "gsps", "SEG": "seg"}[ds.Modality]].name == f"{ds.SOPInstanceUID}.dcm"
    assert len({sr.SeriesInstanceUID, gsps.SeriesInstanceUID, seg.SeriesInstanceUID}) == 3

    # SR: one group per box, in score order, coordinates within 0.5 px, codes, reference
    found = sr_findings(sr)
    assert len(found) == len(boxes)
    order = np.argsort(-scores, kind="stable")
    for f, i in zip(found, order, strict=True):
        x0, y0, x1, y1 = boxes[i]
        assert f["graphic_type"] == "POLYLINE"
        pts = f["points"]
        assert np.allclose(pts.min(axis=0), [x0, y0], atol=0.5) and np.allclose(pts.max(axis=0), [x1, y1], atol=0.5)
        assert finding_label(*f["finding"]) == labels[i]
        assert f["score"] == pytest.approx(float(scores[i]), abs=1e-5)
        assert f["referenced"] == source.SOPInstanceUID
    text = all_text(sr)
    assert "with findings" in text if len(boxes) else "without findings" in text

    # GSPS: one polyline and one "label score" text per box, referencing the source image
    assert gsps.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    objects = gsps.GraphicAnnotationSequence[0].GraphicObjectSequence if len(boxes) else []
    texts = gsps.GraphicAnnotationSequence[0].TextObjectSequence if len(boxes) else []
    assert len(objects) == len(texts) == len(boxes)
    for obj, txt, i in zip(objects, texts, order, strict=True):
        pts = np.asarray(obj.GraphicData, np.float64).reshape(-1, 2)
        assert np.allclose(pts.min(axis=0), boxes[i][:2], atol=0.5)
        assert np.allclose(pts.max(axis=0), boxes[i][2:], atol=0.5)
        assert txt.UnformattedTextValue == f"{labels[i]} {scores[i]:.2f}"

    # GSPS display: the source's window (else the one thoracic used), MONOCHROME1 inverted
    voi = gsps.SoftcopyVOILUTSequence[0]
    center = source.get("WindowCenter", case.radiograph.window_center)
    assert float(voi.WindowCenter) == pytest.approx(float(center[0] if isinstance(center, list) else center))
    inverse = source.PhotometricInterpretation == "MONOCHROME1"
    assert gsps.PresentationLUTShape == ("INVERSE" if inverse else "IDENTITY")

    # SEG: the lung mask, pixel for pixel, referencing the source image
    assert seg.SegmentationType == "BINARY"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == \
        source.SOPInstanceUID
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), case.lungs.mask > 0)

    for path in paths.values():
        assert dciodvfy_unexplained(path) == [], path.name


def test_known_boxes_codes_and_clipping(require, phi_analysis):
    require("highdicom")
    results = build_results(phi_analysis)  # default min_score: the 0.05 nodule is left out
    assert DEFAULT_MIN_SCORE > 0.05
    assert [f.label for f in results.findings] == ["Cardiomegaly", "Pleural effusion", "Pneumothorax"]
    assert results.findings[-1].box == (0.0, 10.0, 60.0, 70.0)  # x0 = -5 clipped to the image
    found = sr_findings(results.sr)
    assert [f["finding"] for f in found] == [("SCT", "8186001"), ("SCT", "60046008"), ("SCT", "36118008")]
    np.testing.assert_allclose(found[0]["points"][:4],
                               [[80.25, 100.5], [170.75, 100.5], [170.75, 160.0], [80.25, 160.0]])
    assert results.sr.ContentSequence  # the tree exists; P(abnormal) is in it
    assert "0.87" in all_text(results.sr)
    assert results.gsps.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue == "Cardiomegaly 0.91"


def test_no_findings_is_said_explicitly(require, phi_file, tmp_path):
    require("highdicom")
    results = build_results(built_analysis(phi_file, boxes=()))
    assert results.findings == ()
    text = all_text(results.sr)
    assert "111241" in text and "without findings" in text
    assert "GraphicAnnotationSequence" not in results.gsps
    for path in results.save(tmp_path).values():
        assert dciodvfy_errors(path) == []


def test_without_lungs_or_classifier(require, phi_file):
    require("highdicom")
    results = build_results(built_analysis(phi_file, lungs=False, p_abnormal=None))
    assert results.seg is None and results.sr is not None and results.gsps is not None
    assert set(results.datasets()) == {"sr", "gsps"}
    assert "Probability" not in all_text(results.sr)


def test_objects_subset_and_bad_settings(require, phi_analysis):
    require("highdicom")
    only = build_results(phi_analysis, objects=["seg"])
    assert only.sr is None and only.gsps is None and only.seg is not None
    with pytest.raises(ConfigError, match="did you mean 'gsps'"):
        build_results(phi_analysis, objects=["gps"])
    with pytest.raises(ConfigError, match="min_score"):
        build_results(phi_analysis, min_score=1.5)


def test_series_numbers_and_identity(require, phi_analysis):
    require("highdicom")
    r = build_results(phi_analysis, series_number=4000, manufacturer="Site AI")
    assert (r.sr.SeriesNumber, r.gsps.SeriesNumber, r.seg.SeriesNumber) == (4000, 4001, 4002)
    assert r.seg.Manufacturer == r.gsps.Manufacturer == "Site AI"
    assert r.seg.DeviceSerialNumber == "ab" * 8  # the detector's sha256 prefix
    algo = r.seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert "ef" * 8 in algo.AlgorithmVersion
    assert "ab" * 8 in all_text(r.sr) and "cd" * 32 in all_text(r.sr)  # detector prefix, classifier full sha256
    assert r.sr.SoftwareVersions == r.gsps.SoftwareVersions == "thoracic " + phi_analysis.thoracic_version


def test_png_source_is_refused(require, analyzer):
    require("highdicom")
    jpeg = next(p for p in sorted(SAMPLES.iterdir()) if p.suffix == ".jpg")
    analysis = analyzer.analyze(jpeg, heatmap=False, lungs=False)
    with pytest.raises(NotDicomSourceError, match="need a DICOM source") as err:
        build_results(analysis)
    assert isinstance(err.value, ValueError) and isinstance(err.value, ConfigError)


def test_source_header_is_not_changed(require, sample_analyses):
    require("highdicom")
    a = sample_analyses["siim_cr_jpeg_baseline.dcm"]
    before = a.radiograph.dataset.to_json_dict()
    build_results(a, deidentify=True, salt="x")
    assert a.radiograph.dataset.to_json_dict() == before


def test_checker_catches_an_invalid_object(require, phi_analysis, tmp_path):
    """dciodvfy really fails a broken object (so the clean results above mean something)."""
    require("highdicom")
    gsps = build_results(phi_analysis, objects=["gsps"]).gsps
    del gsps.PresentationCreationDate  # type 1 in the Presentation State Identification module
    path = tmp_path / "broken.dcm"
    gsps.save_as(path, enforce_file_format=True)
    assert any("PresentationCreationDate" in line or "Presentation Creation Date" in line
               for line in dciodvfy_errors(path))


def test_every_finding_has_a_distinct_code():
    assert len({(c.scheme_designator, c.value) for c in FINDING_CODES.values()}) == 14
    for label, concept in FINDING_CODES.items():
        assert finding_label(concept.scheme_designator, concept.value) == label
        assert len(concept.value) <= 16 and len(concept.meaning) <= 64  # SH and LO limits
    assert lung_mask().any()
    assert {label for label, _, _ in BOXES} <= set(FINDING_CODES)


def test_the_documented_code_table_is_the_code_table():
    """docs/clinic/dicom.md lists exactly the codes the objects carry."""
    rows = {}
    for line in (ROOT / "docs" / "clinic" / "dicom.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].isdigit():
            rows[cells[1]] = (cells[3].strip("`"), cells[2].strip("`"), cells[4])
    assert rows == {label: (c.scheme_designator, c.value, c.meaning) for label, c in FINDING_CODES.items()}


def test_header_from_a_path(require, phi_analysis, phi_file, tmp_path):
    """The source header can come from the file (e.g. when the analysis was made from pixels)."""
    require("highdicom")
    results = build_results(phi_analysis, source=phi_file, objects=["gsps"])
    assert results.gsps.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == \
        pydicom.dcmread(phi_file, stop_before_pixels=True).SOPInstanceUID
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(ReadError):
        build_results(phi_analysis, source=junk)
    other = pydicom.dcmread(SAMPLES / "siim_cr_jpeg_baseline.dcm", stop_before_pixels=True)
    with pytest.raises(ConfigError, match="header of the analyzed image"):
        build_results(phi_analysis, source=other)  # 1024 x 1024, not the analyzed 240 x 200


def test_invalid_patient_sex_and_impossible_birth_date_are_left_out(require, analyzer, tmp_path):
    """A source with PatientSex "zebediah" and birth date month 13 still gets its results (both type 2: empty)."""
    require("highdicom")
    ds = pydicom.dcmread(SAMPLES / "siim_cr_jpeg_baseline.dcm")
    with pytest.warns(UserWarning):  # pydicom warns on setting values that break their VR
        ds.PatientSex = "zebediah"
        ds.PatientBirthDate = "19231317"
    path = tmp_path / "odd.dcm"
    ds.save_as(path)
    results = build_results(analyzer.analyze(path))
    for obj in (results.sr, results.gsps, results.seg):
        assert obj.PatientSex == "" and obj.PatientBirthDate == ""
    assert ds.PatientSex == "zebediah"  # the source is not changed


# --- the clinical operating points ----------------------------------------------------------------
def test_sr_and_gsps_hold_only_findings_above_their_operating_points(require, phi_analysis):
    require("highdicom")
    from dataclasses import replace

    from thoracic.detect.clinical import OperatingPoints

    # Cardiomegaly 0.91 is below its point, Pneumothorax 0.33 has none; the 0.05 nodule reaches its 0.01
    points = OperatingPoints({"Cardiomegaly": 0.95, "Pleural effusion": 0.4, "Nodule/Mass": 0.01})
    results = build_results(replace(phi_analysis, operating_points=points))
    assert [f.label for f in results.findings] == ["Pleural effusion", "Nodule/Mass"]
    assert [f["finding"] for f in sr_findings(results.sr)] == [("SCT", "60046008"), ("SCT", "309529002")]
    assert results.gsps.ContentDescription == "thoracic: 2 finding(s) at the detector's operating points"
    (annotation,) = results.gsps.GraphicAnnotationSequence
    assert [t.UnformattedTextValue for t in annotation.TextObjectSequence] == ["Pleural effusion 0.42", "Nodule/Mass 0.05"]
    # an explicit min_score replaces the points for every finding
    uniform = build_results(replace(phi_analysis, operating_points=points), min_score=0.3)
    assert [f.label for f in uniform.findings] == ["Cardiomegaly", "Pleural effusion", "Pneumothorax"]
    assert uniform.gsps.ContentDescription == f"thoracic: 3 finding(s) with score >= {0.3:g}"


def test_a_stack_of_one_finding_is_one_finding_in_the_sr(require, phi_file):
    require("highdicom")
    stack = (("Pleural effusion", 0.62, (20.0, 120.0, 90.0, 190.0)),
             ("Pleural effusion", 0.55, (22.0, 118.0, 92.0, 188.0)),
             ("Pleural effusion", 0.48, (18.0, 124.0, 88.0, 192.0)),
             ("Pleural effusion", 0.40, (150.0, 20.0, 200.0, 60.0)))  # another place
    results = build_results(built_analysis(phi_file, boxes=stack))
    assert [(f.label, round(f.score, 2)) for f in results.findings] == [("Pleural effusion", 0.62), ("Pleural effusion", 0.4)]
    assert len(sr_findings(results.sr)) == 2 and len(results.gsps.GraphicAnnotationSequence[0].GraphicObjectSequence) == 2
    assert results.findings[0].box[0] == pytest.approx((0.62 * 20 + 0.55 * 22 + 0.48 * 18) / (0.62 + 0.55 + 0.48), abs=0.01)


def test_the_operating_points_of_the_detector_file_reach_the_sr(require, detector_onnx, tmp_path):
    """A real analysis with a detector whose metadata holds operating points: the SR holds its clinical findings."""
    require("highdicom")
    from helpers import model_with_meta

    from thoracic.inference.analyzer import Analyzer

    from thoracic.models.runtime import onnx_backend

    # float32: two files of one network, and --precision auto's bf16 is accepted per file (sha256)
    with onnx_backend("auto", "f32"):
        raw = Analyzer.load([detector_onnx], lungs=False, threads=1).analyze(SAMPLES / "siim_cr_jpeg_baseline.dcm")
    det = raw.prediction.detections
    assert len(det) >= 2
    best = det.labels[0]
    points = {best: float(det.scores[0]) - 1e-4}  # the best box's finding from just below its score: one box
    path = model_with_meta(detector_onnx, tmp_path / "points.onnx", extra={"operating_points": points})
    with onnx_backend("auto", "f32"):
        analysis = Analyzer.load([path], lungs=False, threads=1).analyze(SAMPLES / "siim_cr_jpeg_baseline.dcm")
    assert analysis.operating_points.scores == points and analysis.operating_points.source == "model"
    results = build_results(analysis)
    assert [f.label for f in results.findings] == [best]
    assert results.findings[0].score == pytest.approx(float(det.scores[0]))
    assert len(sr_findings(results.sr)) == 1 < len(det)


def _image_groups(sr) -> dict[tuple[str, str], float | None]:
    """(scheme, code) of each image-level group's finding type -> its Probability, read back with highdicom."""
    import highdicom as hd

    doc = hd.sr.Comprehensive3DSR.from_dataset(sr)
    out = {}
    for group in doc.content.get_image_measurement_groups():
        prob = [m for m in group.get_measurements() if m.name.value == "122157"]
        out[(group.finding_type.scheme_designator, group.finding_type.value)] = float(prob[0].value) if prob else None
    return out


PROBABILITIES = {"Cardiomegaly": 0.8123456, "Pleural effusion": 0.25, "Nodule/Mass": 0.0312}


def test_a_multilabel_classifier_puts_each_finding_probability_in_the_sr(require, phi_file, tmp_path):
    import dataclasses

    from thoracic.dicom import finding_code

    require("highdicom")
    base = built_analysis(phi_file)
    analysis = dataclasses.replace(
        base, prediction=dataclasses.replace(base.prediction, finding_probabilities=PROBABILITIES))
    results = build_results(analysis)
    path = results.save(tmp_path)["sr"]
    assert dciodvfy_unexplained(path) == []
    sr = pydicom.dcmread(path)
    groups = _image_groups(sr)
    abnormal = ("SCT", "263654008")
    assert groups.pop(abnormal) == pytest.approx(0.87)  # the image's P(abnormal) group, as before
    want = {(finding_code(k).scheme_designator, finding_code(k).value): round(v, 6) for k, v in PROBABILITIES.items()}
    assert groups == want
    # the boxes' groups are the same as without the probabilities
    assert [f["finding"] for f in sr_findings(sr)] == [f["finding"] for f in sr_findings(build_results(base).sr)]
    assert "image Cardiomegaly" in all_text(sr)


def test_a_two_class_classifier_sr_has_one_image_group(require, phi_analysis):
    require("highdicom")
    assert list(_image_groups(build_results(phi_analysis).sr)) == [("SCT", "263654008")]


def test_the_sr_of_a_multilabel_analysis_of_a_dicom(require, lite_analyzer, tmp_path):
    require("highdicom")
    a = lite_analyzer.analyze(SAMPLES / "siim_cr_jpeg_baseline.dcm", heatmap=False)
    assert list(a.prediction.finding_probabilities) == list(lite_analyzer.predictor.classifier.labels[1:])
    path = build_results(a, objects=("sr",)).save(tmp_path)["sr"]
    assert dciodvfy_unexplained(path) == []
    groups = _image_groups(pydicom.dcmread(path))
    got = {finding_label(*code): p for code, p in groups.items() if finding_label(*code)}
    assert got == {k: pytest.approx(v, abs=1e-6) for k, v in a.prediction.finding_probabilities.items()}


def test_an_image_analyzed_despite_the_content_check_says_so_in_its_sr(require, analyzer, tmp_path):
    """--allow-non-chest: the SR carries a Comment naming the flags; a chest film's SR carries none."""
    require("highdicom")
    from helpers import build_dicom

    from thoracic.errors import NotChestRadiographError
    from thoracic.io import ReadConfig

    yy, xx = np.mgrid[0:256, 0:256]
    path = tmp_path / "board.dcm"  # a CR chest PA header over a checkerboard
    path.write_bytes(build_dicom((((yy // 32) + (xx // 32)) % 2 * 255).astype(np.uint8)))
    with pytest.raises(NotChestRadiographError):
        analyzer.analyze(path, read=ReadConfig(check_content=True))
    analysis = analyzer.analyze(path, read=ReadConfig(check_content=True, allow_non_chest=True))
    flags = analysis.radiograph.flags
    assert flags and all(f.startswith("content:") for f in flags)
    results = build_results(analysis, objects=["sr"])
    notes = [str(e.value) for e in results.sr.iterall() if e.keyword == "TextValue" and "Flagged" in str(e.value)]
    assert len(notes) == 1 and flags[0] in notes[0]
    for saved in results.save(tmp_path / "out").values():
        assert dciodvfy_errors(saved) == []
    film = analyzer.analyze(SAMPLES / "siim_cr_jpeg_baseline.dcm", read=ReadConfig(check_content=True))
    assert film.radiograph.flags == ()
    assert "Flagged" not in all_text(build_results(film, objects=["sr"]).sr)
