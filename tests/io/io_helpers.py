"""Helpers of the io tests: the fixture files and the pydicom reference (the DICOM builder is in ``helpers``).

Big files are decoded once per session (``functools.lru_cache``): decoding RG1 as JPEG 2000 takes
about half a second.
"""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import pydicom
import pytest
from helpers import FIXTURES, SAMPLES
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence

from thoracic.io import Radiograph, ReadConfig, read


def fixture_path(name: str) -> str:
    """The path of a fixture file by name: tests/fixtures, the bundled samples, or pydicom-data."""
    for folder in (FIXTURES, SAMPLES):
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
