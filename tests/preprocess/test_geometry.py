import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thoracic.errors import ConfigError
from thoracic.preprocess import Affine, crop, hflip, letterbox, resize, resize_longest

sizes = st.integers(min_value=8, max_value=600)


@st.composite
def image_and_boxes(draw):
    h, w = draw(sizes), draw(sizes)
    n = draw(st.integers(1, 5))
    boxes = []
    for _ in range(n):
        x0 = draw(st.floats(0, w - 1, allow_nan=False))
        y0 = draw(st.floats(0, h - 1, allow_nan=False))
        x1 = draw(st.floats(x0, w, allow_nan=False))
        y1 = draw(st.floats(y0, h, allow_nan=False))
        boxes.append([x0, y0, x1, y1])
    return np.zeros((h, w), np.float32), np.array(boxes)


def _roundtrip(t: Affine, boxes):
    return t.inverse().apply_boxes(t.apply_boxes(boxes))


@settings(max_examples=60, deadline=None)
@given(image_and_boxes(), sizes, sizes)
def test_resize_roundtrip(data, w, h):
    img, boxes = data
    out, t = resize(img, w, h)
    assert out.shape == (h, w)
    np.testing.assert_allclose(_roundtrip(t, boxes), boxes, atol=0.5)
    # the image corners map onto the output corners
    np.testing.assert_allclose(t.apply_boxes([[0, 0, img.shape[1], img.shape[0]]]), [[0, 0, w, h]], atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(image_and_boxes(), st.integers(16, 1024))
def test_letterbox_roundtrip_and_content_inside(data, size):
    img, boxes = data
    out, t = letterbox(img, size)
    assert out.shape == (size, size)
    np.testing.assert_allclose(_roundtrip(t, boxes), boxes, atol=0.5)
    mapped = t.apply_boxes(boxes)
    assert (mapped >= -1e-6).all() and (mapped <= size + 1e-6).all()


@settings(max_examples=60, deadline=None)
@given(image_and_boxes(), st.integers(8, 900))
def test_resize_longest_keeps_aspect(data, longest):
    img, boxes = data
    out, t = resize_longest(img, longest)
    h, w = img.shape
    assert max(out.shape) == longest
    scale = longest / max(w, h)
    assert abs(out.shape[1] - w * scale) <= 0.5 or out.shape[1] == 1
    assert abs(out.shape[0] - h * scale) <= 0.5 or out.shape[0] == 1
    np.testing.assert_allclose(_roundtrip(t, boxes), boxes, atol=0.5)


@settings(max_examples=40, deadline=None)
@given(image_and_boxes(), st.integers(-50, 50), st.integers(-50, 50), st.integers(1, 200), st.integers(1, 200))
def test_crop_and_flip_roundtrip(data, x0, y0, cw, ch):
    img, boxes = data
    out, t = crop(img, (x0, y0, x0 + cw, y0 + ch))
    assert out.shape == (ch, cw)
    np.testing.assert_allclose(_roundtrip(t, boxes), boxes, atol=1e-9)
    flipped, f = hflip(img)
    mirrored = f.apply_boxes(boxes)
    assert (mirrored[:, 0] <= mirrored[:, 2]).all()
    np.testing.assert_allclose(_roundtrip(f, boxes), boxes, atol=1e-9)


def test_composed_chain_of_transforms_roundtrips():
    img = np.random.default_rng(0).random((300, 200), dtype=np.float32)
    boxes = np.array([[10.5, 20.25, 150.0, 280.0]])
    a, t1 = crop(img, (5, 10, 195, 290))
    b, t2 = resize_longest(a, 128)
    c, t3 = letterbox(b, 160)
    d, t4 = hflip(c)
    total = t1.then(t2).then(t3).then(t4)
    np.testing.assert_allclose(total.inverse().apply_boxes(total.apply_boxes(boxes)), boxes, atol=1e-9)
    assert d.shape == (160, 160)


def test_flip_maps_pixels_like_boxes():
    img = np.zeros((10, 20), np.float32)
    img[2:4, 3:6] = 1  # the box x 3..6, y 2..4
    out, t = hflip(img)
    (x0, y0, x1, y1), = t.apply_boxes([[3, 2, 6, 4]])
    ys, xs = np.nonzero(out)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (x0, x1, y0, y1)


def test_resize_maps_pixels_like_boxes():
    img = np.zeros((100, 100), np.float32)
    img[20:40, 60:80] = 1
    out, t = resize(img, 50, 50, interpolation="nearest")
    (x0, y0, x1, y1), = t.apply_boxes([[60, 20, 80, 40]])
    ys, xs = np.nonzero(out > 0.5)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (x0, x1, y0, y1)


def test_lanczos_matches_pillow_on_uint8():
    from PIL import Image

    # a smooth image, as radiographs are (on white noise Pillow's 8-bit path clips between its two
    # passes and differs by more)
    yy, xx = np.mgrid[0:97, 0:131]
    img = (127 + 100 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).round().astype(np.uint8)
    ours, _ = resize(img.astype(np.float32), 64, 48, interpolation="lanczos")
    ref = np.asarray(Image.fromarray(img).resize((64, 48), Image.Resampling.LANCZOS), dtype=np.float32)
    assert np.abs(np.clip(np.round(ours), 0, 255) - ref).max() <= 1


def test_bad_arguments_are_typed():
    img = np.zeros((10, 10), np.float32)
    with pytest.raises(ConfigError, match="did you mean 'lanczos'"):
        resize(img, 5, 5, interpolation="lanczoz")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        resize(img, 0, 5)
    with pytest.raises(ConfigError):
        crop(img, (5, 5, 5, 9))
    with pytest.raises(ConfigError):
        Affine(sx=0)
