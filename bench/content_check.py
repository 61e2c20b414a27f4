"""The content check (thoracic.io.content): refused rates per set, and its cost against P1.

How to run, from the repository root (``../shared`` is the licensed data, see its README)::

    .venv/bin/python bench/content_check.py --shared ../shared

Sets
----
Frontal chest films, which should pass (target: <= 1 % refused): ``nih-val`` (the NIH patients
the model was not built on), ``nih-all`` (all 1,040), ``lungseg`` (all 205, portable AP films
included), ``dicom`` (``../shared/data/dicom`` and the bundled samples). Not frontal chest films,
which should be refused (target: >= 95 %): ``ood-ct`` and ``ood-lateral`` (``../shared/data/ood``:
validation only, never used to build the model), and our own negatives made here:
``skimage`` (scikit-image's bundled images the model was not built on, as they are, rotated and
cropped), ``pages`` (text rendered with PIL), ``screens`` (the project's own screenshots and
synthetic UI), ``synthetic`` (checkerboards, noise, gradients), ``rotated`` (NIH validation films
turned 90 degrees), ``half`` (one half of an NIH validation film, stretched: one lung, as a
lateral shows), ``one-lung`` (an NIH validation film cut to one lung) and ``upside-down`` (NIH
validation films turned 180 degrees). These are made with other seeds and other images than the
training negatives of ``scripts/build_content_check.py``, but by similar recipes.

Cost: the check's time per image (median, on the uncompressed RG1 DICOM's pixels, 1841x1955)
against P1, a warm ``Predictor.predict`` of the same DICOM with the shipped models (median).
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "src"))

from build_content_check import SKIMAGE_TRAIN, nih_split

from thoracic.errors import NotChestRadiographError
from thoracic.io import ReadConfig, read
from thoracic.io.content import check_content

CHECK = ReadConfig(check_content=True)  # what predict, segment, serve and the node read with
#: scikit-image's bundled images that the model was not built on (it saw SKIMAGE_TRAIN).
SKIMAGE_HELD_OUT = tuple(n for n in ("astronaut", "brick", "camera", "cat", "chelsea", "checkerboard", "clock", "coffee",
                                     "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
                                     "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
                                     "shepp_logan_phantom", "text", "cell") if n not in SKIMAGE_TRAIN)
WORDS = ("the", "patient", "was", "seen", "in", "clinic", "today", "and", "reports", "improvement", "after",
         "treatment", "chest", "radiograph", "shows", "no", "acute", "findings", "lorem", "ipsum", "report", "page")


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def page(rng: np.random.Generator, size: tuple[int, int] = (850, 1100)) -> np.ndarray:
    im = Image.new("L", size, 255)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=int(rng.integers(14, 30)))
    y = int(rng.integers(30, 80))
    while y < size[1] - 40:
        draw.text((40, y), " ".join(rng.choice(WORDS, int(rng.integers(4, 12)))), fill=0, font=font)
        y += int(rng.integers(24, 44))
    return np.asarray(im)


def screen(rng: np.random.Generator) -> np.ndarray:
    im = Image.new("RGB", (1280, 800), tuple(int(v) for v in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x, y = int(rng.integers(0, 1100)), int(rng.integers(0, 700))
        draw.rectangle((x, y, x + int(rng.integers(60, 400)), y + int(rng.integers(20, 200))),
                       fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw.text((x + 5, y + 5), " ".join(rng.choice(WORDS, 3)), fill=(0, 0, 0), font=ImageFont.load_default(size=16))
    return np.asarray(im)


def negatives(shared: Path) -> Iterator[tuple[str, str, bytes]]:
    import skimage.data as sk

    rng = np.random.default_rng(1)
    for name in SKIMAGE_HELD_OUT:
        a = np.asarray(getattr(sk, name)())
        a = (a * 255).astype(np.uint8) if a.dtype != np.uint8 else a
        a = a[..., :3] if a.ndim == 3 else a
        h, w = a.shape[:2]
        for tag, v in (("", a), ("-rot", np.rot90(a).copy()), ("-crop", a[h // 5: -h // 5 or None, w // 5: -w // 5 or None])):
            yield "skimage", name + tag, png(np.ascontiguousarray(v))
    for i in range(20):
        yield "pages", f"page{i}", png(page(rng))
    for p in sorted((REPO / "docs").rglob("*.png")):
        yield "screens", str(p.relative_to(REPO)), p.read_bytes()
    for i in range(10):
        yield "screens", f"ui{i}", png(screen(rng))
    yy, xx = np.mgrid[0:512, 0:512]
    for n in (2, 4, 8, 16, 32, 64):
        yield "synthetic", f"checker{n}", png((((yy // (512 // n)) + (xx // (512 // n))) % 2 * 255).astype(np.uint8))
    for i in range(5):
        yield "synthetic", f"noise{i}", png(rng.integers(0, 256, (512, 512), dtype=np.uint8))
        yield "synthetic", f"gradient{i}", png(((np.cos(xx / (40 + 30 * i)) + np.sin(yy / (50 + 20 * i))) * 60 + 128).astype(np.uint8))
    _, val = nih_split(shared)
    for p in val[:50]:
        a = np.asarray(Image.open(p).convert("L"))
        yield "rotated", p.name, png(np.rot90(a, 1 if hash(p.name) % 2 else 3).copy())
        half = a[:, : a.shape[1] // 2] if len(p.name) % 2 else a[:, a.shape[1] // 2:]
        yield "half", p.name, png(np.asarray(Image.fromarray(half).resize((a.shape[1], a.shape[0]))))
        h, w = a.shape
        lung = a[h // 10: h * 85 // 100, w // 20: w // 2] if len(p.name) % 2 else a[h // 10: h * 85 // 100, w // 2: w * 95 // 100]
        yield "one-lung", p.name, png(np.ascontiguousarray(lung))
    for p in val[50:100]:
        yield "upside-down", p.name, png(np.rot90(np.asarray(Image.open(p).convert("L")), 2).copy())


def positives(shared: Path) -> Iterator[tuple[str, str, Path]]:
    train, val = nih_split(shared)
    for p in val:
        yield "nih-val", p.name, p
    for p in sorted(train + val):
        yield "nih-all", p.name, p
    for p in sorted((shared / "data/lungseg/images").glob("*.jpg")):
        yield "lungseg", p.name, p
    for p in [*sorted((shared / "data/dicom").glob("*.dcm")), *sorted((REPO / "src/thoracic/samples").glob("*"))]:
        if p.suffix in (".dcm", ".jpg"):
            yield "dicom", p.name, p


def ood(shared: Path) -> Iterator[tuple[str, str, Path]]:
    with open(shared / "data/ood/labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            yield f"ood-{'ct' if row['kind'] == 'ct' else 'lateral'}", row["image"], shared / "data/ood/images" / row["image"]


def refused(src) -> str:
    try:
        read(src, CHECK)
    except NotChestRadiographError as err:
        return err.reason or "refused"
    return ""


def rates(shared: Path, verbose: bool) -> None:
    counts: dict[str, list[int]] = {}
    for group, items in (("frontal chest films (should pass)", positives(shared)),
                         ("not frontal chest films (should be refused)", (*ood(shared), *negatives(shared)))):
        print(f"-- {group}")
        order: list[str] = []
        for name, image, src in items:
            if name not in counts:
                counts[name] = [0, 0]
                order.append(name)
            why = refused(src)
            counts[name][0] += bool(why)
            counts[name][1] += 1
            if verbose and bool(why) == group.endswith("pass)"):
                print(f"   {name} {image}: {why or 'passed'}")
        for name in order:
            r, n = counts[name]
            print(f"{name:12s} refused {r:4d}/{n:<4d} = {r / n:6.1%}")
        if group.endswith("refused)"):
            r = sum(counts[n][0] for n in order)
            n = sum(counts[n][1] for n in order)
            print(f"{'all':12s} refused {r:4d}/{n:<4d} = {r / n:6.1%}")


def cost(rounds: int) -> None:
    import tempfile

    import pydicom

    from thoracic.inference import Predictor

    with tempfile.TemporaryDirectory() as tmp:
        ds = pydicom.dcmread(REPO / "src/thoracic/samples/RG1_J2KI.dcm")
        ds.decompress()
        dcm = Path(tmp) / "rg1.dcm"
        ds.save_as(dcm)
        pixels = read(dcm).pixels
        predictor = Predictor.load()
        predictor.predict(dcm)  # warm
        p1 = statistics.median(_timed(lambda: predictor.predict(dcm)) for _ in range(rounds))
        check_content(pixels)
        check = statistics.median(_timed(lambda: check_content(pixels)) for _ in range(rounds * 10))
    print(f"cost: check {check * 1e3:.2f} ms per image ({pixels.shape[1]}x{pixels.shape[0]}), "
          f"P1 {p1 * 1e3:.0f} ms; ratio {check / p1:.1%} (target <= 10%)")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--verbose", action="store_true", help="name every image on the wrong side")
    ap.add_argument("--skip-cost", action="store_true")
    args = ap.parse_args()
    rates(args.shared, args.verbose)
    if not args.skip_cost:
        cost(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
