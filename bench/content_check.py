"""The content check (thoracic.io.content): refused rates per set, and its cost against P1.

How to run, from the repository root (``../shared`` is the licensed data, see its README)::

    .venv/bin/python bench/content_check.py --shared ../shared

Several models side by side on the same images (each read once, each model's check on the same
pixels): ``--model src/thoracic/models/content/content.json --model OLD.json``; every rate comes
with its Wilson 95 % interval.

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
validation films turned 180 degrees), ``ct-like`` (drawn CT-like axial and coronal slices) and
``lateral-like`` (NIH validation films made into lateral-like views). These are made with other
seeds and other images than the training negatives of ``scripts/build_content_check.py``, but by
the same or similar recipes.

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

from build_content_check import SKIMAGE_TRAIN, _resize, ct_coronal, ct_slice, lateral_from_film, nih_split

from thoracic.errors import NotChestRadiographError
from thoracic.io import ReadConfig, read
from thoracic.io.content import ContentModel, check_content, load_content_model

PLAIN = ReadConfig(check_content=False)  # read once; each model's check_content as read() runs it with check_content=True
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
    for i in range(20):
        yield "ct-like", f"axial{i}", png((ct_slice(rng) * 255).astype(np.uint8))
    for i in range(10):
        yield "ct-like", f"coronal{i}", png((ct_coronal(rng) * 255).astype(np.uint8))
    for p in val[100:130]:
        f = _resize(np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255, 256)
        yield "lateral-like", p.name, png((lateral_from_film(f, rng) * 255).astype(np.uint8))


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


def refused(src, models: list[ContentModel]) -> list[str]:
    """The reason each model refuses ``src`` for ("" where it passes)."""
    try:
        rg = read(src, PLAIN)
    except NotChestRadiographError as err:  # the DICOM header's check, before any pixels
        return [err.reason or "refused"] * len(models)
    out = []
    for model in models:
        try:
            check_content(rg.pixels, colour=rg.colour, model=model)
            out.append("")
        except NotChestRadiographError as err:
            out.append(err.reason or "refused")
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score 95 % interval of ``k`` in ``n``."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def _line(name: str, counts: list[list[int]]) -> str:
    cells = []
    for r, n in counts:
        lo, hi = wilson(r, n)
        cells.append(f"{r:4d}/{n:<4d} = {r / n:6.1%} [{lo:6.1%}, {hi:6.1%}]")
    return f"{name:12s} refused " + " | ".join(cells)


def rates(shared: Path, models: list[ContentModel], labels: list[str], verbose: bool) -> None:
    print("models: " + " | ".join(labels))
    counts: dict[str, list[list[int]]] = {}
    for group, items in (("frontal chest films (should pass)", positives(shared)),
                         ("not frontal chest films (should be refused)", (*ood(shared), *negatives(shared)))):
        print(f"-- {group}", flush=True)
        order: list[str] = []
        for name, image, src in items:
            if name not in counts:
                counts[name] = [[0, 0] for _ in models]
                order.append(name)
            whys = refused(src, models)
            for c, why in zip(counts[name], whys):
                c[0] += bool(why)
                c[1] += 1
            if verbose and not name.startswith("ood") and bool(whys[0]) == group.endswith("pass)"):
                print(f"   {name} {image}: {whys[0] or 'passed'}")
        for name in order:
            print(_line(name, counts[name]), flush=True)
        if group.endswith("refused)"):
            for label, parts in (("own", [n for n in order if not n.startswith("ood")]), ("all", order)):
                print(_line(label, [[sum(counts[n][m][0] for n in parts), sum(counts[n][m][1] for n in parts)]
                                    for m in range(len(models))]))


def cost(rounds: int, models: list[ContentModel], labels: list[str]) -> None:
    import tempfile

    import pydicom

    from thoracic._process import keep_freed_memory
    from thoracic.inference import Predictor

    keep_freed_memory()  # P1 as bench/predict.py measures it: the process setting of thoracic's commands
    with tempfile.TemporaryDirectory() as tmp:
        ds = pydicom.dcmread(REPO / "src/thoracic/samples/RG1_J2KI.dcm")
        ds.decompress()
        dcm = Path(tmp) / "rg1.dcm"
        ds.save_as(dcm)
        pixels = read(dcm).pixels
        predictor = Predictor.load()
        checked = ReadConfig(check_content=True)
        predictor.predict(dcm)  # warm
        predictor.predict(dcm, read=checked)
        plain, with_check = [], []
        for _ in range(rounds * 4):  # interleaved: P1 without and with the shipped check (as the commands run it)
            plain.append(_timed(lambda: predictor.predict(dcm)))
            with_check.append(_timed(lambda: predictor.predict(dcm, read=checked)))
        p1, p1_checked = statistics.median(plain), statistics.median(with_check)
        print(f"P1 {p1 * 1e3:.1f} ms; with the shipped check {p1_checked * 1e3:.1f} ms: the check adds "
              f"{(p1_checked - p1) * 1e3:.2f} ms = {(p1_checked - p1) / p1:.1%} of P1 (target <= 10%; its 512-px "
              "image is the one the detector's chain makes next, so the chain's resize is saved)")
        for model, label in zip(models, labels):
            check_content(pixels, allow=True, model=model)
            check = statistics.median(_timed(lambda m=model: check_content(pixels, allow=True, model=m)) for _ in range(rounds * 10))
            print(f"cost ({label}): the check alone {check * 1e3:.2f} ms per image ({pixels.shape[1]}x{pixels.shape[0]}), "
                  f"{check / p1:.1%} of P1 (its own 512-px resize included)")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", action="append", type=Path, default=[],
                    help="a content.json to measure (repeat for several, side by side); default: the shipped one")
    ap.add_argument("--verbose", action="store_true",
                    help="name every image the first model puts on the wrong side (never the OOD set's)")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--skip-rates", action="store_true", help="measure the cost only (reads none of the sets)")
    args = ap.parse_args()
    paths = args.model or [None]
    models = [load_content_model(str(p) if p else None) for p in paths]
    labels = [str(p) if p else "shipped" for p in paths]
    if not args.skip_rates:
        rates(args.shared, models, labels, args.verbose)
    if not args.skip_cost:
        cost(args.rounds, models, labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
