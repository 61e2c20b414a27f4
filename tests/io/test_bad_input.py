"""Bad input gets a clear, typed error: every case is built as bytes here.

Each error must be the specific subclass of :mod:`thoracic.errors`, also the matching built-in
(``OSError`` for a ReadError, ``ValueError`` for an InvalidRadiographError), name the path it was
read from, carry no identifying data, and survive pickling (errors cross process boundaries).
"""

from __future__ import annotations

import functools
import pickle
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import PHI_FRAGMENTS, build_dicom
from io_helpers import fixture_path, parse
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000, MPEG2MPML, JPEGBaseline8Bit, JPEGLSNearLossless

from thoracic.errors import (
    ConstantImageError,
    CorruptFileError,
    ImageTooLargeError,
    MultiFrameError,
    NoPixelDataError,
    NotChestRadiographError,
    ReadError,
    ThoracicError,
    UnsupportedFormatError,
    UnsupportedTransferSyntaxError,
)
from thoracic.io import ReadConfig, read

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def check_error(err: BaseException, cls: type[ThoracicError], path: Path | str | None = None) -> None:
    """The common contract of every error thoracic raises on bad input."""
    assert type(err) is cls
    assert isinstance(err, ThoracicError)
    builtin = OSError if issubclass(cls, ReadError) else ValueError
    assert isinstance(err, builtin)
    text = str(err)
    assert len(err.message) > 10  # says something
    if path is not None:
        assert err.path == str(path)
        assert text.startswith(f"{path}: ")
    for part in PHI_FRAGMENTS:
        assert part not in text and part not in repr(err)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls
    assert str(clone) == text and clone.path == err.path and clone.message == err.message
    assert clone.__dict__ == err.__dict__  # reason, transfer_syntax, ...
    assert clone.args == err.args


def raises_everywhere(data: bytes, cls: type[ThoracicError], tmp_path: Path, name: str = "input.dcm",
                      options: ReadConfig | None = None) -> ThoracicError:
    """Read ``data`` from a path and as bytes: both raise ``cls``; returns the error of the path."""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(cls) as from_path:
        read(path, options)
    check_error(from_path.value, cls, path)
    with pytest.raises(cls) as from_bytes:
        read(data, options)
    check_error(from_bytes.value, cls, "<bytes>")
    return from_path.value


@functools.cache
def file_bytes(name: str) -> bytes:
    return Path(fixture_path(name)).read_bytes()


def _png(width: int, height: int, bit_depth: int = 8, idat: bytes = b"\0" * 64) -> bytes:
    """A PNG with any declared size: a valid IHDR (CRCs included), a token IDAT and IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(idat)) + chunk(b"IEND", b"")


def _encoded(px: np.ndarray, fmt: str, **kwargs: object) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(px).save(buf, fmt, **kwargs)
    return buf.getvalue()


# --- not an image at all ------------------------------------------------------------------------
NOT_AN_IMAGE: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "garbage_0": lambda: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "garbage_1": lambda: np.random.default_rng(1).integers(0, 256, 333, dtype=np.uint8).tobytes(),
    "garbage_2": lambda: np.random.default_rng(2).integers(0, 256, 1, dtype=np.uint8).tobytes(),
    "zeros": lambda: bytes(2048),
    "text": lambda: b"Chest X-ray report\nNo acute cardiopulmonary process.\n" * 20,
    "csv": lambda: b"image_id,class_name,x_min\n000434271f63a053c4128a0ba6352c7f,Aortic enlargement,691\n",
    "json": lambda: b'{"image_id": "1.2.3", "boxes": []}',
    "gif": lambda: b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    "bmp": lambda: b"BM" + bytes(60),
    "preamble_only": lambda: file_bytes("nih_dx_implicit_le.dcm")[:100],
}


@pytest.mark.parametrize("case", list(NOT_AN_IMAGE))
def test_not_an_image(case: str, tmp_path: Path) -> None:
    err = raises_everywhere(NOT_AN_IMAGE[case](), UnsupportedFormatError, tmp_path, "input.dcm")
    assert "empty" in err.message or "not a DICOM file nor a PNG/JPEG/TIFF image" in err.message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ReadError) as info:
        read(tmp_path / "absent.dcm")
    check_error(info.value, ReadError, tmp_path / "absent.dcm")
    assert "no such file" in str(info.value)
    with pytest.raises(ReadError) as info:
        read(tmp_path)
    check_error(info.value, ReadError, tmp_path)
    assert "folder" in str(info.value)


# --- truncated and damaged files ----------------------------------------------------------------
def _pixel_data_span(data: bytes) -> tuple[int, int]:
    """Where the Pixel Data element starts (its tag) and ends (RG1 has padding after it)."""
    import io

    import pydicom

    raw = pydicom.dcmread(io.BytesIO(data))._dict[0x7FE00010]
    start = data.rfind(b"\xe0\x7f\x10\x00", 0, raw.value_tell)
    if raw.length != 0xFFFFFFFF:
        return start, raw.value_tell + raw.length
    return start, data.find(b"\xfe\xff\xdd\xe0", raw.value_tell) + 8  # encapsulated: its delimiter


def _cuts(data: bytes) -> dict[str, int]:
    """Cut points inside the file meta, a header element, a tag, and the pixel data."""
    start, end = _pixel_data_span(data)
    return {
        "file_meta": 150,
        "header": (150 + start) // 2 + 1,
        "pixel_tag": start + 3,
        "pixel_length": start + 10,
        "pixel_data": (start + end) // 2,
        "pixel_data_end": end - 100,
    }


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "nih_dx_implicit_le.dcm", "RG1_J2KI.dcm", "RG1_JLSN.dcm",
                                  "siim_cr_jpeg_baseline.dcm"])
def test_truncated_dicom(name: str, tmp_path: Path) -> None:
    data = file_bytes(name)
    for where, cut in _cuts(data).items():
        with pytest.raises(CorruptFileError) as info:
            read(data[:cut])
        check_error(info.value, CorruptFileError, "<bytes>")
        assert "truncated" in info.value.message, where
    raises_everywhere(data[: _cuts(data)["pixel_data"]], CorruptFileError, tmp_path, "cut.dcm")


def test_native_dicom_one_byte_short(tmp_path: Path) -> None:
    data = file_bytes("RG1_UNCR.dcm")
    _, end = _pixel_data_span(data)
    assert end < len(data)  # a Data Set Trailing Padding follows; cut inside it, the pixels are whole
    assert read(data[: end + 5]).pixels.shape == (1955, 1841)
    err = raises_everywhere(data[: end - 1], CorruptFileError, tmp_path)
    assert "less than expected" in err.message


def test_truncated_everywhere(chest_pixels: np.ndarray) -> None:
    """Every cut after the preamble is a typed error; a cut between two header elements cannot be
    told from a file saved without its pixels, and says so."""
    data = build_dicom(chest_pixels[:8, :8], WindowCenter=100, WindowWidth=200)
    assert len(data) < 1500
    seen = set()
    for cut in range(132, len(data)):
        with pytest.raises((CorruptFileError, NoPixelDataError)) as info:
            read(data[:cut])
        seen.add(type(info.value))
        if isinstance(info.value, NoPixelDataError):
            assert "cut short" in info.value.message, cut
        else:
            assert "truncated" in info.value.message, cut
    assert seen == {CorruptFileError, NoPixelDataError}


def test_pixel_data_shorter_than_the_header_says(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    data = build_dicom(chest_pixels, pixel_data=chest_pixels.tobytes()[:-chest_pixels.shape[1]])
    err = raises_everywhere(data, CorruptFileError, tmp_path)
    assert "cannot be decoded" in err.message


def test_corrupt_jpeg_stream_in_dicom(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    stream = _encoded(chest_pixels, "JPEG", quality=90)
    garbled = stream[:2] + bytes(range(256)) * 4 + b"\xff\xd9"  # SOI, nonsense, EOI
    data = build_dicom(chest_pixels, transfer_syntax=JPEGBaseline8Bit, pixel_data=encapsulate([garbled]))
    err = raises_everywhere(data, CorruptFileError, tmp_path)
    assert "cannot be decoded" in err.message


@pytest.mark.parametrize("name", ["siim_cr_jpeg_baseline.dcm", "RG1_J2KI.dcm", "RG1_JLSN.dcm"])
def test_codestream_cut_inside_an_intact_dicom(name: str, tmp_path: Path) -> None:
    """The DICOM is well formed but its JPEG/JPEG 2000/JPEG-LS stream stops early (pylibjpeg would
    decode the rest as flat gray): refused, also on the reduced-resolution JPEG 2000 path."""
    import io

    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(io.BytesIO(file_bytes(name)))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    err = raises_everywhere(buf.getvalue(), CorruptFileError, tmp_path)
    assert "end-of-image marker" in err.message
    with pytest.raises(CorruptFileError):
        read(buf.getvalue(), ReadConfig(target_size=256))


def test_truncated_png(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    png = _encoded(chest_pixels, "PNG")
    assert len(png) > 2000
    for cut in (8, 16, 20, 30, 40, 100, len(png) // 2):
        raises_everywhere(png[:cut], CorruptFileError, tmp_path, "cut.png")


def test_truncated_jpeg(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    jpg = _encoded(chest_pixels, "JPEG", quality=90)
    for cut in (3, 10, 100, len(jpg) // 3, len(jpg) // 2, len(jpg) - 2):
        raises_everywhere(jpg[:cut], CorruptFileError, tmp_path, "cut.jpg")


# --- read, but not something thoracic analyzes --------------------------------------------------
def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    report = build_dicom(None, SOPClassUID=BASIC_TEXT_SR, Modality="SR", BodyPartExamined=None, ViewPosition=None)
    err = raises_everywhere(report, NoPixelDataError, tmp_path)
    assert "no pixel data" in err.message


def test_dicom_header_saved_without_pixels(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    data = build_dicom(chest_pixels, PixelData=None)
    assert "Rows" in parse(data) and "PixelData" not in parse(data)
    err = raises_everywhere(data, NoPixelDataError, tmp_path)
    assert "saved without its pixels" in err.message


def test_dicom_with_float_pixel_data(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    data = build_dicom(None, Rows=4, Columns=4, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
                       BitsAllocated=32, FloatPixelData=np.zeros(16, np.float32).tobytes())
    err = raises_everywhere(data, NoPixelDataError, tmp_path)
    assert "FloatPixelData" in err.message


def test_multi_frame(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    frames = np.stack([chest_pixels, 255 - chest_pixels])
    data = build_dicom(chest_pixels, NumberOfFrames=2, pixel_data=frames.tobytes())
    assert parse(data).pixel_array.shape == (2, *chest_pixels.shape)  # a valid two-frame image
    err = raises_everywhere(data, MultiFrameError, tmp_path)
    assert "2 frames" in err.message


NOT_CHEST = {
    "CT": ({"Modality": "CT", "BodyPartExamined": None, "ViewPosition": None}, "modality:CT"),
    "MR": ({"Modality": "MR", "BodyPartExamined": "CHEST", "ViewPosition": None}, "modality:MR"),
    "LL": ({"ViewPosition": "LL"}, "view:LL"),
    "RL": ({"ViewPosition": "RL"}, "view:RL"),
    "LAT": ({"ViewPosition": "LAT"}, "view:LAT"),
    "HAND": ({"BodyPartExamined": "HAND"}, "body_part:HAND"),
}


@pytest.mark.parametrize("case", list(NOT_CHEST))
def test_not_a_chest_radiograph(case: str, tmp_path: Path, chest_pixels: np.ndarray) -> None:
    attrs, reason = NOT_CHEST[case]
    data = build_dicom(chest_pixels, **attrs)
    err = raises_everywhere(data, NotChestRadiographError, tmp_path)
    assert err.reason == reason
    assert "allow_non_chest" in err.message and reason.split(":")[1] in err.message
    # the override reads it, and the output says what was overridden
    rg = read(data, ReadConfig(allow_non_chest=True))
    assert rg.flags == (reason,)
    assert rg.summary()["flags"] == [reason]
    assert np.abs(rg.pixels - chest_pixels / 255.0).max() <= 1e-6


def test_every_problem_is_flagged(chest_pixels: np.ndarray) -> None:
    data = build_dicom(chest_pixels, Modality="CT", ViewPosition="LAT", BodyPartExamined="ABDOMEN")
    with pytest.raises(NotChestRadiographError) as info:
        read(data)
    assert info.value.reason == "modality:CT"
    for word in ("CT", "LAT", "ABDOMEN"):
        assert word in info.value.message
    flags = read(data, ReadConfig(allow_non_chest=True)).flags
    assert flags == ("modality:CT", "view:LAT", "body_part:ABDOMEN")


@pytest.mark.parametrize("attrs", [{}, {"Modality": "DX", "BodyPartExamined": "THORAX"},
                                   {"ViewPosition": "AP", "BodyPartExamined": None}, {"Modality": None}])
def test_frontal_chest_radiographs_are_not_flagged(attrs: dict, chest_pixels: np.ndarray) -> None:
    assert read(build_dicom(chest_pixels, **attrs)).flags == ()


# --- decompression bombs ------------------------------------------------------------------------
def test_dicom_with_absurd_dimensions_fails_fast(tmp_path: Path) -> None:
    data = build_dicom(np.zeros((2, 2), np.uint16), Rows=65535, Columns=65535, WindowCenter=1, WindowWidth=2)
    start = time.perf_counter()
    err = raises_everywhere(data, ImageTooLargeError, tmp_path)
    assert time.perf_counter() - start < 1.0
    assert "65535x65535" in err.message and "max_pixels" in err.message


def test_max_pixels_option(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    small = ReadConfig(max_pixels=100)
    raises_everywhere(build_dicom(chest_pixels), ImageTooLargeError, tmp_path, options=small)
    raises_everywhere(_encoded(chest_pixels, "PNG"), ImageTooLargeError, tmp_path, "small.png", options=small)
    assert read(build_dicom(chest_pixels), ReadConfig(max_pixels=chest_pixels.size)).pixels.shape == (160, 240)


@pytest.mark.parametrize("size", [(100_000, 100_000), (20_000, 20_000), (9_000, 9_000), (10_000, 7_000)])
def test_png_with_absurd_declared_size_fails_fast(size: tuple[int, int], tmp_path: Path) -> None:
    """Beyond thoracic's max_pixels, and beyond Pillow's own limit: one error, before decoding."""
    data = _png(*size)
    start = time.perf_counter()
    raises_everywhere(data, ImageTooLargeError, tmp_path, "bomb.png")
    assert time.perf_counter() - start < 1.0


# --- constant images ----------------------------------------------------------------------------
CONSTANT = {
    "dicom_zeros": lambda: build_dicom(np.zeros((64, 64), np.uint8)),
    "dicom_12bit_window": lambda: build_dicom(np.full((64, 64), 1000, np.uint16), bits_stored=12,
                                              WindowCenter=1000, WindowWidth=400),
    "dicom_monochrome1_rescale": lambda: build_dicom(np.full((64, 64), 7, np.int16), photometric="MONOCHROME1",
                                                     RescaleSlope=2, RescaleIntercept=-1024),
    "png_white": lambda: _encoded(np.full((64, 64), 255, np.uint8), "PNG"),
    "png_16bit": lambda: _encoded(np.full((64, 64), 40000, np.uint16), "PNG"),
}


@pytest.mark.parametrize("case", list(CONSTANT))
def test_constant_image(case: str, tmp_path: Path) -> None:
    name = "blank.png" if case.startswith("png") else "blank.dcm"
    err = raises_everywhere(CONSTANT[case](), ConstantImageError, tmp_path, name)
    assert "blank" in err.message


# --- transfer syntaxes that cannot be decoded ---------------------------------------------------
@pytest.mark.parametrize(
    ("name", "uid", "package"),
    [
        ("RG1_JLSN.dcm", JPEGLSNearLossless, "pylibjpeg-libjpeg"),
        ("RG1_J2KI.dcm", JPEG2000, "pylibjpeg-openjpeg"),
        ("siim_cr_jpeg_baseline.dcm", JPEGBaseline8Bit, "pylibjpeg-libjpeg"),
    ],
)
def test_decoder_not_installed(name: str, uid: str, package: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """As if no plugin of pydicom's decoder were installed: the message says what to pip install."""
    monkeypatch.setattr(get_decoder(uid), "_available", {})
    assert not get_decoder(uid).is_available
    start = time.perf_counter()
    err = raises_everywhere(file_bytes(name), UnsupportedTransferSyntaxError, tmp_path)
    assert time.perf_counter() - start < 1.0  # refused before anything is decoded
    assert err.transfer_syntax == uid
    assert f"pip install pylibjpeg {package}" in err.message
    assert uid in err.message


def test_transfer_syntax_without_a_pydicom_decoder(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    stream = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])  # an MPEG-2 sequence header, then nothing
    data = build_dicom(chest_pixels, transfer_syntax=MPEG2MPML, pixel_data=stream)
    err = raises_everywhere(data, UnsupportedTransferSyntaxError, tmp_path)
    assert err.transfer_syntax == MPEG2MPML
    assert "pip install --upgrade pydicom" in err.message


def test_transfer_syntax_unknown_to_pydicom(tmp_path: Path, chest_pixels: np.ndarray) -> None:
    """JPEG XL (1.2.840.10008.1.2.4.110) is newer than this pydicom, which refuses to write it:
    patch the UID into the bytes of a file written with another syntax of the same length."""
    data = build_dicom(chest_pixels, transfer_syntax=MPEG2MPML, pixel_data=encapsulate([b"\xff\x0a" + bytes(60)]))
    old, new = b"1.2.840.10008.1.2.4.100\x00", b"1.2.840.10008.1.2.4.110\x00"
    assert data.count(old) == 1
    err = raises_everywhere(data.replace(old, new), UnsupportedTransferSyntaxError, tmp_path)
    assert err.transfer_syntax == "1.2.840.10008.1.2.4.110"
    assert "pip install --upgrade pydicom" in err.message

