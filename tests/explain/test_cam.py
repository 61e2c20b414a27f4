"""Eigen-CAM heatmaps: the maths, the mapping to original pixels, and the predictor's output."""

from __future__ import annotations

import numpy as np
import pytest

from thoracic.errors import ConfigError
from thoracic.explain import blend, colorize, eigencam, to_original
from thoracic.preprocess.geometry import letterbox
from thoracic.transform import Affine


def _hot(c: int, h: int, w: int, i: int, j: int, value: float = 5.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    f = rng.normal(0.0, 0.01, (c, h, w)).astype(np.float32)
    f[:, i, j] += value
    return f


def test_eigencam_finds_the_strongly_activated_cell_whatever_the_svd_sign():
    f = _hot(16, 8, 8, 2, 5)
    for feat in (f, -f + 2 * f.mean()):  # a flipped copy: the principal direction has the other sign
        cam = eigencam(feat if feat is f else f)
        assert cam.dtype == np.float32 and cam.shape == (8, 8)
        assert np.unravel_index(np.argmax(cam), cam.shape) == (2, 5)
        assert cam.max() == pytest.approx(1.0) and cam.min() >= 0.0


def test_eigencam_of_a_constant_map_is_zero_and_bad_shapes_are_refused():
    assert not np.any(eigencam(np.ones((4, 5, 6), np.float32)))
    with pytest.raises(ConfigError):
        eigencam(np.ones((5, 6), np.float32))
    with pytest.raises(ConfigError):
        eigencam(np.ones((0, 5, 6), np.float32))


def test_eigencam_ignores_nan():
    f = _hot(8, 6, 6, 4, 1)
    f[0, 0, 0] = np.nan
    cam = eigencam(f)
    assert np.isfinite(cam).all() and np.unravel_index(np.argmax(cam), cam.shape) == (4, 1)


@pytest.mark.parametrize(("w", "h"), [(300, 200), (160, 400), (256, 256)])
def test_to_original_puts_a_cell_where_the_letterbox_shows_it(w, h):
    size, grid = 128, 16
    img = np.zeros((h, w), np.float32)
    _, t = letterbox(img, size)  # original -> model input
    to_orig = t.inverse()
    i, j = 7, 9  # a cell inside the picture for every aspect ratio above
    cam = np.zeros((grid, grid), np.float32)
    cam[i, j] = 1.0
    out = to_original(cam, size, to_orig, (w, h))
    assert out.shape == (h, w) and out.dtype == np.float32
    cx, cy = to_orig.apply_points(np.array([[(j + 0.5) * size / grid, (i + 0.5) * size / grid]]))[0]
    yy, xx = np.nonzero(out > 0.5 * out.max())
    # the bright blob is centred on the cell's centre in original pixels (within one original pixel)
    assert abs(xx.mean() + 0.5 - cx) < 1.0 and abs(yy.mean() + 0.5 - cy) < 1.0


def test_to_original_leaves_the_uncovered_part_dark():
    cam = np.ones((4, 4), np.float32)
    # the model input covers only the left half of a 200 x 100 original
    out = to_original(cam, 64, Affine(100 / 64, 100 / 64, 0.0, 0.0), (200, 100))
    assert out[:, :98].min() > 0.99 and out[:, 102:].max() == 0.0


def test_colorize_and_blend():
    hm = np.linspace(0, 1, 50, dtype=np.float32).reshape(5, 10)
    rgb = colorize(hm)
    assert rgb.shape == (5, 10, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 2] > rgb[0, 0, 0] and rgb[-1, -1, 0] > rgb[-1, -1, 2]  # JET: cold blue, hot red
    grey = np.full((5, 10), 0.5, np.float32)
    out = blend(grey, hm, alpha=0.5)
    assert out.shape == (5, 10, 3)
    assert np.array_equal(out[0, 0], np.array([128, 128, 128]))  # weight 0 where the map is 0
    with pytest.raises(ConfigError):
        blend(np.zeros((4, 4)), hm)


def test_lung_roi_heatmap_stays_inside_the_lung_square(samples_dir):
    from thoracic.inference.predictor import PredictConfig, Predictor

    p = Predictor.load(config=PredictConfig(lung_roi=True), threads=1)
    pred = p.predict(samples_dir / "00000377_004.jpg", heatmap=True)
    x0, y0, x1, y1 = pred.roi
    hm = pred.heatmap
    assert hm.shape == (pred.height, pred.width)
    inside = np.zeros_like(hm, dtype=bool)
    inside[max(y0, 0):y1, max(x0, 0):x1] = True
    assert hm[inside].max() > 0.5 and hm[~inside].max() < 0.05


def test_class_activation_maps_are_the_relu_of_the_weighted_channels():
    from thoracic.explain import class_activation_maps

    rng = np.random.default_rng(0)
    f = rng.normal(size=(6, 4, 5)).astype(np.float32)
    w = rng.normal(size=(3, 6)).astype(np.float32)
    raw = class_activation_maps(f, w, normalize=False)
    np.testing.assert_allclose(raw, np.maximum(np.einsum("lc,chw->lhw", w, f), 0), rtol=1e-5, atol=1e-6)
    cams = class_activation_maps(f, w)
    assert cams.shape == (3, 4, 5) and cams.dtype == np.float32
    assert np.allclose(cams.max(axis=(1, 2)), 1.0) and cams.min() >= 0.0
    assert not np.any(class_activation_maps(f, np.zeros((2, 6))))  # nowhere positive: zeros
    with pytest.raises(ConfigError, match="L x C"):
        class_activation_maps(f, np.zeros((2, 5)))
    with pytest.raises(ConfigError, match="C x h x w"):
        class_activation_maps(f[0], w)


def test_the_numpy_cam_of_the_onnx_outputs_equals_the_torch_cam(lite_classifier, chest_crop_png):
    """From the exported feature map and head weights, without torch: the torch model's CAM."""
    import onnxruntime as ort
    import torch

    from thoracic.explain import class_activation_maps, finding_map
    from thoracic.preprocess.model_input import model_pixels, prepare_8bit

    model, path = lite_classifier
    sess = ort.InferenceSession(str(path))
    from thoracic.models.meta import ModelMeta

    meta = ModelMeta.from_metadata(sess.get_modelmeta().custom_metadata_map)
    prepared = prepare_8bit(meta.chain, chest_crop_png)
    x = np.ascontiguousarray(np.broadcast_to(model_pixels(prepared.pixels)[None, None], (1, 3, meta.imgsz, meta.imgsz)),
                             dtype=np.float32)
    _, feature, weights = sess.run(None, {"images": x})
    cams = class_activation_maps(feature[0], weights, normalize=False)
    with torch.no_grad():
        ref = model.cams(torch.from_numpy(x))[0].numpy()
    assert cams.shape == ref.shape == (len(model.labels), meta.imgsz // 32, meta.imgsz // 32)
    np.testing.assert_allclose(cams, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    h, w = prepared.radiograph.original_size[::-1]
    heat = finding_map(feature[0], weights, 0, meta.imgsz, prepared.to_original, (w, h))
    assert heat.shape == (h, w) and heat.std() > 0.01
    with pytest.raises(ConfigError, match="label index"):
        finding_map(feature[0], weights, len(model.labels), meta.imgsz, prepared.to_original, (w, h))
