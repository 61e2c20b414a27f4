"""Helpers shared by the test folders: plain functions and constants (the fixtures are in conftest.py).

pytest puts ``tests/`` on ``sys.path`` (the folder of the root ``conftest.py``), so any test module,
conftest or helper module imports these as ``from helpers import ...``; ``scripts/fuzz.py`` puts
it there itself.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "thoracic" / "samples"
#: The committed test files, with their provenance in ``tests/fixtures/README.md``.
FIXTURES = ROOT / "tests" / "fixtures"
#: ``image_id,width,height`` of 200 VinBigData training images (see the fixtures' README).
META_SUBSET = FIXTURES / "vinbigdata_meta_subset.csv"
#: The input size of the tiny test detector built by the ``tiny_pt`` fixture.
TINY_SIZE = 256


# --- optional dependencies: skip locally, fail in CI -----------------------------------------------
def missing(what: str, hint: str = "") -> NoReturn:
    """Skip the test because ``what`` is not installed, but fail it in CI (CI=true)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI but is not installed", pytrace=False)
    pytest.skip(f"{what} is not installed{hint}", allow_module_level=True)


def require(module: str, hint: str = ""):
    """Import an optional test dependency: skip without it, but fail in CI (CI=true)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(module, hint)


def require_tool(name: str, package: str) -> str:
    """The path of a command-line tool: skip the test without it, but fail in CI (CI=true)."""
    exe = shutil.which(name)
    if exe is None:
        missing(f"{name} (Debian {package})")
    return exe


def txv_data(name: str) -> Path:
    """A file of ``torchxrayvision/data`` found without importing torchxrayvision (and torch)."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        missing("torchxrayvision")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / name
        if p.is_file():
            return p
    missing(f"torchxrayvision/data/{name}")


# --- files and processes -----------------------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    """Write ``text`` (its leading newlines dropped: tables written as indented literals) to ``path``."""
    path.write_text(text.lstrip("\n"))
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dictionaries."""
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


#: The packages of the ``train`` extra, which every command but training must run without.
TORCH = ("torch", "torchvision", "ultralytics")


def run_without(packages: tuple[str, ...], script: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run ``script`` (dedented) with ``args`` in a new Python in which ``packages`` cannot be imported.

    An import of any of them (or of their submodules) raises ImportError, as if they were not
    installed; the script first checks that they really cannot be imported.
    """
    blocker = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {packages!r}:
                    raise ImportError(f"{{name}} is blocked in this test")
                return None

        sys.meta_path.insert(0, _Block())
        for _name in {packages!r}:
            try:
                importlib.import_module(_name)
            except ImportError:
                pass
            else:
                raise SystemExit("the blocker failed")
        """
    )
    code = blocker + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True, timeout=timeout)


def work_or_die(x: int) -> int:
    """A task for the worker pools: ``10 * x``, except that 3 kills its process (module level: picklable)."""
    if x == 3:
        os._exit(1)  # a native crash in a worker: the process dies without a Python exception
    return x * 10


# --- built DICOM files ---------------------------------------------------------------------------------
#: Identifying values put into every built DICOM; none may reach a repr, a message or a log.
PHI = {
    "PatientName": "Doe^Jane^Quincy",
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
#: SOP Instance, Study and Series Instance UID of a built file.
BUILT_UIDS = ("1.2.826.0.1.3680043.8.498.10101", "1.2.826.0.1.3680043.8.498.20202", "1.2.826.0.1.3680043.8.498.30303")


def dicom_dataset(
    pixels: np.ndarray | None,
    *,
    bits_stored: int | None = None,
    signed: bool | None = None,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    phi: dict[str, str] | None = None,
    uids: tuple[str, str, str] = BUILT_UIDS,
    **attrs: object,
) -> Dataset:
    """A minimal CR chest PA image with ``phi`` (default :data:`PHI`) in its header.

    ``pixels`` is the array to store, rows x columns (x samples), in the byte order of
    ``transfer_syntax`` (``None``: no Pixel Data at all); ``pixel_data`` replaces its bytes (e.g. an
    encapsulated stream for a compressed ``transfer_syntax``). ``attrs`` set (or, with ``None``,
    delete) any other attribute. ``uids``: SOP Instance, Study and Series Instance UIDs.
    """
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = transfer_syntax
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = uids[0]
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uids[1]
    ds.SeriesInstanceUID = uids[2]
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    for key, value in (PHI if phi is None else phi).items():
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
        if pixel_data is None:
            order = "<" if UID(transfer_syntax).is_little_endian else ">"
            pixel_data = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    if pixel_data is not None:
        ds.PixelData = pixel_data
    for key, value in attrs.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def dicom_file_bytes(ds: Dataset, *, bare: bool = False) -> bytes:
    """``ds`` as DICOM Part 10 bytes in its transfer syntax.

    ``bare``: no preamble and no file meta, only the data set in the transfer syntax's encoding.
    """
    uid = UID(ds.file_meta.TransferSyntaxUID)
    buf = io.BytesIO()
    if bare:
        ds.file_meta = FileMetaDataset()
        ds.save_as(buf, implicit_vr=uid.is_implicit_VR, little_endian=uid.is_little_endian)
    elif not uid.is_little_endian:
        ds.save_as(buf, implicit_vr=False, little_endian=False)
    else:
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def build_dicom(pixels: np.ndarray | None, *, bare: bool = False, **options: object) -> bytes:
    """:func:`dicom_dataset` as DICOM Part 10 bytes (see :func:`dicom_file_bytes` for ``bare``)."""
    return dicom_file_bytes(dicom_dataset(pixels, **options), bare=bare)  # type: ignore[arg-type]


# --- the radiograph full of identifying data (de-identification and DICOM results) ----------------------
#: Identifying values of the radiograph: none may survive de-identification.
DEID_PHI = {
    **PHI,
    "InstitutionAddress": "42 Elm Street Springfield",
    "OtherPatientIDs": "OTHER-1618033",
    "PatientAddress": "7 Privet Drive Little Whinging",
    "StationName": "XRAYROOM-ZETA",
    "OperatorsName": "Tech^Tina",
    "StudyID": "STUDY-5772156",
    "ImageComments": "phone Dr Quackenbush re Jane",
    "PatientTelephoneNumbers": "555-0199-8765",
}
PRIVATE_VALUE = "PRIVATE-SECRET-6626070"
#: Distinctive fragments that must not appear in any de-identified byte: every full value and
#: the parts of names, addresses and numbers.
DEID_FRAGMENTS = (
    *DEID_PHI.values(), PRIVATE_VALUE, "SEQ-ID-9999271", "NESTED-SECRET-4669201",
    "Quincy", "Gregory", "Quackenbush", "Nowhere", "Springfield", "Privet", "Whinging", "ZETA",
    "31415926", "19421107", "2718281", "1618033", "6626070", "5772156", "9999271", "0199-8765",
    "HOSPITALPACS",
)

STUDY_UID = "1.2.40.0.13.1.8675309.11"
SERIES_UID = "1.2.40.0.13.1.8675309.12"
SOP_UID = "1.2.40.0.13.1.8675309.13"
FOR_UID = "1.2.40.0.13.1.8675309.14"
SOURCE_REF_UID = "1.2.40.0.13.1.8675309.15"
ORIGINAL_UIDS = (STUDY_UID, SERIES_UID, SOP_UID, FOR_UID, SOURCE_REF_UID)
WIDTH, HEIGHT = 240, 200


def phi_radiograph(path: Path) -> Path:
    """Write a small 12-bit CR chest radiograph full of identifying data (and return its path)."""
    other = Dataset()
    other.PatientID = "SEQ-ID-9999271"
    other.TypeOfPatientID = "TEXT"
    ref = Dataset()
    ref.ReferencedSOPClassUID = CR_IMAGE_STORAGE
    ref.ReferencedSOPInstanceUID = SOURCE_REF_UID
    nested = ref.private_block(0x0031, "ACME NESTED", create=True)
    nested.add_new(0x01, "LO", "NESTED-SECRET-4669201")
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    ds = dicom_dataset(
        ((xx * 7 + yy * 13) % 4096).astype(np.uint16), bits_stored=12, phi=DEID_PHI,
        uids=(SOP_UID, STUDY_UID, SERIES_UID),
        SpecificCharacterSet="ISO_IR 100", FrameOfReferenceUID=FOR_UID,
        StudyDate="20240229", StudyTime="101112", SeriesDate="20240229", ContentDate="20240229",
        ContentTime="101113", AcquisitionDate="20240229", PatientOrientation=["L", "F"], Manufacturer="Acme",
        PatientSex="F", PatientAge="081Y", StudyDescription="Chest PA for Jane Quincy", SeriesNumber=1,
        InstanceNumber=1, OtherPatientIDsSequence=Sequence([other]), SourceImageSequence=Sequence([ref]),
        ImagerPixelSpacing=[0.5, 0.5], WindowCenter=2048, WindowWidth=4096,
    )
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITALPACS"
    block = ds.private_block(0x0029, "ACME PHI", create=True)
    block.add_new(0x10, "LO", PRIVATE_VALUE)
    ds.save_as(path, enforce_file_format=True)
    return path


# --- a VinDr-CXR / VinBigData stand-in -----------------------------------------------------------------
#: The columns of VinBigData's ``train.csv``, in order.
VINDR_COLUMNS = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")
#: VinDr class ids of the findings the bundled samples carry (``samples/boxes.csv``).
_VINDR_IDS = {"Aortic enlargement": 0, "Cardiomegaly": 3, "Nodule/Mass": 8, "Pleural effusion": 10}


def vindr_standin(root: Path, n: int = 24, *, size: int = 256, big: int = 0, seed: int = 0) -> Path:
    """Build a folder in VinBigData's layout from the bundled real radiographs and return its ``train.csv``.

    ``root/train/<image_id>.dicom`` (32 hex digits, as VinDr) and ``root/train.csv`` with three of
    seventeen readers per image. Image ``k`` is bundled sample ``k % 3`` resized to about ``size``
    pixels (widths and heights differ), stored as 12-bit CR, MONOCHROME1 (inverted) for every fourth;
    the first ``big`` images are 2000 x 2000 with 16 bits stored. Every fourth image (``k % 4 == 3``)
    is "No finding" by all three readers; the others carry the sample's radiologist box, scaled and
    jittered per reader, and the Cardiomegaly films an "Aortic enlargement" box by two readers.
    """
    import hashlib

    from PIL import Image

    rng = np.random.default_rng(seed)
    boxes = {r["image_id"]: r for r in read_rows(SAMPLES / "boxes.csv")}
    samples = sorted(boxes)
    train = root / "train"
    train.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for k in range(n):
        sample = samples[k % 3]
        image_id = hashlib.md5(f"thoracic-vindr-standin-{seed}-{k}".encode()).hexdigest()
        with Image.open(SAMPLES / f"{sample}.jpg") as im:
            gray = im.convert("L")
            sw, sh = gray.size
            if k < big:
                w = h = 2000
            else:
                w, h = size + 16 * (k % 4), size + 8 * ((k + 1) % 3)
            pixels = np.asarray(gray.resize((w, h), Image.BILINEAR), dtype=np.float64)
        bits = 16 if k < big else 12
        top = (1 << bits) - 1
        values = np.clip(pixels / 255.0 * top * (0.85 + 0.1 * (k % 3)), 0, top).astype(np.uint16)
        photometric = "MONOCHROME1" if k % 4 == 1 else "MONOCHROME2"
        if photometric == "MONOCHROME1":
            values = (top - values).astype(np.uint16)
        uid = f"1.2.826.0.1.3680043.8.498.7{seed}.{k + 1}"
        ds = dicom_dataset(values, bits_stored=bits, photometric=photometric, phi={},
                           uids=(uid + ".3", uid + ".1", uid + ".2"), PatientID=f"standin-{k}")
        ds.save_as(train / f"{image_id}.dicom", enforce_file_format=True)
        readers = [f"R{r}" for r in rng.choice(np.arange(1, 18), size=3, replace=False)]
        if k % 4 == 3:
            rows += [{"image_id": image_id, "class_name": "No finding", "class_id": 14, "rad_id": r,
                      "x_min": "", "y_min": "", "x_max": "", "y_max": ""} for r in readers]
            continue
        b = boxes[sample]
        sx, sy = w / sw, h / sh
        box = np.array([float(b["x_min"]) * sx, float(b["y_min"]) * sy, float(b["x_max"]) * sx, float(b["y_max"]) * sy])
        found = [(b["label"], box, readers)]
        if b["label"] == "Cardiomegaly":
            found.append(("Aortic enlargement", np.array([0.45 * w, 0.25 * h, 0.6 * w, 0.42 * h]), readers[:2]))
        for label, xyxy, who in found:
            for r in who:
                j = np.clip(xyxy + rng.normal(0, 0.01 * w, 4), 0, [w - 1, h - 1, w - 1, h - 1])
                rows.append({"image_id": image_id, "class_name": label, "class_id": _VINDR_IDS[label], "rad_id": r,
                             **{c: f"{v:.1f}" for c, v in zip(VINDR_COLUMNS[4:], j)}})
    with (root / "train.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(VINDR_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return root / "train.csv"


#: NIH's name of each bundled NIH sample's boxed finding (``samples/boxes.csv`` has the VinDr names).
_NIH_FINDINGS = {"Cardiomegaly": "Cardiomegaly", "Pleural effusion": "Effusion", "Nodule/Mass": "Nodule"}


def nih_standin(root: Path, n: int = 20, *, size: int = 1024, seed: int = 0) -> dict[str, Path]:
    """Build a folder in ``../shared/data/nih``'s layout from the three bundled NIH radiographs.

    ``root/images/<image_id>.jpg`` (``size`` pixels square, NIH's 1024 by default), ``images.csv``
    (``image,patient_id,finding_labels,n_boxes``), ``boxes.csv`` and ``chestxdet_boxes.csv``. Image
    ``k`` is sample ``k % 3`` shifted by a few pixels and brightened by a few grey levels, one patient
    per image; every fourth (``k % 4 == 3``) is "No Finding", the others carry the sample's radiologist
    box (shifted with the image), and the first two Effusion films also a ChestX-Det reader's box.
    Returns the paths: ``images_csv``, ``boxes_csv``, ``chestxdet``, ``images``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    boxes = {r["image_id"]: r for r in read_rows(SAMPLES / "boxes.csv")}
    samples = sorted(boxes)
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    images, box_rows, cxd_rows = [], [], []
    for k in range(n):
        sample = samples[k % 3]
        image_id = f"{90000000 + k:08d}_000"
        dx, dy = (int(v) for v in rng.integers(-12, 13, 2))
        with Image.open(SAMPLES / f"{sample}.jpg") as im:
            gray = np.asarray(im.convert("L"), dtype=np.int16)
        gray = np.clip(np.roll(gray, (dy, dx), axis=(0, 1)) + int(rng.integers(-8, 9)), 0, 255).astype(np.uint8)
        f = size / gray.shape[1]
        Image.fromarray(gray).resize((size, size), Image.BILINEAR).save(folder / f"{image_id}.jpg", quality=90)
        normal = k % 4 == 3
        b = boxes[sample]
        finding = _NIH_FINDINGS[b["label"]]
        images.append([f"{image_id}.jpg", str(k + 1), "No Finding" if normal else finding, "0" if normal else "1"])
        if normal:
            continue
        box = [(float(b["x_min"]) + dx) * f, (float(b["y_min"]) + dy) * f, (float(b["x_max"]) + dx) * f,
               (float(b["y_max"]) + dy) * f]
        box = [min(max(v, 0.0), size - 1.0) for v in box]
        box_rows.append([f"{image_id}.jpg", finding, *(f"{v:.2f}" for v in box)])
        if finding == "Effusion" and len(cxd_rows) < 2:
            cxd_rows.append([f"{image_id}.jpg", "Effusion", *(f"{min(v + 6, size - 1.0):.0f}" for v in box), f"{k}.png", "box-match"])
    paths = {"images_csv": root / "images.csv", "boxes_csv": root / "boxes.csv",
             "chestxdet": root / "chestxdet_boxes.csv", "images": folder}
    for path, header, rows in ((paths["images_csv"], ["image", "patient_id", "finding_labels", "n_boxes"], images),
                               (paths["boxes_csv"], ["image", "finding", "x_min", "y_min", "x_max", "y_max"], box_rows),
                               (paths["chestxdet"], ["image", "finding", "x_min", "y_min", "x_max", "y_max",
                                                     "chestxdet_image", "name_match"], cxd_rows)):
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
    return paths


def model_with_meta(model: Path, out: Path, chain: object = None, **entries: object) -> Path:
    """A copy of the thoracic detector or classifier ``model`` whose stored metadata JSON has
    ``chain`` (a ``Chain``, given the model's final letterbox) and ``entries`` (e.g. an old file's
    bare ``lung_crop``) in place of its own; written as the JSON is, not through ``ModelMeta``."""
    import json

    import onnx

    from thoracic.models.meta import META_KEY
    from thoracic.train.export import with_letterbox

    proto = onnx.load(str(model))
    props = {p.key: p for p in proto.metadata_props}
    data = json.loads(props[META_KEY].value)
    if chain is not None:
        data["chain"] = with_letterbox(chain, int(data["imgsz"])).to_dict()  # type: ignore[arg-type]
    data.update(entries)
    props[META_KEY].value = json.dumps(data, sort_keys=True)
    onnx.save(proto, str(out))
    return out


# --- a tiny YOLO data set (training tests) ----------------------------------------------------------
def tiny_yolo_set(root: Path) -> Path:
    """8 synthetic 128-px images with one bright box each (class 3), 4 train + 4 val, all 14 names."""
    import cv2

    from thoracic.batch.export import yolo_names_yaml

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    names = []
    for i in range(8):
        img = (rng.random((128, 128)) * 60).astype(np.uint8)
        x, y = int(rng.integers(10, 60)), int(rng.integers(10, 60))
        img[y : y + 40, x : x + 40] = 220
        cv2.imwrite(str(root / "images" / f"im{i}.png"), img)
        (root / "labels" / f"im{i}.txt").write_text(f"3 {(x + 20) / 128} {(y + 20) / 128} {40 / 128} {40 / 128}\n")
        names.append(f"./images/im{i}.png")
    (root / "train.txt").write_text("\n".join(names[:4]) + "\n")
    (root / "val.txt").write_text("\n".join(names[4:]) + "\n")
    (root / "data.yaml").write_text(f'path: "{root}"\ntrain: train.txt\nval: val.txt\n' + yolo_names_yaml())
    return root / "data.yaml"


# --- TLS: a test CA and its certificates (openssl) ------------------------------------------------
@dataclass(frozen=True)
class Pki:
    """PEM files of a test CA, a server and a client certificate it signed, and a foreign CA's client."""

    root: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    foreign_ca: Path
    foreign_cert: Path
    foreign_key: Path


def _openssl(exe: str, *args: str, cwd: Path) -> None:
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(root: Path) -> Pki:
    """Two CAs and three RSA certificates made by ``openssl`` in ``root`` (valid for two days).

    The server certificate names ``localhost`` and ``127.0.0.1``; every leaf may serve as server
    and client (``extendedKeyUsage serverAuth, clientAuth``).
    """
    exe = require_tool("openssl", "openssl")
    root.mkdir(parents=True, exist_ok=True)
    leaf = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (root / "leaf.ext").write_text(leaf)
    for ca in ("ca", "foreign-ca"):
        _openssl(exe, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-subj", f"/CN=thoracic test {ca}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=root)
    for name, ca in (("server", "ca"), ("client", "ca"), ("foreign", "foreign-ca")):
        _openssl(exe, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={'localhost' if name == 'server' else name}", cwd=root)
        _openssl(exe, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "leaf.ext", cwd=root)
    return Pki(root, root / "ca.pem", root / "server.pem", root / "server.key", root / "client.pem",
               root / "client.key", root / "foreign-ca.pem", root / "foreign.pem", root / "foreign.key")


def tiny_lung_set(root: Path, n: int = 4, shape: tuple[int, int] = (48, 64)) -> Path:
    """A lung data set (``pairs.csv``, ``images/``, ``masks/``) of ``n`` synthetic ``split=train`` films
    (two dark lung fields on a bright body) and one ``eval_nc`` row that training must never use."""
    import cv2

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["image,mask,split,license,view,finding,source_url,doi,width,height"]
    rng = np.random.default_rng(1)
    h, w = shape
    for i in range(n):
        img = (rng.random((h, w)) * 60 + 150).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 6 : h * 5 // 6, w * 3 // 32 + i : w * 7 // 16] = 255
        mask[h // 6 : h * 5 // 6, w * 9 // 16 : w * 29 // 32 - i] = 255
        img[mask > 0] -= 100
        cv2.imwrite(str(root / "images" / f"p{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"p{i}.png"), mask)
        rows.append(f"p{i}.png,p{i}.png,train,CC BY 4.0,PA,none,https://example.org,,{w},{h}")
    rows.append(f"q.png,q.png,eval_nc,CC BY-NC-SA,PA,none,https://example.org,,{w},{h}")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root
