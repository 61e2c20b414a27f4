"""The shift test: each shift's image and truth boxes, the 12-bit DICOM round trip, and the harness."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from thoracic.data import Annotations, ImageInfo
from thoracic.errors import ConfigError
from thoracic.evaluate.shift import CLEAN, SHIFTS, render_shift, shift_boxes, shift_test
from thoracic.io import read


def _phantom(h: int = 200, w: int = 240) -> np.ndarray:
    x = np.tile(np.linspace(0.1, 0.9, w, dtype=np.float32), (h, 1))
    x[60:100, 150:200] = 1.0  # a bright rectangle: the "finding"
    return x


def _decode(shot) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(shot.data, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0


def test_rotation_moves_the_boxes_with_the_pixels():
    x = np.zeros((200, 240), np.float32)
    x[60:100, 150:200] = 1.0
    box = np.array([[150.0, 60.0, 200.0, 100.0]])
    shot = render_shift("rotate-5", x, box)
    y = _decode(shot)
    assert y.shape == x.shape
    ys, xs = np.nonzero(y > 0.5)
    seen = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    np.testing.assert_allclose(shot.boxes[0], seen, atol=1.5)
    # counter-clockwise about the centre: a box right of the centre moves up, and its enclosing box grows
    b = shot.boxes[0]
    assert b[1] < 60 and b[3] < 100 and b[3] - b[1] > 40 and b[2] - b[0] > 50
    # boxes are clipped to the image; the other shifts leave them alone
    assert shift_boxes("rotate-5", [[0, 0, 240, 200]], 240, 200).tolist() == [[0, 0, 240, 200]]
    for name in set(SHIFTS) - {"rotate-5"}:
        np.testing.assert_array_equal(render_shift(name, x, box).boxes, box)


def test_dicom_12bit_round_trip_through_thoracic_io():
    x = _phantom()
    shot = render_shift("dicom-12bit", x)
    assert shot.suffix == ".dcm"
    rg = read(shot.data, image_id="shifted")
    assert rg.format == "dicom" and rg.bits_stored == 12 and rg.original_size == (240, 200)
    np.testing.assert_allclose(rg.pixels, x, atol=1.5 / 4095)


def test_intensity_shifts_change_contrast_as_named():
    x = _phantom()
    narrow, wide = _decode(render_shift("window-narrow", x)), _decode(render_shift("window-wide", x))
    assert narrow.std() > x.std() > wide.std()
    assert wide.min() >= 0.14 and wide.max() <= 0.86
    half = _decode(render_shift("half-resolution", x))
    assert half.shape == x.shape and 0 < np.abs(half - x).mean() < 0.02
    a = render_shift("portable", x, seed=1, key="img")
    assert a.data == render_shift("portable", x, seed=1, key="img").data  # deterministic per seed and image
    assert a.data != render_shift("portable", x, seed=2, key="img").data
    port = _decode(a)
    assert port.std() < x.std() and port.mean() < x.mean()  # flatter and (gamma > 1) darker


def test_bad_shift_inputs():
    with pytest.raises(ConfigError, match="shift"):
        render_shift("sepia", _phantom())
    with pytest.raises(ConfigError, match="H x W"):
        render_shift("portable", np.zeros((4, 4, 3)))


def test_harness_on_the_tiny_detector(tiny_onnx, samples_dir):
    from thoracic.inference.predictor import Predictor

    with (samples_dir / "boxes.csv").open() as fh:
        rows = [(r["image_id"], r["label"], *(float(r[k]) for k in ("x_min", "y_min", "x_max", "y_max")))
                for r in csv.DictReader(fh)]
    infos = [ImageInfo(r[0], 1024, 1024, None, str(samples_dir / f"{r[0]}.jpg")) for r in rows]
    truth = Annotations.from_rows(infos, rows)
    predictor = Predictor.load([tiny_onnx], use_classifier=False, threads=1)
    seen = []
    result = shift_test(predictor, truth, ("dicom-12bit", "rotate-5"), progress=lambda c, n, t: seen.append((c, n, t)))
    assert list(result.rows) == [CLEAN, "dicom-12bit", "rotate-5"]
    assert len(seen) == 3 * 3 and seen[-1] == ("rotate-5", 3, 3)
    for name, row in result.rows.items():
        assert row["images"] == 3 and row["failed"] == 0
        assert set(row["per_class_ap"]) == {"Cardiomegaly", "Pleural effusion", "Nodule/Mass"}
        assert 0.0 <= row["kaggle_map"] <= 1.0
        if name != CLEAN:
            assert row["drop"] == pytest.approx(result.rows[CLEAN]["kaggle_map"] - row["kaggle_map"])
    table = result.markdown()
    assert table.count("\n") == 2 + 3 and "| rotate-5 |" in table
    with pytest.raises(ConfigError, match="shift"):
        shift_test(predictor, truth, ("blur",))
