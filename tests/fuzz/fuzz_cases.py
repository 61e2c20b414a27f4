"""Seeded, deterministic malformed inputs for the reader and the predict path.

Shared by the short fuzz tests (``tests/fuzz``) and the long run (``scripts/fuzz.py``, which puts
this folder and ``tests/``, for ``helpers``, on ``sys.path``). Nothing here touches the network or needs ``/work/shared``.

A case is fully determined by ``(master_seed, index)``: :func:`make_case` draws a seed file and a
mutation family from ``random.Random(f"{master_seed}:{index}")``, and the case's ``recipe`` says in
words and numbers what was done (it is saved next to the bytes of every failing case).

Families
--------
``truncate``      cut at a random point (inside the header, the pixel data or the codestream end)
``bitflip``       1-32 bit flips in the header, the pixel data or anywhere
``byteset``       bytes set to 00/FF/7F/80, or a chunk deleted/duplicated
``tag``           one or two DICOM attributes set to odd values through pydicom (Rows, Bits*,
                  Photometric, frames, modality, view, rescale, window, VOI/Modality/Palette LUTs,
                  SOP class, transfer syntax, a required attribute deleted, ...)
``tagbytes``      the value bytes of a header element overwritten in place (negative-as-unsigned)
``pixeldata``     Pixel Data missing, empty, short, long or odd-length; frames duplicated
``syntax``        the Transfer Syntax UID swapped without re-encoding; deflate junk
``nested``        sequences nested 10..3000 deep inserted into the data set
``raster``        PNG IHDR / JPEG SOF edits (huge/zero sizes, odd depths; CRC fixed), chunk damage
``codestream``    a JPEG SOF / JPEG-LS SOF55 / JPEG 2000 SIZ inside a DICOM edited: huge or zero
                  sizes (decompression bombs), odd precision and component counts
``junk``          empty, random bytes, text, a DICOM preamble or image signature followed by junk
``combo``         a ``tag`` mutation followed by a ``bitflip``
``shape``         well-formed images of extreme shapes (1x1, 3x2000, ...) and value ranges (NaN in a
                  float TIFF, two values, one bright pixel, ...)
"""

from __future__ import annotations

import functools
import io
import math
import random
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from helpers import FIXTURES, SAMPLES, dicom_dataset, dicom_file_bytes

#: Identifying values in the header of every synthetic DICOM seed; never in a message or log.
PHI = {
    "PatientName": "Fuzzmann^Petra^Q",
    "PatientID": "PID-77665544",
    "PatientBirthDate": "19370412",
    "AccessionNumber": "ACC-99887766",
}

FAMILIES = {  # name -> weight
    "truncate": 14,
    "bitflip": 14,
    "byteset": 6,
    "tag": 26,
    "tagbytes": 6,
    "pixeldata": 7,
    "syntax": 6,
    "nested": 2,
    "raster": 10,
    "junk": 4,
    "combo": 5,
    "shape": 6,
    "codestream": 5,
}

#: SOP Instance, Study and Series Instance UID of the synthetic seeds.
UIDS = ("1.2.826.0.1.3680043.8.498.4242", "1.2.826.0.1.3680043.8.498.4243", "1.2.826.0.1.3680043.8.498.4244")


@dataclass(frozen=True)
class Case:
    """One fuzz input: its bytes, the read options to use, and how it was made."""

    case_id: str
    family: str
    seed_name: str
    data: bytes = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (everything but the bytes)."""
        return {
            "case_id": self.case_id,
            "family": self.family,
            "seed": self.seed_name,
            "size": len(self.data),
            "options": self.options,
            "recipe": self.recipe,
        }


# --- seeds -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def chest_image(rows: int, cols: int) -> np.ndarray:
    """A small 8-bit chest image: the bundled NIH sample resized to ``rows`` x ``cols``."""
    from PIL import Image

    with Image.open(SAMPLES / "00000377_004.jpg") as im:
        small = im.convert("L").resize((cols, rows), Image.Resampling.BILINEAR)
        return np.asarray(small)


def dicom_bytes(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                syntax: str = "1.2.840.10008.1.2.1", compress: str | None = None, pixel_data: bytes | None = None,
                phi: dict[str, str] | None = None, **attrs: Any) -> bytes:
    """A CR image as DICOM Part 10 bytes with ``phi`` (default :data:`PHI`) in its header.

    ``attrs`` set any other attribute; ``compress`` encodes with pydicom (an encoder must be
    installed); ``pixel_data`` replaces the Pixel Data bytes (e.g. an encapsulated stream).
    Values that break their VR's rules are written as given. The tests' one DICOM builder
    (``helpers.dicom_dataset``) makes it, with the seeds' own PHI and UIDs.
    """
    compressing = bool(compress) and pixel_data is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dicom_dataset(pixels, photometric=photometric, bits_stored=bits_stored,
                           transfer_syntax="1.2.840.10008.1.2.1" if compressing else syntax, pixel_data=pixel_data,
                           phi=PHI if phi is None else phi, uids=UIDS, **attrs)
        if compressing:
            ds.compress(compress, pixels)
        return dicom_file_bytes(ds)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray, progressive: bool = False) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=85, progressive=progressive)
    return buf.getvalue()


def _tiff(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF")
    return buf.getvalue()


def _try(fn, *args, **kwargs) -> bytes | None:
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - an encoder that is not installed: that seed is left out
        return None


@functools.lru_cache(maxsize=None)
def small_seeds() -> dict[str, bytes]:
    """Small valid inputs (each reads in milliseconds): synthetic DICOMs in many encodings and
    rasters of a downsampled chest film, plus pydicom's own small test files."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    g8 = chest_image(72, 60)
    g16 = (g8.astype(np.uint16) * 16 + 7).astype(np.uint16)  # 12 bits used
    s16 = (g16.astype(np.int16) - 2048).astype(np.int16)
    rgb = np.stack([g8, g8[::-1], np.roll(g8, 5, axis=1)], axis=-1).astype(np.uint8)
    seeds: dict[str, bytes | None] = {
        "syn_explicit_u16.dcm": dicom_bytes(g16, bits_stored=12, WindowCenter=2048, WindowWidth=4000),
        "syn_explicit_s16_rescale.dcm": dicom_bytes(s16, bits_stored=12, RescaleSlope=0.5, RescaleIntercept=100),
        "syn_implicit_u8_mono1.dcm": dicom_bytes(g8, photometric="MONOCHROME1", syntax="1.2.840.10008.1.2"),
        "syn_bigendian_u16.dcm": _try(dicom_bytes, g16, bits_stored=12, syntax="1.2.840.10008.1.2.2"),
        "syn_rgb.dcm": dicom_bytes(rgb, photometric="RGB"),
        "syn_rle_u16.dcm": _try(dicom_bytes, g16, bits_stored=12, compress="1.2.840.10008.1.2.5"),
        "syn_j2k_u16.dcm": _try(dicom_bytes, g16, bits_stored=12, compress="1.2.840.10008.1.2.4.90"),
        "syn_jls_u8.dcm": _try(dicom_bytes, g8, compress="1.2.840.10008.1.2.4.80"),
        "syn_jpeg_baseline.dcm": _jpeg_dicom(g8),
        "chest.png": _png(g8),
        "chest16.png": _png(g16),
        "chest.jpg": _jpeg(g8),
        "chest_progressive.jpg": _jpeg(g8, progressive=True),
        "chest_rgb.jpg": _jpeg(rgb),
        "chest16.tif": _tiff(g16),
    }
    # VOI LUT and Modality LUT sequences (valid, to be damaged by the tag family)
    voi = Dataset()
    voi.LUTDescriptor = [4096, 0, 12]
    voi.LUTData = [min(4095, i) for i in range(4096)]
    seeds["syn_voi_lut.dcm"] = _try(dicom_bytes, g16, bits_stored=12, VOILUTSequence=Sequence([voi]))
    mod = Dataset()
    mod.LUTDescriptor = [4096, 0, 16]
    mod.ModalityLUTType = "US"
    mod.LUTData = [i * 4 for i in range(4096)]
    seeds["syn_modality_lut.dcm"] = _try(dicom_bytes, g16, bits_stored=12, ModalityLUTSequence=Sequence([mod]))
    pal = _try(_palette_dicom, g8)
    seeds["syn_palette.dcm"] = pal
    out = {k: v for k, v in seeds.items() if v}
    out.update(pydicom_seeds())
    return out


def _jpeg_dicom(g8: np.ndarray) -> bytes:
    from pydicom.encaps import encapsulate

    return dicom_bytes(g8, syntax="1.2.840.10008.1.2.4.50", pixel_data=encapsulate([_jpeg(g8)]))


def _palette_dicom(g8: np.ndarray) -> bytes:
    lut = list(range(0, 65536, 256))
    return dicom_bytes(
        g8,
        photometric="PALETTE COLOR",
        RedPaletteColorLookupTableDescriptor=[256, 0, 16],
        GreenPaletteColorLookupTableDescriptor=[256, 0, 16],
        BluePaletteColorLookupTableDescriptor=[256, 0, 16],
        RedPaletteColorLookupTableData=struct.pack("<256H", *lut),
        GreenPaletteColorLookupTableData=struct.pack("<256H", *lut[::-1]),
        BluePaletteColorLookupTableData=struct.pack("<256H", *lut),
    )


#: pydicom's bundled test files worth fuzzing (small; other modalities, odd encodings, multi-frame)
PYDICOM_FILES = (
    "CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm", "JPGExtended.dcm", "SC_rgb_rle_2frame.dcm",
    "SC_rgb_small_odd.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_422_uncompressed.dcm", "image_dfl.dcm",
    "ExplVR_BigEndNoMeta.dcm", "no_meta.dcm", "rtdose_1frame.dcm", "JPEGLSNearLossless_16.dcm", "test-SR.dcm",
    "MR_truncated.dcm", "badVR.dcm", "nested_priv_SQ.dcm", "SC_rgb_rle_16bit.dcm", "GDCMJ2K_TextGBR.dcm",
)


@functools.lru_cache(maxsize=None)
def pydicom_seeds() -> dict[str, bytes]:
    """pydicom's bundled test files (shipped inside the pydicom wheel: no download)."""
    import pydicom.data

    folder = Path(pydicom.data.__file__).parent / "test_files"
    return {f"pydicom_{n}": (folder / n).read_bytes() for n in PYDICOM_FILES if (folder / n).is_file()}


@functools.lru_cache(maxsize=None)
def large_seeds() -> dict[str, bytes]:
    """The repository's real fixtures (full-size films: 0.05-0.5 s each to read)."""
    files = sorted(SAMPLES.glob("*.dcm")) + sorted(SAMPLES.glob("*.jpg")) + sorted(FIXTURES.glob("*.dcm"))
    return {f.name: f.read_bytes() for f in files}


def corpus(large: bool = True) -> dict[str, bytes]:
    """All seeds by name, sorted (``large=False``: the small ones only)."""
    seeds = dict(small_seeds())
    if large:
        seeds.update(large_seeds())
    return dict(sorted(seeds.items()))


# --- structure helpers -------------------------------------------------------------------------
def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def pixel_data_offset(data: bytes) -> int | None:
    """Offset of the (7FE0,0010) Pixel Data element's tag, if it can be found."""
    for tag in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"):
        pos = data.rfind(tag)
        if pos > 0:
            return pos
    return None


def _codestream_range(data: bytes) -> tuple[int, int]:
    """Where the interesting bytes are: the header region and the pixel region."""
    pos = pixel_data_offset(data) if is_dicom(data) or data[:4] != b"\x89PNG" else None
    if pos is None:
        return min(len(data), 1024), len(data)
    return pos, len(data)


def _parse(data: bytes):
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), force=True)


def _save(ds) -> bytes:
    """The data set as Part 10 bytes, odd values written as they are (validation off meanwhile)."""
    from pydicom.config import IGNORE, settings

    old = settings.writing_validation_mode
    settings.writing_validation_mode = IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            buf = io.BytesIO()
            meta = getattr(ds, "file_meta", None)
            if meta is not None and "TransferSyntaxUID" in meta:
                try:
                    ds.save_as(buf, enforce_file_format=False)
                    return buf.getvalue()
                except Exception:  # noqa: BLE001 - e.g. a swapped syntax pydicom refuses to encode with
                    buf = io.BytesIO()
            ds.save_as(buf, implicit_vr=False, little_endian=True)
            return buf.getvalue()
    finally:
        settings.writing_validation_mode = old


class Skip(Exception):
    """This mutation does not apply to this seed: the generator draws another one."""


# --- families ----------------------------------------------------------------------------------
def m_truncate(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    head, _ = _codestream_range(data)
    where = rng.choice(["header", "pixels", "tail", "anywhere"])
    if where == "header":
        cut = rng.randrange(0, max(1, head))
    elif where == "pixels":
        cut = rng.randrange(min(head, len(data) - 1), len(data))
    elif where == "tail":
        cut = max(0, len(data) - rng.randint(1, 64))
    else:
        cut = rng.randrange(0, len(data))
    return data[:cut], {"where": where, "cut": cut}


def m_bitflip(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    if not data:
        raise Skip
    head, _ = _codestream_range(data)
    where = rng.choice(["header", "header", "pixels", "anywhere"])
    lo, hi = {"header": (0, max(1, head)), "pixels": (min(head, len(data) - 1), len(data))}.get(where, (0, len(data)))
    buf = bytearray(data)
    flips = []
    for _ in range(rng.choice([1, 1, 2, 4, 8, 32])):
        pos = rng.randrange(lo, hi)
        bit = rng.randrange(8)
        buf[pos] ^= 1 << bit
        flips.append([pos, bit])
    return bytes(buf), {"where": where, "flips": flips}


def m_byteset(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    if len(data) < 4:
        raise Skip
    head, _ = _codestream_range(data)
    op = rng.choice(["set", "set", "delete", "duplicate", "insert"])
    buf = bytearray(data)
    pos = rng.randrange(0, max(1, head) if rng.random() < 0.7 else len(data))
    n = rng.choice([1, 2, 4, 16, 256])
    if op == "set":
        value = rng.choice([0x00, 0xFF, 0x7F, 0x80])
        buf[pos : pos + n] = bytes([value]) * len(buf[pos : pos + n])
        return bytes(buf), {"op": op, "pos": pos, "n": n, "value": value}
    if op == "delete":
        del buf[pos : pos + n]
    elif op == "duplicate":
        buf[pos:pos] = buf[pos : pos + n]
    else:
        buf[pos:pos] = bytes(rng.randrange(256) for _ in range(n))
    return bytes(buf), {"op": op, "pos": pos, "n": n}


_NAN = float("nan")
_TAG_VALUES: dict[str, list[Any]] = {
    "Rows": [0, 1, 2, 65535, 32768, "x2", "+1", "-1"],
    "Columns": [0, 1, 2, 65535, 32768, "x2", "+1", "-1"],
    "BitsAllocated": [0, 1, 7, 8, 12, 16, 32, 64, 255, 65535],
    "BitsStored": [0, 1, 7, 8, 12, 16, 17, 32, 40, 65535],
    "HighBit": [0, 7, 15, 31, 63, 200, 65535],
    "PixelRepresentation": [0, 1, 2, 65535],
    "SamplesPerPixel": [0, 1, 2, 3, 4, 65535],
    "PlanarConfiguration": [0, 1, 2],
    "PhotometricInterpretation": ["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT",
                                  "PALETTE COLOR", "ARGB", "", "GARBAGE", "monochrome2", "MONOCHROME2\\RGB"],
    "NumberOfFrames": ["2", "0", "-1", "1.5", "abc", "99999999", "3"],
    "Modality": ["CT", "MR", "US", "", "GARBAGE", "DX", "cr", "CR\\CT"],
    "BodyPartExamined": ["HAND", "SKULL", "", "CHEST", "LUNG", "\x00\x01junk"],
    "ViewPosition": ["LL", "RL", "LATERAL", "AP", "PA", "", "LL\\PA"],
    "RescaleSlope": ["0", "NaN", "inf", "-1", "1e308", "1e-308", "abc", "-0"],
    "RescaleIntercept": ["NaN", "-1e308", "1e308", "inf", "abc"],
    "WindowCenter": ["0", "-1", "NaN", "inf", "1e308", "-1e308", "abc", "1\\2\\3"],
    "WindowWidth": ["0", "-1", "NaN", "inf", "1e308", "1e-300", "0.5", "abc", "1\\2"],
    "VOILUTFunction": ["SIGMOID", "LINEAR_EXACT", "GARBAGE", ""],
    "PixelSpacing": ["0\\0", "NaN\\1", "-1\\-1", "abc", "1", "1e308\\1e308"],
    "SOPClassUID": ["1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.2", "", "1.2.3"],
    "LargestImagePixelValue": [0, 65535],
}
_LUT_KINDS = ["voi", "modality", "palette"]
_SYNTAXES = [
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.5", "1.2.3.4.5", "", "garbage",
]
_REQUIRED = ["Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
             "SamplesPerPixel", "PhotometricInterpretation", "Modality", "SOPClassUID"]


def _lut_item(rng: random.Random, kind: str) -> dict:
    entries = rng.choice([0, 1, 2, 256, 4096, 65535, 65536 % 65536])
    first = rng.choice([0, -1, 100, 65535, -32768])
    bits = rng.choice([0, 1, 8, 12, 16, 17, 64])
    n_data = rng.choice([0, 1, entries, max(0, entries - 1), entries + 7, 3])
    return {"kind": kind, "descriptor": [entries, first, bits], "n_data": n_data,
            "vr": rng.choice(["US", "OW", "SS"])}


def _apply_lut(ds, spec: dict) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    desc = spec["descriptor"]
    vr_desc = "SS" if desc[1] < 0 else "US"
    data = [i % 65536 for i in range(spec["n_data"])]
    if spec["kind"] == "palette":
        for color in ("Red", "Green", "Blue"):
            values = [d % 65536 if vr_desc == "US" else d for d in desc]
            ds.add_new(ds_tag(f"{color}PaletteColorLookupTableDescriptor"), vr_desc, values)
            ds.add_new(ds_tag(f"{color}PaletteColorLookupTableData"), "OW", struct.pack(f"<{len(data)}H", *data))
        ds.PhotometricInterpretation = "PALETTE COLOR"
        return
    item = Dataset()
    item.add_new(0x00283002, vr_desc, [d % 65536 if vr_desc == "US" else d for d in desc])
    if spec["vr"] == "OW":
        item.add_new(0x00283006, "OW", struct.pack(f"<{len(data)}H", *data))
    else:
        item.add_new(0x00283006, "US", data)
    if spec["kind"] == "voi":
        ds.VOILUTSequence = Sequence([item])
    else:
        item.ModalityLUTType = "US"
        ds.ModalityLUTSequence = Sequence([item])


def ds_tag(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - the keywords above are all in the dictionary
        raise KeyError(keyword)
    return tag


def _set_attr(ds, keyword: str, value: Any) -> Any:
    from pydicom.datadict import dictionary_VR

    if isinstance(value, str) and value[:1] in "x+-" and keyword in ("Rows", "Columns") and value != "":
        current = int(ds.get(keyword, 64))
        value = {"x2": current * 2, "+1": current + 1, "-1": max(0, current - 1)}[value]
    vr = dictionary_VR(ds_tag(keyword))
    if vr in ("US", "SS", "UL", "US or SS"):
        vr = "US" if vr == "US or SS" else vr
        ds.add_new(ds_tag(keyword), vr, int(value))
    elif vr in ("DS", "IS") and isinstance(value, str):
        ds.add_new(ds_tag(keyword), vr, value)  # stored as given, validation off while saving
    else:
        ds.add_new(ds_tag(keyword), vr, value)
    return value


def _tag_ops(rng: random.Random, ds) -> list[dict]:
    ops = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind = rng.random()
        if kind < 0.70:
            keyword = rng.choice(sorted(_TAG_VALUES))
            ops.append({"op": "set", "keyword": keyword, "value": rng.choice(_TAG_VALUES[keyword])})
        elif kind < 0.82:
            ops.append({"op": "lut", **_lut_item(rng, rng.choice(_LUT_KINDS))})
        elif kind < 0.92:
            ops.append({"op": "delete", "keyword": rng.choice(_REQUIRED)})
        else:
            ops.append({"op": "frames", "n": rng.choice([2, 3, 7])})
    return ops


def _apply_tag_ops(ds, ops: list[dict]) -> None:
    for op in ops:
        if op["op"] == "set":
            op["value"] = _set_attr(ds, op["keyword"], op["value"])
        elif op["op"] == "lut":
            _apply_lut(ds, op)
        elif op["op"] == "delete":
            if op["keyword"] in ds:
                delattr(ds, op["keyword"])
        elif op["op"] == "frames":
            ds.NumberOfFrames = str(op["n"])
            if "PixelData" in ds and not ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2").is_compressed:
                ds.PixelData = bytes(ds.PixelData) * op["n"]


def m_tag(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    if not is_dicom(data) and b"DICM" not in data[:200]:
        raise Skip
    ds = _parse(data)
    if "PixelData" not in ds:
        raise Skip
    ops = _tag_ops(rng, ds)
    _apply_tag_ops(ds, ops)
    return _save(ds), {"ops": ops}


_HEADER_TAGS = {  # explicit VR LE encodings: tag bytes + VR
    "Rows": b"\x28\x00\x10\x00US", "Columns": b"\x28\x00\x11\x00US",
    "BitsAllocated": b"\x28\x00\x00\x01US", "BitsStored": b"\x28\x00\x01\x01US",
    "HighBit": b"\x28\x00\x02\x01US", "PixelRepresentation": b"\x28\x00\x03\x01US",
    "SamplesPerPixel": b"\x28\x00\x02\x00US", "PixelData(length)": b"\xe0\x7f\x10\x00OB",
    "PixelData(OW length)": b"\xe0\x7f\x10\x00OW", "TransferSyntaxUID(length)": b"\x02\x00\x10\x00UI",
}


def m_tagbytes(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    found = [(k, data.find(v)) for k, v in _HEADER_TAGS.items() if data.find(v) >= 0]
    if not found:
        raise Skip
    keyword, pos = rng.choice(found)
    buf = bytearray(data)
    if "length" in keyword:
        # OB/OW: 2 reserved bytes then a 4-byte length; UI: a 2-byte length
        if keyword.startswith("PixelData"):
            value = rng.choice([0, 1, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, len(data), 3])
            buf[pos + 8 : pos + 12] = struct.pack("<I", value)
        else:
            value = rng.choice([0, 1, 0xFFFF, 200])
            buf[pos + 6 : pos + 8] = struct.pack("<H", value)
    else:
        value = rng.choice([0, 1, 0xFFFF, 0x8000, 0x7FFF, rng.randrange(65536)])
        buf[pos + 8 : pos + 10] = struct.pack("<H", value)
    return bytes(buf), {"keyword": keyword, "offset": pos, "value": value}


def m_pixeldata(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    if not is_dicom(data):
        raise Skip
    ds = _parse(data)
    if "PixelData" not in ds:
        raise Skip
    op = rng.choice(["missing", "empty", "short", "long", "odd", "frames", "zeros"])
    pd = bytes(ds.PixelData)
    if op == "missing":
        del ds.PixelData
    elif op == "empty":
        ds.PixelData = b""
    elif op == "short":
        ds.PixelData = pd[: rng.randrange(0, max(1, len(pd)))]
    elif op == "long":
        ds.PixelData = pd + bytes(rng.choice([2, 64, len(pd)]))
    elif op == "odd":
        ds.PixelData = pd[:-1] if len(pd) % 2 == 0 else pd + b"\x00"
    elif op == "zeros":
        ds.PixelData = bytes(len(pd))
    else:
        n = rng.choice([2, 3])
        ds.NumberOfFrames = n
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.PixelData = pd * n
    return _save(ds), {"op": op}


def m_syntax(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    if not is_dicom(data):
        raise Skip
    op = rng.choice(["swap", "swap", "swap", "deflate_junk", "deflate_truncated"])
    ds = _parse(data)
    if op == "swap":
        uid = rng.choice(_SYNTAXES)
        ds.file_meta.TransferSyntaxUID = uid
        # keep the data set's own encoding: only the meta's claim changes
        out = _save_meta_only(data, ds.file_meta)
        return out, {"op": op, "uid": uid}
    meta = ds.file_meta
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    body = data[_meta_end(data):]
    if op == "deflate_junk":
        junk = bytes(rng.randrange(256) for _ in range(rng.choice([0, 16, 512])))
        payload = junk if rng.random() < 0.5 else zlib.compress(junk)
    else:
        comp = zlib.compressobj(wbits=-15)
        full = comp.compress(body) + comp.flush()
        payload = full[: rng.randrange(0, max(1, len(full)))]
    return _save_meta_only(data, meta, payload), {"op": op, "payload": len(payload)}


def _meta_end(data: bytes) -> int:
    """Offset after the file meta group (group 0002), explicit VR LE by the standard."""
    pos = 132
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR", b"OF", b"OD", b"OL", b"OV"):
            length = struct.unpack("<I", data[pos + 8 : pos + 12])[0]
            pos += 12 + length
        else:
            length = struct.unpack("<H", data[pos + 6 : pos + 8])[0]
            pos += 8 + length
    return pos


def _save_meta_only(data: bytes, meta, body: bytes | None = None) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    buf = DicomBytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_file_meta_info(buf, meta, enforce_standard=False)
    rest = data[_meta_end(data):] if body is None else body
    return data[:128] + b"DICM" + buf.getvalue() + rest


def m_nested(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    if not is_dicom(data):
        raise Skip
    pos = pixel_data_offset(data)
    if pos is None or data[pos : pos + 2] != b"\xe0\x7f":
        raise Skip
    depth = rng.choice([10, 100, 500, 1000, 3000])
    undefined = rng.random() < 0.5
    if undefined:
        seq_open = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        seq_close = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        blob = seq_open * depth + seq_close * depth
    else:
        inner = b""
        for _ in range(depth):
            item = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(inner)) + inner
            inner = b"\x08\x00\x15\x11SQ\x00\x00" + struct.pack("<I", len(item)) + item
        blob = inner
    # the sequence sorts before (0028,xxxx) elements but pydicom does not mind the order
    return data[:pos] + blob + data[pos:], {"depth": depth, "undefined_length": undefined}


def _png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        ctype = data[pos + 4 : pos + 8]
        out.append((pos, ctype, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def m_raster(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        chunks = _png_chunks(data)
        pos, ctype, body = chunks[0]
        if ctype != b"IHDR" or len(body) != 13:
            raise Skip
        w, h, depth, color, comp, filt, inter = struct.unpack(">IIBBBBB", body)
        op = rng.choice(["dims", "dims", "depth", "color", "flags", "idat"])
        if op == "dims":
            w, h = rng.choice([(0x7FFFFFFF, 0x7FFFFFFF), (100000, 100000), (0, h), (w, 0), (1, 1), (w * 2, h),
                               (9000, 8000), (65536, 1), (0xFFFFFFFF, 1)])
        elif op == "depth":
            depth = rng.choice([0, 1, 2, 3, 4, 8, 16, 32, 255])
        elif op == "color":
            color = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 255])
        elif op == "flags":
            comp, filt, inter = rng.choice([(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 2)])
        if op == "idat":
            idats = [c for c in chunks if c[1] == b"IDAT"]
            ipos, _, ibody = idats[0]
            raw = zlib.decompress(ibody)
            how = rng.choice(["short", "junk", "bomb"])
            new = {"short": raw[: len(raw) // 2], "junk": bytes(rng.randrange(256) for _ in range(len(raw))),
                   "bomb": bytes(len(raw) * 50)}[how]
            newchunk = _png_chunk(b"IDAT", zlib.compress(new))
            out = data[:ipos] + newchunk + data[ipos + 12 + len(ibody):]
            return out, {"format": "png", "op": op, "how": how}
        fields = [w & 0xFFFFFFFF, h & 0xFFFFFFFF, depth, color, comp, filt, inter]
        ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", *fields))  # CRC fixed: the decoder reads on
        return data[:8] + ihdr + data[8 + 25:], {"format": "png", "op": op, "ihdr": fields}
    if data.startswith(b"\xff\xd8"):
        sof = next((i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2)), None)
        if sof is None:
            raise Skip
        buf = bytearray(data)
        op = rng.choice(["dims", "dims", "precision", "components", "marker"])
        if op == "dims":
            h, w = rng.choice([(65535, 65535), (0, 100), (100, 0), (1, 1), (65535, 1), (30000, 30000)])
            buf[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
            return bytes(buf), {"format": "jpeg", "op": op, "sof": sof, "hw": [h, w]}
        if op == "precision":
            value = rng.choice([0, 1, 12, 16, 255])
            buf[sof + 4] = value
        elif op == "components":
            value = rng.choice([0, 2, 4, 255])
            buf[sof + 9] = value
        else:
            value = rng.choice([0xC3, 0xC9, 0xCF, 0xD9, 0xDA, 0x01])
            buf[sof + 1] = value
        return bytes(buf), {"format": "jpeg", "op": op, "sof": sof, "value": value}
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return m_bitflip(rng, data)[0], {"format": "tiff", "op": "bitflip-header"}
    if is_dicom(data):
        # a DICOM whose pixel data is a raster file (secondary capture gone wrong)
        ds = _parse(data)
        if "PixelData" not in ds:
            raise Skip
        src = _png(chest_image(40, 40)) if rng.random() < 0.5 else _jpeg(chest_image(40, 40))
        ds.PixelData = src
        ds.file_meta.TransferSyntaxUID = rng.choice(["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"])
        return _save(ds), {"format": "dicom", "op": "raster-as-pixeldata"}
    raise Skip


def m_codestream(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    """Edit the frame header inside a DICOM's compressed pixel data (JPEG SOF, JPEG-LS SOF55,
    JPEG 2000 SIZ): huge, zero or off-by-one sizes, odd precision and component counts."""
    if not is_dicom(data):
        raise Skip
    pd = pixel_data_offset(data)
    if pd is None:
        raise Skip
    buf = bytearray(data)
    siz = data.find(b"\xff\x4f\xff\x51", pd)
    if siz > 0:
        op = rng.choice(["dims", "dims", "offset", "precision", "components"])
        if op == "dims":
            w, h = rng.choice([(60000, 60000), (0xFFFFFFFF, 0xFFFFFFFF), (0, 0), (1, 1), (65536, 65536)])
            buf[siz + 8 : siz + 16] = struct.pack(">II", w, h)
            return bytes(buf), {"marker": "SIZ", "op": op, "wh": [w, h]}
        if op == "offset":
            value = rng.choice([1, 0x7FFFFFFF, 0xFFFFFFFF])
            buf[siz + 16 : siz + 20] = struct.pack(">I", value)
            return bytes(buf), {"marker": "SIZ", "op": op, "x0": value}
        if op == "precision":
            value = rng.choice([0, 7, 15, 37, 0x80 | 15, 0xFF])
            buf[siz + 42] = value  # first component's Ssiz
            return bytes(buf), {"marker": "SIZ", "op": op, "ssiz": value}
        value = rng.choice([0, 3, 0xFFFF])
        buf[siz + 40 : siz + 42] = struct.pack(">H", value)  # Csiz
        return bytes(buf), {"marker": "SIZ", "op": op, "csiz": value}
    sof = next((i for i in range(pd, min(len(data) - 9, pd + 4096))
                if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2, 0xC3, 0xF7)), None)
    if sof is None:
        raise Skip
    op = rng.choice(["dims", "dims", "dims", "precision", "components"])
    if op == "dims":
        h, w = rng.choice([(65535, 65535), (0, 64), (64, 0), (1, 1), (65535, 1), (1, 65535), (30000, 30000)])
        buf[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
        return bytes(buf), {"marker": f"{data[sof + 1]:02X}", "op": op, "hw": [h, w]}
    if op == "precision":
        value = rng.choice([0, 1, 2, 12, 16, 255])
        buf[sof + 4] = value
    else:
        value = rng.choice([0, 2, 3, 4, 255])
        buf[sof + 9] = value
    return bytes(buf), {"marker": f"{data[sof + 1]:02X}", "op": op, "value": value}


def m_junk(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    op = rng.choice(["empty", "random", "text", "preamble", "preamble_junk_tags", "png_sig", "jpeg_sig",
                     "tiff_sig", "dicm_only", "nul"])
    n = rng.choice([1, 16, 131, 132, 133, 1000, 20000])
    rnd = bytes(rng.randrange(256) for _ in range(n))
    out = {
        "empty": b"",
        "random": rnd,
        "text": ("Patient report\n" * (n // 15 + 1)).encode()[:n],
        "preamble": bytes(128) + b"DICM" + rnd,
        "preamble_junk_tags": bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI" + struct.pack("<H", n % 64) + rnd,
        "png_sig": b"\x89PNG\r\n\x1a\n" + rnd,
        "jpeg_sig": b"\xff\xd8\xff" + rnd,
        "tiff_sig": b"II*\x00" + rnd,
        "dicm_only": bytes(128) + b"DICM",
        "nul": bytes(n),
    }[op]
    return out, {"op": op, "n": n}


def _random_image(rng: random.Random, rows: int, cols: int, dtype: str) -> np.ndarray:
    gen = np.random.default_rng(rng.randrange(2**32))
    kind = rng.choice(["noise", "gradient", "one_pixel", "two_values", "extremes"])
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (info.min, info.max) if info else (-1e30, 1e30)
    if kind == "noise":
        arr = gen.integers(lo, hi, size=(rows, cols), endpoint=True) if info else gen.normal(0, 1e3, (rows, cols))
    elif kind == "gradient":
        arr = np.linspace(lo, hi, rows * cols).reshape(rows, cols)
    elif kind == "one_pixel":
        arr = np.zeros((rows, cols))
        arr[gen.integers(rows), gen.integers(cols)] = hi
    elif kind == "two_values":
        arr = np.where(gen.random((rows, cols)) < 0.5, lo, hi)
    else:
        arr = np.full((rows, cols), lo, dtype=np.float64)
        arr.flat[:: max(1, arr.size // 3)] = hi
    return np.asarray(arr).astype(dtype)


_SHAPES = [(1, 1), (1, 2), (2, 1), (1, 300), (300, 1), (2, 2), (3, 2000), (2000, 3), (7, 5), (16, 16), (17, 4096),
           (4096, 9), (64, 48)]


def m_shape(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    """A well-formed image of an extreme shape or value range (reads, and must predict)."""
    rows, cols = rng.choice(_SHAPES)
    fmt = rng.choice(["dicom_u16", "dicom_s16", "dicom_u8", "png8", "png16", "jpeg", "tiff_f32", "tiff_i32"])
    dtype = {"dicom_u16": "uint16", "dicom_s16": "int16", "dicom_u8": "uint8", "png8": "uint8", "png16": "uint16",
             "jpeg": "uint8", "tiff_f32": "float32", "tiff_i32": "int32"}[fmt]
    arr = _random_image(rng, rows, cols, dtype)
    specials = None
    if fmt == "tiff_f32" and rng.random() < 0.5:
        specials = rng.choice(["nan", "inf", "-inf"])
        arr.flat[rng.randrange(arr.size)] = float(specials)
    if fmt.startswith("dicom"):
        attrs: dict[str, Any] = {}
        if rng.random() < 0.5:
            attrs.update(WindowCenter=str(rng.choice([0, 1, 100, -32768, 40000])),
                         WindowWidth=str(rng.choice([1, 2, 100, 65536, 1e9])))
        if rng.random() < 0.3:
            attrs.update(RescaleSlope=str(rng.choice([1e-6, 0.5, 2, 1000])),
                         RescaleIntercept=str(rng.choice([-1024, 0, 1e6])))
        photometric = rng.choice(["MONOCHROME1", "MONOCHROME2"])
        out = dicom_bytes(arr, photometric=photometric, **attrs)
        return out, {"format": fmt, "shape": [rows, cols], "photometric": photometric, **attrs}
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "jpeg":
        if min(rows, cols) < 1:
            raise Skip
        Image.fromarray(arr).save(buf, format="JPEG")
    elif fmt.startswith("png"):
        Image.fromarray(arr).save(buf, format="PNG")
    else:
        Image.fromarray(arr).save(buf, format="TIFF")
    return buf.getvalue(), {"format": fmt, "shape": [rows, cols], "special": specials}


def m_combo(rng: random.Random, data: bytes) -> tuple[bytes, dict]:
    out, r1 = m_tag(rng, data)
    out, r2 = m_bitflip(rng, out)
    return out, {"tag": r1, "bitflip": r2}


MUTATORS = {
    "truncate": m_truncate, "bitflip": m_bitflip, "byteset": m_byteset, "tag": m_tag, "tagbytes": m_tagbytes,
    "pixeldata": m_pixeldata, "syntax": m_syntax, "nested": m_nested, "raster": m_raster, "junk": m_junk,
    "combo": m_combo, "shape": m_shape, "codestream": m_codestream,
}


def make_case(index: int, master_seed: int, seeds: dict[str, bytes], *, large_weight: float = 0.2,
              families: dict[str, int] | None = None) -> Case:
    """The ``index``-th case of the run with ``master_seed`` (deterministic)."""
    rng = random.Random(f"{master_seed}:{index}")
    families = families or FAMILIES
    names = sorted(seeds)
    large = [n for n in names if n in large_seeds()]
    small = [n for n in names if n not in large]
    fam_names = sorted(families)
    weights = [families[f] for f in fam_names]
    for _attempt in range(40):
        family = rng.choices(fam_names, weights)[0]
        pool = large if large and (rng.random() < large_weight or not small) else small
        seed_name = rng.choice(pool)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warns on the odd values set on purpose
                data, recipe = MUTATORS[family](rng, seeds[seed_name])
        except Skip:
            continue
        except Exception:  # noqa: BLE001 - the generator could not build it (pydicom refused): another
            continue
        options = {
            "allow_non_chest": rng.random() < 0.6,
            "normalize": rng.choice(["window", "window", "minmax", "percentile"]),
            "target_size": rng.choice([None, None, 512, 64]),
        }
        return Case(f"{master_seed}-{index:06d}", family, seed_name, data, options, _jsonable(recipe))
    return Case(f"{master_seed}-{index:06d}", "junk", "-", b"", {}, {"op": "empty", "note": "no mutation applied"})


def generate(count: int, master_seed: int, seeds: dict[str, bytes] | None = None, start: int = 0,
             **kwargs: Any) -> Iterator[Case]:
    """``count`` cases from ``start`` on."""
    seeds = corpus() if seeds is None else seeds
    for i in range(start, start + count):
        yield make_case(i, master_seed, seeds, **kwargs)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, bytes):
        return x.hex()
    return x


# --- outcomes ----------------------------------------------------------------------------------
def classify(err: BaseException | None) -> str:
    """``ok``, the typed error's class name, or ``untyped:<class>``."""
    from thoracic.errors import ThoracicError

    if err is None:
        return "ok"
    if isinstance(err, ThoracicError):
        return type(err).__name__
    return f"untyped:{type(err).__name__}"


def read_options(case: Case):
    from thoracic.io import ReadConfig

    return ReadConfig(**case.options)


def run_read(case: Case):
    """Read one case: ``(outcome, radiograph or None, exception or None)``."""
    from thoracic.io import read

    try:
        rg = read(case.data, read_options(case), image_id="fuzz")
    except Exception as err:  # noqa: BLE001 - classified by the caller
        return classify(err), None, err
    return "ok", rg, None


def check_radiograph(rg) -> str | None:
    """What is wrong with a successfully read radiograph, or ``None``."""
    px = rg.pixels
    if px.ndim != 2 or px.dtype != np.float32 or min(px.shape) < 1:
        return f"bad pixels {px.dtype} {px.shape}"
    if not np.isfinite(px).all():
        return "non-finite pixels"
    if float(px.min()) < 0.0 or float(px.max()) > 1.0:
        return f"pixels outside [0, 1]: {float(px.min())}..{float(px.max())}"
    return None
