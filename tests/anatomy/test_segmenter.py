import cv2
import numpy as np
import pytest

from thoracic.anatomy import LungMask, lung_roi_crop, overlay
from thoracic.errors import ConfigError
from thoracic.io import Radiograph
from thoracic.models.meta import LUNGS_META_KEY

NAMES = ("00000377_004.jpg", "00001437_012.jpg", "00001555_002.jpg", "RG1_J2KI.dcm", "siim_cr_jpeg_baseline.dcm")


@pytest.mark.parametrize("name", NAMES)
def test_samples_have_two_plausible_lungs(name, sample_masks, sample_radiographs):
    lungs: LungMask = sample_masks[name]
    rg = sample_radiographs[name]
    w, h = rg.original_size
    assert lungs.mask.shape == (h, w) and lungs.mask.dtype == np.uint8
    assert set(np.unique(lungs.mask)) <= {0, 255}
    assert lungs.components == 2
    n, _, stats, _ = cv2.connectedComponentsWithStats((lungs.mask > 0).astype(np.uint8))
    assert n == 3 and stats[1:, cv2.CC_STAT_AREA].min() > 0.04 * w * h  # two large lungs
    assert 0.12 < lungs.lung_fraction < 0.55
    assert not lungs.fallback
    # the lungs lie inside the image and inside the square; the square is centred on them
    ys, xs = np.nonzero(lungs.mask)
    x0, y0, x1, y1 = lungs.roi.box
    assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
    assert x1 - x0 == y1 - y0
    assert x0 > -0.1 * w and y0 > -0.1 * h and x1 < 1.1 * w and y1 < 1.1 * h
    # one lung on each side of the image's centre line
    _, labels = cv2.connectedComponents((lungs.mask > 0).astype(np.uint8))
    centres = sorted(float(np.mean(np.nonzero(labels == i)[1])) for i in (1, 2))
    assert centres[0] < w / 2 < centres[1]


def test_probability_and_roi_crop(segmenter, sample_radiographs):
    rg = sample_radiographs["00000377_004.jpg"]
    lungs = segmenter.segment(rg, keep_probability=True)
    assert lungs.probability.shape == lungs.mask.shape
    assert 0.0 <= lungs.probability.min() and lungs.probability.max() <= 1.0
    crop, t = lung_roi_crop(rg, lungs.roi, size=512)
    assert crop.shape == (512, 512) and crop.dtype == np.float32
    box = np.array([[300.0, 400.0, 420.0, 520.0]])
    assert np.abs(t.inverse().apply_boxes(t.apply_boxes(box)) - box).max() < 1e-6


def test_segmentation_is_deterministic(segmenter, sample_radiographs, sample_masks):
    rg = sample_radiographs["siim_cr_jpeg_baseline.dcm"]
    assert np.array_equal(segmenter.segment(rg).mask, sample_masks["siim_cr_jpeg_baseline.dcm"].mask)


def _radiograph(pixels):
    h, w = pixels.shape
    return Radiograph(pixels=pixels.astype(np.float32), image_id="t", source="t", format="test",
                      original_width=w, original_height=h)


@pytest.mark.parametrize("kind", ["constant", "noise", "gradient"])
def test_images_without_lungs_fall_back_to_the_full_image(segmenter, kind):
    rng = np.random.default_rng(0)
    pixels = {
        "constant": np.full((300, 400), 0.5),
        "noise": rng.random((300, 400)),
        "gradient": np.tile(np.linspace(0, 1, 400), (300, 1)),
    }[kind]
    lungs = segmenter.segment(_radiograph(pixels))
    assert lungs.fallback, lungs.roi
    assert lungs.roi.box == (0, -50, 400, 350)
    assert lungs.mask.shape == (300, 400)


def test_overlay_is_rgb_at_the_requested_size(sample_radiographs, sample_masks):
    rgb = overlay(sample_radiographs["RG1_J2KI.dcm"], sample_masks["RG1_J2KI.dcm"], max_side=400)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and max(rgb.shape[:2]) == 400


def test_demo_panel(sample_radiographs):
    from thoracic.anatomy import demo_panel

    rgb = demo_panel(sample_radiographs["00001555_002.jpg"], max_side=256)
    assert rgb.shape == (256, 256, 3)


def test_lung_roi_step_for_preprocessing_chains(sample_radiographs, sample_masks):
    from thoracic.anatomy import lung_roi_step

    rg = sample_radiographs["00001437_012.jpg"]
    img, t = lung_roi_step(rg.pixels, size=256, margin=0.05)
    assert img.shape == (256, 256)
    assert np.allclose(t.apply_boxes([sample_masks["00001437_012.jpg"].roi.box]), [[0, 0, 256, 256]])


def test_the_shipped_model_declares_its_contract(segmenter):
    c = segmenter.contract
    assert c.name == "lungs"
    assert c.input_size == (192, 192)
    assert c.chain.normalize == "window"
    assert c.normalization == "zscore"
    assert (c.threshold, c.keep_components, c.fill_holes) == (0.5, 2, True)  # chosen by cross-validation
    assert "CC BY" in " ".join(c.info["training_licences"])
    assert not any("NC" in lic for lic in c.info["training_licences"])


def test_model_without_contract_is_refused(tmp_path, require):
    onnx = require("onnx")
    from onnx import TensorProto, helper

    from thoracic.anatomy import LungSegmenter

    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ConfigError, match=LUNGS_META_KEY):
        LungSegmenter.load(path)


def test_missing_or_broken_model_file_is_a_config_error(tmp_path):
    """As for the detector and the classifier: every model loads through ``load_model``."""
    from thoracic.anatomy import LungSegmenter

    with pytest.raises(ConfigError, match="does not exist"):
        LungSegmenter.load(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load ONNX model"):
        LungSegmenter.load(bad)
