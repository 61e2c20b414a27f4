"""Helpers of the io tests: the fixture files, a DICOM builder and the pydicom reference.

Big files are decoded once per session (``functools.lru_cache``): decoding RG1 as JPEG 2000 takes
about half a second.
"""

from __future__ import annotations

import functools
import io
import warnings
from importlib.resources import files
from pathlib import Path

import numpy as np
import pydicom
import pydicom.uid
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from thoracic.io import Radiograph, ReadConfig, read

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = Path(str(files("thoracic") / "samples"))

#: Identifying values put into every built DICOM; none may reach a repr, a message or a log.
PHI = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "PID-31415926",
    "PatientBirthDate": "19421107",
    "AccessionNumber": "ACC-2718281",
    "InstitutionName": "Saint Nowhere General",
    "ReferringPhysicianName": "House^Gregory",
}

#: The PHI values and their name components of 4+ characters: none may appear in any text.
PHI_FRAGMENTS = tuple(
    dict.fromkeys(part for value in PHI.values() for part in (value, *value.split("^")) if len(part) >= 4)
)

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def fixture_path(name: str) -> str:
    """The path of a fixture file by name: tests/data, the bundled samples, or pydicom-data."""
    for folder in (DATA, SAMPLES):
        if (folder / name).is_file():
            return str(folder / name)
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name)
    if found is None:  # pragma: no cover - pydicom-data is a test dependency
        pytest.skip(f"{name} is not installed (pip install pydicom-data)")
    return str(found)


@functools.lru_cache(maxsize=None)
def read_cached(name: str, options: ReadConfig | None = None) -> Radiograph:
    """``thoracic.io.read`` of a fixture file, decoded once per session."""
    return read(fixture_path(name), options)


@functools.lru_cache(maxsize=None)
def dataset_cached(name: str) -> Dataset:
    """The fixture file as pydicom reads it (header only; see ``stored_cached`` for pixels)."""
    return pydicom.dcmread(fixture_path(name))


@functools.lru_cache(maxsize=None)
def stored_cached(name: str) -> np.ndarray:
    """pydicom's ``pixel_array`` of a fixture file, decoded once per session."""
    arr = dataset_cached(name).pixel_array
    arr.flags.writeable = False
    return arr


@functools.lru_cache(maxsize=None)
def reference_cached(name: str) -> np.ndarray:
    out = reference_pixels(dataset_cached(name), stored_cached(name))
    out.flags.writeable = False
    return out


def pydicom_window_range(ds: Dataset) -> tuple[float, float]:
    """``(y_min, y_max)``: the output range of pydicom's ``apply_windowing`` (copied from its code).

    pydicom maps a window onto the stored range of ``BitsStored`` (signed or not), passed through
    RescaleSlope/Intercept when both are present, or ``0 .. 2**depth - 1`` after a Modality LUT.
    """
    if ds.get("ModalityLUTSequence"):
        return 0.0, 2.0 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1
    bits = int(ds.BitsStored)
    if ds.PixelRepresentation == 0:
        y_min, y_max = 0.0, 2.0**bits - 1
    else:
        y_min, y_max = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        y_min, y_max = y_min * float(slope) + float(intercept), y_max * float(slope) + float(intercept)
    return y_min, y_max


def reference_pixels(
    ds: Dataset, stored: np.ndarray | None = None, percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """What ``read`` must return, computed with pydicom's own LUT functions (float64).

    VOI LUT Sequence or window: ``apply_voi_lut(apply_modality_lut(arr, ds), ds)`` rescaled from
    its output range to ``[0, 1]``. No VOI and ``BitsStored <= 8``: the full stored range. Deeper
    data without a VOI: the ``percentiles`` of the modality values. MONOCHROME1 then inverted.
    """
    arr = ds.pixel_array if stored is None else stored
    modality = apply_modality_lut(arr, ds)
    seq = ds.get("VOILUTSequence")
    has_lut = bool(seq) and "LUTData" in seq[0] and "LUTDescriptor" in seq[0]
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    if has_lut:
        # apply_voi indexes its LUT with the modality values: pydicom warns on float input, so
        # pass the (integral) values as integers, as a viewer would
        assert np.array_equal(modality, np.rint(modality))
        out = apply_voi_lut(np.rint(modality).astype(np.int64), ds).astype(np.float64)
        ref = out / (2.0 ** seq[0].LUTDescriptor[2] - 1)
    elif has_window:
        y_min, y_max = pydicom_window_range(ds)
        ref = (apply_voi_lut(modality, ds) - y_min) / (y_max - y_min)
    elif int(ds.BitsStored) <= 8:
        bits = int(ds.BitsStored)
        lo, hi = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if ds.PixelRepresentation else (0.0, 2.0**bits - 1)
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        ref = (modality - lo) / (hi - lo)
    else:
        lo, hi = np.percentile(modality, percentiles)
        ref = np.clip((modality - lo) / (hi - lo), 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        ref = 1.0 - ref
    return np.asarray(ref, dtype=np.float64)


def build_dicom(
    pixels: np.ndarray | None,
    *,
    bits_stored: int | None = None,
    signed: bool | None = None,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    bare: bool = False,
    pixel_data: bytes | None = None,
    **attrs: object,
) -> bytes:
    """A minimal CR image as DICOM Part 10 bytes, with PHI in its header.

    ``pixels`` is the array to store, rows x columns (x samples) (``None``: no Pixel Data at
    all); ``pixel_data`` replaces its bytes (e.g. an encapsulated stream for a compressed
    ``transfer_syntax``). ``attrs`` set (or, with ``None``, delete) any other attribute.
    ``bare``: no preamble and no file meta, only the data set in ``transfer_syntax``'s encoding.
    """
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = transfer_syntax
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.10101"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.20202"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.30303"
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    for key, value in PHI.items():
        setattr(ds, key, value)
    if pixels is not None:
        pixels = np.asarray(pixels)
        signed = pixels.dtype.kind == "i" if signed is None else signed
        allocated = 8 * pixels.dtype.itemsize
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 1 if pixels.ndim == 2 else pixels.shape[2]
        if pixels.ndim == 3:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = allocated
        ds.BitsStored = bits_stored or allocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = int(signed)
        ds.PixelData = pixel_data if pixel_data is not None else pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    elif pixel_data is not None:
        ds.PixelData = pixel_data
    for key, value in attrs.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    buf = io.BytesIO()
    if bare:
        uid = pydicom.uid.UID(transfer_syntax)
        ds.file_meta = FileMetaDataset()
        ds.save_as(buf, implicit_vr=uid.is_implicit_VR, little_endian=uid.is_little_endian)
    else:
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def parse(data: bytes) -> Dataset:
    """pydicom's view of built bytes (as a file reader sees them, ambiguous VRs resolved)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a built file must be clean
        return pydicom.dcmread(io.BytesIO(data))


def voi_lut_sequence(first_mapped: int, data: np.ndarray, bits: int) -> Sequence:
    """A VOI LUT Sequence of one LUT: ``data[i]`` is the output for the input ``first_mapped + i``.

    The VRs are set explicitly (LUT Descriptor is US or SS, LUT Data US or OW in the dictionary).
    """
    item = Dataset()
    descriptor_vr = "SS" if first_mapped < 0 else "US"
    item.add_new(0x00283002, descriptor_vr, [len(data) % 65536, int(first_mapped), int(bits)])
    item.add_new(0x00283006, "US", [int(v) for v in data])
    return Sequence([item])
