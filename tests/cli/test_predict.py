"""``thoracic predict``: the CSV contract, failures, overlays and heatmaps, resume, one fold, without torch."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import onnxruntime
import pytest
from helpers import FIXTURES, TORCH, model_with_meta, read_rows, run_without, vindr_standin

from thoracic._fs import sidecar_path
from thoracic.batch.predictions import IMAGE_COLUMNS, PRED_COLUMNS, settings_path
from thoracic.cli.evaluate import add_parser
from thoracic.cli.predict import main
from thoracic.detect import OnnxDetector
from thoracic.labels import FINDINGS, NO_FINDING
from thoracic.models.registry import model_path
from thoracic.models.runtime import file_sha256, openvino_available, resolve_precision

DICOM = FIXTURES / "nih_dx_implicit_le.dcm"


def _predict(args: list[str]) -> int:
    return main([*args, "-q"])


def test_cli_csv_contract_and_failures(detector_onnx, chest_png, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "preds.csv"
    rc = _predict([str(chest_png), str(DICOM), str(bad), "--out", str(out), "--models", str(detector_onnx),
                   "--conf", "0.001", "--max-det", "7", "--overlays", str(tmp_path / "ov")])
    assert rc == 1
    with out.open() as fh:
        assert fh.readline().strip() == ",".join(PRED_COLUMNS)
    rows = read_rows(out)
    side = read_rows(sidecar_path(out))
    assert list(side[0]) == list(IMAGE_COLUMNS)
    status = {r["image_id"]: r["status"] for r in side}
    assert status == {chest_png.stem: "ok", DICOM.stem: "ok", "broken": "failed"}
    for iid in (chest_png.stem, DICOM.stem):
        mine = [r for r in rows if r["image_id"] == iid]
        nf = [r for r in mine if r["label"] == NO_FINDING]
        assert len(nf) == 1 and (nf[0]["x_min"], nf[0]["y_min"], nf[0]["x_max"], nf[0]["y_max"]) == ("0", "0", "1", "1")
        boxes = [r for r in mine if r["label"] != NO_FINDING]
        assert len(boxes) <= 7 and all(float(r["score"]) >= 0.001 for r in boxes)
        assert all(r["label"] in FINDINGS for r in boxes)
        assert (tmp_path / "ov" / f"{iid}.png").is_file()
    assert not [r for r in rows if r["image_id"] == "broken"]
    assert all(r["models"] == OnnxDetector.load(detector_onnx).id for r in side)


def test_cli_heatmap_overlays_with_the_shipped_detector(chest_png, tmp_path):
    ov = tmp_path / "ov"
    assert _predict([str(chest_png), str(DICOM), "--out", str(tmp_path / "p.csv"), "--overlays", str(ov), "--heatmaps"]) == 0
    for iid in (chest_png.stem, DICOM.stem):
        boxes = cv2.imread(str(ov / f"{iid}.png"))
        hm = cv2.imread(str(ov / f"{iid}_heatmap.png"))
        assert hm.shape == boxes.shape
        # the colour map shows on the film, and its hottest places are red. A trained detector's
        # Eigen-CAM is focal: the shipped one (8309e742daba) colours 2.5% of the chest PNG visibly
        # (the previous, weaker one over 5%), so this checks that it shows, not how widely.
        changed = np.abs(hm.astype(int) - boxes.astype(int)).max(axis=2) > 20
        b, r = hm[:, :, 0].astype(int), hm[:, :, 2].astype(int)
        assert changed.mean() > 0.01 and ((r - b) > 60).sum() > 100
    # heatmaps need the overlays folder, and are refused on the Ray path
    assert _predict([str(chest_png), "--out", str(tmp_path / "q.csv"), "--heatmaps"]) == 2
    assert _predict([str(chest_png), "--out", str(tmp_path / "q.csv"), "--overlays", str(ov), "--heatmaps", "--ray"]) == 2


def test_cli_resume_and_kaggle_format(detector_onnx, chest_png, pair, tmp_path, capsys):
    out = tmp_path / "sub.csv"
    base = ["--out", str(out), "--models", str(detector_onnx), "--format", "kaggle"]
    assert _predict([str(chest_png), *base]) == 0
    first = out.read_text()
    assert first.splitlines()[0] == "image_id,PredictionString"
    assert _predict([str(chest_png), str(pair[0]), *base, "--resume"]) == 0
    rows = read_rows(out)
    assert [r["image_id"] for r in rows] == [chest_png.stem, "a"]
    assert out.read_text().startswith(first)  # the first image was not predicted again
    assert rows[1]["PredictionString"].split()[-6:-4][0] == "14"
    assert len(read_rows(sidecar_path(out))) == 2
    # other settings: refused, naming what changed, the table left as it was
    table = out.read_text()
    assert _predict([str(chest_png), *base, "--resume", "--tta"]) == 2
    assert "tta was false, now true" in capsys.readouterr().err
    assert out.read_text() == table


def test_resume_continues_only_a_table_of_the_same_settings(detector_onnx, chest_png, pair, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    base = ["--out", str(out), "--models", str(detector_onnx), "--conf", "0.05"]
    assert _predict([str(chest_png), *base]) == 0
    written = json.loads(settings_path(out).read_text())["settings"]
    assert (written["conf"], written["tta"], written["format"], written["max_det"]) == (0.05, False, "rows", 100)
    table, side = out.read_text(), sidecar_path(out).read_text()
    other = model_with_meta(detector_onnx, tmp_path / "other.onnx", training_data="another detector")
    for extra, named in ((["--conf", "0.25"], "conf was 0.05, now 0.25"), (["--tta"], "tta was false, now true"),
                         (["--iou", "0.5"], "iou was 0.7, now 0.5"), (["--max-det", "5"], "max_det was 100, now 5"),
                         (["--lung-roi"], "lung_roi was false, now true"), (["--models", str(other)], "models was [")):
        capsys.readouterr()
        assert _predict([str(chest_png), str(pair[0]), *base, *extra, "--resume"]) == 2, extra
        err = capsys.readouterr().err
        assert named in err and f"see {settings_path(out)}" in err and "run without --resume" in err, err
        assert out.read_text() == table and sidecar_path(out).read_text() == side
    # the same settings: only the new image is predicted
    assert _predict([str(chest_png), str(pair[0]), *base, "--resume"]) == 0
    assert out.read_text().startswith(table)
    assert [r["image_id"] for r in read_rows(sidecar_path(out))] == [chest_png.stem, "a"]
    # without --resume a fresh table, with this run's settings
    assert _predict([str(chest_png), *base, "--conf", "0.25"]) == 0
    assert json.loads(settings_path(out).read_text())["settings"]["conf"] == 0.25
    assert [r["image_id"] for r in read_rows(sidecar_path(out))] == [chest_png.stem]


def test_default_models_are_used_without_model_options(chest_png, tmp_path):
    if not model_path("detector").is_file():
        pytest.skip("no shipped detector in this checkout")
    out = tmp_path / "p.csv"
    assert _predict([str(chest_png), "--out", str(out)]) == 0
    side = read_rows(sidecar_path(out))
    assert side[0]["models"].count("+") == (1 if model_path("classifier").is_file() else 0)
    # the settings file beside the table names where each model ran: back-end and precision
    # (auto: OpenVINO on the CPU where it is installed, bf16 where the file's check passed and the
    # CPU has it, else float32; else ONNX Runtime)
    backends = json.loads(settings_path(out).read_text())["backends"]
    assert [b.split()[:2] for b in backends] == [["detector", "detector.onnx"], ["classifier", "classifier.onnx"]]
    on_cpu = "CUDAExecutionProvider" not in onnxruntime.get_available_providers()
    for b, kind in zip(backends, ("detector", "classifier"), strict=True):
        if openvino_available() and on_cpu:
            precision = resolve_precision("openvino", "auto", sha256=file_sha256(model_path(kind)))
            assert b.split()[2] == f"openvino-{precision}", backends
        else:
            assert b.split()[2] in ("onnxruntime-cpu", "onnxruntime-cuda"), backends


PREDICT = """
import sys
from thoracic.cli.evaluate import add_parser
from thoracic.cli.predict import main
rc = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "ultralytics")]
sys.exit(rc)
"""


def test_predict_without_torch(detector_onnx, chest_png, tmp_path):
    out = tmp_path / "p.csv"
    models = [] if detector_onnx == model_path("detector") else ["--models", str(detector_onnx)]
    proc = run_without(TORCH, PREDICT, str(DICOM), str(chest_png), "--out", str(out), *models, "-q", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {r["image_id"] for r in read_rows(out) if r["label"] == NO_FINDING} == {DICOM.stem, chest_png.stem}


def test_cli_predicts_one_fold_and_evaluate_scores_it(detector_onnx, tmp_path, capsys):
    """The researcher's path: predict one fold of a CRLF+BOM folds file, then score it against the full train.csv."""
    train = vindr_standin(tmp_path / "vindr", n=6)
    ids = sorted(p.stem for p in (tmp_path / "vindr" / "train").iterdir())
    fold = {iid: k % 2 for k, iid in enumerate(ids)}
    folds = tmp_path / "folds.csv"
    folds.write_bytes(("\ufeffimage_id,group,fold\r\n" + "".join(f"{i} , image:{i} , {f}\r\n" for i, f in fold.items())
                       + "\r\n").encode())
    out = tmp_path / "preds.csv"
    base = [str(tmp_path / "vindr" / "train"), "--out", str(out), "--models", str(detector_onnx)]
    assert _predict([*base, "--folds", str(folds), "--fold", "1"]) == 0
    assert "selected 3 of 6 input(s): the images of fold 1 of folds.csv" in capsys.readouterr().err
    fold1 = sorted(i for i in ids if fold[i] == 1)
    assert sorted(r["image_id"] for r in read_rows(sidecar_path(out))) == fold1
    assert sorted({r["image_id"] for r in read_rows(out)}) == fold1  # a "No finding" row each, at least

    parser = argparse.ArgumentParser(prog="thoracic")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--pred", str(out), "--truth", str(train), "--out", str(tmp_path / "eval"),
                              "--bootstrap", "0", "--no-coco", "--folds", str(folds), "--fold", "1"])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["images"] == 3
    assert "fold 1 of folds.csv: 3 of the 6 truth images" in capsys.readouterr().err

    # an image list of paths and ids; ids without an input file are an error naming them (before any model loads)
    listed = tmp_path / "some.txt"
    listed.write_text(f"train/{fold1[0]}.dicom\r\n\r\n  {fold1[1]}  \r\n")
    assert _predict([*base, "--image-list", str(listed)]) == 0
    assert sorted(r["image_id"] for r in read_rows(sidecar_path(out))) == fold1[:2]
    listed.write_text(f"{fold1[0]}\nnot-there-1\nnot-there-2\n")
    assert _predict([*base, "--image-list", str(listed)]) == 2
    assert "2 of the 3 image(s) of some.txt have no input file, e.g. not-there-1, not-there-2" in capsys.readouterr().err
    assert _predict([*base, "--folds", str(folds)]) == 2


def test_one_image_reached_twice_is_predicted_once(detector_onnx, pair, tmp_path):
    # the folder, a file in it, and the same file again through the manifest: one image, its rows once
    a, _ = pair
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{a}\n{a}\n")
    out = tmp_path / "preds.csv"
    assert _predict([str(a.parent), str(a), "--manifest", str(manifest), "--out", str(out),
                     "--models", str(detector_onnx), str(detector_onnx), "--wbf-iou", "1"]) == 0
    rows = [tuple(r.values()) for r in read_rows(out)]
    assert len(rows) == len(set(rows)) > 2
    assert [r["image_id"] for r in read_rows(sidecar_path(out))] == [a.stem, f"{a.stem}_flipped"]


def test_two_files_with_one_image_id_are_refused(detector_onnx, chest_png, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / chest_png.name).write_bytes(chest_png.read_bytes())
    assert _predict([str(chest_png), str(other), "--out", str(tmp_path / "p.csv"), "--models", str(detector_onnx)]) == 2
    assert f"two inputs have the image id {chest_png.stem!r}" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("listing", ["", "# nothing\n\n", "path,image_id\n"])
def test_an_empty_manifest_is_an_error(detector_onnx, tmp_path, capsys, listing):
    manifest = tmp_path / "list.csv"
    manifest.write_text(listing)
    assert _predict(["--manifest", str(manifest), "--out", str(tmp_path / "p.csv"), "--models", str(detector_onnx)]) == 2
    err = capsys.readouterr().err
    assert "the manifest lists no inputs" in err and str(manifest) in err


def test_no_inputs_found_is_an_error(detector_onnx, tmp_path, capsys):
    empty = tmp_path / "scans"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    assert _predict([str(empty), "--out", str(tmp_path / "p.csv"), "--models", str(detector_onnx)]) == 2
    assert f"no input files found in {empty}" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_a_photo_is_refused_unless_allowed_and_then_flagged(chest_png, tmp_path, capsys):
    from PIL import Image

    skdata = pytest.importorskip("skimage.data")
    photo = tmp_path / "coffee.jpg"
    Image.fromarray(skdata.coffee()).save(photo)
    out = tmp_path / "p.csv"
    assert _predict([str(chest_png), str(photo), "--out", str(out)]) == 1  # a refusal counts as a failure
    status = {r["image_id"]: r for r in read_rows(sidecar_path(out))}
    assert status[chest_png.stem]["status"] == "ok" and status[chest_png.stem]["flags"] == ""
    assert status["coffee"]["status"] == "refused"
    assert "NotChestRadiographError" in status["coffee"]["error"] and "--allow-non-chest" in status["coffee"]["error"]
    said = capsys.readouterr()
    assert "refused:" in said.out + said.err
    assert "coffee" not in {r["image_id"] for r in read_rows(out)}

    out = tmp_path / "q.csv"
    assert _predict([str(photo), "--out", str(out), "--allow-non-chest"]) == 0
    row = read_rows(sidecar_path(out))[0]
    assert row["status"] == "ok" and "content:colour" in row["flags"] and "content:pattern" in row["flags"]


def test_cli_overlays_show_the_operating_points_and_the_kaggle_csv_keeps_every_box(detector_onnx, chest_png, tmp_path):
    """Overlays draw the clinical findings (the model's operating points, or the default without
    them); the Kaggle CSV is the research output: every box from --conf 0.01, whatever the points."""
    from helpers import model_with_meta

    from thoracic.detect.clinical import OperatingPoints
    from thoracic.detect.overlay import draw_findings
    from thoracic.inference.predictor import Predictor
    from thoracic.io import read

    plain = model_with_meta(detector_onnx, tmp_path / "plain.onnx", extra={})
    raw = Predictor.load([plain], use_classifier=False, threads=1).predict(chest_png).detections
    assert len(raw) >= 2
    points = {raw.labels[0]: float(raw.scores[0]) - 1e-4}
    with_points = model_with_meta(detector_onnx, tmp_path / "points.onnx", extra={"operating_points": points})
    strings = {}
    for name, model in (("plain", plain), ("points", with_points)):
        out = tmp_path / f"{name}.csv"
        assert _predict([str(chest_png), "--out", str(out), "--models", str(model), "--no-classifier",
                         "--format", "kaggle", "--overlays", str(tmp_path / name), "--threads", "1"]) == 0
        (row,) = read_rows(out)
        strings[name] = row["PredictionString"].split()
    assert strings["plain"] == strings["points"]  # the research output does not know the operating points
    assert len(strings["points"]) // 6 == len(raw) + 1 > 2  # every box from 0.01, and "No finding"
    rg = read(chest_png)
    for name, op in (("points", OperatingPoints(points)), ("plain", OperatingPoints.default_points())):
        drawn = cv2.imread(str(tmp_path / name / f"{chest_png.stem}.png"))
        expected = cv2.cvtColor(draw_findings(rg, op.select(raw)), cv2.COLOR_RGB2BGR)
        np.testing.assert_array_equal(drawn, expected, err_msg=name)
    assert len(OperatingPoints(points).select(raw)) == 1
    # --overlay-conf draws every finding from that score instead (merged)
    assert _predict([str(chest_png), "--out", str(tmp_path / "low.csv"), "--models", str(with_points), "--no-classifier",
                     "--overlays", str(tmp_path / "low"), "--overlay-conf", "0.01", "--threads", "1"]) == 0
    drawn = cv2.imread(str(tmp_path / "low" / f"{chest_png.stem}.png"))
    expected = cv2.cvtColor(draw_findings(rg, OperatingPoints.uniform(0.01).select(raw)), cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(drawn, expected)


def test_the_sidecar_has_one_probability_column_per_finding(detector_onnx, classifier_onnx, lite_classifier, chest_png,
                                                              tmp_path):
    from thoracic.batch.predictions import FINDING_COLUMNS
    from thoracic.classify import OnnxClassifier
    from thoracic.labels import label_slug

    # after the columns that were there before, one p_<finding> per VinDr finding, in class-id order
    assert IMAGE_COLUMNS[:10] == ("image_id", "source", "status", "error", "width", "height", "p_abnormal", "models",
                                  "thoracic_version", "flags")
    assert IMAGE_COLUMNS[10:] == FINDING_COLUMNS == tuple(f"p_{label_slug(f)}" for f in FINDINGS)
    assert FINDING_COLUMNS[8] == "p_nodule_mass" and len(set(FINDING_COLUMNS)) == 14
    _, lite = lite_classifier
    out = tmp_path / "lite.csv"
    assert _predict([str(chest_png), "--out", str(out), "--models", str(detector_onnx), "--classifier", str(lite)]) == 0
    row = read_rows(sidecar_path(out))[0]
    want = OnnxClassifier.load(lite, threads=1).classify(chest_png)
    assert float(row["p_abnormal"]) == pytest.approx(want.p_abnormal, rel=1e-5)
    for finding, column in zip(FINDINGS, FINDING_COLUMNS, strict=True):
        if finding in want.findings:
            assert float(row[column]) == pytest.approx(want.findings[finding], rel=1e-5), finding
        else:  # the head has no output for it
            assert row[column] == "", finding
    # a 2-class classifier: the columns are there, empty; every other column as before
    two = tmp_path / "two.csv"
    assert _predict([str(chest_png), "--out", str(two), "--models", str(detector_onnx), "--classifier",
                     str(classifier_onnx)]) == 0
    row = read_rows(sidecar_path(two))[0]
    assert list(row) == list(IMAGE_COLUMNS) and all(row[c] == "" for c in FINDING_COLUMNS)
    assert row["status"] == "ok" and 0.0 <= float(row["p_abnormal"]) <= 1.0


def test_heatmaps_of_a_multilabel_classifier_per_finding(detector_onnx, classifier_onnx, lite_classifier, chest_png,
                                                         tmp_path, capsys):
    from thoracic.classify import OnnxClassifier
    from thoracic.labels import label_slug

    _, lite = lite_classifier
    clf = OnnxClassifier.load(lite, threads=1)
    probs = clf.classify(chest_png).findings
    base = [str(chest_png), "--models", str(detector_onnx), "--heatmaps"]

    def maps(folder) -> set[str]:
        return {p.name for p in folder.glob(f"{chest_png.stem}_heatmap_*.png")}

    # default: the findings at or above their thresholds. The fixture's random head is sure of every
    # finding, so a copy stores thresholds that make it a choice: Pleural effusion's is out of reach,
    # and a finding without one is taken at 0.5
    assert min(probs.values()) > 0.5
    extra = dict(clf.meta.extra)
    extra["thresholds"] = {"abnormal": 0.3, "Cardiomegaly": 0.0, "Pleural effusion": 1.5}
    picky = model_with_meta(lite, tmp_path / "picky.onnx", extra=extra)
    ov = tmp_path / "above"
    assert _predict([*base, "--classifier", str(picky), "--out", str(tmp_path / "a.csv"), "--overlays", str(ov)]) == 0
    assert maps(ov) == {f"{chest_png.stem}_heatmap_{label_slug(k)}.png" for k in probs if k != "Pleural effusion"}
    assert (ov / f"{chest_png.stem}_heatmap.png").is_file()  # the detector's Eigen-CAM as before
    # named findings (names or slugs), whatever their probability; each a different map over the same overlay
    ov = tmp_path / "named"
    assert _predict([*base, "--classifier", str(lite), "--out", str(tmp_path / "n.csv"), "--overlays", str(ov),
                     "--heatmap-findings", "cardiomegaly, Pleural effusion,abnormal"]) == 0
    assert maps(ov) == {f"{chest_png.stem}_heatmap_{s}.png" for s in ("cardiomegaly", "pleural_effusion", "abnormal")}
    boxes = cv2.imread(str(ov / f"{chest_png.stem}.png"))
    a, b = (cv2.imread(str(ov / f"{chest_png.stem}_heatmap_{s}.png")) for s in ("cardiomegaly", "pleural_effusion"))
    assert a.shape == b.shape == boxes.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 1
    assert (np.abs(a.astype(int) - boxes.astype(int)).max(axis=2) > 20).mean() > 0.01  # the map shows
    ov = tmp_path / "all"
    assert _predict([*base, "--classifier", str(lite), "--out", str(tmp_path / "l.csv"), "--overlays", str(ov),
                     "--heatmap-findings", "all"]) == 0
    assert len(maps(ov)) == len(clf.labels)
    # a 2-class classifier: the Eigen-CAM only, as before; asking it for finding maps is an error
    ov = tmp_path / "two"
    assert _predict([*base, "--classifier", str(classifier_onnx), "--out", str(tmp_path / "t.csv"), "--overlays",
                     str(ov)]) == 0
    assert maps(ov) == set() and sorted(p.name for p in ov.iterdir()) == [f"{chest_png.stem}.png",
                                                                          f"{chest_png.stem}_heatmap.png"]
    capsys.readouterr()
    assert _predict([*base, "--classifier", str(classifier_onnx), "--out", str(tmp_path / "u.csv"), "--overlays",
                     str(ov), "--heatmap-findings", "cardiomegaly"]) == 2
    assert "no per-finding maps" in capsys.readouterr().err
    assert _predict([*base, "--classifier", str(lite), "--out", str(tmp_path / "v.csv"), "--overlays", str(ov),
                     "--heatmap-findings", "hernia"]) == 2
    assert "hernia" in capsys.readouterr().err.lower()
    assert _predict([str(chest_png), "--models", str(detector_onnx), "--classifier", str(lite), "--out",
                     str(tmp_path / "w.csv"), "--heatmap-findings", "all"]) == 2
    assert "give --heatmaps too" in capsys.readouterr().err


#: ``thoracic predict`` in a fresh process, the GIL handed over inside OpenVINO's first-use
#: initialiser: the first inference of a process builds a C++ static in OpenVINO's bindings whose
#: initialiser sets up pybind11's numpy API, which calls ``numpy.lib.NumpyVersion``; here that
#: sleeps on any thread but the main one (giving the GIL away, as any Python code there may).
#: Before the fix, the second inference worker then blocked on the static's guard holding the
#: GIL and the run never ended (thoracic.models.runtime's docstring).
SLOW_NUMPY_SETUP = """
import sys, threading, time
import numpy.lib

class _Slow(numpy.lib.NumpyVersion):
    def __init__(self, vstring):
        print(f"numpy setup on {threading.current_thread().name}", file=sys.stderr, flush=True)
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.5)
        super().__init__(vstring)

numpy.lib.NumpyVersion = _Slow
from thoracic.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_openvino_batch_of_several_models_with_reader_threads_finishes(require, detector_onnx, samples_dir, tmp_path):
    """The run that hung: several models on OpenVINO (``--backend auto``), two inference workers
    starting together, reader threads; a hang fails by the timeout instead of stalling the suite."""
    require("openvino")
    images = sorted(samples_dir.glob("*.jpg"))
    models = [str(shutil.copy(detector_onnx, tmp_path / f"fold_{k}.onnx")) for k in (1, 2, 3)]
    out = tmp_path / "preds.csv"
    argv = ["predict", *map(str, images), "--models", *models, "--no-classifier", "--device", "cpu",
            "--workers", "2", "--readers", "2", "--readers-in", "threads", "--threads", "1", "--out", str(out), "-q"]
    proc = subprocess.run([sys.executable, "-c", SLOW_NUMPY_SETUP, *argv], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    # the window that deadlocked was opened, on an inference worker
    assert "numpy setup on thoracic-infer" in proc.stderr, proc.stderr
    backends = json.loads(settings_path(out).read_text())["backends"]
    precision = resolve_precision("openvino", "auto", sha256=file_sha256(detector_onnx))  # copies: the same file
    assert backends == [f"detector fold_{k}.onnx openvino-{precision}" for k in (1, 2, 3)]
    side = read_rows(sidecar_path(out))
    assert len(images) >= 2 and sorted(r["image_id"] for r in side) == sorted(p.stem for p in images)
    assert {r["status"] for r in side} == {"ok"}


def test_a_preset_file_predicts_the_rows_of_its_options_given_one_by_one(detector_onnx, classifier_onnx, chest_png, tmp_path,
                                                                         capsys):
    from thoracic.inference.preset import Preset, PresetMember, write_preset

    preset = write_preset(tmp_path / "e.json", Preset("e", (PresetMember(detector_onnx, 2.0), PresetMember(detector_onnx)),
                                                      tta=True, wbf_iou=0.6, classifier=None))
    by_preset, by_hand = tmp_path / "a.csv", tmp_path / "b.csv"
    assert _predict([str(chest_png), "--out", str(by_preset), "--preset", str(preset)]) == 0
    assert _predict([str(chest_png), "--out", str(by_hand), "--models", str(detector_onnx), str(detector_onnx),
                     "--weights", "2", "1", "--tta", "--wbf-iou", "0.6", "--no-classifier"]) == 0
    assert read_rows(by_preset) == read_rows(by_hand) and len(read_rows(by_preset)) > 1
    assert read_rows(sidecar_path(by_preset))[0]["models"] == read_rows(sidecar_path(by_hand))[0]["models"]
    settings = json.loads(settings_path(by_preset).read_text())["settings"]
    assert settings == json.loads(settings_path(by_hand).read_text())["settings"]
    assert (settings["tta"], settings["weights"], settings["wbf_iou"]) == (True, [2.0, 1.0], 0.6)
    # options that change a preset: its WBF IoU, its classifier
    changed = tmp_path / "c.csv"
    assert _predict([str(chest_png), "--out", str(changed), "--preset", str(preset), "--wbf-iou", "0.5",
                     "--classifier", str(classifier_onnx)]) == 0
    settings = json.loads(settings_path(changed).read_text())["settings"]
    assert settings["wbf_iou"] == 0.5 and [m.split()[0] for m in settings["models"]] == ["detector", "detector", "classifier"]
    # a preset names its detectors: --models beside it is a usage error
    capsys.readouterr()
    assert _predict([str(chest_png), "--out", str(tmp_path / "d.csv"), "--preset", str(preset),
                     "--models", str(detector_onnx)]) == 2
    assert "give --preset or --models, not both" in capsys.readouterr().err
    assert _predict([str(chest_png), "--out", str(tmp_path / "d.csv"), "--preset", "acurate"]) == 2
    assert "unknown preset 'acurate'" in capsys.readouterr().err
