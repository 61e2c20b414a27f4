"""Build the content check's coefficients (src/thoracic/models/content/content.json).

    PYTHONPATH=src python scripts/build_content_check.py --shared ../shared --out src/thoracic/models/content/content.json

Everything here is training data; every rule and threshold is fixed on it:

- frontal chest films (positives): the NIH images of half the patients (patients drawn with
  seed 0; the other half stays for validation) and the lungseg ``split=train`` images (CC BY /
  "authorized for everyone"), each also mildly cropped, padded, tilted, mirrored or re-contrasted;
- negatives made here with seed 0: scikit-image's bundled images of the names in
  ``SKIMAGE_TRAIN`` (the others are kept for the benchmark) and matplotlib's sample images, cut,
  turned and blurred; text pages and UI screens drawn with PIL; noise, smooth random fields,
  gradients, stripes, checkerboards, blobs; synthetic CT-like phantoms (an ellipse of body with two
  dark lungs and a spine); and the training films themselves turned 90 or 180 degrees, halved
  (stretched or not), cut to one lung or to a small patch;
- added in the second iteration (v3), closer in kind to what v2 let through: CT-like axial slices
  (``ct_slice``: fat rim, ribs, lungs with vessels and ground glass, heart, spine, aorta, table,
  the reconstruction field on black, grain and sparse-angle streaks from radon/iradon, text and
  arrows, cut as figures are) and coronal ones (``ct_coronal``), lateral-like films made from each
  training film (``lateral_from_film``: one hemithorax widened on dark air, with a spine band at
  the back, the heart in front, shoulders, arms and abdomen) and drawn ones (``lateral_drawn``,
  a film's lung texture only).

The OOD set (CT slices, lateral films: CC BY-NC, validation only) and lungseg ``eval_nc`` are
never read here. The one-class part is the PCA model of the training films; the discriminative
part a logistic regression (L2, IRLS) on :func:`thoracic.io.content.shape_features`, classes
weighted equally. Thresholds come from out-of-fold scores (5 folds by patient; a transformed film
stays in its film's fold): the one-class threshold is the ``OC_QUANTILE`` quantile of the
training films' out-of-fold scores, the classifier's the highest P(chest) at which both parts
together refuse at most ``TARGET_REFUSED`` of the training films out of fold.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from thoracic.io import ReadConfig, read
from thoracic.io.content import ContentModel, _features, _shape_features

COMPONENTS = 20
OC_QUANTILE = 0.998  # the one-class threshold: this quantile of the training films' out-of-fold scores
TARGET_REFUSED = 0.005  # both parts together refuse at most this fraction of the training films (out of fold)
L2 = 30.0  # the logistic regression's penalty on standardized features (best of 0.3, 1, 10, 30, 100 out of fold)
MAX_COLOUR = 0.05
THUMB = 24
FOLDS = 5
SEED = 0
SMALL = 128
CT_SLICES = 300  # second iteration: CT-like axial slices (ct_slice)
CT_CORONAL = 300  # and coronal ones (ct_coronal)
LATERAL_DRAWN = 0.3  # the share of training films that also lend their texture to a drawn lateral
#: scikit-image images used for training; the other bundled ones are the benchmark's.
SKIMAGE_TRAIN = ("astronaut", "binary_blobs", "camera", "chelsea", "clock", "coins", "grass", "horse",
                 "immunohistochemistry", "lfw_subset", "moon", "retina", "text")
WORDS = ("result", "normal", "findings", "impression", "history", "cough", "fever", "lungs", "clear", "heart",
         "size", "within", "limits", "no", "effusion", "pneumothorax", "comparison", "prior", "study", "signed",
         "dr", "table", "value", "units", "date", "name", "id", "total", "page", "of", "form", "please", "sign")


def nih_split(shared: Path) -> tuple[list[Path], list[Path]]:
    """(train, validation) NIH images, split by patient with seed 0 (half the patients each)."""
    images = sorted((shared / "data/nih/images").glob("*.jpg"))
    patients = sorted({p.name.split("_")[0] for p in images})
    train = set(np.random.default_rng(0).permutation(patients)[: len(patients) // 2])
    return ([p for p in images if p.name.split("_")[0] in train],
            [p for p in images if p.name.split("_")[0] not in train])


def training_films(shared: Path) -> list[tuple[np.ndarray, float, str]]:
    """Each training film as ``(256 x 256 display pixels, aspect w/h, patient)``."""
    train, _ = nih_split(shared)
    paths = [(p, p.name.split("_")[0]) for p in train]
    with open(shared / "data/lungseg/pairs.csv", newline="") as fh:
        paths += [(shared / "data/lungseg/images" / r["image"], r["image"]) for r in csv.DictReader(fh)
                  if r["split"] == "train"]
    opts = ReadConfig(check_content=False)
    out = []
    for path, patient in paths:
        px = read(path, opts).pixels
        out.append((_resize(px, 256), px.shape[1] / px.shape[0], patient))
    return out


def _resize(a: np.ndarray, w: int, h: int | None = None) -> np.ndarray:
    return cv2.resize(np.asarray(a, dtype=np.float32), (w, h or w), interpolation=cv2.INTER_AREA)


def _grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3:
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / max(hi - lo, 1e-6)


# --- positives: the training films, as they are and mildly changed -----------------------------
def augment_film(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = f.shape
    kind = rng.integers(5)
    if kind == 0:  # a crop keeping most of the film
        x0, y0 = int(rng.uniform(0, 0.08) * w), int(rng.uniform(0, 0.08) * h)
        x1, y1 = w - int(rng.uniform(0, 0.08) * w), h - int(rng.uniform(0, 0.1) * h)
        return f[y0:y1, x0:x1]
    if kind == 1:  # a black or white border
        pad = int(rng.uniform(0.02, 0.12) * w)
        return cv2.copyMakeBorder(f, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=float(rng.integers(2)))
    if kind == 2:  # a tilted film
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-6, 6)), 1.0)
        return cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if kind == 3:
        return f[:, ::-1].copy()
    return np.clip(f, 0, 1) ** float(rng.uniform(0.6, 1.6))


# --- negatives made from the training films ----------------------------------------------------
def transformed_films(f: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray, float]]:
    """Views of a frontal film that are not one: ``(kind, pixels, aspect)``."""
    h, w = f.shape
    k = int(rng.choice([1, 2, 3]))
    yield "rotated", np.rot90(f, k).copy(), 1.0
    left = bool(rng.integers(2))
    cut = int(w * rng.uniform(0.45, 0.55))
    half = f[:, :cut] if left else f[:, cut:]
    yield "half", _resize(half, 256), 1.0  # stretched to the film's width
    yield "half", half, half.shape[1] / half.shape[0]
    x0 = int(w * (rng.uniform(0.0, 0.15) if left else rng.uniform(0.45, 0.55)))
    x1 = x0 + int(w * rng.uniform(0.35, 0.5))
    y0, y1 = int(h * rng.uniform(0.03, 0.2)), int(h * rng.uniform(0.6, 0.9))
    lung = f[y0:y1, x0:min(x1, w)]
    yield "one-lung", lung, lung.shape[1] / lung.shape[0]
    side = int(w * rng.uniform(0.2, 0.4))
    px, py = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
    yield "patch", f[py:py + side, px:px + side], 1.0


# --- negatives made from nothing ---------------------------------------------------------------
def natural_images() -> Iterator[np.ndarray]:
    import matplotlib.cbook
    import skimage.data as sk

    for name in SKIMAGE_TRAIN:
        # binary_blobs draws a new image on each call unless seeded (v2 and v3 were built unseeded)
        a = np.asarray(sk.binary_blobs(rng=SEED) if name == "binary_blobs" else getattr(sk, name)())
        if name == "lfw_subset":
            yield from (_resize(_grey(x), 128) for x in a[:20])
            continue
        yield _grey(a)
    sample = Path(matplotlib.cbook._get_data_path("sample_data"))
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        yield _grey(np.asarray(Image.open(sample / name).convert("RGB")))
    import gzip

    with gzip.open(sample / "s1045.ima.gz") as fh:
        mri = np.frombuffer(fh.read(), np.uint16).reshape(256, 256)
    yield _grey(mri)
    for npz, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        with np.load(sample / npz) as data:
            yield _grey(data[key])


def cut(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = a.shape
    s = rng.uniform(0.4, 0.9)
    ch, cw = max(int(h * s), 8), max(int(w * s * rng.uniform(0.7, 1.3)), 8)
    cw = min(cw, w)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = a[y:y + ch, x:x + cw]
    if rng.integers(2):
        out = np.rot90(out, int(rng.integers(1, 4)))
    if rng.integers(2):
        out = cv2.GaussianBlur(np.ascontiguousarray(out), (0, 0), float(rng.uniform(0.5, 3)))
    return np.ascontiguousarray(out)


def page(rng: np.random.Generator) -> np.ndarray:
    w, h = int(rng.integers(600, 1300)), int(rng.integers(600, 1300))
    im = Image.new("L", (w, h), int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=int(rng.integers(10, 34)))
    cols = int(rng.integers(1, 3))
    y = int(rng.integers(10, 100))
    while y < h - 30:
        for c in range(cols):
            draw.text((20 + c * w // cols, y), " ".join(rng.choice(WORDS, int(rng.integers(2, 9)))), fill=int(rng.integers(0, 80)), font=font)
        if rng.random() < 0.15:
            draw.line((10, y - 4, w - 10, y - 4), fill=0, width=int(rng.integers(1, 4)))
        if rng.random() < 0.05:
            draw.rectangle((40, y, 40 + int(rng.integers(100, w - 60)), y + int(rng.integers(40, 250))), outline=0, width=2,
                           fill=int(rng.integers(0, 256)))
        y += int(rng.integers(16, 50))
    a = np.asarray(im, dtype=np.float32) / 255
    return 1 - a if rng.random() < 0.2 else a


def screen(rng: np.random.Generator) -> np.ndarray:
    w, h = int(rng.integers(800, 1920)), int(rng.integers(500, 1200))
    im = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 25))):
        x, y = int(rng.integers(0, w - 50)), int(rng.integers(0, h - 20))
        draw.rectangle((x, y, x + int(rng.integers(30, w // 2)), y + int(rng.integers(10, h // 2))),
                       fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw.text((x + 4, y + 4), " ".join(rng.choice(WORDS, 3)), fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
                  font=ImageFont.load_default(size=int(rng.integers(10, 24))))
    return _grey(np.asarray(im))


def synthetic(rng: np.random.Generator) -> np.ndarray:
    n = 256
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    kind = rng.integers(8)
    if kind == 0:
        return rng.random((n, n), dtype=np.float32)
    if kind == 1:  # a smooth random field
        f = cv2.GaussianBlur(rng.standard_normal((n, n)).astype(np.float32), (0, 0), float(rng.uniform(3, 60)))
        return _grey(f)
    if kind == 2:  # linear or radial gradient
        a = rng.uniform(-1, 1, 3)
        lin = a[0] * xx + a[1] * yy + a[2] * ((xx - rng.random()) ** 2 + (yy - rng.random()) ** 2)
        return _grey(lin + rng.normal(0, 0.01, (n, n)))
    if kind == 3:  # waves
        f1, f2 = rng.uniform(1, 12, 2)
        return _grey(np.cos(2 * np.pi * f1 * xx + rng.random() * 6) + np.sin(2 * np.pi * f2 * yy) * rng.random())
    if kind == 4:  # stripes
        k = int(rng.integers(2, 30))
        return (((xx if rng.integers(2) else yy) * k).astype(np.int32) % 2).astype(np.float32)
    if kind == 5:  # checkerboard
        k = int(rng.integers(2, 40))
        return (((xx * k).astype(np.int32) + (yy * k).astype(np.int32)) % 2).astype(np.float32)
    if kind == 6:  # blobs
        a = np.zeros((n, n), np.float32)
        for _ in range(int(rng.integers(1, 12))):
            cv2.ellipse(a, (int(rng.integers(n)), int(rng.integers(n))), (int(rng.integers(5, 80)), int(rng.integers(5, 80))),
                        float(rng.uniform(0, 180)), 0, 360, float(rng.random()), -1)
        return cv2.GaussianBlur(a, (0, 0), float(rng.uniform(0.5, 8)))
    return np.full((n, n), float(rng.random()), np.float32) + rng.normal(0, 0.02, (n, n)).astype(np.float32)


def phantom(rng: np.random.Generator) -> np.ndarray:
    """A CT-like axial slice: body ellipse, two dark lungs, a bright spine and ribs, a table."""
    n = 256
    a = np.zeros((n, n), np.float32)
    c = (n // 2 + int(rng.integers(-10, 10)), n // 2 + int(rng.integers(-10, 10)))
    ax = (int(rng.integers(90, 120)), int(rng.integers(60, 95)))
    cv2.ellipse(a, c, ax, 0, 0, 360, 0.55, -1)
    cv2.ellipse(a, c, ax, 0, 0, 360, 0.8, int(rng.integers(2, 8)))
    for sx in (-1, 1):
        cv2.ellipse(a, (c[0] + sx * int(ax[0] * 0.45), c[1] - 5), (int(ax[0] * rng.uniform(0.3, 0.45)), int(ax[1] * rng.uniform(0.6, 0.8))),
                    0, 0, 360, float(rng.uniform(0.0, 0.15)), -1)
    cv2.circle(a, (c[0], c[1] + int(ax[1] * 0.7)), int(rng.integers(8, 16)), 0.95, -1)
    cv2.ellipse(a, (c[0], c[1] - 10), (int(rng.integers(15, 35)), int(rng.integers(15, 30))), 0, 0, 360, 0.6, -1)
    if rng.integers(2):
        cv2.rectangle(a, (10, c[1] + ax[1] + 10), (n - 10, c[1] + ax[1] + 16), 0.5, -1)
    a += rng.normal(0, 0.03, a.shape).astype(np.float32)
    a = cv2.GaussianBlur(a, (0, 0), float(rng.uniform(0.5, 2)))
    if rng.integers(3) == 0:  # a coronal-like one: stretch
        a = _resize(a, 256, int(rng.integers(200, 320)))
    return np.clip(a, 0, 1)


# --- second iteration (v3): CT-like slices and lateral-like films, closer in kind -----------------
def _ct_noise(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CT texture: fine grain, and with some luck the streaks of a sparse-angle reconstruction."""
    from skimage.transform import iradon, radon

    if rng.random() < 0.5:
        m = 128
        s = _resize(a, m)
        theta = np.linspace(0.0, 180.0, int(rng.integers(24, 72)), endpoint=False)
        rec = iradon(radon(s, theta, circle=False), theta, circle=False, filter_name="ramp", output_size=m)
        a = a + float(rng.uniform(0.3, 1.0)) * _resize((rec - s).astype(np.float32), a.shape[1], a.shape[0])
    grain = cv2.GaussianBlur(rng.normal(0, 1, a.shape).astype(np.float32), (0, 0), float(rng.uniform(0.5, 1.5)))
    return a + float(rng.uniform(0.01, 0.06)) * grain / max(float(grain.std()), 1e-6)


def _overlay_marks(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What figures add to a slice: white text in a corner, arrows."""
    n = a.shape[0]
    if rng.random() < 0.3:
        im = Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8))
        draw = ImageDraw.Draw(im)
        font = ImageFont.load_default(size=int(rng.integers(8, 16)))
        for _ in range(int(rng.integers(1, 4))):
            x, y = int(rng.choice([4, n - 70])), int(rng.integers(2, n - 14))
            draw.text((x, y), " ".join(rng.choice(WORDS, 2)), fill=255, font=font)
        a = np.asarray(im, dtype=np.float32) / 255
    if rng.random() < 0.25:
        for _ in range(int(rng.integers(1, 4))):
            p = (int(rng.integers(n // 4, 3 * n // 4)), int(rng.integers(n // 4, 3 * n // 4)))
            q = (p[0] + int(rng.integers(-40, 40)), p[1] + int(rng.integers(-40, 40)))
            cv2.arrowedLine(a, q, p, 1.0, int(rng.integers(1, 3)), tipLength=0.3)
    return a


def ct_slice(rng: np.random.Generator) -> np.ndarray:
    """A CT-like axial chest slice in a lung or a soft-tissue window: a body ellipse (fat rim, soft
    tissue, ribs) with two dark lungs holding vessels and ground glass, heart, spine and aorta, a
    table, the circular reconstruction field on black, CT grain and streaks."""
    n = 256
    lung_window = rng.random() < 0.6
    if lung_window:
        lung, fat, soft, bone = rng.uniform(0.02, 0.25), rng.uniform(0.55, 0.8), rng.uniform(0.75, 0.95), 1.0
    else:
        lung, fat, soft, bone = rng.uniform(0.0, 0.04), rng.uniform(0.2, 0.4), rng.uniform(0.45, 0.62), rng.uniform(0.85, 1.0)
    a = np.zeros((n, n), np.float32)
    c = (int(n / 2 + rng.normal(0, 6)), int(n / 2 + rng.normal(0, 8)))
    rx = int(n * rng.uniform(0.3, 0.46))
    ry = int(rx * rng.uniform(0.6, 0.85))
    tilt = float(rng.uniform(-5, 5))
    cv2.ellipse(a, c, (rx, ry), tilt, 0, 360, float(fat), -1)
    rim = rng.uniform(0.03, 0.12)
    ix, iy = int(rx * (1 - rim)), int(ry * (1 - rim))
    cv2.ellipse(a, c, (ix, iy), tilt, 0, 360, float(soft), -1)
    for phi in rng.uniform(0, 2 * np.pi, int(rng.integers(8, 20))):  # rib sections near the wall
        p = (int(c[0] + 0.9 * ix * np.cos(phi)), int(c[1] + 0.9 * iy * np.sin(phi)))
        cv2.ellipse(a, p, (int(rng.integers(2, 6)), int(rng.integers(2, 5))), float(np.degrees(phi)), 0, 360, float(bone), -1)
    mask = np.zeros_like(a)
    for sx in (-1, 1):
        lc = (int(c[0] + sx * ix * rng.uniform(0.35, 0.5)), int(c[1] - iy * rng.uniform(-0.05, 0.12)))
        cv2.ellipse(mask, lc, (int(ix * rng.uniform(0.28, 0.42)), int(iy * rng.uniform(0.55, 0.8))),
                    float(sx * rng.uniform(-20, 20)), 0, 360, 1.0, -1)
    heart = (int(c[0] + ix * rng.uniform(-0.05, 0.2)), int(c[1] - iy * rng.uniform(-0.1, 0.3)))
    cv2.ellipse(mask, heart, (int(ix * rng.uniform(0.15, 0.3)), int(iy * rng.uniform(0.2, 0.4))), float(rng.uniform(0, 180)), 0, 360, 0.0, -1)
    spine = (int(c[0] + rng.normal(0, 2)), int(c[1] + iy * rng.uniform(0.5, 0.7)))
    rs = int(ix * rng.uniform(0.09, 0.14))
    cv2.circle(mask, spine, int(rs * 1.6), 0.0, -1)
    inside = mask > 0
    texture = lung + np.zeros_like(a)
    if lung_window:  # vessels and bronchi
        for _ in range(int(rng.integers(40, 160))):
            p = (int(rng.integers(0, n)), int(rng.integers(0, n)))
            if inside[p[1], p[0]]:
                cv2.circle(texture, p, int(rng.integers(1, 3)), float(rng.uniform(0.45, 0.8)), -1)
        for _ in range(int(rng.integers(0, 4))):  # ground glass and consolidation
            g = np.zeros_like(a)
            cv2.ellipse(g, (int(rng.integers(0, n)), int(rng.integers(0, n))), (int(rng.integers(8, 40)), int(rng.integers(8, 40))),
                        float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
            texture += float(rng.uniform(0.1, 0.5)) * cv2.GaussianBlur(g, (0, 0), float(rng.uniform(2, 8)))
    a = np.where(inside, texture, a)
    cv2.circle(a, spine, rs, float(bone), -1)  # vertebral body, canal, processes
    cv2.circle(a, (spine[0], spine[1] + int(rs * 1.4)), max(rs // 3, 2), float(lung if not lung_window else fat * 0.5), -1)
    cv2.line(a, (spine[0], spine[1] + int(rs * 1.8)), (spine[0], spine[1] + int(rs * 2.6)), float(bone), max(rs // 3, 2))
    cv2.circle(a, (spine[0] + int(rs * rng.uniform(1.2, 2.0)), spine[1] - int(rs * rng.uniform(0.8, 1.5))),
               int(rs * rng.uniform(0.7, 1.0)), float(min(soft * rng.uniform(1.0, 1.2), 1.0)), -1)  # aorta
    if rng.random() < 0.7:  # the table
        y = c[1] + ry + int(rng.integers(4, 16))
        cv2.ellipse(a, (c[0], y + 400), (int(rx * 1.4), 400), 0, 250, 290, float(rng.uniform(0.3, 0.8)), int(rng.integers(2, 7)))
    a = _ct_noise(a, rng)
    if rng.random() < 0.6:  # the reconstruction field: a disk, black or grey outside
        field = np.zeros_like(a)
        cv2.circle(field, (n // 2, n // 2), int(n * rng.uniform(0.46, 0.52)), 1.0, -1)
        a = np.where(field > 0, a, float(rng.choice([0.0, rng.uniform(0.0, 0.3)])))
    a = _overlay_marks(np.clip(a, 0, 1).astype(np.float32), rng)
    return _figure_cut(a, (c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry), rng)


def _figure_cut(a: np.ndarray, body: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Cut as figures are: sometimes a little off each side, sometimes tight around the body
    (``body``: x0, y0, x1, y1) or inside it."""
    n = a.shape[0]
    r = rng.random()
    if r < 0.3:
        h0, w0 = int(n * rng.uniform(0, 0.15)), int(n * rng.uniform(0, 0.15))
        a = a[h0:n - int(n * rng.uniform(0, 0.15)), w0:n - int(n * rng.uniform(0, 0.15))]
    elif r < 0.6:
        m = rng.uniform(-0.12, 0.08, 4) * n
        x0, y0 = max(int(body[0] - m[0]), 0), max(int(body[1] - m[1]), 0)
        x1, y1 = min(int(body[2] + m[2]), n), min(int(body[3] + m[3]), n)
        if x1 - x0 > n // 4 and y1 - y0 > n // 4:
            a = a[y0:y1, x0:x1]
    return np.ascontiguousarray(np.clip(a, 0, 1), dtype=np.float32)


def ct_coronal(rng: np.random.Generator) -> np.ndarray:
    """A CT-like coronal chest slice: a tall body on black, two tall dark lungs with vessels over
    the domes of the diaphragm, heart between them, liver below, sometimes the spine's column,
    rib sections along the sides, CT grain and streaks."""
    n = 256
    lung_window = rng.random() < 0.6
    lung = rng.uniform(0.02, 0.25) if lung_window else rng.uniform(0.0, 0.04)
    soft = rng.uniform(0.75, 0.95) if lung_window else rng.uniform(0.45, 0.62)
    a = np.zeros((n, n), np.float32)
    c = (int(n / 2 + rng.normal(0, 5)), int(n * rng.uniform(0.5, 0.6)))
    rx, ry = int(n * rng.uniform(0.33, 0.46)), int(n * rng.uniform(0.45, 0.6))
    cv2.ellipse(a, c, (rx, ry), 0, 0, 360, float(soft * rng.uniform(0.6, 0.85)), -1)
    cv2.ellipse(a, c, (int(rx * 0.93), int(ry * 0.95)), 0, 0, 360, float(soft), -1)
    mask = np.zeros_like(a)
    for sx in (-1, 1):
        lc = (int(c[0] + sx * rx * rng.uniform(0.38, 0.52)), int(c[1] - ry * rng.uniform(0.1, 0.3)))
        cv2.ellipse(mask, lc, (int(rx * rng.uniform(0.25, 0.38)), int(ry * rng.uniform(0.45, 0.65))), float(sx * rng.uniform(-8, 8)),
                    0, 360, 1.0, -1)
    cv2.ellipse(mask, (c[0] + int(rx * rng.uniform(-0.05, 0.12)), c[1] + int(ry * rng.uniform(0.0, 0.2))),
                (int(rx * rng.uniform(0.2, 0.35)), int(ry * rng.uniform(0.2, 0.3))), 0, 0, 360, 0.0, -1)  # heart
    inside = mask > 0
    texture = lung + np.zeros_like(a)
    if lung_window:
        for _ in range(int(rng.integers(40, 160))):
            p = (int(rng.integers(0, n)), int(rng.integers(0, n)))
            if inside[p[1], p[0]]:
                q = (p[0] + int(rng.integers(-12, 12)), p[1] + int(rng.integers(-12, 12)))
                cv2.line(texture, p, q, float(rng.uniform(0.45, 0.8)), int(rng.integers(1, 3)))
    a = np.where(inside, texture, a)
    if rng.random() < 0.5:  # the spine's column of vertebrae
        w = int(rx * rng.uniform(0.12, 0.2))
        for y in range(int(c[1] - ry * 0.7), int(c[1] + ry * 0.9), 2 * w // 2 + 4):
            cv2.rectangle(a, (c[0] - w // 2, y), (c[0] + w // 2, y + w - 2), 1.0, -1)
    for sx in (-1, 1):
        for y in range(int(c[1] - ry * 0.6), int(c[1] + ry * 0.3), int(rng.integers(10, 20))):
            cv2.circle(a, (int(c[0] + sx * rx * rng.uniform(0.8, 0.9)), y), int(rng.integers(2, 5)), 1.0, -1)
    a = _overlay_marks(np.clip(_ct_noise(a, rng), 0, 1).astype(np.float32), rng)
    return _figure_cut(a, (c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry), rng)


def _spine_band(h: int, w: int, x0: float, rng: np.random.Generator) -> np.ndarray:
    """A bright, slightly curved vertical band with the stripes of vertebrae and discs."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    width = w * rng.uniform(0.06, 0.12)
    centre = x0 + w * rng.uniform(0.02, 0.06) * np.sin(np.pi * yy / h + rng.uniform(-0.5, 0.5))
    band = np.exp(-(((xx - centre) / width) ** 4))
    period = h * rng.uniform(0.05, 0.08)
    stripes = 0.75 + 0.25 * np.cos(2 * np.pi * yy / period + rng.uniform(0, 6)) ** 2
    return (band * stripes * np.clip(yy / (0.15 * h), 0, 1)).astype(np.float32)


def _lateral_anatomy(a: np.ndarray, posterior_left: bool, rng: np.random.Generator) -> np.ndarray:
    """Add what a lateral view superimposes on one lung field: spine at the back, heart in front
    and below, the shoulders and arms on top, the abdomen under the diaphragm, a sternum line."""
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    back = w * rng.uniform(0.12, 0.3)
    spine = _spine_band(h, w, back if posterior_left else w - back, rng)
    a = a + float(rng.uniform(0.15, 0.4)) * spine
    heart = np.zeros_like(a)
    hx = w - w * rng.uniform(0.3, 0.45) if posterior_left else w * rng.uniform(0.3, 0.45)
    cv2.ellipse(heart, (int(hx), int(h * rng.uniform(0.6, 0.75))), (int(w * rng.uniform(0.15, 0.25)), int(h * rng.uniform(0.15, 0.22))),
                float(rng.uniform(-30, 30)), 0, 360, 1.0, -1)
    a = a + float(rng.uniform(0.15, 0.35)) * cv2.GaussianBlur(heart, (0, 0), w * 0.03)
    dome = h * rng.uniform(0.7, 0.85) - h * 0.05 * np.cos(np.pi * (xx / w - 0.5))
    a = a + float(rng.uniform(0.2, 0.45)) / (1 + np.exp(-(yy - dome) / (h * 0.01)))
    shoulders = np.exp(-((yy / (h * rng.uniform(0.12, 0.25))) ** 2))
    a = a + float(rng.uniform(0.15, 0.4)) * shoulders
    if rng.random() < 0.6:  # arms raised: two bright oblique bands over the top
        arm = np.zeros_like(a)
        for _ in range(2):
            x1 = int(w * rng.uniform(0.2, 0.8))
            cv2.line(arm, (x1, 0), (x1 + int(w * rng.uniform(-0.3, 0.3)), int(h * rng.uniform(0.25, 0.45))), 1.0, int(w * rng.uniform(0.05, 0.1)))
        a = a + float(rng.uniform(0.1, 0.3)) * cv2.GaussianBlur(arm, (0, 0), w * 0.02)
    front = w - w * rng.uniform(0.04, 0.1) if posterior_left else w * rng.uniform(0.04, 0.1)
    a = a + 0.15 * np.exp(-(((xx - front) / (w * 0.012)) ** 2)) * ((yy > 0.2 * h) & (yy < 0.65 * h))
    return a


def lateral_from_film(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A lateral-like film made from a frontal one: one hemithorax widened to the body's depth,
    on dark air before and behind it, with the lateral view's anatomy added over it."""
    h, w = f.shape
    left = bool(rng.integers(2))
    cut = int(w * rng.uniform(0.48, 0.6))
    half = f[:, :cut] if left else f[:, w - cut:]
    if left:  # the mediastinum on the left of ``half``
        half = half[:, ::-1]
    depth = int(w * rng.uniform(0.65, 0.95))
    body = _resize(half, depth, h)
    air = float(rng.uniform(0.0, 0.15))
    a = np.full((h, w), air, np.float32)
    x0 = int(rng.integers(0, w - depth + 1))
    edge = np.clip(np.minimum(np.arange(depth), np.arange(depth)[::-1]) / (depth * 0.04), 0, 1)[None, :]
    a[:, x0:x0 + depth] = air + (body - air) * edge
    posterior_left = True  # the mediastinum (now the spine side) is at the body's left edge
    a = _lateral_anatomy(a, posterior_left, rng)
    if rng.random() < 0.5:
        a = a[:, ::-1]
    a = _grey(a) ** float(rng.uniform(0.7, 1.4))
    if rng.random() < 0.3:
        a = _resize(a, int(w * rng.uniform(0.75, 1.0)), h)
    return np.ascontiguousarray(a, dtype=np.float32)


def lateral_drawn(rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
    """A lateral-like film drawn from nothing but a film's fine texture: one large dark lung field
    in a body seen from the side, with the lateral view's anatomy."""
    n = 256
    a = np.full((n, n), float(rng.uniform(0.0, 0.15)), np.float32)
    body = np.zeros_like(a)
    x0, x1 = int(n * rng.uniform(0.02, 0.15)), int(n * rng.uniform(0.85, 0.98))
    cv2.rectangle(body, (x0, -10), (x1, n + 10), 1.0, -1)
    body = cv2.GaussianBlur(body, (0, 0), n * 0.02)
    field = np.zeros_like(a)
    cv2.ellipse(field, (int(n * rng.uniform(0.42, 0.58)), int(n * rng.uniform(0.42, 0.55))),
                (int(n * rng.uniform(0.25, 0.36)), int(n * rng.uniform(0.28, 0.38))), float(rng.uniform(-15, 15)), 0, 360, 1.0, -1)
    field = cv2.GaussianBlur(field, (0, 0), n * 0.03)
    a = a + body * (float(rng.uniform(0.45, 0.7)) - float(rng.uniform(0.2, 0.35)) * field)
    h, w = texture.shape
    x = int(rng.uniform(0.05, 0.3) * w) if rng.integers(2) else int(rng.uniform(0.55, 0.7) * w)
    y = int(rng.uniform(0.15, 0.3) * h)
    patch = _resize(texture[y:y + int(0.45 * h), x:x + int(0.25 * w)], n)  # a piece of one lung, stretched
    hp = patch - cv2.GaussianBlur(patch, (0, 0), 3)
    a = a + float(rng.uniform(0.5, 1.5)) * hp * body
    a = _lateral_anatomy(a, bool(rng.integers(2)), rng)
    return np.ascontiguousarray(_grey(a) ** float(rng.uniform(0.7, 1.4)), dtype=np.float32)


def made_negatives(rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    for a in natural_images():
        yield "natural", a
        for _ in range(8):
            yield "natural", cut(a, rng)
    for _ in range(120):
        yield "page", page(rng)
    for _ in range(80):
        yield "screen", screen(rng)
    for _ in range(400):
        yield "synthetic", synthetic(rng)
    for _ in range(150):
        yield "phantom", phantom(rng)
    for _ in range(CT_SLICES):
        yield "ct-axial", ct_slice(rng)
    for _ in range(CT_CORONAL):
        yield "ct-coronal", ct_coronal(rng)


# --- the models -------------------------------------------------------------------------------
def small(a: np.ndarray) -> np.ndarray:
    return _resize(a, SMALL)


def fit_oneclass(X: np.ndarray) -> dict:
    mean, scale = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / scale
    _, S, Vt = np.linalg.svd(Z, full_matrices=False)
    V, var = Vt[:COMPONENTS], S[:COMPONENTS] ** 2 / (len(Z) - 1)
    m, r = _oc_parts(X, mean, scale, V, var)
    return {"mean": mean, "scale": scale, "V": V, "var": var, "m_med": float(np.median(m)), "r_med": float(np.median(r))}


def _oc_parts(X, mean, scale, V, var):
    Z = (X - mean) / scale
    c = Z @ V.T
    return np.sqrt((c * c / var).sum(1) / len(var)), np.sqrt(((Z - c @ V) ** 2).mean(1))


def oc_score(oc: dict, X: np.ndarray) -> np.ndarray:
    m, r = _oc_parts(X, oc["mean"], oc["scale"], oc["V"], oc["var"])
    return m / oc["m_med"] + r / oc["r_med"]


def fit_lr(X: np.ndarray, y: np.ndarray, l2: float | None = None, iters: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """L2 logistic regression by IRLS (Newton), the two classes weighted equally."""
    mean, scale = X.mean(0), X.std(0) + 1e-6
    Z = np.hstack([(X - mean) / scale, np.ones((len(X), 1))])
    sw = np.where(y == 1, 0.5 / (y == 1).sum(), 0.5 / (y == 0).sum()) * len(y)
    w = np.zeros(Z.shape[1])
    reg = np.full(Z.shape[1], L2 if l2 is None else l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(Z @ w, -50, 50)))
        g = Z.T @ (sw * (p - y)) + reg * w
        H = (Z * (sw * p * (1 - p))[:, None]).T @ Z + np.diag(reg) + 1e-6 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return mean, scale, w[:-1], float(w[-1])


def lr_logit(model: tuple, X: np.ndarray) -> np.ndarray:
    mean, scale, w, b = model
    return ((X - mean) / scale) @ w + b


def features(img: np.ndarray, aspect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(one-class, shape) features of the image and of its negative."""
    s = small(img)
    return (_features(s, THUMB), _shape_features(s, aspect), _features(1 - s, THUMB), _shape_features(1 - s, aspect))


def dataset(films: list[tuple[np.ndarray, float, str]], seed: int = SEED) -> dict:
    rng = np.random.default_rng(seed)
    patients = sorted({p for _, _, p in films})
    fold_of = dict(zip(patients, rng.permutation(len(patients)) % FOLDS))
    rows: list[tuple] = []  # (kind, label, fold, oc, oc_neg, sh, sh_neg)
    for f, aspect, patient in films:
        fold = fold_of[patient]
        rows.append(("film", 1, fold, *features(f, aspect)))
        for _ in range(2):
            g = augment_film(f, rng)
            rows.append(("film-aug", 1, fold, *features(g, aspect * g.shape[1] / g.shape[0] * f.shape[0] / f.shape[1])))
        for kind, g, a in transformed_films(f, rng):
            rows.append((kind, 0, fold, *features(g, a)))
        g = lateral_from_film(f, rng)
        rows.append(("lateral-film", 0, fold, *features(g, g.shape[1] / g.shape[0])))
        if rng.random() < LATERAL_DRAWN:
            g = lateral_drawn(rng, f)
            rows.append(("lateral-drawn", 0, fold, *features(g, 1.0)))
    for kind, g in made_negatives(rng):
        rows.append((kind, 0, int(rng.integers(FOLDS)), *features(g, g.shape[1] / g.shape[0])))
    return {"kind": np.array([r[0] for r in rows]), "y": np.array([r[1] for r in rows]),
            "fold": np.array([r[2] for r in rows]),
            **{k: np.stack([r[3 + i] for r in rows]).astype(np.float64) for i, k in enumerate(("oc", "sh", "oc_neg", "sh_neg"))}}


def fit(d: dict, train: np.ndarray) -> tuple[dict, tuple]:
    """The one-class model on the original training films of ``train``, the classifier on
    positives (films and their mild changes) against every negative in both polarities."""
    oc = fit_oneclass(d["oc"][train & (d["kind"] == "film")])
    pos, neg = train & (d["y"] == 1), train & (d["y"] == 0)
    X = np.vstack([d["sh"][pos], d["sh"][neg], d["sh_neg"][neg]])
    y = np.concatenate([np.ones(pos.sum()), np.zeros(2 * neg.sum())])
    return oc, fit_lr(X, y)


def judge(oc: dict, lr: tuple, d: dict, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(one-class score, classifier logit) of ``rows``, the more chest-like polarity of each."""
    score = np.minimum(oc_score(oc, d["oc"][rows]), oc_score(oc, d["oc_neg"][rows]))
    logit = np.maximum(lr_logit(lr, d["sh"][rows]), lr_logit(lr, d["sh_neg"][rows]))
    return score, logit


def out_of_fold(d: dict) -> tuple[np.ndarray, np.ndarray]:
    score, logit = np.zeros(len(d["y"])), np.zeros(len(d["y"]))
    for k in range(FOLDS):
        oc, lr = fit(d, d["fold"] != k)
        held = d["fold"] == k
        score[held], logit[held] = judge(oc, lr, d, held)
    return score, logit


def thresholds(d: dict, score: np.ndarray, logit: np.ndarray) -> tuple[float, float]:
    films = d["kind"] == "film"
    t_oc = float(np.quantile(score[films], OC_QUANTILE))
    passing = np.sort(logit[films & (score <= t_oc)])
    allowed = int(np.floor(TARGET_REFUSED * films.sum())) - int((score[films] > t_oc).sum())
    t_logit = float(passing[max(allowed, 0)]) - 1e-6 if allowed > 0 else float(passing[0]) - 1e-6
    return t_oc, t_logit


def report(d: dict, score: np.ndarray, logit: np.ndarray, t_oc: float, t_logit: float) -> None:
    refused = (score > t_oc) | (logit < t_logit)
    for kind in dict.fromkeys(d["kind"].tolist()):
        rows = d["kind"] == kind
        print(f"  {kind:10s} refused {refused[rows].sum():5d}/{rows.sum():<5d} = {refused[rows].mean():6.1%}"
              f"  (one-class {(score[rows] > t_oc).mean():6.1%}, classifier {(logit[rows] < t_logit).mean():6.1%})")


def build(films: list[tuple[np.ndarray, float, str]], n_films_desc: str) -> ContentModel:
    d = dataset(films)
    score, logit = out_of_fold(d)
    t_oc, t_logit = thresholds(d, score, logit)
    print(f"out of fold: one-class threshold {t_oc:.4f}, classifier logit threshold {t_logit:.4f}")
    report(d, score, logit, t_oc, t_logit)
    oc, lr = fit(d, np.ones(len(d["y"]), bool))
    p_min = float(1 / (1 + np.exp(-t_logit)))
    films_mask = d["kind"] == "film"
    info = {"training_data": n_films_desc, "negatives": {k: int((d["kind"] == k).sum()) for k in dict.fromkeys(d["kind"].tolist()) if k not in ("film", "film-aug")},
            "components": COMPONENTS, "threshold_rule": f"quantile {OC_QUANTILE} of the training films' out-of-fold one-class scores",
            "min_p_chest_rule": f"both parts together refuse at most {TARGET_REFUSED:.1%} of the training films out of fold ({FOLDS} folds by patient)",
            "l2": L2, "seed": SEED, "films": int(films_mask.sum()), "build": "scripts/build_content_check.py"}
    f32 = np.float32
    return ContentModel(thumb=THUMB, mean=oc["mean"].astype(f32), scale=oc["scale"].astype(f32), components=oc["V"].astype(f32),
                        variances=oc["var"].astype(f32), mahalanobis_median=round(oc["m_med"], 6), residual_median=round(oc["r_med"], 6),
                        threshold=round(t_oc, 4), max_colour=MAX_COLOUR, info=info,
                        lr_mean=lr[0].astype(f32), lr_scale=lr[1].astype(f32), lr_weights=lr[2].astype(f32), lr_bias=round(lr[3], 6),
                        min_p_chest=round(p_min, 6))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    films = training_films(args.shared)
    model = build(films, f"{len(films)} frontal chest films: NIH ChestX-ray14 (half the patients, seed 0), lungseg split=train")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(model.to_dict(), separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{len(films)} films, one-class threshold {model.threshold}, min P(chest) {model.min_p_chest}; "
          f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
