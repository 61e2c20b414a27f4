"""Benchmark ``thoracic convert`` against the common Kaggle DICOM-to-PNG recipe.

What it measures
----------------
The recipe is the one of the well-known VinBigData notebook, run in one process, one file after
the other: ``pydicom.dcmread`` + ``pixel_array`` + ``apply_voi_lut``, MONOCHROME1 inversion,
min-max to 8 bits (truncating), ``PIL.Image.thumbnail(size, LANCZOS)`` and ``Image.save`` as PNG
with Pillow's default settings.

thoracic's side is exactly what ``thoracic convert INPUTS --out DIR --size N --normalize minmax``
runs: ``convert([folder], out, ConvertConfig(chain=convert_chain(N, "minmax", False)))`` with the
default workers (one per core), into a fresh output folder each time (it would resume otherwise).
It is also timed with ``workers=1`` to separate parallelism from per-image work.

Both sides convert the same files: ``--copies`` copies of pydicom-data's ``RG1_J2KR.dcm`` (a
1841x1955 MONOCHROME1 JPEG 2000 lossless CR), under distinct names in a temporary folder below
``bench/_work/``. Both sides are warmed up once on 2 files at each size, then every timing is
repeated ``--repeats`` times and the median is reported, as seconds per image and as the ratio
recipe time / thoracic time. Every output pair is then decoded and compared (shapes, max and mean
absolute difference in grey levels), and each target of the issue is marked PASS or FAIL:

* ``--size 1024`` (full-resolution decode): ratio >= 1.8, max difference <= 1 grey level;
* ``--size 512`` (JPEG 2000 decoded at a reduced resolution level): ratio >= 3, mean absolute
  difference <= 1 grey level.

``--profile`` adds where thoracic's per-image time goes (decode, modality LUT, VOI/window,
min-max, resize, 8-bit conversion, PNG write), from cProfile over a ``workers=1`` run.

How to run
----------
From the repository root::

    .venv/bin/python bench/convert.py                 # 40 copies, 3 repeats
    .venv/bin/python bench/convert.py --copies 80 --repeats 5 --profile
    .venv/bin/python bench/convert.py --check         # exit 1 if a target fails

It is a report: the exit code is 0 unless an error occurs, or 1 with ``--check`` when a target
fails. Timings are wall-clock and sensitive to other load on the machine (printed before and
after); rerun when they look noisy.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from PIL import Image
from pydicom.pixels import apply_voi_lut

from thoracic.batch.convert import ConvertConfig, convert, convert_chain

BENCH_DIR = Path(__file__).resolve().parent
TEST_FILE = "RG1_J2KR.dcm"


@dataclass(frozen=True)
class Target:
    """The issue's target for one output size."""

    size: int
    min_ratio: float
    metric: str  # "max" or "mean": which pixel difference is bounded
    max_diff: float
    note: str


TARGETS = (
    Target(1024, 1.8, "max", 1.0, "full-resolution decode"),
    Target(512, 3.0, "mean", 1.0, "reduced-resolution JPEG 2000 decode"),
)


@dataclass(frozen=True)
class PairDiff:
    name: str
    shape_recipe: tuple[int, ...]
    shape_thoracic: tuple[int, ...]
    max_abs: int | None  # None when the shapes differ
    mean_abs: float | None


# --- the recipe ---------------------------------------------------------------------------------


def recipe_one(path: Path, out_png: Path, size: int) -> None:
    """The VinBigData notebook's conversion of one file, as a user would run it."""
    ds = pydicom.dcmread(path)
    data = apply_voi_lut(ds.pixel_array, ds)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        data = np.amax(data) - data
    data = data - np.min(data)
    data = data / np.max(data)
    data = (data * 255).astype(np.uint8)
    im = Image.fromarray(data)
    im.thumbnail((size, size), Image.LANCZOS)
    im.save(out_png)


def run_recipe(files: list[Path], out_dir: Path, size: int) -> None:
    out_dir.mkdir(parents=True)
    for path in files:
        recipe_one(path, out_dir / f"{path.stem}.png", size)


# --- thoracic -----------------------------------------------------------------------------------


def run_thoracic(in_dir: Path, out_dir: Path, size: int, workers: int) -> None:
    """What ``thoracic convert IN --out OUT --size N --normalize minmax [--workers W]`` runs."""
    options = ConvertConfig(chain=convert_chain(size, "minmax", False), workers=workers)
    summary = convert([in_dir], out_dir, options)
    if summary.failed or summary.skipped or summary.converted != summary.total:
        raise RuntimeError(f"thoracic convert did not convert every file: {summary}")


def thoracic_outputs(out_dir: Path) -> dict[str, Path]:
    """Source file stem -> output PNG, from thoracic's manifest."""
    with (out_dir / "manifest.csv").open(newline="") as fh:
        return {Path(row["source"]).stem: out_dir / row["out_file"] for row in csv.DictReader(fh)}


# --- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # CPU seconds of this process and of the worker processes it waited for


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn: Callable[[], None]) -> Timing:
    start, start_cpu = time.perf_counter(), cpu_seconds()
    fn()
    return Timing(time.perf_counter() - start, cpu_seconds() - start_cpu)


def load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L") if im.mode not in ("L", "I;16") else im).astype(np.int32)


def compare(recipe_dir: Path, thoracic_dir: Path, names: list[str]) -> list[PairDiff]:
    ours = thoracic_outputs(thoracic_dir)
    diffs = []
    for name in names:
        a, b = load_png(recipe_dir / f"{name}.png"), load_png(ours[name])
        if a.shape != b.shape:
            diffs.append(PairDiff(name, a.shape, b.shape, None, None))
            continue
        d = np.abs(a - b)
        diffs.append(PairDiff(name, a.shape, b.shape, int(d.max()), float(d.mean())))
    return diffs


def identical_outputs(dir_a: Path, dir_b: Path) -> bool:
    a, b = thoracic_outputs(dir_a), thoracic_outputs(dir_b)
    return a.keys() == b.keys() and all(np.array_equal(load_png(a[k]), load_png(b[k])) for k in a)


#: Stages of thoracic's per-image path: label -> the functions (file suffix, cProfile name) timed.
PROFILE_STAGES = (
    ("read file + parse header", (("io/read.py", "_load"), ("io/dicom/read.py", "parse"))),
    ("decode pixels (decode)", (("io/dicom/pixels.py", "decode"),)),
    ("modality LUT to float32 (modality_lut)", (("io/dicom/pixels.py", "modality_lut"),)),
    ("VOI window to 0..1 (apply_voi)", (("io/dicom/pixels.py", "apply_voi"),)),
    ("min-max (intensity.minmax)", (("preprocess/intensity.py", "minmax"),)),
    ("resize, Lanczos on float32 (Chain.run)", (("preprocess/chain.py", "run"),)),
    ("to 8 bits (to_uint8)", (("preprocess/chain.py", "to_uint8"),)),
    ("PNG write (cv2.imwrite)", (("~", "<imwrite>"), ("~", "<built-in method cv2.imwrite>"))),
)


def profile_thoracic(in_dir: Path, work: Path, size: int, n_files: int) -> list[tuple[str, float]]:
    """Per-image seconds of each stage of thoracic's path, from cProfile over a workers=1 run."""
    out = work / f"profile-{size}"
    profiler = cProfile.Profile()
    profiler.enable()
    run_thoracic(in_dir, out, size, workers=1)
    profiler.disable()
    shutil.rmtree(out, ignore_errors=True)
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)

    def per_image(funcs: tuple[tuple[str, str], ...]) -> float:
        return sum(
            v[3]
            for suffix, name in funcs
            for (file, _, fn), v in stats.items()
            if fn == name and file.replace("\\", "/").endswith(suffix)
        ) / n_files

    rows = [(label, per_image(funcs)) for label, funcs in PROFILE_STAGES]
    # read_dicom's own work besides the stages above: the min/max check, the MONOCHROME1 inversion,
    # the final float32 copy (minmax is listed above; count it here only when read_dicom called it)
    minmax_in_read = sum(
        ct
        for (file, _, fn), v in stats.items()
        if fn == "minmax" and file.endswith("preprocess/intensity.py")
        for (_, _, caller), (_, _, _, ct) in v[4].items()
        if caller == "read_dicom"
    ) / n_files
    inside = per_image((("io/dicom/read.py", "parse"),)
                       + tuple(("io/dicom/pixels.py", n) for n in ("decode", "modality_lut", "apply_voi")))
    rest = per_image((("io/dicom/read.py", "read_dicom"),)) - inside - minmax_in_read
    rows.append(("rest of read_dicom (min/max check, MONOCHROME1 invert, copy)", rest))
    rows.append(("total per image (_convert_one)", per_image((("thoracic/batch/convert.py", "_convert_one"),))))
    return rows


# --- report -------------------------------------------------------------------------------------


def version(*dists: str) -> str:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def busy(cores: int) -> bool:
    """Whether the 1-minute load average says other work shares the cores (beyond this run's own)."""
    try:
        return os.getloadavg()[0] > cores + 0.5
    except OSError:
        return False


def print_machine(default_workers: int) -> None:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print("machine")
    print(f"  cores            {os.cpu_count()} (usable {usable}; thoracic default workers {default_workers})")
    print(f"  cpu              {cpu_model()}")
    print(f"  python           {platform.python_version()} ({sys.executable})")
    print(f"  numpy            {version('numpy')}")
    print(f"  pydicom          {version('pydicom')}")
    print(f"  pylibjpeg-openjpeg {version('pylibjpeg-openjpeg')}")
    print(f"  pillow           {version('pillow', 'Pillow')}")
    print(f"  opencv           {version('opencv-python-headless', 'opencv-python', 'opencv-contrib-python')}")
    print(f"  thoracic         {version('thoracic')}")
    print(f"  load average     {load()}")


def print_pairs(diffs: list[PairDiff], each: bool) -> None:
    """One line per pair, or (default) one line per run of pairs with the very same result."""
    groups: list[list[PairDiff]] = []
    for d in diffs:
        key = (d.shape_recipe, d.shape_thoracic, d.max_abs, d.mean_abs)
        if not each and groups and (groups[-1][0].shape_recipe, groups[-1][0].shape_thoracic,
                                    groups[-1][0].max_abs, groups[-1][0].mean_abs) == key:
            groups[-1].append(d)
        else:
            groups.append([d])
    for group in groups:
        d = group[0]
        names = d.name if len(group) == 1 else f"{d.name} .. {group[-1].name} ({len(group)} pairs, same result)"
        if d.max_abs is None:
            print(f"    {names}: SHAPES DIFFER recipe {d.shape_recipe} vs thoracic {d.shape_thoracic}")
        else:
            print(f"    {names}: shape {d.shape_recipe}  max {d.max_abs}  mean {d.mean_abs:.4f}")


def fmt_times(times: list[Timing], n: int) -> str:
    per = [t.wall / n for t in times]
    cpu = statistics.median(t.cpu for t in times) / n
    return (f"{statistics.median(per):7.4f} s/image  (runs: {', '.join(f'{p:.4f}' for p in per)}; "
            f"CPU {cpu:.4f} s/image)")


def bench_size(
    target: Target, files: list[Path], warm_files: list[Path], in_dir: Path, warm_dir: Path, work: Path, args
) -> bool:
    n, size = len(files), target.size
    print(f"\n--size {size} ({target.note}), {n} files, median of {args.repeats}")
    run_recipe(warm_files, work / f"warm-recipe-{size}", size)
    run_thoracic(warm_dir, work / f"warm-thoracic-{size}", size, workers=0)
    run_thoracic(warm_dir, work / f"warm-thoracic1-{size}", size, workers=1)

    times: dict[str, list[Timing]] = {"recipe": [], "thoracic": [], "thoracic1": []}
    for r in range(args.repeats):  # interleaved, so a burst of outside load hits all sides alike
        dirs = {k: work / f"{k}-{size}-{r}" for k in times}
        times["recipe"].append(timed(lambda: run_recipe(files, dirs["recipe"], size)))
        times["thoracic"].append(timed(lambda: run_thoracic(in_dir, dirs["thoracic"], size, 0)))
        times["thoracic1"].append(timed(lambda: run_thoracic(in_dir, dirs["thoracic1"], size, 1)))
        if r < args.repeats - 1:
            for d in dirs.values():
                shutil.rmtree(d)
    last = {k: work / f"{k}-{size}-{args.repeats - 1}" for k in times}

    med = {k: statistics.median(t.wall for t in v) for k, v in times.items()}
    ratio, ratio1 = med["recipe"] / med["thoracic"], med["recipe"] / med["thoracic1"]
    print(f"  recipe               {fmt_times(times['recipe'], n)}")
    print(f"  thoracic (default)   {fmt_times(times['thoracic'], n)}")
    print(f"  thoracic (workers=1) {fmt_times(times['thoracic1'], n)}")
    print(f"  ratio recipe/thoracic: {ratio:.2f}x (default workers), {ratio1:.2f}x (workers=1); "
          f"parallel speed-up {med['thoracic1'] / med['thoracic']:.2f}x")
    workers = min(os.cpu_count() or 1, n)
    if workers > 1 and med["thoracic1"] / med["thoracic"] < 0.75 * workers:
        print(f"  note: the parallel speed-up is far below {workers} workers: other processes shared the cores,"
              " or too few files to amortize starting the worker pool")
    cpu = {k: statistics.median(t.cpu for t in v) for k, v in times.items()}
    print(f"  CPU time ratio recipe/thoracic (per-image work, insensitive to idle cores): "
          f"{cpu['recipe'] / cpu['thoracic']:.2f}x (default workers), {cpu['recipe'] / cpu['thoracic1']:.2f}x (workers=1)")

    names = [p.stem for p in files]
    diffs = compare(last["recipe"], last["thoracic"], names)
    print(f"  pixel differences, recipe vs thoracic (grey levels), {len(diffs)} pairs:")
    print_pairs(diffs, args.all_pairs)
    same_workers = identical_outputs(last["thoracic"], last["thoracic1"])
    print(f"  thoracic default workers vs workers=1 outputs identical: {same_workers}")

    shapes_ok = all(d.max_abs is not None for d in diffs)
    worst_max = max((d.max_abs for d in diffs if d.max_abs is not None), default=None)
    worst_mean = max((d.mean_abs for d in diffs if d.mean_abs is not None), default=None)
    print(f"  worst pair: max {worst_max}, mean {worst_mean if worst_mean is None else f'{worst_mean:.4f}'}"
          + ("" if shapes_ok else f"; {sum(d.max_abs is None for d in diffs)} pairs with different shapes"))

    speed_ok = ratio >= target.min_ratio
    bound = worst_max if target.metric == "max" else worst_mean
    pixels_ok = shapes_ok and bound is not None and bound <= target.max_diff
    print(f"  target ratio >= {target.min_ratio}x: {ratio:.2f}x  {'PASS' if speed_ok else 'FAIL'}")
    print(f"  target {target.metric} abs difference <= {target.max_diff:g}: "
          f"{'shapes differ' if not shapes_ok else (f'{bound:.4f}' if target.metric == 'mean' else bound)}  "
          f"{'PASS' if pixels_ok else 'FAIL'}")

    if args.profile:
        print(f"  thoracic per-image profile at --size {size} (cProfile, workers=1; adds some overhead):")
        for label, seconds in profile_thoracic(in_dir, work, size, n):
            print(f"    {label:<62} {seconds * 1000:8.1f} ms")
    if not args.keep:
        for d in last.values():
            shutil.rmtree(d, ignore_errors=True)
    return speed_ok and pixels_ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time thoracic convert against the common Kaggle DICOM-to-PNG recipe and compare their pixels.",
    )
    parser.add_argument("--copies", type=int, default=40, help="copies of the test file to convert (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per side and size; the median is reported (default 3)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[t.size for t in TARGETS], choices=[t.size for t in TARGETS],
                        help="output sizes to run (default: 1024 512)")
    parser.add_argument("--file", type=Path, default=None,
                        help=f"DICOM to copy instead of pydicom-data's {TEST_FILE} (the targets were set for that one)")
    parser.add_argument("--profile", action="store_true", help="also profile thoracic's per-image path by stage")
    parser.add_argument("--all-pairs", action="store_true", help="print every pair, not runs of equal results")
    parser.add_argument("--check", action="store_true", help="exit with status 1 when a target fails")
    parser.add_argument("--keep", action="store_true", help="keep the work folder under bench/_work/")
    args = parser.parse_args(argv)
    if args.copies < 2 or args.repeats < 1:
        parser.error("--copies must be >= 2 and --repeats >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    source = args.file or Path(pydicom.data.get_testdata_file(TEST_FILE))
    (BENCH_DIR / "_work").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="convert-", dir=BENCH_DIR / "_work"))
    try:
        in_dir, warm_dir = work / "inputs", work / "warmup"
        in_dir.mkdir()
        warm_dir.mkdir()
        files = [Path(shutil.copyfile(source, in_dir / f"{source.stem.lower()}_{i:03d}.dcm")) for i in range(args.copies)]
        warm_files = [Path(shutil.copyfile(source, warm_dir / f"warm_{i}.dcm")) for i in range(2)]

        print_machine(ConvertConfig().workers or os.cpu_count() or 1)
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        print(f"input: {args.copies} copies of {source.name} ({ds.Columns}x{ds.Rows}, {ds.PhotometricInterpretation}, "
              f"{ds.BitsStored} bits stored, {ds.file_meta.TransferSyntaxUID.name}) in {in_dir}")

        results = {}
        for target in TARGETS:
            if target.size in args.sizes:
                results[target.size] = bench_size(target, files, warm_files, in_dir, warm_dir, work, args)
        print(f"\nload average after: {load()}")
        if busy(os.cpu_count() or 1):
            print("note: other processes kept the cores busy during the run; timings (above all the parallel"
                  " ones) are noisy, rerun when the machine is idle")
        print("summary: " + ", ".join(f"--size {s}: {'PASS' if ok else 'FAIL'}" for s, ok in results.items()))
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if args.check and not all(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
