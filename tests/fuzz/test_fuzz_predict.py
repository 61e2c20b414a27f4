"""Short fuzz run of the full predict path and the lung segmenter.

Inputs biased towards ones that still read (odd shapes such as 1x1 or 3x2000, extreme value
ranges, odd photometric and rescale values, flipped pixel bytes) go through
``Predictor.predict(bytes)`` and, when they read, ``default_segmenter().segment``: each must give
a well-formed result or a typed error.
"""

from __future__ import annotations

import warnings

import fuzz_cases as fc
import numpy as np
import pytest

from thoracic.errors import ThoracicError
from thoracic.io import ReadConfig, read

SEED = 7734
#: Families whose inputs often still read, and a few that never do (the typed error must come
#: out of predict() as it comes out of read()).
FAMILIES = {"shape": 12, "tag": 6, "bitflip": 3, "raster": 2, "truncate": 1, "junk": 1}


@pytest.fixture(scope="module")
def predictor():
    from thoracic.inference.predictor import Predictor

    return Predictor.load(threads=1)


@pytest.fixture(scope="module")
def segmenter():
    from thoracic.anatomy import default_segmenter

    return default_segmenter()


def _check_prediction(pred) -> str | None:
    det = pred.detections
    w, h = det.image_size
    if det.boxes.dtype != np.float32 or det.boxes.shape != (len(det), 4):
        return f"boxes {det.boxes.dtype} {det.boxes.shape}"
    if len(det) and not (np.isfinite(det.boxes).all() and np.isfinite(det.scores).all()):
        return "non-finite boxes or scores"
    if len(det) and ((det.boxes[:, [0, 2]] < -1).any() or (det.boxes[:, [0, 2]] > w + 1).any()
                     or (det.boxes[:, [1, 3]] < -1).any() or (det.boxes[:, [1, 3]] > h + 1).any()):
        return f"boxes outside the {w}x{h} image"
    if not 0.0 <= pred.no_finding_score <= 1.0:
        return f"no-finding score {pred.no_finding_score}"
    return None


def test_short_fuzz_predict_and_segment(predictor, segmenter) -> None:
    cases = list(fc.generate(48, SEED, fc.corpus(large=False), families=FAMILIES))
    problems: list[str] = []
    predicted = segmented = typed = 0
    for case in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                pred = predictor.predict(case.data, read=fc.read_options(case))
            except ThoracicError:
                typed += 1
                pred = None
            except Exception as err:  # noqa: BLE001 - the point of the test
                problems.append(f"predict {case.describe()}: {type(err).__name__}: {str(err)[:200]}")
                continue
            if pred is not None:
                predicted += 1
                if issue := _check_prediction(pred):
                    problems.append(f"predict {case.describe()}: {issue}")
            try:
                rg = read(case.data, ReadConfig(**{**case.options, "normalize": "window"}))
            except ThoracicError:
                continue
            try:
                lungs = segmenter.segment(rg)
            except ThoracicError:
                continue
            except Exception as err:  # noqa: BLE001
                problems.append(f"segment {case.describe()}: {type(err).__name__}: {str(err)[:200]}")
                continue
            segmented += 1
            if lungs.mask.shape != (rg.original_height, rg.original_width) or lungs.mask.dtype != np.uint8:
                problems.append(f"segment {case.describe()}: mask {lungs.mask.dtype} {lungs.mask.shape}")
    assert problems == []
    assert predicted >= 20 and segmented >= 20 and typed >= 5, (predicted, segmented, typed)


@pytest.mark.parametrize("shape", [(1, 2), (2, 1), (1, 300), (300, 1), (2, 2), (3, 2000), (2000, 3)])
def test_extreme_shapes_predict(shape: tuple[int, int], predictor, segmenter) -> None:
    """Degenerate but valid images: boxes stay inside the image, the mask has its size."""
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 4096, size=shape, dtype=np.uint16)
    pixels.flat[0], pixels.flat[-1] = 0, 4095  # never constant
    data = fc.dicom_bytes(pixels, bits_stored=12)
    pred = predictor.predict(data)
    assert pred.detections.image_size == (shape[1], shape[0])
    assert _check_prediction(pred) is None
    lungs = segmenter.segment(read(data))
    assert lungs.mask.shape == shape


def test_one_pixel_image_is_a_typed_error(predictor) -> None:
    from thoracic.errors import ConstantImageError

    with pytest.raises(ConstantImageError):
        predictor.predict(fc.dicom_bytes(np.array([[7]], dtype=np.uint16), bits_stored=12))
