"""Prediction speed: P1 (one image, warm), P2 (a folder, warm), model load and first prediction.

What it measures
----------------
``p1``
    Warm latency of one image. thoracic: ``Predictor.predict(path)`` on an uncompressed 16-bit
    DICOM (RG1, 1841x1955, built from the bundled JPEG 2000 sample), i.e. decode + window +
    preprocess + detect + NMS/fuse; with the shipped detector only (the issue's definition) and
    with the default models (detector + the 2-class filter). Baseline: ultralytics
    ``YOLO(detector.onnx, task="detect").predict(png, imgsz=512)`` of the same ONNX model on the
    same image already converted to an 8-bit PNG of the same size, with torch set to 2 threads
    (ultralytics' own default here is 1) and ONNX Runtime's default threads (one per core).
    Both run in their own warm worker process (importing ultralytics changes OpenCV's global
    thread setting), driven in interleaved rounds; medians of all rounds. thoracic's workers
    apply the process setting of thoracic's commands (``thoracic._process.keep_freed_memory``);
    one row leaves it out. JPEG 2000 DICOMs are
    reported too (full decode, and the batch predictor's reduced-resolution decode), without a
    target.
``p2``
    Throughput over a folder of 100 mixed files: 50 DICOMs (uncompressed 16-bit, JPEG 2000,
    JPEG-LS, 8-bit implicit VR, JPEG baseline) and 50 PNGs (three NIH images at 1024 px and RG1
    at full size). Baseline: a plain sequential loop ``for f in files: predictor.predict(f)``
    with the same models on ONNX Runtime, float32, 2 threads (as ``thoracic predict`` ran before
    the pipeline and the faster back-ends); a row shows the same loop on the default back-end. Candidates: ``thoracic predict``'s code path (:class:`PredictionCsv` fed by
    :class:`BatchPredictor`, writing the CSV and sidecar) with its defaults, and with single
    changes switched off to show what each bought. All warm (models loaded; the reader
    processes started once with ``BatchPredictor.start``, as a service keeps them; one row
    starts them in every run, as a single ``thoracic predict`` invocation does), in one
    process, interleaved rounds; medians.
``ort``
    ONNX Runtime alone: a 2-thread session running one image at a time against two threads
    sharing a 1-thread session (the batch predictor's default on 2 cores).
``load``
    Cold start in a fresh process: import + model load, the first prediction, and a second one;
    on the default back-end (OpenVINO's compiled-model cache filled by an earlier start; and, with
    OpenVINO, a first start on an empty cache) and on ONNX Runtime; against ultralytics'
    ``YOLO(onnx)`` + first ``predict``. Medians of ``--repeats`` processes.

How to run
----------
From the repository root::

    .venv/bin/python bench/predict.py              # p1, p2 and load
    .venv/bin/python bench/predict.py p1 --rounds 12
    .venv/bin/python bench/predict.py p2 --rounds 3 --check
    .venv/bin/python bench/predict.py load --repeats 5 --install default=/tmp/default/bin/python

It is a report (exit 0) unless ``--check`` is given and a target fails. Timings are wall-clock
on a possibly shared machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SAMPLES = ROOT / "src" / "thoracic" / "samples"
TEST_DATA = ROOT / "tests" / "fixtures"
ULTRALYTICS_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "False"}


# --- machine and inputs -------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for pkg in ("thoracic", "numpy", "onnxruntime", "opencv-python-headless", "pydicom", "pylibjpeg-openjpeg",
                "ultralytics", "ultralytics-opencv-headless", "torch", "ray"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}; " + ", ".join(versions)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def build_inputs(work: Path) -> dict[str, Path]:
    """The single test images (uncompressed RG1 DICOM, its PNG, the JPEG 2000 original)."""
    import cv2
    import numpy as np
    import pydicom

    from thoracic.io import read
    from thoracic.io.radiograph import ReadConfig

    j2k = SAMPLES / "RG1_J2KI.dcm"
    ds = pydicom.dcmread(j2k)
    ds.decompress()  # explicit VR little endian, 16-bit stored pixels
    unc = work / "rg1_uncompressed.dcm"
    ds.save_as(unc)
    rg = read(unc, ReadConfig(normalize="window"))
    png = work / "rg1.png"  # what `thoracic convert` writes at full size: the file's window, 8 bits
    cv2.imwrite(str(png), np.clip(np.floor(rg.pixels * 255.0 + 0.5), 0, 255).astype(np.uint8))
    return {"dicom": unc, "png": png, "j2k": j2k}


def build_folder(work: Path, singles: dict[str, Path], n: int = 100) -> Path:
    """``n`` files, every other one a DICOM (5 kinds) or a PNG (4 images)."""
    import cv2

    dicoms = [singles["dicom"], singles["j2k"], TEST_DATA / "RG1_JLSN.dcm", TEST_DATA / "nih_dx_implicit_le.dcm",
              SAMPLES / "siim_cr_jpeg_baseline.dcm"]
    pngs = []
    for jpg in sorted(SAMPLES.glob("*.jpg")):
        p = work / f"{jpg.stem}.png"
        cv2.imwrite(str(p), cv2.imread(str(jpg), cv2.IMREAD_GRAYSCALE))
        pngs.append(p)
    pngs.append(singles["png"])
    folder = work / "folder"
    folder.mkdir()
    for i in range(n):
        src = dicoms[(i // 2) % len(dicoms)] if i % 2 == 0 else pngs[(i // 2) % len(pngs)]
        shutil.copy(src, folder / f"img{i:03d}{src.suffix}")
    return folder


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of child processes it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def machine_ticks() -> tuple[int, int]:
    """(idle, total) CPU ticks of the whole machine (Linux ``/proc/stat``; zeros elsewhere)."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return 0, 0
    return v[3] + v[4], sum(v)


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1e3


# --- P1: workers in their own processes ---------------------------------------------------------


def worker_main(kind: str, path: str) -> None:
    """A warm predictor reading commands (``n``) on stdin and answering per-call seconds as JSON."""
    if kind == "ultralytics":
        os.environ.update(ULTRALYTICS_ENV)
        import torch
        from ultralytics import YOLO
        from ultralytics.utils import torch_utils

        from thoracic.models.registry import model_path

        model = YOLO(str(model_path("detector")), task="detect")
        model.predict(path, imgsz=512, verbose=False, device="cpu")  # sets up the predictor (torch: 1 thread)
        torch_utils.NUM_THREADS = 2
        torch.set_num_threads(2)

        def once() -> None:
            model.predict(path, imgsz=512, verbose=False, device="cpu")
    else:
        from thoracic._process import keep_freed_memory
        from thoracic.inference.batch import BatchPredictor, PipelineConfig
        from thoracic.inference.predictor import Predictor

        if kind != "thoracic-untuned":  # the process setting of thoracic's commands (thoracic._process)
            keep_freed_memory()
        predictor = Predictor.load(use_classifier=kind != "thoracic-detector", threads=2)
        if kind == "thoracic-unshared":  # each model preprocesses on its own (before prepare_8bit_many)

            def once() -> None:
                predictor.predict_read(predictor.read(path), prepared={})
        elif kind == "thoracic-reduced":
            batch = BatchPredictor(predictor, PipelineConfig(reduced_decode=True))

            def once() -> None:
                batch.predict_one(path, "x")
        else:

            def once() -> None:
                predictor.predict(path)

    for _ in range(3):
        once()
    if kind == "ultralytics" and torch.get_num_threads() != 2:
        raise RuntimeError(f"ultralytics runs torch with {torch.get_num_threads()} threads, not 2")
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            once()
            times.append(time.perf_counter() - t)
        print(json.dumps(times), flush=True)


class Worker:
    def __init__(self, kind: str, path: Path, work: Path) -> None:
        env = dict(os.environ, YOLO_CONFIG_DIR=str(work / "yolo-config"), **ULTRALYTICS_ENV)
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, __file__, "_worker", kind, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"worker {kind} did not start")
        self.times: list[float] = []

    def run(self, n: int) -> None:
        self.proc.stdin.write(f"{n}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        self.times += json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=60)


def bench_p1(work: Path, singles: dict[str, Path], rounds: int, per_round: int) -> list[dict[str, Any]]:
    specs = [
        ("ultralytics", singles["png"], "ultralytics YOLO.predict, RG1 as 8-bit PNG (1841x1955), torch 2 threads"),
        ("thoracic-detector", singles["dicom"], "thoracic Predictor.predict, shipped detector, uncompressed 16-bit DICOM"),
        ("thoracic", singles["dicom"], "thoracic Predictor.predict, default models (detector + 2-class filter), same DICOM"),
        ("thoracic-untuned", singles["dicom"], "  same, in a process whose allocator thoracic left as it was"),
        ("thoracic-unshared", singles["dicom"], "  same, each model preprocessing alone (no shared resize + CLAHE)"),
        ("thoracic-detector", singles["j2k"], "thoracic Predictor.predict, shipped detector, JPEG 2000 DICOM (full decode)"),
        ("thoracic-reduced", singles["j2k"], "thoracic predict's path (BatchPredictor.predict_one), default models, JPEG 2000, reduced decode"),
    ]
    workers = [Worker(kind, path, work) for kind, path, _ in specs]
    try:
        for _ in range(rounds):
            for w in workers:
                w.run(per_round)
    finally:
        for w in workers:
            w.close()
    base = median_ms(workers[0].times)
    rows = []
    for (kind, _, what), w in zip(specs, workers, strict=True):
        ms = median_ms(w.times)
        rows.append({"what": what, "ms": ms, "ratio": ms / base, "n": len(w.times), "kind": kind})
    return rows


# --- P2: one process, interleaved ---------------------------------------------------------------


def bench_p2(work: Path, folder: Path, rounds: int, headline: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from thoracic._fs import find_inputs
    from thoracic.batch.predictions import PredictionCsv
    from thoracic.cli.predict import PROCESS_READERS_FROM
    from thoracic.inference.batch import BatchPredictor, PipelineConfig, default_workers
    from thoracic.inference.predictor import Predictor
    from thoracic.io import image_id

    files = find_inputs([folder])
    items = [(f, image_id(f)) for f in files]
    cores = default_workers()
    processes = len(items) >= PROCESS_READERS_FROM  # what `thoracic predict --readers-in auto` picks
    from thoracic._process import keep_freed_memory
    from thoracic.models.runtime import onnx_backend

    keep_freed_memory()  # as `thoracic predict` does (for the baseline loop too, in this one process)
    with onnx_backend("onnxruntime", "f32"):  # the baseline: the loop as it ran before the faster back-ends
        sequential = Predictor.load(threads=2)
    same_backend = Predictor.load(threads=2)
    one_thread = Predictor.load(threads=max(1, cores // PipelineConfig().n_workers))

    def baseline() -> None:
        for f in files:
            sequential.predict(f)

    started: list[BatchPredictor] = []

    def thoracic(predictor: Predictor, cfg: PipelineConfig, warm: bool = True) -> Callable[[], None]:
        # warm: the reader processes are started once, like the models (BatchPredictor.start);
        # cold: each run starts its own, as one `thoracic predict` invocation does
        batch = BatchPredictor(predictor, cfg)
        if warm:
            started.append(batch.start())

        def go() -> None:
            out = work / "p2" / "preds.csv"
            with PredictionCsv(out, "rows", predictor.model_ids) as sink:
                for result in batch.run(items):
                    if not result.ok:
                        raise RuntimeError(result.describe_error())
                    sink.write(result)

        return go

    def unshared(predictor: Predictor, cfg: PipelineConfig) -> Callable[[], None]:
        def go() -> None:
            batch = BatchPredictor(predictor, cfg)
            # each model preprocesses alone, from the decoded image (which then waits in the queue)
            batch.plan = dataclasses.replace(batch.plan, chains=(), complete=False)
            for result in batch.run(items):
                if not result.ok:
                    raise RuntimeError(result.describe_error())

        return go

    backend = one_thread.detectors[0].backend
    candidates = [
        ("sequential loop, ONNX Runtime f32 2 threads (baseline)", baseline),
        (f"thoracic predict (defaults: reader {'processes' if processes else 'threads'} and inference threads = "
         f"cores, {backend} 1 thread each, reduced JPEG 2000 decode)", thoracic(one_thread, PipelineConfig(processes=processes))),
        ("- reader processes started in each run (one `thoracic predict` invocation)",
         thoracic(one_thread, PipelineConfig(processes=processes), warm=False)),
        (f"- sequential loop on the default back-end ({backend}, 2 threads)",
         lambda: [same_backend.predict(f) for f in files]),
        ("- reader threads", thoracic(one_thread, PipelineConfig())),
        ("- reader threads, without reduced JPEG 2000 decode", thoracic(one_thread, PipelineConfig(reduced_decode=False))),
        ("- reader threads, without shared preprocessing (and no CSV)", unshared(one_thread, PipelineConfig(prefetch=16))),
        ("- 1 inference worker with 2 threads, readers ahead (reduced decode)",
         thoracic(same_backend, PipelineConfig(workers=1))),
        ("- 1 inference worker with 2 threads, readers ahead, full decode",
         thoracic(same_backend, PipelineConfig(workers=1, reduced_decode=False))),
    ]
    if headline:  # the target's rows; on more cores, also the loop with all of them
        candidates = candidates[:4]
        if cores > 2:
            wide = Predictor.load(threads=cores)
            candidates.append((f"- sequential loop, ORT {cores} threads", lambda: [wide.predict(f) for f in files]))
    for _, fn in candidates:  # warm: first-call costs (allocations, decoder plugins) out of the timing
        fn()
    times: dict[str, list[float]] = {name: [] for name, _ in candidates}
    cpu: dict[str, list[float]] = {name: [] for name, _ in candidates}
    busy: dict[str, list[float]] = {name: [] for name, _ in candidates}
    for _ in range(rounds):
        for name, fn in candidates:
            t, c, (i0, t0) = time.perf_counter(), cpu_seconds(), machine_ticks()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(cpu_seconds() - c)
            i1, t1 = machine_ticks()
            busy[name].append(1 - (i1 - i0) / max(1, t1 - t0))
    base = statistics.median(times[candidates[0][0]])
    rows = []
    for name, _ in candidates:
        med = statistics.median(times[name])
        rows.append({"what": name, "images_per_s": len(files) / med, "ratio": base / med, "runs": times[name],
                     "cpu_ms": statistics.median(cpu[name]) / len(files) * 1e3, "busy": statistics.median(busy[name])})
    for batch in started:
        batch.close()
    agreement = compare_outputs(sequential, one_thread, files)
    return rows, agreement


def compare_outputs(reference: Any, candidate: Any, files: list[str]) -> dict[str, Any]:
    """How far the batch path's predictions are from Predictor.predict's, per file kind."""
    import numpy as np

    from thoracic.boxes import box_iou
    from thoracic.inference.batch import BatchPredictor, PipelineConfig

    out: dict[str, Any] = {}
    batch = BatchPredictor(candidate, PipelineConfig())
    seen: set[str] = set()
    for f in files:
        with open(f, "rb") as fh:
            head = fh.read(4096)
        kind = Path(f).suffix + (" j2k" if b"1.2.840.10008.1.2.4.9" in head else "")
        if kind in seen:
            continue
        seen.add(kind)
        a, b = reference.predict(f), batch.predict_one(f, Path(f).stem)
        top_a, top_b = a.detections.top(10), b.detections.top(10)
        ious = box_iou(top_a.boxes, top_b.boxes) if len(top_a) and len(top_b) else np.zeros((0, 0))
        matched = float(np.mean(ious.max(axis=1) >= 0.9)) if ious.size else float(len(top_a) == len(top_b))
        out[kind] = {"p_abnormal_diff": abs((a.p_abnormal or 0) - (b.p_abnormal or 0)),
                     "top10_boxes_matched_iou0.9": matched}
    return out


# --- ONNX Runtime threads: one 2-thread session vs concurrent 1-thread runs -----------------------


def bench_ort(rounds: int, n: int = 20) -> list[dict[str, Any]]:
    """Detector inferences per second: sequential runs of a 2-thread session, and 2 threads each
    running a shared 1-thread session (what ``--workers 2 --threads 1`` does)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from thoracic.models.registry import model_path
    from thoracic.models.runtime import onnx_session

    path = model_path("detector")
    two, one = onnx_session(path, 2), onnx_session(path, 1)
    name = two.get_inputs()[0].name
    x = np.random.default_rng(0).random(tuple(two.get_inputs()[0].shape), dtype=np.float32)

    def sequential() -> None:
        for _ in range(n):
            two.run(None, {name: x})

    def concurrent() -> None:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: one.run(None, {name: x}), range(n)))

    cases = [("1 session, 2 intra-op threads, one image at a time", sequential),
             ("1 session, 1 thread, 2 images at a time (2 workers)", concurrent)]
    for _, fn in cases:
        fn()
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for _ in range(rounds):
        for label, fn in cases:
            t = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t)
    base = statistics.median(times[cases[0][0]])
    return [{"what": label, "ms": statistics.median(times[label]) / n * 1e3, "ratio": base / statistics.median(times[label])}
            for label, _ in cases]


# --- load and first prediction ------------------------------------------------------------------

COLD_THORACIC = """
import time, json, sys
t0 = time.perf_counter()
from thoracic.inference.predictor import Predictor
from thoracic.models.runtime import onnx_backend
with onnx_backend(sys.argv[2], sys.argv[3]):
    p = Predictor.load(threads=2)
t1 = time.perf_counter()
p.predict(sys.argv[1])
t2 = time.perf_counter()
p.predict(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))
"""

COLD_ULTRALYTICS = """
import time, json, sys
t0 = time.perf_counter()
import torch
from ultralytics import YOLO
m = YOLO(sys.argv[2], task="detect")
t1 = time.perf_counter()
m.predict(sys.argv[1], imgsz=512, verbose=False, device="cpu")
t2 = time.perf_counter()
torch.set_num_threads(2)
m.predict(sys.argv[1], imgsz=512, verbose=False, device="cpu")
t3 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))
"""


def bench_load(work: Path, singles: dict[str, Path], repeats: int,
               installs: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """Rows of the cold-start table: this interpreter's install first, then each of ``installs``
    (``(name, python)``: another environment's interpreter, e.g. a venv of ``pip install .``)."""
    from thoracic.models.registry import model_path

    env = dict(os.environ, YOLO_CONFIG_DIR=str(work / "yolo-config"), **ULTRALYTICS_ENV)
    from thoracic.models.runtime import openvino_available

    sides = [("thoracic", COLD_THORACIC, [str(singles["dicom"]), "auto", "auto"],
              "thoracic: import + Predictor.load (detector + classifier), uncompressed DICOM, default back-end"),
             ("thoracic-ort", COLD_THORACIC, [str(singles["dicom"]), "onnxruntime", "f32"], "  same, --backend onnxruntime"),
             ("ultralytics", COLD_ULTRALYTICS, [str(singles["png"]), str(model_path("detector"))],
              "ultralytics: import + YOLO(detector.onnx), PNG")]
    if openvino_available():  # the default back-end is OpenVINO: a first start compiles, later ones read its cache
        fresh = work / "openvino-cache-first"
        sides.insert(1, ("thoracic-first", COLD_THORACIC, [str(singles["dicom"]), "auto", "auto"],
                         "  same, the first start (an empty OpenVINO cache)"))
    pythons = {name: sys.executable for name, *_ in sides}
    for name, python in installs:
        # its own thoracic (not this checkout's: run outside the repository), same models, same cache
        sides.append((f"install-{name}", COLD_THORACIC, [str(singles["dicom"]), "auto", "auto"],
                      f"thoracic as installed in {name} ({python}): import + Predictor.load, default back-end"))
        pythons[f"install-{name}"] = python
    runs: dict[str, list[list[float]]] = {name: [] for name, *_ in sides}
    (work / "openvino-cache").mkdir(exist_ok=True)
    for k in range(repeats):
        for name, code, args, _ in sides:
            cache = work / "openvino-cache" if name != "thoracic-first" else fresh / str(k)
            out = subprocess.run([pythons[name], "-c", code, *args], capture_output=True, text=True,
                                 env=dict(env, THORACIC_OPENVINO_CACHE=str(cache)),
                                 cwd=work if name.startswith("install-") else ROOT, timeout=300, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    for name, *_, label in sides:
        cols = list(zip(*runs[name], strict=True))
        rows.append({"what": label, "load_s": statistics.median(cols[0]), "first_ms": median_ms(list(cols[1])),
                     "second_ms": median_ms(list(cols[2])), "install": name.removeprefix("install-")
                     if name.startswith("install-") else ""})
    return rows


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        worker_main(argv[1], argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="*", default=["p1", "p2", "load", "ort"], choices=["p1", "p2", "load", "ort"])
    ap.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default: p1 10, p2 3)")
    ap.add_argument("--per-round", type=int, default=5, help="P1 predictions per worker per round")
    ap.add_argument("--repeats", type=int, default=3, help="cold-start processes per side (load)")
    ap.add_argument("--install", action="append", default=[], metavar="NAME=PYTHON",
                    help="load: also start thoracic as installed in another environment (its interpreter), e.g. "
                         "default=/tmp/default/bin/python for a venv of `pip install -c constraints.txt .`; repeatable; "
                         "the target is then checked on each of them")
    ap.add_argument("--files", type=int, default=100, help="P2 folder size")
    ap.add_argument("--headline", action="store_true",
                    help="P2: only the baseline, thoracic predict warm and cold (and, on more than 2 cores, the loop with "
                         "ORT on all cores)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    args = ap.parse_args(argv)

    print(f"machine: {machine()}")
    print(f"load average before: {load_average()}")
    (BENCH_DIR / "_work").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="predict-", dir=BENCH_DIR / "_work"))
    ok = True
    try:
        singles = build_inputs(work)
        if "p1" in args.what:
            rows = bench_p1(work, singles, args.rounds or 10, args.per_round)
            print("\nP1: warm latency of one image (median ms; ratio = time / ultralytics' time)")
            for r in rows:
                print(f"  {r['ms']:7.1f} ms  {r['ratio']:5.2f}x  (n={r['n']})  {r['what']}")
            p1, p1_default = rows[1]["ratio"], rows[2]["ratio"]
            print(f"  P1 target (detector, uncompressed DICOM) <= 1.0x: {'PASS' if p1 <= 1.0 else 'FAIL'} ({p1:.2f}x)")
            print(f"  P1 target (default models, uncompressed DICOM) <= 0.6x: {'PASS' if p1_default <= 0.6 else 'FAIL'} "
                  f"({p1_default:.2f}x)")
            ok &= p1 <= 1.0 and p1_default <= 0.6
        if "p2" in args.what:
            folder = build_folder(work, singles, args.files)
            rows, agreement = bench_p2(work, folder, args.rounds or 3, headline=args.headline)
            print(f"\nP2: {args.files} mixed files, warm (median images/s; ratio = vs the sequential loop; target >= 2.5;"
                  " CPU = this process's CPU time\n    per image, all threads, not its reader processes (forkserver children);"
                  " machine busy = share of both cores busy with anything)")
            for r in rows:
                runs = ", ".join(f"{x:.2f}" for x in r["runs"])
                print(f"  {r['images_per_s']:6.2f} img/s  {r['ratio']:5.2f}x  CPU {r['cpu_ms']:5.1f} ms/img  "
                      f"machine {r['busy']:4.0%} busy  "
                      f"(runs: {runs} s)  {r['what']}")
            p2 = rows[1]["ratio"]
            print(f"  P2 target >= 2.5x: {'PASS' if p2 >= 2.5 else 'FAIL'} ({p2:.2f}x)")
            print("  batch path vs Predictor.predict, per kind of file:")
            for kind, a in agreement.items():
                print(f"    {kind:10s} |dP(abnormal)| {a['p_abnormal_diff']:.4f}, "
                      f"top-10 boxes matched at IoU>=0.9: {a['top10_boxes_matched_iou0.9']:.0%}")
            ok &= p2 >= 2.5
        if "ort" in args.what:
            rows = bench_ort(args.rounds or 5)
            print("\nONNX Runtime, shipped detector at 512, random input (ms per image; ratio = throughput vs the first)")
            for r in rows:
                print(f"  {r['ms']:6.1f} ms/img  {r['ratio']:5.2f}x  {r['what']}")
        if "load" in args.what:
            installs = []
            for spec in args.install:
                name, sep, python = spec.partition("=")
                if not sep or not name or not python:
                    ap.error(f"--install wants NAME=PYTHON, got {spec!r}")
                installs.append((name, python))
            rows = bench_load(work, singles, args.repeats, installs)
            print("\nModel load and first prediction (fresh process, median of "
                  f"{args.repeats}; load includes Python imports)")
            for r in rows:
                print(f"  load {r['load_s']:5.2f} s, first prediction {r['first_ms']:6.0f} ms, "
                      f"second {r['second_ms']:5.0f} ms  {r['what']}")
            for r in [rows[0], *(r for r in rows if r["install"])]:
                cold = r["load_s"]
                where = f"install {r['install']}" if r["install"] else "this environment"
                print(f"  cold start target (default back-end, import + load) <= 0.5 s, {where}: "
                      f"{'PASS' if cold <= 0.5 else 'FAIL'} ({cold:.2f} s)")
                ok &= cold <= 0.5
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print(f"\nload average after: {load_average()}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
