"""Regressions found by fuzzing the reader: each bad input is built here as bytes.

Before the fixes each of these raised an untyped exception (``TypeError``, ``NotImplementedError``,
``AttributeError``), took minutes or gigabytes (deep nesting, a codestream declaring 65535 x 65535
pixels), leaked a warning, or returned NaN pixels.
"""

from __future__ import annotations

import io
import struct
import time

import fuzz_cases as fc
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from thoracic.errors import CorruptFileError, InvalidRadiographError, NoPixelDataError, ThoracicError
from thoracic.io import ReadConfig, read

PIXELS = (fc.chest_image(24, 20).astype(np.uint16) * 16).astype(np.uint16)


def _dcm(**attrs) -> bytes:
    return fc.dicom_bytes(PIXELS, bits_stored=12, **attrs)


def _raises(data: bytes, cls: type[ThoracicError], words: str, **options) -> ThoracicError:
    with pytest.raises(cls) as info:
        read(data, ReadConfig(**options))
    err = info.value
    assert type(err) is cls and words in err.message, err.message
    text = str(err) + repr(err)
    for value in fc.PHI.values():
        assert value not in text
    return err


def _lut(descriptor: list[int], data: list[int] | None, *, vr: str = "US") -> Sequence:
    item = Dataset()
    item.add_new(0x00283002, "US", descriptor)
    if data is not None:
        item.add_new(0x00283006, vr, data)
    return Sequence([item])


# --- lookup tables: pydicom raises NotImplementedError / TypeError on malformed ones --------------
def test_voi_lut_with_1_bit_entries() -> None:
    _raises(_dcm(VOILUTSequence=_lut([0, 65535, 1], [])), CorruptFileError, "VOI LUT declares 1 bits")


def test_voi_lut_shorter_than_declared_is_typed() -> None:
    try:
        read(_dcm(VOILUTSequence=_lut([4096, 0, 12], [1, 2, 3])))
    except ThoracicError:
        pass  # typed; reading it as far as the data goes would be fine too


def test_modality_lut_without_data() -> None:
    seq = _lut([2, 0, 12], None)
    seq[0].ModalityLUTType = "US"
    _raises(_dcm(ModalityLUTSequence=seq), CorruptFileError, "Modality LUT is malformed")


def test_modality_lut_of_17_bits() -> None:
    seq = _lut([4, 0, 17], [0, 1, 2, 3])
    seq[0].ModalityLUTType = "US"
    _raises(_dcm(ModalityLUTSequence=seq), CorruptFileError, "declares 17 bits per entry")


@pytest.mark.parametrize("bits", [12, 17])
def test_palette_of_odd_depth(bits: int) -> None:
    lut = struct.pack("<256H", *range(256))
    attrs = {f"{c}PaletteColorLookupTableDescriptor": [256, 0, bits] for c in ("Red", "Green", "Blue")}
    attrs.update({f"{c}PaletteColorLookupTableData": lut for c in ("Red", "Green", "Blue")})
    data = fc.dicom_bytes(fc.chest_image(24, 20), photometric="PALETTE COLOR", **attrs)
    _raises(data, CorruptFileError, "palette color lookup table is malformed", allow_non_chest=True)


def test_palette_color_on_an_rgb_image() -> None:
    """pydicom maps each of the 3 samples through the palette: a 4-D "radiograph" came out."""
    lut = struct.pack("<256H", *range(0, 65536, 256))
    attrs = {f"{c}PaletteColorLookupTableDescriptor": [256, 0, 16] for c in ("Red", "Green", "Blue")}
    attrs.update({f"{c}PaletteColorLookupTableData": lut for c in ("Red", "Green", "Blue")})
    rgb = np.stack([fc.chest_image(24, 20)] * 3, axis=-1)
    data = fc.dicom_bytes(rgb, photometric="PALETTE COLOR", **attrs)
    _raises(data, CorruptFileError, "PALETTE COLOR but has 3 samples per pixel")


# --- header values of the wrong shape -----------------------------------------------------------
def test_pixel_spacing_with_one_value_is_unknown_spacing() -> None:
    rg = read(_dcm(PixelSpacing="0.2"))
    assert rg.pixel_spacing is None and rg.pixels.shape == PIXELS.shape


def test_rows_with_two_values() -> None:
    _raises(_dcm(Rows=[24, 24]), CorruptFileError, "Rows is not a single integer")


def test_empty_planar_configuration_of_a_grayscale_image_is_harmless() -> None:
    import pydicom
    from pydicom.dataelem import DataElement

    ds = pydicom.dcmread(io.BytesIO(_dcm()))
    ds[0x00280006] = DataElement(0x00280006, "US", None)
    buf = io.BytesIO()
    ds.save_as(buf)
    assert read(buf.getvalue()).pixels.shape == PIXELS.shape
    ds[0x00280101] = DataElement(0x00280101, "US", None)  # an empty Bits Stored is not
    buf = io.BytesIO()
    ds.save_as(buf)
    _raises(buf.getvalue(), CorruptFileError, "BitsStored is not a single integer")


def test_bits_stored_out_of_range() -> None:
    _raises(_dcm(BitsStored=65535), CorruptFileError, "BitsStored is 65535, outside 1..64")


@pytest.mark.parametrize("attrs", [{"RescaleIntercept": "NaN"}, {"RescaleSlope": "inf"}])
def test_non_finite_rescale(attrs: dict) -> None:
    _raises(_dcm(**attrs), CorruptFileError, "the header is damaged")


def test_rescale_that_overflows_float32() -> None:
    _raises(_dcm(RescaleSlope="1e308"), CorruptFileError, "beyond the floating-point range")
    _raises(_dcm(RescaleSlope="1e35"), CorruptFileError, "beyond the floating-point range")  # 4095 * 1e35


# --- structure ----------------------------------------------------------------------------------
def test_empty_transfer_syntax_reads_as_parsed() -> None:
    data = _dcm()
    pos = data.find(b"\x02\x00\x10\x00UI")
    length = struct.unpack("<H", data[pos + 6 : pos + 8])[0]
    meta_len_pos = data.find(b"\x02\x00\x00\x00UL")
    group_len = struct.unpack("<I", data[meta_len_pos + 8 : meta_len_pos + 12])[0] - length
    patched = bytearray(data[:pos] + b"\x02\x00\x10\x00UI\x00\x00" + data[pos + 8 + length :])
    patched[meta_len_pos + 8 : meta_len_pos + 12] = struct.pack("<I", group_len)
    rg = read(bytes(patched))
    assert rg.pixels.shape == PIXELS.shape and rg.transfer_syntax == "Explicit VR Little Endian"


def _with_vr(data: bytes, element: bytes, vr: bytes) -> bytes:
    out = bytearray(data)
    pos = data.find(element)
    assert pos > 0
    out[pos + 4 : pos + 6] = vr
    return bytes(out)


def test_unknown_vr_in_an_image_element() -> None:
    data = _with_vr(_dcm(), b"\x28\x00\x10\x00US", b"QI")  # Rows
    err = _raises(data, CorruptFileError, "element (0028,0010) cannot be decoded (NotImplementedError)")
    assert "QI" not in err.message


def test_unknown_vr_in_a_patient_element_drops_it(caplog: pytest.LogCaptureFixture) -> None:
    """A damaged element the reader does not need (here Patient ID) is dropped, not fatal."""
    import logging

    data = _with_vr(_dcm(), b"\x10\x00\x20\x00LO", b"QI")
    with caplog.at_level(logging.DEBUG, logger="thoracic.io.dicom"):
        rg = read(data)
    assert rg.pixels.shape == PIXELS.shape
    assert "PatientID" not in rg.dataset and "PatientID" not in rg.phi
    assert rg.phi["PatientName"] == fc.PHI["PatientName"]  # the rest of the header is intact
    assert "dropped the damaged header element (0010,0020)" in caplog.text
    assert fc.PHI["PatientID"] not in caplog.text


def test_empty_pixel_data() -> None:
    _raises(fc.dicom_bytes(PIXELS, bits_stored=12, pixel_data=b""), CorruptFileError, "Pixel Data element is empty")


@pytest.mark.parametrize("undefined", [False, True])
def test_deeply_nested_sequences_fail_fast(undefined: bool) -> None:
    """3000 nested sequences: pydicom's recursive walk took minutes to fail; now refused at once."""
    data = fc.m_nested(_FixedRandom(depth=3000, undefined=undefined), _dcm())[0]
    t0 = time.perf_counter()
    with pytest.raises(CorruptFileError):
        read(data)
    assert time.perf_counter() - t0 < 2.0


def test_modest_nesting_still_reads() -> None:
    data = fc.m_nested(_FixedRandom(depth=10, undefined=False), _dcm())[0]
    assert read(data).pixels.shape == PIXELS.shape


def test_float_tiff_with_nan() -> None:
    from PIL import Image

    arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    arr[3, 3] = np.nan
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF")
    _raises(buf.getvalue(), InvalidRadiographError, "NaN or infinite")


class _FixedRandom:
    """Stands in for ``random.Random`` in ``m_nested``: picks the given depth and encoding."""

    def __init__(self, depth: int, undefined: bool) -> None:
        self.depth, self.undefined = depth, undefined

    def choice(self, seq):
        return self.depth

    def random(self) -> float:
        return 0.0 if self.undefined else 1.0


@pytest.mark.parametrize(("seed", "width", "height"), [
    ("syn_jpeg_baseline.dcm", 65535, 65535),
    ("syn_jpeg_baseline.dcm", 64, 0),  # height "given later by a DNL marker": libjpeg grew without bound
    ("syn_jls_u8.dcm", 65535, 65535),
    ("syn_j2k_u16.dcm", 65535, 65535),
])
def test_codestream_declaring_another_size_is_refused_before_decoding(seed: str, width: int, height: int) -> None:
    """The DICOM says 60x72, the JPEG SOF (or J2K SIZ) inside says 65535x65535: the decoder would
    allocate 4 GB and spin for half a minute (with a height of 0 it ate 24 GB and was killed).
    Refused before decoding, in milliseconds."""
    data = bytearray(fc.small_seeds()[seed])
    siz = bytes(data).find(b"\xff\x4f\xff\x51")
    if siz > 0:
        data[siz + 8 : siz + 16] = struct.pack(">II", width, height)
    else:
        sof = next(i for i in range(fc.pixel_data_offset(bytes(data)), len(data))
                   if data[i] == 0xFF and data[i + 1] in (0xC0, 0xF7))
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    t0 = time.perf_counter()
    _raises(bytes(data), CorruptFileError, f"declares {width}x{height} pixels, the header 60x72")
    assert time.perf_counter() - t0 < 1.0


def test_tiff_whose_second_directory_is_damaged() -> None:
    """Pillow's ``n_frames`` walks every IFD and raised ``TypeError: Missing dimensions``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(fc.chest_image(16, 12)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    ifd0 = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[ifd0 : ifd0 + 2])[0]
    next_at = ifd0 + 2 + 12 * count
    bad_ifd = len(data)
    data += struct.pack("<H", 1) + struct.pack("<HHII", 0x0103, 3, 1, 1) + struct.pack("<I", 0)  # compression only
    data[next_at : next_at + 4] = struct.pack("<I", bad_ifd)
    _raises(bytes(data), CorruptFileError, "damaged image directory (TypeError)")


def test_window_beyond_float32_is_ignored() -> None:
    """WindowCenter 1e308 overflowed the float32 windowing (a RuntimeWarning, an error under
    ``-W error``); such a window is ignored like a non-finite one."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rg = read(_dcm(WindowCenter="1e308", WindowWidth="4000"))
    assert rg.voi == "percentile" and np.isfinite(rg.pixels).all()


def test_unparseable_sop_class_uid_raises_no_warning() -> None:
    """A header without pixels whose SOP Class UID has a flipped bit: pydicom warned while the
    reader looked its name up."""
    import warnings

    from pydicom.dataset import FileMetaDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the bad UID while it is written
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.7"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.\xb1.88.33"
        ds.Modality = "SR"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        err = _raises(buf.getvalue(), NoPixelDataError, "no pixel data")
    assert "report" in err.message
