"""The pixel content check (thoracic.io.content): what is refused, what passes, flags, the model file."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from helpers import FIXTURES, SAMPLES
from PIL import Image, ImageDraw, ImageFont

from thoracic.errors import ConfigError, NotChestRadiographError
from thoracic.io import ReadConfig, read
from thoracic.io.content import SHAPE_FEATURES, ContentModel, check_content, load_content_model, shape_features

CHECK = ReadConfig(check_content=True)
skdata = pytest.importorskip("skimage.data")


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def text_page() -> np.ndarray:
    im = Image.new("L", (850, 1100), 255)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=22)
    for i, y in enumerate(range(60, 1040, 34)):
        draw.text((40, y), f"line {i}: the patient was seen in clinic today, report follows", fill=0, font=font)
    return np.asarray(im)


def checkerboard() -> np.ndarray:
    yy, xx = np.mgrid[0:512, 0:512]
    return (((yy // 64) + (xx // 64)) % 2 * 255).astype(np.uint8)


NEGATIVES = {
    "coffee (colour photo)": lambda: skdata.coffee(),
    "camera (grey photo)": lambda: skdata.camera(),
    "moon": lambda: skdata.moon(),
    "text page (PIL)": text_page,
    "checkerboard": checkerboard,
    "shepp-logan phantom (CT-like)": lambda: (skdata.shepp_logan_phantom() * 255).astype(np.uint8),
}


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_what_is_not_a_chest_film_is_refused_with_a_reason(name):
    data = png(NEGATIVES[name]())
    with pytest.raises(NotChestRadiographError) as info:
        read(data, CHECK)
    assert info.value.reason.startswith("content:") and "--allow-non-chest" in info.value.message
    rg = read(data, ReadConfig(check_content=True, allow_non_chest=True))  # analyzed, flagged
    assert any(f.startswith("content:") for f in rg.flags)
    assert read(data).flags == ()  # the library's default reads without the pixel check


def test_a_colour_image_is_refused_for_its_colour():
    with pytest.raises(NotChestRadiographError) as info:
        read(png(skdata.astronaut()), CHECK)
    assert info.value.reason == "content:colour"


SAMPLE_FILMS = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".dcm"))


def test_chest_films_pass():
    files = [*SAMPLE_FILMS, *sorted(FIXTURES.glob("*.dcm"))]
    assert len(files) >= 6
    for path in files:
        assert read(path, CHECK).flags == (), path


def test_a_grey_film_saved_as_rgb_passes():
    jpg = next(p for p in SAMPLE_FILMS if p.suffix == ".jpg")
    rgb = np.stack([np.asarray(Image.open(jpg).convert("L"))] * 3, axis=-1)
    rg = read(png(rgb), CHECK)
    assert rg.colour == 0.0 and rg.flags == ()


def film() -> np.ndarray:
    jpg = next(p for p in SAMPLE_FILMS if p.suffix == ".jpg")
    return np.asarray(Image.open(jpg).convert("L"))


TRANSFORMED = {  # a frontal film made into something that is not one
    "turned 90 degrees": lambda a: np.rot90(a).copy(),
    "upside down": lambda a: np.rot90(a, 2).copy(),
    "left half, stretched": lambda a: np.asarray(Image.fromarray(a[:, : a.shape[1] // 2]).resize(a.shape[::-1])),
    "one lung": lambda a: a[a.shape[0] // 10: a.shape[0] * 85 // 100, a.shape[1] // 2: a.shape[1] * 95 // 100].copy(),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMED))
def test_a_turned_halved_or_cut_film_is_refused_by_the_classifier(name):
    with pytest.raises(NotChestRadiographError) as info:
        read(png(TRANSFORMED[name](film())), CHECK)
    assert info.value.reason in ("content:pattern", "content:class") and "P(chest)" in info.value.message
    flags = read(png(TRANSFORMED[name](film())), ReadConfig(check_content=True, allow_non_chest=True)).flags
    assert any(f.startswith("content:class=") for f in flags), flags


def ct_like_slice() -> np.ndarray:
    """A drawn axial CT slice: the reconstruction field on black, a body ellipse with a fat rim,
    two dark lungs with vessels, heart, spine and aorta, a table, CT grain."""
    rng = np.random.default_rng(3)
    a = np.zeros((512, 512), np.float32)
    cv2.circle(a, (256, 256), 250, 0.08, -1)
    cv2.ellipse(a, (256, 250), (200, 140), 0, 0, 360, 0.7, -1)
    cv2.ellipse(a, (256, 250), (185, 128), 0, 0, 360, 0.9, -1)
    for cx in (170, 342):
        cv2.ellipse(a, (cx, 240), (70, 100), 0, 0, 360, 0.12, -1)
    for _ in range(120):
        x, y = int(rng.integers(110, 400)), int(rng.integers(150, 330))
        if a[y, x] < 0.2:
            cv2.circle(a, (x, y), 2, 0.6, -1)
    cv2.ellipse(a, (270, 230), (50, 60), 30, 0, 360, 0.9, -1)  # heart
    cv2.circle(a, (256, 330), 22, 1.0, -1)  # vertebra
    cv2.circle(a, (290, 300), 16, 0.95, -1)  # aorta
    cv2.ellipse(a, (256, 800), (300, 390), 0, 250, 290, 0.5, 6)  # table
    a += rng.normal(0, 0.04, a.shape).astype(np.float32)
    return (np.clip(a, 0, 1) * 255).astype(np.uint8)


def lateral_like(a: np.ndarray) -> np.ndarray:
    """A frontal film made lateral-like: its right hemithorax widened to the body's depth on dark
    air, a bright band of vertebrae at the back, the heart in front and below, the shoulders on top."""
    h, w = a.shape
    half = np.asarray(Image.fromarray(a[:, : w * 55 // 100][:, ::-1]).resize((w * 4 // 5, h)), dtype=np.float32) / 255
    out = np.full((h, w), 0.05, np.float32)
    out[:, w // 10: w // 10 + half.shape[1]] = half
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out += 0.3 * np.exp(-(((xx - w * 0.25) / (w * 0.07)) ** 4)) * (0.8 + 0.2 * np.cos(2 * np.pi * yy / (h * 0.06)) ** 2)
    heart = np.zeros_like(out)
    cv2.ellipse(heart, (int(w * 0.65), int(h * 0.68)), (w // 5, h // 6), 0, 0, 360, 1.0, -1)
    out += 0.25 * cv2.GaussianBlur(heart, (0, 0), w * 0.03) + 0.3 * np.exp(-((yy / (h * 0.18)) ** 2))
    return (np.clip(out / out.max(), 0, 1) * 255).astype(np.uint8)


def test_a_ct_like_slice_and_a_lateral_like_film_are_refused():
    """The second iteration's negatives in kind: a drawn CT slice, a frontal film made lateral-like."""
    for arr in (ct_like_slice(), lateral_like(film())):
        with pytest.raises(NotChestRadiographError) as info:
            read(png(arr), CHECK)
        assert info.value.reason in ("content:pattern", "content:class")


def test_an_inverted_film_passes_and_a_mirrored_one_too():
    a = film()
    for variant in (255 - a, a[:, ::-1].copy()):
        assert read(png(variant), CHECK).flags == ()
    score, p_chest = load_content_model().assess(read(png(a)).pixels)
    assert 0 < score < load_content_model().threshold and load_content_model().min_p_chest < p_chest <= 1


def test_the_classifier_features_have_the_documented_length():
    for shape in ((300, 200), (64, 640), (16, 16)):
        f = shape_features(np.random.default_rng(0).random(shape, dtype=np.float32))
        assert f.shape == (SHAPE_FEATURES,) and np.isfinite(f).all()
    flat = shape_features(np.full((100, 100), 0.5, np.float32))  # nothing to trim, no contrast: no NaN
    assert np.isfinite(flat).all()


def test_the_score_and_threshold_live_in_the_model_file(tmp_path):
    model = load_content_model()
    assert model.threshold > 0 and model.components.shape[1] == model.thumb ** 2 + 10
    assert 0 < model.min_p_chest < 1 and model.lr_weights.shape == (SHAPE_FEATURES,)
    strict = ContentModel.from_dict({**model.to_dict(), "threshold": 0.0})  # everything scores above 0
    with pytest.raises(NotChestRadiographError) as info:
        check_content(read(SAMPLE_FILMS[0]).pixels, model=strict)
    assert info.value.reason == "content:pattern"
    strict = ContentModel.from_dict({**model.to_dict(), "min_p_chest": 1.0})  # nothing is that sure
    with pytest.raises(NotChestRadiographError) as info:
        check_content(read(SAMPLE_FILMS[0]).pixels, model=strict)
    assert info.value.reason == "content:class"
    one_class = {k: v for k, v in model.to_dict().items() if not k.startswith("lr_") and k != "min_p_chest"}
    assert ContentModel.from_dict(one_class).assess(read(SAMPLE_FILMS[0]).pixels)[1] == 1.0  # a v1 file: no classifier
    with pytest.raises(ConfigError):
        ContentModel.from_dict({**model.to_dict(), "lr_weights": [1.0, 2.0]})
    bad = tmp_path / "bad.json"
    bad.write_text('{"thumb": 24}')
    with pytest.raises(ConfigError):
        load_content_model(str(bad))


def test_the_checks_512_px_image_is_the_one_the_chain_makes_next(monkeypatch):
    """The check works on a 128 x 128 copy made through the image at a longest side of 512 (what
    the detector's and classifier's chain resizes to next) and leaves that image to the chain: a
    prediction with the check is the prediction without it, exactly, and the chain's resize is
    not done twice."""
    import pydicom

    from thoracic.inference import Predictor
    from thoracic.io import content

    handed: list[bool] = []
    real = content.take_shrunk

    def spy(img, width, height):
        out = real(img, width, height)
        handed.append(out is not None)
        return out

    monkeypatch.setattr("thoracic.preprocess.geometry.take_shrunk", spy)
    ds = pydicom.dcmread(SAMPLES / "RG1_J2KI.dcm")
    ds.decompress()
    data = io.BytesIO()
    ds.save_as(data)
    dicom = data.getvalue()
    predictor = Predictor.load([], use_classifier=True, threads=1)
    plain = predictor.predict(dicom)
    assert handed and not any(handed)
    handed.clear()
    checked = predictor.predict(dicom, read=ReadConfig(check_content=True))
    assert handed[0] and not any(handed[1:])  # handed over once, to the first resize
    np.testing.assert_array_equal(checked.detections.boxes, plain.detections.boxes)
    np.testing.assert_array_equal(checked.detections.scores, plain.detections.scores)
    assert checked.p_abnormal == plain.p_abnormal


def test_the_shrunk_image_is_handed_over_once_and_only_for_the_same_pixels_and_size():
    from thoracic.io.content import _small, take_shrunk

    rng = np.random.default_rng(0)
    pixels = rng.random((1100, 1000), dtype=np.float32)
    other = pixels.copy()
    _small(pixels, keep=True)
    assert take_shrunk(other, 465, 512) is None  # equal values, another array
    assert take_shrunk(pixels, 466, 512) is None  # another size
    mid = take_shrunk(pixels, 465, 512)
    np.testing.assert_array_equal(mid, cv2.resize(pixels, (465, 512), interpolation=cv2.INTER_AREA))
    assert take_shrunk(pixels, 465, 512) is None  # once
    _small(pixels)  # without keep nothing is left
    assert take_shrunk(pixels, 465, 512) is None
    # 1024 to 512 to 128 is the single area filter's image but for rounding; small images go directly
    film = rng.random((1024, 1024), dtype=np.float32)
    np.testing.assert_allclose(_small(film), cv2.resize(film, (128, 128), interpolation=cv2.INTER_AREA), atol=1e-6)
    small_film = rng.random((400, 300), dtype=np.float32)
    np.testing.assert_array_equal(_small(small_film), cv2.resize(small_film, (128, 128), interpolation=cv2.INTER_AREA))
