import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from thoracic.anatomy import LungRoi, RoiConfig, lung_roi, lung_roi_crop
from thoracic.errors import ConfigError
from thoracic.io import Radiograph
from thoracic.transform import Affine


def two_lungs(h=300, w=400):
    m = np.zeros((h, w), np.uint8)
    m[60:240, 80:180] = 255
    m[60:250, 220:330] = 255
    return m


def test_smallest_enclosing_square_with_margin():
    m = two_lungs()
    roi = lung_roi(m, margin=0.0)
    # lungs span x 80..330 (250), y 60..250 (190): a 250 square centred at (205, 155)
    assert roi.box == (80, 30, 330, 280)
    assert not roi.fallback and roi.fallback_reason == ""
    assert roi.lung_fraction == pytest.approx((180 * 100 + 190 * 110) / (300 * 400))
    wide = lung_roi(m, margin=0.1)
    assert wide.side == 300
    assert wide.box[0] < 80 and wide.box[2] > 330


def test_crop_is_square_at_the_requested_size_and_pads_outside():
    img = np.ones((300, 400), np.float32)
    roi = LungRoi((-50, -50, 250, 250), (400, 300), 0.3)
    crop, t = lung_roi_crop(img, roi, size=150)
    assert crop.shape == (150, 150)
    assert crop[:20, :20].max() == 0  # outside the image: 0
    assert crop[-20:, -20:].min() == 1
    assert t.apply_boxes([[-50, -50, 250, 250]]).tolist() == [[0, 0, 150, 150]]


@given(
    x0=st.integers(-20, 380),
    y0=st.integers(-20, 280),
    side=st.integers(20, 500),
    size=st.sampled_from([64, 256, 512, 640]),
    box=st.tuples(*(st.floats(0, 1) for _ in range(4))),
)
def test_boxes_round_trip_through_the_crop(x0, y0, side, size, box):
    roi = LungRoi((x0, y0, x0 + side, y0 + side), (400, 300), 0.3)
    _, t = lung_roi_crop(np.zeros((300, 400), np.float32), roi, size=size)
    bx = sorted([box[0] * 400, box[2] * 400])
    by = sorted([box[1] * 300, box[3] * 300])
    original = np.array([[bx[0], by[0], bx[1], by[1]]])
    back = t.inverse().apply_boxes(t.apply_boxes(original))
    assert np.abs(back - original).max() < 0.5
    # the square's corners land on the crop's corners
    assert np.allclose(t.apply_boxes([roi.box]), [[0, 0, size, size]], atol=1e-6)


def test_crop_of_a_reduced_resolution_radiograph_maps_to_the_original():
    full = np.random.default_rng(0).random((300, 400)).astype(np.float32)
    half = full[::2, ::2].copy()
    rg = Radiograph(pixels=half, image_id="x", source="x", format="test", original_width=400,
                    original_height=300, to_original=Affine(sx=2.0, sy=2.0))
    roi = lung_roi(two_lungs(), margin=0.0)
    crop, t = lung_roi_crop(rg, roi, size=125)
    assert crop.shape == (125, 125)
    assert np.allclose(t.apply_boxes([roi.box]), [[0, 0, 125, 125]])
    ref, t_ref = lung_roi_crop(full, roi, size=125)
    assert np.allclose(t.to_dict()["sx"], t_ref.to_dict()["sx"])


@pytest.mark.parametrize(
    ("mask", "reason"),
    [
        (np.zeros((300, 400), np.uint8), "empty mask"),
        (np.pad(np.full((10, 10), 255, np.uint8), ((0, 290), (0, 390))), "lung fraction"),
        (np.full((300, 400), 255, np.uint8), "lung fraction"),
    ],
)
def test_empty_or_implausible_masks_fall_back_to_the_full_image(mask, reason):
    roi = lung_roi(mask)
    assert roi.fallback and reason in roi.fallback_reason
    assert roi.box == (0, -50, 400, 350)  # the square enclosing the whole image
    crop, t = lung_roi_crop(np.ones((300, 400), np.float32), roi, size=100)
    assert crop.shape == (100, 100)
    assert np.allclose(t.inverse().apply_boxes([[0, 0, 100, 100]]), [[0, -50, 400, 350]])


def test_a_speck_is_not_lungs():
    m = np.zeros((300, 400), np.uint8)
    m[100:110, 100:110] = 255
    roi = lung_roi(m, RoiConfig(min_fraction=0.0))
    assert roi.fallback and "lung square" in roi.fallback_reason


def test_bad_arguments():
    with pytest.raises(ConfigError):
        RoiConfig(margin=-0.1)
    with pytest.raises(ConfigError):
        RoiConfig(min_fraction=0.8, max_fraction=0.7)
    with pytest.raises(ConfigError):
        lung_roi(np.zeros((0, 3)))
    with pytest.raises(ConfigError):
        lung_roi_crop(np.zeros((30, 40), np.float32), two_lungs(), size=64)  # mask of another size
    with pytest.raises(ConfigError):
        lung_roi_crop(np.zeros((300, 400), np.float32), two_lungs(), size=0)
