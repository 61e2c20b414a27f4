"""Every supported format reads, and its pixels equal pydicom's own Modality LUT + VOI LUT.

The reference (``io_helpers.reference_pixels``) is ``apply_voi_lut(apply_modality_lut(arr, ds), ds)``
rescaled from pydicom's output range to ``[0, 1]`` and inverted for MONOCHROME1. thoracic computes
in float32 and pydicom in float64, hence the ``1e-5`` tolerance (the largest difference seen is
about ``1e-7``).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from helpers import PHI, PHI_FRAGMENTS, SAMPLES, build_dicom
from io_helpers import (
    dataset_cached,
    fixture_path,
    parse,
    read_cached,
    reference_cached,
    reference_pixels,
    stored_cached,
    voi_lut_sequence,
)
from PIL import Image
from pydicom.pixels import apply_modality_lut
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSNearLossless,
)

from thoracic.io import Radiograph, ReadConfig, read

TOL = 1e-5
LUMA = np.array([0.299, 0.587, 0.114])

#: fixture file -> its transfer syntax: together they cover every syntax the contract names
DICOM_FIXTURES = {
    "RG1_UNCR.dcm": ExplicitVRLittleEndian,
    "RG1_UNCI.dcm": ExplicitVRLittleEndian,
    "nih_dx_implicit_le.dcm": ImplicitVRLittleEndian,
    "siim_cr_jpeg_baseline.dcm": JPEGBaseline8Bit,
    "siim_cr_fake_monochrome1.dcm": JPEGBaseline8Bit,
    "RG1_J2KR.dcm": JPEG2000Lossless,
    "RG1_J2KI.dcm": JPEG2000,  # the bundled sample (byte-identical to pydicom-data's)
    "RG1_JLSN.dcm": JPEGLSNearLossless,
}
NIH_JPEGS = ("00000377_004.jpg", "00001437_012.jpg", "00001555_002.jpg")


def assert_unit_float32(rg: Radiograph) -> None:
    assert rg.pixels.dtype == np.float32
    assert rg.pixels.ndim == 2
    assert rg.pixels.flags.c_contiguous
    assert 0.0 <= float(rg.pixels.min()) and float(rg.pixels.max()) <= 1.0


# --- the fixture files --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(DICOM_FIXTURES))
def test_fixture_matches_pydicom_reference(name: str) -> None:
    ds = dataset_cached(name)
    assert ds.file_meta.TransferSyntaxUID == DICOM_FIXTURES[name]
    rg = read_cached(name)
    assert_unit_float32(rg)
    assert rg.format == "dicom"
    assert rg.pixels.shape == (ds.Rows, ds.Columns) == stored_cached(name).shape
    assert (rg.original_width, rg.original_height) == (ds.Columns, ds.Rows)
    assert rg.to_original.is_identity
    assert rg.photometric == ds.PhotometricInterpretation
    assert rg.bits_stored == ds.BitsStored
    assert rg.image_id == Path(name).stem
    assert np.abs(rg.pixels - reference_cached(name)).max() <= TOL


def test_every_transfer_syntax_of_the_contract_is_covered() -> None:
    names = {pydicom.uid.UID(ts).name for ts in DICOM_FIXTURES.values()}
    assert len(names) == 6


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_JLSN.dcm"])
def test_never_flipped_nor_transposed(name: str) -> None:
    """RG1 is 1955 rows x 1841 columns: known positions keep their values, white = dense."""
    rg, stored, ref = read_cached(name), stored_cached(name), reference_cached(name)
    assert rg.pixels.shape == stored.shape == (1955, 1841)
    rows, cols = stored.shape
    for r, c in [(0, 0), (5, cols - 7), (rows - 3, 11), (rows // 3, 2 * cols // 3), (rows - 1, cols - 1)]:
        assert rg.pixels[r, c] == pytest.approx(ref[r, c], abs=TOL), (r, c)
    # the brightest stored value of a MONOCHROME1 film is its darkest pixel, and at the same place
    r, c = np.unravel_index(np.argmax(stored), stored.shape)
    assert rg.pixels[r, c] == pytest.approx(float(rg.pixels.min()), abs=TOL)
    assert not np.allclose(rg.pixels, rg.pixels[::-1, :], atol=0.05)
    assert not np.allclose(rg.pixels, rg.pixels[:, ::-1], atol=0.05)


def test_square_film_is_not_transposed() -> None:
    rg, stored = read_cached("siim_cr_jpeg_baseline.dcm"), stored_cached("siim_cr_jpeg_baseline.dcm")
    assert rg.pixels.shape == stored.shape == (1024, 1024)
    assert not np.allclose(rg.pixels, rg.pixels.T, atol=0.05)
    for r, c in [(3, 1000), (1000, 3), (512, 200)]:
        assert rg.pixels[r, c] == pytest.approx(stored[r, c] / 255.0, abs=TOL)


def test_rg1_syntaxes_agree_with_each_other() -> None:
    """UNCR/UNCI are the decompressed J2KR/J2KI: identical pixels; the lossy ones stay close."""
    base = read_cached("RG1_UNCR.dcm").pixels
    assert np.array_equal(read_cached("RG1_J2KR.dcm").pixels, base)
    assert np.array_equal(read_cached("RG1_J2KI.dcm").pixels, read_cached("RG1_UNCI.dcm").pixels)
    for lossy in ("RG1_UNCI.dcm", "RG1_JLSN.dcm"):
        diff = np.abs(read_cached(lossy).pixels - base)
        assert float(diff.mean()) < 0.01, lossy


def test_monochrome1_is_inverted() -> None:
    """The fake MONOCHROME1 SIIM file has the MONOCHROME2 original's pixels: 1 - the original."""
    m1, m2 = read_cached("siim_cr_fake_monochrome1.dcm"), read_cached("siim_cr_jpeg_baseline.dcm")
    assert np.array_equal(stored_cached("siim_cr_fake_monochrome1.dcm"), stored_cached("siim_cr_jpeg_baseline.dcm"))
    assert (m1.photometric, m2.photometric) == ("MONOCHROME1", "MONOCHROME2")
    assert np.abs(m1.pixels - (1.0 - m2.pixels)).max() <= 1e-6


def test_eight_bit_without_window_maps_the_full_range() -> None:
    for name in ("nih_dx_implicit_le.dcm", "siim_cr_jpeg_baseline.dcm"):
        rg = read_cached(name)
        assert rg.voi == "full range"
        assert np.abs(rg.pixels - stored_cached(name) / 255.0).max() <= 1e-6


def test_pixel_spacing() -> None:
    assert read_cached("siim_cr_jpeg_baseline.dcm").pixel_spacing == pytest.approx((0.168, 0.168))
    assert dataset_cached("RG1_UNCR.dcm").PixelSpacing == [0, 0]
    assert read_cached("RG1_UNCR.dcm").pixel_spacing is None  # [0, 0] is "unknown", not a size
    assert read_cached("nih_dx_implicit_le.dcm").pixel_spacing is None  # none in the file


def test_imager_pixel_spacing_is_the_fallback(chest_pixels: np.ndarray) -> None:
    rg = read(build_dicom(chest_pixels, ImagerPixelSpacing=[0.2, 0.25]))
    assert rg.pixel_spacing == pytest.approx((0.2, 0.25))
    rg = read(build_dicom(chest_pixels, ImagerPixelSpacing=[0.2, 0.25], PixelSpacing=[0.1, 0.1]))
    assert rg.pixel_spacing == pytest.approx((0.1, 0.1))


@pytest.mark.parametrize("name", NIH_JPEGS)
def test_bundled_nih_jpegs(name: str) -> None:
    path = SAMPLES / name
    rg = read(path)
    assert_unit_float32(rg)
    with Image.open(path) as im:
        expected = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    assert (rg.format, rg.image_id, rg.pixels.shape, rg.bits_stored) == ("jpeg", Path(name).stem, (1024, 1024), 8)
    assert np.abs(rg.pixels - expected).max() <= 1e-6
    # an independent decoder agrees to within JPEG IDCT rounding
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert float(np.abs(rg.pixels - gray / 255.0).mean()) < 1 / 255


# --- DICOMs built from scratch ------------------------------------------------------------------
def _unsigned12(px: np.ndarray) -> np.ndarray:
    """12-bit values from the 8-bit crop, with low bits so that all 4096 levels are possible."""
    noise = (np.arange(px.size, dtype=np.uint16).reshape(px.shape) * 7) % 16
    return (px.astype(np.uint16) * 16 + noise).astype(np.uint16)


def _signed12(px: np.ndarray) -> np.ndarray:
    return (_unsigned12(px).astype(np.int16) - 2048).astype(np.int16)


def _twos12(values: np.ndarray) -> bytes:
    """Signed 12-bit values as stored by devices: two's complement in the low 12 bits only."""
    return (values.astype(np.int32) & 0x0FFF).astype("<u2").tobytes()


def _gamma_lut(entries: int, bits: int, gamma: float) -> np.ndarray:
    return np.rint((2**bits - 1) * (np.arange(entries) / (entries - 1)) ** gamma).astype(np.int64)


BUILT = {
    # the contract's example: 12-bit signed, RescaleSlope 2, RescaleIntercept -1024, two windows
    "signed12_rescale_window": lambda px: build_dicom(
        _signed12(px), bits_stored=12, pixel_data=_twos12(_signed12(px)),
        RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=[-1000, 40], WindowWidth=[3000, 400],
    ),
    "signed12_rescale_window_implicit": lambda px: build_dicom(
        _signed12(px), bits_stored=12, pixel_data=_twos12(_signed12(px)), transfer_syntax=ImplicitVRLittleEndian,
        RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=-1000, WindowWidth=3000,
    ),
    "linear_exact": lambda px: build_dicom(
        _unsigned12(px), bits_stored=12, WindowCenter=2000, WindowWidth=1500, VOILUTFunction="LINEAR_EXACT"
    ),
    "sigmoid": lambda px: build_dicom(
        _unsigned12(px), bits_stored=12, WindowCenter=2000, WindowWidth=1500, VOILUTFunction="SIGMOID"
    ),
    "sigmoid_rescale_monochrome1": lambda px: build_dicom(
        _unsigned12(px), bits_stored=12, photometric="MONOCHROME1", RescaleSlope=0.5, RescaleIntercept=100,
        WindowCenter=1100, WindowWidth=900, VOILUTFunction="SIGMOID",
    ),
    "monochrome1_window": lambda px: build_dicom(
        _unsigned12(px), bits_stored=12, photometric="MONOCHROME1", WindowCenter=1800, WindowWidth=2500
    ),
    "unsigned16_window": lambda px: build_dicom(
        _unsigned12(px) * np.uint16(16), WindowCenter=30000, WindowWidth=40000
    ),
    "narrow_window_width_1": lambda px: build_dicom(
        _unsigned12(px), bits_stored=12, WindowCenter=2000, WindowWidth=1
    ),
    "voi_lut_sequence": lambda px: build_dicom(
        _unsigned12(px), bits_stored=12, VOILUTSequence=voi_lut_sequence(0, _gamma_lut(4096, 16, 0.5), 16)
    ),
    # a LUT over negative modality values, 12 bits deep, and a window it takes precedence over
    "voi_lut_sequence_signed_rescale_and_window": lambda px: build_dicom(
        _signed12(px), bits_stored=12, pixel_data=_twos12(_signed12(px)), RescaleSlope=1, RescaleIntercept=-1024,
        VOILUTSequence=voi_lut_sequence(-3072 + 500, _gamma_lut(3000, 12, 2.0), 12),
        WindowCenter=0, WindowWidth=100,
    ),
    "no_window_12bit": lambda px: build_dicom(_unsigned12(px), bits_stored=12),
    "no_window_12bit_monochrome1_rescale": lambda px: build_dicom(
        _unsigned12(px), bits_stored=12, photometric="MONOCHROME1", RescaleSlope=3, RescaleIntercept=-50
    ),
    "no_window_6bit": lambda px: build_dicom((px >> 2).astype(np.uint8), bits_stored=6),
    "no_window_signed8": lambda px: build_dicom((px.astype(np.int16) - 128).astype(np.int8)),
    "bare_implicit_no_meta": lambda px: build_dicom(
        _unsigned12(px), bits_stored=12, bare=True, transfer_syntax=ImplicitVRLittleEndian,
        WindowCenter=2000, WindowWidth=3000,
    ),
    "bare_explicit_no_meta": lambda px: build_dicom(
        _unsigned12(px), bits_stored=12, bare=True, WindowCenter=2000, WindowWidth=3000
    ),
}


def _parse_any(data: bytes) -> pydicom.Dataset:
    """pydicom's dataset of built bytes; a bare data set gets the syntax pydicom detected."""
    if data[128:132] == b"DICM":
        return parse(data)
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    implicit, _ = ds.original_encoding
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


@pytest.mark.parametrize("case", list(BUILT))
def test_built_dicom_matches_pydicom_reference(case: str, chest_pixels: np.ndarray) -> None:
    data = BUILT[case](chest_pixels)
    ds = _parse_any(data)
    rg = read(data)
    assert_unit_float32(rg)
    assert rg.pixels.shape == chest_pixels.shape
    assert rg.bits_stored == ds.BitsStored
    ref = reference_pixels(ds)
    assert np.abs(rg.pixels - ref).max() <= TOL
    assert float(ref.max() - ref.min()) > 0.3  # the case is not degenerate


def test_native_16_bit_pixels_are_read_in_place_as_pydicom_decodes_them(chest_pixels: np.ndarray, monkeypatch) -> None:
    """Uncompressed unsigned 16-bit grayscale skips pydicom's decoder (its copy and its pass over
    the unused bits) with exactly the same result; anything else, and set bits above Bits Stored,
    goes through pydicom."""
    from thoracic.io.dicom import pixels

    real = pixels._native_unsigned_16
    taken: list[bool] = []

    def spy(*args):
        arr = real(*args)
        taken.append(arr is not None)
        return arr

    garbage = _unsigned12(chest_pixels) | np.uint16(0x4000)  # a bit above Bits Stored (12) set
    cases = {
        "unsigned16_window": True, "monochrome1_window": True, "sigmoid_rescale_monochrome1": True,
        "bare_explicit_no_meta": True, "signed12_rescale_window": False, "no_window_6bit": False,
    }
    datas = {c: BUILT[c](chest_pixels) for c in cases}
    datas["high_bits_set"] = build_dicom(garbage, bits_stored=12, WindowCenter=2000, WindowWidth=3000)
    cases["high_bits_set"] = False
    for case, data in datas.items():
        taken.clear()
        monkeypatch.setattr(pixels, "_native_unsigned_16", spy)
        fast = read(data)
        monkeypatch.setattr(pixels, "_native_unsigned_16", lambda *args: None)
        slow = read(data)
        assert taken == [cases[case]], case
        assert np.array_equal(fast.pixels, slow.pixels), case
        if case == "high_bits_set":  # pydicom cleared the bit: the same image as without it
            assert np.array_equal(fast.pixels, read(build_dicom(_unsigned12(chest_pixels), bits_stored=12,
                                                                 WindowCenter=2000, WindowWidth=3000)).pixels)


def test_signedness_and_bits_stored_are_respected(chest_pixels: np.ndarray) -> None:
    """Two's complement in 12 bits reads as negative values (pydicom sign-extends them)."""
    values = _signed12(chest_pixels)
    ds = parse(BUILT["signed12_rescale_window"](chest_pixels))
    assert np.array_equal(ds.pixel_array, values)
    assert np.array_equal(apply_modality_lut(ds.pixel_array, ds), values * 2.0 - 1024)
    rg = read(BUILT["signed12_rescale_window"](chest_pixels))
    assert (rg.window_center, rg.window_width, rg.voi) == (-1000, 3000, "window LINEAR")
    # by hand: the first window over the modality values, PS3.3 C.11.2.1.2.1
    y = ((values * 2.0 - 1024) - (-1000 - 0.5)) / (3000 - 1) + 0.5
    assert np.abs(rg.pixels - np.clip(y, 0, 1)).max() <= TOL


def test_no_window_percentiles_follow_the_options(chest_pixels: np.ndarray) -> None:
    data = BUILT["no_window_12bit"](chest_pixels)
    rg = read(data, ReadConfig(percentiles=(2.0, 98.0)))
    assert rg.voi == "percentile"
    assert np.abs(rg.pixels - reference_pixels(parse(data), percentiles=(2.0, 98.0))).max() <= TOL


@pytest.mark.parametrize("case", ["signed12_rescale_window", "monochrome1_window", "voi_lut_sequence"])
def test_normalize_percentile_ignores_the_file_window(case: str, chest_pixels: np.ndarray) -> None:
    data = BUILT[case](chest_pixels)
    ds = parse(data)
    modality = apply_modality_lut(ds.pixel_array, ds)
    lo, hi = np.percentile(modality, [0.5, 99.5])
    expected = np.clip((modality - lo) / (hi - lo), 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        expected = 1 - expected
    rg = read(data, ReadConfig(normalize="percentile"))
    assert (rg.voi, rg.normalize) == ("percentile", "percentile")
    assert np.abs(rg.pixels - expected).max() <= TOL


@pytest.mark.parametrize("case", ["signed12_rescale_window", "monochrome1_window", "sigmoid", "voi_lut_sequence"])
def test_normalize_minmax_stretches_after_the_voi(case: str, chest_pixels: np.ndarray) -> None:
    data = BUILT[case](chest_pixels)
    ref = reference_pixels(parse(data))
    expected = (ref - ref.min()) / (ref.max() - ref.min())  # MONOCHROME1: 1 - minmax(u) = minmax(1 - u)
    rg = read(data, ReadConfig(normalize="minmax"))
    assert_kaggle_8bit(rg.pixels, expected)
    assert (float(rg.pixels.min()), float(rg.pixels.max())) == (0.0, 1.0)


def assert_kaggle_8bit(pixels: np.ndarray, expected: np.ndarray) -> None:
    """minmax keeps the recipe's 256 truncated levels: (x * 255).astype(np.uint8) / 255."""
    levels = pixels * 255
    assert np.abs(levels - np.round(levels)).max() <= 1e-4  # on the 8-bit grid
    truncated = np.floor(expected * 255 + 1e-9)
    assert np.abs(np.round(levels) - truncated).max() <= 1  # float rounding at exact level edges
    assert (np.round(levels) != truncated).mean() < 0.01


@pytest.mark.parametrize("case", ["no_window_12bit", "no_window_12bit_monochrome1_rescale"])
def test_normalize_minmax_without_window_stretches_the_values(case: str, chest_pixels: np.ndarray) -> None:
    data = BUILT[case](chest_pixels)
    ds = parse(data)
    modality = apply_modality_lut(ds.pixel_array, ds)
    expected = (modality - modality.min()) / (modality.max() - modality.min())
    if ds.PhotometricInterpretation == "MONOCHROME1":
        expected = 1 - expected
    assert_kaggle_8bit(read(data, ReadConfig(normalize="minmax")).pixels, expected)


def test_rgb_dicom_is_converted_to_gray(chest_pixels: np.ndarray) -> None:
    rgb = np.stack([chest_pixels, chest_pixels[::-1], 255 - chest_pixels], axis=-1).astype(np.uint8)
    data = build_dicom(rgb, photometric="RGB")
    assert np.array_equal(parse(data).pixel_array, rgb)
    rg = read(data)
    assert_unit_float32(rg)
    assert np.abs(rg.pixels - rgb @ LUMA / 255.0).max() <= TOL


# --- JPEG 2000 at a reduced resolution ----------------------------------------------------------
def test_reduced_resolution_jpeg2000() -> None:
    full = read_cached("RG1_J2KR.dcm")
    small = read_cached("RG1_J2KR.dcm", ReadConfig(target_size=512))
    assert small.pixels.shape == (978, 921)  # one resolution level down: ceil(1955/2) x ceil(1841/2)
    assert max(small.pixels.shape) >= 512  # still at least the target size
    assert small.original_size == full.original_size == (1841, 1955)
    # sample i of level 1 is centred on original pixel 2i (centre 2i + 0.5): x = 2 x' - 0.5
    assert (small.to_original.sx, small.to_original.sy) == (2.0, 2.0)
    assert (small.to_original.tx, small.to_original.ty) == (-0.5, -0.5)
    centres = small.to_original.apply_points([[0.5, 0.5], [10.5, 20.5]])
    assert centres.tolist() == [[0.5, 0.5], [20.5, 40.5]]
    assert_unit_float32(small)
    assert small.window_center == full.window_center and small.photometric == "MONOCHROME1"
    down = cv2.resize(full.pixels, (small.width, small.height), interpolation=cv2.INTER_AREA)
    assert float(np.abs(small.pixels - down).mean()) < 0.01


def test_target_size_keeps_full_resolution_when_needed() -> None:
    """No reduction when the target is as large as the image, nor for non-JPEG 2000 files."""
    rg = read(fixture_path("RG1_J2KI.dcm"), ReadConfig(target_size=1500))
    assert rg.pixels.shape == (1955, 1841) and rg.to_original.is_identity
    assert np.array_equal(rg.pixels, read_cached("RG1_J2KI.dcm").pixels)
    rg = read(fixture_path("nih_dx_implicit_le.dcm"), ReadConfig(target_size=256))
    assert rg.pixels.shape == (1024, 1024) and rg.to_original.is_identity


# --- PNG, JPEG, TIFF ----------------------------------------------------------------------------
def _save(tmp_path: Path, name: str, arr: np.ndarray, **kwargs: object) -> Path:
    path = tmp_path / name
    Image.fromarray(arr).save(path, **kwargs)
    return path


def test_png_8bit(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    rg = read(_save(tmp_path, "chest.png", chest_pixels))
    assert_unit_float32(rg)
    assert (rg.format, rg.image_id, rg.bits_stored, rg.photometric) == ("png", "chest", 8, "MONOCHROME2")
    assert rg.pixels.shape == chest_pixels.shape == (160, 240)
    assert np.abs(rg.pixels - chest_pixels / 255.0).max() <= 1e-6
    assert (rg.original_width, rg.original_height) == (240, 160)
    assert rg.pixel_spacing is None and rg.phi == {}


def test_png_16bit_keeps_its_full_depth(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    a16 = (_unsigned12(chest_pixels) * np.uint16(16) + np.uint16(5)).astype(np.uint16)
    assert len(np.unique(a16)) > 1024
    path = _save(tmp_path, "deep.png", a16)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # really a 16-bit PNG
    rg = read(path, ReadConfig(normalize="percentile", percentiles=(0, 100)))
    assert rg.bits_stored == 16
    expected = (a16 - a16.min()) / float(a16.max() - a16.min())
    assert np.abs(rg.pixels - expected).max() <= 1e-6
    assert len(np.unique(rg.pixels)) == len(np.unique(a16))  # no level merged: not cut to 8 bits
    assert_kaggle_8bit(read(path, ReadConfig(normalize="minmax")).pixels, expected)
    # by default a deep image gets the percentile window
    rg = read(path)
    lo, hi = np.percentile(a16, [0.5, 99.5])
    assert rg.voi == "percentile"
    assert np.abs(rg.pixels - np.clip((a16 - lo) / (hi - lo), 0, 1)).max() <= 1e-5


def test_tiff_16bit(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    a16 = _unsigned12(chest_pixels) * np.uint16(16)
    rg = read(_save(tmp_path, "deep.tiff", a16), ReadConfig(normalize="percentile", percentiles=(0, 100)))
    assert (rg.format, rg.image_id, rg.bits_stored) == ("tiff", "deep", 16)
    assert np.abs(rg.pixels - (a16 - a16.min()) / float(a16.max() - a16.min())).max() <= 1e-6


def test_rgb_png_is_converted_to_gray(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    rgb = np.stack([chest_pixels, chest_pixels[::-1], 255 - chest_pixels], axis=-1).astype(np.uint8)
    rg = read(_save(tmp_path, "color.png", rgb))
    assert_unit_float32(rg)
    assert rg.pixels.shape == chest_pixels.shape
    assert rg.photometric == "RGB->gray"
    assert np.abs(rg.pixels - rgb @ LUMA / 255.0).max() <= TOL


def test_rgb_jpeg_is_converted_to_gray(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    rgb = np.stack([chest_pixels, chest_pixels, np.clip(chest_pixels.astype(int) + 40, 0, 255)], axis=-1)
    path = _save(tmp_path, "color.JPG", rgb.astype(np.uint8), quality=95)
    rg = read(path)
    assert (rg.format, rg.image_id, rg.pixels.shape) == ("jpeg", "color", chest_pixels.shape)
    with Image.open(path) as im:
        assert im.mode == "RGB"
        decoded = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert np.abs(rg.pixels - decoded @ LUMA / 255.0).max() <= TOL
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)  # OpenCV's own decode and luma
    assert float(np.abs(rg.pixels - gray / 255.0).mean()) < 1.5 / 255


def test_gray_jpeg(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    path = _save(tmp_path, "gray.jpeg", chest_pixels, quality=90)
    rg = read(path)
    with Image.open(path) as im:
        decoded = np.asarray(im, dtype=np.float64)
    assert rg.pixels.shape == (160, 240)
    assert np.abs(rg.pixels - decoded / 255.0).max() <= 1e-6


def test_png_orientation(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    marked = np.zeros((30, 50), dtype=np.uint8)
    marked[2, 45] = 200  # top right
    marked[27, 3] = 100  # bottom left
    rg = read(_save(tmp_path, "marks.png", marked))
    assert rg.pixels.shape == (30, 50)
    assert rg.pixels[2, 45] == pytest.approx(200 / 255) and rg.pixels[27, 3] == pytest.approx(100 / 255)


# --- sources: path, bytes, file object ----------------------------------------------------------
@pytest.mark.parametrize("name", ["nih_dx_implicit_le.dcm", "siim_cr_jpeg_baseline.dcm", "00000377_004.jpg"])
def test_path_bytes_and_file_object_agree(name: str) -> None:
    path = Path(fixture_path(name))
    data = path.read_bytes()
    by_path = read(path)
    by_str = read(str(path))
    by_bytes = read(data)
    by_view = read(memoryview(bytearray(data)))
    with open(path, "rb") as fh:
        by_file = read(fh)
    by_stream = read(io.BytesIO(data))
    for rg in (by_str, by_bytes, by_view, by_file, by_stream):
        assert np.array_equal(rg.pixels, by_path.pixels)
    assert by_path.image_id == by_str.image_id == by_file.image_id == path.stem
    assert by_path.source == str(path) == by_file.source
    assert by_bytes.image_id == by_stream.image_id == "image"
    assert read(data, image_id="given").image_id == "given"


def test_text_mode_file_and_wrong_types_are_type_errors(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with open(path) as fh, pytest.raises(TypeError, match="binary mode"):
        read(fh)
    with pytest.raises(TypeError, match="path, bytes or a binary file"):
        read(42)  # type: ignore[arg-type]


# --- identifying data ---------------------------------------------------------------------------
def test_phi_is_kept_but_never_shown(chest_pixels: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rg = read(build_dicom(chest_pixels))
    for key, value in PHI.items():
        assert rg.phi[key] == value
    assert "Jane" in PHI_FRAGMENTS
    for part in PHI_FRAGMENTS:
        assert part not in repr(rg)
        assert part not in str(rg.summary())
        assert part not in caplog.text
    assert "PixelData" not in rg.dataset  # the header is kept, without a second copy of the pixels
    assert rg.dataset.PatientName == PHI["PatientName"]


def test_real_file_phi_is_not_in_repr() -> None:
    rg = read_cached("RG1_UNCR.dcm")
    assert rg.phi["PatientName"] == "CompressedSamples^RG1"
    text = repr(rg) + str(rg.summary())
    for value in rg.phi.values():
        # a one-letter value (PatientSex "F") occurs in any text, the checkout's path included
        # (a clone in /tmp/tmp.Ff...): those must not appear as a quoted field value
        assert (value if len(value) >= 3 else repr(value)) not in text


def test_jpeg_ls_decodes_with_charls_when_installed(monkeypatch) -> None:
    """pyjpegls (CharLS, from the dicom extra) decodes JPEG-LS to exactly pylibjpeg-libjpeg's pixels."""
    pytest.importorskip("jpeg_ls")
    from thoracic.io import read
    from thoracic.io.dicom import codestream, pixels

    path = fixture_path("RG1_JLSN.dcm")
    assert codestream.has_charls()
    charls = read(path).pixels
    monkeypatch.setattr(pixels, "has_charls", lambda: False)  # pydicom's default: pylibjpeg
    assert np.array_equal(charls, read(path).pixels)


@pytest.mark.parametrize(("slope", "intercept"), [(1, 0), (2, -1024), (-0.5, 100), (1e-3, 0.25), (-3.7, -1e6)])
def test_the_value_range_from_the_stored_integers_is_that_of_the_values(slope, intercept, chest_pixels) -> None:
    """The reader takes the least and greatest modality value from the stored integers: exactly
    what the modality values' own minimum and maximum are, for either sign of the slope."""
    from thoracic.io.dicom.pixels import modality_lut
    from thoracic.io.dicom.read import _value_range

    for stored, signed in ((_unsigned12(chest_pixels), False), (_signed12(chest_pixels), True)):
        ds = parse(build_dicom(stored, bits_stored=12, RescaleSlope=slope, RescaleIntercept=intercept,
                               **({"pixel_data": _twos12(stored)} if signed else {})))
        values, _ = modality_lut(stored, ds, "x")
        assert _value_range(stored, values, ds, "x") == (float(values.min()), float(values.max()))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float64])
@pytest.mark.parametrize(("center", "width", "func"), [(2000.3, 1500.7, "LINEAR"), (-20, 300, "LINEAR"),
                                                        (2000, 1500, "LINEAR_EXACT"), (2000, 1500, "SIGMOID"),
                                                        (2000, 1, "LINEAR")])
def test_the_window_of_stored_integers_is_that_of_their_float32_values(dtype, center, width, func, chest_pixels):
    """The reader hands 8- and 16-bit stored integers under the identity rescale to the window as
    they are (no float32 copy first): the window gives exactly the numbers it gives their float32
    values, whatever the type."""
    from thoracic.io.voi import window

    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    values = chest_pixels.astype(np.int64) * 17 - 1800
    values = np.clip(values, info.min, info.max) if info is not None else values.astype(np.float64) + 0.25
    stored = values.astype(dtype)
    np.testing.assert_array_equal(window(stored, center, width, func), window(stored.astype(np.float32), center, width, func))


def test_identity_rescale_passes_small_stored_integers_through(chest_pixels) -> None:
    from thoracic.io.dicom.pixels import modality_lut

    for stored, extra in ((_unsigned12(chest_pixels), {}), (_signed12(chest_pixels), {"pixel_data": _twos12(_signed12(chest_pixels))})):
        ds = parse(build_dicom(stored, bits_stored=12, **extra))
        values, _ = modality_lut(stored, ds, "x")
        assert values is stored  # the same integers, no copy
        ds = parse(build_dicom(stored, bits_stored=12, RescaleSlope=2, **extra))
        assert modality_lut(stored, ds, "x")[0].dtype == np.float32
